// Disk layers no checkpoint needs any more: after a checkpoint is removed or
// applied, its layers are merged into their one child or deleted.
//
// A layer cairn made (in the location's disks/ folder) is needed when a
// checkpoint names it or the VM writes it (config.json's disks). Every other
// one of those layers is:
//   - deleted when no layer has it as parent;
//   - merged into its child when it has exactly one (merge_into_child: the
//     child absorbs the blocks it does not override and points to the
//     grandparent; resumable), then deleted. When that child is in a running
//     VM's chain (the VMM holds those layers open), the VMM does the merge
//     (control "disk-merge");
//   - kept when two or more children share it (branches of the tree).
// The files are the truth: a crash at any point leaves layers that the next
// collection finds in one of these states again, so it completes the work.
// Checkpoint folders not in the tree (and not the VM's saved state) are
// deleted too.
#pragma once
#include <string>
#include <vector>

#include "vmm/checkpoint/vm_checkpoints.hpp"
#include "vmm/jobs/progress.hpp"

namespace cairn {

struct GcAction {
  enum class Kind { delete_layer, merge_into_child, delete_folder } kind;
  std::string path;   // the layer or folder
  std::string child;  // merge_into_child: the child absorbing it
  bool live = false;  // the child is in the running VM's chain: the VMM merges
  size_t slot = 0;    // live: the disk slot
};

// What a collection would do with the VM's files if its tree were `t` (for
// --dry-run; collect_garbage runs it with the session's tree).
Result<std::vector<GcAction>> plan_collection(const VmSession& s, const tree::Tree& t, bool vm_running);
std::string describe(const GcAction& a);

// Runs plan_collection's actions; returns them.
Result<std::vector<GcAction>> collect_garbage(VmSession& s, Progress& progress);

}  // namespace cairn
