#include "vmm/control/vm_handlers.hpp"

#include <unistd.h>

namespace cairn {

using nlohmann::json;

namespace {
json status_of(VmControlContext& vm) {
  auto up = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - vm.started);
  json s = {{"state", vm.machine.paused() ? "paused" : "running"},
            {"pid", ::getpid()},
            {"uptime_ms", up.count()},
            {"vcpus", vm.machine.config().cpus},
            {"memory", vm.machine.config().memory},
            {"name", vm.record.name},
            {"id", vm.record.id}};
  // A restored guest whose RAM is still arriving (lazy restore).
  if (auto l = vm.machine.memory_load_stats())
    s["memory_load"] = {{"chunks", l->chunks},     {"loaded_chunks", l->loaded_chunks},
                        {"demand_chunks", l->demand_chunks}, {"faults", l->faults},
                        {"done", l->done},  {"load_ms", l->load_ms}};
  if (!vm.machine.restore_note().empty()) s["restore_note"] = vm.machine.restore_note();
  return s;
}
}  // namespace

void add_vm_lifecycle_handlers(ControlDispatcher& d, VmControlContext& vm) {
  d.add("status", [&vm](const json&) -> Result<json> { return status_of(vm); });
  d.add("pause", [&vm](const json&) -> Result<json> {
    vm.machine.pause();
    return json{{"state", "paused"}};
  });
  d.add("resume", [&vm](const json&) -> Result<json> {
    vm.machine.resume();
    return json{{"state", "running"}};
  });
  d.add("stop", [&vm](const json&) -> Result<json> {
    vm.machine.request_stop({MachineExit::Kind::stopped, 0, "stopped through the control socket"});
    return json::object();
  });
}

std::shared_ptr<ControlDispatcher> build_vm_dispatcher(VmControlContext& vm) {
  auto d = std::make_shared<ControlDispatcher>();
  add_vm_lifecycle_handlers(*d, vm);
  add_checkpoint_handlers(*d, vm);
  return d;
}

}  // namespace cairn
