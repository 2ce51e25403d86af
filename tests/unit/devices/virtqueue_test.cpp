#include <catch2/catch.hpp>

#include "test_support.hpp"

using namespace cairn;
using cairn::test::kDescIndirect;
using cairn::test::kDescNext;
using cairn::test::kDescWrite;
using cairn::test::TestRing;

namespace {
std::string pop_error(TestRing& r) {
  auto c = r.q.pop(r.mem);
  REQUIRE_FALSE(c);
  return c.error().message;
}
}  // namespace

TEST_CASE("virtqueue pops a well-formed chain and returns it through the used ring") {
  TestRing r;
  r.fill(0x10000, {1, 2, 3, 4});
  r.fill(0x11000, {5, 6, 7, 8, 9, 10});
  r.set_desc(3, 0x10000, 4, kDescNext, 7);
  r.set_desc(7, 0x11000, 6, kDescNext, 1);
  r.set_desc(1, 0x12000, 8, kDescWrite);
  REQUIRE(r.q.validate(r.mem));

  auto empty = r.q.pop(r.mem);
  REQUIRE(empty);
  CHECK_FALSE(*empty);

  r.publish(3);
  auto c = r.q.pop(r.mem);
  REQUIRE(c);
  REQUIRE(*c);
  auto& chain = **c;
  CHECK(chain.head == 3);
  REQUIRE(chain.descriptors.size() == 3);
  CHECK(chain.descriptors[1].addr == 0x11000);
  CHECK(chain.descriptors[2].write);
  CHECK(chain.readable_bytes() == 10);
  CHECK(chain.writable_bytes() == 8);

  // Reading across descriptor boundaries, with an offset.
  std::vector<uint8_t> buf(5);
  auto n = chain_read(r.mem, chain, 3, buf);
  REQUIRE(n);
  CHECK(*n == 5);
  CHECK(buf == std::vector<uint8_t>{4, 5, 6, 7, 8});
  std::vector<uint8_t> big(64);
  CHECK(*chain_read(r.mem, chain, 0, big) == 10);  // bounded by the buffers

  r.mem.take_vmm_dirty_pages();
  std::vector<uint8_t> out{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x11, 0x22, 0x33};
  CHECK(*chain_write(r.mem, chain, 2, out) == 6);
  CHECK(r.bytes(0x12000, 8) == std::vector<uint8_t>{0, 0, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff});
  CHECK(r.mem.take_vmm_dirty_pages() == std::vector<uint64_t>{0x12000});

  REQUIRE(r.q.add_used(r.mem, 3, 8));
  CHECK(r.used_idx() == 1);
  CHECK(r.used(0) == std::pair<uint32_t, uint32_t>{3, 8});
  CHECK(r.q.next_used() == 1);
  CHECK(r.q.next_avail() == 1);
  CHECK(r.mem.take_vmm_dirty_pages() == std::vector<uint64_t>{TestRing::kUsed});
  CHECK_FALSE(r.q.add_used(r.mem, 16, 0));  // head out of range

  auto again = r.q.pop(r.mem);
  REQUIRE(again);
  CHECK_FALSE(*again);
}

TEST_CASE("virtqueue indices wrap around 16 bits") {
  TestRing r(4);
  r.set_desc(0, 0x10000, 1);
  r.q.set_positions(0xfffe, 0xfffe);
  r.avail_idx = 0xfffe;
  for (int i = 0; i < 4; ++i) {
    r.publish(0);
    auto c = r.q.pop(r.mem);
    REQUIRE(c);
    REQUIRE(*c);
    REQUIRE(r.q.add_used(r.mem, 0, 1));
  }
  CHECK(r.q.next_avail() == 2);
  CHECK(r.used_idx() == 2);
}

TEST_CASE("virtqueue rejects descriptor loops") {
  TestRing r;
  SECTION("self loop") {
    r.set_desc(0, 0x10000, 4, kDescNext, 0);
  }
  SECTION("longer loop") {
    r.set_desc(0, 0x10000, 4, kDescNext, 1);
    r.set_desc(1, 0x10000, 4, kDescNext, 2);
    r.set_desc(2, 0x10000, 4, kDescNext, 0);
  }
  r.publish(0);
  CHECK(pop_error(r).find("loops") != std::string::npos);
}

