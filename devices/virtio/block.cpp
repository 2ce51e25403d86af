#include "devices/virtio/block.hpp"

#include <algorithm>
#include <cstring>

namespace cairn {

namespace {
struct RequestHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

struct RangeSegment {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};
static_assert(sizeof(RangeSegment) == 16);
constexpr uint32_t kSegmentUnmap = 1;

template <class T>
void put(std::span<uint8_t> cfg, size_t at, T v) {
  std::memcpy(cfg.data() + at, &v, sizeof(T));
}

// Host pieces of a chain's readable (or writable) part, skipping `skip`
// bytes and stopping after `limit` bytes.
struct Piece {
  uint64_t gpa;
  std::span<uint8_t> host;
};
std::vector<Piece> pieces(const GuestMemory& mem, const DescriptorChain& c, bool writable, uint64_t skip,
                          uint64_t limit) {
  std::vector<Piece> out;
  for (auto& d : c.descriptors) {
    if (d.write != writable || limit == 0) continue;
    if (skip >= d.len) {
      skip -= d.len;
      continue;
    }
    uint64_t n = std::min<uint64_t>(d.len - skip, limit);
    // pop() checked every buffer against guest memory, so the slice exists.
    out.push_back(Piece{d.addr + skip, mem.slice(d.addr + skip, n)});
    limit -= n;
    skip = 0;
  }
  return out;
}
}  // namespace

VirtioBlock::VirtioBlock(std::shared_ptr<BlockBackend> backend) : backend_(std::move(backend)) {
  // struct virtio_blk_config (section 5.2.4), little-endian.
  std::span<uint8_t> cfg(config_);
  put<uint64_t>(cfg, 0, backend_->size() / kSectorSize);  // capacity
  put<uint32_t>(cfg, 12, kQueueSize - 2);                  // seg_max: header and status need one each
  put<uint32_t>(cfg, 20, kSectorSize);                     // blk_size
  put<uint16_t>(cfg, 34, 1);                               // num_queues
  put<uint32_t>(cfg, 36, kMaxDiscardSectors);              // max_discard_sectors
  put<uint32_t>(cfg, 40, kMaxDiscardSegments);             // max_discard_seg
  put<uint32_t>(cfg, 44, 8);                               // discard_sector_alignment: 4 KiB
  put<uint32_t>(cfg, 48, kMaxDiscardSectors);              // max_write_zeroes_sectors
  put<uint32_t>(cfg, 52, kMaxDiscardSegments);             // max_write_zeroes_seg
  cfg[56] = 0;                                             // write_zeroes_may_unmap
}

uint64_t VirtioBlock::device_features() const {
  uint64_t f = kVirtioFVersion1 | kVirtioFEventIdx | kBlkFFlush | kBlkFSegMax | kBlkFBlkSize;
  if (backend_->read_only())
    f |= kBlkFRo;
  else
    f |= kBlkFDiscard | kBlkFWriteZeroes;
  return f;
}

void VirtioBlock::read_config(uint64_t offset, std::span<uint8_t> data) const {
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = offset < config_.size() && i < config_.size() - offset ? config_[offset + i] : 0;
}

Result<void> VirtioBlock::activate(GuestMemory& mem, std::span<Virtqueue> queues, uint64_t acked_features,
                                   VirtioInterrupt& irq) {
  if (queues.size() != 1) return fail(Errc::invalid_argument, "virtio-blk has one queue, got {}", queues.size());
  if (!queues[0].config().ready) return fail(Errc::invalid_state, "virtio-blk request queue is not ready");
  std::lock_guard lock(mu_);
  mem_ = &mem;
  queue_ = &queues[0];
  irq_ = &irq;
  acked_ = acked_features;
  broken_ = false;
  return {};
}

void VirtioBlock::reset() {
  std::lock_guard lock(mu_);
  mem_ = nullptr;
  queue_ = nullptr;
  irq_ = nullptr;
  acked_ = 0;
  broken_ = false;
}

bool VirtioBlock::broken() const {
  std::lock_guard lock(mu_);
  return broken_;
}

Result<void> VirtioBlock::replace_backend(std::shared_ptr<BlockBackend> backend) {
  std::lock_guard lock(mu_);
  if (backend->size() != backend_->size() || backend->read_only() != backend_->read_only())
    return fail(Errc::invalid_argument, "the new disk backend ({} bytes{}) differs from the old ({} bytes{})",
                backend->size(), backend->read_only() ? ", read-only" : "", backend_->size(),
                backend_->read_only() ? ", read-only" : "");
  backend_ = std::move(backend);
  return {};
}

void VirtioBlock::notify(uint16_t index) {
  std::lock_guard lock(mu_);
  if (index != 0 || !queue_ || broken_) return;
  process_queue();
}

void VirtioBlock::process_queue() {
  bool used_any = false;
  for (;;) {
    auto next = queue_->pop(*mem_);
    if (!next) {
      broken_ = true;  // a driver bug or attack: stop touching the ring
      break;
    }
    if (!*next) break;
    complete(**next);
    used_any = true;
    if (broken_) break;
  }
  if (used_any && queue_->needs_notification(*mem_)) irq_->signal_used_queue();
}

void VirtioBlock::complete(const DescriptorChain& chain) {
  // The status byte is the last byte of the last descriptor, which must be
  // device-writable; without it the request cannot even be failed.
  const Descriptor* last = chain.descriptors.empty() ? nullptr : &chain.descriptors.back();
  if (!last || !last->write || last->len == 0) {
    if (!queue_->add_used(*mem_, chain.head, 0)) broken_ = true;
    return;
  }
  uint64_t data_writable = chain.writable_bytes() - 1;
  Outcome o = handle(chain, data_writable);
  uint8_t status = o.status;
  if (!mem_->write(last->addr + last->len - 1, std::span<const uint8_t>(&status, 1))) broken_ = true;
  if (!queue_->add_used(*mem_, chain.head, o.data_written + 1)) broken_ = true;
}

bool VirtioBlock::range_ok(uint64_t sector, uint64_t bytes) const {
  uint64_t sectors = backend_->size() / kSectorSize;
  // Written without sector*512 or sector+count, which could wrap.
  return bytes % kSectorSize == 0 && sector <= sectors && bytes / kSectorSize <= sectors - sector;
}

VirtioBlock::Outcome VirtioBlock::handle(const DescriptorChain& chain, uint64_t data_writable) {
  RequestHeader h;
  auto got = chain_read(*mem_, chain, 0, std::span(reinterpret_cast<uint8_t*>(&h), sizeof h));
  if (!got || *got != sizeof h) return {kBlkSIoErr, 0};

  switch (h.type) {
    case kBlkTIn: {
      if (!range_ok(h.sector, data_writable)) return {kBlkSIoErr, 0};
      uint64_t off = h.sector * kSectorSize;
      uint32_t done = 0;
      for (auto& p : pieces(*mem_, chain, true, 0, data_writable)) {
        if (!backend_->read(off, p.host)) return {kBlkSIoErr, done};
        mem_->mark_dirty(p.gpa, p.host.size());
        off += p.host.size();
        done += static_cast<uint32_t>(p.host.size());
      }
      return {kBlkSOk, done};
    }
    case kBlkTOut: {
      if (backend_->read_only()) return {kBlkSIoErr, 0};
      uint64_t len = chain.readable_bytes() - sizeof h;
      if (!range_ok(h.sector, len)) return {kBlkSIoErr, 0};
      uint64_t off = h.sector * kSectorSize;
      for (auto& p : pieces(*mem_, chain, false, sizeof h, len)) {
        if (!backend_->write(off, p.host)) return {kBlkSIoErr, 0};
        off += p.host.size();
      }
      return {kBlkSOk, 0};
    }
    case kBlkTFlush:
      return {backend_->flush() ? kBlkSOk : kBlkSIoErr, 0};
    case kBlkTGetId: {
      std::array<uint8_t, kIdBytes> id{};  // shorter ids are NUL-padded
      std::string s = backend_->id();
      std::memcpy(id.data(), s.data(), std::min(s.size(), id.size()));
      auto n = chain_write(*mem_, chain, 0, std::span(id.data(), std::min<uint64_t>(data_writable, kIdBytes)));
      if (!n) return {kBlkSIoErr, 0};
      return {kBlkSOk, static_cast<uint32_t>(*n)};
    }
    case kBlkTDiscard:
    case kBlkTWriteZeroes:
      return handle_range_op(chain, h.type);
    default:
      return {kBlkSUnsupp, 0};
  }
}

VirtioBlock::Outcome VirtioBlock::handle_range_op(const DescriptorChain& chain, uint32_t type) {
  bool discard = type == kBlkTDiscard;
  if (!(acked_ & (discard ? kBlkFDiscard : kBlkFWriteZeroes))) return {kBlkSUnsupp, 0};
  if (backend_->read_only()) return {kBlkSIoErr, 0};
  uint64_t bytes = chain.readable_bytes() - sizeof(RequestHeader);
  if (bytes == 0 || bytes % sizeof(RangeSegment) || bytes / sizeof(RangeSegment) > kMaxDiscardSegments)
    return {kBlkSIoErr, 0};
  // Validate every segment before changing anything.
  std::vector<RangeSegment> segs(bytes / sizeof(RangeSegment));
  auto got = chain_read(*mem_, chain, sizeof(RequestHeader),
                        std::span(reinterpret_cast<uint8_t*>(segs.data()), bytes));
  if (!got || *got != bytes) return {kBlkSIoErr, 0};
  for (auto& s : segs) {
    // Discard has no unmap flag; unknown flag bits are refused for both.
    if ((s.flags & ~kSegmentUnmap) || (discard && (s.flags & kSegmentUnmap))) return {kBlkSUnsupp, 0};
    if (s.num_sectors > kMaxDiscardSectors || !range_ok(s.sector, uint64_t{s.num_sectors} * kSectorSize))
      return {kBlkSIoErr, 0};
  }
  for (auto& s : segs) {
    uint64_t off = s.sector * kSectorSize, len = uint64_t{s.num_sectors} * kSectorSize;
    auto r = discard ? backend_->discard(off, len) : backend_->write_zeroes(off, len);
    if (!r) return {kBlkSIoErr, 0};
  }
  return {kBlkSOk, 0};
}

}  // namespace cairn
