// `cairn job`: follow the background jobs that long commands start with
// --as-job (run_as_job.hpp): show, wait, list; plus a hidden `demo` that
// runs a fake operation, for tests.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "vmm/cli/commands.hpp"
#include "vmm/cli/exit_codes.hpp"
#include "vmm/jobs/run_as_job.hpp"

namespace cairn {

using nlohmann::json;

namespace {
constexpr auto kPollEvery = std::chrono::milliseconds(100);

struct Opened {
  JobStore store;
  std::string id;
};
Result<Opened> open_job(const std::string& ref) {
  CAIRN_TRY_CTX(store, JobStore::open_default(), "opening the jobs folder");
  auto id = store.resolve(ref);
  if (!id) return std::unexpected(id.error());
  return Opened{std::move(store), std::move(*id)};
}

json job_json(const JobStore& store, const JobRecord& r) {
  json j = job_to_json(r);
  j["log"] = store.paths(r.id).log;
  return j;
}

void print_job(const JobStore& store, const JobRecord& r) {
  fmt::print("id:         {}\noperation:  {}\n", r.id, r.operation);
  if (!r.vm.empty()) fmt::print("vm:         {}\n", r.vm);
  fmt::print("state:      {}\npercent:    {}\n", to_string(r.state), r.percent);
  if (!r.stage.empty()) fmt::print("stage:      {}\n", r.stage);
  fmt::print("started:    {}\n", r.started);
  if (!r.ended.empty()) fmt::print("ended:      {}\n", r.ended);
  fmt::print("pid:        {}\n", r.pid);
  if (r.exit_code) fmt::print("exit code:  {}\n", *r.exit_code);
  if (!r.error.empty()) fmt::print("error:      {}\n", r.error);
  if (!r.result.empty()) fmt::print("result:     {}\n", r.result.dump());
  fmt::print("log:        {}\n", store.paths(r.id).log);
}

int job_show(const std::string& ref, bool as_json) {
  auto job = open_job(ref);
  if (!job) return report_error(job.error());
  auto rec = job->store.load(job->id);
  if (!rec) return report_error(rec.error());
  if (as_json) fmt::print("{}\n", job_json(job->store, *rec).dump(2));
  else print_job(job->store, *rec);
  return kExitOk;
}

// Polls until the job ends or the deadline passes; draws its progress on a tty.
Result<JobRecord> poll_until_done(const JobStore& store, const std::string& id, double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(std::max(timeout_s, 0.0) * 1000));
  TerminalProgress bar;
  bool drawn = false;
  std::string shown_stage;
  for (;;) {
    auto rec = store.load(id);
    if (!rec) return rec;
    if (bar.enabled() && (!drawn || rec->stage != shown_stage)) {
      shown_stage = rec->stage;
      bar.stage(shown_stage.empty() ? rec->operation : shown_stage);
      drawn = true;
    }
    if (rec->state != JobState::running) {
      if (rec->state == JobState::completed) bar.update(1, 1);
      return rec;
    }
    bar.update(static_cast<uint64_t>(rec->percent), 100);
    if (timeout_s >= 0 && std::chrono::steady_clock::now() >= deadline) return rec;
    std::this_thread::sleep_for(kPollEvery);
  }
}

int job_wait(const std::string& ref, double timeout_s, bool as_json) {
  auto job = open_job(ref);
  if (!job) return report_error(job.error());
  auto rec = poll_until_done(job->store, job->id, timeout_s);
  if (!rec) return report_error(rec.error());
  if (as_json) fmt::print("{}\n", job_json(job->store, *rec).dump(2));
  if (rec->state == JobState::running) {
    std::string where = rec->stage.empty() ? "" : fmt::format(", {}", rec->stage);
    return report_error(Error{Errc::timeout, fmt::format("job {} is still running after {} s ({}%{})", rec->id,
                                                         timeout_s, rec->percent, where)});
  }
  if (!as_json) print_job(job->store, *rec);
  int code = rec->exit_code.value_or(kExitFailed);
  return code >= 0 && code <= 255 ? code : kExitFailed;
}

int job_list(bool as_json) {
  auto store = JobStore::open_default();
  if (!store) return report_error(store.error());
  auto all = store->list();
  if (!all) return report_error(all.error());
  for (auto& e : all->problems) fmt::print(stderr, "cairn: warning: {}\n", e.message);
  if (as_json) {
    json arr = json::array();
    for (auto& r : all->jobs) arr.push_back(job_json(*store, r));
    fmt::print("{}\n", arr.dump(2));
    return kExitOk;
  }
  size_t vm_w = 2;
  for (auto& r : all->jobs) vm_w = std::max(vm_w, r.vm.size());
  fmt::print("{:<36}  {:<9}  {:>4}  {:<24}  {:<{}}  {}\n", "ID", "STATE", "PCT", "STARTED", "VM", vm_w, "OPERATION");
  for (auto& r : all->jobs)
    fmt::print("{:<36}  {:<9}  {:>3}%  {:<24}  {:<{}}  {}\n", r.id, to_string(r.state), r.percent, r.started,
               r.vm.empty() ? "-" : r.vm, vm_w, r.operation);
  return kExitOk;
}

// CLI11's NonNegativeNumber prints the whole range of a double when it fails.
std::string seconds_check(std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  bool ok = end != s.c_str() && *end == '\0' && v >= 0 && std::isfinite(v);
  return ok ? std::string() : fmt::format("'{}' is not a number of seconds (0 or more)", s);
}

struct DemoOptions {
  int steps = 20;
  int step_ms = 20;
  bool fail = false;
  bool foreground = false;
  bool json = false;
};

// A fake long operation: one stage of `steps` sleeps, failing halfway with --fail.
int demo_work(const DemoOptions& o, Progress& p, json& result) {
  p.stage("demo: stepping");
  for (int i = 1; i <= o.steps; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(o.step_ms));
    p.update(static_cast<uint64_t>(i), static_cast<uint64_t>(o.steps));
    if (o.fail && i == (o.steps + 1) / 2)
      return report_error(Error{Errc::invalid_state, fmt::format("demo failure requested at step {} of {}", i,
                                                                  o.steps)});
  }
  result["steps"] = o.steps;
  return kExitOk;
}

