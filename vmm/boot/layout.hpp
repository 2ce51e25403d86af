// Guest-physical layout of a Linux x86-64 guest without PCI or ACPI.
//
//   0x0000_0000 - 0x0000_04ff  real-mode IVT + BIOS data area (left zero)
//   0x0000_0500 - 0x0000_051f  GDT: null, null, code (0x10), data (0x18)
//   0x0000_7000 - 0x0000_7fff  zero page (struct boot_params), pointed to by rsi
//   0x0000_8000 - 0x0000_8fff  initial stack (grows down from kBootStackTop)
//   0x0000_9000                PML4
//   0x0000_a000                PDPT
//   0x0000_b000 - 0x0000_efff  4 page directories: first 4 GiB identity mapped, 2 MiB pages
//   0x0002_0000 - 0x0002_07ff  kernel command line (NUL terminated)
//   0x0009_fc00 - 0x0009_ffff  EBDA: MP floating pointer + MP configuration table
//   0x0009_fc00 - 0x000f_ffff  reserved in e820 (EBDA, VGA hole, BIOS ROM area)
//   0x0010_0000 -              kernel (bzImage protected-mode part; vmlinux at its p_paddr)
//   ...                        initrd at the top of low RAM
//   0xc000_0000 - 0xffff_ffff  MMIO hole (no RAM): virtio-mmio, IO-APIC, LAPIC
//   0x1_0000_0000 -            RAM beyond the hole, if the guest has more than 3 GiB
#pragma once
#include <cstdint>

#include "vmm/base/guest_memory.hpp"

namespace cairn::layout {

inline constexpr uint64_t kGdtAddr = 0x500;
inline constexpr uint64_t kGdtEntries = 4;  // null, null, __BOOT_CS, __BOOT_DS

inline constexpr uint64_t kZeroPageAddr = 0x7000;
inline constexpr uint64_t kBootStackTop = 0x8ff0;

inline constexpr uint64_t kPml4Addr = 0x9000;
inline constexpr uint64_t kPdptAddr = 0xa000;
inline constexpr uint64_t kPdAddr = 0xb000;
inline constexpr uint64_t kIdentityMapSize = 0x1'0000'0000ULL;  // 4 GiB
inline constexpr uint64_t kPdCount = kIdentityMapSize >> 30;     // one PD per GiB

inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMax = 2048;  // bytes including the terminating NUL

// Boot-protocol code selectors (Documentation/x86/boot.rst: __BOOT_CS, __BOOT_DS).
inline constexpr uint16_t kBootCs = 0x10;
inline constexpr uint16_t kBootDs = 0x18;

// The last KiB of the 640 KiB base memory: Linux scans it for the MP floating pointer.
inline constexpr uint64_t kEbdaStart = 0x9fc00;
inline constexpr uint64_t kMpTableAddr = kEbdaStart;
inline constexpr uint64_t kMpTableMaxSize = 0xa0000 - kEbdaStart;
inline constexpr uint64_t kBiosAreaEnd = 0x100000;  // end of the e820-reserved BIOS area

inline constexpr uint64_t kKernelLoadAddr = 0x100000;  // 1 MiB

inline constexpr uint64_t kVirtioMmioBase = 0xd000'0000;
inline constexpr uint64_t kVirtioMmioSize = 0x1000;  // per device
inline constexpr uint64_t kIoApicAddr = 0xfec0'0000;
inline constexpr uint64_t kLapicAddr = 0xfee0'0000;

inline constexpr uint64_t kMmioHoleStart = GuestMemory::kDefaultHoleStart;
inline constexpr uint64_t kMmioHoleEnd = 0x1'0000'0000ULL;
inline constexpr uint64_t kHighRamStart = kMmioHoleEnd;

inline constexpr uint64_t virtio_mmio_addr(unsigned index) {
  return kVirtioMmioBase + uint64_t{index} * kVirtioMmioSize;
}

// End of the RAM that starts at guest-physical 0 (below the MMIO hole); 0 if there is none.
inline uint64_t low_ram_end(const GuestMemory& mem) {
  for (auto& r : mem.regions())
    if (r.gpa == 0) return r.size;
  return 0;
}

static_assert(kPdAddr + kPdCount * 0x1000 <= kCmdlineAddr, "page tables overlap the command line");
static_assert(kGdtAddr + kGdtEntries * 8 <= kZeroPageAddr, "GDT overlaps the zero page");
static_assert(kZeroPageAddr + 0x1000 <= kBootStackTop - 0xff0, "zero page overlaps the stack");
static_assert(kCmdlineAddr + kCmdlineMax <= kEbdaStart, "command line overlaps the EBDA");

}  // namespace cairn::layout
