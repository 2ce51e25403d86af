#include "snapshot/disk/format.hpp"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace cairn::disk {
namespace {

constexpr char kMagic[8] = {'C', 'A', 'I', 'R', 'N', 'D', 'S', 'K'};
constexpr char kLogMagic[8] = {'C', 'A', 'I', 'R', 'N', 'L', 'O', 'G'};
constexpr size_t kChecksumAt = 4088;
constexpr size_t kParentPathAt = 208;
constexpr size_t kNewParentPathAt = 1232;

void put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }  // x86-64: little-endian
void put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
uint64_t get64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }
uint32_t get32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }

bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  return a < b + blen && b < a + alen;
}

}  // namespace

uint64_t checksum(std::span<const uint8_t> bytes) { return XXH64(bytes.data(), bytes.size(), 0); }

void encode_header(const Header& h, std::span<uint8_t, kHeaderSlotBytes> out) {
  uint8_t* p = out.data();
  std::memset(p, 0, kHeaderSlotBytes);
  std::memcpy(p, kMagic, 8);
  put32(p + 8, kVersion);
  put32(p + 12, h.has_parent ? 1 : 0);
  put64(p + 16, h.seq);
  put64(p + 24, h.virtual_size);
  put32(p + 32, h.block_shift);
  put32(p + 36, h.bat_active);
  std::memcpy(p + 40, h.uuid.data(), 16);
  put64(p + 56, h.generation);
  put64(p + 64, h.log_offset);
  put64(p + 72, h.log_bytes);
  put64(p + 80, h.log_epoch);
  put64(p + 88, h.bat_offset[0]);
  put64(p + 96, h.bat_offset[1]);
  put64(p + 104, h.bat_entries);
  put64(p + 112, h.bat_checksum);
  put64(p + 120, h.data_offset);
  std::memcpy(p + 128, h.parent.uuid.data(), 16);
  put64(p + 144, h.parent.generation);
  size_t plen = std::min(h.parent.path.size(), kMaxPathLen);
  put32(p + 152, uint32_t(plen));
  put32(p + 156, uint32_t(h.merge_kind));
  std::memcpy(p + 160, h.merge_peer.data(), 16);
  std::memcpy(p + 176, h.new_parent.uuid.data(), 16);
  put64(p + 192, h.new_parent.generation);
  size_t nlen = std::min(h.new_parent.path.size(), kMaxPathLen);
  put32(p + 200, uint32_t(nlen));
  put32(p + 204, h.new_parent_exists ? 1 : 0);
  std::memcpy(p + kParentPathAt, h.parent.path.data(), plen);
  std::memcpy(p + kNewParentPathAt, h.new_parent.path.data(), nlen);
  put64(p + kChecksumAt, XXH64(p, kChecksumAt, 0));
}

