// Unix stream sockets by path, with paths longer than sun_path (108 bytes)
// reached through the folder's /proc/self/fd link, so a deep $CAIRN_HOME works.
#pragma once
#include <string>

#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

// A listening socket at `path` with the given mode (e.g. 0600); the mode is
// in place before any client can connect. Fails if `path` exists.
Result<UniqueFd> unix_listen(const std::string& path, unsigned mode);
// A connected socket; ECONNREFUSED (nobody listening) is Errc::invalid_state,
// a missing path Errc::not_found, a backlog still full after `timeout_ms`
// Errc::timeout.
Result<UniqueFd> unix_connect(const std::string& path, int timeout_ms = 5000);

// Waits until `fd` is readable (or writable), up to `timeout_ms`; false on timeout.
Result<bool> wait_fd(int fd, bool for_write, int timeout_ms);

}  // namespace cairn
