#include "vmm/boot/boot_params.hpp"

#include <cstring>

#include "vmm/boot/layout.hpp"

namespace cairn {

namespace {
constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
constexpr uint16_t kBootFlag = 0xAA55;
constexpr uint8_t kLoaderUndefined = 0xff;  // type_of_loader: a boot loader without an assigned id
constexpr uint16_t kVidModeNormal = 0xffff;
constexpr uint16_t kHeapEnd = 0xe000 - 0x200;  // heap_end_ptr is relative to the setup start + 0x200
constexpr uint32_t kVmlinuxAlignment = 0x1000000;
}  // namespace

Result<std::vector<boot_e820_entry>> build_e820(const GuestMemory& mem) {
  uint64_t low_end = layout::low_ram_end(mem);
  if (low_end <= layout::kBiosAreaEnd)
    return fail(Errc::invalid_argument, "guest RAM below the MMIO hole ends at {:#x}; more than 1 MiB is needed",
                low_end);
  std::vector<boot_e820_entry> map;
  map.push_back({0, layout::kEbdaStart, kE820Ram});
  map.push_back({layout::kEbdaStart, layout::kBiosAreaEnd - layout::kEbdaStart, kE820Reserved});
  map.push_back({layout::kBiosAreaEnd, low_end - layout::kBiosAreaEnd, kE820Ram});
  for (auto& r : mem.regions())
    if (r.gpa >= layout::kHighRamStart) map.push_back({r.gpa, r.size, kE820Ram});
  if (map.size() > E820_MAX_ENTRIES_ZEROPAGE)
    return fail(Errc::invalid_argument, "{} e820 entries exceed the zero page's {}", map.size(),
                E820_MAX_ENTRIES_ZEROPAGE);
  return map;
}

uint64_t max_cmdline_len(const LoadedKernel& k) {
  uint64_t max = layout::kCmdlineMax - 1;
  // cmdline_size (protocol 2.06+) excludes the NUL.
  if (k.header && k.header->cmdline_size != 0) max = std::min<uint64_t>(max, k.header->cmdline_size);
  return max;
}

Result<void> write_cmdline(GuestMemory& mem, std::string_view cmdline, const LoadedKernel& k) {
  uint64_t max = max_cmdline_len(k);
  if (cmdline.size() > max)
    return fail(Errc::invalid_argument, "kernel command line is {} bytes; at most {} are allowed", cmdline.size(),
                max);
  if (cmdline.find('\0') != std::string_view::npos)
    return fail(Errc::invalid_argument, "kernel command line contains a NUL byte");
  std::vector<uint8_t> buf(cmdline.begin(), cmdline.end());
  buf.push_back(0);
  auto r = mem.write(layout::kCmdlineAddr, buf);
  if (!r) return std::unexpected(std::move(r.error()).context("writing the kernel command line"));
  return {};
}

Result<boot_params> build_boot_params(const GuestMemory& mem, const LoadedKernel& k, uint64_t cmdline_len) {
  boot_params bp;
  std::memset(&bp, 0, sizeof(bp));
  if (k.header) {
    bp.hdr = *k.header;
    bp.hdr.loadflags |= CAN_USE_HEAP;
    bp.hdr.heap_end_ptr = kHeapEnd;
  } else {
    // vmlinux carries no setup header: give the fields the kernel reads their protocol meaning.
    bp.hdr.boot_flag = kBootFlag;
    bp.hdr.header = kHdrSMagic;
    bp.hdr.kernel_alignment = kVmlinuxAlignment;
    bp.hdr.cmdline_size = static_cast<uint32_t>(layout::kCmdlineMax - 1);
  }
  bp.hdr.type_of_loader = kLoaderUndefined;
  bp.hdr.vid_mode = kVidModeNormal;
  bp.hdr.cmd_line_ptr = static_cast<uint32_t>(layout::kCmdlineAddr);
  bp.ext_cmd_line_ptr = static_cast<uint32_t>(layout::kCmdlineAddr >> 32);
  if (cmdline_len > max_cmdline_len(k))
    return fail(Errc::invalid_argument, "kernel command line is {} bytes; at most {} are allowed", cmdline_len,
                max_cmdline_len(k));

  auto e820 = build_e820(mem);
  if (!e820) return std::unexpected(e820.error());
  bp.e820_entries = static_cast<uint8_t>(e820->size());
  std::memcpy(bp.e820_table, e820->data(), e820->size() * sizeof(boot_e820_entry));
  return bp;
}

}  // namespace cairn
