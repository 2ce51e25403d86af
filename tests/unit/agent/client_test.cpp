// The host client against the real agent server (fake file systems) over Unix
// sockets, directly and through a hybrid-vsock stand-in (CONNECT/OK relay).
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "guest-agent/agent/server.hpp"
#include "guest-agent/client/agent_client.hpp"
#include "guest-agent/client/vm_endpoint.hpp"
#include "tests/unit/agent/fake_fs.hpp"

using namespace cairn;
using namespace std::chrono_literals;
using cairn::test::FakeFs;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/cairn-agent-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    path = tmpl;
  }
  ~TempDir() { fs::remove_all(path); }
};

UniqueFd unix_listen(const std::string& path) {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  REQUIRE(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(::listen(s.get(), 4) == 0);
  return s;
}

// No Catch assertions: also used off the main thread. An empty fd on failure.
UniqueFd unix_connect(const std::string& path) {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return UniqueFd();
  return s;
}

// The agent server on a Unix socket, served by a thread.
struct AgentRig {
  TempDir dir;
  FakeFs fs;
  FreezeController fc{fs, nullptr};
  Dispatcher dispatcher;
  std::unique_ptr<AgentServer> server;
  std::thread thread;
  std::string path;

  explicit AgentRig(std::chrono::milliseconds freeze_timeout = 10s) : dispatcher(fc, freeze_timeout) {
    fs.table = {FakeFs::mount("/"), FakeFs::mount("/mnt")};
    path = (dir.path / "agent.sock").string();
    auto s = AgentServer::create(dispatcher, ServerOptions{std::nullopt, path});
    REQUIRE(s);
    server = std::move(*s);
    thread = std::thread([this] { run_ok = server->run().has_value(); });
  }
  ~AgentRig() {
    server->stop();
    thread.join();
    CHECK(run_ok);
  }
  bool run_ok = false;
  AgentEndpoint endpoint() const { return AgentEndpoint{AgentEndpoint::Kind::unix_socket, path, kAgentVsockPort}; }
};

// Stands in for the VMM's hybrid vsock socket: reads "CONNECT <port>\n",
// answers "OK 1\n" and relays to `target` when the port matches, else closes.
struct HybridProxy {
  std::string path;
  UniqueFd listener;
  std::thread thread;
  uint32_t port_seen = 0;
  HybridProxy(std::string p, std::string target, uint32_t port) : path(std::move(p)), listener(unix_listen(path)) {
    thread = std::thread([this, target, port] {
      UniqueFd c(::accept(listener.get(), nullptr, nullptr));
      if (!c) return;
      std::string line;
      char ch;
      while (::read(c.get(), &ch, 1) == 1 && ch != '\n') line += ch;
      if (std::sscanf(line.c_str(), "CONNECT %u", &port_seen) != 1 || port_seen != port) return;
      UniqueFd up = unix_connect(target);
      if (!up || ::write(c.get(), "OK 1\n", 5) != 5) return;
      pollfd p[2] = {{c.get(), POLLIN, 0}, {up.get(), POLLIN, 0}};
      char buf[4096];
      while (::poll(p, 2, 5000) > 0) {
        for (int i = 0; i < 2; ++i) {
          if (!p[i].revents) continue;
          ssize_t n = ::read(p[i].fd, buf, sizeof(buf));
          if (n <= 0 || ::write(p[1 - i].fd, buf, static_cast<size_t>(n)) != n) return;
        }
      }
    });
  }
  ~HybridProxy() {
    ::shutdown(listener.get(), SHUT_RDWR);
    thread.join();
  }
};

}  // namespace

