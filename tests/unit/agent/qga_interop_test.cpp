// cairn's host client against a stock qemu-ga (Debian's qemu-guest-agent),
// run on this machine with --method=unix-listen. The freeze commands are
// blocked on the qemu-ga command line, so the test can never freeze the host;
// they double as the check that a disabled command maps to invalid_state.
// qemu-ga comes from Debian's qemu-guest-agent, which scripts/setup installs;
// without it the test fails and says so.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

#include "guest-agent/client/agent_client.hpp"

using namespace cairn;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {
constexpr const char* kQemuGa = "/usr/sbin/qemu-ga";

struct QemuGa {
  fs::path dir;
  pid_t pid = -1;
  std::string sock;
  QemuGa() {
    char tmpl[] = "/tmp/cairn-qga-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    dir = tmpl;
    sock = (dir / "qga.sock").string();
    std::ofstream(dir / "qemu-ga.conf");  // empty: no system configuration
    std::string conf = "QGA_CONF=" + (dir / "qemu-ga.conf").string();
    std::string statedir = dir.string(), pidfile = (dir / "pid").string();
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::putenv(conf.data());
      ::execl(kQemuGa, kQemuGa, "--method=unix-listen", ("--path=" + sock).c_str(), "-t", statedir.c_str(), "-f",
              pidfile.c_str(), "-b", "guest-fsfreeze-freeze,guest-fsfreeze-freeze-list,guest-fsfreeze-thaw",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !fs::exists(sock); ++i) std::this_thread::sleep_for(20ms);
  }
  ~QemuGa() {
    if (pid > 0) {
      // qemu-ga can deadlock in its own shutdown when SIGTERM lands early
      // (seen: SIGTERM consumed, main thread on a futex for minutes), so it
      // gets 3 s before SIGKILL.
      ::kill(pid, SIGTERM);
      bool gone = false;
      for (int i = 0; i < 150 && !gone; ++i) {
        gone = ::waitpid(pid, nullptr, WNOHANG) == pid;
        if (!gone) std::this_thread::sleep_for(20ms);
      }
      if (!gone) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
    fs::remove_all(dir);
  }
};
}  // namespace

TEST_CASE("interop: cairn's client with a stock qemu-ga", "[qga]") {
  INFO("qemu-ga missing: install qemu-guest-agent (scripts/setup does)");
  REQUIRE(::access(kQemuGa, X_OK) == 0);
  QemuGa qga;
  REQUIRE(fs::exists(qga.sock));
  // Short limits: a qemu-ga that stops answering fails the test instead of hanging it.
  AgentTimeouts to;
  to.connect = 5s;
  to.reply = 5s;
  auto c = AgentClient::connect(AgentEndpoint{AgentEndpoint::Kind::unix_socket, qga.sock}, to);
  REQUIRE(c);
  REQUIRE(c->ping());
  auto info = c->info();
  REQUIRE(info);
  CHECK_FALSE(info->version.empty());
  bool saw_freeze = false;
  for (const auto& cmd : info->commands) {
    if (cmd.name == "guest-fsfreeze-freeze") {
      saw_freeze = true;
      CHECK_FALSE(cmd.enabled);
    }
    if (cmd.name == "guest-ping") CHECK(cmd.enabled);
  }
  CHECK(saw_freeze);
  auto st = c->fsfreeze_status();
  REQUIRE(st);
  CHECK(*st == FreezeStatus::thawed);
  auto fr = c->fsfreeze_freeze();
  REQUIRE_FALSE(fr);
  CHECK(fr.error().code == Errc::invalid_state);
  auto unknown = c->execute("guest-no-such-command");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == Errc::unsupported);
  // The stream is still in step after errors.
  REQUIRE(c->sync());
  REQUIRE(c->ping());
}
