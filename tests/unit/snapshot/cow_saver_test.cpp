// Copy-on-write capture: the image holds guest RAM as it was when the saver
// started, however threads (and the kernel, for them) write it meanwhile; a
// failed store or a saver dropped midway never leaves a write waiting.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <set>
#include <thread>

#include "snapshot/memory/cow_saver.hpp"
#include "snapshot/memory/image_chain.hpp"
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
constexpr uint64_t kPages = kRam / 4096;

// Noise, a pattern, every other page, and 3 MiB never touched (holes).
GuestMemory make_ram() {
  auto ram = GuestMemory::create(kRam);
  REQUIRE(ram);
  std::mt19937_64 rng(3);
  uint8_t* p = ram->regions()[0].host();
  fill_random(p, 1 * MiB, rng);
  for (uint64_t i = 2 * MiB; i < 3 * MiB; i += 8) p[i] = uint8_t(i >> 12);
  for (uint64_t pg = 4 * MiB / 4096; pg < 5 * MiB / 4096; pg += 2) fill_random(p + pg * 4096, 4096, rng);
  return std::move(*ram);
}

// The image in `fd`, loaded into plain buffers.
std::vector<uint8_t> load_image(int fd) {
  auto reader = MemoryImageReader::open(file_with(slurp(fd)), "image");
  REQUIRE(reader);
  std::vector<uint8_t> got(kRam, 0);
  std::vector<RamRegion> regions{{0, kRam, got.data(), -1}};
  REQUIRE(reader->load(regions, /*already_zero=*/true));
  return got;
}
}  // namespace

TEST_CASE("copy-on-write: the image is RAM as it was at start, however it is written meanwhile", "[snapshot][cow]") {
  GuestMemory ram = make_ram();
  uint8_t* host = ram.regions()[0].host();
  const std::vector<uint8_t> before(host, host + kRam);
  auto fd = memfile();
  auto writer = MemoryImageWriter::create(fd.get(), ram_regions(ram), {.chunk_size = kChunk});
  REQUIRE(writer);
  auto saver = CopyOnWriteSaver::start(*writer, {.threads = 2, .start_writers = false});
  REQUIRE(saver);

  // The kernel writes for us first (read(2) into a page never touched), as
  // KVM writes guest memory for a vCPU or a disk read lands in a buffer.
  int p[2];
  REQUIRE(::pipe(p) == 0);
  std::vector<uint8_t> from_pipe(4096, 0xA5);
  REQUIRE(::write(p[1], from_pipe.data(), from_pipe.size()) == 4096);
  const uint64_t hole_page = 6 * MiB / 4096 + 1;
  REQUIRE(::read(p[0], host + hole_page * 4096, 4096) == 4096);
  ::close(p[0]);
  ::close(p[1]);
  CHECK(host[hole_page * 4096] == 0xA5);

  // Two threads write half the pages of the first 6 MiB, in random order.
  const uint64_t span = 6 * MiB / 4096;
  std::vector<uint64_t> order(span);
  for (uint64_t i = 0; i < span; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(8));
  order.resize(span / 2);
  auto scribble = [&](size_t from) {
    for (size_t k = from; k < order.size(); k += 2) std::memset(host + order[k] * 4096 + 100, int(k % 251) + 1, 64);
  };
  std::thread t1(scribble, 0), t2(scribble, 1);
  t1.join();
  t2.join();
  std::set<uint64_t> touched{hole_page * 4096 / kChunk};
  for (uint64_t pg : order) touched.insert(pg * 4096 / kChunk);
  auto mid = (*saver)->stats();
  CHECK(mid.fault_chunks == touched.size());  // each chunk stored once, on its first write
  CHECK(mid.faults >= mid.fault_chunks);
  CHECK_FALSE(mid.done);  // the last 1.75 MiB were not written
  CHECK(mid.stored == touched.size());

  (*saver)->start_writers();
  REQUIRE((*saver)->wait());
  auto st = (*saver)->stats();
  CHECK(st.done);
  CHECK(st.stored == kRam / kChunk);
  CHECK(st.copy_ms > 0);
  REQUIRE(writer->finish());
  const std::vector<uint8_t> after(host, host + kRam);
  CHECK(after != before);  // the writes went through
  CHECK(load_image(fd.get()) == before);
}

