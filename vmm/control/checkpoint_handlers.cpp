// The control commands that checkpoints use on a running VM (protocol.hpp):
//   checkpoint-save     {"dir": PATH | null, "freeze": [{"slot": N, "new_top": PATH, "import_path": PATH,
//                                                   "precopied": BOOL}]}
//     dir: save vCPU, device state and RAM into the new folder PATH; null:
//     disks only. Every listed disk is frozen in the same pause and the VM
//     goes on in its new top layer; config.json is updated to match.
//     -> {"memory": bool, "guest_memory_bytes", "memory_file_bytes",
//         "state_file_bytes", "paused_ms", "total_ms", "live_copy_ms", "live_rounds",
//         "memory_copy": "copy-on-write"|"pre-copy"|"paused", "cow_fault_chunks",
//         "memory_copy_note" (why a running guest was not copied the preferred way),
//         "paused_chunks", "compacted_bytes", "pause_ms", "state_ms", "memory_ms",
//         "memory_verified" (CAIRN_VERIFY_MEMORY=1: the image equals the paused RAM),
//         "frozen": [{"slot", "frozen", "new_top", "flush_ms", "import_ms", "relayer_ms",
//                     "patched_blocks", "live_patched_blocks"}]}
//     disks only also: "pause_ms" (stopping the vCPUs), "config_ms" (config.json)
//     With "agent": {"path": PATH, "port": N, "connect_ms": N, "reply_ms": N}
//     (disks only: a production checkpoint) the VMM itself has the guest
//     agent at hybrid vsock PATH, port N freeze the guest's file systems,
//     freezes the disks and has the agent thaw, so that the freeze window
//     holds no round trip to the CLI. Extra reply fields: "frozen_filesystems",
//     "freeze_ms" (the agent's freeze), "freeze_window_ms" (frozen .. thawed),
//     "guest_freeze_window_ms" (the same as cairn's agent timed it in the guest)
//     and "guest_thaw_ms" (of that, the agent's FITHAW calls),
//     "prepare_ms" (the new layers made before the freeze),
//     "disk_freeze_ms"; "agent_error" when the agent failed before anything
//     was frozen (nothing changed: the caller may fall back), "thaw_error"
//     when the disks were frozen but the thaw failed (the agent thaws by itself).
//     A raw disk is copied to import_path; with "precopied": true the copy
//     was made while the guest ran, after disk-track, and only the blocks
//     written since are copied in the pause.
//   disk-track          {"slot": N}
//     starts noting the blocks the guest writes to raw disk N.
//   disk-merge          {"slot": N, "parent": PATH, "child": PATH}
//     merges layer PATH into its child, a layer of disk N's chain.
//   disks               -> {"disks": [{"path", "read_only"}]}  the layers in use
#include <chrono>
#include <optional>

#include "guest-agent/client/agent_client.hpp"
#include "vmm/control/vm_handlers.hpp"

