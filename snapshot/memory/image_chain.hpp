// An incremental memory image with the images it builds on. An incremental
// image (format version 2, memory_image.hpp) stores only the chunks written
// since its parent and marks the others "in parent"; following parent ids
// down to a full image gives every chunk.
#pragma once
#include <string>
#include <vector>

#include "snapshot/memory/memory_image.hpp"

namespace cairn::snap {

inline constexpr const char* kCheckpointMemoryFile = "memory.img";

class MemoryImageChain {
 public:
  // `images`: the newest first, each next one the parent of the one before
  // (its image_id() equals their parent_id()), the last a full image, all of
  // one layout and chunk size. Errc::corrupt when a link does not hold.
  static Result<MemoryImageChain> from(std::vector<MemoryImageReader> images);
  static Result<MemoryImageChain> open(const std::vector<std::string>& paths);
  // The image in checkpoint folder `dir` (memory.img) and, for an incremental
  // one, the images it builds on, each found by its id among the folder's
  // siblings (the VM's other checkpoints).
  static Result<MemoryImageChain> open_checkpoint(const std::string& dir);

  const std::vector<RegionLayout>& layout() const { return images_.front().layout(); }
  uint32_t chunk_size() const { return images_.front().chunk_size(); }
  size_t depth() const { return images_.size(); }
  const MemoryImageReader& newest() const { return images_.front(); }
  Result<void> check_regions(std::span<const RamRegion> regions) const { return newest().check_regions(regions); }
  // The image that holds chunk i: the newest that stores it.
  const MemoryImageReader& holder(size_t i) const { return images_[holder_[i]]; }
  size_t holder_depth(size_t i) const { return holder_[i]; }
  // Fills `regions` (of layout()) with every chunk, each from its holder.
  Result<void> load(std::span<const RamRegion> regions, bool already_zero, unsigned threads = 0) const;

 private:
  std::vector<MemoryImageReader> images_;
  std::vector<uint8_t> holder_;  // per chunk: its holder's place in images_
};

}  // namespace cairn::snap
