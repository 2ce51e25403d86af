// The checkpoint state container: a small file of typed, checksummed
// sections (vCPU, VM and device state, machine config). Also documented in
// docs/checkpoint-format.md.
//
// All integers are little-endian. Offsets are from the start of the file.
//
// Header (32 bytes, at offset 0)
//   0   8  magic "CAIRNSTA"
//   8   4  version (1)
//   12  4  section_count: 1 .. 4096
//   16  8  file_size: the whole file (header + table + payloads), at most 64 MiB
//   24  8  table_checksum: XXH3_64bits over header bytes [0, 24), then the
//          section table, hashed as one stream
//
// Section table (section_count * 32 bytes, at offset 32), entry i:
//   0   4  type (see SectionType)
//   4   4  instance: the vCPU index for per-vCPU sections, else 0
//   8   8  offset of the payload
//   16  8  length of the payload, at most 16 MiB
//   24  8  checksum: XXH3_64bits of the payload
//
// Payloads follow the table back to back, in table order: payload 0 starts at
// 32 + 32 * section_count and each next one where the previous ends; the last
// ends at file_size. A reader refuses (Errc::corrupt) any file that breaks
// one of these rules.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/base/error.hpp"

namespace cairn::snap {

inline constexpr char kStateMagic[8] = {'C', 'A', 'I', 'R', 'N', 'S', 'T', 'A'};
inline constexpr uint32_t kStateVersion = 1;
inline constexpr uint32_t kStateMaxSections = 4096;
inline constexpr uint64_t kStateMaxSectionBytes = 16ULL << 20;
inline constexpr uint64_t kStateMaxFileBytes = 64ULL << 20;
inline constexpr size_t kStateHeaderSize = 32;
inline constexpr size_t kStateEntrySize = 32;

struct Section {
  uint32_t type = 0;
  uint32_t instance = 0;
  std::vector<uint8_t> payload;
};

// Fails (Errc::invalid_argument) when a bound would be exceeded.
Result<std::vector<uint8_t>> encode_sections(std::span<const Section> sections);
// `what` names the file in messages; every failure is Errc::corrupt.
Result<std::vector<Section>> decode_sections(std::span<const uint8_t> file, const std::string& what);

}  // namespace cairn::snap
