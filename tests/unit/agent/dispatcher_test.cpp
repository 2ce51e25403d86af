#include <chrono>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "guest-agent/agent/dispatcher.hpp"
#include "tests/unit/agent/fake_fs.hpp"

using namespace cairn;
using nlohmann::json;
using cairn::test::FakeFs;
using cairn::test::FakeHooks;
using namespace std::chrono_literals;

namespace {

struct Rig {
  FakeFs fs;
  FakeHooks hooks;
  FreezeController fc{fs, &hooks};
  Dispatcher d{fc, 10s};
  Dispatcher::Clock::time_point now{};
  Rig() { fs.table = {FakeFs::mount("/"), FakeFs::mount("/mnt")}; }

  std::string raw(std::string text) { return d.handle(JsonFrame{JsonFrame::text, std::move(text)}, now); }
  json call(std::string text) {
    std::string out = raw(std::move(text));
    REQUIRE(!out.empty());
    REQUIRE(out.back() == '\n');
    if (out[0] == '\xff') out.erase(0, 1);
    return json::parse(out);
  }
  json exec(const std::string& cmd) { return call(json{{"execute", cmd}}.dump()); }
};

void require_error(const json& r, const std::string& cls, const std::string& needle) {
  INFO(r.dump());
  REQUIRE(r.contains("error"));
  CHECK(r["error"]["class"] == cls);
  CHECK(r["error"]["desc"].get<std::string>().find(needle) != std::string::npos);
}

}  // namespace

TEST_CASE("dispatcher: ping, sync, sync-delimited, info shapes") {
  Rig r;
  CHECK(r.exec("guest-ping") == json{{"return", json::object()}});
  CHECK(r.call(R"({"execute":"guest-sync","arguments":{"id":1234567890123}})") == json{{"return", 1234567890123}});
  std::string delimited = r.raw(R"({"execute":"guest-sync-delimited","arguments":{"id":-5}})");
  CHECK(delimited == "\xff{\"return\":-5}\n");

  json info = r.exec("guest-info")["return"];
  CHECK(info["version"].is_string());
  REQUIRE(info["supported_commands"].is_array());
  std::set<std::string> names;
  for (const auto& c : info["supported_commands"]) {
    names.insert(c["name"].get<std::string>());
    CHECK(c["enabled"] == true);
    CHECK(c["success-response"] == true);
  }
  CHECK(names == std::set<std::string>{"guest-sync", "guest-sync-delimited", "guest-ping", "guest-info",
                                       "guest-fsfreeze-status", "guest-fsfreeze-freeze", "guest-fsfreeze-thaw",
                                       "cairn-fsfreeze-window"});
}

TEST_CASE("dispatcher: the request id is echoed") {
  Rig r;
  json out = r.call(R"({"execute":"guest-ping","id":"abc"})");
  CHECK(out["id"] == "abc");
  CHECK(out.contains("return"));
  out = r.call(R"({"execute":"nope","id":7})");
  CHECK(out["id"] == 7);
  CHECK(out.contains("error"));
}

TEST_CASE("dispatcher: malformed, unknown and ill-typed requests get protocol errors") {
  Rig r;
  require_error(r.call("{\"execute\": guest-ping}"), "GenericError", "JSON parse error");
  require_error(r.call("[1,2]"), "GenericError", "must be a JSON object");
  require_error(r.call(R"({"arguments":{}})"), "GenericError", "lacks member 'execute'");
  require_error(r.call(R"({"execute":5})"), "GenericError", "'execute' must be a string");
  require_error(r.call(R"({"execute":"guest-ping","extra":1})"), "GenericError", "'extra' is unexpected");
  require_error(r.exec("guest-exec"), "CommandNotFound", "guest-exec has not been found");
  require_error(r.call(R"({"execute":"guest-sync"})"), "GenericError", "'id' is missing");
  require_error(r.call(R"({"execute":"guest-sync","arguments":{"id":"x"}})"), "GenericError", "expected: integer");
  require_error(r.call(R"({"execute":"guest-ping","arguments":{"x":1}})"), "GenericError", "'x' is unexpected");
  require_error(r.call(R"({"execute":"guest-ping","arguments":[]})"), "GenericError", "must be an object");
  // A frame the stream reader rejected.
  json e = json::parse(r.d.handle(JsonFrame{JsonFrame::error, "request exceeds 65536 bytes"}, r.now));
  require_error(e, "GenericError", "exceeds");
  // Invalid UTF-8 inside a string cannot break the reply.
  require_error(r.call("{\"execute\":\"\xc3\x28\"}"), "GenericError", "JSON parse error");
  // Still answering.
  CHECK(r.exec("guest-ping").contains("return"));
}

