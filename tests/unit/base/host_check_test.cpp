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

TEST_CASE("a running guest's RAM: copy-on-write first, pre-copy next where KVM's dirty log is trusted") {
  auto metal = decide_memory_copy("", nullptr);
  CHECK(metal.method == MemoryCopy::copy_on_write);
  CHECK(metal.fallback == MemoryCopy::pre_copy);
  CHECK(decide_memory_copy("KVMKVMKVM", nullptr).fallback == MemoryCopy::pre_copy);  // nested on hardware KVM
  auto tcg = decide_memory_copy("TCGTCGTCGTCG", nullptr);
  CHECK(tcg.method == MemoryCopy::copy_on_write);
  CHECK(tcg.fallback == MemoryCopy::paused);
  CHECK(tcg.why.find("CAIRN_MEMORY_COPY=pre-copy") != std::string::npos);
  CHECK(decide_memory_copy("TCGTCGTCGTCG", "pre-copy").method == MemoryCopy::pre_copy);
  auto paused = decide_memory_copy("", "paused");
  CHECK(paused.method == MemoryCopy::paused);
  CHECK(paused.why == "CAIRN_MEMORY_COPY=paused");
  CHECK(decide_memory_copy("", "yes").method == MemoryCopy::copy_on_write);  // anything else: the default
  CHECK(memory_copy_name(MemoryCopy::copy_on_write) == "copy-on-write");
}
