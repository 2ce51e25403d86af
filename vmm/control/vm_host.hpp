// The VMM side of `cairn vm start`: runs a stored VM in this process, with
// its control socket, until the VM ends.
#pragma once
#include <string>

#include "vmm/base/error.hpp"
#include "vmm/machine/machine.hpp"
#include "vmm/vmstore/vm_config.hpp"
#include "vmm/vmstore/vm_lock.hpp"
#include "vmm/vmstore/vm_store.hpp"

namespace cairn {

// The saved state of a VM: config.json's "saved_state": {"checkpoint": ID,
// "dir": PATH} names the checkpoint folder the next start resumes from.
std::string saved_state_dir(const VmRecord& rec);  // "" when off
Result<void> clear_saved_state(const std::string& config_path);

struct VmHostOptions {
  std::string console;  // overrides the stored console ("file:PATH"); empty: keep it
};

// `lock` is the VM's lock, held by this process (VmLock::try_acquire); this
// records our pid in it. The control socket exists exactly while the VM runs.
// Errors are those of building the VM or its socket; how a running VM ended
// is the MachineExit.
Result<MachineExit> run_vm_host(const VmRecord& rec, const VmPaths& paths, VmLock& lock, const VmHostOptions& opts);

}  // namespace cairn
