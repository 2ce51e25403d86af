// One background job as stored in $CAIRN_HOME/jobs/<id>.json.
//
// File format: UTF-8 JSON text, one object, as written by
// nlohmann::json::dump(2) followed by "\n" (two-space indent, keys in byte
// order, non-ASCII characters raw). At most 1 MiB. Keys:
//
//   "version"    1 (integer); files of another version are rejected
//   "id"         the job id: a lower-case v4 UUID, equal to the file's name without ".json"
//   "operation"  what runs, for people: "Remove checkpoint 'x'" (string, not empty)
//   "vm"         the VM it concerns, "" when none (string)
//   "state"      "running" | "completed" | "failed"
//   "percent"    0..100 (integer): how far the current stage got
//   "stage"      the current step, "" before the first (string)
//   "started"    when the job was created: "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC)
//   "ended"      same format, or null while running
//   "pid"        the job process (integer > 0)
//   "exit_code"  null while running; 0 when completed; not 0 when failed
//   "error"      why it failed ("" unless failed)
//   "result"     a JSON object the operation fills in (free form, {} by default)
//
// Unknown keys are ignored when reading, so newer writers stay readable.
// "running" in the file is only a claim: JobStore::load checks it against the
// job's lock (job_store.hpp).
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "vmm/base/error.hpp"

namespace cairn {

enum class JobState { running, completed, failed };

std::string_view to_string(JobState s);
std::optional<JobState> job_state_from_string(std::string_view s);

struct JobRecord {
  std::string id;
  std::string operation;
  std::string vm;
  JobState state = JobState::running;
  int percent = 0;
  std::string stage;
  std::string started;
  std::string ended;  // "" while running (null in the file)
  pid_t pid = 0;
  std::optional<int> exit_code;
  std::string error;
  nlohmann::json result = nlohmann::json::object();
};

inline constexpr int kJobFormatVersion = 1;
inline constexpr size_t kMaxJobFileBytes = 1 << 20;

nlohmann::json job_to_json(const JobRecord& r);
// The rules job_from_json enforces, for a record about to be written.
Result<void> check_job_record(const JobRecord& r);
// Checks every field and the rules between them (exit_code vs state, ...);
// a violation is Errc::corrupt naming the field.
Result<JobRecord> job_from_json(const nlohmann::json& j);

// Now in UTC with milliseconds, "2024-05-01T12:00:03.042Z": sorts as text in
// time order, so `job list` can order jobs started within one second.
std::string job_timestamp_now();
bool is_job_timestamp(std::string_view s);

}  // namespace cairn
