// A fresh $CAIRN_HOME for one test: set in the environment (the job code
// finds its folder there), restored and removed afterwards.
#pragma once
#include <cstdlib>
#include <optional>
#include <string>

#include "tests/unit/vmm/temp_dir.hpp"
#include "vmm/jobs/job_record.hpp"

namespace cairn::test {

class TempHome {
 public:
  TempHome() {
    if (const char* old = std::getenv("CAIRN_HOME")) old_ = old;
    ::setenv("CAIRN_HOME", dir_.path().c_str(), 1);
  }
  ~TempHome() {
    if (old_) ::setenv("CAIRN_HOME", old_->c_str(), 1);
    else ::unsetenv("CAIRN_HOME");
  }
  TempHome(const TempHome&) = delete;
  TempHome& operator=(const TempHome&) = delete;
  const std::string& path() const { return dir_.path(); }

 private:
  TempDir dir_;
  std::optional<std::string> old_;
};

// A valid running record (the pid is this process: any live pid will do).
inline JobRecord sample_job(std::string id = "3f1c2a9e-1234-4abc-8def-0123456789ab") {
  JobRecord r;
  r.id = std::move(id);
  r.operation = "Remove checkpoint 'before-upgrade'";
  r.vm = "web";
  r.stage = "merging disk vda";
  r.percent = 42;
  r.started = "2024-05-01T12:00:03.042Z";
  r.pid = 1234;
  return r;
}

}  // namespace cairn::test
