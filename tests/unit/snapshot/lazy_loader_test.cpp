// Lazy restore: guest memory filled on first touch through userfaultfd, from
// user-mode reads and from the kernel's own accesses (as KVM's), in random
// order; a damaged chunk reported, never waited on forever.
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <thread>

#include "snapshot/memory/lazy_loader.hpp"
#include "snapshot/memory/guest_ram.hpp"
#include "tests/unit/snapshot/snapshot_test_util.hpp"
#include "vmm/base/guest_memory.hpp"

using namespace cairn;
using namespace cairn::snap;
using namespace cairn::snap::test;

namespace {
constexpr uint64_t MiB = 1 << 20;
constexpr uint64_t kRam = 8 * MiB;
constexpr uint32_t kChunk = 256 << 10;

// Source RAM with noise, zero, patterned and half-present chunks, and its image.
struct Source {
  GuestMemory ram;
  std::vector<uint8_t> image;
};
Source make_source() {
  auto ram = GuestMemory::create(kRam);
  REQUIRE(ram);
  std::mt19937_64 rng(11);
  uint8_t* p = ram->regions()[0].host();
  fill_random(p, 1 * MiB, rng);                                        // chunks 0-3: noise
  for (uint64_t i = 2 * MiB; i < 3 * MiB; i += 8) p[i] = uint8_t(i >> 12);  // chunks 8-11: a pattern
  for (uint64_t pg = 4 * MiB / 4096; pg < 5 * MiB / 4096; pg += 2) fill_random(p + pg * 4096, 4096, rng);
  fill_random(p + kRam - 4096, 4096, rng);  // the last page
  auto fd = memfile();
  auto stats = write_memory_image(fd.get(), ram_regions(*ram), {.chunk_size = kChunk});
  REQUIRE(stats);
  return {std::move(*ram), slurp(fd.get())};
}

std::shared_ptr<const MemoryImageChain> reader_of(const std::vector<uint8_t>& bytes) {
  auto r = MemoryImageReader::open(file_with(bytes), "image");
  REQUIRE(r);
  std::vector<MemoryImageReader> one;
  one.push_back(std::move(*r));
  auto c = MemoryImageChain::from(std::move(one));
  REQUIRE(c);
  return std::make_shared<const MemoryImageChain>(std::move(*c));
}

bool same_page(const GuestMemory& a, const GuestMemory& b, uint64_t page) {
  return std::memcmp(a.regions()[0].host() + page * 4096, b.regions()[0].host() + page * 4096, 4096) == 0;
}
}  // namespace

TEST_CASE("lazy restore: pages touched in random order by two threads arrive intact", "[snapshot][lazy]") {
  Source src = make_source();
  auto dst = GuestMemory::create(kRam);
  REQUIRE(dst);
  std::atomic<int> errors{0};
  auto loader = LazyMemoryLoader::start(reader_of(src.image), ram_regions(*dst),
                                        [&](const Error&) { errors++; }, {.prefetch = false});
  REQUIRE(loader);
  CHECK_FALSE((*loader)->stats().done);

  std::vector<uint64_t> order(kRam / 4096);
  for (uint64_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(5));
  std::atomic<int> mismatches{0};
  auto touch = [&](size_t from, size_t step) {
    for (size_t k = from; k < order.size(); k += step)
      if (!same_page(src.ram, *dst, order[k])) mismatches++;
  };
  std::thread t1(touch, 0, 2), t2(touch, 1, 2);
  t1.join();
  t2.join();
  CHECK(mismatches == 0);
  REQUIRE((*loader)->wait());
  CHECK((*loader)->stats().done);
  auto st = (*loader)->stats();
  CHECK(st.chunks == kRam / kChunk);
  CHECK(st.demand_chunks == st.chunks);
  CHECK(st.faults >= st.chunks);
  CHECK(errors == 0);
  CHECK(std::memcmp(src.ram.regions()[0].host(), dst->regions()[0].host(), kRam) == 0);
}

TEST_CASE("lazy restore: a fault taken inside the kernel is served too", "[snapshot][lazy]") {
  Source src = make_source();
  auto dst = GuestMemory::create(kRam);
  REQUIRE(dst);
  auto loader = LazyMemoryLoader::start(reader_of(src.image), ram_regions(*dst), nullptr, {.prefetch = false});
  REQUIRE(loader);
  // write(2) from guest memory: the kernel copies from a page not loaded yet,
  // as KVM does when it reads guest memory.
  int p[2];
  REQUIRE(::pipe(p) == 0);
  const uint64_t page = 2 * MiB / 4096 + 3;
  REQUIRE(::write(p[1], dst->regions()[0].host() + page * 4096, 4096) == 4096);
  std::vector<uint8_t> got(4096);
  REQUIRE(::read(p[0], got.data(), got.size()) == 4096);
  ::close(p[0]);
  ::close(p[1]);
  CHECK(std::memcmp(got.data(), src.ram.regions()[0].host() + page * 4096, 4096) == 0);
  CHECK((*loader)->stats().demand_chunks == 1);
}