Result<Header> parse_header(std::span<const uint8_t> slot) {
  if (slot.size() < kHeaderSlotBytes) return fail(Errc::corrupt, "header truncated ({} bytes)", slot.size());
  const uint8_t* p = slot.data();
  if (std::memcmp(p, kMagic, 8) != 0) return fail(Errc::corrupt, "not a cairn disk layer (bad magic)");
  if (get64(p + kChecksumAt) != XXH64(p, kChecksumAt, 0))
    return fail(Errc::corrupt, "header checksum mismatch");
  if (get32(p + 8) != kVersion) return fail(Errc::unsupported, "format version {} (supported: {})", get32(p + 8), kVersion);
  Header h;
  uint32_t flags = get32(p + 12);
  if (flags > 1) return fail(Errc::corrupt, "unknown header flags {:#x}", flags);
  h.has_parent = flags & 1;
  h.seq = get64(p + 16);
  h.virtual_size = get64(p + 24);
  h.block_shift = get32(p + 32);
  h.bat_active = get32(p + 36);
  std::memcpy(h.uuid.data(), p + 40, 16);
  h.generation = get64(p + 56);
  h.log_offset = get64(p + 64);
  h.log_bytes = get64(p + 72);
  h.log_epoch = get64(p + 80);
  h.bat_offset[0] = get64(p + 88);
  h.bat_offset[1] = get64(p + 96);
  h.bat_entries = get64(p + 104);
  h.bat_checksum = get64(p + 112);
  h.data_offset = get64(p + 120);
  std::memcpy(h.parent.uuid.data(), p + 128, 16);
  h.parent.generation = get64(p + 144);
  uint32_t plen = get32(p + 152);
  uint32_t mk = get32(p + 156);
  std::memcpy(h.merge_peer.data(), p + 160, 16);
  std::memcpy(h.new_parent.uuid.data(), p + 176, 16);
  h.new_parent.generation = get64(p + 192);
  uint32_t nlen = get32(p + 200);
  uint32_t nflags = get32(p + 204);

  if (h.virtual_size == 0 || h.virtual_size % 512 || h.virtual_size > kMaxVirtualSize)
    return fail(Errc::corrupt, "virtual size {} out of range", h.virtual_size);
  if (h.block_shift < kMinBlockShift || h.block_shift > kMaxBlockShift)
    return fail(Errc::corrupt, "block shift {} out of range {}..{}", h.block_shift, kMinBlockShift, kMaxBlockShift);
  if (h.bat_active > 1) return fail(Errc::corrupt, "active BAT copy {} is not 0 or 1", h.bat_active);
  if (h.bat_entries != (h.virtual_size + h.block_size() - 1) / h.block_size())
    return fail(Errc::corrupt, "BAT has {} entries for a {}-byte disk", h.bat_entries, h.virtual_size);
  if (h.log_offset != kLogOffset || h.log_bytes == 0 || h.log_bytes % kLogBlockBytes ||
      h.log_bytes > kMaxLogBytes)
    return fail(Errc::corrupt, "log region {:#x}+{:#x} invalid", h.log_offset, h.log_bytes);
  uint64_t meta_end = h.log_offset + h.log_bytes;
  for (int i = 0; i < 2; ++i) {
    uint64_t o = h.bat_offset[i];
    if (o % 4096 || o < meta_end || o > kMaxVirtualSize)
      return fail(Errc::corrupt, "BAT copy {} offset {:#x} invalid", i, o);
  }
  uint64_t rb = h.bat_region_bytes();
  if (overlaps(h.bat_offset[0], rb, h.bat_offset[1], rb)) return fail(Errc::corrupt, "BAT copies overlap");
  uint64_t bat_end = std::max(h.bat_offset[0], h.bat_offset[1]) + rb;
  if (h.data_offset % 4096 || h.data_offset < bat_end || h.data_offset > kMaxVirtualSize)
    return fail(Errc::corrupt, "data offset {:#x} overlaps metadata or is misaligned", h.data_offset);
  if (plen > kMaxPathLen || nlen > kMaxPathLen) return fail(Errc::corrupt, "parent path length out of range");
  if (h.has_parent && plen == 0) return fail(Errc::corrupt, "layer has a parent but no parent path");
  if (!h.has_parent && plen != 0) return fail(Errc::corrupt, "parent path set on a base layer");
  if (mk > 2) return fail(Errc::corrupt, "unknown merge state {}", mk);
  h.merge_kind = MergeKind(mk);
  if (nflags > 1) return fail(Errc::corrupt, "unknown new-parent flags {:#x}", nflags);
  h.new_parent_exists = nflags & 1;
  if (h.merge_kind == MergeKind::absorbing_parent && !h.has_parent)
    return fail(Errc::corrupt, "merging from a parent but the layer has none");
  if (h.new_parent_exists && nlen == 0) return fail(Errc::corrupt, "new parent without a path");
  h.parent.path.assign(reinterpret_cast<const char*>(p + kParentPathAt), plen);
  h.new_parent.path.assign(reinterpret_cast<const char*>(p + kNewParentPathAt), nlen);
  if (h.parent.path.find('\0') != std::string::npos || h.new_parent.path.find('\0') != std::string::npos)
    return fail(Errc::corrupt, "NUL byte in parent path");
  return h;
}

