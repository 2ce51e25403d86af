// How the checkpoint commands run their work: in the foreground with a
// progress bar on a terminal, or as a background job (--as-job), and how
// they print the result: JSON (--json), "would ..." lines (--dry-run), or
// the command's own text.
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "vmm/jobs/job_runner.hpp"

namespace cairn {

struct OpFlags {
  bool json = false, as_job = false, dry_run = false;
};

int run_work(std::string operation, std::string vm, JobWork work, const OpFlags& f,
             const std::function<void(const nlohmann::json&)>& print);

}  // namespace cairn
