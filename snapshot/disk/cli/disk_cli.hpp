// Pieces shared by the `cairn disk` subcommands.
#pragma once
#include <string>

#include "vmm/base/parse_size.hpp"
#include "vmm/cli/command.hpp"

namespace cairn::disk {

// `cairn disk bench`: timed reads/writes through a chain, for scripts/bench-disk.
void register_disk_bench(CLI::App* disk, CliContext& ctx);

}  // namespace cairn::disk
