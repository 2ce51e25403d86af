#include <catch2/catch.hpp>
#include <cstring>

#include "snapshot/state/state_report.hpp"

using namespace cairn;
using namespace cairn::snap;

namespace {
void set_reg32(kvm_lapic_state& l, size_t off, uint32_t v) { std::memcpy(l.regs + off, &v, sizeof(v)); }
}  // namespace

TEST_CASE("state report: where a vCPU stands, its timer and interrupts, and the devices") {
  MachineState s;
  VcpuState v;
  v.mp_state.mp_state = KVM_MP_STATE_HALTED;
  v.regs.rip = 0xffffffff81001234;
  v.tsc_khz = 1'000'000;  // 1 GHz: 1 ms is 1'000'000 ticks
  v.msrs = {{kMsrIa32Tsc, 0, 5'000'000}, {kMsrIa32TscDeadline, 0, 7'500'000}};
  set_reg32(v.lapic, 0x200 + 1 * 0x10, 0x10);  // IRR: vector 0x24 (word 1, bit 4)
  set_reg32(v.lapic, 0x320, 0x400ec);          // LVT timer: TSC-deadline mode, vector 0xec
  s.vcpus.push_back(v);
  s.vm.ioapic.chip.ioapic.redirtbl[4].fields.vector = 0x24;
  s.vm.ioapic.chip.ioapic.redirtbl[4].fields.mask = 0;
  for (unsigned pin = 0; pin < KVM_IOAPIC_NUM_PINS; ++pin)
    if (pin != 4) s.vm.ioapic.chip.ioapic.redirtbl[pin].fields.mask = 1;
  s.devices.serial.ier = 0x2;
  s.devices.serial.thr_interrupt_pending = true;
  VirtioDeviceState blk{"virtio-blk", {}, std::nullopt};
  blk.transport.status = 0xf;
  blk.transport.interrupt_status = 1;
  blk.transport.queues.resize(1);
  blk.transport.queues[0].config.ready = true;
  blk.transport.queues[0].config.size = 256;
  blk.transport.queues[0].next_avail = 7;
  blk.transport.queues[0].next_used = 5;
  s.devices.virtio = {blk};

  const std::string r = describe_machine_state(s);
  INFO(r);
  CHECK(r.find("vCPU 0: mp_state 3 RIP 0xffffffff81001234") != std::string::npos);
  CHECK(r.find("deadline 7500000 (in 2.5 ms)") != std::string::npos);
  CHECK(r.find("LVTT 0x400ec") != std::string::npos);
  CHECK(r.find("IRR 1:00000010; ISR none") != std::string::npos);
  CHECK(r.find("pin 4: vector 0x24 edge remote_irr 0") != std::string::npos);
  CHECK(r.find("pin 5:") == std::string::npos);  // masked pins are left out
  CHECK(r.find("UART: IER 0x2") != std::string::npos);
  CHECK(r.find("THR-empty interrupt pending true") != std::string::npos);
  CHECK(r.find("virtio-blk 0: status 0xf interrupt status 0x1") != std::string::npos);
  CHECK(r.find("queue 0: size 256 next avail 7 next used 5") != std::string::npos);
}
