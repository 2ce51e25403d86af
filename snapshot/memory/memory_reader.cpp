// Reads a memory image (format in memory_image.hpp). Everything read from the
// file is treated as hostile: sizes and offsets are bounded before use, the
// metadata checksum is checked before any chunk is read, and each chunk's
// checksum before it is decompressed.
#include <lz4.h>
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <numeric>

#include "snapshot/memory/bytes.hpp"
#include "snapshot/memory/file_io.hpp"
#include "snapshot/memory/memory_image.hpp"

namespace cairn::snap {

namespace {
// Far above any guest cairn runs (64 GiB) but small enough that counts derived
// from it cannot overflow.
constexpr uint64_t kMaxImageGuestBytes = 1ULL << 40;

ChunkEntry decode_entry(std::span<const uint8_t> in) {
  ChunkEntry e;
  e.offset = get_u64(in, 0);
  e.stored_size = get_u32(in, 8);
  e.present_pages = get_u16(in, 12);
  e.flags = get_u16(in, 14);
  e.checksum = get_u64(in, 16);
  std::memcpy(e.bitmap, in.data() + 24, sizeof(e.bitmap));
  return e;
}
}  // namespace

Result<MemoryImageReader> MemoryImageReader::open(const std::string& path) {
  auto fd = open_read(path);
  if (!fd) return std::unexpected(fd.error());
  return open(std::move(*fd), path);
}

std::optional<uint64_t> MemoryImageReader::peek_image_id(const std::string& path) {
  auto fd = open_read(path);
  if (!fd) return std::nullopt;
  std::vector<uint8_t> header(kMemoryHeaderSize);
  if (!pread_full(fd->get(), 0, header, path)) return std::nullopt;
  if (std::memcmp(header.data(), kMemoryMagic, sizeof(kMemoryMagic)) != 0) return std::nullopt;
  const uint32_t version = get_u32(header, 8);
  if (version == kMemoryVersion) return get_u64(header, 56);  // its meta_checksum
  const uint32_t regions = get_u32(header, 20);
  if (version != kMemoryIncrementalVersion || regions == 0 || regions > kMemoryMaxRegions) return std::nullopt;
  std::vector<uint8_t> id(kMemoryIdSize);
  if (!pread_full(fd->get(), kMemoryHeaderSize + kMemoryRegionEntrySize * regions, id, path)) return std::nullopt;
  return get_u64(id, 0);
}

Result<MemoryImageReader> MemoryImageReader::open(UniqueFd fd, std::string what) {
  MemoryImageReader m;
  m.fd_ = std::move(fd);
  m.what_ = std::move(what);
  auto bad = [&](std::string why) { return fail(Errc::corrupt, "memory image {}: {}", m.what_, why); };

  auto actual = snap::file_size(m.fd_.get());
  if (!actual) return std::unexpected(actual.error());
  if (*actual < kMemoryHeaderSize) return bad(fmt::format("only {} bytes, shorter than its header", *actual));
  std::vector<uint8_t> header(kMemoryHeaderSize);
  if (auto r = pread_full(m.fd_.get(), 0, header, m.what_); !r) return std::unexpected(r.error());
  if (std::memcmp(header.data(), kMemoryMagic, sizeof(kMemoryMagic)) != 0)
    return bad("not a cairn memory image (bad magic)");
  uint32_t version = get_u32(header, 8);
  if (version != kMemoryVersion && version != kMemoryIncrementalVersion)
    return bad(fmt::format("format version {} (this cairn reads {} and {})", version, kMemoryVersion,
                           kMemoryIncrementalVersion));
  uint32_t page_size = get_u32(header, 12);
  if (page_size != kMemoryPageSize) return bad(fmt::format("page size {} (expected {})", page_size, kMemoryPageSize));
  m.chunk_size_ = get_u32(header, 16);
  if (m.chunk_size_ == 0 || m.chunk_size_ % kMemoryPageSize || m.chunk_size_ / kMemoryPageSize > kMemoryMaxChunkPages)
    return bad(fmt::format("chunk size {} is not 1 to {} pages", m.chunk_size_, kMemoryMaxChunkPages));
  uint32_t region_count = get_u32(header, 20);
  if (region_count == 0 || region_count > kMemoryMaxRegions) return bad(fmt::format("{} memory regions", region_count));
  uint64_t chunk_count = get_u64(header, 24);
  m.index_offset_ = get_u64(header, 32);
  m.file_size_ = get_u64(header, 40);
  m.parent_id_ = get_u64(header, 48);
  if (version == kMemoryVersion && m.parent_id_ != 0) return bad("reserved header field is not zero");
  if (m.file_size_ != *actual)
    return bad(fmt::format("header says {} bytes, the file has {} (truncated or extended)", m.file_size_, *actual));
  const size_t id_bytes = version == kMemoryIncrementalVersion ? kMemoryIdSize : 0;
  m.data_start_ = kMemoryHeaderSize + kMemoryRegionEntrySize * region_count + id_bytes;
  if (m.index_offset_ < m.data_start_ || m.index_offset_ > m.file_size_ ||
      (m.file_size_ - m.index_offset_) / kMemoryIndexEntrySize != chunk_count ||
      (m.file_size_ - m.index_offset_) % kMemoryIndexEntrySize != 0)
    return bad(
        fmt::format("chunk index ({} entries at offset {}) does not fit the file", chunk_count, m.index_offset_));

  std::vector<uint8_t> table(kMemoryRegionEntrySize * region_count + id_bytes);
  if (auto r = pread_full(m.fd_.get(), kMemoryHeaderSize, table, m.what_); !r) return std::unexpected(r.error());
  std::vector<uint8_t> index(kMemoryIndexEntrySize * chunk_count);
  if (auto r = pread_full(m.fd_.get(), m.index_offset_, index, m.what_); !r) return std::unexpected(r.error());
  XXH3_state_t* st = XXH3_createState();
  if (!st) return fail(Errc::out_of_memory, "xxhash state");
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, header.data(), 56);
  XXH3_64bits_update(st, table.data(), table.size());
  XXH3_64bits_update(st, index.data(), index.size());
  uint64_t sum = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  if (sum != get_u64(header, 56)) return bad("header or chunk index checksum mismatch");
  // Version 1 images are never rewritten: their checksum serves as their id.
  m.image_id_ = id_bytes ? get_u64(table, kMemoryRegionEntrySize * region_count) : sum;
  if (!m.image_id_) return bad("image id is zero");

