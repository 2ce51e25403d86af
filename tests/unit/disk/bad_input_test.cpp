// Damaged, truncated, misplaced and cyclic layers: each a clear error.
#include <fcntl.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>

#include "snapshot/disk/inspect.hpp"
#include "snapshot/disk/io.hpp"
#include "tests/unit/disk/disk_test_util.hpp"
#include "vmm/base/unique_fd.hpp"

using namespace cairn;
using namespace cairn::disk;
using namespace cairn::disk::test;

namespace {

std::vector<uint8_t> slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void spit(const std::string& p, const std::vector<uint8_t>& d) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(d.data()), std::streamsize(d.size()));
}

std::span<uint8_t, kHeaderSlotBytes> slot_at(std::vector<uint8_t>& img, size_t index) {
  return std::span<uint8_t, kHeaderSlotBytes>(img.data() + index * kHeaderSlotBytes, kHeaderSlotBytes);
}

// Rewrites both header slots of a layer after `edit` changed the header.
template <class F>
void patch_header(const std::string& path, F edit) {
  auto img = slurp(path);
  auto h = pick_header(std::span(img).first(kHeaderSlotBytes), std::span(img).subspan(kHeaderSlotBytes, kHeaderSlotBytes), nullptr);
  REQUIRE(h);
  edit(*h);
  encode_header(*h, slot_at(img, 0));
  encode_header(*h, slot_at(img, 1));
  spit(path, img);
}

std::string make_layer_with_data(const TempDir& dir, const std::string& name) {
  std::string p = dir / name;
  REQUIRE(create_base(p, 1 << 20, 12));
  auto c = open_chain(p, true);
  REQUIRE(c);
  std::vector<uint8_t> d(20000, 9);
  REQUIRE((*c)->write(5000, d));
  REQUIRE((*c)->flush());
  return p;
}

Errc open_error(const std::string& top) {
  auto c = open_chain(top, false);
  REQUIRE_FALSE(c);
  INFO(c.error().message);
  CHECK_FALSE(c.error().message.empty());
  return c.error().code;
}

// Exit code of the cairn CLI (built with the tests: `cmake --build` builds every target).
int cli(const std::string& args) {
  INFO("the cairn CLI must be built: " << CAIRN_CLI);
  REQUIRE(::access(CAIRN_CLI, X_OK) == 0);
  int rc = std::system((std::string(CAIRN_CLI) + " " + args + " >/dev/null 2>&1").c_str());
  return WEXITSTATUS(rc);
}

}  // namespace

TEST_CASE("truncated layer files are rejected at every length") {
  TempDir dir;
  auto p = make_layer_with_data(dir, "l");
  auto img = slurp(p);
  for (size_t len : {size_t(0), size_t(100), size_t(4096), size_t(8191), size_t(8192), size_t(20000),
                     img.size() / 2, img.size() - 4096, img.size() - 1}) {
    INFO(len);
    auto r = validate_layer_image(std::span(img).first(len));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
  }
  REQUIRE(validate_layer_image(img));
}

TEST_CASE("a flipped bit in one header slot falls back to the other; in both it is refused") {
  TempDir dir;
  auto p = make_layer_with_data(dir, "l");
  auto img = slurp(p);
  auto one = img;
  one[kHeaderSlotBytes + 30] ^= 0x20;  // slot 1
  CHECK(validate_layer_image(one));
  one[30] ^= 0x20;  // and slot 0
  auto r = validate_layer_image(one);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::corrupt);
  CHECK(r.error().message.find("header") != std::string::npos);
}

TEST_CASE("a flipped bit in the table is caught by its checksum") {
  TempDir dir;
  auto p = make_layer_with_data(dir, "l");
  {
    auto l = Layer::open(p, false);
    REQUIRE(l);
  }
  auto img = slurp(p);
  auto h = pick_header(std::span(img).first(kHeaderSlotBytes), std::span(img).subspan(kHeaderSlotBytes, kHeaderSlotBytes), nullptr);
  REQUIRE(h);
  img[h->bat_offset[h->bat_active] + 3] ^= 1;
  auto r = validate_layer_image(img);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("BAT checksum") != std::string::npos);
  spit(p, img);
  CHECK(cli("disk check " + p) == 8);
}

TEST_CASE("table entries pointing outside the file are refused even with a good checksum") {
  TempDir dir;
  auto p = make_layer_with_data(dir, "l");
  {
    auto l = Layer::open(p, true);  // a checkpoint: the table is in the BAT copy, not the log
    REQUIRE(l);
  }
  auto img = slurp(p);
  auto h = pick_header(std::span(img).first(kHeaderSlotBytes), std::span(img).subspan(kHeaderSlotBytes, kHeaderSlotBytes), nullptr);
  REQUIRE(h);
  uint64_t* bat = reinterpret_cast<uint64_t*>(img.data() + h->bat_offset[h->bat_active]);
  for (uint64_t bad : {make_data_entry(img.size() + 4096 * 10), make_data_entry(4096), uint64_t(3),
                       make_data_entry(h->data_offset) | 0x100}) {
    auto copy = img;
    uint64_t* b = reinterpret_cast<uint64_t*>(copy.data() + h->bat_offset[h->bat_active]);
    b[7] = bad;
    Header nh = *h;
    nh.bat_checksum = checksum(std::span(reinterpret_cast<const uint8_t*>(b), nh.bat_bytes()));
    nh.seq += 5;
    encode_header(nh, slot_at(copy, 0));
    auto r = validate_layer_image(copy);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
  }
  // Two blocks sharing one data slot.
  auto copy = img;
  uint64_t* b = reinterpret_cast<uint64_t*>(copy.data() + h->bat_offset[h->bat_active]);
  REQUIRE(entry_state(bat[2]) == EntryState::data);
  b[100] = b[2];
  Header nh = *h;
  nh.bat_checksum = checksum(std::span(reinterpret_cast<const uint8_t*>(b), nh.bat_bytes()));
  nh.seq += 5;
  encode_header(nh, slot_at(copy, 0));
  auto r = validate_layer_image(copy);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("shares") != std::string::npos);
}

