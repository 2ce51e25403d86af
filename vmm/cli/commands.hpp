// Declarations of every command group's registration function.
#pragma once
#include "vmm/cli/command.hpp"

namespace cairn {
void register_info_commands(CLI::App& app, CliContext& ctx);   // vmm/cli/info_command.cpp
void register_run_commands(CLI::App& app, CliContext& ctx);    // vmm/cli/run_command.cpp
void register_disk_commands(CLI::App& app, CliContext& ctx);   // snapshot/disk/cli/disk_command.cpp
void register_agent_commands(CLI::App& app, CliContext& ctx);  // guest-agent/agent_command.cpp
void register_vm_commands(CLI::App& app, CliContext& ctx);     // vmm/cli/vm_command.cpp
void register_job_commands(CLI::App& app, CliContext& ctx);    // vmm/jobs/job_command.cpp
void register_checkpoint_commands(CLI::App& app, CliContext& ctx);  // vmm/cli/checkpoint_command.cpp
}  // namespace cairn
