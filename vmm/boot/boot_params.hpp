// The zero page (struct boot_params, Documentation/x86/zero-page.rst) and the command line.
//
// e820 map handed to the kernel (type 1 = usable RAM, 2 = reserved):
//   [0, 0x9fc00)            RAM      base memory below the EBDA
//   [0x9fc00, 0x100000)     reserved EBDA (MP table), VGA hole, BIOS area
//   [0x100000, low end)     RAM      up to the end of RAM below the MMIO hole
//   [4 GiB, 4 GiB + high)   RAM      only when the guest has memory above the hole
// The MMIO hole is simply absent from the map.
#pragma once
#include <asm/bootparam.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "vmm/base/error.hpp"
#include "vmm/base/guest_memory.hpp"
#include "vmm/boot/kernel_loader.hpp"

namespace cairn {

inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;

// Fails when low RAM does not reach past the BIOS area (the kernel could not be loaded).
Result<std::vector<boot_e820_entry>> build_e820(const GuestMemory& mem);

// The longest command line (without its NUL) this kernel accepts.
uint64_t max_cmdline_len(const LoadedKernel& k);

// Checks the command line and writes it, NUL terminated, at layout::kCmdlineAddr.
Result<void> write_cmdline(GuestMemory& mem, std::string_view cmdline, const LoadedKernel& k);

// A zero page for this kernel: the bzImage's setup header (or a minimal one for vmlinux),
// type_of_loader 0xff, heap, command line pointer, e820 map. No initrd (see set_initrd).
Result<boot_params> build_boot_params(const GuestMemory& mem, const LoadedKernel& k, uint64_t cmdline_len);

}  // namespace cairn
