#include <catch2/catch.hpp>

#include <cstring>

#include "tests/unit/boot/fake_kernel.hpp"
#include "vmm/boot/boot.hpp"
#include "vmm/boot/layout.hpp"

using namespace cairn;
using namespace cairn::test;

TEST_CASE("prepare_boot with a vmlinux and an initrd fills memory and registers") {
  auto mem = GuestMemory::create(128ULL << 20);
  REQUIRE(mem);
  TempFile kernel(make_elf({{0x1000000, 0xffffffff81000000, 0x2000, 0x4000, 0x90}}, 0x1000000));
  std::vector<uint8_t> rd(5000, 0x77);
  TempFile initrd(rd);
  BootConfig cfg{kernel.path(), initrd.path(), "console=ttyS0 root=/dev/vda", 4};
  auto res = prepare_boot(*mem, cfg);
  REQUIRE(res);

  CHECK(res->regs.rip == 0x1000000);
  CHECK(res->regs.rsi == layout::kZeroPageAddr);
  REQUIRE(res->initrd);
  CHECK(res->initrd->addr == (128ULL << 20) - 0x2000);

  auto bp = mem->read_obj<boot_params>(layout::kZeroPageAddr);
  REQUIRE(bp);
  CHECK(bp->hdr.cmd_line_ptr == layout::kCmdlineAddr);
  CHECK(bp->hdr.ramdisk_image == res->initrd->addr);
  CHECK(bp->hdr.ramdisk_size == 5000);
  CHECK(bp->hdr.type_of_loader == 0xff);
  CHECK(bp->e820_entries == 3);
  CHECK(std::string(reinterpret_cast<const char*>(mem->slice(layout::kCmdlineAddr, 28).data())) ==
        "console=ttyS0 root=/dev/vda");
  CHECK(std::memcmp(mem->slice(layout::kMpTableAddr, 4).data(), "_MP_", 4) == 0);
  CHECK(*mem->read_obj<uint64_t>(layout::kPml4Addr) == (layout::kPdptAddr | 3));
  CHECK(mem->slice(0x1000000, 1)[0] == 0x90);

  kvm_sregs cur{};
  cur.apic_base = 0xfee00900;
  auto s = res->sregs(cur);
  CHECK(s.apic_base == 0xfee00900);
  CHECK(s.cs.selector == 0x10);
  CHECK(s.cr3 == layout::kPml4Addr);
}

TEST_CASE("prepare_boot with a bzImage enters at load address + 0x200") {
  auto mem = GuestMemory::create(64ULL << 20);
  REQUIRE(mem);
  TempFile kernel(FakeBzImage{}.build());
  auto res = prepare_boot(*mem, BootConfig{kernel.path(), "", "quiet", 1});
  REQUIRE(res);
  CHECK(res->regs.rip == 0x100200);
  CHECK_FALSE(res->initrd);
  auto bp = mem->read_obj<boot_params>(layout::kZeroPageAddr);
  REQUIRE(bp);
  CHECK(bp->hdr.version == 0x020f);
  CHECK(bp->hdr.ramdisk_image == 0);
}

TEST_CASE("prepare_boot refuses bad configurations with clear errors") {
  auto mem = GuestMemory::create(64ULL << 20);
  REQUIRE(mem);
  TempFile kernel(FakeBzImage{}.build());
  CHECK_FALSE(prepare_boot(*mem, BootConfig{kernel.path(), "", "", 0}));
  CHECK_FALSE(prepare_boot(*mem, BootConfig{kernel.path(), "", "", 33}));
  auto longline = prepare_boot(*mem, BootConfig{kernel.path(), "", std::string(2048, 'a'), 1});
  REQUIRE_FALSE(longline);
  CHECK_THAT(longline.error().message, Catch::Contains("command line is 2048 bytes"));
  auto noinitrd = prepare_boot(*mem, BootConfig{kernel.path(), "/nonexistent/initrd", "", 1});
  REQUIRE_FALSE(noinitrd);
  CHECK_THAT(noinitrd.error().message, Catch::Contains("initrd"));
  auto tiny = GuestMemory::create(1ULL << 20);
  REQUIRE(tiny);
  auto r = prepare_boot(*tiny, BootConfig{kernel.path(), "", "", 1});
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::Contains("too small"));
}
