// A KVM VM fd: memory slots, the in-kernel irqchip and PIT, interrupt lines,
// irqfds and ioeventfds.
#pragma once
#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <vector>

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
  // KVM's dirty page log on every slot of `mem` (slot i = region i), for
  // checkpoints taken while the guest runs. Turning it on starts a clean log.
  Result<void> set_dirty_logging(const GuestMemory& mem, bool on);
  // Fetches and clears slot's log: bit p of `bits` set = page p written.
  Result<void> take_dirty_log(uint32_t slot, std::vector<uint64_t>& bits, uint64_t pages);
  // Level of a GSI (KVM_IRQ_LINE).
  Result<void> set_irq_line(uint32_t gsi, bool high);
  Result<void> register_irqfd(int eventfd, uint32_t gsi);
  // A guest write to `addr` (MMIO) of `len` bytes signals `eventfd` without a VM exit.
  Result<void> register_ioeventfd(int eventfd, uint64_t addr, uint32_t len, bool pio,
                                  std::optional<uint64_t> datamatch = std::nullopt);

  int check_extension(long cap) const;
  // Checkpoint state of the in-kernel devices: chip_id is KVM_IRQCHIP_PIC_MASTER,
  // KVM_IRQCHIP_PIC_SLAVE or KVM_IRQCHIP_IOAPIC; the clock is kvmclock.
  Result<kvm_irqchip> get_irqchip(uint32_t chip_id) const;
  Result<void> set_irqchip(const kvm_irqchip& chip);
  Result<kvm_pit_state2> get_pit2() const;
  Result<void> set_pit2(const kvm_pit_state2& pit);
  Result<kvm_clock_data> get_clock() const;
  Result<void> set_clock(const kvm_clock_data& clock);

 private:
  UniqueFd fd_;
};

}  // namespace cairn
