// An address bus (one for port I/O, one for MMIO): an ordered map from base
// address to (length, device). Ranges never overlap; an access is routed to
// the device whose range holds it, with the offset relative to that base.
//
// Threading: insert() takes a writer lock and read()/write() a reader lock,
// so vCPU threads may dispatch concurrently; devices serialize themselves.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <span>

#include "devices/bus_device.hpp"
#include "vmm/base/error.hpp"

namespace cairn {

class Bus {
 public:
  // Maps [base, base+len). Fails for len 0, a range that wraps past the end
  // of the address space, a null device, or any overlap with an existing range.
  Result<void> insert(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> dev);

  // Dispatch: false when no device holds the whole access [addr, addr+size).
  // The caller then ignores the write or returns all-ones for the read.
  bool read(uint64_t addr, std::span<uint8_t> data) const;
  bool write(uint64_t addr, std::span<const uint8_t> data) const;

  struct Slot {
    uint64_t base = 0;
    uint64_t len = 0;
    std::shared_ptr<BusDevice> dev;
  };
  // The device holding addr (with its range), or an empty Slot.
  Slot find(uint64_t addr) const;
  size_t size() const;

 private:
  struct Entry {
    uint64_t len;
    std::shared_ptr<BusDevice> dev;
  };
  // Looks up the device for a whole access; offset receives addr - base.
  std::shared_ptr<BusDevice> route(uint64_t addr, uint64_t size, uint64_t& offset) const;

  mutable std::shared_mutex mu_;
  std::map<uint64_t, Entry> devices_;
};

}  // namespace cairn
