#include <catch2/catch.hpp>

#include <cstring>

#include "vmm/boot/layout.hpp"
#include "vmm/boot/mptable.hpp"

using namespace cairn;

namespace {
uint8_t sum(std::span<const uint8_t> s) {
  uint8_t t = 0;
  for (auto b : s) t = static_cast<uint8_t>(t + b);
  return t;
}
uint16_t u16(std::span<const uint8_t> s, size_t off) { return static_cast<uint16_t>(s[off] | (s[off + 1] << 8)); }
uint32_t u32(std::span<const uint8_t> s, size_t off) {
  uint32_t v;
  std::memcpy(&v, s.data() + off, 4);
  return v;
}

// Walks the configuration table and counts entries by type; checks each entry's length.
struct Parsed {
  int counts[5] = {};
  std::vector<std::array<uint8_t, 20>> cpus;
  std::vector<std::array<uint8_t, 8>> others;
};

Parsed parse(std::span<const uint8_t> table, unsigned entries) {
  Parsed p;
  size_t off = 44;
  for (unsigned i = 0; i < entries; ++i) {
    uint8_t type = table[off];
    REQUIRE(type <= 4);
    p.counts[type]++;
    size_t len = type == 0 ? 20 : 8;
    if (type == 0) {
      std::array<uint8_t, 20> e;
      std::memcpy(e.data(), table.data() + off, 20);
      p.cpus.push_back(e);
    } else {
      std::array<uint8_t, 8> e;
      std::memcpy(e.data(), table.data() + off, 8);
      p.others.push_back(e);
    }
    off += len;
  }
  CHECK(off == table.size());
  return p;
}

void check_table(unsigned vcpus) {
  auto mem = GuestMemory::create(16ULL << 20);
  REQUIRE(mem);
  REQUIRE(write_mptable(*mem, vcpus));

  auto fp = mem->slice(layout::kMpTableAddr, 16);
  CHECK(std::memcmp(fp.data(), "_MP_", 4) == 0);
  CHECK(sum(fp) == 0);
  CHECK(fp[8] == 1);
  CHECK(fp[9] == 4);
  CHECK(fp[11] == 0);  // a configuration table follows (no default configuration)
  uint32_t cfg = u32(fp, 4);
  CHECK(cfg == layout::kMpTableAddr + 16);

  auto hdr = mem->slice(cfg, 44);
  CHECK(std::memcmp(hdr.data(), "PCMP", 4) == 0);
  uint16_t len = u16(hdr, 4);
  uint16_t entries = u16(hdr, 34);
  CHECK(len == 44u + 20u * vcpus + 8 * (2 + 24 + 2));
  CHECK(entries == vcpus + 28u);
  CHECK(u32(hdr, 36) == 0xfee00000);
  CHECK(hdr[6] == 4);
  CHECK(16u + len == mptable_size(vcpus));
  CHECK(cfg + len <= 0xa0000);

  auto table = mem->slice(cfg, len);
  CHECK(sum(table) == 0);
  auto p = parse(table, entries);
  CHECK(p.counts[0] == int(vcpus));
  CHECK(p.counts[1] == 1);
  CHECK(p.counts[2] == 1);
  CHECK(p.counts[3] == 24);
  CHECK(p.counts[4] == 2);
  for (unsigned i = 0; i < vcpus; ++i) {
    CHECK(p.cpus[i][1] == i);                      // APIC id
    CHECK(p.cpus[i][3] == (i == 0 ? 3 : 1));       // enabled, BSP only on 0
  }
  auto& bus = p.others[0];
  CHECK(std::memcmp(bus.data() + 2, "ISA   ", 6) == 0);
  auto& ioapic = p.others[1];
  CHECK(ioapic[1] == vcpus);
  CHECK(ioapic[2] == 0x11);
  CHECK(ioapic[3] == 1);
  CHECK(u32(ioapic, 4) == 0xfec00000);
  for (unsigned irq = 0; irq < 24; ++irq) {
    auto& e = p.others[2 + irq];
    CHECK(e[0] == 3);
    CHECK(e[5] == irq);    // source IRQ
    CHECK(e[6] == vcpus);  // IO-APIC id
    CHECK(e[7] == irq);    // pin
  }
  auto& lint0 = p.others[26];
  auto& lint1 = p.others[27];
  CHECK((lint0[0] == 4 && lint0[1] == 3 && lint0[7] == 0));     // ExtINT on LINT0
  CHECK((lint1[0] == 4 && lint1[1] == 1 && lint1[6] == 0xff && lint1[7] == 1));  // NMI on LINT1, all
}
}  // namespace

TEST_CASE("MP table for 1 vCPU has valid checksums and entry counts") { check_table(1); }
TEST_CASE("MP table for 4 vCPUs has valid checksums and entry counts") { check_table(4); }
TEST_CASE("MP table for the maximum vCPU count fits in the EBDA") { check_table(kMaxVcpus); }

TEST_CASE("MP table refuses 0 or too many vCPUs") {
  auto mem = GuestMemory::create(16ULL << 20);
  REQUIRE(mem);
  CHECK_FALSE(write_mptable(*mem, 0));
  auto r = write_mptable(*mem, kMaxVcpus + 1);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::Contains("between 1 and 32"));
}
