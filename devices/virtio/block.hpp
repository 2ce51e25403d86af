// virtio-blk (virtio 1.1 section 5.2) over a BlockBackend: one request queue
// of 256 entries, processed synchronously on the thread that kicks it.
//
// Request layout in a descriptor chain (device-readable part first):
//   le32 type, le32 reserved, le64 sector     16-byte header (readable)
//   data                                      readable for OUT/DISCARD/WRITE_ZEROES,
//                                             writable for IN/GET_ID
//   u8 status                                 the last byte of the last descriptor (writable)
// DISCARD/WRITE_ZEROES data: segments of {le64 sector, le32 num_sectors, le32 flags}.
#pragma once
#include <array>
#include <memory>
#include <mutex>

#include "devices/block_backend.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace cairn {

// Feature bits (section 5.2.3).
inline constexpr uint64_t kBlkFSegMax = 1ULL << 2;
inline constexpr uint64_t kBlkFRo = 1ULL << 5;
inline constexpr uint64_t kBlkFBlkSize = 1ULL << 6;
inline constexpr uint64_t kBlkFFlush = 1ULL << 9;
inline constexpr uint64_t kBlkFDiscard = 1ULL << 13;
inline constexpr uint64_t kBlkFWriteZeroes = 1ULL << 14;

// Request types and status values.
inline constexpr uint32_t kBlkTIn = 0, kBlkTOut = 1, kBlkTFlush = 4, kBlkTGetId = 8, kBlkTDiscard = 11,
                          kBlkTWriteZeroes = 13;
inline constexpr uint8_t kBlkSOk = 0, kBlkSIoErr = 1, kBlkSUnsupp = 2;

class VirtioBlock : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint64_t kSectorSize = 512;
  static constexpr uint32_t kMaxDiscardSectors = 0x7fffff;  // just under 4 GiB per segment
  static constexpr uint32_t kMaxDiscardSegments = 32;
  static constexpr size_t kIdBytes = 20;

  explicit VirtioBlock(std::shared_ptr<BlockBackend> backend);

  std::string_view name() const override { return "virtio-blk"; }
  uint32_t device_type() const override { return 2; }
  uint64_t device_features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;

  Result<void> activate(GuestMemory& mem, std::span<Virtqueue> queues, uint64_t acked_features,
                        VirtioInterrupt& irq) override;
  void notify(uint16_t index) override;
  void reset() override;

  // True after the driver handed over a malformed ring; requests then stop
  // until the driver resets the device.
  bool broken() const;

  // Puts another backend of the same size and mode behind the device (a
  // checkpoint moving the VM onto a new disk layer). Requests in progress
  // finish on the old one first.
  Result<void> replace_backend(std::shared_ptr<BlockBackend> backend);

 private:
  struct Outcome {
    uint8_t status;
    uint32_t data_written;  // bytes placed in the writable data part
  };
  void process_queue();
  void complete(const DescriptorChain& chain);
  Outcome handle(const DescriptorChain& chain, uint64_t data_writable);
  Outcome handle_range_op(const DescriptorChain& chain, uint32_t type);
  bool range_ok(uint64_t sector, uint64_t bytes) const;

  std::shared_ptr<BlockBackend> backend_;
  std::array<uint8_t, 60> config_{};  // struct virtio_blk_config up to write_zeroes_may_unmap

  mutable std::mutex mu_;
  GuestMemory* mem_ = nullptr;
  Virtqueue* queue_ = nullptr;
  VirtioInterrupt* irq_ = nullptr;
  uint64_t acked_ = 0;
  bool broken_ = false;
};

}  // namespace cairn
