#include "snapshot/memory/image_fold.hpp"

namespace cairn::snap {

Result<MemoryImageStats> fold_into_child(const MemoryImageReader& removed, const MemoryImageReader& child,
                                         int out_fd, const FoldProgress& progress) {
  if (child.parent_id() != removed.image_id())
    return fail(Errc::invalid_argument, "memory image {:016x} does not build on {:016x}", child.image_id(),
                removed.image_id());
  if (child.layout() != removed.layout() || child.chunk_size() != removed.chunk_size())
    return fail(Errc::corrupt, "a memory image and its parent differ in layout or chunk size");
  auto w = MemoryImageWriter::create_for_copy(out_fd, child.layout(),
                                              {.chunk_size = child.chunk_size(), .parent_id = removed.parent_id(), .image_id = child.image_id()});
  if (!w) return std::unexpected(w.error());
  std::vector<size_t> in_grandparent;
  std::vector<uint8_t> stored;
  for (size_t i = 0; i < child.index().size(); ++i) {
    const MemoryImageReader* from = &child;
    if (child.index()[i].in_parent()) from = &removed;
    const ChunkEntry& e = from->index()[i];
    if (e.in_parent()) {
      in_grandparent.push_back(i);
    } else {
      stored.clear();
      if (e.present_pages)
        if (auto r = from->read_stored(i, stored); !r) return std::unexpected(r.error());
      if (auto r = w->copy_chunk(i, e, stored); !r) return std::unexpected(r.error());
    }
    if (progress) progress(i + 1, child.index().size());
  }
  if (!in_grandparent.empty())
    if (auto r = w->refer_to_parent(in_grandparent); !r) return std::unexpected(r.error());
  return w->finish();
}

Result<MemoryImageStats> flatten_chain(const MemoryImageChain& chain, int out_fd, const FoldProgress& progress) {
  auto w = MemoryImageWriter::create_for_copy(out_fd, chain.layout(), {.chunk_size = chain.chunk_size()});
  if (!w) return std::unexpected(w.error());
  std::vector<uint8_t> stored;
  for (size_t i = 0; i < w->chunk_count(); ++i) {
    const MemoryImageReader& from = chain.holder(i);
    const ChunkEntry& e = from.index()[i];
    stored.clear();
    if (e.present_pages)
      if (auto r = from.read_stored(i, stored); !r) return std::unexpected(r.error());
    if (auto r = w->copy_chunk(i, e, stored); !r) return std::unexpected(r.error());
    if (progress) progress(i + 1, w->chunk_count());
  }
  return w->finish();
}

}  // namespace cairn::snap
