#include <catch2/catch.hpp>

#include "vmm/kvm/host_check.hpp"

using namespace cairn;

TEST_CASE("host check tells hardware KVM from PVM and names the way out") {
  auto svm = classify_host_kvm(true, false, "processor: 0\nflags\t\t: fpu vme svm sse\n");
  REQUIRE(svm);
  CHECK(*svm == "svm");
  auto pvm = classify_host_kvm(true, true, "flags\t\t: fpu vme sse\n");
  REQUIRE_FALSE(pvm);
  CHECK(pvm.error().code == Errc::unsupported);
  CHECK(pvm.error().message.find("scripts/testhost") != std::string::npos);
  CHECK_FALSE(classify_host_kvm(true, false, "flags\t\t: fpu vme sse svmx\n"));
  CHECK_FALSE(classify_host_kvm(false, false, "flags : svm\n"));
}
