// `cairn vm set` (Set-VM's checkpoint settings), `cairn vm import` (Import-VM
// of an exported checkpoint) and `cairn checkpoint export`.
#include <sys/stat.h>

#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "vmm/checkpoint/checkpoint_export.hpp"
#include "vmm/cli/checkpoint_cli.hpp"
#include "vmm/cli/exit_codes.hpp"
#include "vmm/cli/op_runner.hpp"

namespace cairn {

using nlohmann::json;

namespace {
struct SetOptions {
  std::string vm, type, checkpoints, location;
  bool json = false;
};

Result<json> vm_set(const SetOptions& o) {
  auto s = VmSession::open(o.vm);
  if (!s) return std::unexpected(s.error());
  CheckpointSettings st = s->settings;
  if (!o.type.empty()) {
    auto t = checkpoint_policy_from(o.type);
    if (!t) return fail(Errc::invalid_argument, "--checkpoint-type must be standard, production or production-only");
    st.type = *t;
  }
  if (!o.checkpoints.empty()) {
    if (o.checkpoints != "enabled" && o.checkpoints != "disabled")
      return fail(Errc::invalid_argument, "--checkpoints must be enabled or disabled");
    st.enabled = o.checkpoints == "enabled";
  }
  if (!o.location.empty()) {
    if (!s->tree.checkpoints.empty())
      return fail(Errc::invalid_state,
                  "VM '{}' has {} checkpoint(s): the checkpoint location can change only while it has none",
                  o.vm, s->tree.checkpoints.size());
    std::error_code ec;
    auto abs = std::filesystem::absolute(o.location, ec).lexically_normal().string();
    std::filesystem::create_directories(abs, ec);
    if (ec) return fail(Errc::invalid_argument, "checkpoint location {}: {}", abs, ec.message());
    st.location = abs;
  }
  store_checkpoint_settings(s->record, st);
  if (auto r = s->save_record(); !r) return std::unexpected(r.error());
  return json{{"checkpoint_type", to_string(st.type)},
              {"checkpoints_enabled", st.enabled},
              {"checkpoint_location", st.location.empty() ? s->paths.dir : st.location}};
}

void add_vm_set(CLI::App& vm, CliContext& ctx) {
  auto o = std::make_shared<SetOptions>();
  auto* sub = vm.add_subcommand("set", "change a VM's checkpoint settings (and show them)");
  sub->add_option("VM", o->vm, "the VM's name")->required();
  sub->add_option("--checkpoint-type", o->type,
                  "standard (memory and devices), production (guest agent freeze, disks only; falls back to "
                  "standard) or production-only (fails instead)");
  sub->add_option("--checkpoints", o->checkpoints, "enabled or disabled");
  sub->add_option("--checkpoint-location", o->location, "folder for checkpoint files (only while there are none)");
  sub->add_flag("--json", o->json, "print the settings as JSON");
  on_run(sub, ctx, [o]() -> int {
    auto r = vm_set(*o);
    if (!r) return report_error(r.error());
    if (o->json)
      fmt::print("{}\n", r->dump(2));
    else
      fmt::print("VM '{}': checkpoint type {}, checkpoints {}, location {}\n", o->vm,
                 (*r)["checkpoint_type"].get<std::string>(), (*r)["checkpoints_enabled"].get<bool>() ? "enabled" : "disabled",
                 (*r)["checkpoint_location"].get<std::string>());
    return kExitOk;
  });
}

struct ImportOptions {
  std::string dir, name;
  bool json = false, as_job = false, dry_run = false;
};

void add_vm_import(CLI::App& vm, CliContext& ctx) {
  auto o = std::make_shared<ImportOptions>();
  auto* sub = vm.add_subcommand("import", "make a new VM from an exported checkpoint");
  sub->add_option("DIR", o->dir, "the folder `cairn checkpoint export` wrote")->required();
  sub->add_option("--name", o->name, "the new VM's name (default: the exported VM's)");
  sub->add_flag("--json", o->json, "print the result as JSON");
  sub->add_flag("--as-job", o->as_job, "return a job ID at once (cairn job)");
  sub->add_flag("--dry-run", o->dry_run, "say what would happen and change nothing");
  on_run(sub, ctx, [o]() -> int {
    auto work = [o](Progress& p, json& result) -> int {
      if (auto r = import_vm(o->dir, o->name, o->dry_run, p, result); !r) return report_error(r.error());
      return kExitOk;
    };
    return run_work(fmt::format("Import VM from {}", o->dir), o->name, work, {o->json, o->as_job, o->dry_run},
                    [](const json& result) {
                      fmt::print("VM '{}' imported at checkpoint '{}' ({}); `cairn vm start {}` {}\n",
                                 result["vm_name"].get<std::string>(), result["name"].get<std::string>(),
                                 result["vm_state"].get<std::string>(), result["vm_name"].get<std::string>(),
                                 result["vm_state"] == "saved" ? "resumes it" : "boots it");
                    });
  });
}
}  // namespace

void add_checkpoint_export(CLI::App& group, CliContext& ctx) {
  struct Opts {
    std::string vm, which, path;
    bool json = false, as_job = false, dry_run = false;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = group.add_subcommand("export", "write a checkpoint as a self-contained VM folder (cairn vm import)");
  sub->add_option("VM", o->vm, "the VM's name")->required();
  sub->add_option("NAME", o->which, "the checkpoint's name or ID")->required();
  sub->add_option("--path", o->path, "the new folder to write")->required();
  sub->add_flag("--json", o->json, "print the result as JSON");
  sub->add_flag("--as-job", o->as_job, "return a job ID at once (cairn job)");
  sub->add_flag("--dry-run", o->dry_run, "say what would happen and change nothing");
  on_run(sub, ctx, [o]() -> int {
    auto work = [o](Progress& p, json& result) -> int {
      auto s = VmSession::open(o->vm);
      if (!s) return report_error(s.error());
      if (auto r = export_checkpoint(*s, o->which, o->path, o->dry_run, p, result); !r) return report_error(r.error());
      return kExitOk;
    };
    return run_work(fmt::format("Export checkpoint '{}' of VM '{}'", o->which, o->vm), o->vm, work,
                    {o->json, o->as_job, o->dry_run}, [](const json& result) {
                      fmt::print("Checkpoint '{}' exported to {}\n", result["name"].get<std::string>(),
                                 result["path"].get<std::string>());
                    });
  });
}

void add_vm_checkpoint_commands(CLI::App& vm, CliContext& ctx) {
  add_vm_set(vm, ctx);
  add_vm_import(vm, ctx);
}

}  // namespace cairn
