// A recording FsOps/HookRunner for the freeze sequencing tests (the real
// FIFREEZE needs root and a spare file system: tests/integration/agent_freeze.sh).
#pragma once
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "guest-agent/agent/freezer.hpp"

namespace cairn::test {

class FakeFs : public FsOps {
 public:
  std::vector<MountPoint> table;
  std::set<std::string> unfreezable;  // freeze() answers false (EOPNOTSUPP)
  std::string fail_on;                // freeze() fails here
  std::set<std::string> frozen;
  std::vector<std::string> log;       // "freeze /a", "thaw /a"
  mutable std::mutex mu;

  static MountPoint mount(std::string dir) { return MountPoint{dir, "ext4", "/dev/x", 254, 0}; }

  Result<std::vector<MountPoint>> mounts() override { return table; }
  Result<bool> freeze(const MountPoint& m) override {
    std::lock_guard lock(mu);
    log.push_back("freeze " + m.dir);
    if (m.dir == fail_on) return fail(Errc::io, "freezing {}: Input/output error", m.dir);
    if (unfreezable.count(m.dir)) return false;
    if (frozen.count(m.dir)) return false;  // EBUSY
    frozen.insert(m.dir);
    return true;
  }
  bool thaw(const MountPoint& m) override {
    std::lock_guard lock(mu);
    if (!frozen.erase(m.dir)) return false;
    log.push_back("thaw " + m.dir);
    return true;
  }
  size_t frozen_count() const {
    std::lock_guard lock(mu);
    return frozen.size();
  }
};

class FakeHooks : public HookRunner {
 public:
  std::vector<std::string> calls;
  bool fail_freeze = false;
  Result<void> run(std::string_view action) override {
    calls.emplace_back(action);
    if (fail_freeze && action == "freeze") return fail(Errc::failed, "hook db exited with status 1");
    return {};
  }
};

}  // namespace cairn::test
