// Intel MultiProcessor Specification 1.4 tables: how a guest without ACPI learns its CPUs and
// IO-APIC. Written at layout::kMpTableAddr (the last KiB of base memory, which Linux scans).
//
// MP floating pointer (16 bytes, 16-byte aligned):
//   0  "_MP_"          4  u32 physical address of the configuration table
//   8  u8 length in 16-byte units (1)   9  u8 spec revision (4)
//   10 u8 checksum (all 16 bytes sum to 0)   11 feature bytes 1-5 (all 0: a table is present,
//      virtual-wire interrupt mode)
// Configuration table header (44 bytes), directly after the floating pointer:
//   0  "PCMP"  4 u16 base table length (header + entries)  6 u8 spec revision (4)
//   7  u8 checksum (base table sums to 0)  8 OEM id (8 chars)  16 product id (12 chars)
//   28 u32 OEM table pointer (0)  32 u16 OEM table size (0)  34 u16 entry count
//   36 u32 local APIC address  40 u16 extended table length (0)  42 u8 ext. checksum  43 reserved
// Entries, in this order:
//   processor (type 0, 20 bytes): type, APIC id, APIC version, flags (bit 0 enabled, bit 1 BSP),
//     u32 CPU signature, u32 feature flags, 8 reserved bytes; one per vCPU, APIC ids 0..N-1
//   bus (type 1, 8 bytes): type, bus id 0, "ISA   "
//   IO-APIC (type 2, 8 bytes): type, id N, version 0x11, flags 1 (enabled), u32 address
//   I/O interrupt (type 3, 8 bytes): type, interrupt type 0 (INT), u16 flags 0 (bus default),
//     source bus 0, source IRQ, IO-APIC id, pin; IRQ n -> pin n for n = 0..23
//   local interrupt (type 4, 8 bytes): same layout; LINT0 ExtINT to APIC 0 and LINT1 NMI to all
#pragma once
#include <cstdint>

#include "vmm/base/error.hpp"
#include "vmm/base/guest_memory.hpp"

namespace cairn {

inline constexpr unsigned kMaxVcpus = 32;  // what the 1 KiB MP table area holds, with room to spare
inline constexpr unsigned kIoApicPins = 24;

// Size in bytes of floating pointer + configuration table for this many vCPUs.
uint64_t mptable_size(unsigned vcpus);

// Writes the MP tables for vcpus CPUs (1..kMaxVcpus).
Result<void> write_mptable(GuestMemory& mem, unsigned vcpus);

}  // namespace cairn
