#include "vmm/jobs/job_runner.hpp"

#include "vmm/base/inherited_fds.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <vector>

#include "vmm/base/unique_fd.hpp"
#include "vmm/cli/exit_codes.hpp"
#include "vmm/jobs/job_progress.hpp"
#include "vmm/vmstore/uuid.hpp"
#include "vmm/vmstore/vm_lock.hpp"

namespace cairn {

namespace {
constexpr char kGo = 'g';
constexpr size_t kLogTailBytes = 4096;
constexpr std::string_view kErrorPrefix = "cairn: error: ";

void redirect_stdio(int log_fd) {
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0) {
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(null_fd, STDOUT_FILENO);
    ::close(null_fd);
  }
  ::dup2(log_fd, STDERR_FILENO);
}

// Blocks until the starter has written the record: kGo, or EOF if it gave up.
bool wait_for_go(int fd) {
  char c = 0;
  for (;;) {
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    return n == 1 && c == kGo;
  }
}

int run_work(JobWork& work, JobProgress& progress, nlohmann::json& result) {
  try {
    return work(progress, result);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}{}\n", kErrorPrefix, e.what());
  } catch (...) {
    fmt::print(stderr, "{}the operation threw an unknown exception\n", kErrorPrefix);
  }
  return kExitFailed;
}

// The job process. Never returns: it _exits so that nothing of the starter
// (atexit handlers, a test framework's teardown) runs twice.
[[noreturn]] void job_child(const JobStore& store, JobRecord rec, JobWork& work, VmLock& lock, int log_fd,
                            int go_fd) {
  ::setsid();  // no terminal: ^C or a closed terminal in the starter's session must not reach it
  if (!wait_for_go(go_fd)) ::_exit(kExitFailed);
  redirect_stdio(log_fd);
  close_inherited_fds(lock.fd());
  if (auto r = lock.write_pid(::getpid()); !r) fmt::print(stderr, "cairn: warning: {}\n", r.error().message);
  rec.pid = ::getpid();
  JobPaths paths = store.paths(rec.id);
  JobProgress progress(store, std::move(rec));
  nlohmann::json result = nlohmann::json::object();
  int rc = run_work(work, progress, result);
  std::fflush(nullptr);
  std::string error;
  if (rc != 0) {
    error = last_error_line(paths.log);
    if (error.empty()) error = fmt::format("the operation failed with exit code {} and no message", rc);
  }
  if (progress.write_error())
    fmt::print(stderr, "cairn: warning: progress was not recorded: {}\n", progress.write_error()->message);
  if (auto r = progress.finish(rc, std::move(error), std::move(result)); !r)
    fmt::print(stderr, "cairn: error: recording the job's end: {}\n", r.error().message);
  ::_exit(rc >= 0 && rc <= 255 ? rc : kExitFailed);
}
}  // namespace

std::string last_error_line(const std::string& log_path) {
  UniqueFd fd(::open(log_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  off_t size = ::lseek(fd.get(), 0, SEEK_END);
  if (size <= 0) return {};
  off_t from = size > static_cast<off_t>(kLogTailBytes) ? size - static_cast<off_t>(kLogTailBytes) : 0;
  std::string tail(static_cast<size_t>(size - from), '\0');
  ssize_t n = ::pread(fd.get(), tail.data(), tail.size(), from);
  if (n <= 0) return {};
  tail.resize(static_cast<size_t>(n));
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r' || tail.back() == ' ')) tail.pop_back();
  size_t nl = tail.rfind('\n');
  std::string line = nl == std::string::npos ? tail : tail.substr(nl + 1);
  if (line.starts_with(kErrorPrefix)) line.erase(0, kErrorPrefix.size());
  return line;
}

Result<StartedJob> start_job(const JobStore& store, std::string operation, std::string vm, JobWork work) {
  if (auto r = store.ensure_dir(); !r) return std::unexpected(r.error());
  CAIRN_TRY_CTX(id, uuid_v4(), "creating a job id");
  JobPaths paths = store.paths(id);
  // The lock exists before the record, so no reader ever sees a "running"
  // record without a holder; the child inherits it across fork().
  CAIRN_TRY_CTX(lock, VmLock::try_acquire(paths.lock), "creating the job");
  UniqueFd log(::open(paths.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!log) return fail_errno("creating the job log {}", paths.log);
  // A socket pair rather than a pipe: send(MSG_NOSIGNAL) to a child that
  // died already fails with EPIPE instead of killing the starter with SIGPIPE.
  int go[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, go) != 0)
    return fail_errno("creating a socket pair for the job");
  UniqueFd go_read(go[0]), go_write(go[1]);
  auto discard = [&] {
    ::unlink(paths.lock.c_str());
    ::unlink(paths.log.c_str());
  };

  JobRecord rec;
  rec.id = id;
  rec.operation = std::move(operation);
  rec.vm = std::move(vm);
  rec.started = job_timestamp_now();
  std::fflush(nullptr);
  pid_t child = ::fork();
  if (child < 0) {
    auto e = fail_errno("starting the job process");
    discard();
    return e;
  }
  if (child == 0) {
    go_write.reset();
    job_child(store, rec, work, lock, log.get(), go_read.get());
  }
  go_read.reset();
  log.reset();
  lock.release();  // the child's copy keeps it held
  rec.pid = child;
  if (auto r = store.save(rec); !r) {
    go_write.reset();  // EOF: the child exits without running the work
    ::waitpid(child, nullptr, 0);
    discard();
    return std::unexpected(std::move(r.error()).context("creating the job"));
  }
  // A child that died already just shows as a failed job: nothing to undo.
  (void)::send(go_write.get(), &kGo, 1, MSG_NOSIGNAL);
  return StartedJob{id, child};
}

}  // namespace cairn