  uint64_t total = 0;
  for (uint32_t i = 0; i < region_count; ++i) {
    RegionLayout r{get_u64(table, i * kMemoryRegionEntrySize), get_u64(table, i * kMemoryRegionEntrySize + 8)};
    if (r.size == 0 || r.size % kMemoryPageSize || r.gpa % kMemoryPageSize || r.size > kMaxImageGuestBytes ||
        r.gpa > kMaxImageGuestBytes * 4)
      return bad(fmt::format("region {} ({:#x}+{:#x}) is not whole pages or out of range", i, r.gpa, r.size));
    if (i > 0 && m.layout_.back().gpa + m.layout_.back().size > r.gpa) return bad("regions overlap or are unsorted");
    total += r.size;
    if (total > kMaxImageGuestBytes) return bad("regions add up to more than 1 TiB");
    m.layout_.push_back(r);
  }
  // Counted before the spans are built: a forged region size must not make
  // the reader list billions of chunks before it notices.
  uint64_t need = 0;
  for (auto& r : m.layout_) need += (r.size + m.chunk_size_ - 1) / m.chunk_size_;
  if (need != chunk_count) return bad(fmt::format("{} chunks in the index, the regions need {}", chunk_count, need));
  auto spans = chunk_spans(m.layout_, m.chunk_size_);

