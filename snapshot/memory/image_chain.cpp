#include "snapshot/memory/image_chain.hpp"

#include <filesystem>
#include <map>
#include <optional>

namespace cairn::snap {

namespace fs = std::filesystem;

Result<MemoryImageChain> MemoryImageChain::from(std::vector<MemoryImageReader> images) {
  if (images.empty()) return fail(Errc::invalid_argument, "no memory image");
  if (images.size() > 255) return fail(Errc::invalid_argument, "{} memory images in one chain (255 at most)", images.size());
  for (size_t k = 0; k + 1 < images.size(); ++k) {
    const auto& child = images[k];
    const auto& parent = images[k + 1];
    if (child.parent_id() == 0)
      return fail(Errc::corrupt, "memory image {} of {} is a full image but has a parent in the chain", k + 1,
                  images.size());
    if (child.parent_id() != parent.image_id())
      return fail(Errc::corrupt,
                  "memory image {} of {} was taken on top of image {:016x}, but its parent in the chain is {:016x}",
                  k + 1, images.size(), child.parent_id(), parent.image_id());
    if (child.layout() != parent.layout() || child.chunk_size() != parent.chunk_size())
      return fail(Errc::corrupt, "memory image {} of {} does not have its parent's layout or chunk size", k + 1,
                  images.size());
  }
  if (images.back().parent_id() != 0)
    return fail(Errc::corrupt, "the oldest memory image of the chain is incremental: its parent {:016x} is missing",
                images.back().parent_id());
  MemoryImageChain c;
  c.images_ = std::move(images);
  const size_t chunks = c.images_.front().index().size();
  c.holder_.assign(chunks, 0);
  for (size_t i = 0; i < chunks; ++i) {
    uint8_t k = 0;
    while (c.images_[k].index()[i].in_parent()) ++k;  // the last image is full: this ends
    c.holder_[i] = k;
  }
  return c;
}

Result<MemoryImageChain> MemoryImageChain::open(const std::vector<std::string>& paths) {
  std::vector<MemoryImageReader> images;
  for (auto& p : paths) {
    auto r = MemoryImageReader::open(p);
    if (!r) return std::unexpected(r.error());
    images.push_back(std::move(*r));
  }
  return from(std::move(images));
}

// The memory image in checkpoint folder `dir` and, for an incremental one,
// the images it builds on, newest first. A parent is found by its id among
// the folder's siblings (the VM's checkpoints): folding a removed parent
// into its child then changes one file, the child's image, atomically.
Result<MemoryImageChain> MemoryImageChain::open_checkpoint(const std::string& dir) {
  std::vector<MemoryImageReader> images;
  auto first = MemoryImageReader::open((fs::path(dir) / kCheckpointMemoryFile).string());
  if (!first) return std::unexpected(first.error());
  images.push_back(std::move(*first));
  if (!images.back().parent_id()) return MemoryImageChain::from(std::move(images));
  // The siblings' ids, read once from their first bytes: only the chain's
  // images are opened and checked whole.
  const fs::path siblings = fs::absolute(dir).lexically_normal().parent_path();
  std::multimap<uint64_t, std::string> by_id;
  std::error_code ec;
  for (auto it = fs::directory_iterator(siblings, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string img = (it->path() / kCheckpointMemoryFile).string();
    if (auto id = MemoryImageReader::peek_image_id(img)) by_id.emplace(*id, img);
  }
  while (images.back().parent_id()) {
    if (images.size() >= 255) return fail(Errc::corrupt, "checkpoint {}: its memory builds on over 255 images", dir);
    const uint64_t want = images.back().parent_id();
    std::optional<MemoryImageReader> found;
    for (auto [it, end] = by_id.equal_range(want); it != end && !found; ++it) {
      auto r = MemoryImageReader::open(it->second);
      if (r && r->image_id() == want) found = std::move(*r);
    }
    if (!found)
      return fail(Errc::corrupt, "checkpoint {}: the memory image it builds on ({:016x}) is not in {}", dir, want,
                  siblings.string());
    images.push_back(std::move(*found));
  }
  return MemoryImageChain::from(std::move(images));
}

Result<void> MemoryImageChain::load(std::span<const RamRegion> regions, bool already_zero, unsigned threads) const {
  if (auto r = images_.front().check_regions(regions); !r) return r;
  const auto spans = chunk_spans(layout(), chunk_size());
  return parallel_for(spans.size(), threads, [&](size_t i) -> Result<void> {
    return holder(i).place_chunk(i, regions[spans[i].region].host + spans[i].offset, spans[i].length, already_zero);
  });
}

}  // namespace cairn::snap
