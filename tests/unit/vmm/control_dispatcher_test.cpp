#include <catch2/catch.hpp>

#include "vmm/control/dispatcher.hpp"
#include "vmm/control/protocol.hpp"

using namespace cairn;
using nlohmann::json;

namespace {
ControlDispatcher fake_table() {
  ControlDispatcher d;
  d.add("echo", [](const json& args) -> Result<json> { return json{{"got", args}}; });
  d.add("refuse", [](const json&) -> Result<json> { return fail(Errc::invalid_state, "the VM is off"); });
  d.add("throw", [](const json& args) -> Result<json> { return json{{"n", args.at("missing").get<int>()}}; });
  return d;
}
}  // namespace

TEST_CASE("dispatcher: a handler's return and its arguments", "[vmctl]") {
  auto d = fake_table();
  json r = d.dispatch_line(R"({"command":"echo","arguments":{"x":1}})");
  CHECK(r == json{{"return", {{"got", {{"x", 1}}}}}});
  // No "arguments": the handler gets {}.
  CHECK(d.dispatch_line(R"({"command":"echo"})")["return"]["got"] == json::object());
  CHECK(d.has("echo"));
  CHECK(d.commands() == std::vector<std::string>{"echo", "refuse", "throw"});
}

TEST_CASE("dispatcher: errors keep their kind as the error class", "[vmctl]") {
  auto d = fake_table();
  json r = d.dispatch_line(R"({"command":"refuse"})");
  CHECK(r["error"]["class"] == "InvalidState");
  CHECK(r["error"]["desc"] == "the VM is off");
  auto back = control_reply_result(r);
  REQUIRE_FALSE(back);
  CHECK(back.error().code == Errc::invalid_state);
  CHECK(back.error().message == "the VM is off");
}

TEST_CASE("dispatcher: malformed requests get an error reply, never a throw", "[vmctl]") {
  auto d = fake_table();
  for (const char* line : {"", "{", "not json", "[1,2]", "42", "\"status\"", R"({"cmd":"echo"})",
                           R"({"command":7})", R"({"command":"echo","arguments":[1]})",
                           "{\"command\":\"echo\"}\xff"}) {
    INFO(line);
    json r = d.dispatch_line(line);
    REQUIRE(r.contains("error"));
    CHECK(r["error"]["class"] == "InvalidParameter");
  }
  json unknown = d.dispatch_line(R"({"command":"reboot-the-world"})");
  CHECK(unknown["error"]["class"] == "CommandNotFound");
  json thrown = d.dispatch_line(R"({"command":"throw"})");
  CHECK(thrown["error"]["class"] == "GenericError");
  CHECK_THAT(thrown["error"]["desc"].get<std::string>(), Catch::Contains("throw"));
}

TEST_CASE("dispatcher: a later add replaces a command (tables are extensible)", "[vmctl]") {
  auto d = fake_table();
  d.add("echo", [](const json&) -> Result<json> { return json{{"v", 2}}; });
  d.add("checkpoint-create", [](const json&) -> Result<json> { return json{{"id", "c1"}}; });
  CHECK(d.dispatch_line(R"({"command":"echo"})")["return"]["v"] == 2);
  CHECK(d.dispatch_line(R"({"command":"checkpoint-create"})")["return"]["id"] == "c1");
}

TEST_CASE("protocol: every error kind maps to a class and back", "[vmctl]") {
  for (Errc c : {Errc::failed, Errc::invalid_argument, Errc::invalid_state, Errc::not_found, Errc::access_denied,
                 Errc::out_of_memory, Errc::no_space, Errc::corrupt, Errc::unsupported, Errc::busy, Errc::timeout})
    CHECK(control_errc_from_class(control_error_class(c)) == c);
  CHECK(control_error_class(Errc::io) == "GenericError");
  CHECK(control_errc_from_class("SomethingNew") == Errc::failed);
  // Replies of the wrong shape are errors, not crashes.
  CHECK(control_reply_result(json::array()).error().code == Errc::corrupt);
  CHECK(control_reply_result(json{{"neither", 1}}).error().code == Errc::corrupt);
  auto odd = control_reply_result(json{{"error", {{"class", 5}, {"desc", nullptr}}}});
  REQUIRE_FALSE(odd);
  CHECK(odd.error().code == Errc::failed);
}
