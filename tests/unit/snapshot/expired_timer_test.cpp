#include <catch2/catch.hpp>
#include <cstring>

#include "snapshot/state/vcpu_state.hpp"

using namespace cairn;
using namespace cairn::snap;

namespace {
constexpr uint32_t kDeadlineMode = 2u << 17, kMasked = 1u << 16, kVector = 0xec;
constexpr uint64_t kTsc = 123'456'789;

void set_reg(kvm_lapic_state& l, size_t off, uint32_t v) { std::memcpy(l.regs + off, &v, sizeof(v)); }

// A vCPU whose LAPIC timer is `lvtt`, with a deadline MSR of `deadline`.
VcpuState vcpu(uint32_t lvtt, uint64_t deadline) {
  VcpuState s;
  set_reg(s.lapic, 0x320, lvtt);
  s.msrs = {{kMsrIa32Tsc, 0, kTsc}, {0xc0000080, 0, 0xd01}, {kMsrIa32TscDeadline, 0, deadline}};
  return s;
}
uint64_t deadline_of(const VcpuState& s) { return s.msrs[2].data; }
}  // namespace

TEST_CASE("an expired TSC-deadline timer KVM still holds as pending is saved as due") {
  auto s = vcpu(kDeadlineMode | kVector, 0);
  CHECK(keep_expired_timer(s));
  CHECK(deadline_of(s) == kTsc);
  CHECK(s.msrs[1].data == 0xd01);  // nothing else changes
}

TEST_CASE("a timer that is armed, masked, in another mode, or already delivered is saved as it is") {
  auto armed = vcpu(kDeadlineMode | kVector, kTsc + 1000);
  CHECK_FALSE(keep_expired_timer(armed));
  CHECK(deadline_of(armed) == kTsc + 1000);

  auto masked = vcpu(kDeadlineMode | kMasked | kVector, 0);  // Linux's stopped clockevent
  CHECK_FALSE(keep_expired_timer(masked));
  CHECK(deadline_of(masked) == 0);

  auto oneshot = vcpu(kVector, 0);  // one-shot mode: the deadline MSR means nothing
  CHECK_FALSE(keep_expired_timer(oneshot));

  auto requested = vcpu(kDeadlineMode | kVector, 0);
  set_reg(requested.lapic, 0x200 + (kVector / 32) * 0x10, 1u << (kVector % 32));  // in the IRR
  CHECK_FALSE(keep_expired_timer(requested));
  CHECK(deadline_of(requested) == 0);

  auto in_service = vcpu(kDeadlineMode | kVector, 0);
  set_reg(in_service.lapic, 0x100 + (kVector / 32) * 0x10, 1u << (kVector % 32));  // in the ISR
  CHECK_FALSE(keep_expired_timer(in_service));

  VcpuState no_msrs;
  set_reg(no_msrs.lapic, 0x320, kDeadlineMode | kVector);
  CHECK_FALSE(keep_expired_timer(no_msrs));
}
