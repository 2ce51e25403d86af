#include "vmm/control/vm_host.hpp"

#include <unistd.h>

#include "vmm/control/server.hpp"
#include "vmm/control/vm_handlers.hpp"

namespace cairn {

Result<MachineExit> run_vm_host(const VmRecord& rec, const VmPaths& paths, VmLock& lock, const VmHostOptions& opts) {
  if (auto r = lock.write_pid(::getpid()); !r) return std::unexpected(r.error());
  // We hold the lock, so any socket file left here belongs to a VMM that died.
  ::unlink(paths.control_socket.c_str());
  MachineConfig cfg = rec.machine;
  if (!opts.console.empty()) cfg.console = opts.console;
  auto m = Machine::create(cfg);
  if (!m) return std::unexpected(std::move(m.error()).context(fmt::format("starting VM '{}'", rec.name)));
  VmControlContext ctx{**m, rec, paths};
  auto server = ControlServer::start(paths.control_socket, build_vm_dispatcher(ctx));
  if (!server) return std::unexpected(std::move(server.error()).context("the control socket"));
  MachineExit e = (*m)->run();
  (*server)->stop();
  return e;
}

}  // namespace cairn
