// Where a VM's checkpoints live and the settings that govern them.
//
//   <state folder>/                       $CAIRN_HOME/vms/NAME (vm_store.hpp)
//     checkpoints.json                    the tree (snapshot/tree/checkpoint_tree.hpp)
//     checkpoints.lock                    held by the one command changing the tree
//   <checkpoint location>/                the state folder, or DIR/<VM ID> after
//                                         `vm set --checkpoint-location DIR`
//     checkpoints/<ID>/                   a standard checkpoint's state.bin and memory.img
//                                         (docs/checkpoint-format.md); absent for disk-only ones
//     disks/<UUID>.cdsk                   disk layers cairn made: frozen layers owned by
//                                         checkpoints, running layers, imported raw disks
//
// Settings, in config.json beside the machine (vm_config.hpp keeps unknown keys):
//   "checkpoints": {"type": "production" | "production-only" | "standard",
//                   "enabled": true, "location": "" | "/abs/dir"}
// Layers cairn did not make (the disk a VM was created with) are frozen in
// place by the first checkpoint and never changed or deleted by cairn.
#pragma once
#include <optional>
#include <string>

#include "snapshot/tree/checkpoint_tree.hpp"
#include "vmm/base/error.hpp"
#include "vmm/control/vm_state.hpp"
#include "vmm/vmstore/vm_lock.hpp"
#include "vmm/vmstore/vm_store.hpp"

namespace cairn {

enum class CheckpointPolicy { production, production_only, standard };
std::string_view to_string(CheckpointPolicy p);
std::optional<CheckpointPolicy> checkpoint_policy_from(std::string_view s);

struct CheckpointSettings {
  CheckpointPolicy type = CheckpointPolicy::production;  // Hyper-V's default
  bool enabled = true;
  std::string location;  // "" = the VM's state folder
};
Result<CheckpointSettings> checkpoint_settings(const VmRecord& r);
void store_checkpoint_settings(VmRecord& r, const CheckpointSettings& s);

struct CheckpointPaths {
  std::string tree_file, lock_file;
  std::string root;             // the checkpoint location
  std::string checkpoints_dir;  // root/checkpoints
  std::string disks_dir;        // root/disks
  std::string checkpoint_dir(std::string_view id) const { return checkpoints_dir + "/" + std::string(id); }
  Result<std::string> new_layer_path() const;  // disks_dir/<fresh uuid>.cdsk
};

// One VM as the checkpoint commands see it. Loading takes the tree lock, so
// a VmSession is the only writer of the VM's tree while it lives.
struct VmSession {
  VmStore store;
  VmRecord record;
  VmPaths paths;
  CheckpointPaths cp;
  CheckpointSettings settings;
  tree::Tree tree;
  VmLock tree_lock;

  // Waits up to `wait_ms` for another command on the same VM to finish,
  // then refuses with Errc::busy naming it.
  static Result<VmSession> open(const std::string& vm_name, int wait_ms = 10000);

  Result<VmState> state() const { return query_vm_state(paths, 2000); }
  Result<void> save_tree() const { return tree::save_tree(cp.tree_file, tree); }
  Result<void> save_record() const { return store.save(record); }
  // Re-reads config.json (a running VMM rewrites its disk paths).
  Result<void> reload_record();
  // Creates the checkpoint location's folders.
  Result<void> make_dirs() const;
};

// "" or the checkpoint ID whose memory the next start resumes from.
std::string saved_checkpoint_id(const VmRecord& r);

}  // namespace cairn
