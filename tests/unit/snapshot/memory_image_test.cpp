#include <sys/stat.h>
#include <xxhash.h>

#include <catch2/catch.hpp>

#include "snapshot/memory/bytes.hpp"
#include "tests/unit/snapshot/snapshot_test_util.hpp"

using namespace cairn;
using namespace cairn::snap;
using namespace cairn::snap::test;

namespace {
constexpr uint64_t MiB = 1 << 20;

// Writes `ram` to a memfd, opens it again and loads it into a copy of the layout.
struct RoundTrip {
  MemoryImageStats stats;
  UniqueFd fd;
};
RoundTrip write_image(FakeRam& ram, MemoryImageOptions opts = {}) {
  RoundTrip rt;
  rt.fd = memfile();
  auto s = write_memory_image(rt.fd.get(), ram.regions, opts);
  REQUIRE(s);
  rt.stats = *s;
  return rt;
}
std::vector<std::pair<uint64_t, uint64_t>> layout_of(const FakeRam& ram) {
  std::vector<std::pair<uint64_t, uint64_t>> l;
  for (auto& r : ram.regions) l.emplace_back(r.gpa, r.size);
  return l;
}
void expect_loads_back(FakeRam& ram, int fd) {
  auto reader = MemoryImageReader::open(file_with(slurp(fd)), "image");
  REQUIRE(reader);
  REQUIRE(reader->verify_chunks());
  FakeRam fresh(layout_of(ram));
  REQUIRE(reader->load(fresh.regions, /*already_zero=*/true));
  CHECK(fresh == ram);
  // Into memory full of garbage: absent pages must be zeroed.
  FakeRam dirty(layout_of(ram));
  for (auto& b : dirty.bufs) std::fill(b.begin(), b.end(), 0xa5);
  REQUIRE(reader->load(dirty.regions, /*already_zero=*/false, 1));
  CHECK(dirty == ram);
}
}  // namespace

TEST_CASE("memory image: random pages round trip across regions and odd chunk ends") {
  std::mt19937_64 rng(1);
  // Two regions like a guest above the 3 GiB hole; neither is a chunk multiple.
  FakeRam ram({{0, 5 * MiB + 12 * 4096}, {4ULL << 30, 1 * MiB + 4096}});
  for (auto& b : ram.bufs) fill_random(b.data(), b.size(), rng);
  auto rt = write_image(ram);
  CHECK(rt.stats.guest_bytes == ram.pages() * 4096);
  CHECK(rt.stats.stored_pages == ram.pages());
  CHECK(rt.stats.zero_pages == 0);
  CHECK(rt.stats.chunks == 3 + 1);
  auto size = file_size(rt.fd.get());
  CHECK(*size == rt.stats.file_bytes);
  expect_loads_back(ram, rt.fd.get());
}

TEST_CASE("memory image: incompressible chunks are stored raw, compressible ones smaller") {
  std::mt19937_64 rng(2);
  FakeRam ram({{0, 4 * MiB}});
  fill_random(ram.bufs[0].data(), 2 * MiB, rng);                          // chunk 0: noise
  for (size_t i = 2 * MiB; i < 4 * MiB; ++i) ram.bufs[0][i] = i % 7 + 1;  // chunk 1: a pattern
  auto rt = write_image(ram);
  auto reader = MemoryImageReader::open(file_with(slurp(rt.fd.get())), "image");
  REQUIRE(reader);
  REQUIRE(reader->index().size() == 2);
  CHECK(reader->index()[0].flags == kChunkFlagRaw);
  CHECK(reader->index()[0].stored_size == 2 * MiB);
  CHECK(reader->index()[1].flags == 0);
  CHECK(reader->index()[1].stored_size < 64 * 1024);
  expect_loads_back(ram, rt.fd.get());
}