  m.index_.reserve(chunk_count);
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // stored byte ranges, for the overlap check
  for (size_t i = 0; i < chunk_count; ++i) {
    ChunkEntry e =
        decode_entry(std::span<const uint8_t>(index).subspan(i * kMemoryIndexEntrySize, kMemoryIndexEntrySize));
    const unsigned pages = static_cast<unsigned>(spans[i].length / kMemoryPageSize);
    unsigned bits = 0;
    for (unsigned b = 0; b < 64; ++b) bits += static_cast<unsigned>(std::popcount(e.bitmap[b]));
    bool stray = false;
    for (unsigned p = pages; p < kMemoryMaxChunkPages; ++p) stray |= e.present(p);
    if (stray || bits != e.present_pages) return bad(fmt::format("chunk {}: present-page bitmap is inconsistent", i));
    if (e.flags & kChunkFlagInParent) {
      if (!m.parent_id_ || e.flags != kChunkFlagInParent || e.present_pages || e.offset || e.stored_size ||
          e.checksum)
        return bad(fmt::format("chunk {}: a reference to the parent image with data, or without a parent", i));
    } else if (e.present_pages == 0) {
      if (e.offset || e.stored_size || e.flags || e.checksum)
        return bad(fmt::format("chunk {}: empty chunk with data", i));
    } else {
      const uint64_t raw = uint64_t{e.present_pages} * kMemoryPageSize;
      if (e.flags & ~kChunkFlagRaw) return bad(fmt::format("chunk {}: unknown flags {:#x}", i, e.flags));
      bool size_ok =
          (e.flags & kChunkFlagRaw)
              ? e.stored_size == raw
              : e.stored_size > 0 && e.stored_size <= static_cast<uint64_t>(LZ4_compressBound(static_cast<int>(raw)));
      if (!size_ok)
        return bad(
            fmt::format("chunk {}: stored size {} is impossible for {} pages", i, e.stored_size, e.present_pages));
      if (e.offset < m.data_start_ || e.offset > m.index_offset_ || e.stored_size > m.index_offset_ - e.offset)
        return bad(fmt::format("chunk {}: data at {}+{} lies outside the chunk area", i, e.offset, e.stored_size));
      ranges.emplace_back(e.offset, e.stored_size);
    }
    m.index_.push_back(e);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i - 1].first + ranges[i - 1].second > ranges[i].first) return bad("stored chunks overlap");
  return m;
}

Result<void> MemoryImageReader::read_stored(size_t i, std::vector<uint8_t>& stored) const {
  const ChunkEntry& e = index_[i];
  stored.resize(e.stored_size);
  if (auto r = pread_full(fd_.get(), e.offset, stored, what_); !r) return r;
  if (XXH3_64bits(stored.data(), stored.size()) != e.checksum)
    return fail(Errc::corrupt, "memory image {}: chunk {} checksum mismatch", what_, i);
  return {};
}

Result<void> MemoryImageReader::read_chunk(size_t i, std::vector<uint8_t>& stored, std::vector<uint8_t>& pages) const {
  const ChunkEntry& e = index_[i];
  if (auto r = read_stored(i, stored); !r) return r;
  const size_t raw = size_t{e.present_pages} * kMemoryPageSize;
  if (e.flags & kChunkFlagRaw) {
    pages.swap(stored);
    return {};
  }
  pages.resize(raw);
  int n = LZ4_decompress_safe(reinterpret_cast<const char*>(stored.data()), reinterpret_cast<char*>(pages.data()),
                              static_cast<int>(stored.size()), static_cast<int>(raw));
  if (n < 0 || static_cast<size_t>(n) != raw)
    return fail(Errc::corrupt, "memory image {}: chunk {} does not decompress to {} pages", what_, i, e.present_pages);
  return {};
}

Result<void> MemoryImageReader::verify_chunks(unsigned threads) const {
  return parallel_for(index_.size(), threads, [&](size_t i) -> Result<void> {
    if (index_[i].present_pages == 0) return {};
    thread_local std::vector<uint8_t> stored, pages;
    return read_chunk(i, stored, pages);
  });
}

