// The tiny device interface: a device sees offsets relative to its own base
// and never learns where it is mapped (the bus owns placement).
#pragma once
#include <cstdint>
#include <span>
#include <string_view>

namespace cairn {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  virtual std::string_view name() const = 0;
  // Reads fill `data` entirely (unimplemented registers read as zero or 0xff per device).
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

}  // namespace cairn
