// Host-side Unix stream sockets for virtio-vsock, in the style of
// Firecracker's hybrid vsock:
//  - host -> guest: the VMM listens on PATH; a host program connects and
//    writes the line "CONNECT <port>\n" (decimal guest port); once the guest
//    accepts, the VMM writes "OK <host_port>\n" and the stream carries data.
//  - guest -> host: a guest connecting to CID 2 port P makes the VMM connect
//    to the Unix socket "PATH_P".
// All sockets are non-blocking and close-on-exec.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

// The longest "CONNECT <port>\n" line accepted (a u32 port needs 19 bytes).
inline constexpr size_t kVsockMaxCommandLine = 32;

// Binds and listens on `path`. A stale socket file left there is replaced;
// any other existing file is an error (never delete a user's file).
Result<UniqueFd> vsock_listen_unix(const std::string& path);

// Connects to `path` without blocking; fails when nobody listens there.
Result<UniqueFd> vsock_connect_unix(const std::string& path);

// "CONNECT 52" (the line without its '\n'; a trailing '\r' is tolerated) -> 52.
std::optional<uint32_t> vsock_parse_connect(std::string_view line);

// Outcome of trying to read the command line from a freshly accepted socket.
struct VsockCommandRead {
  enum Kind { pending, port, invalid } kind = pending;
  uint32_t guest_port = 0;
};
// Consumes exactly the command line (never bytes after it, which belong to
// the stream), using MSG_PEEK to find the newline.
VsockCommandRead vsock_read_command(int fd);

}  // namespace cairn
