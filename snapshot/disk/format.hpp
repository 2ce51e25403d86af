// cairn layered disk format ("cdisk"), version 1. docs/disk-format.md has the
// same description with the reasoning; this comment is the byte-level truth.
//
// All integers are little-endian. A layer file is:
//
//   0x0000  header slot 0        4096 bytes
//   0x1000  header slot 1        4096 bytes
//   0x2000  log                  log_bytes (multiple of 4096)
//   bat_offset[0]  BAT copy 0    bat_entries * 8, padded to 4096
//   bat_offset[1]  BAT copy 1    same size
//   data_offset    data slots    block-sized, slot k at data_offset + k*block
//
// Header slot (4096 bytes; the current header is the valid slot with the
// larger seq; a header update writes the other slot, then fdatasync):
//   0   8  magic "CAIRNDSK"
//   8   4  version (1)
//   12  4  flags: bit 0 = has a parent
//   16  8  seq: incremented by every header write
//   24  8  virtual_size in bytes (multiple of 512, <= kMaxVirtualSize)
//   32  4  block_shift: block size = 1 << block_shift (12..21)
//   36  4  bat_active: which BAT copy (0/1) holds the checkpointed table
//   40  16 uuid of this layer (RFC 4122 v4, binary)
//   56  8  generation: bumped before the first change of a writable session;
//          a child records it and refuses a parent whose value differs
//   64  8  log_offset (0x2000)
//   72  8  log_bytes
//   80  8  log_epoch: log blocks of another epoch are stale
//   88  8  bat_offset[0]
//   96  8  bat_offset[1]
//   104 8  bat_entries = ceil(virtual_size / block size)
//   112 8  bat_checksum: XXH64 (seed 0) of the active BAT copy's entries
//   120 8  data_offset (multiple of 4096, after all metadata)
//   128 16 parent_uuid
//   144 8  parent_generation
//   152 4  parent_path_len (<= 1024)
//   156 4  merge_kind: 0 none, 1 this layer is absorbing its child
//          merge_peer_uuid (merge_into_parent running), 2 this layer is
//          absorbing its parent (merge_into_child running) and will be
//          re-pointed to new_parent_*
//   160 16 merge_peer_uuid
//   176 16 new_parent_uuid
//   192 8  new_parent_generation
//   200 4  new_parent_path_len (<= 1024)
//   204 4  new_parent_flags: bit 0 = the new parent exists (else: no parent)
//   208 1024 parent_path: relative to this file's folder (or absolute)
//   1232 1024 new_parent_path
//   2256 .. 4087 zero
//   4088 8 checksum: XXH64 (seed 0) of bytes 0..4087
//
// BAT entry (u64) for guest block i:
//   bits 0..1  state: 0 unallocated (read the parent, or zeros),
//              1 data at the offset in the rest of the entry,
//              2 zero (reads zeros, hides the parents)
//   bits 12..63 file offset of the data slot (state 1 only; 0 otherwise);
//              data_offset <= offset, (offset - data_offset) % block == 0,
//              offset + block <= file size, no two entries share a slot.
//   Every data slot holds the whole block (partial writes copy the rest
//   from the parents first), so a layer never needs its parents' bytes for
//   a block it holds.
//
// Log block (4096 bytes, written at log_offset + 4096*index, in order):
//   0  8  magic "CAIRNLOG"
//   8  8  epoch (must equal the header's log_epoch)
//   16 4  index (0, 1, 2, ... from the start of the log)
//   20 4  count (1..254)
//   24 16*count  records: u64 block index, u64 new BAT entry
//   4088 8 checksum: XXH64 of bytes 0..4087
// Opening replays blocks 0, 1, ... onto the BAT until the first that fails
// any check. Records are idempotent, and a freed slot is only reused after
// the record that freed it is durable, so replaying any prefix is safe.
// When the log is full, the whole BAT is written to the inactive copy,
// synced, and a header naming that copy with log_epoch+1 is written
// (a checkpoint).
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/base/error.hpp"

