#include <xxhash.h>

#include <catch2/catch.hpp>

#include "snapshot/memory/bytes.hpp"
#include "snapshot/state/container.hpp"

using namespace cairn;
using namespace cairn::snap;

namespace {
std::vector<Section> sample_sections() {
  std::vector<Section> s;
  s.push_back({1, 0, {'{', '}'}});
  s.push_back({32, 0, std::vector<uint8_t>(144, 0x11)});
  s.push_back({32, 1, std::vector<uint8_t>(144, 0x22)});
  s.push_back({7, 3, {}});  // an empty payload is allowed
  s.push_back({41, 0, {1, 2, 3, 4}});
  return s;
}

void expect_corrupt(std::span<const uint8_t> bytes, const std::string& what) {
  INFO(what);
  auto r = decode_sections(bytes, "state.bin");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::corrupt);
}
}  // namespace

TEST_CASE("state container: sections round trip in order") {
  auto in = sample_sections();
  auto bytes = encode_sections(in);
  REQUIRE(bytes);
  CHECK(bytes->size() == kStateHeaderSize + kStateEntrySize * in.size() + 2 + 288 + 4);
  auto out = decode_sections(*bytes, "state.bin");
  REQUIRE(out);
  REQUIRE(out->size() == in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    CHECK((*out)[i].type == in[i].type);
    CHECK((*out)[i].instance == in[i].instance);
    CHECK((*out)[i].payload == in[i].payload);
  }
}

// Regression (found by fuzz.checkpoint_parse under UBSan): an empty payload
// (e.g. a vCPU with no MSRs) was memcpy'd from a null data() pointer.
TEST_CASE("state container: empty payloads, first and last, round trip") {
  std::vector<Section> in{{36, 0, {}}, {1, 0, {'{', '}'}}, {36, 1, {}}};
  auto bytes = encode_sections(in);
  REQUIRE(bytes);
  CHECK(bytes->size() == kStateHeaderSize + kStateEntrySize * in.size() + 2);
  auto out = decode_sections(*bytes, "state.bin");
  REQUIRE(out);
  REQUIRE(out->size() == 3);
  CHECK((*out)[0].payload.empty());
  CHECK((*out)[1].payload == in[1].payload);
  CHECK((*out)[2].payload.empty());
}

TEST_CASE("state container: every single bit flip is refused") {
  auto bytes = *encode_sections(sample_sections());
  for (size_t off = 0; off < bytes.size(); ++off)
    for (int bit = 0; bit < 8; ++bit) {
      auto bad = bytes;
      bad[off] ^= static_cast<uint8_t>(1 << bit);
      expect_corrupt(bad, fmt::format("byte {} bit {}", off, bit));
    }
}

TEST_CASE("state container: truncation and extension are refused") {
  auto bytes = *encode_sections(sample_sections());
  for (size_t len = 0; len < bytes.size(); len += 7)
    expect_corrupt(std::span(bytes).first(len), fmt::format("truncated to {}", len));
  expect_corrupt(std::span(bytes).first(bytes.size() - 1), "last byte missing");
  auto longer = bytes;
  longer.push_back(0);
  expect_corrupt(longer, "a byte appended");
}

TEST_CASE("state container: resealed tables with bad bounds are refused") {
  auto good = *encode_sections(sample_sections());
  auto reseal = [](std::vector<uint8_t>& b) {
    uint32_t n = get_u32(b, 12);
    XXH3_state_t* st = XXH3_createState();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, b.data(), 24);
    XXH3_64bits_update(st, b.data() + kStateHeaderSize, n * kStateEntrySize);
    put_u64(b, 24, XXH3_64bits_digest(st));
    XXH3_freeState(st);
  };
  auto entry = [](size_t i) { return kStateHeaderSize + i * kStateEntrySize; };
  struct Case {
    const char* what;
    std::function<void(std::vector<uint8_t>&)> edit;
  };
  std::vector<Case> cases = {
      {"zero sections", [](auto& b) { put_u32(b, 12, 0); }},
      {"too many sections", [](auto& b) { put_u32(b, 12, kStateMaxSections + 1); }},
      {"more sections than fit", [](auto& b) { put_u32(b, 12, 1000); }},
      {"section out of place", [&](auto& b) { put_u64(b, entry(1) + 8, get_u64(b, entry(1) + 8) + 1); }},
      {"section too long", [&](auto& b) { put_u64(b, entry(4) + 16, 1ULL << 40); }},
      {"sections overlap", [&](auto& b) { put_u64(b, entry(2) + 8, get_u64(b, entry(1) + 8)); }},
      {"gap at the end", [&](auto& b) { put_u64(b, entry(4) + 16, 3); }},
      {"version 2", [](auto& b) { put_u32(b, 8, 2); }},
  };
  for (auto& c : cases) {
    auto bad = good;
    c.edit(bad);
    reseal(bad);
    expect_corrupt(bad, c.what);
    auto r = decode_sections(bad, "state.bin");
    INFO(c.what << ": " << r.error().message);
    CHECK_THAT(r.error().message, !Catch::Contains("table checksum"));
  }
}

TEST_CASE("state container: the encoder enforces the bounds") {
  std::vector<Section> none;
  CHECK(encode_sections(none).error().code == Errc::invalid_argument);
  std::vector<Section> big = {{1, 0, std::vector<uint8_t>(kStateMaxSectionBytes + 1)}};
  CHECK(encode_sections(big).error().code == Errc::invalid_argument);
  std::vector<Section> many(kStateMaxSections + 1, Section{1, 0, {}});
  CHECK(encode_sections(many).error().code == Errc::invalid_argument);
}
