// Connection setup, guest packets and host socket events. Packets towards the
// guest are produced in vsock_muxer_rx.cpp.
#include "devices/virtio/vsock_muxer.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include "devices/virtio/vsock_unix.hpp"

namespace cairn {
namespace {

constexpr uint32_t kConnEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

Result<void> epoll_add(int epfd, int fd, uint32_t events, uint64_t token) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) return fail_errno("epoll_ctl add fd {}", fd);
  return {};
}

}  // namespace

Result<std::unique_ptr<VsockMuxer>> VsockMuxer::create(std::string uds_path, uint64_t guest_cid,
                                                       VsockTimeouts timeouts) {
  std::unique_ptr<VsockMuxer> m(new VsockMuxer(std::move(uds_path), guest_cid, timeouts));
  m->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!m->epoll_) return fail_errno("vsock: epoll_create1");
  CAIRN_TRY_CTX(listener, vsock_listen_unix(m->uds_path_), "vsock");
  m->listener_ = std::move(listener);
  if (auto r = epoll_add(m->epoll_.get(), m->listener_.get(), EPOLLIN, kListenerToken); !r)
    return std::unexpected(std::move(r.error()).context("vsock"));
  return m;
}

VsockMuxer::~VsockMuxer() {
  if (listener_) ::unlink(uds_path_.c_str());  // the socket file is ours
}

Result<void> VsockMuxer::watch(int fd, uint64_t token) {
  if (token < kFirstForeignToken || token >= kFirstSocketToken) return fail(Errc::invalid_argument, "vsock: token {} is reserved", token);
  return epoll_add(epoll_.get(), fd, EPOLLIN, token);
}

VsockHeader VsockMuxer::reply_header(uint32_t local_port, uint32_t peer_port, VsockOp op) const {
  VsockHeader h;
  h.src_cid = kVsockHostCid;
  h.dst_cid = guest_cid_;
  h.src_port = local_port;
  h.dst_port = peer_port;
  h.type = kVsockTypeStream;
  h.op = static_cast<uint16_t>(op);
  return h;
}

void VsockMuxer::queue_rst(uint32_t local_port, uint32_t peer_port) {
  // Dropping an RST when the queue is full is safe: the guest times out.
  if (rsts_.size() < kMaxQueuedRsts) rsts_.push_back(reply_header(local_port, peer_port, VsockOp::rst));
}

void VsockMuxer::kill(uint64_t key, bool send_rst) {
  auto it = conns_.find(key);
  if (it == conns_.end()) return;
  VsockConnection& c = it->second;
  if (send_rst) queue_rst(c.local_port, c.peer_port);
  if (c.fd) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
    token_keys_.erase(c.token);
  }
  conns_.erase(it);
}

void VsockMuxer::reset_connections() {
  for (auto& [token, p] : pending_hosts_) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, p.fd.get(), nullptr);
  pending_hosts_.clear();
  while (!conns_.empty()) kill(conns_.begin()->first, false);
  rsts_.clear();
}

void VsockMuxer::handle_event(uint64_t token, uint32_t events) {
  if (token == kListenerToken) return accept_hosts();
  if (pending_hosts_.contains(token)) return handle_pending_host(token);
  if (auto it = token_keys_.find(token); it != token_keys_.end()) handle_conn_event(it->second, events);
}

void VsockMuxer::accept_hosts() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;  // EAGAIN, or a transient error: the listener stays level-triggered
    if (!guest_ready_) continue;  // nobody to connect to: close at once
    uint64_t token = next_token_++;
    if (!epoll_add(epoll_.get(), fd.get(), kConnEvents, token)) continue;
    pending_hosts_.emplace(token, PendingHost{std::move(fd), Clock::now() + timeouts_.connect});
  }
}

