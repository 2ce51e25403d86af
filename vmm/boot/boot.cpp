#include "vmm/boot/boot.hpp"

#include "vmm/boot/boot_params.hpp"
#include "vmm/boot/cpu_setup.hpp"
#include "vmm/boot/layout.hpp"
#include "vmm/boot/mptable.hpp"

namespace cairn {

kvm_sregs BootResult::sregs(const kvm_sregs& current) const {
  kvm_sregs s = current;
  setup_long_mode_sregs(s);
  return s;
}

Result<BootResult> prepare_boot(GuestMemory& mem, const BootConfig& cfg) {
  if (cfg.vcpus == 0 || cfg.vcpus > kMaxVcpus)
    return fail(Errc::invalid_argument, "{} vCPUs requested; between 1 and {} are supported", cfg.vcpus, kMaxVcpus);
  if (cfg.cmdline.size() > layout::kCmdlineMax - 1)
    return fail(Errc::invalid_argument, "kernel command line is {} bytes; at most {} are allowed",
                cfg.cmdline.size(), layout::kCmdlineMax - 1);
  if (layout::low_ram_end(mem) <= layout::kBiosAreaEnd)
    return fail(Errc::invalid_argument, "guest memory of {} bytes is too small to boot Linux", mem.total_size());

  // Each step's error already names what it was doing.
  BootResult res;
  auto kernel = load_kernel_file(mem, cfg.kernel_path);
  if (!kernel) return std::unexpected(kernel.error());
  res.kernel = std::move(*kernel);

  auto bp = build_boot_params(mem, res.kernel, cfg.cmdline.size());
  if (!bp) return std::unexpected(bp.error());
  if (!cfg.initrd_path.empty()) {
    auto placement = load_initrd_file(mem, cfg.initrd_path, res.kernel);
    if (!placement) return std::unexpected(placement.error());
    set_initrd(*bp, *placement);
    res.initrd = *placement;
  }

  if (auto r = write_cmdline(mem, cfg.cmdline, res.kernel); !r) return std::unexpected(r.error());
  if (auto r = mem.write_obj(layout::kZeroPageAddr, *bp); !r)
    return std::unexpected(std::move(r.error()).context("writing the zero page"));
  if (auto r = write_mptable(mem, cfg.vcpus); !r) return std::unexpected(r.error());
  if (auto r = write_gdt_and_page_tables(mem); !r) return std::unexpected(r.error());

  res.regs = boot_regs(res.kernel.entry);
  return res;
}

}  // namespace cairn
