#include "vmm/checkpoint/layer_gc.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "snapshot/disk/chain.hpp"
#include "snapshot/disk/layer.hpp"
#include "snapshot/disk/merge.hpp"
#include "snapshot/memory/file_io.hpp"
#include "snapshot/memory/image_fold.hpp"
#include "vmm/control/client.hpp"
#include "vmm/control/vm_host.hpp"
#include "vmm/vmstore/atomic_file.hpp"

namespace cairn {

namespace fs = std::filesystem;

namespace {
std::string canon(const std::string& p) {
  std::error_code ec;
  auto c = fs::weakly_canonical(p, ec);
  return ec ? fs::path(p).lexically_normal().string() : c.string();
}

// The parent of a layer file as a canonical path; "" for a base; nullopt
// when the file is not a readable cairn layer. Only the header is read: a
// layer another process writes (a running VMM's) cannot be opened, and
// taking it for parentless would make its parent look unused.
std::optional<std::string> parent_of(const std::string& path) {
  auto hdr = disk::peek_header(path);
  if (!hdr || !*hdr) return std::nullopt;
  const auto& h = **hdr;
  if (!h.has_parent) return std::string{};
  return canon(disk::resolve_parent(path, h.parent.path));
}
}  // namespace

std::string describe(const GcAction& a) {
  switch (a.kind) {
    case GcAction::Kind::delete_layer: return fmt::format("delete disk layer {}", a.path);
    case GcAction::Kind::merge_into_child:
      return fmt::format("merge disk layer {} into {}{}", a.path, a.child, a.live ? " (while the VM runs)" : "");
    case GcAction::Kind::delete_folder: return fmt::format("delete checkpoint files {}", a.path);
  }
  return {};
}

Result<std::vector<GcAction>> plan_collection(const VmSession& s, const tree::Tree& t, bool vm_running) {
  std::vector<GcAction> plan;
  std::set<std::string> needed;
  for (auto& c : t.checkpoints)
    for (auto& d : c.disks) needed.insert(canon(d));
  for (auto& d : s.record.machine.disks) needed.insert(canon(d.path));

  // Every layer we know of and its parent.
  std::set<std::string> owned;
  std::map<std::string, std::optional<std::string>> parent;
  std::error_code ec;
  for (auto it = fs::directory_iterator(s.cp.disks_dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (it->path().extension() == ".cdsk") owned.insert(canon(it->path().string()));
  for (auto& p : owned) parent[p] = parent_of(p);
  for (auto& p : needed)
    if (!parent.contains(p)) parent[p] = parent_of(p);

  // The layers a running VMM holds open (every layer of each disk's chain),
  // by disk slot: merges into them must go through the VMM.
  std::map<std::string, size_t> in_use;
  if (vm_running)
    for (size_t i = 0; i < s.record.machine.disks.size(); ++i)
      for (std::optional<std::string> l = canon(s.record.machine.disks[i].path); l && !l->empty();) {
        if (!in_use.emplace(*l, i).second) break;
        auto it = parent.find(*l);
        l = it != parent.end() ? it->second : parent_of(*l);
      }

  std::set<std::string> gone;
  for (bool changed = true; changed;) {
    changed = false;
    for (auto& x : owned) {
      if (needed.contains(x) || gone.contains(x)) continue;
      std::vector<std::string> kids;
      for (auto& [c, p] : parent)
        if (!gone.contains(c) && p && *p == x) kids.push_back(c);
      if (kids.empty()) {
        plan.push_back({GcAction::Kind::delete_layer, x, {}});
      } else if (kids.size() == 1) {
        GcAction a{GcAction::Kind::merge_into_child, x, kids[0]};
        if (auto r = in_use.find(kids[0]); r != in_use.end()) {
          a.live = true;
          a.slot = r->second;
        }
        plan.push_back(a);
        parent[kids[0]] = parent[x];
      } else {
        continue;
      }
      gone.insert(x);
      changed = true;
    }
  }

  std::set<std::string> keep;
  for (auto& c : t.checkpoints) keep.insert(c.id);
  std::string saved = saved_state_dir(s.record);
  for (auto it = fs::directory_iterator(s.cp.checkpoints_dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (keep.contains(name) || (!saved.empty() && canon(saved) == canon(it->path().string()))) continue;
    plan.push_back({GcAction::Kind::delete_folder, it->path().string(), {}});
  }
  return plan;
}

// A checkpoint folder about to go: the memory images that build on its own
// (incremental checkpoints taken after it, found among its siblings by the
// parent id) get its chunks first, and then build on its parent. Each child
// changes by one rename: a crash leaves it as it was or folded, and the
// folder to go is removed only after.
Result<void> fold_memory_into_children(const fs::path& folder, Progress& progress) {
  const fs::path img = folder / "memory.img";
  if (!fs::exists(img)) return {};
  auto removed = snap::MemoryImageReader::open(img.string());
  if (!removed) return std::unexpected(std::move(removed.error()).context("before removing its checkpoint"));
  std::error_code ec;
  for (auto it = fs::directory_iterator(folder.parent_path(), ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const fs::path child_img = it->path() / "memory.img";
    if (it->path() == folder || !fs::exists(child_img)) continue;
    auto child = snap::MemoryImageReader::open(child_img.string());
    if (!child || child->parent_id() != removed->image_id()) continue;
    progress.stage(fmt::format("folding the memory of {} into {}", folder.filename().string(),
                               it->path().filename().string()));
    const std::string tmp = child_img.string() + ".fold";
    ::unlink(tmp.c_str());  // left by a crash in an earlier fold
    auto fd = snap::create_new(tmp);
    if (!fd) return std::unexpected(fd.error());
    auto folded = snap::fold_into_child(*removed, *child, fd->get(),
                                        [&](uint64_t d, uint64_t n) { progress.update(d, n); });
    if (!folded) return std::unexpected(std::move(folded.error()).context(fmt::format("folding into {}", child_img.string())));
    if (auto r = snap::fsync_fd(fd->get(), tmp); !r) return r;
    if (::rename(tmp.c_str(), child_img.c_str()) != 0) return fail_errno("renaming {}", tmp);
    if (auto r = snap::fsync_dir(it->path().string()); !r) return r;
    progress.update(1, 1);
  }
  return {};
}

Result<std::vector<GcAction>> collect_garbage(VmSession& s, Progress& progress) {
  auto st = s.state();
  if (!st) return std::unexpected(st.error());
  const bool running = st->state != VmRunState::off;
  auto plan = plan_collection(s, s.tree, running);
  if (!plan) return plan;
  for (auto& a : *plan) {
    switch (a.kind) {
      case GcAction::Kind::delete_layer:
        if (::unlink(a.path.c_str()) != 0 && errno != ENOENT) return fail_errno("deleting {}", a.path);
        break;
      case GcAction::Kind::merge_into_child: {
        progress.stage(fmt::format("merging {} into {}", fs::path(a.path).filename().string(),
                                   fs::path(a.child).filename().string()));
        if (a.live) {
          auto r = control_call(s.paths.control_socket, "disk-merge",
                                nlohmann::json{{"slot", a.slot}, {"parent", a.path}, {"child", a.child}}, 600000);
          if (!r) return std::unexpected(std::move(r.error()).context(describe(a)));
        } else {
          auto r = disk::merge_into_child(a.path, a.child,
                                          [&](uint64_t done, uint64_t total) { progress.update(done, total); });
          if (!r) return std::unexpected(std::move(r.error()).context(describe(a)));
        }
        progress.update(1, 1);
        if (::unlink(a.path.c_str()) != 0 && errno != ENOENT) return fail_errno("deleting {}", a.path);
        break;
      }
      case GcAction::Kind::delete_folder: {
        if (auto r = fold_memory_into_children(a.path, progress); !r) return std::unexpected(r.error());
        std::error_code ec;
        fs::remove_all(a.path, ec);
        if (ec) return fail(Errc::io, "deleting {}: {}", a.path, ec.message());
        break;
      }
    }
  }
  if (!plan->empty()) {
    (void)fsync_dir(s.cp.disks_dir);
    (void)fsync_dir(s.cp.checkpoints_dir);
  }
  return plan;
}

}  // namespace cairn
