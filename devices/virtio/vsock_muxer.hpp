// The virtio-vsock protocol engine: maps guest packets to host Unix sockets
// and host socket events to packets for the guest. It knows nothing of
// virtqueues or guest memory (the device copies packets in and out), which
// keeps every guest-memory access in one place. Not thread-safe: the device
// calls it under its lock.
//
// Connections are keyed by (host port, guest port). Rules it follows:
//  - packets with a wrong src_cid or a dst_cid other than the host are dropped;
//  - packets of another type, malformed lengths, unknown ops, and any packet
//    (but RST) for an unknown connection are answered with RST;
//  - a host connect waits `connect` for the guest's RESPONSE, a closing
//    connection waits `shutdown` for the guest's RST, then RST is sent.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>

#include "devices/virtio/vsock_connection.hpp"
#include "devices/virtio/vsock_packet.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

struct VsockTimeouts {
  std::chrono::milliseconds connect{2000};   // CONNECT line, then the guest's RESPONSE
  std::chrono::milliseconds shutdown{2000};  // waiting for the guest's RST
};

class VsockMuxer {
 public:
  using Clock = std::chrono::steady_clock;
  // epoll tokens: sockets get fresh ones from kFirstSocketToken up, never
  // reused, so an event fetched for a socket closed meanwhile cannot reach a
  // new socket that got the same fd number.
  static constexpr uint64_t kListenerToken = 1;
  static constexpr uint64_t kFirstForeignToken = 2;  // [2, 16) free for the caller (watch())
  static constexpr uint64_t kFirstSocketToken = 16;
  static constexpr size_t kMaxQueuedRsts = 256;
  static constexpr uint32_t kFirstLocalPort = 1024;

  static Result<std::unique_ptr<VsockMuxer>> create(std::string uds_path, uint64_t guest_cid,
                                                    VsockTimeouts timeouts);
  ~VsockMuxer();
  VsockMuxer(const VsockMuxer&) = delete;
  VsockMuxer& operator=(const VsockMuxer&) = delete;

  int epoll_fd() const { return epoll_.get(); }
  // Adds a caller fd (level-triggered EPOLLIN) under a token in [kFirstForeignToken, kFirstSocketToken).
  Result<void> watch(int fd, uint64_t token);

  // While the guest driver is not live, host CONNECT requests are refused.
  void set_guest_ready(bool ready) { guest_ready_ = ready; }

  // One epoll event for a token below kFirstForeignToken.
  void handle_event(uint64_t token, uint32_t events);
  // One packet from the tx queue. `payload` holds hdr.len bytes when
  // `len_valid`; otherwise the header's len did not fit the buffers or the bound.
  void handle_guest_packet(const VsockHeader& hdr, std::span<const uint8_t> payload, bool len_valid);
  void handle_timeouts(Clock::time_point now);
  // Milliseconds until the nearest timer (for epoll_wait), -1 without timers.
  int ms_until_deadline(Clock::time_point now) const;

  // Back-pressure: stop taking tx packets while RSTs pile up.
  bool rst_queue_full() const { return rsts_.size() >= kMaxQueuedRsts; }
  // Whether next_rx() may produce a packet.
  bool has_rx() const;
  // Writes the next packet for the guest (header + payload) into `buf`
  // (>= kVsockHeaderSize bytes) and returns its size, 0 when there is none.
  size_t next_rx(std::span<uint8_t> buf);

  // Closes every connection without telling the guest (device or transport reset).
  void reset_connections();
  size_t connection_count() const { return conns_.size(); }

 private:
  VsockMuxer(std::string uds_path, uint64_t guest_cid, VsockTimeouts t)
      : uds_path_(std::move(uds_path)), guest_cid_(guest_cid), timeouts_(t) {}

  static uint64_t key_of(uint32_t local, uint32_t peer) { return (uint64_t{local} << 32) | peer; }
  VsockHeader reply_header(uint32_t local_port, uint32_t peer_port, VsockOp op) const;
  void queue_rst(uint32_t local_port, uint32_t peer_port);
  void kill(uint64_t key, bool send_rst);
  void accept_hosts();
  void handle_pending_host(uint64_t token);
  void handle_conn_event(uint64_t key, uint32_t events);
  void connect_to_host(const VsockHeader& hdr);
  void handle_conn_packet(uint64_t key, const VsockHeader& hdr, std::span<const uint8_t> payload);
  void on_shutdown_from_guest(uint64_t key, uint32_t flags);
  // Writes pending guest bytes; afterwards applies shutdowns that waited for them.
  // Returns false when the connection was killed.
  bool flush_conn(uint64_t key);
  void on_host_eof(VsockConnection& c);
  std::optional<uint32_t> allocate_local_port();
  // Produces a packet for one connection; 0 when it has nothing to send now.
  size_t conn_rx(uint64_t key, std::span<uint8_t> buf);
  bool conn_has_rx(const VsockConnection& c) const;
  bool wants_data(const VsockConnection& c) const;

  struct PendingHost {
    UniqueFd fd;
    Clock::time_point deadline;
  };

  std::string uds_path_;
  uint64_t guest_cid_;
  VsockTimeouts timeouts_;
  bool guest_ready_ = false;
  UniqueFd epoll_;
  UniqueFd listener_;
  std::map<uint64_t, VsockConnection> conns_;
  std::unordered_map<uint64_t, uint64_t> token_keys_;         // epoll token -> connection key
  std::unordered_map<uint64_t, PendingHost> pending_hosts_;  // by token: CONNECT line not read yet
  uint64_t next_token_ = kFirstSocketToken;
  std::deque<VsockHeader> rsts_;
  uint64_t rr_next_ = 0;  // round-robin start among connections
  uint32_t next_local_port_ = kFirstLocalPort;
};

}  // namespace cairn
