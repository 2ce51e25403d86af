#include "vmm/jobs/job_store.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "vmm/cli/exit_codes.hpp"
#include "vmm/vmstore/atomic_file.hpp"
#include "vmm/vmstore/uuid.hpp"
#include "vmm/vmstore/vm_lock.hpp"
#include "vmm/vmstore/vm_store.hpp"

namespace cairn {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
constexpr std::string_view kRecordSuffix = ".json";

std::unexpected<Error> unknown_job(std::string_view id) {
  return fail(Errc::not_found, "no job with id '{}' (see 'cairn job list')", id);
}
}  // namespace

Result<JobStore> JobStore::open_default() {
  auto home = default_cairn_home();
  if (!home) return std::unexpected(home.error());
  return JobStore(*home);
}

JobPaths JobStore::paths(const std::string& id) const {
  std::string base = dir_ + "/" + id;
  return {base + ".json", base + ".lock", base + ".log"};
}

Result<void> JobStore::ensure_dir() const {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return fail(errc_from_errno(ec.value()), "creating the jobs folder {}: {}", dir_, ec.message());
  // Job records may name VMs and paths: private like the VM folders.
  if (::chmod(dir_.c_str(), 0700) != 0) return fail_errno("setting the mode of {}", dir_);
  return {};
}

Result<void> JobStore::save(const JobRecord& r) const {
  if (auto ok = check_job_record(r); !ok)
    return std::unexpected(Error{Errc::invalid_argument, ok.error().message}.context(
        fmt::format("refusing to write job {}", r.id)));
  return write_file_atomic(paths(r.id).record, job_to_json(r).dump(2) + "\n", 0600);
}

Result<JobRecord> JobStore::load_stored(const std::string& id) const {
  if (!is_uuid(id)) return fail(Errc::invalid_argument, "'{}' is not a job id", id);
  std::string path = paths(id).record;
  auto text = read_small_file(path, kMaxJobFileBytes);
  if (!text) {
    if (text.error().code == Errc::not_found) return unknown_job(id);
    return std::unexpected(text.error());
  }
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail(Errc::corrupt, "job record {} is not valid JSON", path);
  auto rec = job_from_json(j);
  if (!rec) return std::unexpected(std::move(rec.error()).context(path));
  if (rec->id != id) return fail(Errc::corrupt, "{}: holds the record of job {}", path, rec->id);
  return rec;
}

Result<JobRecord> JobStore::load(const std::string& id) const {
  auto rec = load_stored(id);
  if (!rec || rec->state != JobState::running) return rec;
  auto lock = probe_lock(paths(id).lock);
  if (!lock) return std::unexpected(std::move(lock.error()).context(fmt::format("job {}", id)));
  if (lock->held) return rec;
  // The job process writes its end before its lock goes, so a free lock seen
  // after a "running" read may just mean it finished in between: read again.
  rec = load_stored(id);
  if (!rec || rec->state != JobState::running) return rec;
  rec->state = JobState::failed;
  rec->exit_code = kExitFailed;
  rec->error = std::string(kJobVanishedError);
  return rec;
}

Result<std::vector<std::string>> JobStore::ids() const {
  std::vector<std::string> out;
  std::error_code ec;
  fs::directory_iterator it(dir_, ec);
  if (ec == std::errc::no_such_file_or_directory) return out;  // no job yet
  if (ec) return fail(errc_from_errno(ec.value()), "reading the jobs folder {}: {}", dir_, ec.message());
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    // Skips the temporary files of write_file_atomic (".<id>.json.tmp.<pid>") and the rest.
    if (!name.ends_with(kRecordSuffix)) continue;
    std::string id = name.substr(0, name.size() - kRecordSuffix.size());
    if (is_uuid(id)) out.push_back(std::move(id));
  }
  if (ec) return fail(errc_from_errno(ec.value()), "reading the jobs folder {}: {}", dir_, ec.message());
  return out;
}

Result<std::string> JobStore::resolve(std::string_view id_or_prefix) const {
  std::string want(id_or_prefix);
  std::transform(want.begin(), want.end(), want.begin(), [](unsigned char c) { return std::tolower(c); });
  if (is_uuid(want)) {
    struct stat st {};
    if (::stat(paths(want).record.c_str(), &st) != 0) return unknown_job(id_or_prefix);
    return want;
  }
  if (want.size() < kMinJobIdPrefix)
    return fail(Errc::invalid_argument, "job id '{}' is too short: give at least {} characters of it",
                id_or_prefix, kMinJobIdPrefix);
  auto all = ids();
  if (!all) return std::unexpected(all.error());
  std::vector<std::string> hits;
  for (auto& id : *all)
    if (id.starts_with(want)) hits.push_back(id);
  if (hits.empty()) return unknown_job(id_or_prefix);
  if (hits.size() > 1) {
    std::sort(hits.begin(), hits.end());
    return fail(Errc::invalid_argument, "job id '{}' is ambiguous: it starts {} ids ({})", id_or_prefix,
                hits.size(), fmt::join(hits, ", "));
  }
  return hits.front();
}

Result<JobList> JobStore::list() const {
  auto all = ids();
  if (!all) return std::unexpected(all.error());
  JobList out;
  for (auto& id : *all) {
    auto rec = load(id);
    if (rec) out.jobs.push_back(std::move(*rec));
    else if (rec.error().code != Errc::not_found) out.problems.push_back(std::move(rec.error()));
  }
  // Timestamps sort as text; the id breaks ties so the order is stable.
  std::sort(out.jobs.begin(), out.jobs.end(), [](const JobRecord& a, const JobRecord& b) {
    return a.started != b.started ? a.started > b.started : a.id < b.id;
  });
  return out;
}

}  // namespace cairn
