// The checkpoint commands that live beside `cairn checkpoint`'s own file.
#pragma once
#include "vmm/cli/command.hpp"

namespace cairn {
void add_checkpoint_export(CLI::App& checkpoint_group, CliContext& ctx);  // vm_settings_command.cpp
void add_vm_checkpoint_commands(CLI::App& vm_group, CliContext& ctx);     // vm set, vm import
}  // namespace cairn
