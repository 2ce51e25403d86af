// Detects whether /dev/kvm is backed by real VT-x/AMD-V. KVM's PVM back end
// answers every ioctl but cannot run an unmodified Linux guest, so it is
// refused up front with a message that names the nested test host.
#pragma once
#include <string>

#include "vmm/base/error.hpp"

namespace cairn {

// Returns "vmx" or "svm" when hardware-backed, else an Errc::unsupported error.
Result<std::string> check_host_kvm();

// Testable core: the contents of /proc/cpuinfo and whether kvm_pvm is loaded.
Result<std::string> classify_host_kvm(bool dev_kvm_exists, bool pvm_loaded, const std::string& cpuinfo);

// Whether KVM's dirty log can be trusted for copying a running guest's RAM
// (live checkpoints), and why not. Under QEMU's TCG emulation of AMD-V (the
// nested test host; CPUID leaf 0x40000000 says "TCGTCGTCGTCG") it cannot:
// measured there, guests triple-faulted within 40 live checkpoints and the
// host kernel locked up with the log left on, while the same guests took
// stop-and-copy checkpoints without a fault. CAIRN_LIVE_COPY=0 or 1 overrides.
struct LiveCopyPolicy {
  bool live = true;
  std::string why;  // when !live: the reason, for the checkpoint's report
};
LiveCopyPolicy live_copy_policy();
// Testable core: the hypervisor signature (empty on bare metal) and the override.
LiveCopyPolicy decide_live_copy(const std::string& hypervisor_signature, const char* env_override);
// CPUID 0x40000000's vendor signature when CPUID says a hypervisor is present.
std::string hypervisor_signature();

}  // namespace cairn
