#include <catch2/catch.hpp>

#include <cstring>

#include "vmm/boot/cpuid.hpp"

using namespace cairn;

namespace {
kvm_cpuid_entry2 entry(uint32_t fn, uint32_t idx, uint32_t a, uint32_t b, uint32_t c, uint32_t d,
                       uint32_t flags = 0) {
  kvm_cpuid_entry2 e{};
  e.function = fn;
  e.index = idx;
  e.flags = flags;
  e.eax = a;
  e.ebx = b;
  e.ecx = c;
  e.edx = d;
  return e;
}

// What KVM_GET_SUPPORTED_CPUID returns on an Intel host, trimmed to the leaves that matter.
std::vector<kvm_cpuid_entry2> supported() {
  constexpr uint32_t sig = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  uint32_t kvm_sig[3];
  std::memcpy(kvm_sig, "KVMKVMKVM\0\0\0", 12);
  return {
      entry(0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69),
      entry(1, 0, 0x000906ea, 0x00000800, 0x7ffafbff, 0x0f8bfbff),  // CLFLUSH size 8, no HTT
      entry(4, 0, 0x00000121, 0x01c0003f, 0x3f, 0, sig),            // L1d
      entry(4, 1, 0x00000122, 0x01c0003f, 0x3f, 0, sig),            // L1i
      entry(4, 2, 0x00000143, 0x00c0003f, 0x3ff, 0, sig),           // L2
      entry(4, 3, 0x00000163, 0x03c0003f, 0x2fff, 6, sig),          // L3
      entry(4, 4, 0, 0, 0, 0, sig),                                 // end of list
      entry(6, 0, 4, 0, 0, 0),
      entry(0xb, 0, 1, 2, 0x100, 7, sig),  // host topology: must be replaced
      entry(0xb, 1, 4, 16, 0x201, 7, sig),
      entry(0x1f, 0, 1, 2, 0x100, 7, sig),
      entry(0x40000000, 0, 0x40000001, kvm_sig[0], kvm_sig[1], kvm_sig[2]),
      entry(0x40000001, 0, 0x01007afb, 0, 0, 0),
      entry(0x80000008, 0, 0x3027, 0, 0x0000f007, 0),
      entry(0x8000001d, 0, 0x00004121, 0x01c0003f, 0x3f, 0, sig),  // AMD L1d, shared by 2
      entry(0x8000001d, 3, 0x0001c163, 0x03c0003f, 0x3fff, 1, sig),  // AMD L3, shared by 8
      entry(0x8000001e, 0, 7, 0x0103, 0, 0),
  };
}

const kvm_cpuid_entry2* find(const std::vector<kvm_cpuid_entry2>& t, uint32_t fn, uint32_t idx = 0) {
  for (auto& e : t)
    if (e.function == fn && e.index == idx) return &e;
  return nullptr;
}

size_t count_fn(const std::vector<kvm_cpuid_entry2>& t, uint32_t fn) {
  size_t n = 0;
  for (auto& e : t) n += e.function == fn;
  return n;
}
}  // namespace

