#include "guest-agent/agent/hooks.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>

namespace cairn {

namespace {
bool leftover(const std::string& name) {
  return name.empty() || name[0] == '.' || name.back() == '~' || name.find(".dpkg-") != std::string::npos ||
         name.find(".rpm") != std::string::npos;
}
}  // namespace

std::vector<std::string> HookDirRunner::list() const {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir_.c_str());
  if (!d) return out;
  while (auto* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (leftover(name)) continue;
    std::string path = dir_ + "/" + name;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) != 0) continue;
    out.push_back(std::move(path));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

Result<void> HookDirRunner::run_one(const std::string& path, std::string_view action) const {
  std::string act(action);
  pid_t pid = ::fork();
  if (pid < 0) return fail_errno("starting hook {}", path);
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    ::execl(path.c_str(), path.c_str(), act.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
      if (WIFEXITED(status)) return fail(Errc::failed, "hook {} {} exited with status {}", path, act, WEXITSTATUS(status));
      return fail(Errc::failed, "hook {} {} was killed by signal {}", path, act, WTERMSIG(status));
    }
    if (r < 0 && errno != EINTR) return fail_errno("waiting for hook {}", path);
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return fail(Errc::timeout, "hook {} {} did not finish within {} ms", path, act, timeout_.count());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Result<void> HookDirRunner::run(std::string_view action) {
  Result<void> first{};
  for (const auto& path : list()) {
    auto r = run_one(path, action);
    if (r) continue;
    std::fprintf(stderr, "cairn-agent: %s\n", r.error().message.c_str());
    if (action == "freeze") return r;  // stop: the caller thaws and runs the thaw hooks
    if (first) first = std::move(r);
  }
  return first;
}

}  // namespace cairn
