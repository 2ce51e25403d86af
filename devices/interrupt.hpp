// How a device raises its interrupt line. The VMM backs this with KVM_IRQ_LINE
// (level) or an irqfd (edge); unit tests use a recording fake.
#pragma once
#include <cstdint>

namespace cairn {

class InterruptLine {
 public:
  virtual ~InterruptLine() = default;
  // Level-triggered devices (8250) drive the line high or low.
  virtual void set_level(bool high) = 0;
  // Edge-style notification (virtio-mmio with the GSI configured edge-triggered).
  virtual void trigger() = 0;
};

}  // namespace cairn
