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

std::string_view memory_copy_name(MemoryCopy m) {
  switch (m) {
    case MemoryCopy::copy_on_write: return "copy-on-write";
    case MemoryCopy::pre_copy: return "pre-copy";
    case MemoryCopy::paused: return "paused";
  }
  return "?";
}

MemoryCopyPolicy decide_memory_copy(const std::string& hypervisor_signature, const char* env_override) {
  const std::string_view env = env_override ? env_override : "";
  if (env == "paused") return {MemoryCopy::paused, MemoryCopy::paused, "CAIRN_MEMORY_COPY=paused"};
  if (env == "pre-copy") return {MemoryCopy::pre_copy, MemoryCopy::pre_copy, {}};
  if (hypervisor_signature == "TCGTCGTCGTCG")
    return {MemoryCopy::copy_on_write, MemoryCopy::paused,
            "KVM's dirty log is not reliable under QEMU's TCG emulation (CAIRN_MEMORY_COPY=pre-copy forces it)"};
  return {MemoryCopy::copy_on_write, MemoryCopy::pre_copy, {}};
}

MemoryCopyPolicy memory_copy_policy() {
  return decide_memory_copy(hypervisor_signature(), std::getenv("CAIRN_MEMORY_COPY"));
}

}  // namespace cairn
