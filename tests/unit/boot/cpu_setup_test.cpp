#include <catch2/catch.hpp>

#include "vmm/boot/cpu_setup.hpp"
#include "vmm/boot/layout.hpp"

using namespace cairn;

TEST_CASE("GDT descriptors encode flat 64-bit code and data") {
  CHECK(gdt_entry(0xa09b, 0, 0xfffff) == 0x00af9b000000ffffULL);
  CHECK(gdt_entry(0xc093, 0, 0xfffff) == 0x00cf93000000ffffULL);
  CHECK(gdt_entry(0x0089, 0x12345678, 0x67) == 0x1200893456780067ULL);
  auto cs = segment_from_gdt(0x00af9b000000ffffULL, 0x10);
  CHECK(cs.base == 0);
  CHECK(cs.limit == 0xffffffff);
  CHECK(cs.selector == 0x10);
  CHECK(cs.type == 0xb);
  CHECK(cs.present == 1);
  CHECK(cs.dpl == 0);
  CHECK(cs.s == 1);
  CHECK(cs.l == 1);
  CHECK(cs.db == 0);
  CHECK(cs.g == 1);
  CHECK(cs.unusable == 0);
  auto ds = segment_from_gdt(0x00cf93000000ffffULL, 0x18);
  CHECK(ds.type == 3);
  CHECK(ds.l == 0);
  CHECK(ds.db == 1);
  auto tss = segment_from_gdt(0x1200893456780067ULL, 0x20);
  CHECK(tss.base == 0x12345678);
  CHECK(tss.limit == 0x67);
}

TEST_CASE("GDT and page tables are written where the layout says") {
  auto mem = GuestMemory::create(16ULL << 20);
  REQUIRE(mem);
  REQUIRE(write_gdt_and_page_tables(*mem));
  CHECK(*mem->read_obj<uint64_t>(layout::kGdtAddr) == 0);
  CHECK(*mem->read_obj<uint64_t>(layout::kGdtAddr + 0x10) == 0x00af9b000000ffffULL);
  CHECK(*mem->read_obj<uint64_t>(layout::kGdtAddr + 0x18) == 0x00cf93000000ffffULL);

  CHECK(*mem->read_obj<uint64_t>(0x9000) == (0xa000 | 3));
  CHECK(*mem->read_obj<uint64_t>(0x9008) == 0);
  for (uint64_t i = 0; i < 4; ++i) CHECK(*mem->read_obj<uint64_t>(0xa000 + 8 * i) == ((0xb000 + i * 0x1000) | 3));
  CHECK(*mem->read_obj<uint64_t>(0xa020) == 0);
  CHECK(*mem->read_obj<uint64_t>(0xb000) == 0x83);
  CHECK(*mem->read_obj<uint64_t>(0xb008) == (0x200000 | 0x83));
  // Last 2 MiB page below 4 GiB: PD 3, entry 511.
  CHECK(*mem->read_obj<uint64_t>(0xe000 + 511 * 8) == (0xffe00000ULL | 0x83));
}

TEST_CASE("long-mode sregs and boot regs follow the 64-bit boot protocol") {
  kvm_sregs s{};
  s.apic_base = 0xfee00900;  // kept
  s.cr0 = 0x60000010;        // reset value: CD|NW|ET
  setup_long_mode_sregs(s);
  CHECK(s.apic_base == 0xfee00900);
  CHECK(s.cr0 == 0x80000011);
  CHECK(s.cr3 == 0x9000);
  CHECK(s.cr4 == 0x20);
  CHECK(s.efer == 0x500);
  CHECK(s.cs.selector == 0x10);
  CHECK(s.cs.l == 1);
  for (auto* seg : {&s.ds, &s.es, &s.fs, &s.gs, &s.ss}) {
    CHECK(seg->selector == 0x18);
    CHECK(seg->present == 1);
    CHECK(seg->type == 3);
  }
  CHECK(s.gdt.base == 0x500);
  CHECK(s.gdt.limit == 31);
  CHECK(s.tr.type == 11);
  CHECK(s.tr.present == 1);

  auto r = boot_regs(0x1000000);
  CHECK(r.rip == 0x1000000);
  CHECK(r.rsi == 0x7000);
  CHECK(r.rflags == 2);
  CHECK(r.rsp == layout::kBootStackTop);
  CHECK(r.rsp > layout::kZeroPageAddr + 0x1000);
  CHECK(r.rsp < layout::kPml4Addr);
}
