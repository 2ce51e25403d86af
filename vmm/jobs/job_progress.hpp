// The Progress of an operation running as a background job: it keeps the
// job's record up to date. A stage change is written at once (stages are
// few and say what the job is doing); percent updates at most 5 times a
// second, so a tight loop calling update() costs no I/O; the end always.
#pragma once
#include <chrono>
#include <optional>

#include "vmm/jobs/job_store.hpp"
#include "vmm/jobs/progress.hpp"

namespace cairn {

class JobProgress final : public Progress {
 public:
  static constexpr auto kMinWriteInterval = std::chrono::milliseconds(200);

  JobProgress(JobStore store, JobRecord record) : store_(std::move(store)), rec_(std::move(record)) {}

  void stage(std::string_view what) override;
  void update(uint64_t done, uint64_t total) override;

  // Records the end: completed when exit_code is 0 (percent 100, no error),
  // failed otherwise. Written whatever the rate limit.
  Result<void> finish(int exit_code, std::string error, nlohmann::json result);

  const JobRecord& record() const { return rec_; }
  // How many times the record was written (the rate limit is observable).
  size_t writes() const { return writes_; }
  // The first failed write of progress, kept for the job's log: a full disk
  // must not stop the operation itself.
  const std::optional<Error>& write_error() const { return write_error_; }

 private:
  Result<void> write();

  JobStore store_;
  JobRecord rec_;
  size_t writes_ = 0;
  bool dirty_ = false;
  std::chrono::steady_clock::time_point last_write_{};
  std::optional<Error> write_error_;
};

}  // namespace cairn
