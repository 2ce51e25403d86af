// A KVM vCPU fd and its shared kvm_run page.
#pragma once
#include <linux/kvm.h>

#include <cstdint>
#include <span>
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

  // The boot-time architectural state Linux expects beyond what the boot
  // protocol sets: FPU control words, LAPIC LINT0=ExtINT / LINT1=NMI, and MSRs.
  Result<void> init_defaults();

 private:
  UniqueFd fd_;
  Mapping run_;
  unsigned index_ = 0;
};

}  // namespace cairn
