#include "snapshot/state/vcpu_state.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace cairn::snap {

#define CAIRN_TRY_SET(expr, what) \
  if (auto r_ = (expr); !r_) return std::unexpected(std::move(r_.error()).context(what))
#define CAIRN_TRY_GET(dst, expr, what)                                    \
  do {                                                                    \
    auto r_ = (expr);                                                     \
    if (!r_) return std::unexpected(std::move(r_.error()).context(what)); \
    dst = std::move(*r_);                                                 \
  } while (0)

Result<std::vector<uint32_t>> readable_msrs(const VcpuFd& v, std::span<const uint32_t> list) {
  // KVM_GET_MSRS stops at the first MSR it refuses: drop that one and go on.
  std::vector<uint32_t> keep;
  std::vector<kvm_msr_entry> batch;
  size_t pos = 0;
  while (pos < list.size()) {
    batch.clear();
    for (size_t i = pos; i < list.size(); ++i) batch.push_back({list[i], 0, 0});
    auto n = v.get_msrs(batch);
    if (!n) return std::unexpected(n.error());
    for (size_t i = 0; i < *n; ++i) keep.push_back(batch[i].index);
    pos += *n + 1;  // skip the refused one
  }
  return keep;
}

namespace {
uint32_t lapic_reg(const kvm_lapic_state& l, size_t off) {
  uint32_t v;
  std::memcpy(&v, l.regs + off, sizeof(v));
  return v;
}
bool vector_set(const kvm_lapic_state& l, size_t base, uint8_t vector) {
  return (lapic_reg(l, base + (vector / 32) * 0x10) >> (vector % 32)) & 1;
}
}  // namespace

bool keep_expired_timer(VcpuState& s) {
  constexpr size_t kIsr = 0x100, kIrr = 0x200, kLvtTimer = 0x320;
  const uint32_t lvtt = lapic_reg(s.lapic, kLvtTimer);
  const bool deadline_mode = ((lvtt >> 17) & 3) == 2, masked = (lvtt >> 16) & 1;
  const auto vector = static_cast<uint8_t>(lvtt & 0xff);
  if (!deadline_mode || masked || vector_set(s.lapic, kIrr, vector) || vector_set(s.lapic, kIsr, vector)) return false;
  kvm_msr_entry* deadline = nullptr;
  const kvm_msr_entry* tsc = nullptr;
  for (auto& m : s.msrs) {
    if (m.index == kMsrIa32TscDeadline) deadline = &m;
    if (m.index == kMsrIa32Tsc) tsc = &m;
  }
  if (!deadline || !tsc || deadline->data != 0) return false;
  deadline->data = tsc->data;
  return true;
}

Result<VcpuState> capture_vcpu(const VcpuFd& v, std::span<const uint32_t> msrs, size_t xsave_size) {
  VcpuState s;
  // KVM_GET_MP_STATE first: it makes the LAPIC accept pending INIT/SIPI
  // events, which changes the state the other calls report.
  CAIRN_TRY_GET(s.mp_state, v.get_mp_state(), "saving MP state");
  // Events before SREGS and debug registers: without
  // KVM_CAP_EXCEPTION_PAYLOAD, KVM delivers a pending #PF's CR2 (or #DB's
  // DR6) into the registers only when the events are read, so reading them
  // later would save a stale CR2. Nothing read afterwards changes them.
  CAIRN_TRY_GET(s.events, v.get_vcpu_events(), "saving pending events");
  CAIRN_TRY_GET(s.regs, v.get_regs(), "saving registers");
  CAIRN_TRY_GET(s.sregs, v.get_sregs(), "saving special registers");
  CAIRN_TRY_GET(s.xsave, v.get_xsave(xsave_size), "saving XSAVE state");
  CAIRN_TRY_GET(s.xcrs, v.get_xcrs(), "saving XCRs");
  CAIRN_TRY_GET(s.debugregs, v.get_debugregs(), "saving debug registers");
  CAIRN_TRY_GET(s.lapic, v.get_lapic(), "saving the local APIC");
  CAIRN_TRY_GET(s.tsc_khz, v.get_tsc_khz(), "saving the TSC frequency");
  s.msrs.reserve(msrs.size());
  for (uint32_t m : msrs) s.msrs.push_back({m, 0, 0});
  auto n = v.get_msrs(s.msrs);
  if (!n) return std::unexpected(std::move(n.error()).context("saving MSRs"));
  if (*n != s.msrs.size())
    return fail(Errc::failed, "saving MSRs of vCPU {}: KVM refused MSR {:#x}", v.index(), s.msrs[*n].index);
  keep_expired_timer(s);
  return s;
}