Result<void> check_header_fits(const Header& h, uint64_t file_size) {
  for (int i = 0; i < 2; ++i)
    if (h.bat_offset[i] + h.bat_region_bytes() > file_size)
      return fail(Errc::corrupt, "BAT copy {} ends at {:#x}, past the end of the file ({:#x})", i,
                  h.bat_offset[i] + h.bat_region_bytes(), file_size);
  if (h.data_offset > file_size)
    return fail(Errc::corrupt, "data offset {:#x} past the end of the file ({:#x})", h.data_offset, file_size);
  return {};
}

Result<Header> pick_header(std::span<const uint8_t> slot0, std::span<const uint8_t> slot1, int* slot_out) {
  auto a = parse_header(slot0);
  auto b = parse_header(slot1);
  if (!a && !b) {
    if (a.error().code == Errc::unsupported) return std::unexpected(a.error());
    return fail(Errc::corrupt, "both header slots are invalid (slot 0: {}; slot 1: {})", a.error().message,
                b.error().message);
  }
  bool use_b = b && (!a || b->seq > a->seq);
  if (slot_out) *slot_out = use_b ? 1 : 0;
  return use_b ? *b : *a;
}

Result<void> check_entry(const Header& h, uint64_t file_size, uint64_t index, uint64_t e) {
  switch (entry_state(e)) {
    case EntryState::unallocated:
    case EntryState::zero:
      if (e & ~kEntryStateMask) return fail(Errc::corrupt, "BAT entry {} has stray bits {:#x}", index, e);
      return {};
    case EntryState::data: {
      if (e & ~(kEntryOffsetMask | kEntryStateMask))
        return fail(Errc::corrupt, "BAT entry {} has stray bits {:#x}", index, e);
      uint64_t off = entry_offset(e);
      if (off < h.data_offset || (off - h.data_offset) % h.block_size() ||
          off > file_size || file_size - off < h.block_size())
        return fail(Errc::corrupt, "BAT entry {} points to {:#x}, outside the data area or the file ({:#x} bytes)",
                    index, off, file_size);
      return {};
    }
    default: return fail(Errc::corrupt, "BAT entry {} has unknown state 3", index);
  }
}

void encode_log_block(uint64_t epoch, uint32_t index, std::span<const LogRecord> recs,
                      std::span<uint8_t, kLogBlockBytes> out) {
  uint8_t* p = out.data();
  std::memset(p, 0, kLogBlockBytes);
  std::memcpy(p, kLogMagic, 8);
  put64(p + 8, epoch);
  put32(p + 16, index);
  put32(p + 20, uint32_t(recs.size()));
  for (size_t i = 0; i < recs.size() && i < kLogRecordsPerBlock; ++i) {
    put64(p + 24 + 16 * i, recs[i].block);
    put64(p + 32 + 16 * i, recs[i].entry);
  }
  put64(p + kChecksumAt, XXH64(p, kChecksumAt, 0));
}

Result<void> parse_log_block(std::span<const uint8_t> blk, uint64_t epoch, uint32_t index,
                             std::vector<LogRecord>* out) {
  if (blk.size() < kLogBlockBytes) return fail(Errc::corrupt, "log block truncated");
  const uint8_t* p = blk.data();
  if (std::memcmp(p, kLogMagic, 8) != 0) return fail(Errc::not_found, "no log block");
  if (get64(p + kChecksumAt) != XXH64(p, kChecksumAt, 0)) return fail(Errc::corrupt, "log block checksum mismatch");
  if (get64(p + 8) != epoch || get32(p + 16) != index) return fail(Errc::not_found, "stale log block");
  uint32_t n = get32(p + 20);
  if (n == 0 || n > kLogRecordsPerBlock) return fail(Errc::corrupt, "log block holds {} records", n);
  for (uint32_t i = 0; i < n; ++i) out->push_back({get64(p + 24 + 16 * i), get64(p + 32 + 16 * i)});
  return {};
}

}  // namespace cairn::disk
