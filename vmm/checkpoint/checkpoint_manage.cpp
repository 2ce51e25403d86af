// Restore-VMCheckpoint, Rename-VMCheckpoint, Remove-VMCheckpoint.
#include <chrono>
#include <filesystem>
#include <thread>

#include "snapshot/disk/chain.hpp"
#include "vmm/checkpoint/checkpoint_ops.hpp"
#include "vmm/checkpoint/layer_gc.hpp"
#include "vmm/control/client.hpp"
#include "vmm/vmstore/vm_config.hpp"

namespace cairn {

using nlohmann::json;
namespace fs = std::filesystem;

Result<void> stop_vm_and_wait(const VmSession& s, int timeout_ms) {
  auto r = control_call(s.paths.control_socket, "stop", json::object(), 5000);
  if (!r && r.error().code != Errc::not_found) return std::unexpected(std::move(r.error()).context("stopping the VM"));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto held = probe_lock(s.paths.lock);
    if (!held) return std::unexpected(held.error());
    if (!held->held) return {};
    if (std::chrono::steady_clock::now() > deadline)
      return fail(Errc::timeout, "VM '{}' (pid {}) did not stop within {} s", s.record.name, held->pid,
                  timeout_ms / 1000);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<void> apply_checkpoint(VmSession& s, const std::string& which, const ApplyOptions& o, Progress& p,
                              json& report) {
  auto found = s.tree.resolve(which);
  if (!found) return std::unexpected(found.error());
  tree::Checkpoint target = **found;
  if (!target.enabled)
    return fail(Errc::invalid_state, "checkpoint '{}' is disabled: the VM cannot be started from it", target.name);
  if (target.disks.size() != s.record.machine.disks.size())
    return fail(Errc::invalid_state, "checkpoint '{}' has {} disks, VM '{}' now has {}", target.name,
                target.disks.size(), s.record.name, s.record.machine.disks.size());
  auto st = s.state();
  if (!st) return std::unexpected(st.error());
  const bool running = st->state != VmRunState::off;
  if (o.dry_run) {
    report["would"] = fmt::format("{}{}apply checkpoint '{}' ({}) to VM '{}'; it would then be {}",
                                  o.checkpoint_first ? "create a checkpoint of the current state, " : "",
                                  running ? "stop the running VM, " : "", target.name, target.id, s.record.name,
                                  target.has_memory ? "saved (the next start resumes the checkpoint)" : "off");
    return {};
  }
  if (o.checkpoint_first) {
    json created;
    auto c = create_checkpoint(s, {}, p, created);
    if (!c) return std::unexpected(std::move(c.error()).context("creating a checkpoint before applying"));
    report["created"] = created;
  }
  if (running) {
    p.stage("stopping the VM");
    if (auto r = stop_vm_and_wait(s, 60000); !r) return r;
    if (auto r = s.reload_record(); !r) return r;
  }
  if (auto r = s.make_dirs(); !r) return r;
  // New running layers over the checkpoint's frozen ones; the old running
  // layers are left to the collection below (nothing needs them any more).
  std::vector<std::string> tops;
  for (size_t i = 0; i < target.disks.size(); ++i) {
    if (s.record.machine.disks[i].read_only) {
      tops.push_back(target.disks[i]);
      continue;
    }
    auto top = s.cp.new_layer_path();
    if (!top) return std::unexpected(top.error());
    if (auto r = disk::create_child(target.disks[i], *top); !r)
      return std::unexpected(std::move(r.error()).context(fmt::format("checkpoint '{}'", target.name)));
    tops.push_back(*top);
  }
  for (size_t i = 0; i < tops.size(); ++i) s.record.machine.disks[i].path = tops[i];
  if (target.has_memory)
    s.record.extra["saved_state"] = {{"checkpoint", target.id}, {"dir", s.cp.checkpoint_dir(target.id)}};
  else
    s.record.extra.erase("saved_state");
  if (auto r = s.save_record(); !r) return r;
  s.tree.current = target.id;
  if (auto* c = s.tree.find(target.id)) c->most_recent_task = "Apply checkpoint";
  if (auto r = s.save_tree(); !r) return r;
  auto gc = collect_garbage(s, p);
  if (!gc) return std::unexpected(std::move(gc.error()).context("cleaning up after the apply (run it again to finish)"));
  report["applied"] = tree::to_published_json(target);
  report["vm_state"] = target.has_memory ? "saved" : "off";
  return {};
}

Result<void> rename_checkpoint(VmSession& s, const std::string& which, const std::string& new_name, bool dry_run,
                               json& report) {
  auto found = s.tree.resolve(which);
  if (!found) return std::unexpected(found.error());
  if (auto r = tree::validate_name(new_name); !r) return r;
  std::string id = (*found)->id;
  if (dry_run) {
    report["would"] = fmt::format("rename checkpoint '{}' ({}) to '{}'", (*found)->name, id, new_name);
    return {};
  }
  auto* c = s.tree.find(id);
  c->name = new_name;
  c->modified_time = utc_timestamp_now();
  c->most_recent_task = "Rename checkpoint";
  if (auto r = s.save_tree(); !r) return r;
  report = tree::to_published_json(*c);
  return {};
}

Result<void> remove_checkpoint(VmSession& s, const std::string& which, bool subtree, bool dry_run, Progress& p,
                               json& report) {
  auto found = s.tree.resolve(which);
  if (!found) return std::unexpected(found.error());
  const std::string id = (*found)->id;
  std::vector<std::string> ids{id};
  if (subtree)
    for (auto* d : s.tree.descendants(id)) ids.push_back(d->id);
  json removed = json::array();
  for (auto& r : ids) removed.push_back(tree::to_published_json(*s.tree.find(r)));
  if (dry_run) {
    tree::Tree after = s.tree;
    if (subtree) {
      if (auto r = after.remove_subtree(id); !r) return std::unexpected(r.error());
    } else if (auto r = after.remove_one(id); !r) {
      return r;
    }
    auto st = s.state();
    if (!st) return std::unexpected(st.error());
    auto plan = plan_collection(s, after, st->state != VmRunState::off);
    if (!plan) return std::unexpected(plan.error());
    json would = json::array();
    for (auto& r : removed) would.push_back(fmt::format("remove checkpoint '{}' ({})", r["name"].get<std::string>(),
                                                        r["checkpoint_id"].get<std::string>()));
    for (auto& a : *plan) would.push_back(describe(a));
    report["would"] = would;
    return {};
  }
  // The tree first: once it is durable the checkpoint is gone, and the
  // collection (now or by the next command after a crash) reclaims its files.
  if (subtree) {
    if (auto r = s.tree.remove_subtree(id); !r) return std::unexpected(r.error());
  } else if (auto r = s.tree.remove_one(id); !r) {
    return r;
  }
  if (auto r = s.save_tree(); !r) return r;
  auto gc = collect_garbage(s, p);
  if (!gc) return std::unexpected(std::move(gc.error()).context("reclaiming the checkpoint's files (run any checkpoint command again to finish)"));
  report["removed"] = removed;
  json actions = json::array();
  for (auto& a : *gc) actions.push_back(describe(a));
  report["actions"] = actions;
  return {};
}

}  // namespace cairn
