// Removing a checkpoint whose memory image another builds on: the removed
// image's chunks move into its child, which then builds on the removed
// image's own parent (or becomes a full image).
#pragma once
#include <functional>

#include "snapshot/memory/image_chain.hpp"
#include "snapshot/memory/memory_image.hpp"

namespace cairn::snap {

// Called after each chunk with (chunks done, chunks in all).
using FoldProgress = std::function<void(uint64_t done, uint64_t total)>;

// Writes into `out_fd` (an empty file) what `child` becomes once `removed`,
// its parent, is folded into it: the chunks the child stores are copied as
// they are; those it left to `removed` are copied from `removed`, or stay
// "in parent" where `removed` left them to its own parent. The result builds
// on removed's parent (parent_id), or is a full image when `removed` was one.
// Stored bytes are copied, not recompressed; each chunk's checksum is checked
// as it is read. The caller fsyncs and renames the result over the child.
Result<MemoryImageStats> fold_into_child(const MemoryImageReader& removed, const MemoryImageReader& child, int out_fd,
                                         const FoldProgress& progress = {});

// Writes the whole RAM of `chain` as one full image into `out_fd` (exports):
// each chunk's stored bytes copied from its holder, checksums checked.
Result<MemoryImageStats> flatten_chain(const MemoryImageChain& chain, int out_fd, const FoldProgress& progress = {});

}  // namespace cairn::snap
