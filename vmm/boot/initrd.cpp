#include "vmm/boot/initrd.hpp"

#include "vmm/boot/layout.hpp"

namespace cairn {

uint64_t initrd_addr_max(const LoadedKernel& k) {
  if (k.header && k.header->initrd_addr_max != 0) return k.header->initrd_addr_max;
  return kDefaultInitrdAddrMax;
}

Result<InitrdPlacement> place_initrd(const GuestMemory& mem, uint64_t size, uint64_t kernel_end,
                                     uint64_t addr_max) {
  auto too_large = [&] {
    return fail(Errc::out_of_memory, "initrd ({} bytes) does not fit in guest memory of {} bytes", size,
                mem.total_size());
  };
  if (size == 0) return fail(Errc::invalid_argument, "initrd is empty");
  uint64_t low_end = layout::low_ram_end(mem);
  if (low_end == 0) return too_large();
  uint64_t limit = std::min(addr_max, low_end - 1) + 1;
  if (size > limit) return too_large();
  uint64_t addr = (limit - size) & ~(GuestMemory::kPageSize - 1);
  if (addr < kernel_end) return too_large();
  return InitrdPlacement{addr, size};
}

Result<InitrdPlacement> load_initrd_file(GuestMemory& mem, const std::string& path, const LoadedKernel& k) {
  auto bytes = read_file_bytes(path, mem.total_size());
  if (!bytes) return std::unexpected(std::move(bytes.error()).context("loading initrd"));
  auto p = place_initrd(mem, bytes->size(), k.load_end, initrd_addr_max(k));
  if (!p) return std::unexpected(std::move(p.error()).context(fmt::format("loading initrd {}", path)));
  auto w = mem.write(p->addr, *bytes);
  if (!w) return std::unexpected(std::move(w.error()).context(fmt::format("loading initrd {}", path)));
  return p;
}

void set_initrd(boot_params& bp, const InitrdPlacement& p) {
  bp.hdr.ramdisk_image = static_cast<uint32_t>(p.addr);
  bp.hdr.ramdisk_size = static_cast<uint32_t>(p.size);
  bp.ext_ramdisk_image = static_cast<uint32_t>(p.addr >> 32);
  bp.ext_ramdisk_size = static_cast<uint32_t>(p.size >> 32);
}

}  // namespace cairn
