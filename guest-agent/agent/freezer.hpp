// File-system freeze for production checkpoints, as qemu-ga does it on Linux:
// enumerate the mounted file systems, keep the local block-device ones, run
// the freeze hooks, FIFREEZE in reverse mount order (children before their
// parents), count the frozen ones; on any failure thaw everything and report
// the error. Thaw issues FITHAW on every candidate mount (also those frozen by
// an earlier agent process) and counts those it thawed, then runs the hooks.
//
// The OS calls sit behind FsOps and HookRunner so the sequencing and its
// error paths are testable without root or a spare file system.
#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/base/error.hpp"

namespace cairn {

struct MountPoint {
  std::string dir;     // mount point, octal escapes (\040) decoded
  std::string type;    // file system type, e.g. "ext4"
  std::string source;  // device, e.g. "/dev/vda"
  unsigned major = 0;  // st_dev of the mounted file system
  unsigned minor = 0;
};

// Parses /proc/self/mountinfo text into mounts in mount order. Lines that do
// not parse are skipped.
std::vector<MountPoint> parse_mountinfo(std::string_view text);

// Whether a mount may be frozen: a block-device file system (major != 0).
// Pseudo file systems (proc, sysfs, tmpfs, devtmpfs, the initramfs) have
// major 0; btrfs reports 0 too, so it is kept and checked by its device.
bool freeze_candidate(const MountPoint& m);

class FsOps {
 public:
  virtual ~FsOps() = default;
  // The candidate mounts in mount order.
  virtual Result<std::vector<MountPoint>> mounts() = 0;
  // FIFREEZE: true when frozen now, false when the file system cannot be
  // frozen (EOPNOTSUPP) or already is (EBUSY, e.g. a second bind mount);
  // an error for anything else.
  virtual Result<bool> freeze(const MountPoint& m) = 0;
  // FITHAW until it fails: true when at least one call thawed it.
  virtual bool thaw(const MountPoint& m) = 0;
};

class HookRunner {
 public:
  virtual ~HookRunner() = default;
  // Runs every hook with `action` ("freeze" or "thaw"); an error names the
  // first hook that failed (all thaw hooks run even after a failure).
  virtual Result<void> run(std::string_view action) = 0;
};

class FreezeController {
 public:
  FreezeController(FsOps& fs, HookRunner* hooks) : fs_(fs), hooks_(hooks) {}

  // The number of file systems frozen. On failure nothing stays frozen and
  // the thaw hooks have run.
  Result<int> freeze();
  // The number of file systems thawed by this call (thaw hooks run when
  // `run_hooks`).
  Result<int> thaw(bool run_hooks);

  // The last freeze that was thawed again: from its last FIFREEZE to the
  // last FITHAW (before the thaw hooks), the time the guest stood frozen.
  struct Window {
    std::chrono::steady_clock::duration frozen;
    std::chrono::steady_clock::duration thaw;  // of which the thaw itself (FITHAW calls)
    int filesystems;
  };
  std::optional<Window> last_window() const { return last_window_; }

 private:
  int thaw_all();
  int thaw_each(const std::vector<MountPoint>& ms);  // how many thawed
  FsOps& fs_;
  HookRunner* hooks_;
  std::optional<std::chrono::steady_clock::time_point> frozen_at_;
  int frozen_count_ = 0;
  std::optional<Window> last_window_;
};

// The real thing: /proc/self/mountinfo, FIFREEZE/FITHAW.
class LinuxFsOps final : public FsOps {
 public:
  Result<std::vector<MountPoint>> mounts() override;
  Result<bool> freeze(const MountPoint& m) override;
  bool thaw(const MountPoint& m) override;
};

}  // namespace cairn
