// One virtio-vsock stream connection between a guest port and a host Unix
// socket, with its credit-based flow control (virtio 1.1+ 5.10.6.3):
//  - guest -> host: we advertise buf_alloc = kVsockConnBufAlloc bytes; guest
//    bytes wait in `out` until the host socket takes them, and fwd_cnt counts
//    the bytes handed to the host. A guest that sends more than it was allowed
//    gets its connection reset.
//  - host -> guest: we send at most peer_free() bytes, computed from the
//    buf_alloc/fwd_cnt the guest put in its latest header.
// Counters are u32 and wrap, as the spec defines them.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "vmm/base/unique_fd.hpp"

namespace cairn {

inline constexpr uint32_t kVsockConnBufAlloc = 256 * 1024;

enum class VsockConnState {
  local_init,   // host initiated: REQUEST queued/sent, waiting for the guest's RESPONSE
  established,  // data flows
  closing,      // host socket fully closed: SHUTDOWN sent, waiting for the guest's RST
};

// Control packets a connection owes the guest (bits of VsockConnection::pending).
enum VsockPending : uint32_t {
  kPendRequest = 1u << 0,
  kPendResponse = 1u << 1,
  kPendCreditUpdate = 1u << 2,
  kPendShutdown = 1u << 3,
};

struct VsockConnection {
  using Clock = std::chrono::steady_clock;

  UniqueFd fd;
  uint64_t token = 0;       // its epoll token
  uint32_t local_port = 0;  // the host's port as the guest sees it
  uint32_t peer_port = 0;   // the guest's port
  VsockConnState state = VsockConnState::established;
  std::optional<Clock::time_point> deadline;  // connect or shutdown timer

  // The guest's receive window, from the last header it sent.
  uint32_t peer_buf_alloc = 0;
  uint32_t peer_fwd_cnt = 0;
  uint32_t tx_cnt = 0;            // payload bytes sent to the guest
  bool credit_requested = false;  // CREDIT_REQUEST sent since the window last moved

  // Our receive window.
  uint32_t fwd_cnt = 0;            // guest bytes handed to the host socket
  uint32_t last_fwd_cnt_sent = 0;  // fwd_cnt as the guest last saw it
  std::vector<uint8_t> out;        // bytes waiting for the host socket
  size_t out_uncounted = 0;        // leading bytes of `out` that are ours ("OK n\n"), not guest data

  bool readable = false;  // host socket may have data (edge-triggered epoll)
  bool writable = true;
  bool host_eof = false;      // read returned 0: the host will not send more
  bool host_hup = false;      // the host closed its socket entirely
  bool host_wr_shut = false;  // we shut down writing (guest sent SHUTDOWN SEND)
  uint32_t peer_shutdown = 0;     // SHUTDOWN flags received from the guest
  bool rst_when_flushed = false;  // guest closed both ways: RST once `out` drains

  uint32_t pending = 0;         // VsockPending bits
  uint32_t shutdown_flags = 0;  // flags of the pending SHUTDOWN

  // Bytes the guest can still take, 0 when its header was inconsistent.
  uint32_t peer_free() const {
    uint32_t in_flight = tx_cnt - peer_fwd_cnt;
    return in_flight > peer_buf_alloc ? 0 : peer_buf_alloc - in_flight;
  }
  // Records the window advertised in a guest header.
  void update_peer_credit(uint32_t buf_alloc, uint32_t fwd_cnt);

  // Appends guest payload; false when it exceeds the window we advertised.
  bool queue_guest_data(std::span<const uint8_t> data);
  // Appends a line of our own (not counted in fwd_cnt).
  void queue_host_line(std::string_view line);

  enum class Flush { done, blocked, failed };
  // Writes as much of `out` as the host socket takes.
  Flush flush();
};

}  // namespace cairn