Result<void> MemoryImageReader::read_full_chunk(size_t i, std::vector<uint8_t>& stored, uint8_t* dst) const {
  const ChunkEntry& e = index_[i];
  const size_t raw = size_t{e.present_pages} * kMemoryPageSize;
  if (e.flags & kChunkFlagRaw) {
    if (auto r = pread_full(fd_.get(), e.offset, std::span<uint8_t>(dst, raw), what_); !r) return r;
    if (XXH3_64bits(dst, raw) != e.checksum)
      return fail(Errc::corrupt, "memory image {}: chunk {} checksum mismatch", what_, i);
    return {};
  }
  stored.resize(e.stored_size);
  if (auto r = pread_full(fd_.get(), e.offset, stored, what_); !r) return r;
  if (XXH3_64bits(stored.data(), stored.size()) != e.checksum)
    return fail(Errc::corrupt, "memory image {}: chunk {} checksum mismatch", what_, i);
  int n = LZ4_decompress_safe(reinterpret_cast<const char*>(stored.data()), reinterpret_cast<char*>(dst),
                              static_cast<int>(stored.size()), static_cast<int>(raw));
  if (n < 0 || static_cast<size_t>(n) != raw)
    return fail(Errc::corrupt, "memory image {}: chunk {} does not decompress to {} pages", what_, i, e.present_pages);
  return {};
}

Result<void> MemoryImageReader::check_regions(std::span<const RamRegion> regions) const {
  if (regions.size() != layout_.size())
    return fail(Errc::invalid_argument, "memory image {} has {} regions, the guest {}", what_, layout_.size(),
                regions.size());
  for (size_t i = 0; i < regions.size(); ++i)
    if (regions[i].gpa != layout_[i].gpa || regions[i].size != layout_[i].size || !regions[i].host)
      return fail(Errc::invalid_argument, "memory image {}: region {} is {:#x}+{:#x}, the guest's is {:#x}+{:#x}",
                  what_, i, layout_[i].gpa, layout_[i].size, regions[i].gpa, regions[i].size);
  return {};
}

Result<void> MemoryImageReader::place_chunk(size_t i, uint8_t* base, uint64_t length, bool already_zero) const {
  const ChunkEntry& e = index_[i];
  if (e.in_parent())
    return fail(Errc::invalid_argument, "memory image {}: chunk {} is in its parent image", what_, i);
  const unsigned npages = static_cast<unsigned>(length / kMemoryPageSize);
  thread_local std::vector<uint8_t> stored, pages;
  // A chunk with every page present goes straight into guest memory
  // (read or decompressed there, no copy): most of a busy guest's RAM.
  if (e.present_pages == npages) return read_full_chunk(i, stored, base);
  if (e.present_pages > 0)
    if (auto r = read_chunk(i, stored, pages); !r) return r;
  size_t next = 0;
  for (unsigned p = 0; p < npages; ++p) {
    uint8_t* dst = base + uint64_t{p} * kMemoryPageSize;
    if (e.present(p)) {
      std::memcpy(dst, pages.data() + next * kMemoryPageSize, kMemoryPageSize);
      ++next;
    } else if (!already_zero) {
      std::memset(dst, 0, kMemoryPageSize);
    }
  }
  return {};
}

Result<void> MemoryImageReader::load(std::span<const RamRegion> regions, bool already_zero, unsigned threads) const {
  if (auto r = check_regions(regions); !r) return r;
  if (parent_id_)
    return fail(Errc::invalid_argument, "memory image {} holds only the chunks written since its parent", what_);
  const auto spans = chunk_spans(layout_, chunk_size_);
  return parallel_for(index_.size(), threads, [&](size_t i) -> Result<void> {
    return place_chunk(i, regions[spans[i].region].host + spans[i].offset, spans[i].length, already_zero);
  });
}

}  // namespace cairn::snap
