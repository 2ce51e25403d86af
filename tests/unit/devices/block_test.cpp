// virtio-blk end to end: a raw temp file behind VirtioBlock behind the
// virtio-mmio transport, driven through registers and a hand-built ring.
#include <catch2/catch.hpp>

#include <cstring>

#include "devices/raw_file_backend.hpp"
#include "devices/virtio/block.hpp"
#include "devices/virtio/mmio_transport.hpp"
#include "test_support.hpp"

using namespace cairn;
using cairn::test::kDescNext;
using cairn::test::kDescWrite;
using cairn::test::RecordingLine;
using cairn::test::TempFile;
using cairn::test::TestRing;

namespace {
constexpr uint64_t kHdr = 0x20000, kData = 0x30000, kStatus = 0x40000;
constexpr uint64_t kDiskSize = 64 * 512;

struct Disk {
  explicit Disk(bool read_only = false, uint64_t features = ~0ULL) : file(kDiskSize, "cairn-blk-test-disk-name") {
    std::vector<uint8_t> pattern(kDiskSize);
    for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(i / 512 + 1);
    file.write_at(0, pattern);
    auto be = RawFileBackend::open(file.path, read_only);
    REQUIRE(be);
    blk = std::make_shared<VirtioBlock>(std::shared_ptr<BlockBackend>(std::move(*be)));
    t = std::make_unique<MmioTransport>(ring.mem, blk, line);
    // Driver initialization (virtio 1.1 section 3.1.1) through the registers.
    wr(0x070, 0);
    wr(0x070, 1);
    wr(0x070, 3);
    uint64_t offered = (uint64_t{rd_sel(1)} << 32) | rd_sel(0);
    uint64_t accept = offered & features;
    wr(0x024, 0);
    wr(0x020, static_cast<uint32_t>(accept));
    wr(0x024, 1);
    wr(0x020, static_cast<uint32_t>(accept >> 32));
    wr(0x070, 11);
    REQUIRE(rd(0x070) == 11);
    wr(0x030, 0);
    REQUIRE(rd(0x034) == 256);
    wr(0x038, 256);
    wr(0x080, TestRing::kDesc);
    wr(0x090, TestRing::kAvail);
    wr(0x0a0, TestRing::kUsed);
    wr(0x044, 1);
    wr(0x070, 15);
    REQUIRE(rd(0x070) == 15);
  }
  uint32_t rd(uint64_t off) {
    uint32_t v = 0;
    t->read(off, std::span(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
  }
  uint32_t rd_sel(uint32_t sel) {
    wr(0x014, sel);
    return rd(0x010);
  }
  void wr(uint64_t off, uint32_t v) { t->write(off, std::span(reinterpret_cast<const uint8_t*>(&v), 4)); }

  void header(uint32_t type, uint64_t sector) {
    uint8_t h[16] = {};
    std::memcpy(h, &type, 4);
    std::memcpy(h + 8, &sector, 8);
    ring.fill(kHdr, std::vector<uint8_t>(h, h + 16));
  }
  // header, one data buffer (device-readable when `out`), status byte.
  uint8_t request(uint32_t type, uint64_t sector, uint32_t data_len, bool out) {
    header(type, sector);
    ring.fill(kStatus, {0xee});
    ring.set_desc(0, kHdr, 16, kDescNext, 1);
    if (data_len) {
      ring.set_desc(1, kData, data_len, kDescNext | (out ? 0 : kDescWrite), 2);
      ring.set_desc(2, kStatus, 1, kDescWrite);
    } else {
      ring.set_desc(0, kHdr, 16, kDescNext, 2);
      ring.set_desc(2, kStatus, 1, kDescWrite);
    }
    return kick(0);
  }
  uint8_t kick(uint16_t head) {
    ring.publish(head);
    wr(0x050, 0);
    REQUIRE(ring.used_idx() == ring.avail_idx);
    REQUIRE(ring.used(ring.avail_idx - 1).first == head);
    return ring.bytes(kStatus, 1)[0];
  }
  uint32_t last_used_len() { return ring.used(ring.avail_idx - 1).second; }
  std::vector<uint8_t> disk_bytes(uint64_t off, size_t n) {
    auto all = file.read_all();
    return std::vector<uint8_t>(all.begin() + off, all.begin() + off + n);
  }

  TempFile file;
  TestRing ring{256};
  std::shared_ptr<RecordingLine> line = std::make_shared<RecordingLine>();
  std::shared_ptr<VirtioBlock> blk;
  std::unique_ptr<MmioTransport> t;
};
}  // namespace

TEST_CASE("virtio-blk config space and features") {
  Disk d;
  uint64_t capacity = d.rd(0x100) | (uint64_t{d.rd(0x104)} << 32);
  CHECK(capacity == 64);
  CHECK(d.rd(0x100 + 12) == 254);  // seg_max
  CHECK(d.rd(0x100 + 20) == 512);  // blk_size
  uint64_t f = (uint64_t{d.rd_sel(1)} << 32) | d.rd_sel(0);
  CHECK((f & kVirtioFVersion1) != 0);
  CHECK((f & kBlkFFlush) != 0);
  CHECK((f & kBlkFDiscard) != 0);
  CHECK((f & kBlkFWriteZeroes) != 0);
  CHECK((f & kBlkFRo) == 0);
}

TEST_CASE("virtio-blk reads and writes sectors") {
  Disk d;
  REQUIRE(d.request(kBlkTIn, 3, 1024, false) == kBlkSOk);
  CHECK(d.last_used_len() == 1025);
  auto got = d.ring.bytes(kData, 1024);
  CHECK(got[0] == 4);
  CHECK(got[511] == 4);
  CHECK(got[512] == 5);
  CHECK(d.line->triggers == 1);
  CHECK((d.rd(0x060) & kInterruptUsedBuffer) != 0);

  d.ring.fill(kData, std::vector<uint8_t>(512, 0xab));
  REQUIRE(d.request(kBlkTOut, 10, 512, true) == kBlkSOk);
  CHECK(d.last_used_len() == 1);
  CHECK(d.disk_bytes(10 * 512, 512) == std::vector<uint8_t>(512, 0xab));
  CHECK(d.disk_bytes(11 * 512, 1)[0] == 12);  // neighbours untouched

  REQUIRE(d.request(kBlkTFlush, 0, 0, false) == kBlkSOk);
}

TEST_CASE("virtio-blk reads into several buffers and marks them dirty") {
  Disk d;
  d.header(kBlkTIn, 0);
  d.ring.set_desc(5, kHdr, 16, kDescNext, 6);
  d.ring.set_desc(6, kData, 512, kDescNext | kDescWrite, 7);
  d.ring.set_desc(7, kData + 0x2000, 511, kDescNext | kDescWrite, 8);
  // The status byte shares the last buffer with the final data byte.
  d.ring.set_desc(8, kStatus - 1, 2, kDescWrite);
  d.ring.mem.take_vmm_dirty_pages();
  REQUIRE(d.kick(5) == kBlkSOk);
  CHECK(d.last_used_len() == 1025);
  CHECK(d.ring.bytes(kData + 0x2000, 511) == std::vector<uint8_t>(511, 2));
  CHECK(d.ring.bytes(kStatus - 1, 1)[0] == 2);
  auto dirty = d.ring.mem.take_vmm_dirty_pages();
  for (uint64_t p : {kData, kData + 0x2000, kStatus - 0x1000, kStatus, uint64_t{TestRing::kUsed}})
    CHECK(std::find(dirty.begin(), dirty.end(), p) != dirty.end());
}

TEST_CASE("virtio-blk GET_ID returns the file name, truncated to 20 bytes") {
  Disk d;
  d.ring.fill(kData, std::vector<uint8_t>(20, 0xff));
  REQUIRE(d.request(kBlkTGetId, 0, 20, false) == kBlkSOk);
  auto id = d.ring.bytes(kData, 20);
  CHECK(std::string(id.begin(), id.end()) == std::string("cairn-blk-test-disk-name-XXXXXX").substr(0, 20));
}

TEST_CASE("virtio-blk refuses out-of-range sectors") {
  Disk d;
  CHECK(d.request(kBlkTIn, 64, 512, false) == kBlkSIoErr);
  CHECK(d.request(kBlkTIn, 63, 1024, false) == kBlkSIoErr);
  CHECK(d.request(kBlkTOut, 1ULL << 55, 512, true) == kBlkSIoErr);  // sector * 512 wraps
  CHECK(d.request(kBlkTIn, UINT64_MAX, 512, false) == kBlkSIoErr);
  CHECK(d.request(kBlkTIn, 0, 100, false) == kBlkSIoErr);  // not whole sectors
  CHECK(d.request(kBlkTIn, 63, 512, false) == kBlkSOk);   // the very last sector
  CHECK(d.request(99, 0, 0, false) == kBlkSUnsupp);
}

TEST_CASE("virtio-blk on a read-only disk") {
  Disk d(true);
  uint64_t f = (uint64_t{d.rd_sel(1)} << 32) | d.rd_sel(0);
  CHECK((f & kBlkFRo) != 0);
  CHECK((f & kBlkFDiscard) == 0);
  d.ring.fill(kData, std::vector<uint8_t>(512, 0xcd));
  CHECK(d.request(kBlkTOut, 0, 512, true) == kBlkSIoErr);
  CHECK(d.disk_bytes(0, 1)[0] == 1);
  CHECK(d.request(kBlkTIn, 0, 512, false) == kBlkSOk);
  CHECK(d.request(kBlkTFlush, 0, 0, false) == kBlkSOk);
}

TEST_CASE("virtio-blk discard and write zeroes") {
  Disk d;
  auto segment = [&](uint64_t sector, uint32_t n, uint32_t flags) {
    std::vector<uint8_t> s(16);
    std::memcpy(s.data(), &sector, 8);
    std::memcpy(s.data() + 8, &n, 4);
    std::memcpy(s.data() + 12, &flags, 4);
    d.ring.fill(kData, s);
  };
  segment(8, 8, 0);
  REQUIRE(d.request(kBlkTDiscard, 0, 16, true) == kBlkSOk);
  CHECK(d.disk_bytes(8 * 512, 8 * 512) == std::vector<uint8_t>(8 * 512, 0));
  CHECK(d.disk_bytes(16 * 512, 1)[0] == 17);

  segment(20, 1, 1);  // unmap allowed for write zeroes
  REQUIRE(d.request(kBlkTWriteZeroes, 0, 16, true) == kBlkSOk);
  CHECK(d.disk_bytes(20 * 512, 512) == std::vector<uint8_t>(512, 0));
  CHECK(d.disk_bytes(21 * 512, 1)[0] == 22);

  segment(0, 1, 1);  // unmap is not a discard flag
  CHECK(d.request(kBlkTDiscard, 0, 16, true) == kBlkSUnsupp);
  segment(60, 8, 0);  // runs past the end
  CHECK(d.request(kBlkTDiscard, 0, 16, true) == kBlkSIoErr);
  CHECK(d.disk_bytes(60 * 512, 1)[0] == 61);
  CHECK(d.request(kBlkTDiscard, 0, 12, true) == kBlkSIoErr);  // partial segment
}

TEST_CASE("virtio-blk without negotiated discard reports it unsupported") {
  Disk d(false, ~kBlkFDiscard);
  std::vector<uint8_t> s(16, 0);
  s[8] = 1;
  d.ring.fill(kData, s);
  CHECK(d.request(kBlkTDiscard, 0, 16, true) == kBlkSUnsupp);
}

TEST_CASE("virtio-blk survives malformed requests") {
  Disk d;
  SECTION("no status byte: the last buffer is device-readable") {
    d.header(kBlkTIn, 0);
    d.ring.set_desc(0, kHdr, 16, kDescNext, 1);
    d.ring.set_desc(1, kData, 512, 0);
    d.ring.fill(kData, std::vector<uint8_t>(512, 0x77));
    d.kick(0);
    CHECK(d.last_used_len() == 0);
    CHECK(d.ring.bytes(kData, 512) == std::vector<uint8_t>(512, 0x77));
  }
  SECTION("zero-length status buffer") {
    d.header(kBlkTIn, 0);
    d.ring.set_desc(0, kHdr, 16, kDescNext, 1);
    d.ring.set_desc(1, kStatus, 0, kDescWrite);
    d.ring.fill(kStatus, {0xee});
    CHECK(d.kick(0) == 0xee);
    CHECK(d.last_used_len() == 0);
  }
  SECTION("header too short") {
    d.header(kBlkTOut, 0);
    d.ring.set_desc(0, kHdr, 8, kDescNext, 1);
    d.ring.set_desc(1, kStatus, 1, kDescWrite);
    CHECK(d.kick(0) == kBlkSIoErr);
  }
  SECTION("only a status byte") {
    d.ring.set_desc(0, kStatus, 1, kDescWrite);
    CHECK(d.kick(0) == kBlkSIoErr);
  }
  SECTION("write request whose data is device-writable") {
    d.header(kBlkTOut, 0);
    d.ring.set_desc(0, kHdr, 16, kDescNext, 1);
    d.ring.set_desc(1, kData, 512, kDescNext | kDescWrite, 2);
    d.ring.set_desc(2, kStatus, 1, kDescWrite);
    CHECK(d.kick(0) == kBlkSOk);  // zero bytes written: nothing to do
    CHECK(d.disk_bytes(0, 1)[0] == 1);
  }
  // Either way the device goes on serving well-formed requests.
  CHECK(d.request(kBlkTIn, 0, 512, false) == kBlkSOk);
}

TEST_CASE("virtio-blk stops on a malformed ring without crashing") {
  Disk d;
  d.ring.set_desc(0, kHdr, 16, kDescNext, 0);  // loop
  d.ring.publish(0);
  d.wr(0x050, 0);
  CHECK(d.blk->broken());
  CHECK(d.ring.used_idx() == 0);
  // A reset brings it back.
  d.wr(0x070, 0);
  CHECK_FALSE(d.blk->broken());
}
