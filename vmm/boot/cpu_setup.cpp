#include "vmm/boot/cpu_setup.hpp"

#include <array>
#include <cstring>
#include <vector>

#include "vmm/boot/layout.hpp"

namespace cairn {

namespace {
constexpr uint16_t kCodeFlags = 0xa09b;  // G, L; present ring-0 code, exec/read, accessed
constexpr uint16_t kDataFlags = 0xc093;  // G, D/B; present ring-0 data, read/write, accessed
constexpr uint64_t kPtePresent = 1, kPteWritable = 2, kPtePageSize = 1ULL << 7;
constexpr uint64_t kRflagsReserved = 2;  // bit 1 always reads as 1

std::array<uint64_t, layout::kGdtEntries> boot_gdt() {
  return {0, 0, gdt_entry(kCodeFlags, 0, 0xfffff), gdt_entry(kDataFlags, 0, 0xfffff)};
}
}  // namespace

uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((uint64_t{base} & 0xff000000) << 32) | ((uint64_t{flags} & 0xf0ff) << 40) |
         ((uint64_t{limit} & 0x000f0000) << 32) | ((uint64_t{base} & 0x00ffffff) << 16) |
         (uint64_t{limit} & 0x0000ffff);
}

kvm_segment segment_from_gdt(uint64_t e, uint16_t selector) {
  kvm_segment s{};
  s.base = ((e >> 16) & 0xffffff) | (((e >> 56) & 0xff) << 24);
  uint32_t limit = static_cast<uint32_t>((e & 0xffff) | (((e >> 48) & 0xf) << 16));
  s.g = (e >> 55) & 1;
  s.limit = s.g ? (limit << 12) | 0xfff : limit;  // KVM takes the limit in bytes
  s.selector = selector;
  s.type = (e >> 40) & 0xf;
  s.s = (e >> 44) & 1;
  s.dpl = (e >> 45) & 3;
  s.present = (e >> 47) & 1;
  s.avl = (e >> 52) & 1;
  s.l = (e >> 53) & 1;
  s.db = (e >> 54) & 1;
  s.unusable = !s.present;
  return s;
}

Result<void> write_gdt_and_page_tables(GuestMemory& mem) {
  auto gdt = boot_gdt();
  auto r = mem.write(layout::kGdtAddr, std::span(reinterpret_cast<const uint8_t*>(gdt.data()), sizeof(gdt)));
  if (!r) return std::unexpected(std::move(r.error()).context("writing the GDT"));

  std::vector<uint64_t> pml4(512, 0), pdpt(512, 0), pd(512 * layout::kPdCount, 0);
  pml4[0] = layout::kPdptAddr | kPtePresent | kPteWritable;
  for (uint64_t i = 0; i < layout::kPdCount; ++i) pdpt[i] = (layout::kPdAddr + i * 0x1000) | kPtePresent | kPteWritable;
  for (uint64_t j = 0; j < pd.size(); ++j) pd[j] = (j << 21) | kPtePresent | kPteWritable | kPtePageSize;

  auto put = [&](uint64_t gpa, const std::vector<uint64_t>& t) {
    return mem.write(gpa, std::span(reinterpret_cast<const uint8_t*>(t.data()), t.size() * 8));
  };
  for (auto [gpa, t] : {std::pair{layout::kPml4Addr, &pml4}, {layout::kPdptAddr, &pdpt}, {layout::kPdAddr, &pd}}) {
    auto w = put(gpa, *t);
    if (!w) return std::unexpected(std::move(w.error()).context("writing the boot page tables"));
  }
  return {};
}

void setup_long_mode_sregs(kvm_sregs& s) {
  auto gdt = boot_gdt();
  s.cs = segment_from_gdt(gdt[layout::kBootCs / 8], layout::kBootCs);
  s.ds = s.es = s.fs = s.gs = s.ss = segment_from_gdt(gdt[layout::kBootDs / 8], layout::kBootDs);
  s.gdt.base = layout::kGdtAddr;
  s.gdt.limit = static_cast<uint16_t>(sizeof(gdt) - 1);
  s.idt.base = 0;  // no IDT: the kernel installs its own before enabling interrupts
  s.idt.limit = 0;
  // A busy 64-bit TSS at 0 and no LDT: what VM entry in long mode requires of TR/LDTR.
  s.tr = kvm_segment{};
  s.tr.limit = 0xffff;
  s.tr.type = 11;
  s.tr.present = 1;
  s.ldt = kvm_segment{};
  s.ldt.type = 2;
  s.ldt.unusable = 1;
  s.cr0 = kCr0Pe | kCr0Et | kCr0Pg;  // caches on (clears the reset value's CD/NW)
  s.cr3 = layout::kPml4Addr;
  s.cr4 = kCr4Pae;
  s.efer = kEferLme | kEferLma;
}

kvm_regs boot_regs(uint64_t entry) {
  kvm_regs r{};
  r.rip = entry;
  r.rsi = layout::kZeroPageAddr;
  r.rflags = kRflagsReserved;
  r.rsp = layout::kBootStackTop;
  r.rbp = layout::kBootStackTop;
  return r;
}

}  // namespace cairn
