#include <catch2/catch.hpp>

#include "tests/unit/boot/fake_kernel.hpp"
#include "vmm/boot/boot_params.hpp"
#include "vmm/boot/layout.hpp"

using namespace cairn;
using namespace cairn::test;

TEST_CASE("e820 of a small guest: base memory, reserved BIOS area, RAM from 1 MiB") {
  auto mem = GuestMemory::create(128ULL << 20);
  REQUIRE(mem);
  auto map = build_e820(*mem);
  REQUIRE(map);
  REQUIRE(map->size() == 3);
  CHECK(((*map)[0].addr == 0 && (*map)[0].size == 0x9fc00 && (*map)[0].type == kE820Ram));
  CHECK(((*map)[1].addr == 0x9fc00 && (*map)[1].size == 0x100000 - 0x9fc00 && (*map)[1].type == kE820Reserved));
  CHECK(((*map)[2].addr == 0x100000 && (*map)[2].size == (128ULL << 20) - 0x100000 && (*map)[2].type == kE820Ram));
}

TEST_CASE("e820 of a guest larger than 3 GiB: the hole is absent, RAM resumes at 4 GiB") {
  auto mem = GuestMemory::create(5ULL << 30);  // sparse memfd: nothing is touched
  REQUIRE(mem);
  auto map = build_e820(*mem);
  REQUIRE(map);
  REQUIRE(map->size() == 4);
  CHECK((*map)[2].addr + (*map)[2].size == layout::kMmioHoleStart);
  CHECK((*map)[3].addr == 0x1'0000'0000ULL);
  CHECK((*map)[3].size == (2ULL << 30));
  CHECK((*map)[3].type == kE820Ram);
}

TEST_CASE("e820 refuses a guest with no RAM above 1 MiB") {
  auto mem = GuestMemory::create(1ULL << 20);
  REQUIRE(mem);
  CHECK_FALSE(build_e820(*mem));
}

TEST_CASE("zero page for a bzImage keeps its header and adds the loader's fields") {
  auto mem = GuestMemory::create(64ULL << 20);
  REQUIRE(mem);
  FakeBzImage bz;
  auto k = load_kernel(*mem, bz.build());
  REQUIRE(k);
  auto bp = build_boot_params(*mem, *k, 20);
  REQUIRE(bp);
  CHECK(bp->hdr.header == 0x53726448);
  CHECK(bp->hdr.version == 0x020f);
  CHECK(bp->hdr.type_of_loader == 0xff);
  CHECK((bp->hdr.loadflags & CAN_USE_HEAP));
  CHECK((bp->hdr.loadflags & LOADED_HIGH));
  CHECK(bp->hdr.heap_end_ptr == 0xde00);
  CHECK(bp->hdr.cmd_line_ptr == 0x20000);
  CHECK(bp->ext_cmd_line_ptr == 0);
  CHECK(bp->hdr.vid_mode == 0xffff);
  CHECK(bp->e820_entries == 3);
  CHECK(bp->e820_table[2].addr == 0x100000);
}

TEST_CASE("zero page for a vmlinux gets a minimal header") {
  auto mem = GuestMemory::create(64ULL << 20);
  REQUIRE(mem);
  LoadedKernel k;
  auto bp = build_boot_params(*mem, k, 0);
  REQUIRE(bp);
  CHECK(bp->hdr.boot_flag == 0xAA55);
  CHECK(bp->hdr.header == 0x53726448);
  CHECK(bp->hdr.type_of_loader == 0xff);
  CHECK(bp->hdr.cmdline_size == 2047);
  CHECK(bp->hdr.cmd_line_ptr == 0x20000);
  CHECK(bp->sentinel == 0);
}

TEST_CASE("command line: written NUL-terminated; too long is refused") {
  auto mem = GuestMemory::create(64ULL << 20);
  REQUIRE(mem);
  LoadedKernel elf;
  REQUIRE(write_cmdline(*mem, "console=ttyS0 panic=-1", elf));
  auto s = mem->slice(0x20000, 23);
  CHECK(std::string(reinterpret_cast<const char*>(s.data())) == "console=ttyS0 panic=-1");
  CHECK(s[22] == 0);

  REQUIRE(write_cmdline(*mem, std::string(2047, 'x'), elf));
  auto r = write_cmdline(*mem, std::string(2048, 'x'), elf);
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "kernel command line is 2048 bytes; at most 2047 are allowed");
  CHECK_FALSE(build_boot_params(*mem, elf, 2048));

  LoadedKernel bz;
  bz.header = setup_header{};
  bz.header->cmdline_size = 255;  // the kernel's own, smaller limit wins
  CHECK(max_cmdline_len(bz) == 255);
  CHECK_FALSE(write_cmdline(*mem, std::string(256, 'x'), bz));
  CHECK_FALSE(write_cmdline(*mem, std::string("a\0b", 3), elf));
}
