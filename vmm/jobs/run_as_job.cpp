#include "vmm/jobs/run_as_job.hpp"

#include <fmt/format.h>

#include "vmm/cli/exit_codes.hpp"

namespace cairn {

int run_as_job(std::string operation, std::string vm, JobWork work, bool json_output) {
  auto store = JobStore::open_default();
  if (!store) return report_error(store.error());
  std::string what = operation;
  auto job = start_job(*store, std::move(operation), std::move(vm), std::move(work));
  if (!job) return report_error(job.error());
  if (json_output) {
    fmt::print("{}\n", nlohmann::json{{"job_id", job->id}, {"state", "running"}}.dump(2));
  } else {
    fmt::print("Job {} started: {}\n", job->id, what);
    fmt::print("Follow it with 'cairn job wait {0}' or 'cairn job show {0}'\n", job->id);
  }
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace cairn
