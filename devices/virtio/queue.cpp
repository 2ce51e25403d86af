// Split virtqueue, device side (virtio 1.1 section 2.6). Guest layout:
//   descriptor table: size x {le64 addr, le32 len, le16 flags, le16 next}   (16-byte aligned)
//   available ring:   le16 flags, le16 idx, le16 ring[size], le16 used_event (2-byte aligned)
//   used ring:        le16 flags, le16 idx, {le32 id, le32 len}[size], le16 avail_event (4-byte aligned)
// x86 is little-endian, so guest fields are read as native integers.
#include "devices/virtio/queue.hpp"

#include <atomic>

namespace cairn {

namespace {
constexpr uint16_t kDescFNext = 1;
constexpr uint16_t kDescFWrite = 2;
constexpr uint16_t kDescFIndirect = 4;
constexpr uint16_t kAvailFNoInterrupt = 1;

struct RawDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(RawDesc) == 16);

uint64_t desc_table_bytes(uint16_t size) { return 16ULL * size; }
uint64_t avail_ring_bytes(uint16_t size) { return 6ULL + 2ULL * size; }
uint64_t used_ring_bytes(uint16_t size) { return 6ULL + 8ULL * size; }

// 16-bit ring indices are shared with the driver running on another CPU:
// access them as single atomic loads and stores, never torn.
Result<uint16_t> load_u16(const GuestMemory& mem, uint64_t gpa) {
  auto s = mem.slice(gpa, 2);
  if (s.empty() || gpa % 2) return fail(Errc::invalid_argument, "ring index at {:#x} outside guest memory", gpa);
  return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(s.data())).load(std::memory_order_relaxed);
}

Result<void> store_u16(GuestMemory& mem, uint64_t gpa, uint16_t v) {
  auto s = mem.slice(gpa, 2);
  if (s.empty() || gpa % 2) return fail(Errc::invalid_argument, "ring index at {:#x} outside guest memory", gpa);
  std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(s.data())).store(v, std::memory_order_relaxed);
  mem.mark_dirty(gpa, 2);
  return {};
}
}  // namespace

uint64_t DescriptorChain::readable_bytes() const {
  uint64_t n = 0;
  for (auto& d : descriptors)
    if (!d.write) n += d.len;
  return n;
}

uint64_t DescriptorChain::writable_bytes() const {
  uint64_t n = 0;
  for (auto& d : descriptors)
    if (d.write) n += d.len;
  return n;
}

Virtqueue::Virtqueue(uint16_t max_size) {
  config_.max_size = max_size;
  config_.size = max_size;
}

Result<void> Virtqueue::validate(const GuestMemory& mem) const {
  const auto& c = config_;
  if (c.size == 0 || c.size > c.max_size || (c.size & (c.size - 1)) != 0)
    return fail(Errc::invalid_argument, "queue size {} is not a power of two up to {}", c.size, c.max_size);
  if (c.desc_table % 16 || c.avail_ring % 2 || c.used_ring % 4)
    return fail(Errc::invalid_argument, "misaligned rings: desc {:#x} avail {:#x} used {:#x}", c.desc_table,
                c.avail_ring, c.used_ring);
  if (!mem.contains(c.desc_table, desc_table_bytes(c.size)))
    return fail(Errc::invalid_argument, "descriptor table {:#x} outside guest memory", c.desc_table);
  if (!mem.contains(c.avail_ring, avail_ring_bytes(c.size)))
    return fail(Errc::invalid_argument, "available ring {:#x} outside guest memory", c.avail_ring);
  if (!mem.contains(c.used_ring, used_ring_bytes(c.size)))
    return fail(Errc::invalid_argument, "used ring {:#x} outside guest memory", c.used_ring);
  return {};
}

