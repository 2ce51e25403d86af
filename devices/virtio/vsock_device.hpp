// virtio-vsock (virtio 1.1+ section 5.10, device type 19) backed by host Unix
// sockets, Firecracker's "hybrid vsock" (see vsock_unix.hpp for the host-side
// protocol and vsock_muxer.hpp for the packet rules).
//
// Config space: le64 guest_cid at offset 0. Queues: 0 = rx (device -> guest),
// 1 = tx (guest -> device), 2 = event. Features: VERSION_1, EVENT_IDX.
// Stream sockets only.
//
// Threading and locking: the device owns one event thread that waits (epoll)
// on its Unix sockets and on an eventfd. notify() from a vCPU thread only
// signals that eventfd; every queue and guest-memory access happens on the
// event thread while it holds `mu_`. activate(), reset(), pause(), resume()
// and the destructor take `mu_` too, so once they return the thread is not in
// the middle of processing. Lock order: the transport's lock, then `mu_`; the
// event thread never takes the transport's lock (signal_used_queue() is
// lock-free in the transport).
//
// A malformed descriptor chain (the queue code refuses it) means a broken
// driver: the device stops using its queues until reset(). Malformed packets
// inside valid chains are only dropped or answered with RST.
//
// Checkpoints: pause() is the quiesce point. After it returns no queue is
// touched until resume(); a buffer the device had taken from the rx ring but
// not filled is handed back empty first (Linux drops it and refills), so the
// saved ring positions lose nothing. The saved state is VsockState (just the
// guest CID). Connections are not saved: the host sockets belong to this
// process. A device built by restore() sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
// on the event queue once it is active, which makes the guest reset all its
// connections (what Linux expects after migration).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "devices/virtio/virtio_device.hpp"
#include "devices/virtio/vsock_muxer.hpp"
#include "devices/virtio/vsock_packet.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

struct VsockConfig {
  uint64_t guest_cid = 3;  // 3 .. 0xfffffffe (0-2 and U32_MAX are reserved)
  std::string uds_path;    // listening socket; guest connects go to "<uds_path>_<port>"
  VsockTimeouts timeouts{};
};

// The device's part of a checkpoint; queue positions belong to the transport.
struct VsockState {
  uint64_t guest_cid = 0;
  bool operator==(const VsockState&) const = default;
};

class VsockDevice : public VirtioDevice {
 public:
  static constexpr uint16_t kRxQueue = 0;
  static constexpr uint16_t kTxQueue = 1;
  static constexpr uint16_t kEventQueue = 2;
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint16_t kEventQueueSize = 64;

  static Result<std::unique_ptr<VsockDevice>> create(VsockConfig config);
  // A fresh device for a restored VM: the CID comes from `state`, the socket
  // path from `config`; it announces TRANSPORT_RESET once active.
  static Result<std::unique_ptr<VsockDevice>> restore(const VsockState& state, VsockConfig config);
  ~VsockDevice() override;
  VsockDevice(const VsockDevice&) = delete;
  VsockDevice& operator=(const VsockDevice&) = delete;

  VsockState save() const { return VsockState{config_.guest_cid}; }
  void pause();
  void resume();

  std::string_view name() const override { return "virtio-vsock"; }
  uint32_t device_type() const override { return kVirtioIdVsock; }
  uint64_t device_features() const override { return kVirtioFVersion1 | kVirtioFEventIdx; }
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize, kEventQueueSize}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;

  Result<void> activate(GuestMemory& mem, std::span<Virtqueue> queues, uint64_t acked_features,
                        VirtioInterrupt& irq) override;
  void notify(uint16_t index) override;
  void reset() override;

  // For tests and diagnostics.
  size_t connection_count() const;
  bool broken() const;

 private:
  static constexpr uint64_t kKickToken = VsockMuxer::kFirstForeignToken;

  explicit VsockDevice(VsockConfig config) : config_(std::move(config)) {}
  void kick();
  void run();
  // The three process_* run on the event thread with `mu_` held.
  void process_queues();
  bool process_tx();  // false when stopped by back-pressure
  bool process_rx();  // true when a buffer was used
  bool process_event();
  void handle_tx_chain(const DescriptorChain& chain);
  // A queue error means a misbehaving driver: stop until reset (virtio's NEEDS_RESET).
  void set_broken() { broken_ = true; }

  VsockConfig config_;
  std::unique_ptr<VsockMuxer> muxer_;
  UniqueFd kick_;  // eventfd: queue notifications, resume and stop requests

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool active_ = false;
  bool paused_ = false;
  bool stopping_ = false;
  bool broken_ = false;
  bool reset_event_pending_ = false;
  GuestMemory* mem_ = nullptr;
  std::span<Virtqueue> queues_;
  VirtioInterrupt* irq_ = nullptr;
  std::optional<DescriptorChain> held_rx_;  // taken from the rx ring, not filled yet
  std::vector<uint8_t> tx_buf_;
  std::vector<uint8_t> rx_buf_;
  std::thread thread_;
};

}  // namespace cairn
