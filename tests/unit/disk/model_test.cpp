// Randomized read/write/zero semantics of chains against a plain byte array.
#include <catch2/catch.hpp>

#include "tests/unit/disk/disk_test_util.hpp"

using namespace cairn::disk;
using namespace cairn::disk::test;

namespace {

// Applies `ops` random operations to the chain and to the model, checking
// random reads along the way.
void random_ops(Chain& c, std::vector<uint8_t>& model, std::mt19937_64& rng, int ops) {
  const uint64_t size = c.size(), bs = c.block_size();
  for (int i = 0; i < ops; ++i) {
    uint64_t off, len;
    if (rng() % 3 == 0) {  // block-aligned, to exercise whole-block paths
      off = (rng() % (size / bs)) * bs;
      len = std::min<uint64_t>((1 + rng() % 3) * bs, size - off);
    } else {
      off = rng() % size;
      len = 1 + rng() % std::min<uint64_t>(3 * bs, size - off);
    }
    switch (rng() % 10) {
      case 0: case 1: {  // write zeroes
        REQUIRE(c.write_zeroes(off, len));
        std::fill(model.begin() + long(off), model.begin() + long(off + len), 0);
        break;
      }
      case 2: {
        REQUIRE(c.flush());
        break;
      }
      case 3: case 4: case 5: {  // read and compare
        std::vector<uint8_t> got(len);
        REQUIRE(c.read(off, got));
        REQUIRE(std::equal(got.begin(), got.end(), model.begin() + long(off)));
        break;
      }
      default: {
        auto data = random_bytes(rng, len);
        REQUIRE(c.write(off, data));
        std::copy(data.begin(), data.end(), model.begin() + long(off));
      }
    }
  }
}

}  // namespace

TEST_CASE("chains of depth 1-8 read, write and zero like a plain byte array") {
  std::mt19937_64 rng(GENERATE(1, 2, 3));
  TempDir dir;
  uint32_t shift = 12 + uint32_t(rng() % 5);                 // 4 KiB .. 64 KiB blocks
  uint64_t size = (64ull << shift) + 512 * (rng() % 8);      // a partial last block sometimes
  REQUIRE(create_base(dir / "l0", size, shift));
  std::vector<uint8_t> model(size, 0);
  std::string top = dir / "l0";
  int depth = 1 + int(rng() % 8);
  for (int d = 0; d < depth; ++d) {
    if (d > 0) {
      std::string next = dir / ("l" + std::to_string(d));
      REQUIRE(create_child(top, next));
      top = next;
    }
    auto c = open_chain(top, true);
    REQUIRE(c);
    REQUIRE((*c)->depth() == size_t(d + 1));
    random_ops(**c, model, rng, 400);
    REQUIRE(first_diff(read_all(**c), model) == -1);
    REQUIRE((*c)->flush());
    c->reset();
    INFO("layer " << d << " block size " << (1u << shift) << " size " << size);
    REQUIRE(first_diff(read_all(top), model) == -1);
  }
  // Everything survives a reopen, read-only and read-write.
  REQUIRE(first_diff(read_all(top), model) == -1);
  auto c = open_chain(top, true);
  REQUIRE(c);
  random_ops(**c, model, rng, 300);
  c->reset();
  REQUIRE(first_diff(read_all(top), model) == -1);
}

TEST_CASE("unallocated blocks read as zeros and partial writes keep the parent's bytes") {
  TempDir dir;
  REQUIRE(create_base(dir / "base", 1 << 20, 16));
  std::vector<uint8_t> ones(1 << 16, 1);
  {
    auto c = open_chain(dir / "base", true);
    REQUIRE(c);
    REQUIRE((*c)->write(0, ones));
    REQUIRE((*c)->flush());
  }
  REQUIRE(create_child(dir / "base", dir / "child"));
  auto c = open_chain(dir / "child", true);
  REQUIRE(c);
  std::vector<uint8_t> two(100, 2);
  REQUIRE((*c)->write(1000, two));
  auto all = read_all(**c);
  CHECK(all[999] == 1);
  CHECK(all[1000] == 2);
  CHECK(all[1099] == 2);
  CHECK(all[1100] == 1);
  CHECK(all[65535] == 1);
  CHECK(all[65536] == 0);
  CHECK((*c)->top().data_blocks() == 1);
  // Zeroing the whole block hides the parent without holding data.
  REQUIRE((*c)->write_zeroes(0, 1 << 16));
  CHECK((*c)->top().data_blocks() == 0);
  CHECK((*c)->top().zero_blocks() == 1);
  all = read_all(**c);
  CHECK(std::all_of(all.begin(), all.end(), [](uint8_t b) { return b == 0; }));
}

TEST_CASE("discarded blocks are reused instead of growing the layer") {
  TempDir dir;
  REQUIRE(create_base(dir / "base", 8 << 20, 16));
  auto c = open_chain(dir / "base", true);
  REQUIRE(c);
  std::vector<uint8_t> data(4 << 20, 7);
  REQUIRE((*c)->write(0, data));
  REQUIRE((*c)->flush());
  uint64_t grown = (*c)->top().file_bytes();
  for (int round = 0; round < 5; ++round) {
    REQUIRE((*c)->write_zeroes(0, 4 << 20));
    REQUIRE((*c)->flush());
    REQUIRE((*c)->write(4 << 20, data));
    REQUIRE((*c)->flush());
    REQUIRE((*c)->write_zeroes(4 << 20, 4 << 20));
    REQUIRE((*c)->flush());
    REQUIRE((*c)->write(0, data));
    REQUIRE((*c)->flush());
  }
  CHECK((*c)->top().file_bytes() == grown);
  CHECK((*c)->top().data_blocks() == 64);
}
