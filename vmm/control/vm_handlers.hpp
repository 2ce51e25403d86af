// The control commands of a running VM (protocol.hpp lists them) and the one
// place where the VM's command table is assembled.
#pragma once
#include <chrono>
#include <memory>

#include "vmm/control/dispatcher.hpp"
#include "vmm/machine/machine.hpp"
#include "vmm/vmstore/vm_config.hpp"
#include "vmm/vmstore/vm_store.hpp"

namespace cairn {

// What a handler may use: the VM, its stored record and its state folder.
struct VmControlContext {
  Machine& machine;
  VmRecord record;
  VmPaths paths;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

// status, pause, resume, stop.
void add_vm_lifecycle_handlers(ControlDispatcher& d, VmControlContext& vm);

// checkpoint-save, disk-merge, disks (checkpoint_handlers.cpp).
void add_checkpoint_handlers(ControlDispatcher& d, VmControlContext& vm);

// Every command of a running VM. Other areas add theirs here, one line each
// (see dispatcher.hpp). `vm` must outlive the returned table.
std::shared_ptr<ControlDispatcher> build_vm_dispatcher(VmControlContext& vm);

}  // namespace cairn
