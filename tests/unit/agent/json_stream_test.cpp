#include <catch2/catch.hpp>

#include "guest-agent/protocol/json_stream.hpp"

using namespace cairn;

namespace {
std::vector<JsonFrame> feed(JsonStreamReader& r, std::string_view s) {
  std::vector<JsonFrame> out;
  r.feed(s, out);
  return out;
}
}  // namespace

TEST_CASE("json stream: objects with and without newlines, split anywhere") {
  JsonStreamReader r;
  auto f = feed(r, "{\"execute\":\"guest-ping\"}\n{\"a\":[1,{\"b\":2}]}{\"c\":3}");
  REQUIRE(f.size() == 3);
  CHECK(f[0].kind == JsonFrame::text);
  CHECK(f[0].data == "{\"execute\":\"guest-ping\"}");
  CHECK(f[1].data == "{\"a\":[1,{\"b\":2}]}");
  CHECK(f[2].data == "{\"c\":3}");
  CHECK_FALSE(r.partial());

  std::string whole = "{\"execute\": \"guest-sync\", \"arguments\": {\"id\": 7}}";
  std::vector<JsonFrame> out;
  for (char c : whole) r.feed(std::string_view(&c, 1), out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].data == whole);
}

TEST_CASE("json stream: brackets and quotes inside strings do not count") {
  JsonStreamReader r;
  auto f = feed(r, R"({"s":"}}{[\"x\\"} )");
  REQUIRE(f.size() == 1);
  CHECK(f[0].data == R"({"s":"}}{[\"x\\"})");
}

TEST_CASE("json stream: 0xFF drops a partial text") {
  JsonStreamReader r;
  CHECK(feed(r, "{\"execute\":\"gue").empty());
  CHECK(r.partial());
  auto f = feed(r, "\xff{\"execute\":\"guest-ping\"}\n");
  REQUIRE(f.size() == 1);
  CHECK(f[0].data == "{\"execute\":\"guest-ping\"}");
}

TEST_CASE("json stream: garbage outside a text is one error, then reading goes on") {
  JsonStreamReader r;
  auto f = feed(r, "hello world\n42 {\"x\":1}");
  REQUIRE(f.size() == 3);
  CHECK(f[0].kind == JsonFrame::error);
  CHECK(f[1].kind == JsonFrame::error);
  CHECK(f[2].kind == JsonFrame::text);
  CHECK(f[2].data == "{\"x\":1}");
}

TEST_CASE("json stream: an oversized text is one error and is skipped to the newline") {
  JsonStreamReader r;
  std::string huge = "{\"execute\":\"" + std::string(kMaxJsonText + 10, 'a') + "\"}\n";
  auto f = feed(r, huge + "{\"ok\":1}\n");
  REQUIRE(f.size() == 2);
  CHECK(f[0].kind == JsonFrame::error);
  CHECK(f[0].data.find("exceeds") != std::string::npos);
  CHECK(f[1].data == "{\"ok\":1}");
}

TEST_CASE("json stream: nesting too deep is one error") {
  JsonStreamReader r;
  std::string deep(kMaxJsonDepth + 5, '[');
  auto f = feed(r, deep + "\n{\"ok\":1}");
  REQUIRE(f.size() == 2);
  CHECK(f[0].kind == JsonFrame::error);
  CHECK(f[1].data == "{\"ok\":1}");
}