TEST_CASE("client: ping, info, freeze, status, thaw against the agent server") {
  AgentRig rig;
  auto c = AgentClient::connect(rig.endpoint());
  REQUIRE(c);
  REQUIRE(c->ping());
  auto info = c->info();
  REQUIRE(info);
  CHECK(info->version == kAgentVersion);
  CHECK(info->commands.size() == 8);
  REQUIRE_FALSE(c->freeze_window());  // nothing frozen and thawed yet
  CHECK(*c->fsfreeze_status() == FreezeStatus::thawed);
  CHECK(*c->fsfreeze_freeze() == 2);
  CHECK(*c->fsfreeze_status() == FreezeStatus::frozen);
  auto again = c->fsfreeze_freeze();
  REQUIRE_FALSE(again);
  CHECK(again.error().code == Errc::invalid_state);
  auto unknown = c->execute("guest-exec", nlohmann::json{{"path", "/bin/true"}});
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == Errc::unsupported);
  CHECK(*c->fsfreeze_thaw() == 2);
  CHECK(rig.fs.frozen_count() == 0);
}

TEST_CASE("client: the frozen state outlives the connection; auto-thaw in the server loop") {
  AgentRig rig(300ms);
  {
    auto c = AgentClient::connect(rig.endpoint());
    REQUIRE(c);
    CHECK(*c->fsfreeze_freeze() == 2);
  }  // the host goes away while frozen
  auto c = AgentClient::connect(rig.endpoint());
  REQUIRE(c);
  CHECK(*c->fsfreeze_status() == FreezeStatus::frozen);
  std::this_thread::sleep_for(600ms);
  CHECK(rig.fs.frozen_count() == 0);
  CHECK(*c->fsfreeze_status() == FreezeStatus::thawed);
  CHECK(rig.dispatcher.auto_thaws() == 1);
}

TEST_CASE("client: through the hybrid vsock handshake") {
  AgentRig rig;
  std::string hybrid = (rig.dir.path / "vm.vsock").string();
  HybridProxy proxy(hybrid, rig.path, kAgentVsockPort);
  auto c = AgentClient::connect(AgentEndpoint{AgentEndpoint::Kind::hybrid_vsock, hybrid, kAgentVsockPort});
  REQUIRE(c);
  CHECK(proxy.port_seen == kAgentVsockPort);
  REQUIRE(c->ping());
  CHECK(*c->fsfreeze_freeze() == 2);
  CHECK(*c->fsfreeze_thaw() == 2);
}

TEST_CASE("client: no agent on the port, no socket, and silence are typed errors") {
  TempDir t;
  std::string hybrid = (t.path / "vm.vsock").string();
  {
    HybridProxy proxy(hybrid, "/nonexistent", 9999);  // closes: nobody on port 1234
    auto c = AgentClient::connect(AgentEndpoint{AgentEndpoint::Kind::hybrid_vsock, hybrid, kAgentVsockPort});
    REQUIRE_FALSE(c);
    CHECK(c.error().code == Errc::not_found);
  }
  auto missing = AgentClient::connect(AgentEndpoint{AgentEndpoint::Kind::hybrid_vsock, (t.path / "nope").string()});
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == Errc::not_found);

  // Accepts and never answers.
  std::string silent = (t.path / "silent.sock").string();
  UniqueFd l = unix_listen(silent);
  auto start = std::chrono::steady_clock::now();
  AgentTimeouts to;
  to.connect = 300ms;
  auto c = AgentClient::connect(AgentEndpoint{AgentEndpoint::Kind::unix_socket, silent}, to);
  REQUIRE_FALSE(c);
  CHECK(c.error().code == Errc::timeout);
  CHECK(std::chrono::steady_clock::now() - start < 3s);
}

