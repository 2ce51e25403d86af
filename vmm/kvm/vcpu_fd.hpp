// A KVM vCPU fd and its shared kvm_run page.
#pragma once
#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/base/error.hpp"
#include "vmm/base/mapping.hpp"
#include "vmm/base/unique_fd.hpp"
#include "vmm/kvm/kvm_system.hpp"
#include "vmm/kvm/vm_fd.hpp"

namespace cairn {

class VcpuFd {
 public:
  static Result<VcpuFd> create(const KvmSystem& kvm, const VmFd& vm, unsigned index);

  int fd() const { return fd_.get(); }
  unsigned index() const { return index_; }
  kvm_run* run() const { return reinterpret_cast<kvm_run*>(run_.data()); }

  // Enters the guest; returns 0, or -errno (EINTR when kicked out by a signal
  // or immediate_exit, EAGAIN), never an exception.
  int enter();

  Result<void> set_cpuid(std::span<const kvm_cpuid_entry2> entries);
  Result<kvm_regs> get_regs() const;
  Result<void> set_regs(const kvm_regs& r);
  Result<kvm_sregs> get_sregs() const;
  Result<void> set_sregs(const kvm_sregs& s);
  Result<void> set_fpu(const kvm_fpu& f);
  Result<void> set_msrs(std::span<const kvm_msr_entry> msrs);
  Result<kvm_lapic_state> get_lapic() const;
  Result<void> set_lapic(const kvm_lapic_state& l);

  // Checkpoint state. get_msrs reads entries[i].index for each entry in
  // order and stops at the first MSR KVM refuses: it returns how many it read.
  Result<size_t> get_msrs(std::span<kvm_msr_entry> entries) const;
  // `size` is KVM_CAP_XSAVE2's answer (>= 4096); more than 4096 bytes need KVM_GET_XSAVE2.
  Result<std::vector<uint8_t>> get_xsave(size_t size) const;
  Result<void> set_xsave(std::span<const uint8_t> xsave);
  Result<kvm_xcrs> get_xcrs() const;
  Result<void> set_xcrs(const kvm_xcrs& x);
  Result<kvm_vcpu_events> get_vcpu_events() const;
  Result<void> set_vcpu_events(const kvm_vcpu_events& e);
  Result<kvm_debugregs> get_debugregs() const;
  Result<void> set_debugregs(const kvm_debugregs& d);
  Result<kvm_mp_state> get_mp_state() const;
  Result<void> set_mp_state(const kvm_mp_state& m);
  Result<uint32_t> get_tsc_khz() const;
  Result<void> set_tsc_khz(uint32_t khz);

  // The boot-time architectural state Linux expects beyond what the boot
  // protocol sets: FPU control words, LAPIC LINT0=ExtINT / LINT1=NMI, and MSRs.
  Result<void> init_defaults();

  // A one-paragraph register dump for error reports (a triple fault, a failed
  // entry): RIP/RSP/RFLAGS, control registers, EFER, descriptor tables,
  // segment selectors, pending events and MP state. Fields KVM refuses to
  // report are left out. On AMD, KVM resets the vCPU when it intercepts a
  // shutdown, so after a hardware triple fault the dump shows the reset state
  // (RIP 0xfff0) rather than the faulting context.
  std::string describe() const;

 private:
  UniqueFd fd_;
  Mapping run_;
  unsigned index_ = 0;
};

}  // namespace cairn
