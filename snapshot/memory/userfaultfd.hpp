// userfaultfd for guest memory, shared by lazy restore (missing pages) and
// copy-on-write checkpoints (write protection).
#pragma once
#include <linux/userfaultfd.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn::snap {

// A non-blocking userfaultfd that also sees faults taken inside the kernel
// (KVM touching guest memory for a vCPU), handshaken with UFFDIO_API. The
// kernel's feature bits land in `features`. Errc::unsupported when the host
// refuses userfaultfd (not root and vm.unprivileged_userfaultfd=0).
Result<UniqueFd> open_userfaultfd(uint64_t& features);

// Registers [host, host + size) with `mode` (UFFDIO_REGISTER_MODE_*); Errc::unsupported
// when the kernel refuses it for this memory or lacks one of `ioctls` on it.
Result<void> register_range(int uffd, uint8_t* host, uint64_t size, uint64_t mode, uint64_t ioctls);

// Reads fault messages from `uffd` and passes each page fault to `on_fault`
// until `stop_fd` (an eventfd) becomes readable or the fd fails.
void serve_faults(int uffd, int stop_fd, const std::function<void(const uffd_msg&)>& on_fault);

// A thread passing the address of each page fault of a userfaultfd to a
// handler, until stopped (or destroyed).
class FaultThread {
 public:
  FaultThread() = default;
  ~FaultThread() { stop(); }
  FaultThread(const FaultThread&) = delete;
  FaultThread& operator=(const FaultThread&) = delete;
  // `uffd` must stay open until stop().
  Result<void> start(int uffd, std::function<void(uint64_t addr)> on_fault);
  void stop();

 private:
  UniqueFd stop_fd_;  // eventfd
  std::thread thread_;
};

// How a job over guest memory in background threads ends: done, or failed
// with its first error; timed from restart() to finish().
class JobOutcome {
 public:
  JobOutcome() { restart(); }
  // Not done again, the clock from now (an error stays).
  void restart();
  // Records `e` unless an error was recorded already (false then). `first`
  // runs with it before any waiter is woken.
  bool fail(Error e, const std::function<void(const Error&)>& first = {});
  // Done, with the time since restart(); false if it was already.
  bool finish();
  // Blocks until done or failed; the first error if it failed.
  Result<void> wait() const;
  bool done() const;
  double ms() const;  // restart() to finish(); 0 until then

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool done_ = false;
  std::optional<Error> error_;
  int64_t start_ns_ = 0;
  double ms_ = 0;
};

}  // namespace cairn::snap
