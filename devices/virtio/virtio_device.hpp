// A virtio device, separate from its transport (virtio-mmio here): the
// transport owns registers, feature negotiation and queues; the device owns
// its config space and request processing.
#pragma once
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "devices/virtio/queue.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/guest_memory.hpp"

namespace cairn {

inline constexpr uint64_t kVirtioFVersion1 = 1ULL << 32;
inline constexpr uint64_t kVirtioFEventIdx = 1ULL << 29;

// Raised by a device when it has put buffers in a used ring; the transport
// sets the interrupt status bit and fires the line.
class VirtioInterrupt {
 public:
  virtual ~VirtioInterrupt() = default;
  virtual void signal_used_queue() = 0;
  virtual void signal_config_change() = 0;
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;
  virtual std::string_view name() const = 0;
  virtual uint32_t device_type() const = 0;      // 2 = block, 19 = vsock
  virtual uint64_t device_features() const = 0;  // must include kVirtioFVersion1
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;  // one entry per queue
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) const = 0;
  virtual void write_config(uint64_t offset, std::span<const uint8_t> data) { (void)offset; (void)data; }

  // DRIVER_OK: queues are configured and live. `queues` outlive the activation.
  virtual Result<void> activate(GuestMemory& mem, std::span<Virtqueue> queues, uint64_t acked_features,
                                VirtioInterrupt& irq) = 0;
  // The driver wrote QueueNotify for queue `index`.
  virtual void notify(uint16_t index) = 0;
  // The driver reset the device (status 0): stop using queues and memory.
  virtual void reset() = 0;
};

}  // namespace cairn
