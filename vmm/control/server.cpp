#include "vmm/control/server.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "vmm/control/protocol.hpp"
#include "vmm/control/unix_socket.hpp"

namespace cairn {

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& path,
                                                            std::shared_ptr<const ControlDispatcher> dispatcher) {
  auto s = std::unique_ptr<ControlServer>(new ControlServer());
  s->path_ = path;
  s->dispatcher_ = std::move(dispatcher);
  auto fd = unix_listen(path, 0600);
  if (!fd) return std::unexpected(fd.error());
  s->listen_fd_ = std::move(*fd);
  s->stop_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->stop_fd_) return fail_errno("eventfd");
  s->thread_ = std::thread([p = s.get()] { p->serve(); });
  return s;
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!::write(stop_fd_.get(), &one, sizeof(one));
    thread_.join();
  }
  if (listen_fd_) {
    listen_fd_.reset();
    ::unlink(path_.c_str());
  }
}

struct ControlServer::Client {
  UniqueFd fd;
  std::string buf;  // received bytes not yet answered
  std::chrono::steady_clock::time_point deadline;
};

namespace {
constexpr auto kIdle = std::chrono::milliseconds(kControlIdleTimeoutMs);

bool send_line(int fd, const std::string& line) {
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // gone, or not reading for SO_SNDTIMEO
    off += static_cast<size_t>(n);
  }
  return true;
}
}  // namespace

void ControlServer::serve() {
  std::vector<Client> clients;
  for (;;) {
    auto now = std::chrono::steady_clock::now();
    // Drop idle clients; the next deadline bounds the wait.
    std::erase_if(clients, [&](const Client& c) { return c.deadline <= now; });
    int wait_ms = -1;
    for (auto& c : clients) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(c.deadline - now).count() + 1;
      if (wait_ms < 0 || ms < wait_ms) wait_ms = static_cast<int>(ms);
    }
    std::vector<pollfd> fds;
    fds.push_back({stop_fd_.get(), POLLIN, 0});
    // At the client limit, new connections wait in the backlog.
    fds.push_back({listen_fd_.get(), static_cast<short>(clients.size() < kMaxControlClients ? POLLIN : 0), 0});
    for (auto& c : clients) fds.push_back({c.fd.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), wait_ms) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents) return;
    std::vector<bool> drop(clients.size(), false);
    for (size_t i = 0; i < clients.size(); ++i)
      if (fds[i + 2].revents) drop[i] = !on_readable(clients[i]);
    for (size_t i = clients.size(); i-- > 0;)
      if (drop[i]) clients.erase(clients.begin() + static_cast<long>(i));
    if (fds[1].revents & POLLIN) {
      UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (fd) {  // a failed accept (client gone, out of fds) just leaves it to the next round
        timeval tv{kControlIdleTimeoutMs / 1000, 0};
        ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        clients.push_back({std::move(fd), {}, std::chrono::steady_clock::now() + kIdle});
      }
    }
  }
}

bool ControlServer::on_readable(Client& c) {
  char chunk[4096];
  ssize_t got = ::recv(c.fd.get(), chunk, sizeof(chunk), MSG_DONTWAIT);
  if (got < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (got <= 0) return false;  // EOF or error: the client is done
  c.buf.append(chunk, static_cast<size_t>(got));
  size_t nl;
  while ((nl = c.buf.find('\n')) != std::string::npos) {
    std::string line = c.buf.substr(0, nl);
    c.buf.erase(0, nl + 1);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
    if (!send_line(c.fd.get(), dispatcher_->dispatch_line(line).dump() + "\n")) return false;
    c.deadline = std::chrono::steady_clock::now() + kIdle;
  }
  if (c.buf.size() >= kMaxControlLine) {
    send_line(c.fd.get(),
              control_error("InvalidParameter", fmt::format("request longer than {} bytes", kMaxControlLine)).dump() +
                  "\n");
    return false;
  }
  return true;
}

}  // namespace cairn
