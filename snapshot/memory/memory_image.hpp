// cairn's memory image: the guest RAM of a checkpoint, lz4-compressed in
// independent chunks with zero pages left out. Also documented in
// docs/checkpoint-format.md.
//
// All integers are little-endian. Offsets are from the start of the file.
//
// Header (64 bytes, at offset 0)
//   0   8  magic "CAIRNMEM"
//   8   4  version: 1, or 2 (written by cairn now: carries an image id, and
//          may be incremental)
//   12  4  page_size: 4096
//   16  4  chunk_size: a multiple of page_size, at most 512 pages (2 MiB)
//   20  4  region_count: 1 .. 64
//   24  8  chunk_count: sum over regions of ceil(region size / chunk_size)
//   32  8  index_offset: where the chunk index starts
//   40  8  file_size: the size of the whole file (index_offset + chunk_count * 88)
//   48  8  parent_id: version 2, the image_id of the image this one builds on
//          (0: a full image); version 1, 0
//   56  8  meta_checksum: XXH3_64bits over header bytes [0, 56), then the
//          region table and image id, then the chunk index, as one stream
//
// Region table (region_count * 16 bytes, at offset 64): the guest RAM layout
//   0   8  gpa: guest-physical start, page aligned
//   8   8  size: bytes, page aligned, > 0
//   Regions are sorted by gpa and do not overlap. Chunks number the regions'
//   pages in order: region 0's first chunk_size bytes are chunk 0, and so
//   on; the last chunk of a region may be shorter (whole pages).
//
// Image id (version 2 only, 8 bytes right after the region table): random,
//   not 0, kept when the image is rewritten by folding its parent into it,
//   so that images built on it still find it. A version 1 image's id is its
//   meta_checksum (it is never rewritten).
//
// Chunk data (from 64 + 16 * region_count (+ 8 in version 2) up to index_offset): each stored
//   chunk is one LZ4 block (LZ4_compress_default) of the chunk's present pages
//   concatenated in page order, or those bytes raw when lz4 would not make
//   them smaller. Chunks may appear in any order (they are written by several
//   threads); their ranges never overlap. A reader accepts bytes that no
//   index entry points to between them; cairn's writer leaves none (a chunk
//   stored again during a live checkpoint moves the others up at the end).
//
// Chunk index (chunk_count * 88 bytes, at index_offset), entry i for chunk i:
//   0   8  offset of the stored bytes
//   8   4  stored_size
//   12  2  present_pages: pages stored (the others are all zero)
//   14  2  flags: bit 0 = stored raw (stored_size == present_pages * page_size);
//          bit 1 = in parent (incremental images only): the chunk is as in
//          the parent image, nothing stored here (offset, stored_size,
//          present_pages, checksum and bitmap 0, no other flag)
//   16  8  checksum: XXH3_64bits of the stored bytes
//   24 64  present bitmap: bit p (byte p / 8, bit p % 8) is set when page p
//          of the chunk is stored; bits past the chunk's page count are 0
//   A chunk with no present page has offset, stored_size, flags, checksum 0.
//
// An incremental image's RAM is its stored chunks over its parent's RAM,
// recursively down to a full image (image_chain.hpp). A chain is checked as
// it is opened: each parent_id must equal the next image's image_id, all of
// one layout and chunk size, the last image full.
//
// A reader checks the header, region table and index (bounds, sizes, counts,
// meta_checksum) before reading any chunk, and every chunk's checksum before
// writing anything into guest memory; any failure is Errc::corrupt.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn::snap {

inline constexpr char kMemoryMagic[8] = {'C', 'A', 'I', 'R', 'N', 'M', 'E', 'M'};
inline constexpr uint32_t kMemoryVersion = 1;
inline constexpr uint32_t kMemoryPageSize = 4096;
inline constexpr uint32_t kMemoryMaxChunkPages = 512;
inline constexpr uint32_t kMemoryDefaultChunkSize = kMemoryMaxChunkPages * kMemoryPageSize;  // 2 MiB
inline constexpr uint32_t kMemoryMaxRegions = 64;
inline constexpr size_t kMemoryHeaderSize = 64;
inline constexpr size_t kMemoryRegionEntrySize = 16;
inline constexpr size_t kMemoryIndexEntrySize = 88;
inline constexpr uint16_t kChunkFlagRaw = 1;
inline constexpr uint16_t kChunkFlagInParent = 2;
inline constexpr uint32_t kMemoryIncrementalVersion = 2;
inline constexpr size_t kMemoryIdSize = 8;  // version 2: the image's id, after the region table

