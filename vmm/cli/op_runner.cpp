#include "vmm/cli/op_runner.hpp"

#include <fmt/format.h>

#include "vmm/cli/exit_codes.hpp"
#include "vmm/jobs/run_as_job.hpp"

namespace cairn {

using nlohmann::json;

int run_work(std::string operation, std::string vm, JobWork work, const OpFlags& f,
             const std::function<void(const json&)>& print) {
  if (f.as_job && !f.dry_run) return run_as_job(std::move(operation), std::move(vm), std::move(work), f.json);
  TerminalProgress p;
  json result = json::object();
  if (int rc = work(p, result); rc != kExitOk) return rc;
  if (f.json) {
    fmt::print("{}\n", result.dump(2));
  } else if (result.contains("would")) {
    const json& w = result["would"];
    if (w.is_array())
      for (auto& line : w) fmt::print("would {}\n", line.get<std::string>());
    else
      fmt::print("would {}\n", w.get<std::string>());
  } else {
    print(result);
  }
  return kExitOk;
}

}  // namespace cairn
