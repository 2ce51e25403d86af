// The control server and client over a real Unix socket, with a fake command table.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "tests/unit/vmm/temp_dir.hpp"
#include "vmm/control/client.hpp"
#include "vmm/control/protocol.hpp"
#include "vmm/control/server.hpp"
#include "vmm/control/unix_socket.hpp"
#include "vmm/control/vm_state.hpp"
#include "vmm/vmstore/vm_lock.hpp"

using namespace cairn;
using nlohmann::json;

namespace {
std::shared_ptr<ControlDispatcher> fake_vm(std::string state = "running") {
  auto d = std::make_shared<ControlDispatcher>();
  d->add("status", [state](const json&) -> Result<json> { return json{{"state", state}, {"pid", 4321}, {"uptime_ms", 10}}; });
  d->add("add", [](const json& a) -> Result<json> { return json{{"sum", a.at("a").get<int>() + a.at("b").get<int>()}}; });
  d->add("busy", [](const json&) -> Result<json> { return fail(Errc::busy, "a checkpoint is being taken"); });
  return d;
}

// Reads one reply line from a raw socket.
std::string read_line(int fd) {
  std::string s;
  char c;
  while (::recv(fd, &c, 1, 0) == 1) {
    if (c == '\n') return s;
    s += c;
  }
  return s;
}
}  // namespace

TEST_CASE("control: round trip, several requests on one connection", "[vmctl]") {
  test::TempDir dir;
  std::string sock = dir / "control.sock";
  auto server = ControlServer::start(sock, fake_vm());
  REQUIRE(server);
  struct stat st {};
  REQUIRE(::lstat(sock.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);

  auto c = ControlClient::connect(sock);
  REQUIRE(c);
  auto s = c->call("status");
  REQUIRE(s);
  CHECK((*s)["state"] == "running");
  auto sum = c->call("add", {{"a", 2}, {"b", 40}});
  REQUIRE(sum);
  CHECK((*sum)["sum"] == 42);
  auto busy = c->call("busy");
  REQUIRE_FALSE(busy);
  CHECK(busy.error().code == Errc::busy);
  CHECK(busy.error().message == "a checkpoint is being taken");
  auto unknown = c->call("nope");
  REQUIRE_FALSE(unknown);
  CHECK_THAT(unknown.error().message, Catch::Contains("unknown command"));
  // A handler that throws on bad arguments: an error reply, and the server lives on.
  auto bad = c->call("add", {{"a", 1}});
  REQUIRE_FALSE(bad);
  CHECK(control_call(sock, "status").has_value());

  (*server)->stop();
  CHECK(::access(sock.c_str(), F_OK) != 0);  // stop removes the socket file
  auto gone = control_call(sock, "status");
  REQUIRE_FALSE(gone);
  CHECK(gone.error().code == Errc::not_found);
}

TEST_CASE("control: malformed lines get error replies on the same connection", "[vmctl]") {
  test::TempDir dir;
  std::string sock = dir / "control.sock";
  auto server = ControlServer::start(sock, fake_vm());
  REQUIRE(server);
  auto c = ControlClient::connect(sock);
  REQUIRE(c);
  for (const char* line : {"{{{", "[]", R"({"command":null})", "\x01\x02\x03"}) {
    auto r = c->request_line(line);
    REQUIRE(r);
    CHECK((*r)["error"]["class"] == "InvalidParameter");
  }
  CHECK(c->call("status").has_value());
}

TEST_CASE("control: an oversized request is refused and the connection closed", "[vmctl]") {
  test::TempDir dir;
  std::string sock = dir / "control.sock";
  auto server = ControlServer::start(sock, fake_vm());
  REQUIRE(server);
  auto fd = unix_connect(sock);
  REQUIRE(fd);
  std::string huge(kMaxControlLine + 100, 'x');  // no newline at all
  size_t off = 0;
  while (off < huge.size()) {
    ssize_t n = ::send(fd->get(), huge.data() + off, huge.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may close before we finish
    off += static_cast<size_t>(n);
  }
  json reply = json::parse(read_line(fd->get()), nullptr, false);
  REQUIRE(reply.is_object());
  CHECK(reply["error"]["class"] == "InvalidParameter");
  CHECK_THAT(reply["error"]["desc"].get<std::string>(), Catch::Contains("longer than"));
  // The server still serves others.
  CHECK(control_call(sock, "status").has_value());
}

TEST_CASE("control: a silent client neither blocks others nor stays forever", "[vmctl]") {
  test::TempDir dir;
  std::string sock = dir / "control.sock";
  auto server = ControlServer::start(sock, fake_vm());
  REQUIRE(server);
  auto idle = unix_connect(sock);  // connects, never sends
  REQUIRE(idle);
  auto r = control_call(sock, "status", json::object(), 1000);  // served meanwhile
  REQUIRE(r);
  // The server closes the idle connection after its idle timeout: EOF.
  auto t0 = std::chrono::steady_clock::now();
  auto readable = wait_fd(idle->get(), false, kControlIdleTimeoutMs + 3000);
  REQUIRE(readable);
  REQUIRE(*readable);
  char c;
  CHECK(::recv(idle->get(), &c, 1, 0) == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(kControlIdleTimeoutMs + 2000));
}

TEST_CASE("control: a client times out on a server that never answers", "[vmctl]") {
  test::TempDir dir;
  std::string sock = dir / "control.sock";
  auto listener = unix_listen(sock, 0600);  // accepts into the backlog, never replies
  REQUIRE(listener);
  auto r = control_call(sock, "status", json::object(), 300);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::timeout);
}

TEST_CASE("control: a socket path longer than sun_path still works", "[vmctl]") {
  test::TempDir dir;
  std::string deep = dir.path();
  while (deep.size() < 150) {
    deep += "/a-rather-long-folder-name";
    REQUIRE(::mkdir(deep.c_str(), 0700) == 0);
  }
  std::string sock = deep + "/control.sock";
  auto server = ControlServer::start(sock, fake_vm());
  REQUIRE(server);
  CHECK(::access(sock.c_str(), F_OK) == 0);
  CHECK(control_call(sock, "status").has_value());
}

TEST_CASE("VM state: a socket nobody listens on is stale when the lock is free", "[vmctl]") {
  test::TempDir dir;
  VmPaths p{dir.path(), dir / "config.json", dir / "lock", dir / "control.sock", dir / "console.log"};
  { auto l = unix_listen(p.control_socket, 0600); REQUIRE(l); }  // closed: the file stays behind
  REQUIRE(::access(p.control_socket.c_str(), F_OK) == 0);
  auto refused = control_call(p.control_socket, "status");
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == Errc::invalid_state);

  auto st = query_vm_state(p);
  REQUIRE(st);
  CHECK(st->state == VmRunState::off);
  CHECK(::access(p.control_socket.c_str(), F_OK) != 0);  // cleaned up
  CHECK_FALSE(remove_stale_socket(p).value());          // nothing left to remove
}