TEST_CASE("memory image: zero pages are not stored") {
  std::mt19937_64 rng(3);
  FakeRam ram({{0, 64 * MiB}});
  std::vector<uint64_t> used = {0, 1, 511, 512, 7777, 16383};
  for (uint64_t p : used) fill_random(ram.page(p), 4096, rng);
  ram.page(9000)[4095] = 1;  // one byte at the very end of a page counts
  auto rt = write_image(ram);
  CHECK(rt.stats.stored_pages == used.size() + 1);
  CHECK(rt.stats.zero_pages == ram.pages() - used.size() - 1);
  // 7 pages of noise, the index and the header: far below the 64 MiB of RAM.
  CHECK(rt.stats.file_bytes < 8 * 4096 + 32 * 88 + 1024);
  auto reader = MemoryImageReader::open(file_with(slurp(rt.fd.get())), "image");
  REQUIRE(reader);
  CHECK(reader->index()[0].present_pages == 3);  // pages 0, 1, 511
  CHECK(reader->index()[0].present(511));
  CHECK_FALSE(reader->index()[0].present(2));
  CHECK(reader->index()[2].present_pages == 0);
  CHECK(reader->index()[2].stored_size == 0);
  expect_loads_back(ram, rt.fd.get());
}

TEST_CASE("memory image: all-zero memory gives an index and no data") {
  FakeRam ram({{0, 8 * MiB}});
  auto rt = write_image(ram);
  CHECK(rt.stats.stored_pages == 0);
  CHECK(rt.stats.file_bytes ==
        kMemoryHeaderSize + kMemoryRegionEntrySize + kMemoryIdSize + 4 * kMemoryIndexEntrySize);
  expect_loads_back(ram, rt.fd.get());
}

TEST_CASE("memory image: chunk size and thread count do not change the contents") {
  std::mt19937_64 rng(4);
  FakeRam ram({{0, 3 * MiB}});
  for (uint64_t p = 0; p < ram.pages(); p += 3) fill_random(ram.page(p), 4096, rng);
  for (uint32_t chunk : {4096u, 64u * 1024, 2u * 1024 * 1024}) {
    for (unsigned threads : {1u, 3u}) {
      auto rt = write_image(ram, {chunk, threads});
      auto reader = MemoryImageReader::open(file_with(slurp(rt.fd.get())), "image");
      REQUIRE(reader);
      CHECK(reader->chunk_size() == chunk);
      CHECK(reader->index().size() == (3 * MiB + chunk - 1) / chunk);
      expect_loads_back(ram, rt.fd.get());
    }
  }
}

TEST_CASE("memory image: chunk spans cover every region in order") {
  std::vector<RegionLayout> l = {{0, 5 * 4096}, {1 << 30, 2 * 4096}};
  auto spans = chunk_spans(l, 2 * 4096);
  REQUIRE(spans.size() == 4);
  CHECK(spans[0].region == 0);
  CHECK(spans[2].offset == 4 * 4096);
  CHECK(spans[2].length == 4096);
  CHECK(spans[3].region == 1);
  CHECK(spans[3].length == 2 * 4096);
}

TEST_CASE("memory image: the writer refuses bad layouts and chunk sizes") {
  FakeRam ram({{0, 1 * MiB}});
  auto fd = memfile();
  CHECK(write_memory_image(fd.get(), ram.regions, {3000, 1}).error().code == Errc::invalid_argument);
  CHECK(write_memory_image(fd.get(), ram.regions, {4 * 1024 * 1024, 1}).error().code == Errc::invalid_argument);
  std::vector<RamRegion> overlap = {ram.regions[0], ram.regions[0]};
  CHECK(write_memory_image(fd.get(), overlap, {}).error().code == Errc::invalid_argument);
  std::vector<RamRegion> odd = {{0, 4097, ram.bufs[0].data()}};
  CHECK(write_memory_image(fd.get(), odd, {}).error().code == Errc::invalid_argument);
}

TEST_CASE("memory image: loading into a different layout is refused") {
  FakeRam ram({{0, 1 * MiB}});
  auto rt = write_image(ram);
  auto reader = MemoryImageReader::open(file_with(slurp(rt.fd.get())), "image");
  REQUIRE(reader);
  FakeRam other({{0, 2 * MiB}});
  auto r = reader->load(other.regions, true);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::invalid_argument);
}

