#include "vmm/kvm/vm_fd.hpp"

#include <sys/ioctl.h>

namespace cairn {

namespace {
// Just below the 4 GiB boundary and outside guest RAM (which stops at the 3 GiB hole).
constexpr uint64_t kIdentityMapAddr = 0xfffb'c000;
constexpr uint64_t kTssAddr = 0xfffb'd000;
}  // namespace

Result<VmFd> VmFd::create(const KvmSystem& kvm) {
  VmFd vm;
  vm.fd_ = UniqueFd(::ioctl(kvm.fd(), KVM_CREATE_VM, 0));
  if (!vm.fd_) return fail_errno("KVM_CREATE_VM");
  uint64_t idmap = kIdentityMapAddr;
  if (::ioctl(vm.fd(), KVM_SET_IDENTITY_MAP_ADDR, &idmap) != 0) return fail_errno("KVM_SET_IDENTITY_MAP_ADDR");
  if (::ioctl(vm.fd(), KVM_SET_TSS_ADDR, kTssAddr) != 0) return fail_errno("KVM_SET_TSS_ADDR");
  if (::ioctl(vm.fd(), KVM_CREATE_IRQCHIP, 0) != 0) return fail_errno("KVM_CREATE_IRQCHIP");
  kvm_pit_config pit{};
  pit.flags = KVM_PIT_SPEAKER_DUMMY;
  if (::ioctl(vm.fd(), KVM_CREATE_PIT2, &pit) != 0) return fail_errno("KVM_CREATE_PIT2");
  return vm;
}

namespace {
Result<void> set_slots(int vm_fd, const GuestMemory& mem, uint32_t flags) {
  uint32_t slot = 0;
  for (auto& r : mem.regions()) {
    kvm_userspace_memory_region region{};
    region.slot = slot++;
    region.flags = flags;
    region.guest_phys_addr = r.gpa;
    region.memory_size = r.size;
    region.userspace_addr = reinterpret_cast<uint64_t>(r.host());
    if (::ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) != 0)
      return fail_errno("KVM_SET_USER_MEMORY_REGION slot {} ({:#x}+{:#x})", region.slot, r.gpa, r.size);
  }
  return {};
}
}  // namespace

Result<void> VmFd::map_memory(const GuestMemory& mem) { return set_slots(fd(), mem, 0); }

Result<void> VmFd::set_dirty_logging(const GuestMemory& mem, bool on) {
  if (auto r = set_slots(fd(), mem, on ? KVM_MEM_LOG_DIRTY_PAGES : 0); !r)
    return std::unexpected(std::move(r.error()).context(on ? "turning on the dirty log" : "turning off the dirty log"));
  return {};
}

Result<void> VmFd::take_dirty_log(uint32_t slot, std::vector<uint64_t>& bits, uint64_t pages) {
  bits.assign((pages + 63) / 64, 0);
  kvm_dirty_log log{};
  log.slot = slot;
  log.dirty_bitmap = bits.data();
  if (::ioctl(fd(), KVM_GET_DIRTY_LOG, &log) != 0) return fail_errno("KVM_GET_DIRTY_LOG slot {}", slot);
  return {};
}

Result<void> VmFd::set_irq_line(uint32_t gsi, bool high) {
  kvm_irq_level level{};
  level.irq = gsi;
  level.level = high ? 1 : 0;
  if (::ioctl(fd(), KVM_IRQ_LINE, &level) != 0) return fail_errno("KVM_IRQ_LINE {}", gsi);
  return {};
}

Result<void> VmFd::register_irqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(eventfd);
  irqfd.gsi = gsi;
  if (::ioctl(fd(), KVM_IRQFD, &irqfd) != 0) return fail_errno("KVM_IRQFD gsi {}", gsi);
  return {};
}

Result<void> VmFd::register_ioeventfd(int eventfd, uint64_t addr, uint32_t len, bool pio,
                                      std::optional<uint64_t> datamatch) {
  kvm_ioeventfd io{};
  io.addr = addr;
  io.len = len;
  io.fd = eventfd;
  if (pio) io.flags |= KVM_IOEVENTFD_FLAG_PIO;
  if (datamatch) {
    io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    io.datamatch = *datamatch;
  }
  if (::ioctl(fd(), KVM_IOEVENTFD, &io) != 0) return fail_errno("KVM_IOEVENTFD {:#x}", addr);
  return {};
}

int VmFd::check_extension(long cap) const { return ::ioctl(fd(), KVM_CHECK_EXTENSION, cap); }

Result<kvm_irqchip> VmFd::get_irqchip(uint32_t chip_id) const {
  kvm_irqchip chip{};
  chip.chip_id = chip_id;
  if (::ioctl(fd(), KVM_GET_IRQCHIP, &chip) != 0) return fail_errno("KVM_GET_IRQCHIP {}", chip_id);
  return chip;
}

Result<void> VmFd::set_irqchip(const kvm_irqchip& chip) {
  if (::ioctl(fd(), KVM_SET_IRQCHIP, &chip) != 0) return fail_errno("KVM_SET_IRQCHIP {}", chip.chip_id);
  return {};
}

Result<kvm_pit_state2> VmFd::get_pit2() const {
  kvm_pit_state2 pit{};
  if (::ioctl(fd(), KVM_GET_PIT2, &pit) != 0) return fail_errno("KVM_GET_PIT2");
  return pit;
}

Result<void> VmFd::set_pit2(const kvm_pit_state2& pit) {
  if (::ioctl(fd(), KVM_SET_PIT2, &pit) != 0) return fail_errno("KVM_SET_PIT2");
  return {};
}

Result<kvm_clock_data> VmFd::get_clock() const {
  kvm_clock_data clock{};
  if (::ioctl(fd(), KVM_GET_CLOCK, &clock) != 0) return fail_errno("KVM_GET_CLOCK");
  return clock;
}

Result<void> VmFd::set_clock(const kvm_clock_data& clock) {
  if (::ioctl(fd(), KVM_SET_CLOCK, &clock) != 0) return fail_errno("KVM_SET_CLOCK");
  return {};
}

}  // namespace cairn
