// Starts an operation as a background job: a detached process (own session,
// no terminal) that runs the work and records its progress and end in the
// job's record (job_store.hpp). See run_as_job.hpp for the CLI side.
#pragma once
#include <sys/types.h>

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "vmm/base/error.hpp"
#include "vmm/jobs/job_store.hpp"
#include "vmm/jobs/progress.hpp"

namespace cairn {

// The operation: reports through `progress`, may fill `result` (an object),
// returns an exit code, 0 for success. Its stdout goes to /dev/null and its
// stderr to the job's log; the error message of a failed job is the last
// non-empty line of that log, less a leading "cairn: error: ", which is what
// report_error() prints. An exception counts as failure with its what().
using JobWork = std::function<int(Progress& progress, nlohmann::json& result)>;

struct StartedJob {
  std::string id;
  pid_t pid = 0;  // the job process; a child of the caller, who may reap it
};

// Writes the record (state running) and forks the job process; returns once
// the record exists. Errors (no space, ...) leave no record behind.
// stdio buffers are flushed first, or the child would write them again.
Result<StartedJob> start_job(const JobStore& store, std::string operation, std::string vm, JobWork work);

// The message a failed job's log ends with ("" when it has none).
std::string last_error_line(const std::string& log_path);

}  // namespace cairn