TEST_CASE("CPUID for vCPU 0 and 3 of 4: APIC ids and topology") {
  auto sup = supported();
  for (unsigned idx : {0U, 3U}) {
    auto t = vcpu_cpuid(sup, idx, 4);
    REQUIRE(t);
    auto* l1 = find(*t, 1);
    REQUIRE(l1);
    CHECK((l1->ebx >> 24) == idx);
    CHECK(((l1->ebx >> 16) & 0xff) == 4);
    CHECK((l1->ebx & 0xffff) == 0x0800);  // CLFLUSH size kept
    CHECK((l1->ecx & (1U << 31)));        // hypervisor
    CHECK((l1->edx & (1U << 28)));        // HTT: more than one logical CPU
    CHECK((l1->ecx & ~(1U << 31)) == 0x7ffafbff);

    // x2APIC topology: 1 thread per core, 4 cores.
    for (uint32_t fn : {0xbU, 0x1fU}) {
      CHECK(count_fn(*t, fn) == 3);
      auto* smt = find(*t, fn, 0);
      auto* core = find(*t, fn, 1);
      auto* end = find(*t, fn, 2);
      REQUIRE((smt && core && end));
      CHECK((smt->eax == 0 && smt->ebx == 1 && smt->ecx == 0x100 && smt->edx == idx));
      CHECK((core->eax == 2 && core->ebx == 4 && core->ecx == 0x201 && core->edx == idx));
      CHECK((end->eax == 0 && end->ebx == 0 && end->ecx == 2 && end->edx == idx));
      CHECK((core->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX));
    }

    // Leaf 4: 4 cores per package; L1/L2 private, L3 shared by all 4.
    for (uint32_t sub = 0; sub < 4; ++sub) {
      auto* c = find(*t, 4, sub);
      REQUIRE(c);
      CHECK((c->eax >> 26) == 3);
      CHECK(((c->eax >> 14) & 0xfff) == (sub == 3 ? 3u : 0u));
      CHECK((c->eax & 0x3fff) == (sup[2 + sub].eax & 0x3fff));
    }
    CHECK(find(*t, 4, 4)->eax == 0);

    auto* amd_l1 = find(*t, 0x8000001d, 0);
    auto* amd_l3 = find(*t, 0x8000001d, 3);
    CHECK(((amd_l1->eax >> 14) & 0xfff) == 0);
    CHECK(((amd_l3->eax >> 14) & 0xfff) == 3);
    CHECK((amd_l3->eax & 0x3fff) == 0x163);
    auto* amd_topo = find(*t, 0x8000001e);
    CHECK(amd_topo->eax == idx);
    CHECK((amd_topo->ebx & 0xffff) == idx);  // core id, 1 thread per core

    auto* ext = find(*t, 0x80000008);
    CHECK((ext->ecx & 0xff) == 3);
    CHECK(((ext->ecx >> 12) & 0xf) == 2);
    CHECK(ext->eax == 0x3027);
  }
}

TEST_CASE("CPUID passes KVM signature, leaf 6 and the rest through; no async page faults") {
  auto sup = supported();
  auto t = vcpu_cpuid(sup, 0, 1);
  REQUIRE(t);
  auto* kvm = find(*t, 0x40000000);
  REQUIRE(kvm);
  char sig[13] = {};
  std::memcpy(sig, &kvm->ebx, 4);
  std::memcpy(sig + 4, &kvm->ecx, 4);
  std::memcpy(sig + 8, &kvm->edx, 4);
  CHECK(std::string(sig) == "KVMKVMKVM");
  // KVM's features but the asynchronous page faults (bits 4, 10, 14).
  CHECK(find(*t, 0x40000001)->eax == 0x01003aeb);
  CHECK(find(*t, 6)->eax == 4);
  CHECK(find(*t, 0)->eax == 0x1f);
  // A single vCPU: no HTT, one addressable id, core level of width 0.
  CHECK_FALSE((find(*t, 1)->edx & (1U << 28)));
  CHECK(((find(*t, 1)->ebx >> 16) & 0xff) == 1);
  CHECK(find(*t, 0xb, 1)->eax == 0);
  CHECK(find(*t, 0xb, 1)->ebx == 1);
}

TEST_CASE("CPUID leaves absent from the supported list are not invented") {
  std::vector<kvm_cpuid_entry2> sup{entry(0, 0, 1, 0, 0, 0), entry(1, 0, 0, 0, 0, 0)};
  auto t = vcpu_cpuid(sup, 1, 2);
  REQUIRE(t);
  CHECK(t->size() == 2);
  CHECK(count_fn(*t, 0xb) == 0);
}

TEST_CASE("CPUID refuses bad vCPU indexes and counts") {
  auto sup = supported();
  CHECK_FALSE(vcpu_cpuid(sup, 4, 4));
  CHECK_FALSE(vcpu_cpuid(sup, 0, 0));
  CHECK_FALSE(vcpu_cpuid(sup, 0, 33));
  CHECK(vcpu_cpuid(sup, 2, 3));
}
