// virtio-mmio transport, version 2 ("modern", virtio 1.1 section 4.2.2), as a
// bus device of 4 KiB. It owns the registers, feature negotiation and queue
// configuration; the VirtioDevice behind it owns config space and requests.
//
// Register map (32-bit accesses; config space from 0x100 in any width):
//   0x000 MagicValue "virt"   0x004 Version (2)      0x008 DeviceID   0x00c VendorID
//   0x010 DeviceFeatures      0x014 DeviceFeaturesSel
//   0x020 DriverFeatures      0x024 DriverFeaturesSel
//   0x030 QueueSel  0x034 QueueNumMax  0x038 QueueNum  0x044 QueueReady  0x050 QueueNotify
//   0x060 InterruptStatus  0x064 InterruptACK  0x070 Status
//   0x080/0x084 QueueDesc  0x090/0x094 QueueDriver  0x0a0/0x0a4 QueueDevice (low/high)
//   0x0fc ConfigGeneration   0x100+ device config
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "devices/bus_device.hpp"
#include "devices/interrupt.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace cairn {

inline constexpr uint64_t kVirtioMmioSize = 0x1000;
inline constexpr uint32_t kVirtioMmioMagic = 0x74726976;  // "virt"
inline constexpr uint32_t kVirtioMmioVendor = 0x4e524143;  // "CARN"

// Device status bits (virtio 1.1 section 2.1).
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// InterruptStatus bits.
inline constexpr uint32_t kInterruptUsedBuffer = 1;
inline constexpr uint32_t kInterruptConfigChange = 2;

struct MmioQueueState {
  QueueConfig config;
  uint16_t next_avail = 0;
  uint16_t next_used = 0;
  bool operator==(const MmioQueueState& o) const {
    const auto &a = config, &b = o.config;
    return a.max_size == b.max_size && a.size == b.size && a.ready == b.ready && a.desc_table == b.desc_table &&
           a.avail_ring == b.avail_ring && a.used_ring == b.used_ring && next_avail == o.next_avail &&
           next_used == o.next_used;
  }
};

// The transport's part of a checkpoint (the device saves its own state).
struct MmioTransportState {
  uint32_t device_features_sel = 0;
  uint32_t driver_features_sel = 0;
  uint32_t queue_sel = 0;
  uint64_t acked_features = 0;
  uint32_t status = 0;
  uint32_t interrupt_status = 0;
  uint32_t config_generation = 0;
  std::vector<MmioQueueState> queues;
  bool operator==(const MmioTransportState&) const = default;
};

class MmioTransport : public BusDevice, private VirtioInterrupt {
 public:
  // `mem` must outlive the transport; `irq` may be null (no interrupt wiring).
  MmioTransport(GuestMemory& mem, std::shared_ptr<VirtioDevice> dev, std::shared_ptr<InterruptLine> irq);
  ~MmioTransport() override;

  // Rebuilds a transport from saved state. A device that was live (DRIVER_OK)
  // is activated again over the restored queues; the device's own state must
  // already be restored into `dev`.
  static Result<std::unique_ptr<MmioTransport>> restore(const MmioTransportState& state, GuestMemory& mem,
                                                        std::shared_ptr<VirtioDevice> dev,
                                                        std::shared_ptr<InterruptLine> irq);
  MmioTransportState save() const;

  std::string_view name() const override { return dev_->name(); }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  VirtioDevice& device() { return *dev_; }
  uint32_t status() const;
  uint32_t interrupt_status() const { return interrupt_status_.load(); }
  VirtioInterrupt& interrupt() { return *this; }
  // Why the device last went to DEVICE_NEEDS_RESET (empty if it never did).
  std::string last_error() const;

 private:
  // VirtioInterrupt: safe to call from any thread.
  void signal_used_queue() override;
  void signal_config_change() override;

  uint32_t read_reg(uint64_t offset);
  void write_reg(uint64_t offset, uint32_t value);
  void write_status(uint32_t value);
  void reset_locked();
  void activate_locked();
  void fail_device_locked(const Error& e);
  Virtqueue* selected_queue();
  bool queue_config_allowed() const;

  GuestMemory& mem_;
  std::shared_ptr<VirtioDevice> dev_;
  std::shared_ptr<InterruptLine> irq_;

  // Registers and queues. Signalling never takes it, so devices may signal
  // from their own threads or from inside activate/notify.
  mutable std::mutex mu_;
  std::vector<Virtqueue> queues_;
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint32_t queue_sel_ = 0;
  uint64_t acked_features_ = 0;
  uint32_t status_ = 0;
  bool activated_ = false;
  std::string last_error_;
  std::atomic<uint32_t> interrupt_status_{0};
  std::atomic<uint32_t> config_generation_{0};
};

// The kernel command-line fragment announcing one device, e.g.
// "virtio_mmio.device=4K@0xd0000000:5".
std::string virtio_mmio_cmdline(uint64_t size, uint64_t base, uint32_t irq);

}  // namespace cairn
