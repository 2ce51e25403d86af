// A KVM VM fd: memory slots, the in-kernel irqchip and PIT, interrupt lines,
// irqfds and ioeventfds.
#pragma once
#include <cstdint>
#include <optional>

#include "vmm/base/error.hpp"
#include "vmm/base/guest_memory.hpp"
#include "vmm/base/unique_fd.hpp"
#include "vmm/kvm/kvm_system.hpp"

namespace cairn {

class VmFd {
 public:
  // Creates the VM with TSS/identity-map pages, an in-kernel irqchip (PIC +
  // IOAPIC + LAPICs) and PIT.
  static Result<VmFd> create(const KvmSystem& kvm);

  int fd() const { return fd_.get(); }
  Result<void> map_memory(const GuestMemory& mem);
  // Level of a GSI (KVM_IRQ_LINE).
  Result<void> set_irq_line(uint32_t gsi, bool high);
  Result<void> register_irqfd(int eventfd, uint32_t gsi);
  // A guest write to `addr` (MMIO) of `len` bytes signals `eventfd` without a VM exit.
  Result<void> register_ioeventfd(int eventfd, uint64_t addr, uint32_t len, bool pio,
                                  std::optional<uint64_t> datamatch = std::nullopt);

 private:
  UniqueFd fd_;
};

}  // namespace cairn
