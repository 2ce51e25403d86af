// One layer file of a cairn disk: its header, its block allocation table
// (kept in memory), and the ordered, logged updates that make it crash-safe.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "snapshot/disk/format.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn::disk {

struct CreateParams {
  uint64_t virtual_size = 0;
  uint32_t block_shift = kDefaultBlockShift;
  std::optional<ParentLink> parent;  // path as it will be stored
  uint64_t log_bytes = kDefaultLogBytes;
};

class Layer {
 public:
  // Writes a new, empty layer atomically (temporary file, fsync, rename).
  static Result<void> create(const std::string& path, const CreateParams& p);
  // Opens, validates every header field and BAT entry, and replays the log.
  // A writable open takes an exclusive lock and starts a fresh log epoch.
  static Result<std::unique_ptr<Layer>> open(const std::string& path, bool writable);

  const Header& header() const { return hdr_; }
  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  bool writable() const { return writable_; }
  uint64_t block_size() const { return hdr_.block_size(); }
  uint64_t entries() const { return bat_.size(); }
  uint64_t entry(uint64_t i) const { return bat_[i]; }
  uint64_t file_bytes() const { return file_size_; }
  uint64_t data_blocks() const;
  uint64_t zero_blocks() const;
  uint64_t free_slots() const { return free_.size(); }

  // Before the first change of this session: generation + 1, durable.
  Result<void> begin_change();
  // A data slot for a new block (a freed one, or a new one at the end).
  uint64_t allocate_slot();
  // The slot allocate_slot() would return next.
  uint64_t peek_slot() const {
    return free_.empty() ? hdr_.data_offset + end_slot_ * hdr_.block_size() : free_.back();
  }
  // Changes block i's entry; a data slot it no longer uses is released
  // (its space punched out; reusable after the next commit()).
  void set_entry(uint64_t i, uint64_t e);
  // Makes every write and entry change so far durable: data first, then
  // the log (or a checkpoint when the log is full).
  Result<void> commit();
  // Writes `h` (with seq + 1) into the other header slot, then syncs.
  Result<void> write_header(Header h);
  bool has_uncommitted() const { return !dirty_.empty() || unsynced_; }
  void note_data_written() { unsynced_ = true; }
  // Ends this writable session in place (commit, then the exclusive lock
  // becomes shared): the layer stays open as a parent, as a chain gaining a
  // child needs it, without closing and reading it again.
  Result<void> end_writes();
  // Undoes end_writes() (the exclusive lock again), for a chain whose new
  // child is taken off again.
  Result<void> resume_writes();

 private:
  Layer() = default;
  Result<void> load();
  Result<void> checkpoint();
  Result<void> append_log();

  std::string path_;
  UniqueFd fd_;
  bool writable_ = false;
  bool opened_rw_ = false;  // the fd can write (resume_writes)
  bool changed_ = false;
  bool unsynced_ = false;
  Header hdr_;
  uint64_t file_size_ = 0;
  uint64_t end_slot_ = 0;  // slots [0, end_slot_) exist in the file
  uint32_t log_next_ = 0;
  int header_slot_ = 0;
  std::vector<uint64_t> bat_;
  std::vector<uint64_t> dirty_;
  std::vector<uint8_t> dirty_mark_;
  std::vector<uint64_t> free_;          // slot offsets ready for reuse
  std::vector<uint64_t> pending_free_;  // released, reusable after commit()
};

// The current header of the layer file at `path`, read without locking the
// file or loading its table, so it works while another process writes the
// layer (Layer::open then refuses with Errc::busy). nullopt when the file
// does not start like a cairn layer at all (a raw disk).
Result<std::optional<Header>> peek_header(const std::string& path);

}  // namespace cairn::disk
