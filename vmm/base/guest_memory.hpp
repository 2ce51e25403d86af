// Guest physical memory: regions backed by memfd, mapped once into the VMM.
// Every access from device code goes through checked lookups so that a guest
// address or length cannot make the VMM touch memory outside the guest.
#pragma once
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "vmm/base/error.hpp"
#include "vmm/base/mapping.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

struct MemoryRegion {
  uint64_t gpa = 0;   // guest-physical start
  uint64_t size = 0;  // bytes, page aligned
  UniqueFd memfd;     // backing memfd (shareable, snapshot-able)
  Mapping map;        // host mapping of the whole region
  uint8_t* host() const { return map.data(); }
};

class GuestMemory {
 public:
  static constexpr uint64_t kPageSize = 4096;

  // Creates memfd-backed regions covering `size` bytes of RAM, leaving the
  // x86 MMIO hole [hole_start, 4 GiB) unbacked when size exceeds hole_start.
  static Result<GuestMemory> create(uint64_t size, uint64_t hole_start = kDefaultHoleStart);
  // An anonymous, single-region memory for tests (no memfd).
  static Result<GuestMemory> create_anonymous(uint64_t gpa, uint64_t size);

  static constexpr uint64_t kDefaultHoleStart = 0xC000'0000;  // 3 GiB: MMIO space below 4 GiB

  const std::vector<MemoryRegion>& regions() const { return regions_; }
  uint64_t total_size() const;

  // Host span for [gpa, gpa+len) if it lies entirely inside one region, else empty.
  // len == 0 yields an empty span too; use contains() to tell the cases apart.
  std::span<uint8_t> slice(uint64_t gpa, uint64_t len) const;
  bool contains(uint64_t gpa, uint64_t len) const;

  Result<void> read(uint64_t gpa, std::span<uint8_t> out) const;
  Result<void> write(uint64_t gpa, std::span<const uint8_t> in);

  template <class T>
  Result<T> read_obj(uint64_t gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    auto r = read(gpa, std::span(reinterpret_cast<uint8_t*>(&v), sizeof(T)));
    if (!r) return std::unexpected(r.error());
    return v;
  }
  template <class T>
  Result<void> write_obj(uint64_t gpa, const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(gpa, std::span(reinterpret_cast<const uint8_t*>(&v), sizeof(T)));
  }

  // Pages the VMM itself wrote (device DMA) since the last take: KVM's dirty
  // log does not see host writes, incremental checkpoints need them.
  void mark_dirty(uint64_t gpa, uint64_t len);
  std::vector<uint64_t> take_vmm_dirty_pages();

 private:
  std::vector<MemoryRegion> regions_;
  std::vector<std::vector<uint64_t>> vmm_dirty_;  // one bitmap per region (1 bit per page)
};

}  // namespace cairn
