// Writes a memory image (format in memory_image.hpp): chunks are scanned for
// zero pages and compressed by a pool of threads, each appending its result
// at a reserved file offset; chunks may be stored again (a live checkpoint);
// the index and the header go last.
#include <lz4.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <mutex>
#include <random>

#include "snapshot/memory/bytes.hpp"
#include "snapshot/memory/file_io.hpp"
#include "snapshot/memory/memory_image.hpp"
#include "vmm/base/all_zero.hpp"

namespace cairn::snap {

namespace {
bool page_is_zero(const uint8_t* p) { return all_zero(std::span(p, kMemoryPageSize)); }

// Marks in `maybe` the pages of [off, off+len) of `fd` that hold data; pages
// in holes read as zero. Returns false when the fd cannot tell (no SEEK_DATA).
bool data_pages(int fd, uint64_t off, uint64_t len, std::vector<bool>& maybe) {
  maybe.assign(len / kMemoryPageSize, false);
  uint64_t pos = off, end = off + len;
  while (pos < end) {
    off_t d = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (d < 0) return errno == ENXIO;  // ENXIO: no data from pos to the end of the file
    if (static_cast<uint64_t>(d) >= end) break;
    off_t h = ::lseek(fd, d, SEEK_HOLE);
    if (h < 0) return false;
    uint64_t hole = std::min<uint64_t>(static_cast<uint64_t>(h), end);
    for (uint64_t p = (static_cast<uint64_t>(d) - off) / kMemoryPageSize; p * kMemoryPageSize + off < hole; ++p)
      maybe[p] = true;
    pos = hole;
  }
  return true;
}

void encode_entry(std::span<uint8_t> out, const ChunkEntry& e) {
  put_u64(out, 0, e.offset);
  put_u32(out, 8, e.stored_size);
  put_u16(out, 12, e.present_pages);
  put_u16(out, 14, e.flags);
  put_u64(out, 16, e.checksum);
  std::memcpy(out.data() + 24, e.bitmap, sizeof(e.bitmap));
}

Result<void> check_regions(std::span<const RamRegion> regions, uint32_t chunk_size) {
  if (regions.empty() || regions.size() > kMemoryMaxRegions)
    return fail(Errc::invalid_argument, "memory image: {} regions (1 to {} allowed)", regions.size(),
                kMemoryMaxRegions);
  if (chunk_size == 0 || chunk_size % kMemoryPageSize || chunk_size / kMemoryPageSize > kMemoryMaxChunkPages)
    return fail(Errc::invalid_argument, "memory image: chunk size {} is not 1 to {} whole pages", chunk_size,
                kMemoryMaxChunkPages);
  for (size_t i = 0; i < regions.size(); ++i) {
    auto& r = regions[i];
    if (r.size == 0 || r.size % kMemoryPageSize || r.gpa % kMemoryPageSize || !r.host)
      return fail(Errc::invalid_argument, "memory image: region {} ({:#x}+{:#x}) is not whole pages", i, r.gpa, r.size);
    if (i > 0 && regions[i - 1].gpa + regions[i - 1].size > r.gpa)
      return fail(Errc::invalid_argument, "memory image: regions overlap or are not sorted");
  }
  return {};
}
}  // namespace

Result<MemoryImageWriter> MemoryImageWriter::create(int fd, std::span<const RamRegion> regions,
                                                    const MemoryImageOptions& opts) {
  if (auto r = check_regions(regions, opts.chunk_size); !r) return std::unexpected(r.error());
  MemoryImageWriter w;
  w.fd_ = fd;
  w.opts_ = opts;
  w.regions_.assign(regions.begin(), regions.end());
  std::vector<RegionLayout> layout;
  for (auto& r : regions) layout.push_back({r.gpa, r.size});
  w.spans_ = chunk_spans(layout, opts.chunk_size);
  w.entries_.assign(w.spans_.size(), ChunkEntry{});
  w.cursor_ = kMemoryHeaderSize + kMemoryRegionEntrySize * regions.size() + kMemoryIdSize;
  w.image_id_ = opts.image_id;
  while (!w.image_id_) w.image_id_ = (uint64_t{std::random_device{}()} << 32) | std::random_device{}();
  return w;
}

Result<MemoryImageWriter> MemoryImageWriter::create_for_copy(int fd, std::span<const RegionLayout> layout,
                                                             const MemoryImageOptions& opts) {
  // Checked with a stand-in address, then dropped: this writer reads no memory.
  static uint8_t nowhere;
  std::vector<RamRegion> regions;
  for (auto& l : layout) regions.push_back({l.gpa, l.size, &nowhere, -1});
  auto w = create(fd, regions, opts);
  if (!w) return w;
  for (auto& r : w->regions_) r.host = nullptr;
  return w;
}

std::optional<size_t> MemoryImageWriter::chunk_of(uint64_t gpa) const {
  size_t first = 0;
  for (auto& r : regions_) {
    const uint64_t n = (r.size + opts_.chunk_size - 1) / opts_.chunk_size;
    if (gpa >= r.gpa && gpa - r.gpa < r.size) return first + (gpa - r.gpa) / opts_.chunk_size;
    first += n;
  }
  return std::nullopt;
}

Result<void> MemoryImageWriter::store_chunk(size_t i) {
  const ChunkSpan& cs = spans_[i];
  if (!regions_[cs.region].host) return fail(Errc::invalid_argument, "memory image: no guest memory to store from");
  const uint8_t* base = regions_[cs.region].host + cs.offset;
  const unsigned pages = static_cast<unsigned>(cs.length / kMemoryPageSize);
  ChunkEntry e;
  thread_local std::vector<uint8_t> raw, packed;
  thread_local std::vector<bool> maybe;
  raw.clear();
  const int fd_ram = regions_[cs.region].fd;
  const bool holes_known = fd_ram >= 0 && data_pages(fd_ram, cs.offset, cs.length, maybe);
  // Pages are copied out before compressing: the guest may be writing them
  // (a live checkpoint stores such a chunk again later), and lz4 must see
  // stable input.
  for (unsigned p = 0; p < pages; ++p) {
    const uint8_t* page = base + uint64_t{p} * kMemoryPageSize;
    if ((holes_known && !maybe[p]) || page_is_zero(page)) continue;
    e.bitmap[p / 8] |= static_cast<uint8_t>(1u << (p % 8));
    ++e.present_pages;
    raw.insert(raw.end(), page, page + kMemoryPageSize);
  }
  if (e.present_pages == 0) {
    std::lock_guard lk(*mu_);
    if (entries_[i].present_pages) unreferenced_bytes_ += entries_[i].stored_size;
    entries_[i] = e;
    return {};
  }
  packed.resize(static_cast<size_t>(LZ4_compressBound(static_cast<int>(raw.size()))));
  int n = LZ4_compress_default(reinterpret_cast<const char*>(raw.data()), reinterpret_cast<char*>(packed.data()),
                               static_cast<int>(raw.size()), static_cast<int>(packed.size()));
  std::span<const uint8_t> out;
  if (n > 0 && static_cast<size_t>(n) < raw.size()) {
    out = std::span(packed.data(), static_cast<size_t>(n));
  } else {
    out = raw;  // incompressible: store as is
    e.flags = kChunkFlagRaw;
  }
  e.stored_size = static_cast<uint32_t>(out.size());
  e.checksum = XXH3_64bits(out.data(), out.size());
  {
    // A chunk stored again goes to fresh bytes at the end: its old bytes
    // stay unreferenced, so an image is never half-overwritten.
    std::lock_guard lk(*mu_);
    e.offset = cursor_;
    cursor_ += out.size();
    if (entries_[i].present_pages) unreferenced_bytes_ += entries_[i].stored_size;
  }
  entries_[i] = e;
  return pwrite_full(fd_, e.offset, out, "memory image");
}

Result<void> MemoryImageWriter::store(std::span<const size_t> chunks) {
  return parallel_for(chunks.size(), opts_.threads, [&](size_t k) { return store_chunk(chunks[k]); });
}

Result<void> MemoryImageWriter::copy_chunk(size_t i, const ChunkEntry& e, std::span<const uint8_t> stored) {
  if (i >= entries_.size()) return fail(Errc::invalid_argument, "memory image: no chunk {}", i);
  if (e.in_parent() || stored.size() != e.stored_size)
    return fail(Errc::invalid_argument, "memory image: chunk {} to copy has no bytes of its own", i);
  ChunkEntry out = e;
  {
    std::lock_guard lk(*mu_);
    if (entries_[i].present_pages) unreferenced_bytes_ += entries_[i].stored_size;
    out.offset = e.present_pages ? cursor_ : 0;
    if (e.present_pages) cursor_ += stored.size();
  }
  entries_[i] = out;
  if (!e.present_pages) return {};
  return pwrite_full(fd_, out.offset, stored, "memory image");
}

Result<void> MemoryImageWriter::refer_to_parent(std::span<const size_t> chunks) {
  if (!opts_.parent_id) return fail(Errc::invalid_argument, "memory image: no parent image to refer to");
  std::lock_guard lk(*mu_);
  for (size_t i : chunks) {
    if (i >= entries_.size()) return fail(Errc::invalid_argument, "memory image: no chunk {}", i);
    if (entries_[i].present_pages) unreferenced_bytes_ += entries_[i].stored_size;
    entries_[i] = ChunkEntry{};
    entries_[i].flags = kChunkFlagInParent;
  }
  return {};
}

Result<void> MemoryImageWriter::store_all() {
  std::vector<size_t> all(spans_.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  return store(all);
}

Result<MemoryImageStats> MemoryImageWriter::finish() {
  const std::string what = "memory image";
  if (unreferenced_bytes_) {
    // Close the gaps that earlier copies of re-stored chunks left: every
    // byte of a finished image belongs to a checksummed chunk, so damage
    // anywhere in it is found. Chunks only move toward the start.
    std::vector<size_t> order;
    for (size_t i = 0; i < entries_.size(); ++i)
      if (entries_[i].present_pages) order.push_back(i);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return entries_[a].offset < entries_[b].offset; });
    uint64_t at = kMemoryHeaderSize + kMemoryRegionEntrySize * regions_.size() + kMemoryIdSize;
    std::vector<uint8_t> buf;
    for (size_t i : order) {
      ChunkEntry& e = entries_[i];
      if (e.offset != at) {
        buf.resize(e.stored_size);
        if (auto r = pread_full(fd_, e.offset, buf, what); !r) return std::unexpected(r.error());
        if (auto r = pwrite_full(fd_, at, buf, what); !r) return std::unexpected(r.error());
        e.offset = at;
      }
      at += e.stored_size;
    }
    cursor_ = at;
  }
  // Region table + index, then the header that seals them.
  std::vector<uint8_t> table(kMemoryRegionEntrySize * regions_.size() + kMemoryIdSize);
  for (size_t i = 0; i < regions_.size(); ++i) {
    put_u64(table, i * kMemoryRegionEntrySize, regions_[i].gpa);
    put_u64(table, i * kMemoryRegionEntrySize + 8, regions_[i].size);
  }
  put_u64(table, kMemoryRegionEntrySize * regions_.size(), image_id_);
  std::vector<uint8_t> index(kMemoryIndexEntrySize * entries_.size());
  uint64_t stored_pages = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    encode_entry(std::span(index).subspan(i * kMemoryIndexEntrySize, kMemoryIndexEntrySize), entries_[i]);
    stored_pages += entries_[i].present_pages;
  }
  const uint64_t index_offset = cursor_;
  const uint64_t file_bytes = index_offset + index.size();

  std::vector<uint8_t> header(kMemoryHeaderSize, 0);
  std::memcpy(header.data(), kMemoryMagic, sizeof(kMemoryMagic));
  put_u32(header, 8, kMemoryIncrementalVersion);
  put_u32(header, 12, kMemoryPageSize);
  put_u32(header, 16, opts_.chunk_size);
  put_u32(header, 20, static_cast<uint32_t>(regions_.size()));
  put_u64(header, 24, entries_.size());
  put_u64(header, 32, index_offset);
  put_u64(header, 40, file_bytes);
  put_u64(header, 48, opts_.parent_id);
  XXH3_state_t* st = XXH3_createState();
  if (!st) return fail(Errc::out_of_memory, "xxhash state");
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, header.data(), 56);
  XXH3_64bits_update(st, table.data(), table.size());
  XXH3_64bits_update(st, index.data(), index.size());
  put_u64(header, 56, XXH3_64bits_digest(st));
  XXH3_freeState(st);

  if (auto r = pwrite_full(fd_, index_offset, index, what); !r) return std::unexpected(r.error());
  if (unreferenced_bytes_ && ::ftruncate(fd_, static_cast<off_t>(file_bytes)) != 0)
    return fail_errno("truncating the memory image");
  if (auto r = pwrite_full(fd_, kMemoryHeaderSize, table, what); !r) return std::unexpected(r.error());
  if (auto r = pwrite_full(fd_, 0, header, what); !r) return std::unexpected(r.error());

  MemoryImageStats s;
  s.file_bytes = file_bytes;
  for (auto& r : regions_) s.guest_bytes += r.size;
  s.stored_pages = stored_pages;
  s.zero_pages = s.guest_bytes / kMemoryPageSize - s.stored_pages;
  s.chunks = entries_.size();
  s.compacted_bytes = unreferenced_bytes_;
  s.image_id = image_id_;
  for (auto& e : entries_) s.parent_chunks += e.in_parent() ? 1 : 0;
  return s;
}

Result<MemoryImageStats> write_memory_image(int fd, std::span<const RamRegion> regions,
                                            const MemoryImageOptions& opts) {
  auto w = MemoryImageWriter::create(fd, regions, opts);
  if (!w) return std::unexpected(w.error());
  if (auto r = w->store_all(); !r) return std::unexpected(r.error());
  return w->finish();
}

}  // namespace cairn::snap
