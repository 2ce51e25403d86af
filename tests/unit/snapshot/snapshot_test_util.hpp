// Helpers for the checkpoint format tests: in-memory files (memfd) and guest
// RAM stand-ins filled with chosen kinds of pages.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <random>
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

}  // namespace cairn::snap::test
