// Packets towards the guest: queued RSTs first, then the connections in
// round-robin order, each giving its control packets and host data.
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "devices/virtio/vsock_muxer.hpp"

namespace cairn {

bool VsockMuxer::wants_data(const VsockConnection& c) const {
  return c.state == VsockConnState::established && c.readable && !c.host_eof &&
         !(c.peer_shutdown & kVsockShutdownRcv);
}

bool VsockMuxer::conn_has_rx(const VsockConnection& c) const {
  return c.pending != 0 || (wants_data(c) && (c.peer_free() > 0 || !c.credit_requested));
}

bool VsockMuxer::has_rx() const {
  if (!rsts_.empty()) return true;
  return std::any_of(conns_.begin(), conns_.end(), [&](const auto& kv) { return conn_has_rx(kv.second); });
}

size_t VsockMuxer::next_rx(std::span<uint8_t> buf) {
  auto pop_rst = [&] {
    auto b = rsts_.front().encode();
    rsts_.pop_front();
    std::memcpy(buf.data(), b.data(), b.size());
    return b.size();
  };
  if (buf.size() < kVsockHeaderSize) return 0;
  if (!rsts_.empty()) return pop_rst();
  uint64_t cursor = rr_next_;
  for (size_t i = 0, n = conns_.size(); i < n; ++i) {
    auto it = conns_.lower_bound(cursor);
    if (it == conns_.end()) it = conns_.begin();
    if (it == conns_.end()) break;
    uint64_t key = it->first;
    cursor = key + 1;
    if (size_t len = conn_rx(key, buf)) {
      rr_next_ = key + 1;
      return len;
    }
    if (!rsts_.empty()) return pop_rst();  // conn_rx reset its connection
  }
  return 0;
}

size_t VsockMuxer::conn_rx(uint64_t key, std::span<uint8_t> buf) {
  VsockConnection& c = conns_.at(key);
  // Every packet carries our current window, so it doubles as a credit update.
  auto emit = [&](VsockOp op, uint32_t len, uint32_t flags) -> size_t {
    VsockHeader h = reply_header(c.local_port, c.peer_port, op);
    h.len = len;
    h.flags = flags;
    h.buf_alloc = kVsockConnBufAlloc;
    h.fwd_cnt = c.fwd_cnt;
    c.last_fwd_cnt_sent = c.fwd_cnt;
    c.pending &= ~kPendCreditUpdate;
    auto b = h.encode();
    std::memcpy(buf.data(), b.data(), b.size());
    return kVsockHeaderSize + len;
  };
  if (c.pending & kPendRequest) {
    c.pending &= ~kPendRequest;
    return emit(VsockOp::request, 0, 0);
  }
  if (c.pending & kPendResponse) {
    c.pending &= ~kPendResponse;
    return emit(VsockOp::response, 0, 0);
  }
  size_t room = std::min<size_t>(buf.size() - kVsockHeaderSize, kVsockMaxPayload);
  if (wants_data(c) && room > 0) {
    uint32_t free = c.peer_free();
    if (free == 0) {
      // Out of credit: ask once; the guest's next header reopens the window.
      if (!c.credit_requested) {
        c.credit_requested = true;
        return emit(VsockOp::credit_request, 0, 0);
      }
    } else {
      room = std::min<size_t>(room, free);
      ssize_t n = ::recv(c.fd.get(), buf.data() + kVsockHeaderSize, room, MSG_DONTWAIT);
      if (n > 0) {
        c.tx_cnt += static_cast<uint32_t>(n);
        return emit(VsockOp::rw, static_cast<uint32_t>(n), 0);
      }
      if (n == 0) {
        // The HUP event may still be unread: ask the socket whether the host
        // closed entirely (one SHUTDOWN with both flags) or only its write side.
        pollfd p{c.fd.get(), 0, 0};
        if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) c.host_hup = true;
        on_host_eof(c);  // its SHUTDOWN goes out below
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c.readable = false;
      } else if (errno != EINTR) {
        kill(key, true);
        return 0;
      }
    }
  }
  if (c.pending & kPendCreditUpdate) return emit(VsockOp::credit_update, 0, 0);
  if (c.pending & kPendShutdown) {
    c.pending &= ~kPendShutdown;
    return emit(VsockOp::shutdown, 0, c.shutdown_flags);
  }
  return 0;
}

}  // namespace cairn