Result<std::optional<DescriptorChain>> Virtqueue::pop(const GuestMemory& mem) {
  const auto& c = config_;
  if (!c.ready) return fail(Errc::invalid_state, "queue is not ready");
  if (c.size == 0 || (c.size & (c.size - 1)) != 0) return fail(Errc::invalid_state, "bad queue size {}", c.size);

  auto avail_idx = load_u16(mem, c.avail_ring + 2);
  if (!avail_idx) return std::unexpected(avail_idx.error());
  uint16_t pending = static_cast<uint16_t>(*avail_idx - next_avail_);
  if (pending > c.size)
    return fail(Errc::corrupt, "available index jumped from {} to {} on a queue of {}", next_avail_, *avail_idx,
                c.size);
  // Guest memory objects are never const: the const in this signature only
  // promises not to change descriptors, while avail_event is a device-owned hint.
  if (pending == 0 && event_idx_) {
    // Ask for a kick on the next buffer, then look again: the driver may have
    // added one after our first look without kicking (it saw the old avail_event).
    auto r = store_u16(const_cast<GuestMemory&>(mem), c.used_ring + 4 + 8ULL * c.size, next_avail_);
    if (!r) return std::unexpected(r.error());
    std::atomic_thread_fence(std::memory_order_seq_cst);
    avail_idx = load_u16(mem, c.avail_ring + 2);
    if (!avail_idx) return std::unexpected(avail_idx.error());
    pending = static_cast<uint16_t>(*avail_idx - next_avail_);
    if (pending > c.size)
      return fail(Errc::corrupt, "available index jumped from {} to {} on a queue of {}", next_avail_,
                  *avail_idx, c.size);
  }
  if (pending == 0) return std::optional<DescriptorChain>{};
  // The ring entries written before idx must be visible before we read them.
  std::atomic_thread_fence(std::memory_order_acquire);

  auto head = load_u16(mem, c.avail_ring + 4 + 2ULL * (next_avail_ % c.size));
  if (!head) return std::unexpected(head.error());
  // The entry is consumed even if it is malformed, so a caller that skips it cannot spin on it.
  ++next_avail_;
  if (*head >= c.size) return fail(Errc::corrupt, "descriptor head {} out of range (queue of {})", *head, c.size);

  DescriptorChain chain;
  chain.head = *head;
  uint64_t total = 0;
  uint16_t idx = *head;
  for (uint32_t count = 1;; ++count) {
    if (count > c.size) return fail(Errc::corrupt, "descriptor chain from {} loops", *head);
    auto d = mem.read_obj<RawDesc>(c.desc_table + 16ULL * idx);
    if (!d) return std::unexpected(std::move(d.error()).context("reading descriptor"));
    if (d->flags & kDescFIndirect)
      return fail(Errc::corrupt, "descriptor {} is indirect, which was not offered", idx);
    if (!mem.contains(d->addr, d->len))
      return fail(Errc::corrupt, "descriptor {} buffer {:#x}+{:#x} outside guest memory", idx, d->addr, d->len);
    total += d->len;
    if (total > kMaxChainBytes)
      return fail(Errc::corrupt, "descriptor chain from {} longer than {} bytes", *head, kMaxChainBytes);
    chain.descriptors.push_back(Descriptor{d->addr, d->len, (d->flags & kDescFWrite) != 0});
    if (!(d->flags & kDescFNext)) break;
    if (d->next >= c.size) return fail(Errc::corrupt, "descriptor {} links to {} out of range", idx, d->next);
    idx = d->next;
  }

  if (event_idx_) {
    auto r = store_u16(const_cast<GuestMemory&>(mem), c.used_ring + 4 + 8ULL * c.size, next_avail_);
    if (!r) return std::unexpected(r.error());
  }
  return std::optional<DescriptorChain>(std::move(chain));
}

Result<void> Virtqueue::add_used(GuestMemory& mem, uint16_t head, uint32_t written) {
  const auto& c = config_;
  if (c.size == 0) return fail(Errc::invalid_state, "queue is not configured");
  if (head >= c.size) return fail(Errc::invalid_argument, "used head {} out of range (queue of {})", head, c.size);
  struct {
    uint32_t id;
    uint32_t len;
  } elem{head, written};
  auto r = mem.write_obj(c.used_ring + 4 + 8ULL * (next_used_ % c.size), elem);
  if (!r) return std::unexpected(std::move(r.error()).context("writing used element"));
  // The element must be visible before the index that publishes it.
  std::atomic_thread_fence(std::memory_order_release);
  ++next_used_;
  return store_u16(mem, c.used_ring + 2, next_used_);
}

bool Virtqueue::needs_notification(const GuestMemory& mem) {
  const auto& c = config_;
  // Our used idx store must be ordered before reading the driver's suppression fields.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!event_idx_) {
    auto flags = load_u16(mem, c.avail_ring);
    return !flags || !(*flags & kAvailFNoInterrupt);
  }
  uint16_t old = signalled_used_;
  uint16_t now = next_used_;
  signalled_used_ = now;
  auto used_event = load_u16(mem, c.avail_ring + 4 + 2ULL * c.size);
  if (!used_event) return true;
  // vring_need_event: notify if used_event lies in (old, now].
  return static_cast<uint16_t>(now - *used_event - 1) < static_cast<uint16_t>(now - old);
}

void Virtqueue::set_positions(uint16_t next_avail, uint16_t next_used) {
  next_avail_ = next_avail;
  next_used_ = next_used;
  signalled_used_ = next_used;
}

void Virtqueue::reset() {
  uint16_t max = config_.max_size;
  config_ = QueueConfig{};
  config_.max_size = max;
  config_.size = max;
  next_avail_ = next_used_ = signalled_used_ = 0;
  event_idx_ = false;
}

namespace {
// Walks the readable (or writable) descriptors as one stream, skipping `offset`
// bytes, and hands each host piece to `copy` until `want` bytes are done.
template <class F>
Result<size_t> walk(const GuestMemory& mem, const DescriptorChain& c, bool writable, uint64_t offset, size_t want,
                    F copy) {
  size_t done = 0;
  for (auto& d : c.descriptors) {
    if (d.write != writable || done == want) continue;
    if (offset >= d.len) {
      offset -= d.len;
      continue;
    }
    uint64_t n = std::min<uint64_t>(d.len - offset, want - done);
    auto s = mem.slice(d.addr + offset, n);
    if (s.empty() && n != 0)
      return fail(Errc::invalid_argument, "descriptor buffer {:#x}+{:#x} outside guest memory", d.addr, d.len);
    copy(d.addr + offset, s, done);
    done += n;
    offset = 0;
  }
  return done;
}
}  // namespace

Result<size_t> chain_read(const GuestMemory& mem, const DescriptorChain& c, uint64_t offset,
                          std::span<uint8_t> out) {
  return walk(mem, c, false, offset, out.size(), [&](uint64_t, std::span<uint8_t> s, size_t at) {
    std::memcpy(out.data() + at, s.data(), s.size());
  });
}

Result<size_t> chain_write(GuestMemory& mem, const DescriptorChain& c, uint64_t offset,
                           std::span<const uint8_t> in) {
  return walk(mem, c, true, offset, in.size(), [&](uint64_t gpa, std::span<uint8_t> s, size_t at) {
    std::memcpy(s.data(), in.data() + at, s.size());
    mem.mark_dirty(gpa, s.size());
  });
}

}  // namespace cairn
