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

TEST_CASE("live checkpoints are off under QEMU's TCG unless forced, on elsewhere") {
  CHECK(decide_live_copy("", nullptr).live);
  CHECK(decide_live_copy("KVMKVMKVM", nullptr).live);  // nested on hardware KVM: its dirty log is real
  auto tcg = decide_live_copy("TCGTCGTCGTCG", nullptr);
  CHECK_FALSE(tcg.live);
  CHECK(tcg.why.find("CAIRN_LIVE_COPY=1") != std::string::npos);
  CHECK(decide_live_copy("TCGTCGTCGTCG", "1").live);
  CHECK_FALSE(decide_live_copy("", "0").live);
  CHECK(decide_live_copy("", "yes").live);  // anything else: the default
}