TEST_CASE("client: sync skips stale replies and garbage left in the stream") {
  TempDir t;
  std::string path = (t.path / "stale.sock").string();
  UniqueFd l = unix_listen(path);
  bool peer_ok = false;
  std::thread peer([&] {
    UniqueFd c(::accept(l.get(), nullptr, nullptr));
    std::string got;
    char buf[512];
    while (got.find('\n') == std::string::npos) {
      ssize_t n = ::read(c.get(), buf, sizeof(buf));
      if (n <= 0) return;
      got.append(buf, static_cast<size_t>(n));
    }
    // What the client must send first: 0xFF, then guest-sync-delimited.
    if (got[0] != '\xff') return;
    auto req = nlohmann::json::parse(got.substr(1), nullptr, false);
    if (req.is_discarded() || req["execute"] != "guest-sync-delimited") return;
    std::string reply = "{\"return\": 17}\n{\"error\":{\"class\":\"GenericError\",\"desc\":\"x\"}}\nzz\n\xff{\"ret";
    reply += "\xff{\"return\": " + req["arguments"]["id"].dump() + "}\n";
    if (::write(c.get(), reply.data(), reply.size()) != static_cast<ssize_t>(reply.size())) return;
    // Then one command.
    if (::read(c.get(), buf, sizeof(buf)) <= 0) return;
    if (::write(c.get(), "{\"return\": {}}\n", 15) != 15) return;
    peer_ok = true;
    [[maybe_unused]] ssize_t n = ::read(c.get(), buf, sizeof(buf));  // until the client closes
  });
  {
    auto c = AgentClient::connect(AgentEndpoint{AgentEndpoint::Kind::unix_socket, path});
    REQUIRE(c);
    CHECK(c->ping());
  }
  peer.join();
  CHECK(peer_ok);
}

TEST_CASE("agent server: survives garbage, huge lines and abrupt disconnects") {
  AgentRig rig;
  {
    UniqueFd raw = unix_connect(rig.path);
    REQUIRE(raw);
    std::string junk = "not json\n{\"execute\": guest-ping}\n{\"execute\":\"" + std::string(200000, 'x') + "\"}\n";
    ::send(raw.get(), junk.data(), junk.size(), MSG_NOSIGNAL);
    UniqueFd rude = unix_connect(rig.path);
    REQUIRE(rude);
    ::send(rude.get(), "{\"execute\":\"guest-fsfreeze-freeze\"", 33, MSG_NOSIGNAL);
  }  // both vanish mid-request
  auto c = AgentClient::connect(rig.endpoint());
  REQUIRE(c);
  REQUIRE(c->ping());
  CHECK(*c->fsfreeze_status() == FreezeStatus::thawed);
}

TEST_CASE("vm endpoint: the vsock socket from the VM's config.json") {
  TempDir home;
  fs::create_directories(home.path / "vms/a");
  fs::create_directories(home.path / "vms/b");
  fs::create_directories(home.path / "vms/c");
  fs::create_directories(home.path / "vms/d");
  std::ofstream(home.path / "vms/a/config.json") << R"({"format": 1, "machine": {"vsock": {"cid": 3, "uds_path": "/run/a.vsock"}}})";
  std::ofstream(home.path / "vms/b/config.json") << R"({"machine": {"vsock": {"cid": 3, "uds_path": "vsock.sock"}}})";
  std::ofstream(home.path / "vms/c/config.json") << R"({"machine": {"cpus": 1, "vsock": null}})";
  std::ofstream(home.path / "vms/d/config.json") << "{broken";
  auto a = vm_agent_endpoint(home.path.string(), "a");
  REQUIRE(a);
  CHECK(a->path == "/run/a.vsock");
  CHECK(a->kind == AgentEndpoint::Kind::hybrid_vsock);
  auto b = vm_agent_endpoint(home.path.string(), "b");
  REQUIRE(b);
  CHECK(b->path == (home.path / "vms/b/vsock.sock").string());
  CHECK(vm_agent_endpoint(home.path.string(), "c").error().code == Errc::invalid_state);
  CHECK(vm_agent_endpoint(home.path.string(), "d").error().code == Errc::corrupt);
  CHECK(vm_agent_endpoint(home.path.string(), "zz").error().code == Errc::not_found);
  CHECK(vm_agent_endpoint(home.path.string(), "../a").error().code == Errc::invalid_argument);
}
