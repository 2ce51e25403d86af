// Both merge directions, their effect on other layers, and interruption.
#include <catch2/catch.hpp>

#include "snapshot/disk/merge.hpp"
#include "tests/unit/disk/disk_test_util.hpp"

using namespace cairn;
using namespace cairn::disk;
using namespace cairn::disk::test;

namespace {

struct Interrupt {};

// Writes random data and zero ranges into the chain at top.
void scribble(const std::string& top, std::mt19937_64& rng, int n) {
  auto c = open_chain(top, true);
  REQUIRE(c);
  uint64_t size = (*c)->size();
  for (int i = 0; i < n; ++i) {
    uint64_t off = rng() % size, len = 1 + rng() % std::min<uint64_t>(40000, size - off);
    if (rng() % 5 == 0) {
      REQUIRE((*c)->write_zeroes(off, len));
    } else {
      REQUIRE((*c)->write(off, random_bytes(rng, len)));
    }
  }
  REQUIRE((*c)->flush());
}

}  // namespace

TEST_CASE("merge_into_parent: the parent then reads as the child did; siblings are refused") {
  TempDir dir;
  std::mt19937_64 rng(7);
  REQUIRE(create_base(dir / "base", 4 << 20, 14));
  scribble(dir / "base", rng, 50);
  REQUIRE(create_child(dir / "base", dir / "mid"));
  scribble(dir / "mid", rng, 50);
  REQUIRE(create_child(dir / "mid", dir / "child"));
  REQUIRE(create_child(dir / "mid", dir / "sibling"));
  scribble(dir / "child", rng, 80);
  auto want = read_all(dir / "child");
  uint64_t last = 0;
  REQUIRE(merge_into_parent(dir / "child", [&](uint64_t d, uint64_t t) {
    CHECK(d <= t);
    CHECK(d >= last);
    last = d;
  }));
  CHECK(last > 0);
  CHECK(first_diff(read_all(dir / "mid"), want) == -1);
  auto s = open_chain(dir / "sibling", false);
  REQUIRE_FALSE(s);
  CHECK(s.error().code == Errc::corrupt);
}

TEST_CASE("merge_into_child: the child keeps its content, its children and its siblings stay valid") {
  TempDir dir;
  std::mt19937_64 rng(11);
  REQUIRE(create_base(dir / "base", 4 << 20, 13));
  scribble(dir / "base", rng, 40);
  REQUIRE(create_child(dir / "base", dir / "p"));
  scribble(dir / "p", rng, 60);
  REQUIRE(create_child(dir / "p", dir / "c"));
  REQUIRE(create_child(dir / "p", dir / "sib"));
  scribble(dir / "c", rng, 60);
  REQUIRE(create_child(dir / "c", dir / "gc"));
  scribble(dir / "gc", rng, 30);
  auto want_c = read_all(dir / "c"), want_gc = read_all(dir / "gc"), want_sib = read_all(dir / "sib");
  REQUIRE(merge_into_child(dir / "p", dir / "c"));
  auto c = open_chain(dir / "c", false);
  REQUIRE(c);
  CHECK((*c)->depth() == 2);  // c -> base now
  CHECK(first_diff(read_all(**c), want_c) == -1);
  CHECK(first_diff(read_all(dir / "gc"), want_gc) == -1);
  CHECK(first_diff(read_all(dir / "sib"), want_sib) == -1);
  // p is no longer needed by c.
  std::filesystem::rename(dir / "p", dir / "p.gone");
  CHECK(first_diff(read_all(dir / "gc"), want_gc) == -1);
}

TEST_CASE("merge_into_child down to a base: the child becomes a base") {
  TempDir dir;
  std::mt19937_64 rng(5);
  REQUIRE(create_base(dir / "base", 2 << 20, 12));
  scribble(dir / "base", rng, 40);
  REQUIRE(create_child(dir / "base", dir / "c"));
  scribble(dir / "c", rng, 40);
  auto want = read_all(dir / "c");
  REQUIRE(merge_into_child(dir / "base", dir / "c"));
  std::filesystem::remove(dir / "base");
  auto c = open_chain(dir / "c", false);
  REQUIRE(c);
  CHECK((*c)->depth() == 1);
  CHECK(first_diff(read_all(**c), want) == -1);
}

TEST_CASE("an interrupted merge_into_parent reads the same through the child and resumes") {
  TempDir dir;
  std::mt19937_64 rng(3);
  REQUIRE(create_base(dir / "base", 4 << 20, 12));
  scribble(dir / "base", rng, 40);
  REQUIRE(create_child(dir / "base", dir / "c"));
  scribble(dir / "c", rng, 100);
  auto want = read_all(dir / "c");
  CHECK_THROWS_AS(merge_into_parent(dir / "c", [](uint64_t d, uint64_t t) {
                    if (d > t / 2) throw Interrupt{};
                  }),
                  Interrupt);
  CHECK(first_diff(read_all(dir / "c"), want) == -1);
  auto alone = open_chain(dir / "base", false);
  REQUIRE_FALSE(alone);
  CHECK(alone.error().code == Errc::invalid_state);
  CHECK(alone.error().message.find("merge") != std::string::npos);
  REQUIRE(merge_into_parent(dir / "c"));
  CHECK(first_diff(read_all(dir / "base"), want) == -1);
}

TEST_CASE("an interrupted merge_into_child is finished by the next writable open") {
  TempDir dir;
  std::mt19937_64 rng(9);
  REQUIRE(create_base(dir / "base", 4 << 20, 12));
  scribble(dir / "base", rng, 40);
  REQUIRE(create_child(dir / "base", dir / "p"));
  scribble(dir / "p", rng, 80);
  REQUIRE(create_child(dir / "p", dir / "c"));
  scribble(dir / "c", rng, 20);
  auto want = read_all(dir / "c");
  CHECK_THROWS_AS(merge_into_child(dir / "p", dir / "c", [](uint64_t d, uint64_t t) {
                    if (d > t / 3) throw Interrupt{};
                  }),
                  Interrupt);
  CHECK(first_diff(read_all(dir / "c"), want) == -1);  // read-only: still through p
  {
    auto c = open_chain(dir / "c", true);
    REQUIRE(c);
    CHECK((*c)->depth() == 2);
    CHECK(first_diff(read_all(**c), want) == -1);
  }
  std::filesystem::remove(dir / "p");
  CHECK(first_diff(read_all(dir / "c"), want) == -1);
}
