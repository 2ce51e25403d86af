// The header and log encodings, UUIDs and sizes.
#include <catch2/catch.hpp>

#include <regex>

#include "vmm/base/parse_size.hpp"
#include "snapshot/disk/format.hpp"
#include "snapshot/disk/io.hpp"

using namespace cairn::disk;

namespace {
Header sample() {
  Header h;
  h.seq = 7;
  h.virtual_size = 1 << 30;
  h.block_shift = 16;
  h.bat_entries = (1 << 30) >> 16;
  h.bat_offset[0] = kLogOffset + h.log_bytes;
  h.bat_offset[1] = h.bat_offset[0] + h.bat_region_bytes();
  h.data_offset = h.bat_offset[1] + h.bat_region_bytes();
  h.generation = 3;
  h.uuid[0] = 0xab;
  h.has_parent = true;
  h.parent = ParentLink{{1, 2, 3}, 9, "../base.cdisk"};
  h.merge_kind = MergeKind::absorbing_parent;
  h.new_parent_exists = true;
  h.new_parent = ParentLink{{4}, 5, "gp.cdisk"};
  return h;
}
}  // namespace

TEST_CASE("a header round-trips through its 4 KiB slot") {
  std::array<uint8_t, kHeaderSlotBytes> slot;
  encode_header(sample(), slot);
  auto h = parse_header(slot);
  REQUIRE(h);
  CHECK(h->seq == 7);
  CHECK(h->generation == 3);
  CHECK(h->uuid[0] == 0xab);
  CHECK(h->parent.path == "../base.cdisk");
  CHECK(h->parent.generation == 9);
  CHECK(h->merge_kind == MergeKind::absorbing_parent);
  CHECK(h->new_parent.path == "gp.cdisk");
  CHECK(h->new_parent.uuid[0] == 4);
}

TEST_CASE("the newer valid header slot wins, a damaged one is skipped") {
  std::array<uint8_t, kHeaderSlotBytes> a, b;
  Header h = sample();
  encode_header(h, a);
  h.seq = 8;
  h.generation = 4;
  encode_header(h, b);
  int slot = -1;
  auto cur = pick_header(a, b, &slot);
  REQUIRE(cur);
  CHECK(slot == 1);
  CHECK(cur->generation == 4);
  b[100] ^= 1;
  cur = pick_header(a, b, &slot);
  REQUIRE(cur);
  CHECK(slot == 0);
  CHECK(cur->generation == 3);
  a[5] ^= 0x10;
  cur = pick_header(a, b, &slot);
  REQUIRE_FALSE(cur);
  CHECK(cur.error().code == cairn::Errc::corrupt);
}

TEST_CASE("log blocks are accepted only for their epoch and index") {
  std::array<uint8_t, kLogBlockBytes> blk;
  std::vector<LogRecord> recs{{1, 0x10001}, {5, kZeroEntry}};
  encode_log_block(3, 2, recs, blk);
  std::vector<LogRecord> out;
  REQUIRE(parse_log_block(blk, 3, 2, &out));
  REQUIRE(out.size() == 2);
  CHECK(out[1].block == 5);
  CHECK(out[0].entry == 0x10001);
  CHECK_FALSE(parse_log_block(blk, 4, 2, &out));
  CHECK_FALSE(parse_log_block(blk, 3, 1, &out));
  blk[40] ^= 4;
  CHECK_FALSE(parse_log_block(blk, 3, 2, &out));
}

TEST_CASE("UUIDs are random RFC 4122 version 4") {
  auto a = new_uuid(), b = new_uuid();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(*a != *b);
  CHECK(std::regex_match(uuid_text(*a), std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")));
}

TEST_CASE("sizes parse with binary units") {
  CHECK(*cairn::parse_size("1G") == (1ull << 30));
  CHECK(*cairn::parse_size("64K") == 65536);
  CHECK(*cairn::parse_size("4096") == 4096);
  CHECK_FALSE(cairn::parse_size("12Q"));
  CHECK_FALSE(cairn::parse_size("x"));
  CHECK_FALSE(cairn::parse_size("99999999999999T"));
}
