// Every kind of damage to a memory image is refused with Errc::corrupt:
// flipped bits anywhere, truncation, extension, and metadata that is wrong
// yet carries a valid checksum (so the bounds checks themselves are tested).
#include <xxhash.h>

#include <catch2/catch.hpp>
#include <functional>

#include "snapshot/memory/bytes.hpp"
#include "tests/unit/snapshot/snapshot_test_util.hpp"

using namespace cairn;
using namespace cairn::snap;
using namespace cairn::snap::test;

namespace {
constexpr uint64_t MiB = 1 << 20;

// An image of 7 MiB in two regions, four chunks: 0 = noise (stored raw),
// 1 = zero, 2 = a pattern (lz4), 3 = one noise page (raw, a 1 MiB region).
std::vector<uint8_t> sample_image() {
  std::mt19937_64 rng(7);
  FakeRam ram({{0, 6 * MiB}, {8 * MiB, 1 * MiB}});
  fill_random(ram.bufs[0].data(), 1 * MiB, rng);
  for (size_t i = 5 * MiB; i < 6 * MiB; i += 2) ram.bufs[0][i] = 0x42;
  fill_random(ram.bufs[1].data() + 4096, 4096, rng);
  auto fd = memfile();
  REQUIRE(write_memory_image(fd.get(), ram.regions, {}));
  return slurp(fd.get());
}

// Open, verify and load: the first failure, or success.
Result<void> full_read(const std::vector<uint8_t>& bytes) {
  auto reader = MemoryImageReader::open(file_with(bytes), "image");
  if (!reader) return std::unexpected(reader.error());
  if (auto r = reader->verify_chunks(); !r) return r;
  FakeRam ram({{0, 6 * MiB}, {8 * MiB, 1 * MiB}});
  return reader->load(ram.regions, true);
}

// Returns the error message so callers can check the reason.
std::string expect_corrupt(const std::vector<uint8_t>& bytes, const std::string& what) {
  INFO(what);
  auto r = full_read(bytes);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::corrupt);
  return r.error().message;
}

uint64_t index_offset(const std::vector<uint8_t>& b) { return get_u64(b, 32); }

// Recomputes the header's metadata checksum after a deliberate edit.
void reseal(std::vector<uint8_t>& b) {
  uint32_t regions = get_u32(b, 20);
  uint64_t count = get_u64(b, 24);
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, b.data(), 56);
  XXH3_64bits_update(st, b.data() + kMemoryHeaderSize, regions * kMemoryRegionEntrySize + kMemoryIdSize);
  XXH3_64bits_update(st, b.data() + index_offset(b), count * kMemoryIndexEntrySize);
  put_u64(b, 56, XXH3_64bits_digest(st));
  XXH3_freeState(st);
}
size_t entry(const std::vector<uint8_t>& b, size_t i) { return index_offset(b) + i * kMemoryIndexEntrySize; }
}  // namespace

TEST_CASE("memory image corruption: the sample image itself reads back") { REQUIRE(full_read(sample_image())); }

TEST_CASE("memory image corruption: a bit flip in the header or region table is refused") {
  auto good = sample_image();
  for (size_t off = 0; off < kMemoryHeaderSize + 2 * kMemoryRegionEntrySize; ++off) {
    for (int bit : {0, 7}) {
      auto bad = good;
      bad[off] ^= static_cast<uint8_t>(1 << bit);
      expect_corrupt(bad, fmt::format("header byte {} bit {}", off, bit));
    }
  }
}

TEST_CASE("memory image corruption: a bit flip anywhere in the chunk index is refused") {
  auto good = sample_image();
  for (size_t off = index_offset(good); off < good.size(); ++off) {
    auto bad = good;
    bad[off] ^= 0x10;
    expect_corrupt(bad, fmt::format("index byte {}", off));
  }
}

TEST_CASE("memory image corruption: a bit flip in chunk data is refused before memory is touched") {
  auto good = sample_image();
  const uint64_t data_start = kMemoryHeaderSize + 2 * kMemoryRegionEntrySize;
  std::mt19937_64 rng(9);
  for (int n = 0; n < 200; ++n) {
    uint64_t off = data_start + rng() % (index_offset(good) - data_start);
    auto bad = good;
    bad[off] ^= static_cast<uint8_t>(1u << (rng() % 8));
    auto reader = MemoryImageReader::open(file_with(bad), "image");
    REQUIRE(reader);  // metadata is intact
    auto r = reader->verify_chunks();
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
    CHECK_THAT(r.error().message, Catch::Contains("checksum"));
  }
}

TEST_CASE("memory image corruption: truncation and extension are refused") {
  auto good = sample_image();
  for (size_t len : {size_t{0}, size_t{10}, size_t{63}, size_t{64}, size_t{100}, good.size() / 2, good.size() - 88,
                     good.size() - 1}) {
    auto bad = good;
    bad.resize(len);
    expect_corrupt(bad, fmt::format("truncated to {}", len));
  }
  auto longer = good;
  longer.push_back(0);
  expect_corrupt(longer, "one byte appended");
}

