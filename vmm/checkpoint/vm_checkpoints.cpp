#include "vmm/checkpoint/vm_checkpoints.hpp"

#include <sys/stat.h>

#include <chrono>
#include <thread>

#include "vmm/vmstore/uuid.hpp"

namespace cairn {

using nlohmann::json;

std::string_view to_string(CheckpointPolicy p) {
  switch (p) {
    case CheckpointPolicy::production: return "production";
    case CheckpointPolicy::production_only: return "production-only";
    case CheckpointPolicy::standard: return "standard";
  }
  return "production";
}

std::optional<CheckpointPolicy> checkpoint_policy_from(std::string_view s) {
  if (s == "production") return CheckpointPolicy::production;
  if (s == "production-only") return CheckpointPolicy::production_only;
  if (s == "standard") return CheckpointPolicy::standard;
  return std::nullopt;
}

Result<CheckpointSettings> checkpoint_settings(const VmRecord& r) {
  CheckpointSettings s;
  auto it = r.extra.find("checkpoints");
  if (it == r.extra.end()) return s;
  const json& j = *it;
  auto bad = [&](std::string_view what) {
    return fail(Errc::corrupt, "VM '{}': config.json: \"checkpoints\".{} is malformed", r.name, what);
  };
  if (!j.is_object()) return bad("(object)");
  if (auto t = j.find("type"); t != j.end()) {
    auto p = t->is_string() ? checkpoint_policy_from(t->get<std::string>()) : std::nullopt;
    if (!p) return bad("type");
    s.type = *p;
  }
  if (auto e = j.find("enabled"); e != j.end()) {
    if (!e->is_boolean()) return bad("enabled");
    s.enabled = e->get<bool>();
  }
  if (auto l = j.find("location"); l != j.end()) {
    if (!l->is_string()) return bad("location");
    s.location = l->get<std::string>();
  }
  return s;
}

void store_checkpoint_settings(VmRecord& r, const CheckpointSettings& s) {
  r.extra["checkpoints"] = {{"type", to_string(s.type)}, {"enabled", s.enabled}, {"location", s.location}};
}

Result<std::string> CheckpointPaths::new_layer_path() const {
  auto id = uuid_v4();
  if (!id) return std::unexpected(id.error());
  return disks_dir + "/" + *id + ".cdsk";
}

std::string saved_checkpoint_id(const VmRecord& r) {
  auto it = r.extra.find("saved_state");
  if (it == r.extra.end() || !it->is_object()) return {};
  auto id = it->find("checkpoint");
  return id != it->end() && id->is_string() ? id->get<std::string>() : std::string{};
}

Result<VmSession> VmSession::open(const std::string& vm_name, int wait_ms) {
  auto store = VmStore::open_default();
  if (!store) return std::unexpected(store.error());
  auto rec = store->load(vm_name);
  if (!rec) return std::unexpected(rec.error());
  VmPaths paths = store->paths(vm_name);
  const std::string lock_file = paths.dir + "/checkpoints.lock";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  std::optional<VmLock> lock;
  for (;;) {
    auto l = VmLock::try_acquire(lock_file);
    if (l) {
      lock.emplace(std::move(*l));
      break;
    }
    if (l.error().code != Errc::busy) return std::unexpected(l.error());
    if (std::chrono::steady_clock::now() >= deadline) {
      auto held = probe_lock(lock_file);
      pid_t pid = held ? held->pid : 0;
      return fail(Errc::busy, "another cairn command (pid {}) is changing the checkpoints of VM '{}'; try again when it ends",
                  pid, vm_name);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (auto r = lock->write_pid(::getpid()); !r) return std::unexpected(r.error());
  // The record is read again under the lock: another command may have changed it.
  rec = store->load(vm_name);
  if (!rec) return std::unexpected(rec.error());
  auto settings = checkpoint_settings(*rec);
  if (!settings) return std::unexpected(settings.error());
  CheckpointPaths cp;
  cp.tree_file = paths.dir + "/checkpoints.json";
  cp.lock_file = lock_file;
  // A location may be shared by VMs: each keeps its files in its own folder
  // there, since the collection deletes layers its VM does not need.
  cp.root = settings->location.empty() ? paths.dir : settings->location + "/" + rec->id;
  cp.checkpoints_dir = cp.root + "/checkpoints";
  cp.disks_dir = cp.root + "/disks";
  auto t = tree::load_tree(cp.tree_file);
  if (!t) return std::unexpected(t.error());
  return VmSession{std::move(*store), std::move(*rec), std::move(paths), std::move(cp), *settings, std::move(*t),
                   std::move(*lock)};
}

Result<void> VmSession::reload_record() {
  auto rec = store.load(record.name);
  if (!rec) return std::unexpected(rec.error());
  record = std::move(*rec);
  return {};
}

Result<void> VmSession::make_dirs() const {
  for (const auto& d : {cp.root, cp.checkpoints_dir, cp.disks_dir})
    if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) return fail_errno("creating {}", d);
  return {};
}

}  // namespace cairn
