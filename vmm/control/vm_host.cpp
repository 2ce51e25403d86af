#include "vmm/control/vm_host.hpp"

#include <unistd.h>

#include "vmm/control/server.hpp"
#include "vmm/machine/stop_signals.hpp"
#include "vmm/control/vm_handlers.hpp"

namespace cairn {

std::string saved_state_dir(const VmRecord& rec) {
  auto it = rec.extra.find("saved_state");
  if (it == rec.extra.end() || !it->is_object() || !it->contains("dir") || !(*it)["dir"].is_string()) return {};
  return (*it)["dir"].get<std::string>();
}

Result<void> clear_saved_state(const std::string& config_path) {
  auto rec = load_vm_record(config_path);
  if (!rec) return std::unexpected(rec.error());
  rec->extra.erase("saved_state");
  return save_vm_record(config_path, *rec);
}

Result<MachineExit> run_vm_host(const VmRecord& rec, const VmPaths& paths, VmLock& lock, const VmHostOptions& opts) {
  if (auto r = lock.write_pid(::getpid()); !r) return std::unexpected(r.error());
  // We hold the lock, so any socket file left here belongs to a VMM that died.
  ::unlink(paths.control_socket.c_str());
  MachineConfig cfg = rec.machine;
  if (!opts.console.empty()) cfg.console = opts.console;
  // A VM in the saved state (a standard checkpoint was applied) resumes
  // from that checkpoint's memory; once it runs, the saved state is used up.
  std::string saved = saved_state_dir(rec);
  auto m = saved.empty() ? Machine::create(cfg) : Machine::restore(saved, cfg);
  if (!m) return std::unexpected(std::move(m.error()).context(fmt::format("starting VM '{}'", rec.name)));
  if (!saved.empty()) {
    if (auto r = clear_saved_state(paths.config); !r) return std::unexpected(r.error());
  }
  VmControlContext ctx{**m, rec, paths};
  auto server = ControlServer::start(paths.control_socket, build_vm_dispatcher(ctx));
  if (!server) return std::unexpected(std::move(server.error()).context("the control socket"));
  auto signals = StopOnSignals::install(**m);
  if (!signals) return std::unexpected(signals.error());
  MachineExit e = (*m)->run();
  (*server)->stop();
  return e;
}

}  // namespace cairn
