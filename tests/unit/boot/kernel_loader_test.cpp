#include <catch2/catch.hpp>

#include <cstring>

#include "tests/unit/boot/fake_kernel.hpp"
#include "vmm/boot/kernel_loader.hpp"

using namespace cairn;
using namespace cairn::test;

namespace {
constexpr uint64_t kMem = 64ULL << 20;

GuestMemory make_mem() {
  auto m = GuestMemory::create(kMem);
  REQUIRE(m);
  return std::move(*m);
}

std::string load_error(GuestMemory& mem, const std::vector<uint8_t>& image) {
  auto k = load_kernel(mem, image);
  REQUIRE_FALSE(k);
  return k.error().message;
}
}  // namespace

TEST_CASE("ELF vmlinux segments land at p_paddr with bss zeroed; physical entry kept") {
  auto mem = make_mem();
  std::memset(mem.slice(0x1000000, 0x5000).data(), 0xee, 0x5000);  // stale bytes under the bss
  auto image = make_elf({{0x1000000, 0xffffffff81000000, 0x1800, 0x3000, 0xaa},
                         {0x1003000, 0xffffffff81003000, 0x800, 0x2000, 0xbb}},
                        0x1000000);
  TempFile f(image);
  auto k = load_kernel_file(mem, f.path());
  REQUIRE(k);
  CHECK(k->format == KernelFormat::elf_vmlinux);
  CHECK(k->entry == 0x1000000);
  CHECK(k->load_start == 0x1000000);
  CHECK(k->load_end == 0x1005000);
  CHECK_FALSE(k->header);
  auto s = mem.slice(0x1000000, 0x5000);
  CHECK(s[0] == 0xaa);
  CHECK(s[0x17ff] == 0xaa);
  CHECK(s[0x1800] == 0);  // bss of segment 0
  CHECK(s[0x2fff] == 0);
  CHECK(s[0x3000] == 0xbb);
  CHECK(s[0x37ff] == 0xbb);
  CHECK(s[0x3800] == 0);
  CHECK(s[0x4fff] == 0);
}

TEST_CASE("ELF virtual entry is translated through its segment to a physical address") {
  auto mem = make_mem();
  auto image = make_elf({{0x1000000, 0xffffffff81000000, 0x1000, 0x1000, 1}}, 0xffffffff81000040);
  auto k = load_kernel(mem, image);
  REQUIRE(k);
  CHECK(k->entry == 0x1000040);
}

TEST_CASE("malformed ELF files are rejected with the bound they break") {
  auto mem = make_mem();
  auto good = make_elf({{0x1000000, 0xffffffff81000000, 0x1000, 0x1000, 1}}, 0x1000000);

  SECTION("truncated header") {
    std::vector<uint8_t> img(good.begin(), good.begin() + 20);
    CHECK_THAT(load_error(mem, img), Catch::Contains("ELF file truncated"));
  }
  SECTION("truncated segment data") {
    std::vector<uint8_t> img(good.begin(), good.end() - 1);
    CHECK_THAT(load_error(mem, img), Catch::Contains("beyond the end of the"));
  }
  SECTION("program headers outside the file") {
    auto img = good;
    Elf64_Ehdr eh;
    std::memcpy(&eh, img.data(), sizeof(eh));
    eh.e_phnum = 5000;
    std::memcpy(img.data(), &eh, sizeof(eh));
    CHECK_THAT(load_error(mem, img), Catch::Contains("program headers"));
  }
  SECTION("32-bit ELF") {
    auto img = good;
    img[EI_CLASS] = ELFCLASS32;
    CHECK_THAT(load_error(mem, img), Catch::Contains("not a Linux kernel: ELF file is not 64-bit"));
  }
  SECTION("other machine") {
    auto img = good;
    img[18] = 183;  // aarch64
    CHECK_THAT(load_error(mem, img), Catch::Contains("not x86-64"));
  }
  SECTION("shared object or PIE program") {
    auto img = good;
    img[16] = ET_DYN;
    CHECK_THAT(load_error(mem, img), Catch::Contains("not a Linux kernel: ELF type 3 is not an executable"));
  }
  SECTION("segment beyond guest memory") {
    auto img = make_elf({{kMem - 0x800, 0, 0x1000, 0x1000, 1}}, kMem - 0x800);
    CHECK_THAT(load_error(mem, img), Catch::Contains("ELF segment 0") && Catch::Contains("does not fit"));
  }
  SECTION("segment over the boot structures below 1 MiB") {
    auto img = make_elf({{0x7000, 0, 0x1000, 0x1000, 1}}, 0x7000);
    CHECK_THAT(load_error(mem, img), Catch::Contains("does not fit"));
  }
  SECTION("memory size smaller than file size") {
    auto img = make_elf({{0x1000000, 0, 0x1000, 0x800, 1}}, 0x1000000);
    CHECK_THAT(load_error(mem, img), Catch::Contains("exceeds memory size"));
  }
  SECTION("entry outside every segment") {
    auto img = make_elf({{0x1000000, 0xffffffff81000000, 0x1000, 0x1000, 1}}, 0x2000000);
    CHECK_THAT(load_error(mem, img), Catch::Contains("entry point 0x2000000"));
  }
  SECTION("no loadable segment") {
    auto img = make_elf({}, 0x1000000);
    CHECK_THAT(load_error(mem, img), Catch::Contains("no loadable segment"));
  }
}

