// Whether a stored VM is off, running or paused, as seen from outside its
// VMM: the lock (vmm/vmstore/vm_lock.hpp) says whether a VMM runs it, the
// control socket says whether it is paused.
#pragma once
#include <sys/types.h>

#include <string_view>

#include <nlohmann/json.hpp>

#include "vmm/base/error.hpp"
#include "vmm/vmstore/vm_store.hpp"

namespace cairn {

enum class VmRunState { off, running, paused };
std::string_view to_string(VmRunState s);

struct VmState {
  VmRunState state = VmRunState::off;
  pid_t pid = 0;                // the VMM's pid when running; 0 when unknown
  bool answered = false;        // the control socket replied to "status"
  nlohmann::json status;        // that reply (protocol.hpp "status")
  std::string unreachable_why;  // why not, when running but silent
};

// Probes the lock, then (if held) asks the VM for its status within
// `timeout_ms`. A VM whose lock is free is off, and a control socket left
// behind by a VMM that died is removed on the way.
Result<VmState> query_vm_state(const VmPaths& p, int timeout_ms = 2000);

// Removes control.sock if no VMM holds the VM's lock; true if one was removed.
// The lock is taken while removing, so a VMM starting at that moment keeps its socket.
Result<bool> remove_stale_socket(const VmPaths& p);

}  // namespace cairn
