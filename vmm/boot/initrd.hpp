// Initial ramdisk placement (Documentation/x86/boot.rst, "initrd_addr_max"): the initrd goes at
// the highest page-aligned address whose last byte is at most initrd_addr_max and below the end
// of low RAM, and must not overlap the kernel.
#pragma once
#include <asm/bootparam.h>

#include <cstdint>
#include <string>

#include "vmm/base/error.hpp"
#include "vmm/base/guest_memory.hpp"
#include "vmm/boot/kernel_loader.hpp"

namespace cairn {

// initrd_addr_max for a kernel without a setup header (ELF vmlinux): the protocol's default.
inline constexpr uint64_t kDefaultInitrdAddrMax = 0x7fffffff;

struct InitrdPlacement {
  uint64_t addr = 0;
  uint64_t size = 0;
};

// The initrd_addr_max that applies to this kernel.
uint64_t initrd_addr_max(const LoadedKernel& k);

// Chooses where `size` bytes of initrd go; kernel_end is one past the kernel's last byte.
Result<InitrdPlacement> place_initrd(const GuestMemory& mem, uint64_t size, uint64_t kernel_end,
                                     uint64_t addr_max);

// Reads the initrd file, places it and copies it into guest memory.
Result<InitrdPlacement> load_initrd_file(GuestMemory& mem, const std::string& path, const LoadedKernel& k);

// Fills ramdisk_image/ramdisk_size and their high 32 bits (ext_ramdisk_*).
void set_initrd(boot_params& bp, const InitrdPlacement& p);

}  // namespace cairn
