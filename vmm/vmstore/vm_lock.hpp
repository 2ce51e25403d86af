// <state folder>/lock: tells whether a VM is running.
//
// The VMM process that runs a VM holds an exclusive open-file-description
// lock (fcntl F_OFD_SETLK, whole file) on this file for its whole life; the
// kernel drops it when the process ends, however it ends, so a crashed VMM
// never leaves the VM looking "running". OFD locks rather than flock(2):
// F_OFD_GETLK tests for a holder without taking the lock, so `vm list` never
// makes a starting VM fail. The lock travels with the open file across fork(),
// which is how `vm start --detach` hands it to the background VMM.
//
// Content: the holder's pid in decimal followed by "\n", written right after
// the lock is taken. It means nothing while the lock is free.
#pragma once
#include <sys/types.h>

#include <string>

#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

class VmLock {
 public:
  // Takes the lock without waiting; Errc::busy when another process holds it.
  // The file is created (mode 0600) if missing.
  static Result<VmLock> try_acquire(const std::string& path);

  // Records `pid` as the holder (the file is rewritten in place).
  Result<void> write_pid(pid_t pid);
  // Gives up the lock (also done by the destructor, and by the kernel at exit).
  void release() { fd_.reset(); }
  bool held() const { return static_cast<bool>(fd_); }
  int fd() const { return fd_.get(); }

 private:
  explicit VmLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

struct LockState {
  bool held = false;
  pid_t pid = 0;  // the holder's pid from the file; 0 when unknown
};

// Tests the lock without taking it. A missing file means "not held".
Result<LockState> probe_lock(const std::string& path);

}  // namespace cairn
