#include "vmm/machine/exit_dispatch.hpp"

#include <algorithm>
#include <cstring>

namespace cairn {

void dispatch_pio(kvm_run* run, const Bus& pio) {
  auto* data = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
  for (uint32_t i = 0; i < run->io.count; ++i) {
    std::span<uint8_t> d(data + i * run->io.size, run->io.size);
    if (run->io.direction == KVM_EXIT_IO_OUT) {
      pio.write(run->io.port, d);
    } else if (!pio.read(run->io.port, d)) {
      std::memset(d.data(), 0xff, d.size());
    }
  }
}

void dispatch_mmio(kvm_run* run, const Bus& mmio) {
  std::span<uint8_t> d(run->mmio.data, std::min<uint32_t>(run->mmio.len, sizeof(run->mmio.data)));
  if (run->mmio.is_write) {
    mmio.write(run->mmio.phys_addr, d);
  } else if (!mmio.read(run->mmio.phys_addr, d)) {
    std::memset(d.data(), 0xff, d.size());
  }
}

}  // namespace cairn
