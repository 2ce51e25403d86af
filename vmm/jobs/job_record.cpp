#include "vmm/jobs/job_record.hpp"

#include <ctime>

#include <chrono>

#include "vmm/vmstore/uuid.hpp"

namespace cairn {

using nlohmann::json;

std::string_view to_string(JobState s) {
  switch (s) {
    case JobState::running: return "running";
    case JobState::completed: return "completed";
    case JobState::failed: return "failed";
  }
  return "failed";
}

std::optional<JobState> job_state_from_string(std::string_view s) {
  for (JobState st : {JobState::running, JobState::completed, JobState::failed})
    if (s == to_string(st)) return st;
  return std::nullopt;
}

std::string job_timestamp_now() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, ms % 1000);
}

bool is_job_timestamp(std::string_view s) {
  // "YYYY-MM-DDTHH:MM:SS" then ".mmm" (optional) then "Z".
  static constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd";
  if (s.size() != kShape.size() + 1 && s.size() != kShape.size() + 5) return false;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  for (size_t i = 0; i < kShape.size(); ++i)
    if (kShape[i] == 'd' ? !digit(s[i]) : s[i] != kShape[i]) return false;
  if (s.size() == kShape.size() + 5) {
    if (s[kShape.size()] != '.') return false;
    for (size_t i = kShape.size() + 1; i < kShape.size() + 4; ++i)
      if (!digit(s[i])) return false;
  }
  return s.back() == 'Z';
}

json job_to_json(const JobRecord& r) {
  json j = {{"version", kJobFormatVersion},
            {"id", r.id},
            {"operation", r.operation},
            {"vm", r.vm},
            {"state", to_string(r.state)},
            {"percent", r.percent},
            {"stage", r.stage},
            {"started", r.started},
            {"ended", r.ended.empty() ? json(nullptr) : json(r.ended)},
            {"pid", r.pid},
            {"exit_code", r.exit_code ? json(*r.exit_code) : json(nullptr)},
            {"error", r.error},
            {"result", r.result}};
  return j;
}

namespace {
std::unexpected<Error> bad(std::string_view key, std::string_view why) {
  return fail(Errc::corrupt, "job field \"{}\" {}", key, why);
}

Result<std::string> get_string(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return bad(key, "is missing");
  if (!it->is_string()) return bad(key, "is not a string");
  return it->get<std::string>();
}

Result<long long> get_int(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return bad(key, "is missing");
  if (!it->is_number_integer()) return bad(key, "is not an integer");
  return it->get<long long>();
}

// Ranges and the rules between fields; also what JobStore::save checks before writing.
Result<void> check_rules(const JobRecord& r) {
  if (!is_uuid(r.id)) return bad("id", "is not a lower-case UUID");
  if (r.operation.empty()) return bad("operation", "is empty");
  if (r.percent < 0 || r.percent > 100) return bad("percent", "is not in 0..100");
  if (!is_job_timestamp(r.started)) return bad("started", "is not a UTC timestamp");
  if (!r.ended.empty() && !is_job_timestamp(r.ended)) return bad("ended", "is not a UTC timestamp");
  if (r.pid <= 0) return bad("pid", "is not a process id");
  bool running = r.state == JobState::running;
  if (running && r.exit_code) return bad("exit_code", "is set while the job runs");
  if (running && !r.ended.empty()) return bad("ended", "is set while the job runs");
  if (!running && !r.exit_code) return bad("exit_code", "is missing for a job that ended");
  if (r.state == JobState::completed && *r.exit_code != 0) return bad("exit_code", "is not 0 for a completed job");
  if (r.state == JobState::failed && *r.exit_code == 0) return bad("exit_code", "is 0 for a failed job");
  if (!r.result.is_object()) return bad("result", "is not an object");
  return {};
}
}  // namespace

Result<void> check_job_record(const JobRecord& r) { return check_rules(r); }

Result<JobRecord> job_from_json(const json& j) {
  if (!j.is_object()) return fail(Errc::corrupt, "a job file must hold a JSON object");
  CAIRN_TRY_CTX(version, get_int(j, "version"), "job file");
  if (version != kJobFormatVersion)
    return fail(Errc::corrupt, "job file version {} is not supported (expected {})", version, kJobFormatVersion);
  JobRecord r;
  CAIRN_TRY_CTX(id, get_string(j, "id"), "job file");
  CAIRN_TRY_CTX(operation, get_string(j, "operation"), "job file");
  CAIRN_TRY_CTX(vm, get_string(j, "vm"), "job file");
  CAIRN_TRY_CTX(state, get_string(j, "state"), "job file");
  CAIRN_TRY_CTX(percent, get_int(j, "percent"), "job file");
  CAIRN_TRY_CTX(stage, get_string(j, "stage"), "job file");
  CAIRN_TRY_CTX(started, get_string(j, "started"), "job file");
  CAIRN_TRY_CTX(pid, get_int(j, "pid"), "job file");
  CAIRN_TRY_CTX(error, get_string(j, "error"), "job file");
  auto st = job_state_from_string(state);
  if (!st) return bad("state", fmt::format("has an unknown value \"{}\"", state));
  r.id = std::move(id);
  r.operation = std::move(operation);
  r.vm = std::move(vm);
  r.state = *st;
  if (percent < 0 || percent > 100) return bad("percent", "is not in 0..100");
  r.percent = static_cast<int>(percent);
  r.stage = std::move(stage);
  r.started = std::move(started);
  if (pid <= 0 || pid > INT32_MAX) return bad("pid", "is not a process id");
  r.pid = static_cast<pid_t>(pid);
  r.error = std::move(error);

  auto ended = j.find("ended");
  if (ended == j.end()) return bad("ended", "is missing");
  if (ended->is_string()) r.ended = ended->get<std::string>();
  else if (!ended->is_null()) return bad("ended", "is neither a string nor null");
  auto code = j.find("exit_code");
  if (code == j.end()) return bad("exit_code", "is missing");
  if (code->is_number_integer()) {
    long long c = code->get<long long>();
    if (c < INT32_MIN || c > INT32_MAX) return bad("exit_code", "is out of range");
    r.exit_code = static_cast<int>(c);
  } else if (!code->is_null()) {
    return bad("exit_code", "is neither an integer nor null");
  }
  auto result = j.find("result");
  if (result == j.end()) return bad("result", "is missing");
  r.result = *result;
  if (auto ok = check_rules(r); !ok) return std::unexpected(ok.error());
  return r;
}

}  // namespace cairn
