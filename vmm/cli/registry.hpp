// The list of command groups; each group lives in its own area's folder.
#pragma once
#include "vmm/cli/command.hpp"
#include "vmm/cli/exit_codes.hpp"

namespace cairn {
void register_all_commands(CLI::App& app, CliContext& ctx);
}