TEST_CASE("memory image corruption: resealed but impossible metadata is refused") {
  auto good = sample_image();
  struct Case {
    const char* what;
    std::function<void(std::vector<uint8_t>&)> edit;
  };
  std::vector<Case> cases = {
      {"version 3", [](auto& b) { put_u32(b, 8, 3); }},
      {"page size 8192", [](auto& b) { put_u32(b, 12, 8192); }},
      {"chunk size 0", [](auto& b) { put_u32(b, 16, 0); }},
      {"chunk size 4 MiB", [](auto& b) { put_u32(b, 16, 4 * MiB); }},
      {"chunk size 1 MiB (count no longer matches)", [](auto& b) { put_u32(b, 16, 1 * MiB); }},
      {"no regions", [](auto& b) { put_u32(b, 20, 0); }},
      {"image id zero", [](auto& b) { put_u64(b, kMemoryHeaderSize + 2 * kMemoryRegionEntrySize, 0); }},
      {"region size not whole pages", [](auto& b) { put_u64(b, kMemoryHeaderSize + 8, 6 * MiB + 1); }},
      {"regions overlap", [](auto& b) { put_u64(b, kMemoryHeaderSize + 16, 2 * MiB); }},
      {"chunk offset past the index", [](auto& b) { put_u64(b, entry(b, 0), index_offset(b)); }},
      {"chunk offset inside the header", [](auto& b) { put_u64(b, entry(b, 0), 8); }},
      {"chunk data runs into the index", [](auto& b) { put_u64(b, entry(b, 3), index_offset(b) - 100); }},
      {"lz4 chunk larger than lz4 can make it", [](auto& b) { put_u32(b, entry(b, 2) + 8, 2 * MiB); }},
      {"raw chunk of the wrong size", [](auto& b) { put_u32(b, entry(b, 0) + 8, get_u32(b, entry(b, 0) + 8) - 1); }},
      {"unknown flag", [](auto& b) { put_u16(b, entry(b, 1) + 14, 4); }},
      {"present count disagrees with the bitmap", [](auto& b) { put_u16(b, entry(b, 0) + 12, 3); }},
      {"bitmap bit past a short chunk",
       [](auto& b) {
         // chunk 3 is region 1 (1 MiB = 256 pages): page 300 does not exist.
         b[entry(b, 3) + 24 + 300 / 8] |= 1 << (300 % 8);
         put_u16(b, entry(b, 3) + 12, get_u16(b, entry(b, 3) + 12) + 1);
       }},
      {"empty chunk with an offset", [](auto& b) { put_u64(b, entry(b, 1), 96); }},
      {"two chunks share their bytes", [](auto& b) { put_u64(b, entry(b, 2), get_u64(b, entry(b, 0))); }},
  };
  for (auto& c : cases) {
    auto bad = good;
    c.edit(bad);
    reseal(bad);
    // The checksum is valid again: a bounds or consistency check must catch it.
    auto msg = expect_corrupt(bad, c.what);
    INFO(c.what << ": " << msg);
    CHECK_THAT(msg, !Catch::Contains("checksum"));
  }
}

TEST_CASE("memory image corruption: a chunk that does not decompress to its pages is refused") {
  // A valid lz4 block of the wrong length, with a matching checksum.
  auto good = sample_image();
  auto reader = MemoryImageReader::open(file_with(good), "image");
  REQUIRE(reader);
  size_t i = 0;
  while (reader->index()[i].flags != 0 || reader->index()[i].present_pages < 2) ++i;
  auto bad = good;
  put_u16(bad, entry(bad, i) + 12, reader->index()[i].present_pages - 1);
  // Drop the last present page from the bitmap so the counts agree.
  for (int p = 511; p >= 0; --p)
    if (reader->index()[i].present(static_cast<unsigned>(p))) {
      bad[entry(bad, i) + 24 + p / 8] &= static_cast<uint8_t>(~(1 << (p % 8)));
      break;
    }
  reseal(bad);
  auto r = full_read(bad);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::corrupt);
  CHECK_THAT(r.error().message, Catch::Contains("decompress"));
}

TEST_CASE("memory image corruption: a full chunk, loaded straight into guest memory, is checked there") {
  // Two 256 KiB chunks with every page present: noise (stored raw) and a
  // pattern (lz4). The restore path loads them without a separate check.
  constexpr uint64_t kChunk = 256 << 10;
  std::mt19937_64 rng(11);
  FakeRam ram({{0, 2 * kChunk}});
  fill_random(ram.bufs[0].data(), kChunk, rng);
  for (size_t i = kChunk; i < 2 * kChunk; ++i) ram.bufs[0][i] = static_cast<uint8_t>(1 + i % 7);
  auto fd = memfile();
  REQUIRE(write_memory_image(fd.get(), ram.regions, {.chunk_size = kChunk}));
  const auto good = slurp(fd.get());
  {
    auto reader = MemoryImageReader::open(file_with(good), "image");
    REQUIRE(reader);
    REQUIRE(reader->index()[0].present_pages == kChunk / kMemoryPageSize);
    REQUIRE(reader->index()[1].present_pages == kChunk / kMemoryPageSize);
    CHECK((reader->index()[0].flags & kChunkFlagRaw) != 0);
    CHECK((reader->index()[1].flags & kChunkFlagRaw) == 0);
    FakeRam back({{0, 2 * kChunk}});
    REQUIRE(reader->load(back.regions, true));
    CHECK(back.bufs[0] == ram.bufs[0]);
  }
  const uint64_t data_start = kMemoryHeaderSize + kMemoryRegionEntrySize;
  for (int n = 0; n < 100; ++n) {
    uint64_t off = data_start + rng() % (index_offset(good) - data_start);
    auto bad = good;
    bad[off] ^= static_cast<uint8_t>(1u << (rng() % 8));
    auto reader = MemoryImageReader::open(file_with(bad), "image");
    REQUIRE(reader);
    FakeRam back({{0, 2 * kChunk}});
    auto r = reader->load(back.regions, true);
    INFO("flipped byte " << off);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
    CHECK_THAT(r.error().message, Catch::Contains("checksum"));
  }
}
