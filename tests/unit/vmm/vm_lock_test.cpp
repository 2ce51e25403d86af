// The lock is what tells "running" apart from "off" (and a live control
// socket from a stale one), so these tests hold it from another process.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "tests/unit/vmm/temp_dir.hpp"
#include "vmm/vmstore/vm_lock.hpp"

using namespace cairn;

namespace {
// A child process that takes the lock, records its pid, reports on `ready`
// and holds the lock until `release` is closed by the parent.
struct LockHolder {
  pid_t pid = -1;
  int release_w = -1;

  explicit LockHolder(const std::string& path) {
    int ready[2], release[2];
    REQUIRE(::pipe(ready) == 0);
    REQUIRE(::pipe(release) == 0);
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(ready[0]);
      ::close(release[1]);
      auto lock = VmLock::try_acquire(path);
      char ok = lock && lock->write_pid(::getpid()) ? 'y' : 'n';
      (void)!::write(ready[1], &ok, 1);
      char c;
      (void)!::read(release[0], &c, 1);  // EOF when the parent lets go
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(release[0]);
    release_w = release[1];
    char ok = 0;
    REQUIRE(::read(ready[0], &ok, 1) == 1);
    ::close(ready[0]);
    REQUIRE(ok == 'y');
  }
  void finish() {
    if (pid <= 0) return;
    ::close(release_w);
    int st = 0;
    ::waitpid(pid, &st, 0);
    pid = -1;
  }
  ~LockHolder() { finish(); }
};
}  // namespace

TEST_CASE("VM lock: free, held by another process with its pid, free again", "[vmctl]") {
  test::TempDir dir;
  std::string path = dir / "lock";

  auto none = probe_lock(path);  // no file yet
  REQUIRE(none);
  CHECK_FALSE(none->held);

  LockHolder holder(path);
  auto held = probe_lock(path);
  REQUIRE(held);
  CHECK(held->held);
  CHECK(held->pid == holder.pid);

  auto mine = VmLock::try_acquire(path);
  REQUIRE_FALSE(mine);
  CHECK(mine.error().code == Errc::busy);

  pid_t child = holder.pid;
  holder.finish();  // the process ends: the kernel drops its lock
  auto after = probe_lock(path);
  REQUIRE(after);
  CHECK_FALSE(after->held);

  auto taken = VmLock::try_acquire(path);
  REQUIRE(taken);
  REQUIRE(taken->write_pid(::getpid()));
  auto now = probe_lock(path);
  REQUIRE(now);
  CHECK(now->held);  // probing from another open file sees our own lock too
  CHECK(now->pid == ::getpid());
  CHECK(now->pid != child);
}

TEST_CASE("VM lock: two opens in one process exclude each other", "[vmctl]") {
  test::TempDir dir;
  auto a = VmLock::try_acquire(dir / "lock");
  REQUIRE(a);
  CHECK_FALSE(VmLock::try_acquire(dir / "lock"));
  a->release();
  CHECK(VmLock::try_acquire(dir / "lock"));
}

TEST_CASE("VM lock: survives fork in the child after the parent lets go", "[vmctl]") {
  test::TempDir dir;
  std::string path = dir / "lock";
  auto lock = VmLock::try_acquire(path);
  REQUIRE(lock);
  int go[2];
  REQUIRE(::pipe(go) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // holds the inherited lock until the parent closes `go`
    ::close(go[1]);
    char c;
    (void)!::read(go[0], &c, 1);
    ::_exit(0);
  }
  ::close(go[0]);
  lock->release();
  CHECK(probe_lock(path).value().held);  // as with `vm start --detach`
  ::close(go[1]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  CHECK_FALSE(probe_lock(path).value().held);
}
