// `cairn vm start NAME [--detach]`: run a stored VM, in the foreground like
// `cairn run` (same exit statuses) or as a background VMM whose guest console
// goes to <state folder>/console.log.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "vmm/base/inherited_fds.hpp"
#include "vmm/cli/exit_codes.hpp"
#include "vmm/cli/vm_cli.hpp"
#include "vmm/control/client.hpp"
#include "vmm/control/vm_host.hpp"
#include "vmm/kvm/host_check.hpp"
#include "vmm/vmstore/atomic_file.hpp"

namespace cairn {

namespace {
off_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

// The last `max_lines` lines of `path` written after byte `from`.
std::string log_tail(const std::string& path, off_t from, size_t max_lines) {
  auto text = read_small_file(path, 64 << 20);
  if (!text || static_cast<size_t>(from) >= text->size()) return {};
  std::string s = text->substr(static_cast<size_t>(from));
  size_t pos = s.size(), lines = 0;
  while (pos > 0 && lines <= max_lines) {
    pos = s.rfind('\n', pos - 1);
    if (pos == std::string::npos) { pos = 0; break; }
    ++lines;
  }
  if (pos > 0) ++pos;
  return s.substr(pos);
}

// The background VMM: its own session, no terminal, errors into console.log.
int run_detached_child(const VmRecord& rec, const VmPaths& p, VmLock& lock) {
  ::setsid();
  close_inherited_fds(lock.fd());
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  int log_fd = ::open(p.console_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (null_fd >= 0) {
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(null_fd, STDOUT_FILENO);
    ::close(null_fd);
  }
  if (log_fd >= 0) {
    ::dup2(log_fd, STDERR_FILENO);
    ::close(log_fd);
  }
  VmHostOptions o;
  if (rec.machine.console == "stdio") o.console = "file:" + p.console_log;
  auto e = run_vm_host(rec, p, lock, o);
  if (!e) return report_error(e.error());
  return exit_status_for(*e);
}

// The parent waits until the child answers on its control socket, or dies.
int wait_for_detached(const VmRecord& rec, const VmPaths& p, pid_t child, off_t log_start) {
  const bool restoring = !saved_state_dir(rec).empty();
  const int wait_ms = restoring ? kDetachRestoreWaitMs : kDetachWaitMs;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  if (restoring && ::isatty(STDERR_FILENO))
    fmt::print(stderr, "VM '{}': restoring its saved state...\n", rec.name);
  for (;;) {
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) {
      int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      std::string tail = log_tail(p.console_log, log_start, 20);
      if (rc == 0) {
        fmt::print("VM '{}' started and has already ended (status 0); console: {}\n", rec.name, p.console_log);
        return kExitOk;
      }
      if (!tail.empty()) fmt::print(stderr, "{}{}", tail, tail.ends_with('\n') ? "" : "\n");
      fmt::print(stderr, "cairn: error: VM '{}' did not start (status {}); its log is {}\n", rec.name, rc,
                 p.console_log);
      return rc;
    }
    auto st = control_call(p.control_socket, "status", nlohmann::json::object(), 1000);
    if (st) {
      fmt::print("VM '{}' started (pid {}); console: {}\n", rec.name, st->value("pid", static_cast<int>(child)),
                 p.console_log);
      return kExitOk;
    }
    if (std::chrono::steady_clock::now() > deadline)
      return report_error(Error{Errc::timeout, fmt::format("VM '{}' (pid {}) did not answer on {} within {} s",
                                                           rec.name, child, p.control_socket, wait_ms / 1000)});
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}
}  // namespace

int vm_start(const std::string& name, bool detach) {
  auto store = VmStore::open_default();
  if (!store) return report_error(store.error());
  auto rec = store->load(name);
  if (!rec) return report_error(rec.error());
  VmPaths p = store->paths(name);
  // Taking the lock here settles "already running" before anything is built;
  // the detached child inherits it across fork().
  auto lock = VmLock::try_acquire(p.lock);
  if (!lock) {
    if (lock.error().code != Errc::busy) return report_error(lock.error());
    auto held = probe_lock(p.lock);
    pid_t pid = held ? held->pid : 0;
    return report_error(Error{Errc::invalid_state, pid ? fmt::format("VM '{}' is already running (pid {})", name, pid)
                                                       : fmt::format("VM '{}' is already running", name)});
  }
  if (auto host = check_host_kvm(); !host) return report_error(host.error());
  if (!detach) {
    auto e = run_vm_host(*rec, p, *lock, {});
    if (!e) return report_error(e.error());
    return exit_status_for(*e);
  }
  off_t log_start = file_size(p.console_log);
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t child = ::fork();
  if (child < 0) return report_error(fail_errno("starting the background VMM").error());
  if (child == 0) return run_detached_child(*rec, p, *lock);
  lock->release();  // the child holds it now
  return wait_for_detached(*rec, p, child, log_start);
}

}  // namespace cairn
