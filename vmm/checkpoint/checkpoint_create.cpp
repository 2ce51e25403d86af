// Checkpoint-VM: what is taken depends on the VM's state and checkpoint type.
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "guest-agent/client/agent_client.hpp"
#include "guest-agent/client/vm_endpoint.hpp"
#include "snapshot/disk/chain.hpp"
#include "snapshot/disk/convert.hpp"
#include "vmm/checkpoint/checkpoint_ops.hpp"
#include "vmm/control/client.hpp"
#include "vmm/control/vm_host.hpp"
#include "vmm/vmstore/atomic_file.hpp"
#include "vmm/vmstore/uuid.hpp"

namespace cairn {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {
constexpr int kSaveTimeoutMs = 600000;

double ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// New layers for every writable disk: the VM goes on in `new_top`; a raw
// disk is first imported at `import_path`.
Result<std::vector<DiskFreeze>> freeze_plan(const VmSession& s) {
  std::vector<DiskFreeze> plan;
  for (size_t i = 0; i < s.record.machine.disks.size(); ++i) {
    if (s.record.machine.disks[i].read_only) continue;
    auto top = s.cp.new_layer_path();
    auto imp = s.cp.new_layer_path();
    if (!top || !imp) return std::unexpected(top ? imp.error() : top.error());
    plan.push_back({i, *top, *imp});
  }
  return plan;
}

json plan_json(const std::vector<DiskFreeze>& plan) {
  json a = json::array();
  for (auto& f : plan)
    a.push_back({{"slot", f.slot}, {"new_top", f.new_top}, {"import_path", f.import_path}, {"precopied", f.precopied}});
  return a;
}

// The frozen layer of every disk slot (read-only disks: the disk itself).
std::vector<std::string> checkpoint_disks(const VmRecord& before, const std::vector<FrozenDisk>& frozen) {
  std::vector<std::string> out;
  for (auto& d : before.machine.disks) out.push_back(d.path);
  for (auto& f : frozen) out[f.slot] = f.frozen;
  for (auto& p : out) p = fs::absolute(p).lexically_normal().string();
  return out;
}

// An off VM: the layering is done here, no VMM involved.
Result<std::vector<FrozenDisk>> freeze_offline(VmSession& s, const std::vector<DiskFreeze>& plan, Progress& p) {
  std::vector<FrozenDisk> out;
  for (auto& f : plan) {
    std::string top = s.record.machine.disks[f.slot].path;
    std::string frozen = top;
    // By its magic: a layer that cannot be opened now (another process
    // writes it) is still a layer, never a raw disk to import.
    auto layered = disk::peek_header(top);
    if (!layered) return std::unexpected(layered.error());
    if (!*layered) {
      p.stage(fmt::format("importing raw disk {}", top));
      auto r = disk::convert_raw_to_cairn(top, f.import_path, disk::kDefaultBlockShift,
                                          [&](uint64_t d, uint64_t t) { p.update(d, t); });
      if (!r) return std::unexpected(std::move(r.error()).context(fmt::format("importing raw disk {}", top)));
      frozen = f.import_path;
    }
    if (auto r = disk::create_child(frozen, f.new_top); !r) return std::unexpected(r.error());
    out.push_back({f.slot, frozen, f.new_top});
  }
  return out;
}

// A running VM's raw disks are copied into their first layer while the
// guest runs on, the VMM noting what the guest writes meanwhile; the pause
// (and a production checkpoint's freeze) then only covers those blocks.
Result<void> precopy_raw_disks(VmSession& s, std::vector<DiskFreeze>& plan, Progress& p, json& stats) {
  for (auto& f : plan) {
    const std::string path = s.record.machine.disks[f.slot].path;
    auto layered = disk::peek_header(path);
    if (!layered) return std::unexpected(layered.error());
    if (*layered) continue;
    const auto t0 = std::chrono::steady_clock::now();
    auto tracked = control_call(s.paths.control_socket, "disk-track", json{{"slot", f.slot}});
    if (!tracked) return std::unexpected(std::move(tracked.error()).context(fmt::format("tracking writes to {}", path)));
    p.stage(fmt::format("copying raw disk {} into its first layer", path));
    auto r = disk::convert_raw_to_cairn(path, f.import_path, disk::kDefaultBlockShift,
                                        [&](uint64_t d, uint64_t t) { p.update(d, t); });
    if (!r) {
      ::unlink(f.import_path.c_str());
      return std::unexpected(std::move(r.error()).context(fmt::format("copying raw disk {}", path)));
    }
    f.precopied = true;
    stats["precopy_ms"] = stats.value("precopy_ms", 0.0) + ms_between(t0, std::chrono::steady_clock::now());
  }
  return {};
}

struct Taken {
  std::vector<FrozenDisk> frozen;
  bool memory = false;
  json stats = json::object();
};

// The VMM's checkpoint-save reply as a Taken: per-disk figures under "disks".
Taken taken_from_reply(json r) {
  Taken t;
  t.memory = r["memory"].get<bool>();
  json per_disk = json::array();
  for (auto& f : r["frozen"]) {
    t.frozen.push_back({f["slot"].get<size_t>(), f["frozen"], f["new_top"]});
    json d = f;
    d.erase("frozen");
    d.erase("new_top");
    per_disk.push_back(std::move(d));
  }
  r.erase("frozen");
  r.erase("memory");
  if (!per_disk.empty()) r["disks"] = std::move(per_disk);
  t.stats = std::move(r);
  return t;
}

// `reload`: re-read config.json, which the VMM rewrote with the new disk
// paths (also when it failed half-way).
Result<Taken> take_with_vmm(VmSession& s, const std::vector<DiskFreeze>& plan, const std::string& memory_dir) {
  json args{{"freeze", plan_json(plan)}, {"dir", memory_dir.empty() ? json(nullptr) : json(memory_dir)}};
  auto r = control_call(s.paths.control_socket, "checkpoint-save", args, kSaveTimeoutMs);
  if (auto rr = s.reload_record(); !rr) return std::unexpected(rr.error());
  if (!r) return std::unexpected(r.error());
  return taken_from_reply(std::move(*r));
}

// Production: the guest agent freezes the guest's file systems, the disks
// are frozen, the agent thaws. The VMM holds that conversation with the
// agent itself, so the file systems stay frozen only for the disk freeze and
// the thaw (the CLI's round trips to the VMM fall outside). Errors before the
// freeze mean "no agent": the caller may fall back to a standard checkpoint.
struct AgentFailure {
  Error error;
  bool before_freeze;
};
std::expected<Taken, AgentFailure> take_production(VmSession& s, const std::vector<DiskFreeze>& plan) {
  auto ep = vm_agent_endpoint(s.store.home(), s.record.name);
  if (!ep) return std::unexpected(AgentFailure{ep.error(), true});
  if (ep->kind != AgentEndpoint::Kind::hybrid_vsock)
    return std::unexpected(AgentFailure{Error{Errc::unsupported, "the guest agent is not on the VM's vsock"}, true});
  json agent{{"path", ep->path}, {"port", ep->port}, {"connect_ms", 3000}, {"reply_ms", 10000}};
  json args{{"freeze", plan_json(plan)}, {"dir", nullptr}, {"agent", agent}};
  auto r = control_call(s.paths.control_socket, "checkpoint-save", args, kSaveTimeoutMs);
  if (auto rr = s.reload_record(); !rr) return std::unexpected(AgentFailure{rr.error(), false});
  if (!r) return std::unexpected(AgentFailure{r.error(), false});
  if (auto e = r->find("agent_error"); e != r->end())
    return std::unexpected(AgentFailure{Error{Errc::failed, e->get<std::string>()}, true});
  if (auto e = r->find("thaw_error"); e != r->end())
    return std::unexpected(AgentFailure{
        Error{Errc::failed, fmt::format("thawing the guest (it thaws by itself after 10 s): {}", e->get<std::string>())},
        false});
  return taken_from_reply(std::move(*r));
}

// Saved VM: its memory files are shared with the checkpoint (hard links; a
// copy where the file system cannot link).
Result<void> link_saved_memory(const std::string& from, const std::string& to) {
  std::string tmp = to + ".tmp";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return fail(Errc::io, "creating {}: {}", tmp, ec.message());
  for (auto* f : {"state.bin", "memory.img"}) {
    fs::create_hard_link(fs::path(from) / f, fs::path(tmp) / f, ec);
    if (ec) {
      ec.clear();
      fs::copy_file(fs::path(from) / f, fs::path(tmp) / f, ec);
      if (ec) return fail(Errc::io, "copying {}/{}: {}", from, f, ec.message());
    }
  }
  if (auto r = fsync_dir(tmp); !r) return r;
  if (::rename(tmp.c_str(), to.c_str()) != 0) return fail_errno("renaming {}", tmp);
  return fsync_dir(fs::path(to).parent_path().string());
}
}  // namespace

Result<tree::Checkpoint> create_checkpoint(VmSession& s, const CreateOptions& o, Progress& p, json& report) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!s.settings.enabled)
    return fail(Errc::invalid_state, "checkpoints are disabled for VM '{}' (cairn vm set {} --checkpoints enabled)",
                s.record.name, s.record.name);
  tree::Checkpoint c;
  c.name = o.name.empty() ? tree::default_name(s.record.name, std::time(nullptr)) : o.name;
  if (auto r = tree::validate_name(c.name); !r) return std::unexpected(r.error());
  if (auto r = tree::validate_description(o.description); !r) return std::unexpected(r.error());
  auto st = s.state();
  if (!st) return std::unexpected(st.error());
  if (st->state != VmRunState::off && !st->answered)
    return fail(Errc::invalid_state, "VM '{}' runs (pid {}) but does not answer on its control socket: {}",
                s.record.name, st->pid, st->unreachable_why);
  const std::string saved_dir = saved_state_dir(s.record);
  std::string vm_state = st->state == VmRunState::running ? "running"
                         : st->state == VmRunState::paused ? "paused"
                         : saved_dir.empty()               ? "off"
                                                           : "saved";
  auto plan = freeze_plan(s);
  if (!plan) return std::unexpected(plan.error());
  if (o.dry_run) {
    std::string what = vm_state == "running" && s.settings.type != CheckpointPolicy::standard
                           ? "a production checkpoint (guest file systems frozen through the agent; no memory)"
                       : vm_state == "off" ? "a checkpoint of the disks (the VM is off)"
                                           : "a standard checkpoint (memory, vCPU and device state, disks)";
    report["would"] = fmt::format("create {} named '{}' of VM '{}' ({}); {} disk(s) would get new layers", what,
                                  c.name, s.record.name, vm_state, plan->size());
    return c;
  }
  auto id = uuid_v4();
  if (!id) return std::unexpected(id.error());
  c.id = *id;
  c.description = o.description;
  c.parent_id = s.tree.current;
  c.vm_id = s.record.id;
  c.vm_name = s.record.name;
  c.added_time = c.modified_time = utc_timestamp_now();
  c.most_recent_task = "Create checkpoint";
  c.vm_state = vm_state;
  if (auto r = s.make_dirs(); !r) return std::unexpected(r.error());
  const VmRecord before = s.record;
  const std::string memory_dir = s.cp.checkpoint_dir(c.id);

  Taken taken;
  if (vm_state == "off" || vm_state == "saved") {
    auto f = freeze_offline(s, *plan, p);
    if (!f) return std::unexpected(f.error());
    taken.frozen = std::move(*f);
    for (auto& fd : taken.frozen) s.record.machine.disks[fd.slot].path = fd.new_top;
    if (auto r = s.save_record(); !r) return std::unexpected(r.error());
    if (vm_state == "saved") {
      if (auto r = link_saved_memory(saved_dir, memory_dir); !r) return std::unexpected(r.error());
      taken.memory = true;
    }
    c.type = vm_state == "off" && s.settings.type != CheckpointPolicy::standard ? tree::CheckpointType::production
                                                                                : tree::CheckpointType::standard;
  } else {
    json precopy_stats = json::object();
    if (auto r = precopy_raw_disks(s, *plan, p, precopy_stats); !r) return std::unexpected(r.error());
    bool production = s.settings.type != CheckpointPolicy::standard;
    if (production && vm_state == "paused") {
      if (s.settings.type == CheckpointPolicy::production_only)
        return fail(Errc::invalid_state, "VM '{}' is paused: its guest agent cannot freeze the file systems "
                                         "(checkpoint type production-only)", s.record.name);
      c.note = "production checkpoint fell back to standard: the VM is paused";
      production = false;
    }
    if (production) {
      p.stage("freezing the guest's file systems");
      auto t = take_production(s, *plan);
      if (t) {
        taken = std::move(*t);
        c.type = tree::CheckpointType::production;
      } else if (!t.error().before_freeze || s.settings.type == CheckpointPolicy::production_only) {
        auto e = t.error().error;
        if (t.error().before_freeze)
          return fail(Errc::failed, "production-only checkpoint of VM '{}' failed: the guest agent did not freeze "
                                    "the file systems: {}", s.record.name, e.message);
        return std::unexpected(std::move(e).context("production checkpoint"));
      } else {
        c.note = fmt::format("production checkpoint fell back to standard: the guest agent did not answer ({})",
                             t.error().error.message);
        production = false;
      }
    }
    if (!production) {
      p.stage("saving the VM's memory and state");
      auto t = take_with_vmm(s, *plan, memory_dir);
      if (!t) return std::unexpected(t.error());
      taken = std::move(*t);
      c.type = tree::CheckpointType::standard;
    }
    taken.stats.update(precopy_stats);
  }
  c.has_memory = taken.memory;
  c.disks = checkpoint_disks(before, taken.frozen);
  c.stats = taken.stats;
  c.stats["total_ms"] = ms_between(t0, std::chrono::steady_clock::now());
  if (auto r = s.tree.add(c); !r) return std::unexpected(r.error());
  if (auto r = s.save_tree(); !r) return std::unexpected(r.error());
  report = tree::to_published_json(c);
  report["stats"] = c.stats;
  if (!c.note.empty()) report["note"] = c.note;
  return c;
}

}  // namespace cairn
