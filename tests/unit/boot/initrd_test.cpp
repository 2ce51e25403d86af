#include <catch2/catch.hpp>

#include "tests/unit/boot/fake_kernel.hpp"
#include "vmm/boot/initrd.hpp"

using namespace cairn;
using namespace cairn::test;

TEST_CASE("initrd goes at the highest page-aligned address below the end of low RAM") {
  auto mem = GuestMemory::create(64ULL << 20);
  REQUIRE(mem);
  auto p = place_initrd(*mem, 0x1234, 0x2000000, kDefaultInitrdAddrMax);
  REQUIRE(p);
  CHECK(p->addr == (64ULL << 20) - 0x2000);  // 0x1234 bytes rounded down to a page boundary
  CHECK(p->size == 0x1234);
  CHECK(p->addr % 4096 == 0);
  CHECK(p->addr + p->size <= (64ULL << 20));
}

TEST_CASE("initrd respects initrd_addr_max (the last byte may be at it)") {
  auto mem = GuestMemory::create(64ULL << 20);
  REQUIRE(mem);
  auto p = place_initrd(*mem, 0x1000, 0x100000, 0x2ffffff);
  REQUIRE(p);
  CHECK(p->addr == 0x2fff000);
}

TEST_CASE("an initrd that would overlap the kernel is refused with sizes") {
  auto mem = GuestMemory::create(64ULL << 20);
  REQUIRE(mem);
  auto p = place_initrd(*mem, 50ULL << 20, 16ULL << 20, kDefaultInitrdAddrMax);
  REQUIRE_FALSE(p);
  CHECK(p.error().message == "initrd (52428800 bytes) does not fit in guest memory of 67108864 bytes");
  CHECK(place_initrd(*mem, 48ULL << 20, 16ULL << 20, kDefaultInitrdAddrMax));  // exactly fits
  auto huge = place_initrd(*mem, 1ULL << 30, 0, kDefaultInitrdAddrMax);
  REQUIRE_FALSE(huge);
  CHECK_THAT(huge.error().message, Catch::Contains("does not fit"));
  CHECK_FALSE(place_initrd(*mem, 0, 16ULL << 20, kDefaultInitrdAddrMax));
}

TEST_CASE("initrd file is copied to its place; boot_params gets its address and size") {
  auto mem = GuestMemory::create(64ULL << 20);
  REQUIRE(mem);
  std::vector<uint8_t> data(10000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  TempFile f(data);
  FakeBzImage bz;
  bz.initrd_addr_max = 0x37ffffff;
  auto k = load_kernel(*mem, bz.build());
  REQUIRE(k);
  CHECK(initrd_addr_max(*k) == 0x37ffffff);
  auto p = load_initrd_file(*mem, f.path(), *k);
  REQUIRE(p);
  CHECK(p->addr == (64ULL << 20) - 0x3000);
  std::vector<uint8_t> back(data.size());
  REQUIRE(mem->read(p->addr, back));
  CHECK(back == data);

  boot_params bp{};
  set_initrd(bp, *p);
  CHECK(bp.hdr.ramdisk_image == p->addr);
  CHECK(bp.hdr.ramdisk_size == 10000);
  CHECK(bp.ext_ramdisk_image == 0);
  set_initrd(bp, InitrdPlacement{0x1'2345'6000ULL, 0x1'0000'0001ULL});
  CHECK(bp.hdr.ramdisk_image == 0x23456000);
  CHECK(bp.ext_ramdisk_image == 1);
  CHECK(bp.hdr.ramdisk_size == 1);
  CHECK(bp.ext_ramdisk_size == 1);
}

TEST_CASE("ELF kernels use the default initrd_addr_max") {
  LoadedKernel k;
  CHECK(initrd_addr_max(k) == 0x7fffffff);
}
