#include "vmm/boot/kernel_loader.hpp"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "vmm/base/unique_fd.hpp"
#include "vmm/boot/layout.hpp"

namespace cairn {

namespace {

constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
constexpr uint16_t kBootFlag = 0xAA55;
constexpr uint64_t kSetupHeaderOffset = 0x1f1;
constexpr uint64_t kMaxSetupSects = 63;  // the real-mode part is limited to 32 KiB
constexpr uint64_t k64BitEntryOffset = 0x200;

template <class T>
T load_le(std::span<const uint8_t> b, uint64_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}

bool is_elf(std::span<const uint8_t> b) {
  return b.size() >= 4 && std::memcmp(b.data(), ELFMAG, SELFMAG) == 0;
}

bool is_bzimage(std::span<const uint8_t> b) {
  return b.size() >= 0x206 && load_le<uint32_t>(b, 0x202) == kHdrSMagic;
}

// Writes `bytes` at gpa and zeroes [gpa + bytes.size(), gpa + mem_size).
Result<void> place(GuestMemory& mem, uint64_t gpa, std::span<const uint8_t> bytes, uint64_t mem_size) {
  auto dst = mem.slice(gpa, mem_size);
  if (dst.size() != mem_size || !mem.contains(gpa, mem_size))
    return fail(Errc::invalid_argument, "[{:#x}, {:#x}) lies outside guest memory", gpa, gpa + mem_size);
  std::memcpy(dst.data(), bytes.data(), bytes.size());
  std::memset(dst.data() + bytes.size(), 0, mem_size - bytes.size());
  mem.mark_dirty(gpa, mem_size);
  return {};
}

// Every kernel byte must sit between 1 MiB (below it live the boot structures) and the end of
// low RAM (the identity map covers only the first 4 GiB, and the hole has no RAM).
Result<void> check_range(const GuestMemory& mem, uint64_t start, uint64_t size, std::string_view what) {
  uint64_t end_low = layout::low_ram_end(mem);
  if (start < layout::kKernelLoadAddr || start > end_low || size > end_low - start)
    return fail(Errc::invalid_argument,
                "{} [{:#x}, {:#x}) does not fit in guest RAM [{:#x}, {:#x})", what, start,
                start + size, layout::kKernelLoadAddr, end_low);
  return {};
}

Result<LoadedKernel> load_elf(GuestMemory& mem, std::span<const uint8_t> b) {
  if (b.size() < sizeof(Elf64_Ehdr))
    return fail(Errc::corrupt, "ELF file truncated: {} bytes, header needs {}", b.size(), sizeof(Elf64_Ehdr));
  auto eh = load_le<Elf64_Ehdr>(b, 0);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) return fail(Errc::corrupt, "not a Linux kernel: ELF file is not 64-bit");
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) return fail(Errc::corrupt, "not a Linux kernel: ELF file is not little endian");
  if (eh.e_machine != EM_X86_64)
    return fail(Errc::corrupt, "not a Linux kernel: ELF machine {} is not x86-64 ({})", eh.e_machine, EM_X86_64);
  if (eh.e_type != ET_EXEC)
    return fail(Errc::corrupt, "not a Linux kernel: ELF type {} is not an executable (vmlinux is ET_EXEC)", eh.e_type);
  if (eh.e_phentsize != sizeof(Elf64_Phdr))
    return fail(Errc::corrupt, "ELF program header size {} (expected {})", eh.e_phentsize, sizeof(Elf64_Phdr));
  if (eh.e_phnum == 0 || eh.e_phoff > b.size() || uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr) > b.size() - eh.e_phoff)
    return fail(Errc::corrupt, "ELF program headers ({} at {:#x}) lie outside the {}-byte file", eh.e_phnum,
                eh.e_phoff, b.size());

  std::vector<Elf64_Phdr> loads;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    auto ph = load_le<Elf64_Phdr>(b, eh.e_phoff + i * sizeof(Elf64_Phdr));
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    if (ph.p_filesz > ph.p_memsz)
      return fail(Errc::corrupt, "ELF segment {}: file size {:#x} exceeds memory size {:#x}", i, ph.p_filesz,
                  ph.p_memsz);
    if (ph.p_offset > b.size() || ph.p_filesz > b.size() - ph.p_offset)
      return fail(Errc::corrupt, "ELF segment {}: bytes [{:#x}, {:#x}) lie beyond the end of the {}-byte file", i,
                  ph.p_offset, ph.p_offset + ph.p_filesz, b.size());
    auto ok = check_range(mem, ph.p_paddr, ph.p_memsz, fmt::format("ELF segment {}", i));
    if (!ok) return std::unexpected(ok.error());
    loads.push_back(ph);
  }
  if (loads.empty()) return fail(Errc::corrupt, "ELF file has no loadable segment");

  LoadedKernel k;
  k.format = KernelFormat::elf_vmlinux;
  k.load_start = UINT64_MAX;
  for (auto& ph : loads) {
    auto r = place(mem, ph.p_paddr, b.subspan(ph.p_offset, ph.p_filesz), ph.p_memsz);
    if (!r) return std::unexpected(std::move(r.error()).context("loading ELF segment"));
    k.load_start = std::min(k.load_start, ph.p_paddr);
    k.load_end = std::max(k.load_end, ph.p_paddr + ph.p_memsz);
  }

  // x86-64 vmlinux links its entry as physical (phys_startup_64); a virtual one is translated
  // through the segment that holds it.
  uint64_t e = eh.e_entry;
  for (auto& ph : loads)
    if (e >= ph.p_paddr && e - ph.p_paddr < ph.p_memsz) {
      k.entry = e;
      return k;
    }
  for (auto& ph : loads)
    if (e >= ph.p_vaddr && e - ph.p_vaddr < ph.p_memsz) {
      k.entry = e - ph.p_vaddr + ph.p_paddr;
      return k;
    }
  return fail(Errc::corrupt, "ELF entry point {:#x} lies outside every loadable segment", e);
}

