#include "devices/bus.hpp"

#include <mutex>

namespace cairn {

Result<void> Bus::insert(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> dev) {
  if (!dev) return fail(Errc::invalid_argument, "bus insert at {:#x}: no device", base);
  if (len == 0) return fail(Errc::invalid_argument, "bus insert of {} at {:#x}: zero length", dev->name(), base);
  uint64_t last = base + (len - 1);
  if (last < base)
    return fail(Errc::invalid_argument, "bus insert of {} at {:#x}+{:#x}: range wraps", dev->name(), base, len);

  std::unique_lock lock(mu_);
  // The first range starting after `base` must start after our end too...
  auto next = devices_.upper_bound(base);
  if (next != devices_.end() && next->first <= last)
    return fail(Errc::invalid_argument, "bus insert of {} at {:#x}+{:#x} overlaps {} at {:#x}", dev->name(),
                base, len, next->second.dev->name(), next->first);
  // ...and the last range starting at or before `base` must end before it.
  if (next != devices_.begin()) {
    auto prev = std::prev(next);
    if (base - prev->first < prev->second.len)
      return fail(Errc::invalid_argument, "bus insert of {} at {:#x}+{:#x} overlaps {} at {:#x}", dev->name(),
                  base, len, prev->second.dev->name(), prev->first);
  }
  devices_.emplace(base, Entry{len, std::move(dev)});
  return {};
}

std::shared_ptr<BusDevice> Bus::route(uint64_t addr, uint64_t size, uint64_t& offset) const {
  std::shared_lock lock(mu_);
  auto it = devices_.upper_bound(addr);
  if (it == devices_.begin()) return nullptr;
  --it;
  uint64_t off = addr - it->first;
  // Both checks avoid addr + size, which may wrap for hostile values.
  if (off >= it->second.len || size > it->second.len - off) return nullptr;
  offset = off;
  return it->second.dev;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) const {
  uint64_t offset = 0;
  auto dev = route(addr, data.size(), offset);
  if (!dev) return false;
  dev->read(offset, data);
  return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) const {
  uint64_t offset = 0;
  auto dev = route(addr, data.size(), offset);
  if (!dev) return false;
  dev->write(offset, data);
  return true;
}

Bus::Slot Bus::find(uint64_t addr) const {
  std::shared_lock lock(mu_);
  auto it = devices_.upper_bound(addr);
  if (it == devices_.begin()) return {};
  --it;
  if (addr - it->first >= it->second.len) return {};
  return Slot{it->first, it->second.len, it->second.dev};
}

size_t Bus::size() const {
  std::shared_lock lock(mu_);
  return devices_.size();
}

}  // namespace cairn