TEST_CASE("a replaced, modified or missing parent is refused") {
  TempDir dir;
  auto base = make_layer_with_data(dir, "base");
  REQUIRE(create_child(base, dir / "child"));
  REQUIRE(read_all(dir / "child").size() == 1 << 20);

  SECTION("modified after the child was made") {
    auto c = open_chain(base, true);
    REQUIRE(c);
    std::vector<uint8_t> d(10, 1);
    REQUIRE((*c)->write(0, d));
    c->reset();
    CHECK(open_error(dir / "child") == Errc::corrupt);
    CHECK(cli("disk check " + dir / "child") == 8);
  }
  SECTION("replaced by another layer at the same path") {
    std::filesystem::rename(base, dir / "old");
    make_layer_with_data(dir, "base");
    CHECK(open_error(dir / "child") == Errc::corrupt);
  }
  SECTION("moved away") {
    std::filesystem::rename(base, dir / "old");
    CHECK(open_error(dir / "child") == Errc::not_found);
  }
  SECTION("a different size") {
    std::filesystem::rename(base, dir / "old");
    REQUIRE(create_base(base, 2 << 20, 12));
    patch_header(base, [&](Header& h) {
      auto l = Layer::open(dir / "old", false);
      REQUIRE(l);
      h.uuid = (*l)->header().uuid;
      h.generation = (*l)->header().generation;
    });
    CHECK(open_error(dir / "child") == Errc::corrupt);
  }
}

TEST_CASE("parent cycles and over-deep chains are refused") {
  TempDir dir;
  REQUIRE(create_base(dir / "a", 1 << 20, 12));
  REQUIRE(create_child(dir / "a", dir / "b"));
  Header bh;
  {
    auto l = Layer::open(dir / "b", false);
    REQUIRE(l);
    bh = (*l)->header();
  }
  patch_header(dir / "a", [&](Header& h) {
    h.has_parent = true;
    h.parent = ParentLink{bh.uuid, bh.generation, "b"};
  });
  CHECK(open_error(dir / "b") == Errc::corrupt);
  patch_header(dir / "a", [&](Header& h) { h.parent.path = "a"; });  // its own parent
  CHECK(open_error(dir / "a") == Errc::corrupt);

  REQUIRE(create_base(dir / "d0", 1 << 16, 12));
  std::string top = dir / "d0";
  for (int i = 1; i < kMaxChainDepth; ++i) {
    std::string next = dir / ("d" + std::to_string(i));
    REQUIRE(create_child(top, next));
    top = next;
  }
  REQUIRE(open_chain(top, false));  // exactly the maximum
  REQUIRE(create_child(top, dir / "deep"));  // creating is fine, the parent opens
  auto r = open_chain(dir / "deep", false);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("deeper") != std::string::npos);
}

TEST_CASE("a corpus of corrupted headers never crashes the parser") {
  TempDir dir;
  auto p = make_layer_with_data(dir, "l");
  auto img = slurp(p);
  std::mt19937_64 rng(42);
  int accepted = 0, refused = 0;
  for (int i = 0; i < 1500; ++i) {
    auto copy = img;
    int flips = 1 + int(rng() % 8);
    for (int f = 0; f < flips; ++f) copy[rng() % (2 * kHeaderSlotBytes)] ^= uint8_t(1u << (rng() % 8));
    if (i % 3 == 0) {
      // Re-seal slot 1 so the damage reaches the field checks, not just the checksum.
      uint64_t sum = checksum(std::span(copy).subspan(kHeaderSlotBytes, 4088));
      std::memcpy(copy.data() + kHeaderSlotBytes + 4088, &sum, 8);
    }
    if (i % 7 == 0) copy.resize(rng() % copy.size());
    auto r = validate_layer_image(copy);
    (r ? accepted : refused)++;
    if (!r) CHECK_FALSE(r.error().message.empty());
  }
  CHECK(refused > 0);
  CHECK(accepted + refused == 1500);
}

TEST_CASE("create_child_of_top reads only the parent's layer; the new chain reads as the parent did") {
  TempDir dir;
  auto base = make_layer_with_data(dir, "base");
  REQUIRE(create_child(base, dir / "mid"));
  REQUIRE(create_child_of_top(dir / "mid", dir / "top"));
  CHECK(read_all(dir / "top") == read_all(base));
  {
    auto c = open_chain(dir / "top", false);
    REQUIRE(c);
    CHECK((*c)->layers().size() == 3);
  }
  SECTION("a parent in the middle of a merge gets no child") {
    patch_header(dir / "top", [](Header& h) { h.merge_kind = MergeKind::absorbing_child; });
    auto r = create_child_of_top(dir / "top", dir / "next");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_state);
    CHECK_FALSE(std::filesystem::exists(dir / "next"));
  }
  SECTION("a missing parent") {
    auto r = create_child_of_top(dir / "nothing", dir / "next");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::not_found);
  }
}
