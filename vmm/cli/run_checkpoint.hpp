// `cairn run` options that exercise standard checkpoints without the control
// socket: --checkpoint-after SECONDS --checkpoint-dir DIR takes one checkpoint
// while the guest runs (and lets it go on); --restore DIR starts the guest
// from a checkpoint instead of booting it.
#pragma once
#include <memory>
#include <string>

#include "vmm/base/error.hpp"
#include "vmm/cli/command.hpp"
#include "vmm/machine/machine.hpp"

namespace cairn {

struct RunCheckpointOptions {
  double checkpoint_after = -1;  // seconds after start; < 0: none
  std::string checkpoint_dir;
  std::string restore_dir;

  void add_to(CLI::App* sub);
  // A booted machine, or one restored from --restore.
  Result<std::unique_ptr<Machine>> make_machine(const MachineConfig& cfg) const;
  // Machine::run(), taking the checkpoint on the way when asked for one.
  MachineExit run(Machine& m) const;
};

}  // namespace cairn
