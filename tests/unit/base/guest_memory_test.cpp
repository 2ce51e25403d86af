#include <catch2/catch.hpp>

#include "vmm/base/guest_memory.hpp"

using namespace cairn;

TEST_CASE("guest memory rejects accesses outside the guest, including wrapping ones") {
  auto m = GuestMemory::create(64 * 4096);
  REQUIRE(m);
  CHECK(m->contains(0, 64 * 4096));
  CHECK_FALSE(m->contains(1, 64 * 4096));
  CHECK_FALSE(m->contains(64 * 4096, 1));
  CHECK(m->contains(64 * 4096, 0));
  CHECK_FALSE(m->contains(4096, UINT64_MAX));
  CHECK_FALSE(m->contains(UINT64_MAX, 2));
  CHECK(m->slice(UINT64_MAX - 1, 4).empty());
  uint8_t buf[8] = {};
  CHECK_FALSE(m->read(64 * 4096 - 4, buf));
  CHECK(m->read(64 * 4096 - 8, buf));
}

TEST_CASE("guest memory round trips objects and tracks VMM-written pages") {
  auto m = GuestMemory::create(16 * 4096);
  REQUIRE(m);
  REQUIRE(m->write_obj<uint64_t>(0x2000 - 4, 0x1122334455667788ULL));
  auto v = m->read_obj<uint64_t>(0x2000 - 4);
  REQUIRE(v);
  CHECK(*v == 0x1122334455667788ULL);
  auto pages = m->take_vmm_dirty_pages();
  REQUIRE(pages.size() == 2);
  CHECK(pages[0] == 0x1000);
  CHECK(pages[1] == 0x2000);
  CHECK(m->take_vmm_dirty_pages().empty());
}

TEST_CASE("memory above the MMIO hole lands at 4 GiB") {
  auto m = GuestMemory::create(8 * 4096, 4 * 4096);
  REQUIRE(m);
  REQUIRE(m->regions().size() == 2);
  CHECK(m->regions()[1].gpa == 0x1'0000'0000ULL);
  CHECK(m->contains(0x1'0000'0000ULL, 4 * 4096));
  CHECK_FALSE(m->contains(4 * 4096, 1));
  CHECK(m->total_size() == 8 * 4096);
}
