#include "vmm/kvm/vcpu_fd.hpp"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace cairn {

Result<VcpuFd> VcpuFd::create(const KvmSystem& kvm, const VmFd& vm, unsigned index) {
  VcpuFd v;
  v.index_ = index;
  v.fd_ = UniqueFd(::ioctl(vm.fd(), KVM_CREATE_VCPU, index));
  if (!v.fd_) return fail_errno("KVM_CREATE_VCPU {}", index);
  void* p = ::mmap(nullptr, kvm.vcpu_mmap_size(), PROT_READ | PROT_WRITE, MAP_SHARED, v.fd(), 0);
  if (p == MAP_FAILED) return fail_errno("mapping kvm_run of vCPU {}", index);
  v.run_ = Mapping(p, kvm.vcpu_mmap_size());
  return v;
}

int VcpuFd::enter() { return ::ioctl(fd(), KVM_RUN, 0) == 0 ? 0 : -errno; }

Result<void> VcpuFd::set_cpuid(std::span<const kvm_cpuid_entry2> entries) {
  size_t bytes = sizeof(kvm_cpuid2) + entries.size() * sizeof(kvm_cpuid_entry2);
  auto buf = std::make_unique<uint8_t[]>(bytes);
  auto* c = reinterpret_cast<kvm_cpuid2*>(buf.get());
  c->nent = static_cast<uint32_t>(entries.size());
  std::memcpy(c->entries, entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  if (::ioctl(fd(), KVM_SET_CPUID2, c) != 0) return fail_errno("KVM_SET_CPUID2 (vCPU {})", index_);
  return {};
}

#define CAIRN_VCPU_GET(type, ioctl_nr, fn)                                        \
  Result<type> VcpuFd::fn() const {                                               \
    type v{};                                                                     \
    if (::ioctl(fd(), ioctl_nr, &v) != 0) return fail_errno(#ioctl_nr " (vCPU {})", index_); \
    return v;                                                                     \
  }
#define CAIRN_VCPU_SET(type, ioctl_nr, fn)                                        \
  Result<void> VcpuFd::fn(const type& v) {                                        \
    if (::ioctl(fd(), ioctl_nr, &v) != 0) return fail_errno(#ioctl_nr " (vCPU {})", index_); \
    return {};                                                                    \
  }
CAIRN_VCPU_GET(kvm_regs, KVM_GET_REGS, get_regs)
CAIRN_VCPU_SET(kvm_regs, KVM_SET_REGS, set_regs)
CAIRN_VCPU_GET(kvm_sregs, KVM_GET_SREGS, get_sregs)
CAIRN_VCPU_SET(kvm_sregs, KVM_SET_SREGS, set_sregs)
CAIRN_VCPU_SET(kvm_fpu, KVM_SET_FPU, set_fpu)
CAIRN_VCPU_GET(kvm_lapic_state, KVM_GET_LAPIC, get_lapic)
CAIRN_VCPU_SET(kvm_lapic_state, KVM_SET_LAPIC, set_lapic)
CAIRN_VCPU_GET(kvm_xcrs, KVM_GET_XCRS, get_xcrs)
CAIRN_VCPU_SET(kvm_xcrs, KVM_SET_XCRS, set_xcrs)
CAIRN_VCPU_GET(kvm_vcpu_events, KVM_GET_VCPU_EVENTS, get_vcpu_events)
CAIRN_VCPU_SET(kvm_vcpu_events, KVM_SET_VCPU_EVENTS, set_vcpu_events)
CAIRN_VCPU_GET(kvm_debugregs, KVM_GET_DEBUGREGS, get_debugregs)
CAIRN_VCPU_SET(kvm_debugregs, KVM_SET_DEBUGREGS, set_debugregs)
CAIRN_VCPU_GET(kvm_mp_state, KVM_GET_MP_STATE, get_mp_state)
CAIRN_VCPU_SET(kvm_mp_state, KVM_SET_MP_STATE, set_mp_state)
#undef CAIRN_VCPU_GET
#undef CAIRN_VCPU_SET

Result<void> VcpuFd::set_msrs(std::span<const kvm_msr_entry> msrs) {
  size_t bytes = sizeof(kvm_msrs) + msrs.size() * sizeof(kvm_msr_entry);
  auto buf = std::make_unique<uint8_t[]>(bytes);
  auto* m = reinterpret_cast<kvm_msrs*>(buf.get());
  m->nmsrs = static_cast<uint32_t>(msrs.size());
  std::memcpy(m->entries, msrs.data(), msrs.size() * sizeof(kvm_msr_entry));
  int n = ::ioctl(fd(), KVM_SET_MSRS, m);
  if (n < 0) return fail_errno("KVM_SET_MSRS (vCPU {})", index_);
  if (static_cast<size_t>(n) != msrs.size())
    return fail(Errc::failed, "KVM_SET_MSRS (vCPU {}): MSR {:#x} refused", index_, msrs[n].index);
  return {};
}

Result<size_t> VcpuFd::get_msrs(std::span<kvm_msr_entry> entries) const {
  size_t bytes = sizeof(kvm_msrs) + entries.size() * sizeof(kvm_msr_entry);
  auto buf = std::make_unique<uint8_t[]>(bytes);
  auto* m = reinterpret_cast<kvm_msrs*>(buf.get());
  m->nmsrs = static_cast<uint32_t>(entries.size());
  std::memcpy(m->entries, entries.data(), entries.size() * sizeof(kvm_msr_entry));
  int n = ::ioctl(fd(), KVM_GET_MSRS, m);
  if (n < 0) return fail_errno("KVM_GET_MSRS (vCPU {})", index_);
  std::memcpy(entries.data(), m->entries, static_cast<size_t>(n) * sizeof(kvm_msr_entry));
  return static_cast<size_t>(n);
}

Result<std::vector<uint8_t>> VcpuFd::get_xsave(size_t size) const {
  std::vector<uint8_t> buf(std::max(size, sizeof(kvm_xsave)));
  // KVM_GET_XSAVE copies exactly 4096 bytes; KVM_GET_XSAVE2 the full size.
  unsigned long nr = buf.size() > sizeof(kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
  if (::ioctl(fd(), nr, buf.data()) != 0) return fail_errno("KVM_GET_XSAVE (vCPU {})", index_);
  return buf;
}

Result<void> VcpuFd::set_xsave(std::span<const uint8_t> xsave) {
  // KVM reads as many bytes as its own XSAVE size, never fewer than 4096.
  if (xsave.size() < sizeof(kvm_xsave))
    return fail(Errc::invalid_argument, "KVM_SET_XSAVE (vCPU {}): {} bytes, need at least {}", index_,
                xsave.size(), sizeof(kvm_xsave));
  if (::ioctl(fd(), KVM_SET_XSAVE, xsave.data()) != 0) return fail_errno("KVM_SET_XSAVE (vCPU {})", index_);
  return {};
}

Result<uint32_t> VcpuFd::get_tsc_khz() const {
  int khz = ::ioctl(fd(), KVM_GET_TSC_KHZ, 0);
  if (khz < 0) return fail_errno("KVM_GET_TSC_KHZ (vCPU {})", index_);
  return static_cast<uint32_t>(khz);
}

Result<void> VcpuFd::set_tsc_khz(uint32_t khz) {
  if (::ioctl(fd(), KVM_SET_TSC_KHZ, static_cast<unsigned long>(khz)) != 0)
    return fail_errno("KVM_SET_TSC_KHZ {} (vCPU {})", khz, index_);
  return {};
}

namespace {
constexpr uint32_t kApicLvt0 = 0x350, kApicLvt1 = 0x360;
constexpr uint32_t kDeliveryModeMask = 0x700, kExtInt = 0x700, kNmi = 0x400;

uint32_t lapic_reg(const kvm_lapic_state& l, uint32_t off) {
  uint32_t v;
  std::memcpy(&v, l.regs + off, 4);
  return v;
}
void set_lapic_reg(kvm_lapic_state& l, uint32_t off, uint32_t v) { std::memcpy(l.regs + off, &v, 4); }
}  // namespace

Result<void> VcpuFd::init_defaults() {
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;     // x87 default control word
  fpu.mxcsr = 0x1f80;  // SSE exceptions masked
  if (auto r = set_fpu(fpu); !r) return r;

  // LINT0 as ExtINT (the PIC's output) and LINT1 as NMI, as firmware leaves them.
  auto l = get_lapic();
  if (!l) return std::unexpected(l.error());
  set_lapic_reg(*l, kApicLvt0, (lapic_reg(*l, kApicLvt0) & ~kDeliveryModeMask) | kExtInt);
  set_lapic_reg(*l, kApicLvt1, (lapic_reg(*l, kApicLvt1) & ~kDeliveryModeMask) | kNmi);
  if (auto r = set_lapic(*l); !r) return r;

  // Syscall MSRs zeroed, fast strings on, MTRRs enabled with write-back default.
  const kvm_msr_entry msrs[] = {
      {0x174, 0, 0},          // IA32_SYSENTER_CS
      {0x175, 0, 0},          // IA32_SYSENTER_ESP
      {0x176, 0, 0},          // IA32_SYSENTER_EIP
      {0xc0000081, 0, 0},     // STAR
      {0xc0000082, 0, 0},     // LSTAR
      {0xc0000083, 0, 0},     // CSTAR
      {0xc0000084, 0, 0},     // SYSCALL_MASK
      {0xc0000102, 0, 0},     // KERNEL_GS_BASE
      {0x1a0, 0, 1},          // IA32_MISC_ENABLE: fast strings
      {0x2ff, 0, (1u << 11) | 6},  // MTRRdefType: enabled, write-back
  };
  return set_msrs(msrs);
}

std::string VcpuFd::describe() const {
  std::string out;
  if (auto r = get_regs()) {
    out += fmt::format("RIP={:#018x} RSP={:#018x} RBP={:#018x} RFLAGS={:#x}\n", r->rip, r->rsp, r->rbp, r->rflags);
    out += fmt::format("RAX={:#x} RBX={:#x} RCX={:#x} RDX={:#x} RSI={:#x} RDI={:#x}\n", r->rax, r->rbx, r->rcx,
                       r->rdx, r->rsi, r->rdi);
  }
  if (auto s = get_sregs()) {
    out += fmt::format("CR0={:#x} CR2={:#x} CR3={:#x} CR4={:#x} CR8={:#x} EFER={:#x} APIC_BASE={:#x}\n", s->cr0,
                       s->cr2, s->cr3, s->cr4, s->cr8, s->efer, s->apic_base);
    out += fmt::format("CS={:#x} (base {:#x} l={} db={} dpl={}) SS={:#x} DS={:#x} ES={:#x} FS base={:#x} GS base={:#x}\n",
                       s->cs.selector, s->cs.base, s->cs.l, s->cs.db, s->cs.dpl, s->ss.selector, s->ds.selector,
                       s->es.selector, s->fs.base, s->gs.base);
    out += fmt::format("GDT={:#x}/{:#x} IDT={:#x}/{:#x} TR={:#x} (base {:#x} limit {:#x}) LDT={:#x}\n", s->gdt.base,
                       s->gdt.limit, s->idt.base, s->idt.limit, s->tr.selector, s->tr.base, s->tr.limit,
                       s->ldt.selector);
  }
  if (auto e = get_vcpu_events()) {
    out += fmt::format(
        "events: exception injected={} pending={} nr={} error_code={}({:#x}) | interrupt injected={} nr={} soft={} "
        "shadow={} | nmi injected={} pending={} masked={} | sipi_vector={} flags={:#x}\n",
        e->exception.injected, e->exception.pending, e->exception.nr, e->exception.has_error_code,
        e->exception.error_code, e->interrupt.injected, e->interrupt.nr, e->interrupt.soft, e->interrupt.shadow,
        e->nmi.injected, e->nmi.pending, e->nmi.masked, e->sipi_vector, e->flags);
  }
  if (auto m = get_mp_state()) out += fmt::format("mp_state={}\n", m->mp_state);
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace cairn
