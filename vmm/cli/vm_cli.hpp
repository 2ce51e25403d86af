// Shared between the `cairn vm` command files (vm_command.cpp, vm_start_command.cpp).
#pragma once
#include <string>

#include "vmm/machine/machine.hpp"

namespace cairn {

// How the VM ended -> the process exit status; defined in run_command.cpp.
int exit_status_for(const MachineExit& e);

// `cairn vm start NAME [--detach]`.
int vm_start(const std::string& name, bool detach);

// How long `vm start --detach` waits for the new VM to answer on its socket:
// a boot answers at once; a saved VM answers once all of its memory is read
// and checked, which for GiBs under emulation takes minutes.
inline constexpr int kDetachWaitMs = 30000;
inline constexpr int kDetachRestoreWaitMs = 600000;

}  // namespace cairn
