// A virtio 1.x split virtqueue as the device side sees it. Every descriptor is
// validated before use: addresses and lengths must lie inside guest memory,
// chains must not loop or exceed the queue size, and a chain's total length
// is bounded, so a malicious driver cannot make the VMM touch host memory.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "vmm/base/error.hpp"
#include "vmm/base/guest_memory.hpp"

namespace cairn {

struct Descriptor {
  uint64_t addr = 0;  // guest-physical
  uint32_t len = 0;
  bool write = false;  // device-writable (VIRTQ_DESC_F_WRITE)
};

// One popped request: its head index (for add_used) and its buffers in order.
struct DescriptorChain {
  uint16_t head = 0;
  std::vector<Descriptor> descriptors;
  uint64_t readable_bytes() const;
  uint64_t writable_bytes() const;
};

// The driver-programmed queue registers (also the queue's saved state).
struct QueueConfig {
  uint16_t max_size = 256;
  uint16_t size = 256;
  bool ready = false;
  uint64_t desc_table = 0;
  uint64_t avail_ring = 0;
  uint64_t used_ring = 0;
};

// Not internally synchronized: the device that owns a live queue serializes
// pop/add_used/needs_notification, and checkpoints read positions only after
// the device has been quiesced.
class Virtqueue {
 public:
  static constexpr uint64_t kMaxChainBytes = 1ULL << 32;  // bound on a chain's total length

  explicit Virtqueue(uint16_t max_size = 256);

  QueueConfig& config() { return config_; }
  const QueueConfig& config() const { return config_; }
  // Checks size (power of two, <= max) and ring placement inside guest memory.
  Result<void> validate(const GuestMemory& mem) const;

  // Next available chain, nullopt when the ring is empty. A malformed chain
  // yields an error; the caller marks the device broken (virtio NEEDS_RESET).
  Result<std::optional<DescriptorChain>> pop(const GuestMemory& mem);
  // Returns a chain to the driver with `written` bytes of device output.
  Result<void> add_used(GuestMemory& mem, uint16_t head, uint32_t written);
  // Whether the driver wants an interrupt now (honours VIRTQ_AVAIL_F_NO_INTERRUPT
  // or, with VIRTIO_F_EVENT_IDX negotiated, used_event).
  bool needs_notification(const GuestMemory& mem);
  void set_event_idx(bool on) { event_idx_ = on; }

  // Ring positions, part of the saved state.
  uint16_t next_avail() const { return next_avail_; }
  uint16_t next_used() const { return next_used_; }
  void set_positions(uint16_t next_avail, uint16_t next_used);
  void reset();

 private:
  QueueConfig config_;
  uint16_t next_avail_ = 0;
  uint16_t next_used_ = 0;
  uint16_t signalled_used_ = 0;
  bool event_idx_ = false;
};

// Copies between a chain's buffers and host memory, bounded by the buffers.
// Readers skip `offset` bytes of the chain's readable part first.
Result<size_t> chain_read(const GuestMemory& mem, const DescriptorChain& c, uint64_t offset,
                          std::span<uint8_t> out);
Result<size_t> chain_write(GuestMemory& mem, const DescriptorChain& c, uint64_t offset,
                           std::span<const uint8_t> in);

}  // namespace cairn
