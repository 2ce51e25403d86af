// `cairn host-info`: what this host's KVM can do (hardware-backed or PVM).
#include <fmt/format.h>

#include "vmm/cli/commands.hpp"
#include "vmm/cli/exit_codes.hpp"
#include "vmm/kvm/host_check.hpp"

namespace cairn {

void register_info_commands(CLI::App& app, CliContext& ctx) {
  auto* sub = app.add_subcommand("host-info", "Tell whether this host's /dev/kvm can run Linux guests");
  on_run(sub, ctx, [] {
    auto r = check_host_kvm();
    if (!r) return report_error(r.error());
    fmt::print("/dev/kvm: hardware virtualization ({})\n", *r);
    return int(kExitOk);
  });
}

}  // namespace cairn
