#include "vmm/control/unix_socket.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

namespace cairn {

namespace {
// Fills `addr` for `path`; `dir_fd` keeps a folder open when the long-path
// route through /proc/self/fd is used.
Result<void> make_addr(const std::string& path, sockaddr_un& addr, UniqueFd& dir_fd) {
  addr = {};
  addr.sun_family = AF_UNIX;
  std::string use = path;
  if (path.size() >= sizeof(addr.sun_path)) {
    std::filesystem::path p(path);
    dir_fd = UniqueFd(::open(p.parent_path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir_fd) return fail_errno("opening folder {}", p.parent_path().string());
    use = fmt::format("/proc/self/fd/{}/{}", dir_fd.get(), p.filename().string());
    if (use.size() >= sizeof(addr.sun_path))
      return fail(Errc::invalid_argument, "socket name {} is too long", p.filename().string());
  }
  std::memcpy(addr.sun_path, use.c_str(), use.size() + 1);
  return {};
}
}  // namespace

Result<UniqueFd> unix_listen(const std::string& path, unsigned mode) {
  sockaddr_un addr;
  UniqueFd dir_fd;
  if (auto r = make_addr(path, addr, dir_fd); !r) return std::unexpected(r.error());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("creating a Unix socket");
  // The socket file gets its mode at bind time from the umask: no window in
  // which another user could connect.
  mode_t old = ::umask(static_cast<mode_t>(~mode & 0777));
  int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  ::umask(old);
  if (rc != 0) {
    errno = err;
    if (err == ENXIO || err == EOPNOTSUPP || err == EPERM)
      return fail_errno("creating socket {} (the file system may not support Unix sockets)", path);
    return fail_errno("creating socket {}", path);
  }
  if (::listen(fd.get(), 8) != 0) return fail_errno("listening on {}", path);
  return fd;
}

Result<UniqueFd> unix_connect(const std::string& path, int timeout_ms) {
  sockaddr_un addr;
  UniqueFd dir_fd;
  if (auto r = make_addr(path, addr, dir_fd); !r) return std::unexpected(r.error());
  // Non-blocking: a listener that stopped accepting (a stuck VMM) fills its
  // backlog, and a blocking connect would then wait forever.
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return fail_errno("creating a Unix socket");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno == EINTR) continue;
    if (errno == ECONNREFUSED) return fail(Errc::invalid_state, "nothing is listening on {}", path);
    if (errno == ENOENT) return fail(Errc::not_found, "socket {} does not exist", path);
    if (errno != EAGAIN) return fail_errno("connecting to {}", path);
    // AF_UNIX reports a full backlog as EAGAIN and has no completion to poll for.
    if (std::chrono::steady_clock::now() >= deadline)
      return fail(Errc::timeout, "{} accepts no connections (waited {} ms); its owner may be stuck", path,
                  timeout_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK) != 0)
    return fail_errno("connecting to {}", path);
  return fd;
}

Result<bool> wait_fd(int fd, bool for_write, int timeout_ms) {
  pollfd p{fd, static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
  for (;;) {
    int n = ::poll(&p, 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("poll");
    return n > 0;
  }
}

}  // namespace cairn
