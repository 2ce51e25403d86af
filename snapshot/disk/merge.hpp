// Merging layers, in both directions a checkpoint tree needs.
//
// merge_into_parent(child): the parent absorbs the child's blocks. The
// parent's generation is bumped first, so any other child of the parent is
// refused from then on: call it only when the parent has no other children.
// The child file is left in place (the caller deletes it).
// While it runs the parent header names the child (merge_kind 1): the chain
// through the child still reads exactly as before (the parent only gains
// copies of the child's blocks), and calling it again resumes.
//
// merge_into_child(parent, child): the child absorbs the parent's blocks it
// does not override, then is re-pointed to the grandparent. The child's
// visible content and generation do not change, so its own children stay
// valid, and the parent is untouched (its other children stay valid). While
// it runs the child header says so (merge_kind 2); reopening the child
// writable, or calling it again, finishes it.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "snapshot/disk/chain.hpp"

namespace cairn::disk {

using ProgressFn = std::function<void(uint64_t done_bytes, uint64_t total_bytes)>;

Result<void> merge_into_parent(const std::string& child_path, const ProgressFn& progress = {});
Result<void> merge_into_child(const std::string& parent_path, const std::string& child_path,
                              const ProgressFn& progress = {});

// The copy step of merge_into_child on open layers: `child` (writable) is
// absorbing `parent`, its header already says so. Ends with the child
// re-pointed to the header's new parent.
Result<void> finish_absorbing_parent(Layer& child, const Layer& parent, const ProgressFn& progress);

}  // namespace cairn::disk
