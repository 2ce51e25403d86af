#include "vmm/kvm/host_check.hpp"

#include <sys/stat.h>

#include <fstream>
#include <regex>
#include <sstream>

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

}  // namespace cairn
