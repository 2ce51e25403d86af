#include "snapshot/state/state_report.hpp"

#include <fmt/format.h>

#include <cstring>

namespace cairn::snap {

namespace {
// LAPIC register offsets (Intel SDM vol. 3, table 11-1).
constexpr size_t kTpr = 0x80, kIsr = 0x100, kIrr = 0x200, kLvtTimer = 0x320, kTimerInitial = 0x380,
                 kTimerCurrent = 0x390;

uint32_t reg32(const kvm_lapic_state& l, size_t off) {
  uint32_t v;
  std::memcpy(&v, l.regs + off, sizeof(v));
  return v;
}

// The set bits of a 256-bit LAPIC vector register, as "word:bits" pairs.
std::string vector_bits(const kvm_lapic_state& l, size_t base) {
  std::string out;
  for (unsigned w = 0; w < 8; ++w)
    if (uint32_t v = reg32(l, base + w * 0x10)) out += fmt::format(" {}:{:08x}", w, v);
  return out.empty() ? std::string(" none") : out;
}

std::string describe_vcpu(size_t i, const VcpuState& v) {
  uint64_t tsc = 0, deadline = 0;
  for (auto& e : v.msrs) {
    if (e.index == kMsrIa32Tsc) tsc = e.data;
    if (e.index == kMsrIa32TscDeadline) deadline = e.data;
  }
  const double deadline_ms = deadline > tsc && v.tsc_khz ? double(deadline - tsc) / v.tsc_khz : 0.0;
  return fmt::format(
      "vCPU {}: mp_state {} RIP {:#x} CS {:#x} RFLAGS {:#x} CR3 {:#x}\n"
      "  TSC {} deadline {} (in {:.1f} ms); LVTT {:#x} TMICT {:#x} TMCCT {:#x} TPR {:#x}\n"
      "  IRR{}; ISR{}\n"
      "  events: irq injected {} nr {}, nmi pending {} injected {}, exception pending {} injected {} nr {}\n",
      i, v.mp_state.mp_state, v.regs.rip, v.sregs.cs.selector, v.regs.rflags, v.sregs.cr3, tsc, deadline,
      deadline_ms, reg32(v.lapic, kLvtTimer), reg32(v.lapic, kTimerInitial), reg32(v.lapic, kTimerCurrent),
      reg32(v.lapic, kTpr), vector_bits(v.lapic, kIrr), vector_bits(v.lapic, kIsr), int(v.events.interrupt.injected),
      int(v.events.interrupt.nr), int(v.events.nmi.pending), int(v.events.nmi.injected),
      int(v.events.exception.pending), int(v.events.exception.injected), int(v.events.exception.nr));
}

std::string describe_pic(const char* name, const kvm_pic_state& p) {
  return fmt::format("{}: IRR {:#04x} IMR {:#04x} ISR {:#04x} base {:#04x}\n", name, p.irr, p.imr, p.isr, p.irq_base);
}

// The IOAPIC pins a guest has unmasked, with their delivery and level state.
std::string describe_ioapic(const kvm_ioapic_state& a) {
  std::string s = fmt::format("IOAPIC: IRR {:#x}\n", a.irr);
  for (unsigned pin = 0; pin < KVM_IOAPIC_NUM_PINS; ++pin) {
    const auto& e = a.redirtbl[pin].fields;
    if (e.mask) continue;
    s += fmt::format("  pin {}: vector {:#x} {} remote_irr {} dest {:#x}\n", pin, e.vector,
                     e.trig_mode ? "level" : "edge", e.remote_irr, e.dest_id);
  }
  return s;
}
}  // namespace

std::string describe_machine_state(const MachineState& st) {
  std::string s;
  for (size_t i = 0; i < st.vcpus.size(); ++i) s += describe_vcpu(i, st.vcpus[i]);
  s += describe_pic("PIC master", st.vm.pic_master.chip.pic);
  s += describe_pic("PIC slave", st.vm.pic_slave.chip.pic);
  s += describe_ioapic(st.vm.ioapic.chip.ioapic);
  s += fmt::format("kvmclock: {} ns\n", st.vm.clock.clock);
  const auto& u = st.devices.serial;
  s += fmt::format("UART: IER {:#x} LSR {:#x} MCR {:#x} THR-empty interrupt pending {}, {} bytes to read\n", u.ier,
                   u.lsr, u.mcr, u.thr_interrupt_pending, u.rx_fifo.size());
  for (size_t i = 0; i < st.devices.virtio.size(); ++i) {
    const auto& d = st.devices.virtio[i];
    const auto& t = d.transport;
    s += fmt::format("{} {}: status {:#x} interrupt status {:#x} features {:#x}\n", d.device, i, t.status,
                     t.interrupt_status, t.acked_features);
    for (size_t q = 0; q < t.queues.size(); ++q) {
      const auto& qs = t.queues[q];
      if (!qs.config.ready) continue;
      s += fmt::format("  queue {}: size {} next avail {} next used {}\n", q, qs.config.size, qs.next_avail,
                       qs.next_used);
    }
  }
  return s;
}

}  // namespace cairn::snap
