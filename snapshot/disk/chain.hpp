// A chain of layers as one disk: reads fall through to the first layer that
// holds a block, writes go to the top layer only.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "snapshot/disk/layer.hpp"

namespace cairn::disk {

struct OpenOptions {
  bool writable = false;          // the top layer only; parents are always read-only
  bool allow_merge_target = false;  // internal: open a top that is absorbing a child
};

class Chain {
 public:
  // Opens `top` and its parents, checking every parent's identity (UUID and
  // generation), cycles, depth and matching geometry.
  static Result<std::unique_ptr<Chain>> open(const std::string& top, OpenOptions o = {});
  // A clean close commits like flush(); only a crash loses unflushed writes.
  ~Chain();

  uint64_t size() const { return top().header().virtual_size; }
  uint64_t block_size() const { return top().block_size(); }
  size_t depth() const { return layers_.size(); }
  Layer& top() const { return *layers_.front(); }
  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }

  Result<void> read(uint64_t off, std::span<uint8_t> out);
  Result<void> write(uint64_t off, std::span<const uint8_t> in);
  // Whole blocks become zero entries (or unallocated where no parent holds
  // data); partial blocks are written with zeros.
  Result<void> write_zeroes(uint64_t off, uint64_t len);
  // Durable on return.
  Result<void> flush();

  // A new top layer while the chain is in use (a disk frozen into a
  // checkpoint), in two steps so that the slow part runs before the guest
  // pauses. prepare_child() fixes the top's identity (its generation is
  // bumped now if this session has not changed it yet), creates an empty
  // child of it at `path` and opens it for writing, its own first change
  // already made durable. push_child() commits the top, keeps it open as the
  // read-only parent and puts `child` over it: no file is opened or read.
  // pop_child() undoes push_child() and returns the child.
  Result<std::unique_ptr<Layer>> prepare_child(const std::string& path);
  Result<void> push_child(std::unique_ptr<Layer> child);
  Result<std::unique_ptr<Layer>> pop_child();

  // Where block i is held below the top layer: layer index (0 = nowhere,
  // reads zeros) and that layer's entry.
  struct Below {
    uint32_t layer = 0;
    uint64_t entry = 0;
  };
  Below below(uint64_t block) const { return below_[block]; }
  // Reads block i as the parents of the top layer see it.
  Result<void> read_below(uint64_t block, std::span<uint8_t> out) const;

 private:
  Result<void> check_range(uint64_t off, uint64_t len) const;
  Result<void> write_block(uint64_t block, uint64_t in_off, std::span<const uint8_t> in);
  void build_below();

  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<Below> below_;
  std::vector<uint8_t> scratch_;
  std::vector<std::pair<uint64_t, uint64_t>> new_blocks_;  // (block, slot) of one write run
  std::mutex mu_;
};

// The checks between a child layer and its parent: identity (UUID and
// generation), a merge in progress, size and block size.
Result<void> check_link(const Layer& child, const Layer& parent);
// Creates an empty child layer at `child` over the layer at `parent`, whose header is `h`.
Result<void> create_over(const Header& h, const std::string& parent, const std::string& child);

// Where a stored parent path points, for a child at child_path.
std::string resolve_parent(const std::string& child_path, const std::string& stored);
// The path to store in a child for its parent (relative to the child's folder).
std::string relative_parent(const std::string& child_path, const std::string& parent_path);

// Library entry points used by the CLI, the VMM and the checkpoint code.
Result<void> create_base(const std::string& path, uint64_t size, uint32_t block_shift = kDefaultBlockShift);
// A new empty child layer over PARENT (which must open cleanly as a chain).
Result<void> create_child(const std::string& parent, const std::string& child);
// The same, reading only PARENT's own layer: for a caller that opens the new
// chain right after (which checks every link) and must be quick, as a disk
// freeze in a production checkpoint.
Result<void> create_child_of_top(const std::string& parent, const std::string& child);
inline Result<std::unique_ptr<Chain>> open_chain(const std::string& top, bool writable) {
  return Chain::open(top, OpenOptions{.writable = writable});
}

}  // namespace cairn::disk