// One guest RAM region as the image sees it: where it sits and its host bytes.
struct RamRegion {
  uint64_t gpa = 0;
  uint64_t size = 0;
  uint8_t* host = nullptr;
  // Optional: the memfd behind `host` (region byte 0 at file offset 0). The
  // writer skips its holes (SEEK_HOLE) without reading them: touching a
  // never-written page would allocate it.
  int fd = -1;
};

struct RegionLayout {
  uint64_t gpa = 0;
  uint64_t size = 0;
  bool operator==(const RegionLayout&) const = default;
};

struct MemoryImageOptions {
  uint32_t chunk_size = kMemoryDefaultChunkSize;
  unsigned threads = 0;  // 0: one per online CPU
  // Non-zero: an incremental image (version 2) whose unstored chunks are
  // those of the image with this id (MemoryImageReader::image_id()).
  uint64_t parent_id = 0;
  uint64_t image_id = 0;  // 0: a new random id (folding keeps the child's)
};

struct MemoryImageStats {
  uint64_t file_bytes = 0;
  uint64_t guest_bytes = 0;
  uint64_t stored_pages = 0;
  uint64_t zero_pages = 0;
  uint64_t chunks = 0;
  uint64_t compacted_bytes = 0;  // earlier copies of chunks stored again, removed by finish()
  uint64_t image_id = 0;         // the finished image's meta_checksum
  uint64_t parent_chunks = 0;    // chunks left to the parent image
};

// Writes the image of `regions` into `fd` (an empty file opened for writing),
// compressing chunks on several threads. The caller fsyncs.
Result<MemoryImageStats> write_memory_image(int fd, std::span<const RamRegion> regions,
                                            const MemoryImageOptions& opts = {});

// One parsed index entry.
struct ChunkEntry {
  uint64_t offset = 0;
  uint32_t stored_size = 0;
  uint16_t present_pages = 0;
  uint16_t flags = 0;
  uint64_t checksum = 0;
  uint8_t bitmap[64] = {};
  bool present(unsigned page) const { return bitmap[page / 8] & (1u << (page % 8)); }
  bool in_parent() const { return flags & kChunkFlagInParent; }
};

class MemoryImageReader {
 public:
  // Reads and checks header, region table and chunk index; `what` names the
  // file in error messages. Takes ownership of `fd`.
  static Result<MemoryImageReader> open(UniqueFd fd, std::string what);
  static Result<MemoryImageReader> open(const std::string& path);
  // The image id of the file at `path` from its first bytes, nothing checked
  // but the magic, version and region count (nullopt otherwise): to find an
  // image among many cheaply, then open() it.
  static std::optional<uint64_t> peek_image_id(const std::string& path);

  const std::vector<RegionLayout>& layout() const { return layout_; }
  uint32_t chunk_size() const { return chunk_size_; }
  uint64_t file_size() const { return file_size_; }
  const std::vector<ChunkEntry>& index() const { return index_; }
  // The image's identity (version 2: stored in the file; version 1: its
  // meta_checksum), and its parent's (0: a full image).
  uint64_t image_id() const { return image_id_; }
  uint64_t parent_id() const { return parent_id_; }

  // Reads every stored chunk and checks its checksum; touches no guest memory.
  Result<void> verify_chunks(unsigned threads = 0) const;
  // Errc::invalid_argument unless `regions` (mapped) lie exactly as layout() says.
  Result<void> check_regions(std::span<const RamRegion> regions) const;
  // Fills `regions`, whose layout must equal layout(). Absent pages are
  // zeroed unless `already_zero` says the memory is fresh (keeps it unpopulated).
  // Every chunk's checksum is checked as it is read: on an error, `regions`
  // hold partial data and must not be run.
  Result<void> load(std::span<const RamRegion> regions, bool already_zero, unsigned threads = 0) const;
  // Reads chunk i's stored bytes and checks them; `pages` receives its present
  // pages, in page order. Safe from several threads at once.
  Result<void> read_chunk(size_t i, std::vector<uint8_t>& stored, std::vector<uint8_t>& pages) const;
  // Chunk i's stored bytes as they are in the file, checksum checked.
  Result<void> read_stored(size_t i, std::vector<uint8_t>& stored) const;
  // Puts chunk i at `base` (`length` bytes of guest memory), checked as read.
  Result<void> place_chunk(size_t i, uint8_t* base, uint64_t length, bool already_zero) const;

