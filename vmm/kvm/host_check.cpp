#include "vmm/kvm/host_check.hpp"

#include <cpuid.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <string_view>

namespace cairn {

namespace {
constexpr const char* kWayOut =
    "run cairn inside the nested test host instead: scripts/testhost -- build/cairn ...";
}

Result<std::string> classify_host_kvm(bool dev_kvm_exists, bool pvm_loaded, const std::string& cpuinfo) {
  if (!dev_kvm_exists) return fail(Errc::unsupported, "/dev/kvm does not exist on this host; {}", kWayOut);
  if (pvm_loaded)
    return fail(Errc::unsupported,
                "this host's KVM is the PVM back end (kvm_pvm), which cannot run unmodified Linux "
                "guests; {}", kWayOut);
  std::regex flags_line(R"(^flags\s*:.*\b(vmx|svm)\b)", std::regex::multiline);
  std::smatch m;
  if (std::regex_search(cpuinfo, m, flags_line)) return m[1].str();
  return fail(Errc::unsupported,
              "the CPU has no vmx/svm flag, so /dev/kvm is not hardware-backed; {}", kWayOut);
}

Result<std::string> check_host_kvm() {
  struct stat st {};
  bool dev = ::stat("/dev/kvm", &st) == 0;
  bool pvm = ::stat("/sys/module/kvm_pvm", &st) == 0;
  std::ifstream f("/proc/cpuinfo");
  std::stringstream ss;
  ss << f.rdbuf();
  return classify_host_kvm(dev, pvm, ss.str());
}

std::string hypervisor_signature() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 31))) return {};
  __cpuid(0x40000000, a, b, c, d);
  char sig[13] = {};
  std::memcpy(sig, &b, 4);
  std::memcpy(sig + 4, &c, 4);
  std::memcpy(sig + 8, &d, 4);
  return sig;
}

LiveCopyPolicy decide_live_copy(const std::string& hypervisor_signature, const char* env_override) {
  if (env_override && std::string_view(env_override) == "0") return {false, "CAIRN_LIVE_COPY=0"};
  if (env_override && std::string_view(env_override) == "1") return {true, {}};
  if (hypervisor_signature == "TCGTCGTCGTCG")
    return {false, "KVM's dirty log is not reliable under QEMU's TCG emulation (CAIRN_LIVE_COPY=1 forces it)"};
  return {true, {}};
}

LiveCopyPolicy live_copy_policy() { return decide_live_copy(hypervisor_signature(), std::getenv("CAIRN_LIVE_COPY")); }

}  // namespace cairn
