#include "vmm/jobs/job_progress.hpp"

namespace cairn {

Result<void> JobProgress::write() {
  last_write_ = std::chrono::steady_clock::now();
  dirty_ = false;
  ++writes_;
  auto r = store_.save(rec_);
  if (!r && !write_error_) write_error_ = r.error();
  return r;
}

void JobProgress::stage(std::string_view what) {
  rec_.stage = std::string(what);
  rec_.percent = 0;
  (void)write();
}

void JobProgress::update(uint64_t done, uint64_t total) {
  int pct = percent_of(done, total);
  if (pct != rec_.percent) {
    rec_.percent = pct;
    dirty_ = true;
  }
  if (dirty_ && std::chrono::steady_clock::now() - last_write_ >= kMinWriteInterval) (void)write();
}

Result<void> JobProgress::finish(int exit_code, std::string error, nlohmann::json result) {
  rec_.state = exit_code == 0 ? JobState::completed : JobState::failed;
  rec_.exit_code = exit_code;
  rec_.ended = job_timestamp_now();
  if (exit_code == 0) {
    rec_.percent = 100;
    rec_.error.clear();
  } else {
    rec_.error = std::move(error);
  }
  // A work function that left it as something else still gets a valid record.
  rec_.result = result.is_object() ? std::move(result) : nlohmann::json{{"value", std::move(result)}};
  return write();
}

}  // namespace cairn
