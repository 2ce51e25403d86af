// Freeze hooks, as qemu-ga's fsfreeze-hook.d: every executable regular file
// in a folder runs with one argument, "freeze" before the file systems are
// frozen (so applications can flush and hold their writes) and "thaw" after
// they are thawed. Hooks run one at a time in name order; names ending in
// '~' or containing ".dpkg-" or ".rpm" are package-manager leftovers and are
// skipped. A hook that runs longer than the timeout is killed and counts as
// failed. A missing folder means no hooks.
#pragma once
#include <chrono>
#include <string>
#include <vector>

#include "guest-agent/agent/freezer.hpp"

namespace cairn {

inline constexpr const char* kDefaultHookDir = "/etc/cairn-agent/fsfreeze-hook.d";

class HookDirRunner final : public HookRunner {
 public:
  HookDirRunner(std::string dir, std::chrono::milliseconds timeout) : dir_(std::move(dir)), timeout_(timeout) {}
  Result<void> run(std::string_view action) override;
  // The hooks that would run, in order (full paths).
  std::vector<std::string> list() const;

 private:
  Result<void> run_one(const std::string& path, std::string_view action) const;
  std::string dir_;
  std::chrono::milliseconds timeout_;
};

}  // namespace cairn
