// SIGTERM, SIGINT and SIGHUP end a running VM cleanly (run() returns with
// Kind::stopped), so that its disks are flushed and closed and its control
// socket removed, instead of the process dying mid-write.
#pragma once
#include <memory>
#include <thread>

#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"
#include "vmm/machine/machine.hpp"

namespace cairn {

class StopOnSignals {
 public:
  // One at a time per process; the previous handlers come back on destruction.
  static Result<std::unique_ptr<StopOnSignals>> install(Machine& m);
  ~StopOnSignals();
  StopOnSignals(const StopOnSignals&) = delete;
  StopOnSignals& operator=(const StopOnSignals&) = delete;

 private:
  StopOnSignals() = default;
  UniqueFd quit_;  // wakes the watcher when we go away
  std::thread watcher_;
};

}  // namespace cairn
