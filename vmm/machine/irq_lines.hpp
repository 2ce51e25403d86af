// InterruptLine implementations on top of KVM's in-kernel irqchip.
#pragma once
#include <cstdint>

#include "devices/interrupt.hpp"
#include "vmm/base/unique_fd.hpp"
#include "vmm/kvm/vm_fd.hpp"

namespace cairn {

// A GSI driven with KVM_IRQ_LINE: for level-triggered devices (the 8250).
class KvmIrqLine : public InterruptLine {
 public:
  KvmIrqLine(VmFd& vm, uint32_t gsi) : vm_(vm), gsi_(gsi) {}
  void set_level(bool high) override;
  void trigger() override;

 private:
  VmFd& vm_;
  uint32_t gsi_;
};

// A GSI raised through an irqfd: one eventfd write per interrupt, no ioctl on
// the hot path (virtio-mmio, edge-triggered).
class IrqfdLine : public InterruptLine {
 public:
  static Result<std::unique_ptr<IrqfdLine>> create(VmFd& vm, uint32_t gsi);
  void set_level(bool high) override {
    if (high) trigger();
  }
  void trigger() override;

 private:
  explicit IrqfdLine(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace cairn