TEST_CASE("copy-on-write: a failed store lets the writer go on and is reported", "[snapshot][cow]") {
  GuestMemory ram = make_ram();
  uint8_t* host = ram.regions()[0].host();
  // An image fd that cannot be written: every store fails.
  auto file = memfile();
  UniqueFd read_only(::open(fmt::format("/proc/self/fd/{}", file.get()).c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(read_only);
  auto writer = MemoryImageWriter::create(read_only.get(), ram_regions(ram), {.chunk_size = kChunk});
  REQUIRE(writer);
  auto saver = CopyOnWriteSaver::start(*writer, {.threads = 1, .start_writers = false});
  REQUIRE(saver);
  host[0] = 0x42;  // waits for chunk 0's store, which fails; the write goes on
  CHECK(host[0] == 0x42);
  auto w = (*saver)->wait();
  REQUIRE_FALSE(w);
  CHECK(w.error().message.find("saving guest memory") != std::string::npos);
  for (uint64_t pg = 0; pg < kPages; pg += 7) host[pg * 4096] = 1;  // nothing protected any more
  CHECK_FALSE((*saver)->stats().done);
}

TEST_CASE("copy-on-write: a saver dropped midway leaves no page protected", "[snapshot][cow]") {
  GuestMemory ram = make_ram();
  uint8_t* host = ram.regions()[0].host();
  auto fd = memfile();
  auto writer = MemoryImageWriter::create(fd.get(), ram_regions(ram), {.chunk_size = kChunk});
  REQUIRE(writer);
  auto saver = CopyOnWriteSaver::start(*writer, {.threads = 1, .start_writers = false});
  REQUIRE(saver);
  host[5 * 4096] = 9;
  CHECK((*saver)->stats().fault_chunks == 1);
  saver->reset();
  for (uint64_t pg = 0; pg < kPages; ++pg) host[pg * 4096 + 1] = 7;
  CHECK(host[(kPages - 1) * 4096 + 1] == 7);
}

TEST_CASE("copy-on-write: tracking notes the chunks written since the instant, during and after the copy",
          "[snapshot][cow]") {
  GuestMemory ram = make_ram();
  uint8_t* host = ram.regions()[0].host();
  const std::vector<uint8_t> before(host, host + kRam);
  auto fd = memfile();
  auto writer = MemoryImageWriter::create(fd.get(), ram_regions(ram), {.chunk_size = kChunk});
  REQUIRE(writer);
  auto saver = CopyOnWriteSaver::start(*writer, {.threads = 2, .start_writers = false, .track_writes = true});
  REQUIRE(saver);
  host[2 * kChunk + 10] ^= 0xFF;  // during the copy: stored first, then written
  CHECK((*saver)->written_chunks() == std::vector<size_t>{2});
  (*saver)->start_writers();
  REQUIRE((*saver)->wait());
  CHECK((*saver)->written_chunks() == std::vector<size_t>{2});  // the writers' stores are not writes
  host[5 * kChunk + 4096] = 1;                                   // after the copy
  host[6 * MiB + 3] = 2;                                         // a page never touched before
  host[5 * kChunk + 8192] = 3;                                   // the same chunk again
  CHECK((*saver)->written_chunks() == std::vector<size_t>{2, 5, 6 * MiB / kChunk});
  REQUIRE(writer->finish());
  CHECK(load_image(fd.get()) == before);
  saver->reset();
  for (uint64_t pg = 0; pg < kPages; ++pg) host[pg * 4096 + 1] = 7;  // nothing protected once it is gone
}

TEST_CASE("copy-on-write: rearmed, the next image stores only the chunks written since, as of its instant",
          "[snapshot][cow][chain]") {
  GuestMemory ram = make_ram();
  uint8_t* host = ram.regions()[0].host();
  auto fd_a = memfile();
  auto writer_a = MemoryImageWriter::create(fd_a.get(), ram_regions(ram), {.chunk_size = kChunk});
  REQUIRE(writer_a);
  auto saver = CopyOnWriteSaver::start(*writer_a, {.threads = 2, .track_writes = true});
  REQUIRE(saver);
  REQUIRE((*saver)->wait());
  auto stats_a = writer_a->finish();
  REQUIRE(stats_a);

  host[3 * kChunk] = 0x33;
  host[9 * kChunk + 77] = 0x99;
  const std::vector<uint8_t> at_b(host, host + kRam);  // RAM at the next image's instant
  auto fd_b = memfile();
  auto writer_b =
      MemoryImageWriter::create(fd_b.get(), ram_regions(ram), {.chunk_size = kChunk, .parent_id = stats_a->image_id});
  REQUIRE(writer_b);
  auto rearmed = (*saver)->rearm(*writer_b);
  REQUIRE(rearmed);
  CHECK(rearmed->written == std::vector<size_t>{3, 9});
  CHECK(rearmed->unchanged.size() == kRam / kChunk - 2);
  REQUIRE(writer_b->refer_to_parent(rearmed->unchanged));
  host[9 * kChunk + 78] = 0x98;  // before its store: stored as it was first
  host[12 * kChunk] = 0x12;      // unchanged since A: written now
  (*saver)->start_writers();
  REQUIRE((*saver)->wait());
  CHECK((*saver)->written_chunks() == std::vector<size_t>{9, 12});
  auto stats_b = writer_b->finish();
  REQUIRE(stats_b);
  CHECK(stats_b->parent_chunks == kRam / kChunk - 2);

  std::vector<MemoryImageReader> images;
  for (int fd : {fd_b.get(), fd_a.get()}) {
    auto r = MemoryImageReader::open(file_with(slurp(fd)), "image");
    REQUIRE(r);
    images.push_back(std::move(*r));
  }
  auto chain = MemoryImageChain::from(std::move(images));
  REQUIRE(chain);
  std::vector<uint8_t> got(kRam, 0);
  std::vector<RamRegion> regions{{0, kRam, got.data(), -1}};
  REQUIRE(chain->load(regions, true));
  CHECK(got == at_b);
}
