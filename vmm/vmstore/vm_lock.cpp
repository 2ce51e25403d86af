#include "vmm/vmstore/vm_lock.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>

namespace cairn {

namespace {
flock whole_file(short type) {
  flock fl{};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;  // to the end, whatever the size
  fl.l_pid = 0;  // required by F_OFD_*
  return fl;
}

pid_t read_pid(int fd) {
  char buf[32] = {};
  ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return 0;
  long v = 0;
  auto [end, ec] = std::from_chars(buf, buf + n, v);
  if (ec != std::errc() || v <= 0 || (end != buf + n && *end != '\n')) return 0;
  return static_cast<pid_t>(v);
}
}  // namespace

Result<VmLock> VmLock::try_acquire(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return fail_errno("opening lock file {}", path);
  flock fl = whole_file(F_WRLCK);
  if (::fcntl(fd.get(), F_OFD_SETLK, &fl) != 0) {
    if (errno == EAGAIN || errno == EACCES) return fail(Errc::busy, "{} is held by another process", path);
    return fail_errno("locking {}", path);
  }
  return VmLock(std::move(fd));
}

Result<void> VmLock::write_pid(pid_t pid) {
  std::string text = fmt::format("{}\n", pid);
  if (::ftruncate(fd_.get(), 0) != 0) return fail_errno("truncating the lock file");
  if (::pwrite(fd_.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
    return fail_errno("writing the lock file");
  return {};
}

Result<LockState> probe_lock(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return LockState{};
    return fail_errno("opening lock file {}", path);
  }
  // A write lock is what the holder has; asking about F_WRLCK reports any holder.
  flock fl = whole_file(F_WRLCK);
  if (::fcntl(fd.get(), F_OFD_GETLK, &fl) != 0) return fail_errno("testing lock {}", path);
  if (fl.l_type == F_UNLCK) return LockState{};
  return LockState{true, read_pid(fd.get())};
}

}  // namespace cairn
