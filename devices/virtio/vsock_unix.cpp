#include "devices/virtio/vsock_unix.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <array>
#include <charconv>

namespace cairn {
namespace {

Result<sockaddr_un> make_addr(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return fail(Errc::invalid_argument, "unix socket path '{}' is empty or longer than {} bytes", path,
                sizeof(addr.sun_path) - 1);
  std::copy(path.begin(), path.end(), addr.sun_path);
  return addr;
}

}  // namespace

Result<UniqueFd> vsock_listen_unix(const std::string& path) {
  CAIRN_TRY_CTX(addr, make_addr(path), "vsock listen socket");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return fail(Errc::invalid_argument, "vsock listen socket: '{}' exists and is not a socket", path);
    if (::unlink(path.c_str()) != 0) return fail_errno("removing stale vsock socket '{}'", path);
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("creating vsock listen socket");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
    return fail_errno("binding vsock socket '{}'", path);
  if (::listen(fd.get(), 64) != 0) return fail_errno("listening on vsock socket '{}'", path);
  return fd;
}

Result<UniqueFd> vsock_connect_unix(const std::string& path) {
  CAIRN_TRY_CTX(addr, make_addr(path), "vsock connect");
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("creating vsock socket");
  // Unix stream connects complete at once or fail (EAGAIN: backlog full).
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
    return fail_errno("connecting to '{}'", path);
  return fd;
}

std::optional<uint32_t> vsock_parse_connect(std::string_view line) {
  constexpr std::string_view kPrefix = "CONNECT ";
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (!line.starts_with(kPrefix)) return std::nullopt;
  line.remove_prefix(kPrefix.size());
  uint32_t port = 0;
  auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), port, 10);
  if (ec != std::errc{} || end != line.data() + line.size() || line.empty()) return std::nullopt;
  return port;
}

VsockCommandRead vsock_read_command(int fd) {
  std::array<char, kVsockMaxCommandLine> buf{};
  ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return {};
    return {VsockCommandRead::invalid};
  }
  if (n == 0) return {VsockCommandRead::invalid};  // closed before sending a command
  auto nl = std::find(buf.begin(), buf.begin() + n, '\n');
  if (nl == buf.begin() + n) {
    if (static_cast<size_t>(n) == buf.size()) return {VsockCommandRead::invalid};  // line too long
    return {};
  }
  size_t line_len = static_cast<size_t>(nl - buf.begin());
  if (::recv(fd, buf.data(), line_len + 1, MSG_DONTWAIT) != static_cast<ssize_t>(line_len + 1))
    return {VsockCommandRead::invalid};
  auto port = vsock_parse_connect(std::string_view(buf.data(), line_len));
  if (!port) return {VsockCommandRead::invalid};
  return {VsockCommandRead::port, *port};
}

}  // namespace cairn
