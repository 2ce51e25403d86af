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

}  // namespace cairn
