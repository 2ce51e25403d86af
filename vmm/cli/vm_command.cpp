// `cairn vm`: VMs with a stored configuration under the state folder
// (vmm/vmstore/vm_store.hpp), driven through their control socket
// (vmm/control/protocol.hpp) while they run.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <thread>

#include <fmt/format.h>

#include "vmm/cli/commands.hpp"
#include "vmm/cli/exit_codes.hpp"
#include "vmm/cli/machine_options.hpp"
#include "vmm/cli/vm_cli.hpp"
#include "vmm/control/client.hpp"
#include "vmm/control/vm_host.hpp"
#include "vmm/control/vm_state.hpp"
#include "vmm/vmstore/uuid.hpp"
#include "vmm/vmstore/vm_lock.hpp"
#include "vmm/vmstore/vm_name.hpp"

namespace cairn {

using nlohmann::json;

namespace {
constexpr int kStopWaitMs = 30000;   // for the VMM to exit after "stop"
constexpr int kForceAskMs = 3000;    // --force: how long the socket gets to answer

std::string absolute(const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

std::string human_size(uint64_t bytes) {
  if (bytes && bytes % (1ULL << 30) == 0) return fmt::format("{}G", bytes >> 30);
  if (bytes && bytes % (1ULL << 20) == 0) return fmt::format("{}M", bytes >> 20);
  return fmt::format("{}K", bytes >> 10);
}

// A disk must be there when the VM is created, not only when it starts.
Result<void> check_disk(const DiskConfig& d) {
  struct stat st {};
  if (::stat(d.path.c_str(), &st) != 0) {
    if (errno == ENOENT) return fail(Errc::not_found, "disk {} does not exist", d.path);
    return fail_errno("disk {}", d.path);
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return fail(Errc::invalid_argument, "disk {} is not a regular file or block device", d.path);
  if (::access(d.path.c_str(), d.read_only ? R_OK : (R_OK | W_OK)) != 0)
    return fail_errno("disk {}{}", d.path, d.read_only ? "" : " (opened read-write)");
  return {};
}

int vm_create(const std::string& name, const MachineOptions& opts, bool as_json) {
  if (auto v = validate_vm_name(name); !v) return report_error(v.error());
  auto store = VmStore::open_default();
  if (!store) return report_error(store.error());
  auto cfg = opts.to_config();
  if (!cfg) return report_error(cfg.error());
  cfg->kernel = absolute(cfg->kernel);
  cfg->initrd = absolute(cfg->initrd);
  for (auto& d : cfg->disks) {
    d.path = absolute(d.path);
    if (auto r = check_disk(d); !r) return report_error(r.error());
  }
  if (cfg->vsock) cfg->vsock->uds_path = absolute(cfg->vsock->uds_path);
  if (cfg->console.starts_with("file:")) cfg->console = "file:" + absolute(cfg->console.substr(5));
  auto id = uuid_v4();
  if (!id) return report_error(id.error());
  VmRecord rec{*id, name, utc_timestamp_now(), *cfg};
  if (auto r = store->create(rec); !r) return report_error(r.error());
  if (as_json)
    fmt::print("{}\n", vm_record_to_json(rec).dump(2));
  else
    fmt::print("VM '{}' created (id {}) in {}\n", name, rec.id, store->paths(name).dir);
  return kExitOk;
}

// Loads the VM and its state; the error for a VM that is not running names the verb.
struct Loaded {
  VmStore store;
  VmRecord rec;
  VmPaths paths;
  VmState state;
};
Result<Loaded> load_with_state(const std::string& name, int timeout_ms = 2000) {
  auto store = VmStore::open_default();
  if (!store) return std::unexpected(store.error());
  auto rec = store->load(name);
  if (!rec) return std::unexpected(rec.error());
  VmPaths p = store->paths(name);
  auto st = query_vm_state(p, timeout_ms);
  if (!st) return std::unexpected(st.error());
  return Loaded{std::move(*store), std::move(*rec), p, std::move(*st)};
}

int not_running(const std::string& name) {
  return report_error(Error{Errc::invalid_state, fmt::format("VM '{}' is not running", name)});
}

int vm_pause_resume(const std::string& name, bool pause) {
  auto vm = load_with_state(name);
  if (!vm) return report_error(vm.error());
  if (vm->state.state == VmRunState::off) return not_running(name);
  auto r = control_call(vm->paths.control_socket, pause ? "pause" : "resume");
  if (!r) return report_error(std::move(r.error()).context(fmt::format("VM '{}'", name)));
  fmt::print("VM '{}' {}\n", name, pause ? "paused" : "resumed");
  return kExitOk;
}

// Waits up to `ms` for the VMM to give up the lock; true when it did.
bool wait_lock_free(const VmPaths& p, int ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    auto st = probe_lock(p.lock);
    if (st && !st->held) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

int vm_stop(const std::string& name, bool force) {
  auto vm = load_with_state(name, force ? kForceAskMs : 2000);
  if (!vm) return report_error(vm.error());
  if (vm->state.state == VmRunState::off) return not_running(name);
  const VmPaths& p = vm->paths;
  auto asked = control_call(p.control_socket, "stop", json::object(), force ? kForceAskMs : 10000);
  if (asked && wait_lock_free(p, kStopWaitMs)) {
    (void)remove_stale_socket(p);
    fmt::print("VM '{}' stopped\n", name);
    return kExitOk;
  }
  if (!force) {
    Error e = asked ? Error{Errc::timeout, fmt::format("VM '{}' did not stop within {} s", name, kStopWaitMs / 1000)}
                    : std::move(asked.error()).context(fmt::format("asking VM '{}' to stop", name));
    e.message += fmt::format(" (use 'cairn vm stop --force {}' to kill its VMM)", name);
    return report_error(e);
  }
  auto held = probe_lock(p.lock);
  if (held && !held->held) {  // it went away on its own meanwhile
    fmt::print("VM '{}' stopped\n", name);
    return kExitOk;
  }
  pid_t pid = held ? held->pid : 0;
  if (pid <= 1 || pid == ::getpid())
    return report_error(Error{Errc::failed, fmt::format("VM '{}' does not answer and its VMM's pid is unknown "
                                                        "(lock file {})", name, p.lock)});
  if (::kill(pid, SIGKILL) != 0 && errno != ESRCH)
    return report_error(fail_errno("killing VMM pid {} of VM '{}'", pid, name).error());
  if (!wait_lock_free(p, 10000))
    return report_error(Error{Errc::timeout, fmt::format("VMM pid {} of VM '{}' still holds {} after SIGKILL",
                                                         pid, name, p.lock)});
  if (auto r = remove_stale_socket(p); !r) return report_error(r.error());
  fmt::print("VM '{}' stopped (its VMM, pid {}, was killed)\n", name, pid);
  return kExitOk;
}

// Hyper-V's states: an off VM with a saved state (an applied standard
// checkpoint) is "saved": its next start resumes it.
std::string display_state(const VmRecord& rec, const VmState& st) {
  if (st.state == VmRunState::off && !saved_state_dir(rec).empty()) return "saved";
  return std::string(to_string(st.state));
}

json vm_json(const VmRecord& rec, const VmPaths& p, const VmState& st) {
  json j = {{"name", rec.name}, {"id", rec.id}, {"created", rec.created}, {"state", display_state(rec, st)},
            {"config", machine_config_to_json(rec.machine)}, {"path", p.dir}};
  if (st.state != VmRunState::off) {
    j["pid"] = st.pid;
    if (st.answered) {
      j["uptime_ms"] = st.status.value("uptime_ms", 0);
      if (st.status.contains("memory_load")) j["memory_load"] = st.status["memory_load"];
    } else {
      j["unreachable"] = st.unreachable_why;
    }
  }
  return j;
}

int vm_list(bool as_json) {
  auto store = VmStore::open_default();
  if (!store) return report_error(store.error());
  auto names = store->names();
  if (!names) return report_error(names.error());
  json all = json::array();
  std::vector<std::array<std::string, 4>> rows;
  for (auto& n : *names) {
    auto vm = load_with_state(n, 1000);
    if (!vm) {
      fmt::print(stderr, "cairn: warning: {}\n", vm.error().message);
      continue;
    }
    all.push_back(vm_json(vm->rec, vm->paths, vm->state));
    rows.push_back({n, display_state(vm->rec, vm->state), std::to_string(vm->rec.machine.cpus),
                    human_size(vm->rec.machine.memory)});
  }
  if (as_json) {
    fmt::print("{}\n", all.dump(2));
    return kExitOk;
  }
  size_t w = 4;
  for (auto& r : rows) w = std::max(w, r[0].size());
  fmt::print("{:<{}}  {:<8}  {:>5}  {:>6}\n", "NAME", w, "STATE", "VCPUS", "MEMORY");
  for (auto& r : rows) fmt::print("{:<{}}  {:<8}  {:>5}  {:>6}\n", r[0], w, r[1], r[2], r[3]);
  return kExitOk;
}

int vm_show(const std::string& name, bool as_json) {
  auto vm = load_with_state(name);
  if (!vm) return report_error(vm.error());
  json j = vm_json(vm->rec, vm->paths, vm->state);
  if (as_json) {
    fmt::print("{}\n", j.dump(2));
    return kExitOk;
  }
  const MachineConfig& m = vm->rec.machine;
  fmt::print("name:     {}\nid:       {}\ncreated:  {}\nstate:    {}\n", name, vm->rec.id, vm->rec.created,
             display_state(vm->rec, vm->state));
  if (vm->state.state != VmRunState::off) {
    fmt::print("pid:      {}\n", vm->state.pid);
    if (vm->state.answered) {
      fmt::print("uptime:   {} s\n", vm->state.status.value("uptime_ms", 0) / 1000);
      // A restored guest whose RAM is still arriving (lazy restore).
      const json& l = vm->state.status.value("memory_load", json::object());
      if (l.contains("done") && !l["done"].get<bool>())
        fmt::print("restore:  {} of {} memory chunks loaded\n", l.value("loaded_chunks", 0), l.value("chunks", 0));
    } else fmt::print("control:  not answering ({})\n", vm->state.unreachable_why);
  }
  fmt::print("vcpus:    {}\nmemory:   {}\nkernel:   {}\n", m.cpus, human_size(m.memory), m.kernel);
  if (!m.initrd.empty()) fmt::print("initrd:   {}\n", m.initrd);
  if (!m.cmdline.empty()) fmt::print("cmdline:  {}\n", m.cmdline);
  for (size_t i = 0; i < m.disks.size(); ++i)
    fmt::print("disk:     vd{} {}{}\n", static_cast<char>('a' + i), m.disks[i].path, m.disks[i].read_only ? " (ro)" : "");
  if (m.vsock) fmt::print("vsock:    cid {} at {}\n", m.vsock->cid, m.vsock->uds_path);
  fmt::print("console:  {}\n", m.console);
  if (!m.guest_command.empty()) fmt::print("command:  {}\n", fmt::join(m.guest_command, " "));
  fmt::print("folder:   {}\n", vm->paths.dir);
  return kExitOk;
}

int vm_remove(const std::string& name, bool yes) {
  auto store = VmStore::open_default();
  if (!store) return report_error(store.error());
  if (auto rec = store->load(name); !rec && rec.error().code == Errc::not_found) return report_error(rec.error());
  if (!yes && ::isatty(STDIN_FILENO)) {
    fmt::print("Remove VM '{}' and everything in {}? [y/N] ", name, store->paths(name).dir);
    std::fflush(stdout);
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes") {
      fmt::print("not removed\n");
      return kExitFailed;
    }
  }
  // Checkpoint files kept outside the VM's folder go with it.
  std::string elsewhere;
  if (auto rec = store->load(name)) {
    auto it = rec->extra.find("checkpoints");
    if (it != rec->extra.end() && it->is_object() && it->value("location", "") != "")
      elsewhere = (*it)["location"].get<std::string>() + "/" + rec->id;
  }
  if (auto r = store->remove(name); !r) return report_error(r.error());
  if (!elsewhere.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(elsewhere, ec);
    if (ec) fmt::print(stderr, "cairn: warning: could not delete {}: {}\n", elsewhere, ec.message());
  }
  fmt::print("VM '{}' removed\n", name);
  return kExitOk;
}
}  // namespace

void register_vm_commands(CLI::App& app, CliContext& ctx) {
  auto* vm = app.add_subcommand("vm", "VMs with a stored configuration (state folder: $CAIRN_HOME, "
                                      "default ~/.local/share/cairn)");
  vm->require_subcommand(1);
  auto name = std::make_shared<std::string>();
  auto flag = std::make_shared<bool>(false);

  auto* create = vm->add_subcommand("create", "Store a new VM: the options of 'cairn run'");
  create->add_option("name", *name, "VM name: letters, digits, '.', '_', '-' (1-64)")->required();
  auto opts = std::make_shared<MachineOptions>();
  opts->add_to(create);
  create->add_flag("--json", *flag, "print the stored configuration as JSON");
  create->footer("Example: cairn vm create web --memory 512M --disk data.img -- 'while true; do date; sleep 1; done'");
  on_run(create, ctx, [name, opts, flag] { return vm_create(*name, *opts, *flag); });

  auto* start = vm->add_subcommand("start", "Start a stored VM (in the foreground unless --detach)");
  start->add_option("name", *name, "VM name")->required();
  start->add_flag("--detach,-d", *flag, "run in the background; the guest console goes to console.log");
  on_run(start, ctx, [name, flag] { return vm_start(*name, *flag); });

  auto* stop = vm->add_subcommand("stop", "Stop a running VM");
  stop->add_option("name", *name, "VM name")->required();
  stop->add_flag("--force,-f", *flag, "kill the VMM if it does not answer");
  on_run(stop, ctx, [name, flag] { return vm_stop(*name, *flag); });

  for (bool pause : {true, false}) {
    auto* sub = vm->add_subcommand(pause ? "pause" : "resume", pause ? "Pause a running VM" : "Resume a paused VM");
    sub->add_option("name", *name, "VM name")->required();
    on_run(sub, ctx, [name, pause] { return vm_pause_resume(*name, pause); });
  }

  auto* list = vm->add_subcommand("list", "List stored VMs and their state");
  list->add_flag("--json", *flag, "JSON output");
  on_run(list, ctx, [flag] { return vm_list(*flag); });

  auto* show = vm->add_subcommand("show", "Show a VM's configuration and state");
  show->add_option("name", *name, "VM name")->required();
  show->add_flag("--json", *flag, "JSON output");
  on_run(show, ctx, [name, flag] { return vm_show(*name, *flag); });

  auto* remove = vm->add_subcommand("remove", "Delete a VM that is off, with its state folder");
  remove->add_option("name", *name, "VM name")->required();
  remove->add_flag("--yes,-y", *flag, "do not ask (never asked without a terminal)");
  on_run(remove, ctx, [name, flag] { return vm_remove(*name, *flag); });
}

}  // namespace cairn
