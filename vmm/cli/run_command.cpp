// `cairn run`: boot a VM in the foreground and exit with what the guest did.
#include <fmt/format.h>

#include "vmm/cli/commands.hpp"
#include "vmm/cli/exit_codes.hpp"
#include "vmm/cli/machine_options.hpp"
#include "vmm/cli/run_checkpoint.hpp"
#include "vmm/kvm/host_check.hpp"
#include "vmm/machine/machine.hpp"
#include "vmm/machine/stop_signals.hpp"

namespace cairn {

// Maps how the VM ended to the process exit status (README: "cairn run").
int exit_status_for(const MachineExit& e) {
  switch (e.kind) {
    case MachineExit::Kind::poweroff: return e.status;
    case MachineExit::Kind::reboot: return kExitGuestReboot;
    case MachineExit::Kind::crash:
      fmt::print(stderr, "cairn: the guest crashed: {}\n", e.detail);
      return kExitGuestCrash;
    case MachineExit::Kind::stopped:
      if (!e.detail.empty()) fmt::print(stderr, "cairn: {}\n", e.detail);
      return kExitOk;
    case MachineExit::Kind::error: return report_error(Error{e.code, e.detail});
  }
  return kExitFailed;
}

void register_run_commands(CLI::App& app, CliContext& ctx) {
  auto* sub = app.add_subcommand("run", "Boot a VM in the foreground (exit status: the guest command's, "
                                        "0 on poweroff, 100 on reboot, 101 on a guest crash)");
  auto opts = std::make_shared<MachineOptions>();
  opts->add_to(sub);
  auto ckpt = std::make_shared<RunCheckpointOptions>();
  ckpt->add_to(sub);
  sub->footer("Example: cairn run --cpus 2 -- 'uname -a; exit 3'");
  on_run(sub, ctx, [opts, ckpt] {
    auto cfg = opts->to_config();
    if (!cfg) return report_error(cfg.error());
    if (auto host = check_host_kvm(); !host) return report_error(host.error());
    auto m = ckpt->make_machine(*cfg);
    if (!m) return report_error(m.error());
    auto signals = StopOnSignals::install(**m);
    if (!signals) return report_error(signals.error());
    return exit_status_for(ckpt->run(**m));
  });
}

}  // namespace cairn