Result<void> restore_vcpu(VcpuFd& v, const VcpuState& s) {
  // The TSC rate first: TSC MSR values are in its units. Only a rate that
  // differs by more than 250 ppm is worth scaling (and needs KVM_CAP_TSC_CONTROL).
  auto khz = v.get_tsc_khz();
  if (!khz) return std::unexpected(std::move(khz.error()).context("restoring the TSC frequency"));
  if (s.tsc_khz != 0 && std::llabs(static_cast<long long>(*khz) - s.tsc_khz) * 4000 > s.tsc_khz)
    CAIRN_TRY_SET(v.set_tsc_khz(s.tsc_khz),
                  fmt::format("the checkpoint's TSC runs at {} kHz, this host's at {} kHz", s.tsc_khz, *khz));
  CAIRN_TRY_SET(v.set_regs(s.regs), "restoring registers");
  CAIRN_TRY_SET(v.set_xsave(s.xsave), "restoring XSAVE state");
  CAIRN_TRY_SET(v.set_xcrs(s.xcrs), "restoring XCRs");
  // Special registers before MSRs: EFER and the APIC base decide which MSRs are valid.
  CAIRN_TRY_SET(v.set_sregs(s.sregs), "restoring special registers");
  // The TSC deadline only sticks once the LAPIC timer is in deadline mode: it goes after the LAPIC.
  std::vector<kvm_msr_entry> msrs, deadline;
  for (auto m : s.msrs) {
    // Asynchronous page faults stay off in a restored guest (cairn's CPUID
    // no longer offers them; a guest booted before enabled them): a
    // checkpoint cannot carry the "page ready" KVM may still owe the guest.
    if (m.index == kMsrKvmAsyncPfEn) m.data = 0;
    (m.index == kMsrIa32TscDeadline ? deadline : msrs).push_back(m);
  }
  CAIRN_TRY_SET(v.set_msrs(msrs), "restoring MSRs");
  CAIRN_TRY_SET(v.set_lapic(s.lapic), "restoring the local APIC");
  if (!deadline.empty()) CAIRN_TRY_SET(v.set_msrs(deadline), "restoring the TSC deadline");
  // Events after the LAPIC: an injected interrupt refers to its state.
  CAIRN_TRY_SET(v.set_vcpu_events(s.events), "restoring pending events");
  CAIRN_TRY_SET(v.set_debugregs(s.debugregs), "restoring debug registers");
  // MP state last, once the LAPIC and events it depends on are in place (an
  // AP waiting for SIPI, a halted vCPU).
  CAIRN_TRY_SET(v.set_mp_state(s.mp_state), "restoring MP state");
  return {};
}

Result<VmState> capture_vm(const VmFd& vm) {
  VmState s;
  CAIRN_TRY_GET(s.pic_master, vm.get_irqchip(KVM_IRQCHIP_PIC_MASTER), "saving the master PIC");
  CAIRN_TRY_GET(s.pic_slave, vm.get_irqchip(KVM_IRQCHIP_PIC_SLAVE), "saving the slave PIC");
  CAIRN_TRY_GET(s.ioapic, vm.get_irqchip(KVM_IRQCHIP_IOAPIC), "saving the IOAPIC");
  CAIRN_TRY_GET(s.pit, vm.get_pit2(), "saving the PIT");
  CAIRN_TRY_GET(s.clock, vm.get_clock(), "saving kvmclock");
  return s;
}

Result<void> restore_vm(VmFd& vm, const VmState& s) {
  if (s.pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER || s.pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE ||
      s.ioapic.chip_id != KVM_IRQCHIP_IOAPIC)
    return fail(Errc::corrupt, "saved interrupt controllers have the wrong chip ids");
  CAIRN_TRY_SET(vm.set_irqchip(s.pic_master), "restoring the master PIC");
  CAIRN_TRY_SET(vm.set_irqchip(s.pic_slave), "restoring the slave PIC");
  CAIRN_TRY_SET(vm.set_irqchip(s.ioapic), "restoring the IOAPIC");
  CAIRN_TRY_SET(vm.set_pit2(s.pit), "restoring the PIT");
  // The guest clock resumes from the saved value (the time spent saved does
  // not pass for the guest). KVM_SET_CLOCK takes no flags but REALTIME, which
  // would make it jump forward instead.
  kvm_clock_data c{};
  c.clock = s.clock.clock;
  CAIRN_TRY_SET(vm.set_clock(c), "restoring kvmclock");
  return {};
}

}  // namespace cairn::snap