TEST_CASE("virtqueue rejects buffers outside guest memory, including wrapping lengths") {
  // Guest memory starts at 64 KiB so that low addresses are outside it too.
  TestRing r(16, 1 << 20, 0x10000);
  uint64_t end = 0x10000 + (1 << 20);
  SECTION("past the end") { r.set_desc(0, end - 8, 16); }
  SECTION("below the start") { r.set_desc(0, 0x8000, 16); }
  SECTION("address that wraps with its length") { r.set_desc(0, UINT64_MAX - 8, 0xffff); }
  SECTION("huge length") { r.set_desc(0, 0x20000, 0xffffffff); }
  SECTION("bad buffer in the middle of a chain") {
    r.set_desc(0, 0x20000, 16, kDescNext, 1);
    r.set_desc(1, end, 1, kDescWrite);
  }
  r.publish(0);
  CHECK(pop_error(r).find("outside guest memory") != std::string::npos);
}

TEST_CASE("virtqueue rejects out-of-range indices") {
  TestRing r;
  SECTION("next index") {
    r.set_desc(0, 0x10000, 4, kDescNext, 16);
    r.publish(0);
    CHECK(pop_error(r).find("out of range") != std::string::npos);
  }
  SECTION("head index") {
    r.publish(16);
    CHECK(pop_error(r).find("out of range") != std::string::npos);
  }
  SECTION("avail index jumping by more than the queue size") {
    r.set_desc(0, 0x10000, 4);
    r.set_avail_idx(17);
    CHECK(pop_error(r).find("jumped") != std::string::npos);
    r.set_avail_idx(0xffff);  // "backwards" is a huge jump too
    CHECK(pop_error(r).find("jumped") != std::string::npos);
    r.set_avail_idx(16);  // exactly a full ring is fine
    auto c = r.q.pop(r.mem);
    REQUIRE(c);
    CHECK(*c);
  }
}

TEST_CASE("virtqueue rejects indirect descriptors, which are not offered") {
  TestRing r;
  r.set_desc(0, 0x10000, 32, kDescIndirect);
  r.publish(0);
  CHECK(pop_error(r).find("indirect") != std::string::npos);
}

TEST_CASE("virtqueue bounds a chain's total length") {
  // 1 GiB of untouched anonymous memory: five 1 GiB descriptors exceed 4 GiB.
  TestRing r(16, 1ULL << 30);
  for (uint16_t i = 0; i < 5; ++i) r.set_desc(i, 0, 1U << 30, i < 4 ? kDescNext : 0, i + 1);
  r.publish(0);
  CHECK(pop_error(r).find("longer than") != std::string::npos);
}

TEST_CASE("virtqueue validate checks size and ring placement") {
  TestRing r;
  CHECK(r.q.validate(r.mem));
  auto& c = r.q.config();
  SECTION("size not a power of two") { c.size = 12; }
  SECTION("size zero") { c.size = 0; }
  SECTION("size above the maximum") { c.size = 32; }
  SECTION("misaligned descriptor table") { c.desc_table = 0x1008; }
  SECTION("used ring outside memory") { c.used_ring = (1 << 20) - 8; }
  SECTION("avail ring wrapping") { c.avail_ring = UINT64_MAX - 1; }
  CHECK_FALSE(r.q.validate(r.mem));
}

TEST_CASE("virtqueue notification suppression") {
  TestRing r;
  r.set_desc(0, 0x10000, 4);
  SECTION("flags") {
    r.publish(0);
    REQUIRE(*r.q.pop(r.mem));
    REQUIRE(r.q.add_used(r.mem, 0, 0));
    CHECK(r.q.needs_notification(r.mem));
    r.set_avail_flags(1);  // VIRTQ_AVAIL_F_NO_INTERRUPT
    CHECK_FALSE(r.q.needs_notification(r.mem));
  }
  SECTION("event index") {
    r.q.set_event_idx(true);
    // An empty pop publishes where the device wants its next kick.
    auto e = r.q.pop(r.mem);
    REQUIRE(e);
    CHECK(r.avail_event() == 0);
    r.set_used_event(1);  // the driver wants an interrupt once used idx passes 1
    for (int i = 0; i < 2; ++i) r.publish(0);
    REQUIRE(*r.q.pop(r.mem));
    CHECK(r.avail_event() == 1);
    REQUIRE(r.q.add_used(r.mem, 0, 0));  // used idx 1: not past used_event yet
    CHECK_FALSE(r.q.needs_notification(r.mem));
    REQUIRE(*r.q.pop(r.mem));
    REQUIRE(r.q.add_used(r.mem, 0, 0));  // used idx 2
    CHECK(r.q.needs_notification(r.mem));
    CHECK_FALSE(r.q.needs_notification(r.mem));  // nothing new since
  }
}

TEST_CASE("virtqueue refuses to pop from a queue that is not ready") {
  TestRing r;
  r.q.config().ready = false;
  CHECK_FALSE(r.q.pop(r.mem));
  r.q.reset();
  CHECK(r.q.config().size == 16);
  CHECK(r.q.config().desc_table == 0);
  CHECK(r.q.next_avail() == 0);
}
