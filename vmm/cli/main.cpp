// cairn: the command-line entry point. Each area registers its subcommands.
#include <cstdio>

#include "vmm/cli/command.hpp"
#include "vmm/cli/registry.hpp"

int main(int argc, char** argv) {
  CLI::App app{"cairn: a small KVM virtual machine monitor with checkpoints", "cairn"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cairn 0.1");
  cairn::CliContext ctx;
  cairn::register_all_commands(app, ctx);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    // CLI11 returns 0 for --help/--version; usage errors become "invalid parameter".
    return rc == 0 ? 0 : cairn::kExitInvalidParameter;
  }
  if (!ctx.action) return cairn::kExitInvalidParameter;
  return ctx.action();
}