void VsockMuxer::handle_pending_host(uint64_t token) {
  int fd = pending_hosts_.at(token).fd.get();
  auto cmd = vsock_read_command(fd);
  if (cmd.kind == VsockCommandRead::pending) return;
  auto node = pending_hosts_.extract(token);
  std::optional<uint32_t> port;
  if (cmd.kind == VsockCommandRead::port && guest_ready_) port = allocate_local_port();
  if (!port) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    return;  // node's fd closes here
  }
  uint64_t key = key_of(*port, cmd.guest_port);
  VsockConnection& c = conns_[key];
  c.fd = std::move(node.mapped().fd);
  c.token = token;
  c.local_port = *port;
  c.peer_port = cmd.guest_port;
  c.state = VsockConnState::local_init;
  c.deadline = Clock::now() + timeouts_.connect;
  c.pending = kPendRequest;
  c.readable = true;  // bytes may already follow the command line
  token_keys_[token] = key;
}

std::optional<uint32_t> VsockMuxer::allocate_local_port() {
  // Ports in [1024, 2^31) in turn, skipping those a live connection uses.
  for (uint32_t tries = 0; tries < 1u << 16; ++tries) {
    uint32_t p = next_local_port_;
    next_local_port_ = p + 1 >= (1u << 31) ? kFirstLocalPort : p + 1;
    auto it = conns_.lower_bound(key_of(p, 0));
    if (it == conns_.end() || it->second.local_port != p) return p;
  }
  return std::nullopt;
}

void VsockMuxer::handle_conn_event(uint64_t key, uint32_t events) {
  VsockConnection& c = conns_.at(key);
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c.readable = true;
  if (events & EPOLLOUT) c.writable = true;
  if ((events & (EPOLLHUP | EPOLLERR)) && !c.host_hup) {
    c.host_hup = true;
    // Gave up before the guest answered; an unsent REQUEST needs no RST.
    if (c.state == VsockConnState::local_init) return kill(key, !(c.pending & kPendRequest));
    // Already at EOF: the SHUTDOWN SEND we sent becomes a full one.
    if (c.host_eof && c.state == VsockConnState::established) on_host_eof(c);
  }
  if (c.writable && !c.out.empty()) flush_conn(key);
}

void VsockMuxer::on_host_eof(VsockConnection& c) {
  c.host_eof = true;
  c.readable = false;
  c.pending |= kPendShutdown;
  c.shutdown_flags = kVsockShutdownSend;
  if (c.host_hup) {
    c.shutdown_flags |= kVsockShutdownRcv;
    c.state = VsockConnState::closing;
    c.deadline = Clock::now() + timeouts_.shutdown;
  }
}

bool VsockMuxer::flush_conn(uint64_t key) {
  VsockConnection& c = conns_.at(key);
  auto r = c.flush();
  if (r == VsockConnection::Flush::failed) {
    kill(key, true);
    return false;
  }
  if (r == VsockConnection::Flush::blocked) return true;
  if (c.rst_when_flushed) {
    kill(key, true);
    return false;
  }
  if ((c.peer_shutdown & kVsockShutdownSend) && !c.host_wr_shut) {
    ::shutdown(c.fd.get(), SHUT_WR);
    c.host_wr_shut = true;
  }
  // Tell the guest about freed space before it runs out (see vsock_connection.hpp).
  if (c.fwd_cnt - c.last_fwd_cnt_sent >= kVsockConnBufAlloc / 4) c.pending |= kPendCreditUpdate;
  return true;
}

void VsockMuxer::handle_guest_packet(const VsockHeader& hdr, std::span<const uint8_t> payload,
                                     bool len_valid) {
  if (hdr.src_cid != guest_cid_ || hdr.dst_cid != kVsockHostCid) return;  // not for us: drop
  const VsockOp op = hdr.operation();
  const uint64_t key = key_of(hdr.dst_port, hdr.src_port);
  const bool known = conns_.contains(key);
  if (op == VsockOp::rst) return kill(key, false);
  if (hdr.type != kVsockTypeStream || !len_valid || op == VsockOp::invalid ||
      hdr.op > static_cast<uint16_t>(VsockOp::credit_request)) {
    if (known) return kill(key, true);
    return queue_rst(hdr.dst_port, hdr.src_port);
  }
  if (!known) {
    if (op == VsockOp::request) return connect_to_host(hdr);
    return queue_rst(hdr.dst_port, hdr.src_port);
  }
  handle_conn_packet(key, hdr, payload);
}

