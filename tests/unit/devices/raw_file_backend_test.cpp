#include <catch2/catch.hpp>

#include "devices/raw_file_backend.hpp"
#include "test_support.hpp"

using namespace cairn;
using cairn::test::TempFile;

TEST_CASE("raw file backend opens only usable images") {
  auto missing = RawFileBackend::open("/nonexistent/cairn/disk.img", false);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == Errc::not_found);
  CHECK(missing.error().message.find("/nonexistent/cairn/disk.img") != std::string::npos);

  TempFile odd(1000);
  auto bad = RawFileBackend::open(odd.path, false);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == Errc::invalid_argument);
  CHECK(bad.error().message.find("multiple of 512") != std::string::npos);

  TempFile ok(4096, "abcdefghijklmnopqrstuvwxyz");
  auto be = RawFileBackend::open(ok.path, false);
  REQUIRE(be);
  CHECK((*be)->size() == 4096);
  CHECK((*be)->id() == "abcdefghijklmnopqrst");
  CHECK_FALSE((*be)->read_only());
}

TEST_CASE("raw file backend reads, writes, zeroes and discards within bounds") {
  TempFile f(8192);
  auto be = RawFileBackend::open(f.path, false);
  REQUIRE(be);
  auto& b = **be;
  std::vector<uint8_t> data(4096, 0x5a);
  REQUIRE(b.write(2048, data));
  REQUIRE(b.flush());
  std::vector<uint8_t> back(4096);
  REQUIRE(b.read(2048, back));
  CHECK(back == data);

  REQUIRE(b.write_zeroes(2048, 1024));
  REQUIRE(b.discard(4096, 1024));
  auto all = f.read_all();
  CHECK(std::all_of(all.begin() + 2048, all.begin() + 3072, [](uint8_t v) { return v == 0; }));
  CHECK(all[3072] == 0x5a);
  CHECK(std::all_of(all.begin() + 4096, all.begin() + 5120, [](uint8_t v) { return v == 0; }));
  CHECK(all[5120] == 0x5a);
  CHECK(all.size() == 8192);

  std::vector<uint8_t> one(1);
  CHECK_FALSE(b.read(8192, one));
  CHECK_FALSE(b.write(8191, std::vector<uint8_t>(2)));
  CHECK_FALSE(b.discard(UINT64_MAX - 10, 20));
  CHECK_FALSE(b.write_zeroes(4096, 8192));
}

TEST_CASE("raw file backend opened read-only refuses writes") {
  TempFile f(4096);
  auto be = RawFileBackend::open(f.path, true);
  REQUIRE(be);
  CHECK((*be)->read_only());
  auto w = (*be)->write(0, std::vector<uint8_t>(512, 1));
  REQUIRE_FALSE(w);
  CHECK(w.error().code == Errc::access_denied);
  CHECK_FALSE((*be)->discard(0, 512));
  CHECK((*be)->flush());
  std::vector<uint8_t> r(512);
  CHECK((*be)->read(0, r));
}

TEST_CASE("raw file backend notes the blocks written while tracking, and only then") {
  TempFile f(64 * 4096);
  auto be = RawFileBackend::open(f.path, false);
  REQUIRE(be);
  auto& b = **be;
  std::vector<uint8_t> one(512, 1);
  REQUIRE(b.write(0, one));  // before tracking: not noted
  CHECK_FALSE(b.tracking());
  b.track_writes(4096);
  CHECK(b.tracking());
  CHECK(b.tracked_block_size() == 4096);
  REQUIRE(b.write(5 * 4096 + 100, one));            // inside block 5
  REQUIRE(b.write(8 * 4096 - 256, one));            // straddles blocks 7 and 8
  REQUIRE(b.write_zeroes(20 * 4096, 2 * 4096));     // blocks 20, 21
  REQUIRE(b.discard(63 * 4096, 4096));              // the last block
  REQUIRE(b.write(5 * 4096, one));                  // block 5 again
  std::vector<uint8_t> back(512);
  REQUIRE(b.read(30 * 4096, back));                 // reads are not writes
  REQUIRE_FALSE(b.write(64 * 4096, one));           // refused: not noted
  CHECK(b.take_written_blocks() == std::vector<uint64_t>{5, 7, 8, 20, 21, 63});
  CHECK_FALSE(b.tracking());
  REQUIRE(b.write(40 * 4096, one));                 // tracking has stopped
  b.track_writes(4096);                             // a new round starts empty
  CHECK(b.take_written_blocks(true).empty());
  CHECK(b.tracking());                              // kept on
  REQUIRE(b.write(2 * 4096, one));
  CHECK(b.take_written_blocks(true) == std::vector<uint64_t>{2});
  REQUIRE(b.write(3 * 4096, one));                  // only what came after the last take
  CHECK(b.take_written_blocks() == std::vector<uint64_t>{3});
  CHECK_FALSE(b.tracking());
}
