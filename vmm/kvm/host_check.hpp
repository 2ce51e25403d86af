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

// How a running guest's RAM is copied into a checkpoint (machine_snapshot.cpp):
//   copy_on_write  the guest stops only while its memory is write-protected
//                  (userfaultfd); the copy runs while it runs, a first write
//                  into a chunk waiting for that chunk (cow_saver.hpp)
//   pre_copy       copied while it runs with KVM's dirty log on, round after
//                  round, then the chunks written meanwhile in the pause
//   paused         copied in the pause
// Copy-on-write is the default: its pause holds no copying at all, so it
// stays the same whatever the guest's RAM or write rate (pre-copy's last
// round grows with the write rate), it writes each chunk once, and it needs
// no dirty log. Where the host cannot write-protect shared memory (Linux
// before 5.19, userfaultfd refused), pre-copy is next, but only where KVM's
// dirty log can be trusted: under QEMU's TCG emulation of AMD-V (CPUID leaf
// 0x40000000 says "TCGTCGTCGTCG"; the nested test host) guests triple-faulted
// within 40 pre-copy checkpoints and the host kernel locked up with the log
// on, so there the guest is paused for the copy instead.
// CAIRN_MEMORY_COPY=copy-on-write|pre-copy|paused chooses one.
enum class MemoryCopy { copy_on_write, pre_copy, paused };
std::string_view memory_copy_name(MemoryCopy m);
struct MemoryCopyPolicy {
  MemoryCopy method = MemoryCopy::copy_on_write;
  MemoryCopy fallback = MemoryCopy::pre_copy;  // when the host refuses copy-on-write
  std::string why;  // why `method` or `fallback` is `paused`, for the checkpoint's report
};
MemoryCopyPolicy memory_copy_policy();
// Testable core: the hypervisor signature (empty on bare metal) and CAIRN_MEMORY_COPY.
MemoryCopyPolicy decide_memory_copy(const std::string& hypervisor_signature, const char* env_override);
// CPUID 0x40000000's vendor signature when CPUID says a hypervisor is present.
std::string hypervisor_signature();

}  // namespace cairn
