// `cairn disk ...`: create, diff, info, check, merge, convert (and bench).
#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "snapshot/disk/cli/disk_cli.hpp"
#include "snapshot/disk/cli/progress.hpp"
#include "snapshot/disk/convert.hpp"
#include "snapshot/disk/inspect.hpp"
#include "vmm/cli/commands.hpp"
#include "vmm/cli/exit_codes.hpp"

namespace cairn {
namespace {
using namespace cairn::disk;

int done_or_error(const Result<void>& r) { return r ? int(kExitOk) : report_error(r.error()); }

Result<uint32_t> block_shift_of(const std::string& text) {
  CAIRN_TRY_CTX(v, parse_size(text), "--block-size");
  for (uint32_t s = kMinBlockShift; s <= kMaxBlockShift; ++s)
    if ((uint64_t{1} << s) == v) return s;
  return fail(Errc::invalid_argument, "--block-size must be a power of two from 4K to 2M");
}

bool is_cairn_layer(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char magic[8] = {};
  bool yes = ::pread(fd, magic, 8, 0) == 8 && std::string(magic, 8) == "CAIRNDSK";
  ::close(fd);
  return yes;
}

void print_info(const ChainInfo& ci, bool json) {
  if (json) {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : ci.layers)
      layers.push_back({{"path", l.path}, {"uuid", l.uuid}, {"generation", l.generation},
                        {"virtual_size", l.virtual_size}, {"block_size", l.block_size},
                        {"allocated_blocks", l.data_blocks}, {"zero_blocks", l.zero_blocks},
                        {"allocated_bytes", l.data_blocks * l.block_size}, {"free_slots", l.free_slots},
                        {"file_bytes", l.file_bytes},
                        {"parent", l.parent_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(l.parent_path)},
                        {"parent_uuid", l.parent_uuid.empty() ? nlohmann::json(nullptr) : nlohmann::json(l.parent_uuid)},
                        {"merge_state", l.merge_state.empty() ? nlohmann::json(nullptr) : nlohmann::json(l.merge_state)}});
    nlohmann::json out = {{"depth", ci.layers.size()}, {"virtual_size", ci.layers.front().virtual_size},
                          {"chain", layers}};
    fmt::print("{}\n", out.dump(2));
    return;
  }
  fmt::print("virtual size: {} bytes, block size: {} bytes, depth: {}\n", ci.layers.front().virtual_size,
             ci.layers.front().block_size, ci.layers.size());
  for (size_t i = 0; i < ci.layers.size(); ++i) {
    const auto& l = ci.layers[i];
    fmt::print("{}{} {}\n", std::string(2 * i, ' '), i == 0 ? "top:" : "parent:", l.path);
    fmt::print("{}  uuid {} generation {}\n", std::string(2 * i, ' '), l.uuid, l.generation);
    fmt::print("{}  {} allocated block(s) ({} bytes), {} zero block(s), file {} bytes\n", std::string(2 * i, ' '),
               l.data_blocks, l.data_blocks * l.block_size, l.zero_blocks, l.file_bytes);
    if (!l.merge_state.empty()) fmt::print("{}  merge in progress: {}\n", std::string(2 * i, ' '), l.merge_state);
  }
}

}  // namespace

void register_disk_commands(CLI::App& app, CliContext& ctx) {
  auto* disk = app.add_subcommand("disk", "Layered differencing disks: create, diff, info, check, merge, convert");
  disk->require_subcommand(1);

  {
    auto* c = disk->add_subcommand("create", "Create an empty base layer");
    static std::string path, size, bsize = "64K";
    c->add_option("PATH", path, "new layer file")->required();
    c->add_option("--size", size, "virtual size, e.g. 1G, 512M")->required();
    c->add_option("--block-size", bsize, "allocation block size (4K..2M)");
    on_run(c, ctx, [] {
      auto s = parse_size(size);
      if (!s) return report_error(s.error());
      auto b = block_shift_of(bsize);
      if (!b) return report_error(b.error());
      return done_or_error(create_base(path, *s, *b));
    });
  }
  {
    auto* c = disk->add_subcommand("diff", "Create a differencing layer CHILD over PARENT");
    static std::string parent, child;
    c->add_option("PARENT", parent)->required();
    c->add_option("CHILD", child)->required();
    on_run(c, ctx, [] { return done_or_error(create_child(parent, child)); });
  }
  {
    auto* c = disk->add_subcommand("info", "Show a layer's chain, sizes and allocated blocks");
    static std::string path;
    static bool json = false;
    c->add_option("PATH", path)->required();
    c->add_flag("--json", json, "machine-readable output");
    on_run(c, ctx, [] {
      auto ci = inspect_chain(path);
      if (!ci) return report_error(ci.error());
      print_info(*ci, json);
      return int(kExitOk);
    });
  }
  {
    auto* c = disk->add_subcommand("check", "Verify checksums, tables and parent links (non-zero exit on corruption)");
    static std::string path;
    c->add_option("PATH", path)->required();
    on_run(c, ctx, [] {
      auto ci = inspect_chain(path);
      if (!ci) return report_error(ci.error());
      for (const auto& l : ci->layers) {
        auto notes = check_layer_file(l.path);
        if (!notes) return report_error(notes.error());
        for (const auto& n : *notes) fmt::print("{}: note: {}\n", l.path, n);
      }
      fmt::print("{}: ok ({} layer(s))\n", path, ci->layers.size());
      return int(kExitOk);
    });
  }
  {
    auto* c = disk->add_subcommand("merge", "Merge LAYER into its parent (or, with --into, into its child)");
    static std::string layer, into;
    static bool keep = false;
    c->add_option("LAYER", layer, "the child to merge into its parent")->required();
    c->add_option("--into", into, "merge LAYER down into this child instead (LAYER is kept)");
    c->add_flag("--keep", keep, "keep the merged child file");
    on_run(c, ctx, [] {
      ProgressBar bar("merging");
      auto cb = [&bar](uint64_t d, uint64_t t) { bar.update(d, t); };
      if (!into.empty()) return done_or_error(merge_into_child(layer, into, cb));
      auto r = merge_into_parent(layer, cb);
      if (!r) return report_error(r.error());
      if (!keep && ::unlink(layer.c_str()) != 0) return report_error(fail_errno("removing {}", layer).error());
      return int(kExitOk);
    });
  }
  {
    auto* c = disk->add_subcommand("convert", "Convert between raw and cairn (direction from SRC's format)");
    static std::string src, dst, bsize = "64K";
    c->add_option("SRC", src)->required();
    c->add_option("DST", dst)->required();
    c->add_option("--block-size", bsize, "block size of a new cairn layer");
    on_run(c, ctx, [] {
      ProgressBar bar("converting");
      auto cb = [&bar](uint64_t d, uint64_t t) { bar.update(d, t); };
      if (is_cairn_layer(src)) return done_or_error(convert_cairn_to_raw(src, dst, cb));
      auto b = block_shift_of(bsize);
      if (!b) return report_error(b.error());
      return done_or_error(convert_raw_to_cairn(src, dst, *b, cb));
    });
  }
  register_disk_bench(disk, ctx);
}

}  // namespace cairn
