#include "guest-agent/client/agent_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <random>

namespace cairn {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1'000'000));
}

// Waits for `events` on fd until the deadline; Errc::timeout when it passes.
Result<void> wait_fd(int fd, short events, Clock::time_point deadline, std::string_view what) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, ms_left(deadline));
    if (r > 0) return {};
    if (r == 0) return fail(Errc::timeout, "timed out {}", what);
    if (errno != EINTR) return fail_errno("waiting while {}", what);
  }
}

Result<UniqueFd> connect_unix(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return fail(Errc::invalid_argument, "socket path '{}' is empty or too long", path);
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s) return fail_errno("creating a Unix socket");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int e = errno;
    if (e == ENOENT || e == ECONNREFUSED)
      return fail(Errc::not_found, "connecting to {}: {} (is the VM running?)", path, std::strerror(e));
    errno = e;
    return fail_errno("connecting to {}", path);
  }
  return s;
}

// Reads the hybrid vsock answer "OK <n>\n" byte by byte, so no stream byte is consumed.
Result<void> hybrid_handshake(int fd, uint32_t port, Clock::time_point deadline) {
  std::string line = "CONNECT " + std::to_string(port) + "\n";
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
    return fail_errno("sending CONNECT {}", port);
  std::string answer;
  while (answer.size() < 32) {
    auto w = wait_fd(fd, POLLIN, deadline, fmt::format("waiting for the VM to connect vsock port {}", port));
    if (!w) return std::unexpected(std::move(w.error()).context("guest agent"));
    char c;
    ssize_t n = ::recv(fd, &c, 1, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0)
      return fail(Errc::not_found, "guest agent: nothing listens on vsock port {} in the guest (connection closed)",
                  port);
    if (c == '\n') break;
    answer.push_back(c);
  }
  if (answer.rfind("OK ", 0) != 0)
    return fail(Errc::corrupt, "guest agent: unexpected answer '{}' to CONNECT {}", answer, port);
  return {};
}

}  // namespace

Error agent_error(std::string_view command, const json& error) {
  std::string cls = error.is_object() && error.contains("class") && error["class"].is_string()
                        ? error["class"].get<std::string>() : "";
  std::string desc = error.is_object() && error.contains("desc") && error["desc"].is_string()
                         ? error["desc"].get<std::string>() : error.dump();
  Errc code = Errc::failed;
  if (cls == kCommandNotFound)
    code = desc.find("disabled") != std::string::npos ? Errc::invalid_state : Errc::unsupported;
  return Error{code, fmt::format("guest agent: {}: {}", command, desc)};
}

Result<AgentClient> AgentClient::connect(const AgentEndpoint& ep, AgentTimeouts timeouts) {
  auto deadline = Clock::now() + timeouts.connect;
  CAIRN_TRY_CTX(fd, connect_unix(ep.path), "guest agent");
  if (ep.kind == AgentEndpoint::Kind::hybrid_vsock) {
    if (auto h = hybrid_handshake(fd.get(), ep.port, deadline); !h) return std::unexpected(h.error());
  }
  AgentClient c(std::move(fd), timeouts);
  // The first sync is bounded by what is left of the connect timeout.
  AgentTimeouts first = timeouts;
  first.reply = std::max(std::chrono::milliseconds(1),
                         std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
  std::swap(c.timeouts_, first);
  auto s = c.sync();
  std::swap(c.timeouts_, first);
  if (!s) return std::unexpected(std::move(s.error()));
  return c;
}

Result<void> AgentClient::send(std::string_view bytes, Clock::time_point deadline) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd_.get(), bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (auto w = wait_fd(fd_.get(), POLLOUT, deadline, "sending to the guest agent"); !w) return w;
      continue;
    }
    return fail(Errc::io, "guest agent: connection lost while sending: {}", std::strerror(errno));
  }
  return {};
}

Result<json> AgentClient::next_reply(Clock::time_point deadline) {
  for (;;) {
    while (!pending_.empty()) {
      JsonFrame f = std::move(pending_.front());
      pending_.erase(pending_.begin());
      if (f.kind == JsonFrame::error) return fail(Errc::corrupt, "guest agent: bad reply: {}", f.data);
      json j = json::parse(f.data, nullptr, false);
      if (j.is_discarded() || !j.is_object()) return fail(Errc::corrupt, "guest agent: reply is not a JSON object");
      return j;
    }
    if (auto w = wait_fd(fd_.get(), POLLIN, deadline, "waiting for the guest agent's reply"); !w)
      return std::unexpected(w.error());
    char buf[4096];
    ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n == 0) return fail(Errc::io, "guest agent: connection closed");
    if (n < 0) return fail(Errc::io, "guest agent: connection lost: {}", std::strerror(errno));
    reader_.feed(std::string_view(buf, static_cast<size_t>(n)), pending_);
  }
}

