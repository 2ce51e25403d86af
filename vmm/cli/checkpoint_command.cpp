// `cairn checkpoint`: a VM's checkpoint tree (vmm/checkpoint/), Hyper-V's
// checkpoint commands one for one (README "Checkpoints").
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "vmm/checkpoint/checkpoint_ops.hpp"
#include "vmm/cli/checkpoint_cli.hpp"
#include "vmm/cli/commands.hpp"
#include "vmm/cli/exit_codes.hpp"
#include "vmm/cli/op_runner.hpp"

namespace cairn {

using nlohmann::json;

namespace {
struct Common {
  std::string vm, which;
  bool json = false, as_job = false, dry_run = false, yes = false;
};

void add_common(CLI::App* sub, Common& c, bool job_and_dry_run = true) {
  sub->add_option("VM", c.vm, "the VM's name")->required();
  sub->add_flag("--json", c.json, "print the result as JSON");
  if (job_and_dry_run) {
    sub->add_flag("--as-job", c.as_job, "return a job ID at once and do the work in the background (cairn job)");
    sub->add_flag("--dry-run", c.dry_run, "say what would happen and change nothing");
  }
}

// Destructive operations ask on a terminal and need --yes otherwise.
Result<void> confirm(const Common& c, const std::string& question) {
  if (c.yes || c.dry_run) return {};
  if (!::isatty(STDIN_FILENO))
    return fail(Errc::invalid_argument, "{} Pass --yes to confirm (no terminal to ask on)", question);
  fmt::print(stderr, "{} [y/N] ", question);
  std::fflush(stderr);
  std::string answer;
  std::getline(std::cin, answer);
  if (answer == "y" || answer == "Y" || answer == "yes") return {};
  return fail(Errc::failed, "cancelled");
}

using Op = std::function<Result<void>(VmSession&, Progress&, json&)>;

// Runs `op` on the VM's session (see op_runner.hpp).
int run_op(const Common& c, std::string operation, Op op, std::function<void(const json&)> print) {
  auto work = [c, op](Progress& p, json& result) -> int {
    auto s = VmSession::open(c.vm);
    if (!s) return report_error(s.error());
    if (auto r = op(*s, p, result); !r) return report_error(r.error());
    return kExitOk;
  };
  return run_work(std::move(operation), c.vm, work, {c.json, c.as_job, c.dry_run}, print);
}

std::string size_text(double bytes) { return fmt::format("{:.1f} MiB", bytes / (1 << 20)); }

void print_created(const json& r) {
  const json& st = r.value("stats", json::object());
  std::string how = r["type"] == "production" ? "production" : "standard";
  fmt::print("Checkpoint '{}' ({}) of VM '{}' created: {}", r["name"].get<std::string>(),
             r["checkpoint_id"].get<std::string>(), r["vm_name"].get<std::string>(), how);
  if (st.contains("memory_file_bytes"))
    fmt::print(", memory image {}, state {} KiB", size_text(st["memory_file_bytes"].get<double>()),
               (st["state_file_bytes"].get<uint64_t>() + 1023) / 1024);
  if (st.contains("freeze_window_ms"))
    fmt::print(", {} file system(s) frozen for {:.0f} ms", st["frozen_filesystems"].get<int64_t>(),
               st["freeze_window_ms"].get<double>());
  if (st.contains("paused_ms")) fmt::print(", guest paused {:.0f} ms", st["paused_ms"].get<double>());
  fmt::print(", {:.0f} ms in all\n", st.value("total_ms", 0.0));
  if (r.contains("note")) fmt::print(stderr, "cairn: note: {}\n", r["note"].get<std::string>());
}

void add_create(CLI::App& group, CliContext& ctx) {
  auto c = std::make_shared<Common>();
  auto o = std::make_shared<CreateOptions>();
  auto* sub = group.add_subcommand("create", "take a checkpoint of a VM (running, paused or off)");
  add_common(sub, *c);
  sub->add_option("NAME", o->name, "the checkpoint's name (default: 'VM (MM/DD/YYYY - hh:mm:ss AM)')");
  sub->add_option("--description,-d", o->description, "a description");
  on_run(sub, ctx, [c, o] {
    o->dry_run = c->dry_run;
    return run_op(*c, fmt::format("Create checkpoint of VM '{}'", c->vm),
                  [o](VmSession& s, Progress& p, json& r) -> Result<void> {
                    auto made = create_checkpoint(s, *o, p, r);
                    if (!made) return std::unexpected(made.error());
                    return {};
                  },
                  print_created);
  });
}

void add_list(CLI::App& group, CliContext& ctx) {
  auto c = std::make_shared<Common>();
  auto* sub = group.add_subcommand("list", "show a VM's checkpoint tree, with Now");
  add_common(sub, *c, false);
  on_run(sub, ctx, [c]() -> int {
    auto s = VmSession::open(c->vm);
    if (!s) return report_error(s.error());
    if (c->json) {
      json a = json::array();
      for (auto& cp : s->tree.checkpoints) a.push_back(tree::to_published_json(cp));
      fmt::print("{}\n", json{{"vm_name", s->record.name}, {"vm_id", s->record.id}, {"current", s->tree.current.empty() ? json(nullptr) : json(s->tree.current)}, {"checkpoints", a}}.dump(2));
    } else {
      fmt::print("{}", tree::render_tree(s->tree));
    }
    return kExitOk;
  });
}

void add_show(CLI::App& group, CliContext& ctx) {
  auto c = std::make_shared<Common>();
  auto* sub = group.add_subcommand("show", "show one checkpoint's data");
  auto machine = std::make_shared<bool>(false);
  add_common(sub, *c, false);
  sub->add_option("NAME", c->which, "the checkpoint's name or ID")->required();
  sub->add_flag("--machine", *machine,
                "print the saved machine instead: each vCPU's place, timer and interrupts, and the devices' state");
  on_run(sub, ctx, [c, machine]() -> int {
    auto s = VmSession::open(c->vm);
    if (!s) return report_error(s.error());
    auto cp = s->tree.resolve(c->which);
    if (!cp) return report_error(cp.error());
    if (*machine) {
      auto report = describe_saved_machine(*s, **cp);
      if (!report) return report_error(report.error());
      fmt::print("{}", *report);
      return kExitOk;
    }
    json j = tree::to_published_json(**cp);
    if (c->json) {
      fmt::print("{}\n", j.dump(2));
      return kExitOk;
    }
    for (auto& [k, v] : j.items()) fmt::print("{:<22} {}\n", k, v.is_string() ? v.get<std::string>() : v.dump());
    if (!(*cp)->note.empty()) fmt::print("{:<22} {}\n", "note", (*cp)->note);
    return kExitOk;
  });
}

void add_apply(CLI::App& group, CliContext& ctx) {
  auto c = std::make_shared<Common>();
  auto o = std::make_shared<ApplyOptions>();
  auto* sub = group.add_subcommand("apply", "revert a VM to a checkpoint (it is left saved or off)");
  add_common(sub, *c);
  sub->add_option("NAME", c->which, "the checkpoint's name or ID")->required();
  sub->add_flag("--checkpoint-first", o->checkpoint_first, "take a checkpoint of the current state first");
  sub->add_flag("--yes,-y", c->yes, "do not ask before the current state is lost");
  on_run(sub, ctx, [c, o] {
    o->dry_run = c->dry_run;
    if (!o->checkpoint_first) {
      auto r = confirm(*c, fmt::format("Applying checkpoint '{}' discards the current state of VM '{}'.", c->which, c->vm));
      if (!r) return report_error(r.error());
    }
    return run_op(*c, fmt::format("Apply checkpoint '{}' to VM '{}'", c->which, c->vm),
                  [c, o](VmSession& s, Progress& p, json& r) { return apply_checkpoint(s, c->which, *o, p, r); },
                  [c](const json& r) {
                    if (r.contains("created")) print_created(r["created"]);
                    fmt::print("VM '{}' is at checkpoint '{}' and {}\n", c->vm, r["applied"]["name"].get<std::string>(),
                               r["vm_state"] == "saved" ? "saved: `cairn vm start` resumes it there"
                                                        : "off: `cairn vm start` boots it from the checkpoint's disks");
                  });
  });
}

void add_rename(CLI::App& group, CliContext& ctx) {
  auto c = std::make_shared<Common>();
  auto new_name = std::make_shared<std::string>();
  auto* sub = group.add_subcommand("rename", "rename a checkpoint");
  add_common(sub, *c);
  sub->add_option("NAME", c->which, "the checkpoint's name or ID")->required();
  sub->add_option("NEW", *new_name, "the new name")->required();
  on_run(sub, ctx, [c, new_name] {
    return run_op(*c, fmt::format("Rename checkpoint '{}'", c->which),
                  [c, new_name](VmSession& s, Progress&, json& r) {
                    return rename_checkpoint(s, c->which, *new_name, c->dry_run, r);
                  },
                  [](const json& r) {
                    fmt::print("Checkpoint {} is now '{}'\n", r["checkpoint_id"].get<std::string>(),
                               r["name"].get<std::string>());
                  });
  });
}

void add_remove(CLI::App& group, CliContext& ctx) {
  auto c = std::make_shared<Common>();
  auto subtree = std::make_shared<bool>(false);
  auto* sub = group.add_subcommand("remove", "remove a checkpoint (its disk layer is merged) or a subtree");
  add_common(sub, *c);
  sub->add_option("NAME", c->which, "the checkpoint's name or ID")->required();
  sub->add_flag("--subtree", *subtree, "remove its descendants too");
  sub->add_flag("--yes,-y", c->yes, "do not ask");
  on_run(sub, ctx, [c, subtree] {
    auto r = confirm(*c, fmt::format("Remove checkpoint '{}'{} of VM '{}'?", c->which,
                                     *subtree ? " and all checkpoints below it" : "", c->vm));
    if (!r) return report_error(r.error());
    return run_op(*c, fmt::format("Remove checkpoint '{}'{}", c->which, *subtree ? " and its subtree" : ""),
                  [c, subtree](VmSession& s, Progress& p, json& r) {
                    return remove_checkpoint(s, c->which, *subtree, c->dry_run, p, r);
                  },
                  [](const json& r) {
                    for (auto& cp : r["removed"])
                      fmt::print("Removed checkpoint '{}' ({})\n", cp["name"].get<std::string>(),
                                 cp["checkpoint_id"].get<std::string>());
                  });
  });
}
}  // namespace

void register_checkpoint_commands(CLI::App& app, CliContext& ctx) {
  auto* group = app.add_subcommand("checkpoint", "create, list, apply, rename, remove and export checkpoints");
  group->require_subcommand(1);
  add_create(*group, ctx);
  add_list(*group, ctx);
  add_show(*group, ctx);
  add_apply(*group, ctx);
  add_rename(*group, ctx);
  add_remove(*group, ctx);
  add_checkpoint_export(*group, ctx);
  add_vm_checkpoint_commands(*app.get_subcommand("vm"), ctx);  // registered before this group
}

}  // namespace cairn
