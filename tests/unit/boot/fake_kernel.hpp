// Builders of small, well-formed kernel images (and files holding them) for the boot tests.
#pragma once
#include <asm/bootparam.h>
#include <elf.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace cairn::test {

// A file in /tmp removed when the object goes away.
class TempFile {
 public:
  explicit TempFile(std::span<const uint8_t> bytes) {
    char tmpl[] = "/tmp/cairn-boot-test-XXXXXX";
    int fd = ::mkstemp(tmpl);
    path_ = tmpl;
    size_t done = 0;
    while (fd >= 0 && done < bytes.size()) {
      ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    if (fd >= 0) ::close(fd);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct FakeSegment {
  uint64_t paddr;
  uint64_t vaddr;
  uint64_t filesz;
  uint64_t memsz;
  uint8_t fill;  // every file byte of the segment
};

inline std::vector<uint8_t> make_elf(const std::vector<FakeSegment>& segs, uint64_t entry) {
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_entry = entry;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = static_cast<uint16_t>(segs.size() + 1);  // plus a PT_NOTE the loader must skip

  std::vector<uint8_t> out(sizeof(Elf64_Ehdr) + eh.e_phnum * sizeof(Elf64_Phdr));
  std::memcpy(out.data(), &eh, sizeof(eh));
  uint64_t off = out.size();
  for (size_t i = 0; i < segs.size(); ++i) {
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_offset = off;
    ph.p_paddr = segs[i].paddr;
    ph.p_vaddr = segs[i].vaddr;
    ph.p_filesz = segs[i].filesz;
    ph.p_memsz = segs[i].memsz;
    std::memcpy(out.data() + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr), &ph, sizeof(ph));
    off += segs[i].filesz;
  }
  Elf64_Phdr note{};
  note.p_type = PT_NOTE;
  std::memcpy(out.data() + sizeof(Elf64_Ehdr) + segs.size() * sizeof(Elf64_Phdr), &note, sizeof(note));
  for (auto& s : segs) out.insert(out.end(), s.filesz, s.fill);
  return out;
}

struct FakeBzImage {
  uint8_t setup_sects = 4;
  uint16_t version = 0x020f;
  uint8_t loadflags = LOADED_HIGH;
  uint16_t xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
  uint32_t initrd_addr_max = 0x7fffffff;
  uint32_t kernel_alignment = 0x200000;
  uint8_t relocatable = 1;
  uint32_t cmdline_size = 2047;
  uint64_t pref_address = 0x1000000;
  uint32_t init_size = 0x800000;
  uint64_t pm_size = 0x3000;  // protected-mode part, filled with 0xc3
  uint8_t pm_fill = 0xc3;

  std::vector<uint8_t> build() const {
    uint64_t setup_size = (uint64_t{setup_sects ? setup_sects : 4u} + 1) * 512;
    std::vector<uint8_t> out(setup_size, 0);
    setup_header h{};
    h.setup_sects = setup_sects;
    h.boot_flag = 0xAA55;
    h.jump = static_cast<uint16_t>(0xeb | ((0x268 - 0x202) << 8));  // jmp over the header
    h.header = 0x53726448;
    h.version = version;
    h.loadflags = loadflags;
    h.initrd_addr_max = initrd_addr_max;
    h.kernel_alignment = kernel_alignment;
    h.relocatable_kernel = relocatable;
    h.xloadflags = xloadflags;
    h.cmdline_size = cmdline_size;
    h.pref_address = pref_address;
    h.init_size = init_size;
    h.syssize = static_cast<uint32_t>((pm_size + 15) / 16);
    std::memcpy(out.data() + 0x1f1, &h, sizeof(h));
    out.insert(out.end(), pm_size, pm_fill);
    return out;
  }
};

}  // namespace cairn::test
