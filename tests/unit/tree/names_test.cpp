#include <cstdlib>
#include <ctime>

#include <catch2/catch.hpp>

#include "snapshot/tree/checkpoint_tree.hpp"
#include "snapshot/tree/utf8.hpp"

using namespace cairn;
using namespace cairn::tree;

namespace {

std::string repeat(std::string_view s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

std::string refusal(std::string_view name) {
  auto r = validate_name(name);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::invalid_argument);
  return r.error().message;
}

// Runs the test with TZ=UTC so local time is predictable; restores TZ after.
struct UtcZone {
  std::string saved;
  bool had = false;
  UtcZone() {
    if (const char* tz = std::getenv("TZ")) saved = tz, had = true;
    ::setenv("TZ", "UTC", 1);
    ::tzset();
  }
  ~UtcZone() {
    if (had) ::setenv("TZ", saved.c_str(), 1);
    else ::unsetenv("TZ");
    ::tzset();
  }
};

std::time_t utc(int y, int mon, int d, int h, int m, int s) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = s;
  return ::timegm(&tm);
}

size_t code_points(std::string_view s) {
  auto cps = decode_utf8(s);
  REQUIRE(cps);
  return cps->size();
}

}  // namespace

TEST_CASE("names are limited in code points, not bytes") {
  CHECK(validate_name(repeat("é", 100)));  // 200 bytes, 100 characters
  CHECK(validate_name(repeat("a", 100)));
  CHECK(refusal(repeat("é", 101)) == "a checkpoint name can have at most 100 characters (this one has 101)");
  CHECK(refusal(repeat("a", 101)) == "a checkpoint name can have at most 100 characters (this one has 101)");
  CHECK(validate_name("日本語のチェックポイント"));
  CHECK(validate_name("before 🚀 launch"));
  CHECK(validate_name("web1 (11/28/2026 - 01:02:03 AM)"));
}

TEST_CASE("blank names are refused") {
  CHECK(refusal("") == "a checkpoint name cannot be blank");
  CHECK(refusal("    ") == "a checkpoint name cannot be blank");
  CHECK(refusal(" \u3000\u00a0 ") == "a checkpoint name cannot be blank");  // ideographic and no-break spaces
  CHECK(validate_name(" x "));
}

TEST_CASE("control characters are refused") {
  CHECK(refusal("line\nbreak") == "a checkpoint name cannot contain control characters (U+000A at character 5)");
  CHECK_THAT(refusal("tab\there"), Catch::Contains("U+0009"));
  CHECK_THAT(refusal("del\x7f"), Catch::Contains("U+007F"));
  CHECK_THAT(refusal("c1\xc2\x85"), Catch::Contains("U+0085"));
  CHECK_THAT(refusal(std::string("nul\0x", 5)), Catch::Contains("U+0000"));
}

TEST_CASE("names must be valid UTF-8") {
  CHECK_THAT(refusal("bad\xff"), Catch::Contains("must be valid UTF-8 (bad byte 0xff at offset 3)"));
  CHECK_THAT(refusal("cut\xc3"), Catch::Contains("must be valid UTF-8"));         // truncated sequence
  CHECK_THAT(refusal("\xc0\xaf"), Catch::Contains("must be valid UTF-8"));        // overlong '/'
  CHECK_THAT(refusal("\xe0\x80\xaf"), Catch::Contains("must be valid UTF-8"));    // overlong, 3 bytes
  CHECK_THAT(refusal("\xed\xa0\x80"), Catch::Contains("must be valid UTF-8"));    // UTF-16 surrogate
  CHECK_THAT(refusal("\xf4\x90\x80\x80"), Catch::Contains("must be valid UTF-8")); // past U+10FFFF
  CHECK_THAT(refusal("a\xa9"), Catch::Contains("offset 1"));                      // stray continuation
}

TEST_CASE("descriptions allow line breaks but no other control characters") {
  CHECK(validate_description(""));
  CHECK(validate_description("first line\n\tsecond line\r\n"));
  CHECK_FALSE(validate_description("bell\a"));
  CHECK_FALSE(validate_description("bad\xff"));
  CHECK(validate_description(std::string(kMaxDescriptionBytes, 'x')));
  auto r = validate_description(std::string(kMaxDescriptionBytes + 1, 'x'));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::invalid_argument);
}

TEST_CASE("default names follow Hyper-V's pattern in local time") {
  UtcZone zone;
  CHECK(default_name("web1", utc(2026, 11, 28, 1, 2, 3)) == "web1 (11/28/2026 - 01:02:03 AM)");
  CHECK(default_name("web1", utc(2026, 1, 5, 0, 0, 5)) == "web1 (01/05/2026 - 12:00:05 AM)");   // midnight
  CHECK(default_name("web1", utc(2026, 7, 4, 12, 0, 0)) == "web1 (07/04/2026 - 12:00:00 PM)");  // noon
  CHECK(default_name("web1", utc(2026, 7, 4, 11, 59, 59)) == "web1 (07/04/2026 - 11:59:59 AM)");
  CHECK(default_name("web1", utc(2026, 7, 4, 13, 5, 9)) == "web1 (07/04/2026 - 01:05:09 PM)");
  CHECK(default_name("web1", utc(2026, 12, 31, 23, 59, 59)) == "web1 (12/31/2026 - 11:59:59 PM)");
}

TEST_CASE("default names cut a long VM name to fit") {
  UtcZone zone;
  std::time_t t = utc(2026, 11, 28, 1, 2, 3);
  const std::string suffix = " (11/28/2026 - 01:02:03 AM)";

  std::string ascii = default_name(repeat("v", 120), t);
  CHECK(ascii == repeat("v", 100 - suffix.size()) + suffix);
  CHECK(validate_name(ascii));

  std::string wide = default_name(repeat("é", 90), t);
  CHECK(code_points(wide) == 100);
  CHECK(wide == repeat("é", 100 - suffix.size()) + suffix);  // never half a character
  CHECK(validate_name(wide));

  std::string exact = default_name(repeat("é", 73), t);
  CHECK(exact == repeat("é", 73) + suffix);
}
