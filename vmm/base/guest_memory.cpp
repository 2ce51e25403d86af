#include "vmm/base/guest_memory.hpp"

#include <sys/mman.h>

#include <atomic>

namespace cairn {

namespace {
Result<MemoryRegion> make_region(uint64_t gpa, uint64_t size, bool use_memfd) {
  MemoryRegion r;
  r.gpa = gpa;
  r.size = size;
  int flags = MAP_SHARED;
  int fd = -1;
  if (use_memfd) {
    r.memfd = UniqueFd(::memfd_create("cairn-guest-ram", MFD_CLOEXEC));
    if (!r.memfd) return fail_errno("memfd_create");
    if (::ftruncate(r.memfd.get(), static_cast<off_t>(size)) != 0)
      return fail_errno("sizing guest memory to {} bytes", size);
    fd = r.memfd.get();
  } else {
    flags = MAP_PRIVATE | MAP_ANONYMOUS;
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, flags | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) return fail_errno("mapping {} bytes of guest memory", size);
  r.map = Mapping(p, size);
  return r;
}
}  // namespace

Result<GuestMemory> GuestMemory::create(uint64_t size, uint64_t hole_start) {
  if (size == 0 || size % kPageSize != 0)
    return fail(Errc::invalid_argument, "guest memory size {} is not a positive multiple of 4 KiB", size);
  GuestMemory m;
  uint64_t low = size < hole_start ? size : hole_start;
  auto r0 = make_region(0, low, true);
  if (!r0) return std::unexpected(r0.error());
  m.regions_.push_back(std::move(*r0));
  if (size > low) {
    auto r1 = make_region(0x1'0000'0000ULL, size - low, true);
    if (!r1) return std::unexpected(r1.error());
    m.regions_.push_back(std::move(*r1));
  }
  for (auto& r : m.regions_) m.vmm_dirty_.emplace_back((r.size / kPageSize + 63) / 64, 0);
  return m;
}

Result<GuestMemory> GuestMemory::create_anonymous(uint64_t gpa, uint64_t size) {
  if (size == 0 || size % kPageSize != 0 || gpa % kPageSize != 0)
    return fail(Errc::invalid_argument, "bad anonymous region {:#x}+{:#x}", gpa, size);
  GuestMemory m;
  auto r = make_region(gpa, size, false);
  if (!r) return std::unexpected(r.error());
  m.regions_.push_back(std::move(*r));
  m.vmm_dirty_.emplace_back((size / kPageSize + 63) / 64, 0);
  return m;
}

uint64_t GuestMemory::total_size() const {
  uint64_t t = 0;
  for (auto& r : regions_) t += r.size;
  return t;
}

bool GuestMemory::contains(uint64_t gpa, uint64_t len) const {
  for (auto& r : regions_) {
    // Written to avoid overflow: gpa + len may wrap for hostile values.
    if (gpa >= r.gpa && gpa - r.gpa <= r.size && len <= r.size - (gpa - r.gpa)) return true;
  }
  return false;
}

std::span<uint8_t> GuestMemory::slice(uint64_t gpa, uint64_t len) const {
  for (auto& r : regions_) {
    if (gpa >= r.gpa && gpa - r.gpa <= r.size && len <= r.size - (gpa - r.gpa))
      return std::span<uint8_t>(r.host() + (gpa - r.gpa), len);
  }
  return {};
}

Result<void> GuestMemory::read(uint64_t gpa, std::span<uint8_t> out) const {
  if (!contains(gpa, out.size()))
    return fail(Errc::invalid_argument, "guest read {:#x}+{:#x} outside guest memory", gpa, out.size());
  auto s = slice(gpa, out.size());
  if (!out.empty()) std::memcpy(out.data(), s.data(), out.size());
  return {};
}

Result<void> GuestMemory::write(uint64_t gpa, std::span<const uint8_t> in) {
  if (!contains(gpa, in.size()))
    return fail(Errc::invalid_argument, "guest write {:#x}+{:#x} outside guest memory", gpa, in.size());
  auto s = slice(gpa, in.size());
  if (!in.empty()) std::memcpy(s.data(), in.data(), in.size());
  mark_dirty(gpa, in.size());
  return {};
}

void GuestMemory::mark_dirty(uint64_t gpa, uint64_t len) {
  if (len == 0) return;
  for (size_t i = 0; i < regions_.size(); ++i) {
    auto& r = regions_[i];
    if (gpa < r.gpa || gpa - r.gpa >= r.size) continue;
    uint64_t first = (gpa - r.gpa) / kPageSize;
    uint64_t end = std::min(r.size, gpa - r.gpa + len);
    uint64_t last = (end - 1) / kPageSize;
    for (uint64_t p = first; p <= last; ++p) {
      std::atomic_ref<uint64_t> word(vmm_dirty_[i][p / 64]);
      word.fetch_or(1ULL << (p % 64), std::memory_order_relaxed);
    }
    return;
  }
}

std::vector<uint64_t> GuestMemory::take_vmm_dirty_pages() {
  std::vector<uint64_t> pages;
  for (size_t i = 0; i < regions_.size(); ++i) {
    for (size_t w = 0; w < vmm_dirty_[i].size(); ++w) {
      uint64_t bits = std::atomic_ref<uint64_t>(vmm_dirty_[i][w]).exchange(0);
      while (bits) {
        int b = __builtin_ctzll(bits);
        bits &= bits - 1;
        pages.push_back(regions_[i].gpa + (w * 64 + b) * kPageSize);
      }
    }
  }
  return pages;
}

}  // namespace cairn