TEST_CASE("dispatcher: freeze, status, commands disabled while frozen, thaw") {
  Rig r;
  require_error(r.exec("cairn-fsfreeze-window"), "GenericError", "no freeze has been thawed");
  CHECK(r.exec("guest-fsfreeze-status")["return"] == "thawed");
  CHECK(r.exec("guest-fsfreeze-freeze")["return"] == 2);
  CHECK(r.d.frozen());
  CHECK(r.exec("guest-fsfreeze-status")["return"] == "frozen");
  require_error(r.exec("guest-fsfreeze-freeze"), "CommandNotFound", "has been disabled");
  CHECK(r.exec("guest-ping").contains("return"));
  CHECK(r.call(R"({"execute":"guest-sync","arguments":{"id":3}})")["return"] == 3);
  json info = r.exec("guest-info")["return"];
  for (const auto& c : info["supported_commands"])
    CHECK(c["enabled"] == (c["name"] != "guest-fsfreeze-freeze"));
  CHECK(r.fs.frozen_count() == 2);

  require_error(r.exec("cairn-fsfreeze-window"), "GenericError", "no freeze has been thawed");  // still frozen
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(r.exec("guest-fsfreeze-thaw")["return"] == 2);
  CHECK_FALSE(r.d.frozen());
  CHECK(r.fs.frozen_count() == 0);
  // Frozen to thawed, timed by the agent: at least the 20 ms it stood frozen.
  json w = r.exec("cairn-fsfreeze-window")["return"];
  CHECK(w["filesystems"] == 2);
  CHECK(w["frozen-ms"].get<double>() >= 20.0);
  CHECK(w["thaw-ms"].get<double>() >= 0.0);
  CHECK(w["thaw-ms"].get<double>() <= w["frozen-ms"].get<double>());
  CHECK(r.exec("guest-fsfreeze-status")["return"] == "thawed");
  // Thaw when nothing is frozen: 0, no thaw hook.
  auto hooks_before = r.hooks.calls.size();
  CHECK(r.exec("guest-fsfreeze-thaw")["return"] == 0);
  CHECK(r.hooks.calls.size() == hooks_before);
}

TEST_CASE("dispatcher: a failed freeze reports an error and leaves the guest thawed") {
  Rig r;
  r.fs.fail_on = "/mnt";
  require_error(r.exec("guest-fsfreeze-freeze"), "GenericError", "freezing /mnt");
  CHECK_FALSE(r.d.frozen());
  CHECK(r.fs.frozen_count() == 0);
  CHECK(r.exec("guest-fsfreeze-status")["return"] == "thawed");
}

TEST_CASE("dispatcher: nothing freezable gives 0 and stays thawed") {
  Rig r;
  r.fs.table.clear();
  CHECK(r.exec("guest-fsfreeze-freeze")["return"] == 0);
  CHECK(r.exec("guest-fsfreeze-status")["return"] == "thawed");
}

TEST_CASE("dispatcher: thaws by itself once the freeze timeout passes") {
  Rig r;
  CHECK(r.exec("guest-fsfreeze-freeze")["return"] == 2);
  REQUIRE(r.d.thaw_deadline());
  CHECK(*r.d.thaw_deadline() == r.now + 10s);
  CHECK_FALSE(r.d.on_timer(r.now + 9s));
  CHECK(r.d.frozen());
  CHECK(r.d.on_timer(r.now + 10s));
  CHECK_FALSE(r.d.frozen());
  CHECK(r.fs.frozen_count() == 0);
  CHECK(r.d.auto_thaws() == 1);
  CHECK(r.hooks.calls.back() == "thaw");
  CHECK_FALSE(r.d.thaw_deadline());

  // A request arriving after the deadline sees the thawed state.
  CHECK(r.exec("guest-fsfreeze-freeze")["return"] == 2);
  r.now += 11s;
  CHECK(r.exec("guest-fsfreeze-status")["return"] == "thawed");
}

TEST_CASE("dispatcher: shutdown thaws") {
  Rig r;
  CHECK(r.exec("guest-fsfreeze-freeze")["return"] == 2);
  r.d.shutdown();
  CHECK(r.fs.frozen_count() == 0);
  CHECK_FALSE(r.d.frozen());
}