void VsockMuxer::connect_to_host(const VsockHeader& hdr) {
  auto fd = vsock_connect_unix(fmt::format("{}_{}", uds_path_, hdr.dst_port));
  if (!fd) return queue_rst(hdr.dst_port, hdr.src_port);
  uint64_t key = key_of(hdr.dst_port, hdr.src_port);
  uint64_t token = next_token_++;
  if (!epoll_add(epoll_.get(), fd->get(), kConnEvents, token)) return queue_rst(hdr.dst_port, hdr.src_port);
  VsockConnection& c = conns_[key];
  c.fd = std::move(*fd);
  c.token = token;
  c.local_port = hdr.dst_port;
  c.peer_port = hdr.src_port;
  c.state = VsockConnState::established;
  c.update_peer_credit(hdr.buf_alloc, hdr.fwd_cnt);
  c.pending = kPendResponse;
  token_keys_[token] = key;
}

void VsockMuxer::handle_conn_packet(uint64_t key, const VsockHeader& hdr, std::span<const uint8_t> payload) {
  VsockConnection& c = conns_.at(key);
  c.update_peer_credit(hdr.buf_alloc, hdr.fwd_cnt);
  switch (hdr.operation()) {
    case VsockOp::response:
      if (c.state != VsockConnState::local_init) return kill(key, true);
      c.state = VsockConnState::established;
      c.deadline.reset();
      c.queue_host_line(fmt::format("OK {}\n", c.local_port));
      flush_conn(key);
      return;
    case VsockOp::rw:
      if (c.state == VsockConnState::closing) return;  // the host is gone; the guest will RST
      if (c.state != VsockConnState::established || (c.peer_shutdown & kVsockShutdownSend) ||
          !c.queue_guest_data(payload))
        return kill(key, true);  // protocol or credit violation
      if (c.writable) flush_conn(key);
      return;
    case VsockOp::shutdown:
      return on_shutdown_from_guest(key, hdr.flags);
    case VsockOp::credit_request:
      c.pending |= kPendCreditUpdate;
      return;
    case VsockOp::credit_update:
      return;  // the window was recorded above
    default:
      return kill(key, true);  // REQUEST on a live connection
  }
}

void VsockMuxer::on_shutdown_from_guest(uint64_t key, uint32_t flags) {
  VsockConnection& c = conns_.at(key);
  if (c.state == VsockConnState::local_init) return kill(key, true);
  c.peer_shutdown |= flags & (kVsockShutdownRcv | kVsockShutdownSend);
  if (c.state == VsockConnState::closing) return;
  if (c.peer_shutdown == (kVsockShutdownRcv | kVsockShutdownSend)) {
    // The guest closed: deliver what it sent, then RST (what Linux waits for).
    c.rst_when_flushed = true;
    c.deadline = Clock::now() + timeouts_.shutdown;
  }
  if (c.out.empty()) flush_conn(key);  // applies the shutdown at once
}

void VsockMuxer::handle_timeouts(Clock::time_point now) {
  for (auto it = pending_hosts_.begin(); it != pending_hosts_.end();) {
    if (it->second.deadline <= now) {
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
      it = pending_hosts_.erase(it);
    } else {
      ++it;
    }
  }
  std::vector<uint64_t> expired;
  for (auto& [key, c] : conns_)
    if (c.deadline && *c.deadline <= now) expired.push_back(key);
  for (uint64_t key : expired) kill(key, true);
}

int VsockMuxer::ms_until_deadline(Clock::time_point now) const {
  std::optional<Clock::time_point> first;
  auto consider = [&](Clock::time_point t) { if (!first || t < *first) first = t; };
  for (auto& [token, p] : pending_hosts_) consider(p.deadline);
  for (auto& [key, c] : conns_)
    if (c.deadline) consider(*c.deadline);
  if (!first) return -1;
  if (*first <= now) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(*first - now).count();
  return static_cast<int>(std::min<int64_t>(ms, 60'000));
}

}  // namespace cairn
