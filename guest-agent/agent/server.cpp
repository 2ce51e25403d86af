#include "guest-agent/agent/server.hpp"

#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace cairn {

struct AgentServer::Client {
  UniqueFd fd;
  JsonStreamReader reader;
};

namespace {

Result<UniqueFd> listen_vsock(uint32_t port) {
  UniqueFd s(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return fail_errno("creating a vsock socket");
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    return fail_errno("binding vsock port {}", port);
  if (::listen(s.get(), 8) != 0) return fail_errno("listening on vsock port {}", port);
  return s;
}

Result<UniqueFd> listen_unix(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return fail(Errc::invalid_argument, "Unix socket path '{}' is empty or too long", path);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return fail(Errc::invalid_argument, "{} exists and is not a socket", path);
    ::unlink(path.c_str());
  }
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return fail_errno("creating a Unix socket");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return fail_errno("binding {}", path);
  if (::listen(s.get(), 8) != 0) return fail_errno("listening on {}", path);
  return s;
}

// Replies are small; a client that cannot take one within this time is stuck.
constexpr int kSendTimeoutMs = 2000;

bool send_all(int fd, const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<AgentServer>> AgentServer::create(Dispatcher& dispatcher, const ServerOptions& options) {
  std::unique_ptr<AgentServer> s(new AgentServer(dispatcher));
  s->options_ = options;
  if (options.vsock_port) {
    CAIRN_TRY_CTX(fd, listen_vsock(*options.vsock_port), "guest agent");
    s->listeners_.push_back(std::move(fd));
  }
  if (!options.unix_path.empty()) {
    CAIRN_TRY_CTX(fd, listen_unix(options.unix_path), "guest agent");
    s->listeners_.push_back(std::move(fd));
  }
  if (s->listeners_.empty()) return fail(Errc::invalid_argument, "guest agent: nothing to listen on");
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return fail_errno("guest agent: creating the wake pipe");
  s->wake_read_.reset(p[0]);
  s->wake_write_.reset(p[1]);
  return s;
}

AgentServer::AgentServer(Dispatcher& d) : dispatcher_(d) {}

AgentServer::~AgentServer() {
  if (!options_.unix_path.empty()) ::unlink(options_.unix_path.c_str());
}

void AgentServer::stop() {
  char b = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_write_.get(), &b, 1);
}

void AgentServer::accept_from(int listen_fd) {
  UniqueFd c(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
  if (!c) return;
  if (clients_.size() >= options_.max_clients) return;  // closed right away
  timeval tv{kSendTimeoutMs / 1000, (kSendTimeoutMs % 1000) * 1000};
  ::setsockopt(c.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  auto client = std::make_unique<Client>();
  client->fd = std::move(c);
  clients_.push_back(std::move(client));
}

bool AgentServer::serve(Client& c) {
  char buf[16384];
  ssize_t n = ::recv(c.fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n <= 0) return false;
  std::vector<JsonFrame> frames;
  c.reader.feed(std::string_view(buf, static_cast<size_t>(n)), frames);
  for (const auto& f : frames)
    if (!send_all(c.fd.get(), dispatcher_.handle(f))) return false;
  return true;
}

Result<void> AgentServer::run() {
  for (;;) {
    std::vector<pollfd> fds;
    fds.push_back({wake_read_.get(), POLLIN, 0});
    for (auto& l : listeners_) fds.push_back({l.get(), POLLIN, 0});
    for (auto& c : clients_) fds.push_back({c->fd.get(), POLLIN, 0});
    int timeout = -1;
    if (auto d = dispatcher_.thaw_deadline()) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*d - Dispatcher::Clock::now()).count();
      timeout = static_cast<int>(std::clamp<long long>(left, 0, 60'000));
    }
    int r = ::poll(fds.data(), fds.size(), timeout);
    if (r < 0 && errno != EINTR) return fail_errno("guest agent: poll");
    dispatcher_.on_timer(Dispatcher::Clock::now());
    if (r <= 0) continue;
    if (fds[0].revents) return {};
    size_t i = 1;
    for (size_t l = 0; l < listeners_.size(); ++l, ++i)
      if (fds[i].revents & POLLIN) accept_from(fds[i].fd);
    // Serve the clients polled this round (new ones were appended after them).
    size_t polled = fds.size() - i;
    std::vector<bool> drop(polled, false);
    for (size_t k = 0; k < polled; ++k) {
      short ev = fds[i + k].revents;
      if (ev & (POLLIN | POLLHUP | POLLERR)) drop[k] = !serve(*clients_[k]);
    }
    for (size_t k = polled; k-- > 0;)
      if (drop[k]) clients_.erase(clients_.begin() + static_cast<std::ptrdiff_t>(k));
  }
}

}  // namespace cairn