TEST_CASE("bzImage: protected-mode part at 1 MiB, 64-bit entry at +0x200, header kept") {
  auto mem = make_mem();
  FakeBzImage bz;
  auto image = bz.build();
  TempFile f(image);
  auto k = load_kernel_file(mem, f.path());
  REQUIRE(k);
  CHECK(k->format == KernelFormat::bzimage);
  CHECK(k->entry == 0x100200);
  CHECK(k->load_start == 0x100000);
  // Relocatable: runtime address max(align_up(1 MiB, 2 MiB), pref_address) = 16 MiB, + init_size.
  CHECK(k->load_end == 0x1000000 + bz.init_size);
  REQUIRE(k->header);
  CHECK(k->header->version == 0x020f);
  CHECK(k->header->initrd_addr_max == 0x7fffffff);
  CHECK(k->header->cmdline_size == 2047);
  auto s = mem.slice(0x100000, bz.pm_size + 1);
  CHECK(s[0] == 0xc3);
  CHECK(s[bz.pm_size - 1] == 0xc3);
  CHECK(s[bz.pm_size] == 0);
}

TEST_CASE("bzImage setup_sects 0 means 4 setup sectors") {
  auto mem = make_mem();
  FakeBzImage bz;
  bz.setup_sects = 0;
  bz.pm_fill = 0x5a;
  auto k = load_kernel(mem, bz.build());
  REQUIRE(k);
  CHECK(mem.slice(0x100000, 1)[0] == 0x5a);
}

TEST_CASE("non-relocatable bzImage runs at pref_address") {
  auto mem = make_mem();
  FakeBzImage bz;
  bz.relocatable = 0;
  bz.pref_address = 0x2000000;
  auto k = load_kernel(mem, bz.build());
  REQUIRE(k);
  CHECK(k->load_end == 0x2000000 + bz.init_size);
}

TEST_CASE("bad bzImages are rejected with a clear reason") {
  auto mem = make_mem();
  FakeBzImage bz;
  SECTION("protocol older than 2.06") {
    bz.version = 0x0205;
    CHECK_THAT(load_error(mem, bz.build()), Catch::Contains("boot protocol 2.05 is too old"));
  }
  SECTION("no 64-bit entry") {
    bz.xloadflags = 0;
    CHECK_THAT(load_error(mem, bz.build()), Catch::Contains("no 64-bit entry point"));
  }
  SECTION("zImage") {
    bz.loadflags = 0;
    CHECK_THAT(load_error(mem, bz.build()), Catch::Contains("zImage"));
  }
  SECTION("absurd setup_sects") {
    auto img = bz.build();
    img[0x1f1] = 200;
    CHECK_THAT(load_error(mem, img), Catch::Contains("setup_sects 200 is absurd"));
  }
  SECTION("setup larger than the file") {
    auto img = bz.build();
    img[0x1f1] = 40;
    CHECK_THAT(load_error(mem, img), Catch::Contains("bzImage truncated: setup takes"));
  }
  SECTION("file shorter than two sectors") {
    auto img = bz.build();
    img.resize(0x300);
    CHECK_THAT(load_error(mem, img), Catch::Contains("bzImage truncated"));
  }
  SECTION("boot flag missing") {
    auto img = bz.build();
    img[0x1fe] = 0;
    CHECK_THAT(load_error(mem, img), Catch::Contains("boot flag"));
  }
  SECTION("init_size beyond guest memory") {
    bz.init_size = 0x7000000;
    CHECK_THAT(load_error(mem, bz.build()), Catch::Contains("init_size") && Catch::Contains("does not fit"));
  }
  SECTION("kernel_alignment not a power of two") {
    bz.kernel_alignment = 0x300000;
    CHECK_THAT(load_error(mem, bz.build()), Catch::Contains("kernel_alignment"));
  }
}

TEST_CASE("files that are no kernel are refused") {
  auto mem = make_mem();
  SECTION("garbage") {
    std::vector<uint8_t> junk(4096, 0x42);
    CHECK_THAT(load_error(mem, junk), Catch::StartsWith("not a Linux kernel"));
  }
  SECTION("empty") {
    CHECK_THAT(load_error(mem, {}), Catch::StartsWith("not a Linux kernel"));
  }
  SECTION("missing file") {
    auto k = load_kernel_file(mem, "/nonexistent/vmlinux");
    REQUIRE_FALSE(k);
    CHECK(k.error().code == Errc::not_found);
    CHECK_THAT(k.error().message, Catch::Contains("/nonexistent/vmlinux"));
  }
  SECTION("a file larger than guest memory") {
    auto small = GuestMemory::create(16ULL << 20);
    REQUIRE(small);
    std::vector<uint8_t> big((16ULL << 20) + 1, 0);
    TempFile f(big);
    auto k = load_kernel_file(*small, f.path());
    REQUIRE_FALSE(k);
    CHECK_THAT(k.error().message, Catch::Contains("larger than guest memory"));
  }
}
