// The checkpoint operations of one VM (Hyper-V's Checkpoint-VM,
// Restore-VMCheckpoint, Rename-VMCheckpoint, Remove-VMCheckpoint), each on a
// VmSession that holds the VM's tree lock. `report` receives what the
// operation did (printed by the CLI, stored as a job's result).
// With dry_run an operation says what it would do (report["would"]) and
// changes nothing.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "vmm/checkpoint/vm_checkpoints.hpp"
#include "vmm/jobs/progress.hpp"

namespace cairn {

struct CreateOptions {
  std::string name;         // "" = Hyper-V's default name
  std::string description;
  bool dry_run = false;
};
// The new checkpoint. Running VM: standard (memory) or production (agent
// freeze, disks only) as the VM's checkpoint type says; paused: standard;
// off: disks only; saved: the saved memory is kept with the checkpoint.
Result<tree::Checkpoint> create_checkpoint(VmSession& s, const CreateOptions& o, Progress& p, nlohmann::json& report);

struct ApplyOptions {
  bool checkpoint_first = false;  // "Create Checkpoint and Apply"
  bool dry_run = false;
};
// Stops a running VM, puts its disks on new layers over the checkpoint's,
// and leaves it saved (standard: the next start resumes the checkpoint's
// memory) or off (disks only).
Result<void> apply_checkpoint(VmSession& s, const std::string& which, const ApplyOptions& o, Progress& p,
                              nlohmann::json& report);

Result<void> rename_checkpoint(VmSession& s, const std::string& which, const std::string& new_name, bool dry_run,
                               nlohmann::json& report);

// Removes one checkpoint (its children move up) or a whole subtree, then
// merges or deletes the disk layers and files nothing needs any more.
Result<void> remove_checkpoint(VmSession& s, const std::string& which, bool subtree, bool dry_run, Progress& p,
                               nlohmann::json& report);

// The saved machine state of a standard checkpoint, as text (vCPUs, timers,
// interrupt controllers, devices); Errc::invalid_argument for disks only.
Result<std::string> describe_saved_machine(const VmSession& s, const tree::Checkpoint& c);

// Stops a running VM (control "stop") and waits until its VMM has ended.
Result<void> stop_vm_and_wait(const VmSession& s, int timeout_ms);

}  // namespace cairn
