#include "vmm/cli/registry.hpp"

#include "vmm/cli/commands.hpp"

namespace cairn {

void register_all_commands(CLI::App& app, CliContext& ctx) {
  // One line per command group (declared in commands.hpp).
  register_info_commands(app, ctx);
  register_run_commands(app, ctx);
  register_disk_commands(app, ctx);
  register_agent_commands(app, ctx);
  register_vm_commands(app, ctx);
  register_job_commands(app, ctx);
  register_checkpoint_commands(app, ctx);
}

}  // namespace cairn
