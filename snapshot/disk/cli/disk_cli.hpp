// Pieces shared by the `cairn disk` subcommands.
#pragma once
#include <string>

#include "snapshot/disk/units.hpp"
#include "vmm/cli/command.hpp"

namespace cairn::disk {

// `cairn disk bench`: timed reads/writes through a chain, for scripts/bench-disk.
void register_disk_bench(CLI::App* disk, CliContext& ctx);

}  // namespace cairn::disk