int job_demo(const DemoOptions& o) {
  auto work = [o](Progress& p, json& result) { return demo_work(o, p, result); };
  if (!o.foreground) return run_as_job(fmt::format("Demo of {} steps", o.steps), "", work, o.json);
  TerminalProgress p;
  json result = json::object();
  int rc = work(p, result);
  if (rc == 0 && o.json) fmt::print("{}\n", result.dump(2));
  return rc;
}
}  // namespace

void register_job_commands(CLI::App& app, CliContext& ctx) {
  auto* job = app.add_subcommand("job", "Background jobs started by long commands with --as-job");
  job->require_subcommand(1);
  auto ref = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  const std::string id_help = fmt::format("job id, or a unique prefix of at least {} characters", kMinJobIdPrefix);

  auto* show = job->add_subcommand("show", "Show a job: state, percent, stage, times, error, result");
  show->add_option("id", *ref, id_help)->required();
  show->add_flag("--json", *as_json, "JSON output");
  on_run(show, ctx, [ref, as_json] { return job_show(*ref, *as_json); });

  auto* wait = job->add_subcommand("wait", "Wait for a job to end; exits with the job's exit code (11: timeout)");
  auto timeout = std::make_shared<double>(-1);
  wait->add_option("id", *ref, id_help)->required();
  wait->add_option("--timeout", *timeout, "give up after SECONDS (default: wait as long as it runs)")
      ->check(CLI::Validator(seconds_check, "SECONDS"));
  wait->add_flag("--json", *as_json, "JSON output");
  on_run(wait, ctx, [ref, timeout, as_json] { return job_wait(*ref, *timeout, *as_json); });

  auto* list = job->add_subcommand("list", "List jobs, newest first");
  list->add_flag("--json", *as_json, "JSON output");
  on_run(list, ctx, [as_json] { return job_list(*as_json); });

  // Test hook: exercises jobs end to end without a VM. Hidden from --help.
  auto demo_opts = std::make_shared<DemoOptions>();
  auto* demo = job->add_subcommand("demo", "Run a fake operation (tests only)");
  demo->group("");
  demo->add_option("--steps", demo_opts->steps, "number of steps")->check(CLI::Range(1, 1000000));
  demo->add_option("--step-ms", demo_opts->step_ms, "milliseconds per step")->check(CLI::Range(0, 600000));
  demo->add_flag("--fail", demo_opts->fail, "fail halfway (exit code 3)");
  demo->add_flag("--foreground", demo_opts->foreground, "run here rather than as a job");
  demo->add_flag("--json", demo_opts->json, "JSON output");
  on_run(demo, ctx, [demo_opts] { return job_demo(*demo_opts); });
}

}  // namespace cairn
