#include "vmm/control/client.hpp"

#include <sys/socket.h>

#include <chrono>

#include "vmm/control/protocol.hpp"
#include "vmm/control/unix_socket.hpp"

namespace cairn {

using nlohmann::json;

Result<ControlClient> ControlClient::connect(const std::string& path, int timeout_ms) {
  auto fd = unix_connect(path, timeout_ms);
  if (!fd) return std::unexpected(fd.error());
  return ControlClient(std::move(*fd));
}

Result<json> ControlClient::request_line(std::string_view line, int timeout_ms) {
  using clock = std::chrono::steady_clock;
  auto deadline = clock::now() + std::chrono::milliseconds(timeout_ms);
  auto left = [&] {
    return static_cast<int>(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count()));
  };
  std::string out(line);
  out += '\n';
  size_t off = 0;
  while (off < out.size()) {
    auto ready = wait_fd(fd_.get(), true, left());
    if (!ready) return std::unexpected(ready.error());
    if (!*ready) return fail(Errc::timeout, "the VM did not take the request within {} ms", timeout_ms);
    ssize_t n = ::send(fd_.get(), out.data() + off, out.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return fail_errno("sending to the control socket");
    off += static_cast<size_t>(n);
  }
  for (;;) {
    if (auto nl = buf_.find('\n'); nl != std::string::npos) {
      json reply = json::parse(std::string_view(buf_).substr(0, nl), nullptr, false);
      buf_.erase(0, nl + 1);
      if (reply.is_discarded()) return fail(Errc::corrupt, "the VM sent a reply that is not JSON");
      return reply;
    }
    if (buf_.size() > kMaxControlLine) return fail(Errc::corrupt, "the VM's reply is too long");
    auto ready = wait_fd(fd_.get(), false, left());
    if (!ready) return std::unexpected(ready.error());
    if (!*ready) return fail(Errc::timeout, "the VM did not answer within {} ms", timeout_ms);
    char chunk[4096];
    ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return fail_errno("reading from the control socket");
    if (n == 0) return fail(Errc::failed, "the VM closed the control connection without answering");
    buf_.append(chunk, static_cast<size_t>(n));
  }
}

Result<json> ControlClient::call(std::string_view command, const json& args, int timeout_ms) {
  json req = {{"command", std::string(command)}};
  if (!args.empty()) req["arguments"] = args;
  auto reply = request_line(req.dump(), timeout_ms);
  if (!reply) return std::unexpected(reply.error());
  return control_reply_result(*reply);
}

Result<json> control_call(const std::string& socket_path, std::string_view command, const json& args,
                          int timeout_ms) {
  auto c = ControlClient::connect(socket_path, timeout_ms);
  if (!c) return std::unexpected(c.error());
  return c->call(command, args, timeout_ms);
}

}  // namespace cairn
