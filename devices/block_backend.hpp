// What virtio-blk needs from storage: a raw file today, cairn's layered
// differencing disk (snapshot/disk) behind the same interface.
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "vmm/base/error.hpp"

namespace cairn {

class BlockBackend {
 public:
  virtual ~BlockBackend() = default;
  virtual uint64_t size() const = 0;  // bytes, multiple of 512
  virtual bool read_only() const = 0;
  virtual Result<void> read(uint64_t offset, std::span<uint8_t> out) = 0;
  virtual Result<void> write(uint64_t offset, std::span<const uint8_t> in) = 0;
  // Durable on the host when this returns (fsync/fdatasync of everything written).
  virtual Result<void> flush() = 0;
  // Optional: both may be implemented as writing zeros; discard may drop data.
  virtual Result<void> discard(uint64_t offset, uint64_t len) = 0;
  virtual Result<void> write_zeroes(uint64_t offset, uint64_t len) = 0;
  // A stable identifier (<= 20 bytes used) for VIRTIO_BLK_T_GET_ID.
  virtual std::string id() const = 0;
};

}  // namespace cairn