TEST_CASE("VM state: a held lock keeps the socket, status decides running or paused", "[vmctl]") {
  test::TempDir dir;
  VmPaths p{dir.path(), dir / "config.json", dir / "lock", dir / "control.sock", dir / "console.log"};
  int ready[2], release[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(release) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // plays the VMM: holds the lock, its socket answers "paused"
    ::close(ready[0]);
    ::close(release[1]);
    auto lock = VmLock::try_acquire(p.lock);
    bool ok = lock && lock->write_pid(::getpid());
    auto server = ControlServer::start(p.control_socket, fake_vm("paused"));
    char c = ok && server ? 'y' : 'n';
    (void)!::write(ready[1], &c, 1);
    (void)!::read(release[0], &c, 1);
    if (server) (*server)->stop();
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(release[0]);
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  REQUIRE(c == 'y');

  CHECK_FALSE(remove_stale_socket(p).value());  // held: not stale
  auto st = query_vm_state(p);
  REQUIRE(st);
  CHECK(st->state == VmRunState::paused);
  CHECK(st->answered);
  CHECK(st->pid == 4321);  // from the status reply

  ::close(release[1]);
  int ws = 0;
  ::waitpid(child, &ws, 0);
  auto after = query_vm_state(p);
  REQUIRE(after);
  CHECK(after->state == VmRunState::off);
}

TEST_CASE("control: a listener that stopped accepting times out instead of hanging the client", "[vmctl]") {
  test::TempDir dir;
  std::string sock = dir / "stuck.sock";
  auto listener = unix_listen(sock, 0600);  // listens, never accepts: a stuck VMM
  REQUIRE(listener);
  std::vector<UniqueFd> queued;
  for (int i = 0; i < 64; ++i) {
    auto c = unix_connect(sock, 100);
    if (!c) {
      CHECK(c.error().code == Errc::timeout);
      CHECK_THAT(c.error().message, Catch::Contains("accepts no connections"));
      break;
    }
    queued.push_back(std::move(*c));
  }
  REQUIRE(queued.size() < 64);  // the backlog filled up
  auto t0 = std::chrono::steady_clock::now();
  auto r = control_call(sock, "status", json::object(), 300);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::timeout);
  CHECK(ms < 5000);
}
