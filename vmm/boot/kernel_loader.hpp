// Loads a Linux x86-64 kernel into guest memory: an ELF64 `vmlinux` or a bzImage.
//
// The format is told from the bytes, never from the file name:
//   ELF64 vmlinux: bytes 0-3 "\x7fELF", byte 4 = 2 (64-bit), byte 5 = 1 (little endian),
//     e_type (offset 16, u16) = 2 (ET_EXEC),
//     e_machine (offset 18, u16) = 62 (x86-64). Every PT_LOAD segment is copied to p_paddr
//     (p_filesz bytes from p_offset, the rest of p_memsz zeroed). The entry is e_entry when it
//     is a physical address inside a segment, else e_entry translated through the segment whose
//     virtual range holds it (a vmlinux linked at 0xffffffff81000000 starts at p_paddr).
//   bzImage: u16 0xAA55 at 0x1fe, "HdrS" at 0x202, protocol version (u16 at 0x206) >= 2.06,
//     LOADED_HIGH set in loadflags (0x211). The real-mode setup is (setup_sects + 1) * 512 bytes
//     (setup_sects at 0x1f1, 0 means 4); everything after it is the protected-mode kernel,
//     copied to 1 MiB. Only the 64-bit entry is used: load address + 0x200, which needs
//     XLF_KERNEL_64 in xloadflags (0x236, protocol 2.12+).
#pragma once
#include <asm/bootparam.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/base/error.hpp"
#include "vmm/base/guest_memory.hpp"

namespace cairn {

enum class KernelFormat { elf_vmlinux, bzimage };

struct LoadedKernel {
  KernelFormat format = KernelFormat::elf_vmlinux;
  uint64_t entry = 0;       // guest-physical 64-bit entry point
  uint64_t load_start = 0;  // lowest guest-physical byte written
  // One past the highest byte the kernel uses before it reads the memory map: for a bzImage
  // this includes init_size from its runtime address (the decompressor works there).
  uint64_t load_end = 0;
  // bzImage only: the setup header as found in the file (only the bytes the kernel's protocol
  // version defines are copied; the rest stays zero).
  std::optional<setup_header> header;
};

const char* kernel_format_name(KernelFormat f);

// Reads a whole file, refusing files larger than max_size.
Result<std::vector<uint8_t>> read_file_bytes(const std::string& path, uint64_t max_size);

// Loads an in-memory kernel image; errors say which bound the image broke.
Result<LoadedKernel> load_kernel(GuestMemory& mem, std::span<const uint8_t> image);
Result<LoadedKernel> load_kernel_file(GuestMemory& mem, const std::string& path);

}  // namespace cairn