TEST_CASE("memory image: holes of a memfd are skipped without being read") {
  const uint64_t size = 8 * MiB;
  UniqueFd fd = memfile();
  REQUIRE(::ftruncate(fd.get(), size) == 0);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  REQUIRE(p != MAP_FAILED);
  auto* host = static_cast<uint8_t*>(p);
  std::mt19937_64 rng(11);
  fill_random(host + 5 * 4096, 4096, rng);
  fill_random(host + 3 * MiB, 3 * 4096, rng);
  host[7 * MiB] = 0;  // written, but still a zero page: stored as absent
  struct stat before {};
  REQUIRE(::fstat(fd.get(), &before) == 0);

  std::vector<RamRegion> regions = {{0, size, host, fd.get()}};
  UniqueFd out = memfile();
  auto s = write_memory_image(out.get(), regions, {});
  REQUIRE(s);
  CHECK(s->stored_pages == 4);
  struct stat after {};
  REQUIRE(::fstat(fd.get(), &after) == 0);
  CHECK(after.st_blocks == before.st_blocks);  // no hole was populated by the scan

  auto reader = MemoryImageReader::open(file_with(slurp(out.get())), "image");
  REQUIRE(reader);
  FakeRam back({{0, size}});
  REQUIRE(reader->load(back.regions, true));
  CHECK(std::memcmp(back.bufs[0].data(), host, size) == 0);
  ::munmap(p, size);
}

TEST_CASE("memory image: chunks stored again after the guest wrote them load their newest bytes") {
  std::mt19937_64 rng(7);
  FakeRam ram({{0, 6 * MiB}, {4ULL << 30, 2 * MiB}});
  for (auto& b : ram.bufs) fill_random(b.data(), b.size(), rng);
  auto fd = memfile();
  auto w = MemoryImageWriter::create(fd.get(), ram.regions);
  REQUIRE(w);
  CHECK(w->chunk_count() == 4);
  REQUIRE(w->store_all());
  // As a running guest would: a page of chunk 1 changes, chunk 2 becomes all
  // zero, a page of the second region's chunk changes; only those are stored again.
  fill_random(ram.bufs[0].data() + 2 * MiB + 4096, 4096, rng);
  std::fill(ram.bufs[0].begin() + 4 * MiB, ram.bufs[0].begin() + 6 * MiB, 0);
  fill_random(ram.bufs[1].data() + 8192, 4096, rng);
  CHECK(w->chunk_of(2 * MiB + 4096) == 1u);
  CHECK(w->chunk_of(4 * MiB) == 2u);
  CHECK(w->chunk_of((4ULL << 30) + 8192) == 3u);
  CHECK_FALSE(w->chunk_of(6 * MiB).has_value());
  std::vector<size_t> again{1, 2, 3};
  REQUIRE(w->store(again));
  auto s = w->finish();
  REQUIRE(s);
  // Three chunks of incompressible data were stored twice; chunk 2 is now
  // absent; the image holds no stale bytes.
  CHECK(s->compacted_bytes == 3 * 2 * MiB);
  CHECK(s->file_bytes == 64 + 2 * 16 + 8 + 3 * 2 * MiB + 4 * 88);
  CHECK(s->stored_pages == ram.pages() - 512);
  CHECK(s->file_bytes == *file_size(fd.get()));
  expect_loads_back(ram, fd.get());
}

TEST_CASE("memory image: a forged region size is refused before its chunks are listed") {
  // 80 bytes: header, one region of 1 TiB, chunk size 4096, no index. Sealed
  // with a valid checksum, so only the chunk count gives it away (268M chunks).
  std::vector<uint8_t> img(64 + 16, 0);
  std::memcpy(img.data(), kMemoryMagic, 8);
  put_u32(img, 8, kMemoryVersion);
  put_u32(img, 12, kMemoryPageSize);
  put_u32(img, 16, 4096);
  put_u32(img, 20, 1);
  put_u64(img, 24, 0);
  put_u64(img, 32, 80);
  put_u64(img, 40, 80);
  put_u64(img, 64 + 8, 1ULL << 40);
  std::vector<uint8_t> sealed(img.begin(), img.begin() + 56);
  sealed.insert(sealed.end(), img.begin() + 64, img.end());
  put_u64(img, 56, XXH3_64bits(sealed.data(), sealed.size()));
  auto r = MemoryImageReader::open(file_with(img), "forged");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::corrupt);
  CHECK_THAT(r.error().message, Catch::Contains("regions need 268435456"));
}
