// The folder of background jobs:
//
//   $CAIRN_HOME/jobs/             mode 0700, created on first use
//     <id>.json                   the job's record (format: job_record.hpp), replaced atomically
//     <id>.lock                   held by the job process for its whole life (as vm_lock.hpp)
//     <id>.log                    the job process's stderr
//
// Only the job process writes <id>.json once it runs (the starter writes the
// first version before letting it go), so writes need no lock of their own.
// A record that says "running" while nobody holds <id>.lock belongs to a job
// whose process died without writing its end: it is reported as failed.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "vmm/base/error.hpp"
#include "vmm/jobs/job_record.hpp"

namespace cairn {

struct JobPaths {
  std::string record, lock, log;
};

// The error given to a job whose process ended without reporting.
inline constexpr std::string_view kJobVanishedError = "the job's process ended without reporting (killed?)";
// The shortest id prefix `cairn job` accepts.
inline constexpr size_t kMinJobIdPrefix = 8;

struct JobList {
  std::vector<JobRecord> jobs;  // newest first
  std::vector<Error> problems;  // unreadable records, skipped
};

class JobStore {
 public:
  explicit JobStore(std::string home) : dir_(std::move(home) + "/jobs") {}
  // Under $CAIRN_HOME (vm_store.hpp: default_cairn_home).
  static Result<JobStore> open_default();

  const std::string& dir() const { return dir_; }
  JobPaths paths(const std::string& id) const;

  // Creates the folder (and $CAIRN_HOME) if missing.
  Result<void> ensure_dir() const;
  // Checks the record and writes it atomically.
  Result<void> save(const JobRecord& r) const;
  // The record as stored; Errc::not_found for an unknown id.
  Result<JobRecord> load_stored(const std::string& id) const;
  // The record as it stands: a "running" job without a live process is
  // returned as failed (kJobVanishedError, exit code 1, no end time).
  Result<JobRecord> load(const std::string& id) const;
  // A full id, or a unique prefix of at least kMinJobIdPrefix characters, to
  // the full id. Unknown: Errc::not_found; ambiguous or too short: Errc::invalid_argument.
  Result<std::string> resolve(std::string_view id_or_prefix) const;
  // Ids of every stored record, unordered.
  Result<std::vector<std::string>> ids() const;
  // Every job (as load() sees it), newest first.
  Result<JobList> list() const;

 private:
  std::string dir_;
};

}  // namespace cairn
