// `--as-job` for long cairn commands, like Hyper-V's "4096: job started":
// the command returns at once with a job id and the work goes on in a
// detached process; `cairn job show|wait ID` follows it.
//
//   on_run(sub, ctx, [opts, as_job, json] {
//     auto work = [opts](Progress& p, nlohmann::json& result) { return remove_checkpoint(*opts, p, result); };
//     if (*as_job) return run_as_job(fmt::format("Remove checkpoint '{}'", opts->name), opts->vm, work, *json);
//     TerminalProgress p; nlohmann::json result; return work(p, result);
//   });
#pragma once
#include <string>

#include "vmm/jobs/job_runner.hpp"

namespace cairn {

// Starts `work` as a job (job_runner.hpp: what it may do, how its error is
// found) and prints its id: "Job <id> started: <operation>" plus how to
// follow it, or with json_output {"job_id": "<id>", "state": "running"}.
// Returns 0 once the job runs, or the exit code of why it could not start.
int run_as_job(std::string operation, std::string vm, JobWork work, bool json_output);

}  // namespace cairn