namespace cairn {

using nlohmann::json;

namespace {
Result<std::vector<DiskFreeze>> parse_freeze(const json& args) {
  std::vector<DiskFreeze> plan;
  auto it = args.find("freeze");
  if (it == args.end()) return plan;
  if (!it->is_array()) return fail(Errc::invalid_argument, "'freeze' must be an array");
  for (auto& f : *it) {
    if (!f.is_object() || !f.contains("slot") || !f["slot"].is_number_unsigned() || !f.contains("new_top") ||
        !f["new_top"].is_string())
      return fail(Errc::invalid_argument, "each 'freeze' entry needs 'slot' and 'new_top'");
    DiskFreeze d;
    d.slot = f["slot"].get<size_t>();
    d.new_top = f["new_top"].get<std::string>();
    if (f.contains("import_path") && f["import_path"].is_string()) d.import_path = f["import_path"].get<std::string>();
    if (f.contains("precopied") && f["precopied"].is_boolean()) d.precopied = f["precopied"].get<bool>();
    plan.push_back(std::move(d));
  }
  return plan;
}

// The stored config follows the disks the VMM now writes, so that the next
// start opens the new top layers and never a frozen one. Other keys of the
// file (settings changed while the VM runs) are kept as they are on disk.
Result<void> store_disk_paths(VmControlContext& vm) {
  auto rec = load_vm_record(vm.paths.config);
  if (!rec) return std::unexpected(rec.error());
  const auto& now = vm.machine.config().disks;
  if (rec->machine.disks.size() != now.size())
    return fail(Errc::invalid_state, "{} lists {} disks, the running VM has {}", vm.paths.config,
                rec->machine.disks.size(), now.size());
  for (size_t i = 0; i < now.size(); ++i) rec->machine.disks[i].path = now[i].path;
  vm.record.machine.disks = now;
  return save_vm_record(vm.paths.config, *rec);
}

Result<AgentEndpoint> parse_agent(const json& a) {
  if (!a.is_object() || !a.contains("path") || !a["path"].is_string() || !a.contains("port") ||
      !a["port"].is_number_unsigned())
    return fail(Errc::invalid_argument, "'agent' needs 'path' and 'port'");
  AgentEndpoint ep;
  ep.path = a["path"].get<std::string>();
  ep.port = a["port"].get<uint32_t>();
  return ep;
}

AgentTimeouts parse_agent_timeouts(const json& a) {
  AgentTimeouts to;
  if (a.contains("connect_ms") && a["connect_ms"].is_number_unsigned())
    to.connect = std::chrono::milliseconds(a["connect_ms"].get<uint32_t>());
  if (a.contains("reply_ms") && a["reply_ms"].is_number_unsigned())
    to.reply = std::chrono::milliseconds(a["reply_ms"].get<uint32_t>());
  return to;
}

json frozen_json(const std::vector<FrozenDisk>& frozen) {
  json a = json::array();
  for (auto& f : frozen)
    a.push_back({{"slot", f.slot},
                 {"frozen", f.frozen},
                 {"new_top", f.new_top},
                 {"flush_ms", f.flush_ms},
                 {"import_ms", f.import_ms},
                 {"relayer_ms", f.relayer_ms},
                 {"patched_blocks", f.patched_blocks},
                 {"live_patched_blocks", f.live_patched_blocks}});
  return a;
}

double ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// A checkpoint without memory: every disk frozen in one pause, config.json
// updated. With `agent` (a production checkpoint) the guest agent freezes the
// file systems before and thaws them after.
Result<json> save_disks(VmControlContext& vm, const std::vector<DiskFreeze>& plan, const json* agent) {
  std::optional<AgentClient> client;
  if (agent) {
    auto ep = parse_agent(*agent);
    if (!ep) return std::unexpected(ep.error());
    auto c = AgentClient::connect(*ep, parse_agent_timeouts(*agent));
    if (!c) return json{{"memory", false}, {"agent_error", c.error().message}};
    client.emplace(std::move(*c));
  }
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  // The new layers are made before the guest's file systems freeze.
  auto prepared = vm.machine.prepare_disk_freeze(plan);
  if (!prepared) return std::unexpected(prepared.error());
  const auto t_prepared = clock::now();
  int64_t filesystems = 0;
  if (client) {
    auto n = client->fsfreeze_freeze();
    if (!n) {
      (void)client->fsfreeze_thaw();  // a partial freeze is undone by the agent; be sure
      return json{{"memory", false}, {"agent_error", n.error().message}};
    }
    filesystems = *n;
  }
  const auto t_frozen = clock::now();
  auto f = vm.machine.freeze_disks(*prepared);
  const auto t_disks = clock::now();
  Result<int64_t> thawed = int64_t{0};
  if (client) thawed = client->fsfreeze_thaw();
  const auto t_thawed = clock::now();
  // Outside the window; before the reply, since the old top now belongs to the checkpoint.
  auto stored = store_disk_paths(vm);
  if (!f) return std::unexpected(f.error());
  if (!stored) return std::unexpected(stored.error());
  const auto t_end = clock::now();
  json out = {{"memory", false},
              {"pause_ms", f->pause_ms},
              {"paused_ms", f->paused_ms},
              {"prepare_ms", ms_between(t0, t_prepared)},
              {"config_ms", ms_between(t_thawed, t_end)},
              {"total_ms", ms_between(t0, t_end)},
              {"frozen", frozen_json(f->frozen)}};
  if (client) {
    out["frozen_filesystems"] = filesystems;
    out["freeze_ms"] = ms_between(t_prepared, t_frozen);
    out["freeze_window_ms"] = ms_between(t_frozen, t_thawed);
    out["disk_freeze_ms"] = ms_between(t_frozen, t_disks);
    if (!thawed) out["thaw_error"] = thawed.error().message;
    // The same window timed in the guest, after the fact (cairn's agent only).
    else if (auto w = client->freeze_window(); w) {
      out["guest_freeze_window_ms"] = w->frozen_ms;
      out["guest_thaw_ms"] = w->thaw_ms;
    }
  }
  return out;
}
}  // namespace

void add_checkpoint_handlers(ControlDispatcher& d, VmControlContext& vm) {
  d.add("checkpoint-save", [&vm](const json& args) -> Result<json> {
    auto plan = parse_freeze(args);
    if (!plan) return std::unexpected(plan.error());
    auto dir = args.find("dir");
    const bool memory = dir != args.end() && dir->is_string();
    json out;
    if (memory) {
      auto s = vm.machine.save_checkpoint(dir->get<std::string>(), *plan);
      auto stored = store_disk_paths(vm);
      if (!s) return std::unexpected(s.error());
      if (!stored) return std::unexpected(stored.error());
      out = {{"memory", true},
             {"guest_memory_bytes", s->guest_memory_bytes},
             {"memory_file_bytes", s->memory_file_bytes},
             {"state_file_bytes", s->state_file_bytes},
             {"paused_ms", s->paused_ms},
             {"total_ms", s->total_ms},
             {"live_copy_ms", s->live_copy_ms},
             {"live_rounds", s->live_rounds},
             {"memory_copy", s->memory_copy},
             {"cow_fault_chunks", s->cow_fault_chunks},
             {"paused_chunks", s->paused_chunks},
             {"compacted_bytes", s->compacted_bytes},
             {"pause_ms", s->pause_ms},
             {"state_ms", s->state_ms},
             {"memory_ms", s->memory_ms},
             {"frozen", frozen_json(s->frozen)}};
      if (!s->memory_copy_note.empty()) out["memory_copy_note"] = s->memory_copy_note;
      if (s->memory_verified) out["memory_verified"] = true;
      out["incremental"] = s->incremental;
      out["parent_chunks"] = s->parent_chunks;
    } else {
      auto agent = args.find("agent");
      auto r = save_disks(vm, *plan, agent == args.end() ? nullptr : &*agent);
      if (!r) return std::unexpected(r.error());
      out = std::move(*r);
    }
    return out;
  });
  d.add("disk-track", [&vm](const json& args) -> Result<json> {
    auto slot = args.find("slot");
    if (slot == args.end() || !slot->is_number_unsigned()) return fail(Errc::invalid_argument, "disk-track needs 'slot'");
    if (auto r = vm.machine.track_disk_writes(slot->get<size_t>()); !r) return std::unexpected(r.error());
    return json::object();
  });
  d.add("disk-merge", [&vm](const json& args) -> Result<json> {
    auto slot = args.find("slot");
    auto parent = args.find("parent");
    auto child = args.find("child");
    if (slot == args.end() || !slot->is_number_unsigned() || parent == args.end() || !parent->is_string() ||
        child == args.end() || !child->is_string())
      return fail(Errc::invalid_argument, "disk-merge needs 'slot', 'parent' and 'child'");
    if (auto r = vm.machine.merge_disk_layers(slot->get<size_t>(), parent->get<std::string>(),
                                              child->get<std::string>());
        !r)
      return std::unexpected(r.error());
    return json::object();
  });
  d.add("disks", [&vm](const json&) -> Result<json> {
    json a = json::array();
    for (auto& disk : vm.machine.config().disks) a.push_back({{"path", disk.path}, {"read_only", disk.read_only}});
    return json{{"disks", a}};
  });
}

}  // namespace cairn
