// Helpers for the checkpoint format tests: in-memory files (memfd) and guest
// RAM stand-ins filled with chosen kinds of pages.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "snapshot/memory/file_io.hpp"
#include "snapshot/memory/memory_image.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn::snap::test {

inline UniqueFd memfile() { return UniqueFd(::memfd_create("cairn-test", MFD_CLOEXEC)); }

// A fresh fd holding a copy of `fd`'s bytes (so one image can be damaged many ways).
inline std::vector<uint8_t> slurp(int fd) {
  auto size = file_size(fd);
  std::vector<uint8_t> b(*size);
  (void)pread_full(fd, 0, b, "test");
  return b;
}
inline UniqueFd file_with(const std::vector<uint8_t>& bytes) {
  UniqueFd fd = memfile();
  (void)pwrite_full(fd.get(), 0, bytes, "test");
  return fd;
}

// Guest RAM regions backed by vectors.
struct FakeRam {
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<RamRegion> regions;
  FakeRam(std::vector<std::pair<uint64_t, uint64_t>> layout) {
    for (auto& [gpa, size] : layout) bufs.emplace_back(size, 0);
    for (size_t i = 0; i < layout.size(); ++i) regions.push_back({layout[i].first, layout[i].second, bufs[i].data()});
  }
  uint64_t pages() const {
    uint64_t n = 0;
    for (auto& b : bufs) n += b.size() / kMemoryPageSize;
    return n;
  }
  uint8_t* page(uint64_t n) {
    for (auto& b : bufs) {
      if (n < b.size() / kMemoryPageSize) return b.data() + n * kMemoryPageSize;
      n -= b.size() / kMemoryPageSize;
    }
    return nullptr;
  }
  bool operator==(const FakeRam& o) const { return bufs == o.bufs; }
};

inline void fill_random(uint8_t* p, size_t n, std::mt19937_64& rng) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(rng());
}

// The bytes of an incremental image of `regions` on top of image `parent_id`
// that stores the `written` chunks and refers to the parent for the others.
// Fails the test case on an error.
inline std::vector<uint8_t> incremental_image_bytes(std::span<const RamRegion> regions, uint32_t chunk_size,
                                                    uint64_t parent_id, const std::vector<size_t>& written,
                                                    MemoryImageStats* stats = nullptr) {
  auto fd = memfile();
  auto w = MemoryImageWriter::create(fd.get(), regions, {.chunk_size = chunk_size, .parent_id = parent_id});
  REQUIRE(w);
  REQUIRE(w->store(written));
  std::vector<size_t> rest;
  for (size_t i = 0; i < w->chunk_count(); ++i)
    if (std::find(written.begin(), written.end(), i) == written.end()) rest.push_back(i);
  REQUIRE(w->refer_to_parent(rest));
  auto st = w->finish();
  REQUIRE(st);
  if (stats) *stats = *st;
  return slurp(fd.get());
}

}  // namespace cairn::snap::test
