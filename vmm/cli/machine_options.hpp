// The VM options shared by `cairn run` and `cairn vm create`, parsed into a MachineConfig.
#pragma once
#include <string>
#include <vector>

#include "vmm/base/error.hpp"
#include "vmm/cli/command.hpp"
#include "vmm/machine/machine_config.hpp"

namespace cairn {

struct MachineOptions {
  std::string kernel, initrd, cmdline, memory = "256M", vsock, console = "stdio";
  unsigned cpus = 1;
  std::vector<std::string> disks;
  std::vector<std::string> command;

  void add_to(CLI::App* sub);
  // Resolves defaults (images next to the binary or $CAIRN_IMAGES) and checks files.
  Result<MachineConfig> to_config() const;
};

// Where the default guest images are: $CAIRN_IMAGES, else <dir of cairn>/images.
std::string default_images_dir();

}  // namespace cairn