namespace cairn::disk {

inline constexpr uint32_t kVersion = 1;
inline constexpr uint64_t kHeaderSlotBytes = 4096;
inline constexpr uint64_t kLogOffset = 2 * kHeaderSlotBytes;
inline constexpr uint64_t kLogBlockBytes = 4096;
inline constexpr uint32_t kLogRecordsPerBlock = 254;
inline constexpr uint64_t kDefaultLogBytes = 256 * kLogBlockBytes;  // 1 MiB
inline constexpr uint64_t kMaxLogBytes = 64ull << 20;
inline constexpr uint32_t kMinBlockShift = 12;
inline constexpr uint32_t kMaxBlockShift = 21;
inline constexpr uint64_t kMaxVirtualSize = 64ull << 40;  // 64 TiB
inline constexpr size_t kMaxPathLen = 1024;
inline constexpr int kMaxChainDepth = 32;

// Default block size, measured with `cairn disk bench` on the project machine
// (256 MiB disk, data in the base, 3 empty layers above, page cache):
//   block   first random 4K writes   1 MiB sequential reads (depth 4)
//   4 KiB        474 MB/s                 1045 MB/s
//   16 KiB       211 MB/s                 1625 MB/s
//   64 KiB       224 MB/s                 3402 MB/s
//   256 KiB       57 MB/s                 5368 MB/s
// 64 KiB is where copy-on-write of a 4 KiB write still costs about what 16 KiB
// does while sequential reads through a chain run twice as fast; it matches
// qcow2's default cluster, and keeps the BAT of a 1 TiB disk at 128 MiB
// (4 KiB blocks would need 2 GiB).
inline constexpr uint32_t kDefaultBlockShift = 16;

enum class EntryState : uint64_t { unallocated = 0, data = 1, zero = 2 };
inline constexpr uint64_t kEntryStateMask = 3;
inline constexpr uint64_t kEntryOffsetMask = ~uint64_t{0xfff};
inline EntryState entry_state(uint64_t e) { return EntryState(e & kEntryStateMask); }
inline uint64_t entry_offset(uint64_t e) { return e & kEntryOffsetMask; }
inline uint64_t make_data_entry(uint64_t off) { return off | uint64_t(EntryState::data); }
inline constexpr uint64_t kZeroEntry = uint64_t(EntryState::zero);

enum class MergeKind : uint32_t { none = 0, absorbing_child = 1, absorbing_parent = 2 };

using Uuid = std::array<uint8_t, 16>;

struct ParentLink {
  Uuid uuid{};
  uint64_t generation = 0;
  std::string path;  // as stored: relative to the child's folder, or absolute
};

struct Header {
  uint64_t seq = 0;
  uint64_t virtual_size = 0;
  uint32_t block_shift = kDefaultBlockShift;
  uint32_t bat_active = 0;
  Uuid uuid{};
  uint64_t generation = 0;
  uint64_t log_offset = kLogOffset;
  uint64_t log_bytes = kDefaultLogBytes;
  uint64_t log_epoch = 1;
  uint64_t bat_offset[2] = {0, 0};
  uint64_t bat_entries = 0;
  uint64_t bat_checksum = 0;
  uint64_t data_offset = 0;
  bool has_parent = false;
  ParentLink parent;
  MergeKind merge_kind = MergeKind::none;
  Uuid merge_peer{};
  bool new_parent_exists = false;
  ParentLink new_parent;

  uint64_t block_size() const { return uint64_t{1} << block_shift; }
  uint64_t bat_bytes() const { return bat_entries * 8; }
  uint64_t bat_region_bytes() const { return (bat_bytes() + 4095) & ~uint64_t{4095}; }
};

// Serializes into exactly kHeaderSlotBytes bytes, checksum included.
void encode_header(const Header& h, std::span<uint8_t, kHeaderSlotBytes> out);

// Parses one header slot: magic, version, checksum and every bound that does
// not need the file (sizes, alignment, non-overlapping regions). The
// file-size checks are done by check_header_fits().
Result<Header> parse_header(std::span<const uint8_t> slot);
Result<void> check_header_fits(const Header& h, uint64_t file_size);

// Picks the current header from both slots (the valid one with the larger
// seq); the slot index used is returned in *slot_out.
Result<Header> pick_header(std::span<const uint8_t> slot0, std::span<const uint8_t> slot1,
                           int* slot_out);

// Validates one BAT entry against the header and file size.
Result<void> check_entry(const Header& h, uint64_t file_size, uint64_t index, uint64_t entry);

struct LogRecord {
  uint64_t block;
  uint64_t entry;
};

void encode_log_block(uint64_t epoch, uint32_t index, std::span<const LogRecord> recs,
                      std::span<uint8_t, kLogBlockBytes> out);
// Returns the records of a valid log block for (epoch, index), or an error
// when the block is stale, torn or not written.
Result<void> parse_log_block(std::span<const uint8_t> blk, uint64_t epoch, uint32_t index,
                             std::vector<LogRecord>* out);

uint64_t checksum(std::span<const uint8_t> bytes);

}  // namespace cairn::disk