 private:
  MemoryImageReader() = default;
  // The same for a chunk whose pages are all present, straight into `dst`.
  Result<void> read_full_chunk(size_t i, std::vector<uint8_t>& stored, uint8_t* dst) const;

  UniqueFd fd_;
  std::string what_;
  uint32_t chunk_size_ = 0;
  uint64_t file_size_ = 0;
  uint64_t data_start_ = 0;
  uint64_t index_offset_ = 0;
  uint64_t image_id_ = 0;
  uint64_t parent_id_ = 0;
  std::vector<RegionLayout> layout_;
  std::vector<ChunkEntry> index_;
};

// The chunk (region, offset in region, length) that chunk number i covers.
struct ChunkSpan {
  size_t region = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};
std::vector<ChunkSpan> chunk_spans(std::span<const RegionLayout> layout, uint32_t chunk_size);

// Mapped guest RAM cut into chunks: where each chunk lies in this process,
// and which chunk a faulting address falls in (userfaultfd handlers).
class HostChunks {
 public:
  HostChunks() = default;
  HostChunks(std::vector<RamRegion> regions, uint32_t chunk_size);
  size_t size() const { return spans_.size(); }
  const std::vector<RamRegion>& regions() const { return regions_; }
  const ChunkSpan& span(size_t i) const { return spans_[i]; }
  uint64_t addr(size_t i) const { return reinterpret_cast<uint64_t>(regions_[spans_[i].region].host) + spans_[i].offset; }
  std::optional<size_t> chunk_at(uint64_t addr) const;

 private:
  std::vector<RamRegion> regions_;
  std::vector<ChunkSpan> spans_;
  std::vector<size_t> first_chunk_;  // per region: its first chunk number
  uint32_t chunk_size_ = 0;
};

// The writer behind write_memory_image, for a checkpoint taken while the guest
// runs: store every chunk, then store again the chunks the guest (or a
// device) wrote since, any number of times; finish() writes the index and
// the header. Regions must stay mapped until finish().
class MemoryImageWriter {
 public:
  static Result<MemoryImageWriter> create(int fd, std::span<const RamRegion> regions,
                                          const MemoryImageOptions& opts = {});
  // A writer of chunks taken from other images (copy_chunk, refer_to_parent):
  // it has no guest memory to store from.
  static Result<MemoryImageWriter> create_for_copy(int fd, std::span<const RegionLayout> layout,
                                                   const MemoryImageOptions& opts = {});
  size_t chunk_count() const { return spans_.size(); }
  const std::vector<RamRegion>& regions() const { return regions_; }
  const std::vector<ChunkSpan>& spans() const { return spans_; }
  uint32_t chunk_size() const { return opts_.chunk_size; }
  // The chunk holding guest-physical address gpa, if any region holds it.
  std::optional<size_t> chunk_of(uint64_t gpa) const;
  // Reads, compresses and appends these chunks (each at most once in the list).
  Result<void> store(std::span<const size_t> chunks);
  // The same for one chunk, on the calling thread. Several threads may store
  // at once, each a different chunk.
  Result<void> store_chunk(size_t i);
  Result<void> store_all();
  // Chunk i as another image stored it: `e` its index entry, `stored` its
  // bytes (checked against e.checksum by the caller's reader).
  Result<void> copy_chunk(size_t i, const ChunkEntry& e, std::span<const uint8_t> stored);
  // Incremental images: these chunks are unchanged since the parent image.
  Result<void> refer_to_parent(std::span<const size_t> chunks);
  Result<MemoryImageStats> finish();

 private:
  MemoryImageWriter() = default;
  int fd_ = -1;
  MemoryImageOptions opts_;
  std::vector<RamRegion> regions_;
  std::vector<ChunkSpan> spans_;
  std::vector<ChunkEntry> entries_;
  std::unique_ptr<std::mutex> mu_ = std::make_unique<std::mutex>();  // cursor_, unreferenced_bytes_
  uint64_t image_id_ = 0;
  uint64_t cursor_ = 0;  // next free byte for chunk data
  uint64_t unreferenced_bytes_ = 0;
};


// Runs fn(i) for i in [0, count) on up to `threads` threads (0: one per CPU);
// stops handing out work after the first error and returns it.
Result<void> parallel_for(size_t count, unsigned threads, const std::function<Result<void>(size_t)>& fn);

}  // namespace cairn::snap
