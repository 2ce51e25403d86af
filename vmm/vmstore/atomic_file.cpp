#include "vmm/vmstore/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "vmm/base/unique_fd.hpp"

namespace cairn {

namespace {
Result<void> write_all(int fd, std::string_view data, const std::string& path) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("writing {}", path);
    off += static_cast<size_t>(n);
  }
  return {};
}
}  // namespace

Result<void> fsync_dir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return fail_errno("opening folder {}", dir);
  if (::fsync(fd.get()) != 0 && errno != EINVAL) return fail_errno("syncing folder {}", dir);
  return {};
}

Result<void> write_file_atomic(const std::string& path, std::string_view data, unsigned mode) {
  std::filesystem::path p(path);
  std::string dir = p.has_parent_path() ? p.parent_path().string() : std::string(".");
  std::string tmp = fmt::format("{}/.{}.tmp.{}", dir, p.filename().string(), ::getpid());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return fail_errno("creating {}", tmp);
  auto done = [&](Result<void> r) {
    if (!r) ::unlink(tmp.c_str());
    return r;
  };
  if (auto r = write_all(fd.get(), data, tmp); !r) return done(r);
  if (::fsync(fd.get()) != 0) return done(fail_errno("syncing {}", tmp));
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return done(fail_errno("renaming {} to {}", tmp, path));
  return fsync_dir(dir);
}

Result<std::string> read_small_file(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail_errno("opening {}", path);
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("reading {}", path);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes)
      return fail(Errc::corrupt, "{} is larger than {} bytes", path, max_bytes);
  }
  return out;
}

}  // namespace cairn
