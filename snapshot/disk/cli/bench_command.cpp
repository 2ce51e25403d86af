// `cairn disk bench`: the same access pattern as `qemu-img bench` (requests
// of --size bytes, each --step after the previous one, wrapping at the end
// of the disk, one at a time), so scripts/bench-disk can compare the two.
#include <chrono>
#include <random>

#include "snapshot/disk/cli/disk_cli.hpp"
#include "snapshot/disk/cli/progress.hpp"
#include "snapshot/disk/merge.hpp"
#include "vmm/cli/exit_codes.hpp"

namespace cairn::disk {

void register_disk_bench(CLI::App* disk, CliContext& ctx) {
  auto* c = disk->add_subcommand("bench", "Time I/O through a chain (qemu-img bench's access pattern), or a merge");
  static std::string path, size = "4K", step, merge_child;
  static uint64_t count = 1000;
  static bool write = false, merge = false;
  c->add_option("PATH", path, "top layer")->required();
  c->add_option("-c,--count", count, "number of requests");
  c->add_option("-s,--size", size, "request size");
  c->add_option("-S,--step", step, "offset increment (default: the request size)");
  c->add_flag("-w,--write", write, "write instead of read");
  c->add_flag("--merge", merge, "time `merge PATH into its parent` instead");
  on_run(c, ctx, [] {
    using clock = std::chrono::steady_clock;
    if (merge) {
      auto t0 = clock::now();
      uint64_t bytes = 0;
      auto r = merge_into_parent(path, [&](uint64_t d, uint64_t) { bytes = d; });
      if (!r) return report_error(r.error());
      double s = std::chrono::duration<double>(clock::now() - t0).count();
      fmt::print("merged {} bytes in {:.3f} s: {:.1f} MB/s\n", bytes, s, double(bytes) / 1e6 / s);
      return int(kExitOk);
    }
    auto sz = parse_size(size);
    if (!sz) return report_error(sz.error());
    auto st = step.empty() ? sz : parse_size(step);
    if (!st) return report_error(st.error());
    auto chain = open_chain(path, write);
    if (!chain) return report_error(chain.error());
    std::vector<uint8_t> buf(*sz, 0xa5);
    uint64_t disk = (*chain)->size(), off = 0;
    auto t0 = clock::now();
    for (uint64_t i = 0; i < count; ++i) {
      if (off + *sz > disk) off = 0;
      auto r = write ? (*chain)->write(off, buf) : (*chain)->read(off, buf);
      if (!r) return report_error(r.error());
      off = (off + *st) % disk;
    }
    double s = std::chrono::duration<double>(clock::now() - t0).count();
    fmt::print("{} requests of {} bytes in {:.3f} s: {:.1f} MB/s, {:.0f} IOPS\n", count, *sz, s,
               double(count * *sz) / 1e6 / s, double(count) / s);
    if (write)
      if (auto r = (*chain)->flush(); !r) return report_error(r.error());
    return int(kExitOk);
  });
}

}  // namespace cairn::disk
