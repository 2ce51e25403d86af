#include "snapshot/state/container.hpp"

#include <xxhash.h>

#include "snapshot/memory/bytes.hpp"

namespace cairn::snap {

namespace {
uint64_t table_checksum(std::span<const uint8_t> file, size_t count) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, file.data(), 24);
  XXH3_64bits_update(st, file.data() + kStateHeaderSize, count * kStateEntrySize);
  uint64_t sum = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return sum;
}
}  // namespace

Result<std::vector<uint8_t>> encode_sections(std::span<const Section> sections) {
  if (sections.empty() || sections.size() > kStateMaxSections)
    return fail(Errc::invalid_argument, "state file: {} sections (1 to {} allowed)", sections.size(),
                kStateMaxSections);
  uint64_t size = kStateHeaderSize + kStateEntrySize * sections.size();
  for (auto& s : sections) {
    if (s.payload.size() > kStateMaxSectionBytes)
      return fail(Errc::invalid_argument, "state file: section {} is {} bytes (at most {})", s.type, s.payload.size(),
                  kStateMaxSectionBytes);
    size += s.payload.size();
  }
  if (size > kStateMaxFileBytes)
    return fail(Errc::invalid_argument, "state file would be {} bytes (at most {})", size, kStateMaxFileBytes);
  std::vector<uint8_t> out(size, 0);
  std::memcpy(out.data(), kStateMagic, sizeof(kStateMagic));
  put_u32(out, 8, kStateVersion);
  put_u32(out, 12, static_cast<uint32_t>(sections.size()));
  put_u64(out, 16, size);
  uint64_t off = kStateHeaderSize + kStateEntrySize * sections.size();
  for (size_t i = 0; i < sections.size(); ++i) {
    const Section& s = sections[i];
    size_t e = kStateHeaderSize + i * kStateEntrySize;
    put_u32(out, e, s.type);
    put_u32(out, e + 4, s.instance);
    put_u64(out, e + 8, off);
    put_u64(out, e + 16, s.payload.size());
    put_u64(out, e + 24, XXH3_64bits(s.payload.data(), s.payload.size()));
    // An empty payload's data() may be null, and memcpy from null is UB even for 0 bytes.
    if (!s.payload.empty()) std::memcpy(out.data() + off, s.payload.data(), s.payload.size());
    off += s.payload.size();
  }
  put_u64(out, 24, table_checksum(out, sections.size()));
  return out;
}

Result<std::vector<Section>> decode_sections(std::span<const uint8_t> file, const std::string& what) {
  auto bad = [&](std::string why) { return fail(Errc::corrupt, "state file {}: {}", what, why); };
  if (file.size() < kStateHeaderSize) return bad(fmt::format("only {} bytes, shorter than its header", file.size()));
  if (std::memcmp(file.data(), kStateMagic, sizeof(kStateMagic)) != 0) return bad("not a cairn state file (bad magic)");
  uint32_t version = get_u32(file, 8);
  if (version != kStateVersion)
    return bad(fmt::format("format version {} (this cairn reads {})", version, kStateVersion));
  uint32_t count = get_u32(file, 12);
  if (count == 0 || count > kStateMaxSections) return bad(fmt::format("{} sections", count));
  uint64_t size = get_u64(file, 16);
  if (size != file.size())
    return bad(fmt::format("header says {} bytes, the file has {} (truncated or extended)", size, file.size()));
  if (size > kStateMaxFileBytes) return bad("larger than a state file may be");
  uint64_t off = kStateHeaderSize + uint64_t{kStateEntrySize} * count;
  if (off > size) return bad("section table does not fit the file");
  if (table_checksum(file, count) != get_u64(file, 24)) return bad("header or section table checksum mismatch");
  std::vector<Section> out;
  out.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    size_t e = kStateHeaderSize + i * kStateEntrySize;
    Section s;
    s.type = get_u32(file, e);
    s.instance = get_u32(file, e + 4);
    uint64_t at = get_u64(file, e + 8), len = get_u64(file, e + 16);
    if (at != off || len > kStateMaxSectionBytes || len > size - off)
      return bad(fmt::format("section {} (type {}) at {}+{} is out of place", i, s.type, at, len));
    auto payload = file.subspan(at, len);
    if (XXH3_64bits(payload.data(), payload.size()) != get_u64(file, e + 24))
      return bad(fmt::format("section {} (type {}) checksum mismatch", i, s.type));
    s.payload.assign(payload.begin(), payload.end());
    off += len;
    out.push_back(std::move(s));
  }
  if (off != size) return bad("bytes after the last section");
  return out;
}

}  // namespace cairn::snap
