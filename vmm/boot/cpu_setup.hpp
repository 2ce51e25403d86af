// The state Linux's 64-bit boot protocol expects at its entry (Documentation/x86/boot.rst,
// "64-bit BOOT PROTOCOL"): long mode with paging, an identity map covering the kernel, the
// zero page and the command line; a GDT with __BOOT_CS (0x10, 64-bit code) and __BOOT_DS
// (0x18, data), flat 4 GiB segments; interrupts off; rsi = zero page address.
//
// In guest memory:
//   GDT at layout::kGdtAddr, 4 descriptors of 8 bytes: 0 null, 0x08 null,
//     0x10 code: base 0, limit 0xfffff, G=1 L=1, access 0x9b (present, ring 0, exec/read, accessed)
//     0x18 data: base 0, limit 0xfffff, G=1 D/B=1, access 0x93 (present, ring 0, read/write, accessed)
//   PML4 (layout::kPml4Addr): entry 0 -> PDPT, present | writable
//   PDPT (layout::kPdptAddr): entries 0-3 -> the 4 PDs, present | writable
//   PD i (layout::kPdAddr + i * 4 KiB): 512 entries of 2 MiB pages, present | writable | PS,
//     mapping guest-physical (i * 1 GiB + j * 2 MiB) at the same virtual address
#pragma once
#include <linux/kvm.h>

#include <cstdint>

#include "vmm/base/error.hpp"
#include "vmm/base/guest_memory.hpp"

namespace cairn {

inline constexpr uint64_t kCr0Pe = 1ULL << 0;
inline constexpr uint64_t kCr0Et = 1ULL << 4;
inline constexpr uint64_t kCr0Pg = 1ULL << 31;
inline constexpr uint64_t kCr4Pae = 1ULL << 5;
inline constexpr uint64_t kEferLme = 1ULL << 8;
inline constexpr uint64_t kEferLma = 1ULL << 10;

// A GDT descriptor from its flags (bits 15-12: G, D/B, L, AVL; bits 7-0: access byte).
uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit);
// The segment register contents KVM needs for a descriptor loaded with `selector`.
kvm_segment segment_from_gdt(uint64_t entry, uint16_t selector);

// Writes the GDT and the identity-mapping page tables.
Result<void> write_gdt_and_page_tables(GuestMemory& mem);

// Turns a vCPU's current special registers (from KVM_GET_SREGS) into the 64-bit entry state;
// fields not named by the boot protocol (APIC base, interrupt bitmap, ...) are kept.
void setup_long_mode_sregs(kvm_sregs& sregs);

// General registers for the boot CPU: rip = entry, rsi = zero page, rflags = 2 (IF clear).
kvm_regs boot_regs(uint64_t entry);

}  // namespace cairn
