// Everything that must be in guest memory and in the boot CPU's registers before the first
// KVM_RUN of a Linux guest: kernel, initrd, command line, zero page, MP table, GDT, page tables.
// CPUID tables come separately from vcpu_cpuid() (they need KVM_GET_SUPPORTED_CPUID).
#pragma once
#include <linux/kvm.h>

#include <optional>
#include <string>

#include "vmm/base/error.hpp"
#include "vmm/base/guest_memory.hpp"
#include "vmm/boot/initrd.hpp"
#include "vmm/boot/kernel_loader.hpp"

namespace cairn {

struct BootConfig {
  std::string kernel_path;
  std::string initrd_path;  // empty: no initrd
  std::string cmdline;
  unsigned vcpus = 1;
};

struct BootResult {
  kvm_regs regs{};  // for the boot CPU (vCPU 0); the others start through INIT/SIPI
  LoadedKernel kernel;
  std::optional<InitrdPlacement> initrd;

  // The boot CPU's special registers: `current` is what KVM_GET_SREGS returned.
  kvm_sregs sregs(const kvm_sregs& current) const;
};

Result<BootResult> prepare_boot(GuestMemory& mem, const BootConfig& cfg);

}  // namespace cairn