Result<void> AgentClient::sync() {
  auto deadline = Clock::now() + timeouts_.reply;
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  // Positive and within 53 bits, so any JSON implementation round-trips it exactly.
  int64_t id = static_cast<int64_t>(rng() & ((1ULL << 53) - 1)) | 1;
  json req{{"execute", "guest-sync-delimited"}, {"arguments", {{"id", id}}}};
  std::string bytes(1, kAgentDelimiter);
  bytes += req.dump() + "\n";
  if (auto s = send(bytes, deadline); !s) return s;
  for (;;) {
    auto r = next_reply(deadline);
    if (!r) {
      if (r.error().code == Errc::corrupt) continue;  // stale garbage before our reply
      broken_ = true;
      return std::unexpected(std::move(r.error()).context("synchronising"));
    }
    if (r->contains("return") && (*r)["return"] == id) {
      broken_ = false;
      return {};
    }
    // An older reply, or an error for stale input: keep reading.
  }
}

Result<json> AgentClient::execute(std::string_view command, const json& arguments) {
  if (broken_) {
    if (auto s = sync(); !s) return std::unexpected(s.error());
  }
  auto deadline = Clock::now() + timeouts_.reply;
  json req{{"execute", command}};
  if (!arguments.is_null()) req["arguments"] = arguments;
  if (auto s = send(req.dump() + "\n", deadline); !s) return std::unexpected(s.error());
  auto r = next_reply(deadline);
  if (!r) {
    broken_ = true;
    return std::unexpected(std::move(r.error()).context(command));
  }
  if (r->contains("error")) return std::unexpected(agent_error(command, (*r)["error"]));
  if (!r->contains("return")) return fail(Errc::corrupt, "guest agent: {}: reply has neither return nor error", command);
  return (*r)["return"];
}

Result<void> AgentClient::ping() {
  auto r = execute("guest-ping");
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<AgentInfo> AgentClient::info() {
  auto res = execute("guest-info");
  if (!res) return std::unexpected(res.error());
  const json& r = *res;
  AgentInfo info;
  if (!r.is_object() || !r.contains("version") || !r["version"].is_string() || !r.contains("supported_commands") ||
      !r["supported_commands"].is_array())
    return fail(Errc::corrupt, "guest agent: guest-info: unexpected reply {}", r.dump());
  info.version = r["version"].get<std::string>();
  for (const auto& c : r["supported_commands"]) {
    AgentCommandInfo ci;
    if (c.contains("name") && c["name"].is_string()) ci.name = c["name"].get<std::string>();
    if (c.contains("enabled") && c["enabled"].is_boolean()) ci.enabled = c["enabled"].get<bool>();
    if (c.contains("success-response") && c["success-response"].is_boolean())
      ci.success_response = c["success-response"].get<bool>();
    info.commands.push_back(std::move(ci));
  }
  return info;
}

Result<FreezeStatus> AgentClient::fsfreeze_status() {
  auto res = execute("guest-fsfreeze-status");
  if (!res) return std::unexpected(res.error());
  const json& r = *res;
  if (r == "thawed") return FreezeStatus::thawed;
  if (r == "frozen") return FreezeStatus::frozen;
  return fail(Errc::corrupt, "guest agent: guest-fsfreeze-status: unexpected reply {}", r.dump());
}

namespace {
Result<int64_t> count_reply(std::string_view cmd, Result<json> r) {
  if (!r) return std::unexpected(r.error());
  if (!r->is_number_integer()) return fail(Errc::corrupt, "guest agent: {}: unexpected reply {}", cmd, r->dump());
  return r->get<int64_t>();
}
}  // namespace

Result<int64_t> AgentClient::fsfreeze_freeze() {
  return count_reply("guest-fsfreeze-freeze", execute("guest-fsfreeze-freeze"));
}

Result<int64_t> AgentClient::fsfreeze_thaw() {
  return count_reply("guest-fsfreeze-thaw", execute("guest-fsfreeze-thaw"));
}

Result<AgentClient::FreezeWindow> AgentClient::freeze_window() {
  auto r = execute("cairn-fsfreeze-window");
  if (!r) return std::unexpected(r.error());
  auto number = [&](const char* k) { return r->is_object() && r->contains(k) && (*r)[k].is_number(); };
  if (!number("frozen-ms") || !number("thaw-ms"))
    return fail(Errc::corrupt, "guest agent: cairn-fsfreeze-window: unexpected reply {}", r->dump());
  return FreezeWindow{(*r)["frozen-ms"].get<double>(), (*r)["thaw-ms"].get<double>()};
}

}  // namespace cairn
