#include "vmm/machine/irq_lines.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <memory>

namespace cairn {

void KvmIrqLine::set_level(bool high) { (void)vm_.set_irq_line(gsi_, high); }

void KvmIrqLine::trigger() {
  (void)vm_.set_irq_line(gsi_, true);
  (void)vm_.set_irq_line(gsi_, false);
}

Result<std::unique_ptr<IrqfdLine>> IrqfdLine::create(VmFd& vm, uint32_t gsi) {
  UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd) return fail_errno("eventfd for GSI {}", gsi);
  if (auto r = vm.register_irqfd(fd.get(), gsi); !r) return std::unexpected(r.error());
  return std::unique_ptr<IrqfdLine>(new IrqfdLine(std::move(fd)));
}

void IrqfdLine::trigger() {
  uint64_t one = 1;
  // EAGAIN only when the counter is saturated: an interrupt is pending anyway.
  (void)!::write(fd_.get(), &one, sizeof(one));
}

}  // namespace cairn
