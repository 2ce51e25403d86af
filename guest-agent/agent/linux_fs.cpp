// LinuxFsOps: the real FIFREEZE/FITHAW calls behind FreezeController.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "guest-agent/agent/freezer.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

Result<std::vector<MountPoint>> LinuxFsOps::mounts() {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return fail_errno("opening /proc/self/mountinfo");
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<MountPoint> out;
  for (auto& m : parse_mountinfo(ss.str())) {
    if (!freeze_candidate(m)) continue;
    if (m.major == 0) {
      // btrfs: only when its source is a block device.
      struct stat st {};
      if (::stat(m.source.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) continue;
      m.major = ::major(st.st_rdev);
      m.minor = ::minor(st.st_rdev);
    }
    out.push_back(std::move(m));
  }
  return out;
}

Result<bool> LinuxFsOps::freeze(const MountPoint& m) {
  UniqueFd fd(::open(m.dir.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECTORY));
  if (!fd) return fail_errno("opening {}", m.dir);
  if (::ioctl(fd.get(), FIFREEZE, 0) == 0) return true;
  // Not freezable (EOPNOTSUPP), or frozen already through another mount of the same device (EBUSY).
  if (errno == EOPNOTSUPP || errno == EBUSY) return false;
  return fail_errno("freezing {} ({})", m.dir, m.type);
}

bool LinuxFsOps::thaw(const MountPoint& m) {
  UniqueFd fd(::open(m.dir.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECTORY));
  if (!fd) return false;
  // Several FIFREEZEs need as many FITHAWs; the file system is thawed once one fails.
  bool thawed = false;
  for (int i = 0; i < 64 && ::ioctl(fd.get(), FITHAW, 0) == 0; ++i) thawed = true;
  return thawed;
}

}  // namespace cairn
