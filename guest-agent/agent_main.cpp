// cairn-agent: the in-guest agent. Listens on virtio-vsock (port 1234 by
// default) and speaks the qemu-guest-agent protocol (guest-agent/protocol/qga.hpp).
//
//   cairn-agent [--port N] [--no-vsock] [--unix PATH] [--freeze-timeout SEC]
//               [--hooks-dir DIR] [--hook-timeout SEC] [--daemon]
//
// Settings not given as options are taken from the kernel command line when
// present there: cairn.agent.port=N, cairn.agent.freeze_timeout=SEC.
// --daemon returns once the sockets listen, so a host may connect right after.
// SIGTERM/SIGINT thaw the file systems (if frozen) before the agent exits.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "guest-agent/agent/dispatcher.hpp"
#include "guest-agent/agent/hooks.hpp"
#include "guest-agent/agent/server.hpp"
#include "guest-agent/protocol/qga.hpp"

namespace {

using namespace cairn;

struct Options {
  std::optional<uint32_t> port;
  bool vsock = true;
  std::string unix_path;
  std::optional<double> freeze_timeout_s;
  std::string hooks_dir = kDefaultHookDir;
  double hook_timeout_s = 30;
  bool daemon = false;
};

int usage() {
  std::fprintf(stderr,
               "usage: cairn-agent [--port N] [--no-vsock] [--unix PATH] [--freeze-timeout SEC]\n"
               "                   [--hooks-dir DIR] [--hook-timeout SEC] [--daemon]\n");
  return 2;
}

bool parse_seconds(const char* s, double& out) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s, &end);
  if (*s == '\0' || *end != '\0' || errno || !std::isfinite(v) || v <= 0 || v > 86400) return false;
  out = v;
  return true;
}

bool parse_port(const char* s, uint32_t& out) {
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(s, &end, 10);
  if (*s == '\0' || *end != '\0' || errno || v == 0 || v >= 0xffffffffUL) return false;
  out = static_cast<uint32_t>(v);
  return true;
}

// Fills settings the options left open from /proc/cmdline.
void read_kernel_cmdline(Options& o) {
  std::ifstream in("/proc/cmdline");
  std::string word;
  while (in >> word) {
    auto value = [&](const char* key) -> const char* {
      size_t n = std::strlen(key);
      return word.compare(0, n, key) == 0 ? word.c_str() + n : nullptr;
    };
    if (const char* v = value("cairn.agent.port="); v && !o.port) {
      uint32_t p;
      if (parse_port(v, p)) o.port = p;
    } else if (const char* v = value("cairn.agent.freeze_timeout="); v && !o.freeze_timeout_s) {
      double s;
      if (parse_seconds(v, s)) o.freeze_timeout_s = s;
    }
  }
}

std::optional<Options> parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--daemon") o.daemon = true;
    else if (a == "--no-vsock") o.vsock = false;
    else if (a == "--port") {
      const char* v = next();
      uint32_t p;
      if (!v || !parse_port(v, p)) return std::nullopt;
      o.port = p;
    } else if (a == "--unix") {
      const char* v = next();
      if (!v) return std::nullopt;
      o.unix_path = v;
    } else if (a == "--freeze-timeout") {
      const char* v = next();
      double s;
      if (!v || !parse_seconds(v, s)) return std::nullopt;
      o.freeze_timeout_s = s;
    } else if (a == "--hooks-dir") {
      const char* v = next();
      if (!v) return std::nullopt;
      o.hooks_dir = v;
    } else if (a == "--hook-timeout") {
      const char* v = next();
      if (!v || !parse_seconds(v, o.hook_timeout_s)) return std::nullopt;
    } else {
      return std::nullopt;
    }
  }
  return o;
}

AgentServer* g_server = nullptr;
void on_signal(int) {
  if (g_server) g_server->stop();
}

// Forks; the parent waits until the child reports that it listens (or failed).
// Returns the write end for the child, or -1 in the parent's failure path.
int daemonize(int& ready_fd) {
  int p[2];
  if (::pipe(p) != 0) return -1;
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid > 0) {
    ::close(p[1]);
    char status = 1;
    ssize_t n;
    do n = ::read(p[0], &status, 1);
    while (n < 0 && errno == EINTR);
    std::_Exit(n == 1 ? status : 1);
  }
  ::close(p[0]);
  ::setsid();
  ready_fd = p[1];
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto opts = parse_args(argc, argv);
  if (!opts) return usage();
  read_kernel_cmdline(*opts);
  if (!opts->vsock && opts->unix_path.empty()) return usage();

  int ready_fd = -1;
  if (opts->daemon && daemonize(ready_fd) != 0) {
    std::perror("cairn-agent: fork");
    return 1;
  }
  auto report_ready = [&](char status) {
    if (ready_fd >= 0) {
      [[maybe_unused]] ssize_t n = ::write(ready_fd, &status, 1);
      ::close(ready_fd);
      ready_fd = -1;
    }
  };

  LinuxFsOps fs;
  HookDirRunner hooks(opts->hooks_dir,
                      std::chrono::milliseconds(static_cast<long long>(opts->hook_timeout_s * 1000)));
  FreezeController freezer(fs, &hooks);
  auto timeout = opts->freeze_timeout_s
                     ? std::chrono::milliseconds(static_cast<long long>(*opts->freeze_timeout_s * 1000))
                     : kDefaultFreezeTimeout;
  Dispatcher dispatcher(freezer, timeout);

  ServerOptions so;
  if (opts->vsock) so.vsock_port = opts->port.value_or(kAgentVsockPort);
  so.unix_path = opts->unix_path;
  auto server = AgentServer::create(dispatcher, so);
  if (!server) {
    std::fprintf(stderr, "cairn-agent: %s\n", server.error().message.c_str());
    report_ready(1);
    return 1;
  }
  g_server = server->get();
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::fprintf(stderr, "cairn-agent: listening%s%s (freeze timeout %lld ms)\n",
               so.vsock_port ? (" on vsock port " + std::to_string(*so.vsock_port)).c_str() : "",
               so.unix_path.empty() ? "" : (" on " + so.unix_path).c_str(),
               static_cast<long long>(timeout.count()));
  report_ready(0);
  auto r = (*server)->run();
  dispatcher.shutdown();
  g_server = nullptr;
  if (!r) {
    std::fprintf(stderr, "cairn-agent: %s\n", r.error().message.c_str());
    return 1;
  }
  return 0;
}