TEST_CASE("lazy restore: prefetch loads everything without a touch", "[snapshot][lazy]") {
  Source src = make_source();
  auto dst = GuestMemory::create(kRam);
  REQUIRE(dst);
  auto loader = LazyMemoryLoader::start(reader_of(src.image), ram_regions(*dst), nullptr, {.prefetch_threads = 2});
  REQUIRE(loader);
  REQUIRE((*loader)->wait());
  auto st = (*loader)->stats();
  CHECK(st.demand_chunks == 0);
  CHECK(st.load_ms > 0);
  // Unregistered once complete: zero pages left out of the image are holes
  // that read as zeros without the loader.
  loader->reset();
  CHECK(std::memcmp(src.ram.regions()[0].host(), dst->regions()[0].host(), kRam) == 0);
}

TEST_CASE("lazy restore: a damaged chunk met on first touch is reported, and the toucher goes on", "[snapshot][lazy]") {
  Source src = make_source();
  auto reader = reader_of(src.image);
  // Damage the stored bytes of chunk 9 (patterned, lz4).
  const ChunkEntry e = reader->newest().index()[9];
  REQUIRE(e.present_pages > 0);
  src.image[e.offset + e.stored_size / 2] ^= 0x10;
  auto dst = GuestMemory::create(kRam);
  REQUIRE(dst);
  std::atomic<int> reported{0};
  std::string message;
  auto loader = LazyMemoryLoader::start(
      reader_of(src.image), ram_regions(*dst),
      [&](const Error& err) {
        message = err.message;
        CHECK(err.code == Errc::corrupt);
        reported++;
      },
      {.prefetch = false});
  REQUIRE(loader);
  // A good chunk first: loaded as usual.
  CHECK(same_page(src.ram, *dst, 0));
  CHECK(reported == 0);
  // The damaged chunk: reported before the touch returns, and the touch
  // finds zeros rather than the damaged data.
  const uint64_t page = 9 * kChunk / 4096;
  uint8_t first = dst->regions()[0].host()[page * 4096];
  CHECK(first == 0);
  CHECK(reported == 1);
  CHECK(message.find("chunk 9 checksum mismatch") != std::string::npos);
  auto w = (*loader)->wait();
  REQUIRE_FALSE(w);
  CHECK(w.error().code == Errc::corrupt);
  // Later touches do not hang either.
  CHECK(dst->regions()[0].host()[kRam - 1] == 0);
}

TEST_CASE("lazy restore: each chunk of a chain comes from the newest image that stores it", "[snapshot][lazy][chain]") {
  Source src = make_source();
  auto base = MemoryImageReader::open(file_with(src.image), "base");
  REQUIRE(base);
  // Chunks 1, 9 and 31 rewritten, chunk 2 zeroed: an incremental image of those four.
  std::mt19937_64 rng(12);
  uint8_t* p = src.ram.regions()[0].host();
  for (size_t c : {1, 9, 31}) fill_random(p + c * kChunk + 8192, 4096, rng);
  std::memset(p + 2 * kChunk, 0, kChunk);
  const std::vector<size_t> written{1, 2, 9, 31};
  auto top = MemoryImageReader::open(
      file_with(incremental_image_bytes(ram_regions(src.ram), kChunk, base->image_id(), written)), "top");
  REQUIRE(top);
  std::vector<MemoryImageReader> images;
  images.push_back(std::move(*top));
  images.push_back(std::move(*base));
  auto chain = MemoryImageChain::from(std::move(images));
  REQUIRE(chain);

  auto dst = GuestMemory::create(kRam);
  REQUIRE(dst);
  auto loader = LazyMemoryLoader::start(std::make_shared<const MemoryImageChain>(std::move(*chain)), ram_regions(*dst),
                                        nullptr, {.prefetch = false});
  REQUIRE(loader);
  for (uint64_t page = kRam / 4096; page-- > 0;) CHECK(same_page(src.ram, *dst, page));  // descending: demand order
  REQUIRE((*loader)->wait());
  CHECK((*loader)->stats().demand_chunks == kRam / kChunk);
}