Result<LoadedKernel> load_bzimage(GuestMemory& mem, std::span<const uint8_t> b) {
  constexpr uint64_t kMinSize = 1024;  // boot sector + at least one setup sector
  if (b.size() < kMinSize) return fail(Errc::corrupt, "bzImage truncated: {} bytes", b.size());
  if (load_le<uint16_t>(b, 0x1fe) != kBootFlag)
    return fail(Errc::corrupt, "not a Linux kernel: bzImage boot flag {:#x} is not 0xaa55", load_le<uint16_t>(b, 0x1fe));

  uint64_t setup_sects = b[kSetupHeaderOffset] == 0 ? 4 : b[kSetupHeaderOffset];
  if (setup_sects > kMaxSetupSects)
    return fail(Errc::corrupt, "bzImage setup_sects {} is absurd (at most {})", setup_sects, kMaxSetupSects);
  uint64_t setup_size = (setup_sects + 1) * 512;
  if (setup_size >= b.size())
    return fail(Errc::corrupt, "bzImage truncated: setup takes {} bytes, file has {}", setup_size, b.size());

  // The header ends at 0x202 + the byte at 0x201 (the jump at 0x200 skips over it).
  uint64_t hdr_end = 0x202 + uint64_t{b[0x201]};
  uint64_t hdr_len = std::min<uint64_t>(hdr_end - kSetupHeaderOffset, sizeof(setup_header));
  setup_header h{};
  std::memcpy(&h, b.data() + kSetupHeaderOffset, hdr_len);

  if (h.version < 0x206)
    return fail(Errc::unsupported, "bzImage boot protocol {}.{:02} is too old (2.06 or later needed)", h.version >> 8,
                h.version & 0xff);
  if (!(h.loadflags & LOADED_HIGH))
    return fail(Errc::unsupported, "zImage kernels (loaded below 1 MiB) are not supported");
  if (h.version < 0x20c || !(h.xloadflags & XLF_KERNEL_64))
    return fail(Errc::unsupported, "bzImage has no 64-bit entry point (XLF_KERNEL_64, protocol 2.12+)");

  uint64_t load = layout::kKernelLoadAddr;
  auto pm = b.subspan(setup_size);
  auto ok = check_range(mem, load, pm.size(), "bzImage protected-mode kernel");
  if (!ok) return std::unexpected(ok.error());

  // The decompressor runs at the kernel's runtime address and needs init_size bytes there.
  uint64_t runtime = h.pref_address;
  if (h.relocatable_kernel) {
    uint64_t align = h.kernel_alignment;
    if (align == 0 || (align & (align - 1)) != 0 || align > (1ULL << 30))
      return fail(Errc::corrupt, "bzImage kernel_alignment {:#x} is not a power of two up to 1 GiB", align);
    runtime = std::max<uint64_t>((load + align - 1) & ~(align - 1), h.pref_address);
  }
  uint64_t end = std::max<uint64_t>(load + pm.size(), runtime + h.init_size);
  ok = check_range(mem, load, end - load, "bzImage kernel with its init_size");
  if (!ok) return std::unexpected(ok.error());

  auto r = place(mem, load, pm, pm.size());
  if (!r) return std::unexpected(std::move(r.error()).context("loading bzImage"));

  LoadedKernel k;
  k.format = KernelFormat::bzimage;
  k.entry = load + k64BitEntryOffset;
  k.load_start = load;
  k.load_end = end;
  k.header = h;
  return k;
}

}  // namespace

const char* kernel_format_name(KernelFormat f) {
  return f == KernelFormat::bzimage ? "bzImage" : "ELF vmlinux";
}

Result<std::vector<uint8_t>> read_file_bytes(const std::string& path, uint64_t max_size) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail_errno("opening {}", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail_errno("stat {}", path);
  if (!S_ISREG(st.st_mode)) return fail(Errc::invalid_argument, "{} is not a regular file", path);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > max_size)
    return fail(Errc::invalid_argument, "{} ({} bytes) is larger than guest memory of {} bytes", path, size, max_size);
  std::vector<uint8_t> data(size);
  uint64_t got = 0;
  while (got < size) {
    ssize_t n = ::read(fd.get(), data.data() + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("reading {}", path);
    if (n == 0) return fail(Errc::io, "reading {}: file shrank to {} bytes", path, got);
    got += static_cast<uint64_t>(n);
  }
  return data;
}

Result<LoadedKernel> load_kernel(GuestMemory& mem, std::span<const uint8_t> image) {
  if (is_elf(image)) return load_elf(mem, image);
  if (is_bzimage(image)) return load_bzimage(mem, image);
  return fail(Errc::corrupt, "not a Linux kernel: neither an ELF file nor a bzImage (no \"HdrS\" at 0x202)");
}

Result<LoadedKernel> load_kernel_file(GuestMemory& mem, const std::string& path) {
  auto bytes = read_file_bytes(path, mem.total_size());
  if (!bytes) return std::unexpected(std::move(bytes.error()).context("loading kernel"));
  auto k = load_kernel(mem, *bytes);
  if (!k) return std::unexpected(std::move(k.error()).context(fmt::format("loading kernel {}", path)));
  return k;
}

}  // namespace cairn
