// Capture and restore of one vCPU's complete KVM state, and of the VM-wide
// in-kernel devices (PIC, IOAPIC, PIT) and kvmclock.
#pragma once
#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "vmm/base/error.hpp"
#include "vmm/kvm/kvm_system.hpp"
#include "vmm/kvm/vcpu_fd.hpp"
#include "vmm/kvm/vm_fd.hpp"

namespace cairn::snap {

inline constexpr uint32_t kMsrIa32Tsc = 0x10;
inline constexpr uint32_t kMsrIa32TscDeadline = 0x6e0;
inline constexpr uint32_t kMsrKvmAsyncPfEn = 0x4b564d02;

struct VcpuState {
  kvm_mp_state mp_state{};
  kvm_regs regs{};
  kvm_sregs sregs{};
  std::vector<uint8_t> xsave;  // KVM_GET_XSAVE(2) area, >= 4096 bytes
  kvm_xcrs xcrs{};
  kvm_debugregs debugregs{};
  kvm_lapic_state lapic{};
  std::vector<kvm_msr_entry> msrs;  // every MSR of KVM's index list that KVM_GET_MSRS accepted
  kvm_vcpu_events events{};
  uint32_t tsc_khz = 0;
};

struct VmState {
  kvm_irqchip pic_master{};
  kvm_irqchip pic_slave{};
  kvm_irqchip ioapic{};
  kvm_pit_state2 pit{};
  kvm_clock_data clock{};
};

// The MSRs of `msr_index_list` (KVM_GET_MSR_INDEX_LIST) that this vCPU can read.
Result<std::vector<uint32_t>> readable_msrs(const VcpuFd& v, std::span<const uint32_t> msr_index_list);

// A TSC-deadline timer that expired while the vCPU was out of KVM_RUN is
// counted as pending inside KVM, where no ioctl shows it: the deadline MSR
// reads 0 and the timer's vector is not yet in the IRR. Saved that way, the
// restored guest would wait for a tick that never comes (Linux arms the next
// one from its timer interrupt). When the LAPIC timer is in deadline mode,
// unmasked, its vector neither requested nor in service and the deadline 0,
// the deadline is set to the vCPU's TSC: due at once after a restore. At
// worst the guest sees one early tick, which Linux takes in its stride.
// Returns whether it changed the state.
bool keep_expired_timer(VcpuState& s);

// `xsave_size` is KVM_CAP_XSAVE2's answer on the VM (0 or < 4096: plain KVM_GET_XSAVE).
// The vCPU must not be running (the machine is paused).
Result<VcpuState> capture_vcpu(const VcpuFd& v, std::span<const uint32_t> msrs, size_t xsave_size);
// Into a freshly created vCPU whose CPUID is already set.
Result<void> restore_vcpu(VcpuFd& v, const VcpuState& s);

Result<VmState> capture_vm(const VmFd& vm);
// Into a fresh VM before any vCPU runs.
Result<void> restore_vm(VmFd& vm, const VmState& s);

}  // namespace cairn::snap
