// Little-endian field encoding for cairn's checkpoint files, independent of
// the host's byte order and of struct padding.
#pragma once
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace cairn::snap {

inline void put_le(std::span<uint8_t> out, size_t off, uint64_t v, unsigned bytes) {
  for (unsigned i = 0; i < bytes; ++i) out[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint64_t get_le(std::span<const uint8_t> in, size_t off, unsigned bytes) {
  uint64_t v = 0;
  for (unsigned i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(in[off + i]) << (8 * i);
  return v;
}
inline void put_u16(std::span<uint8_t> o, size_t off, uint16_t v) { put_le(o, off, v, 2); }
inline void put_u32(std::span<uint8_t> o, size_t off, uint32_t v) { put_le(o, off, v, 4); }
inline void put_u64(std::span<uint8_t> o, size_t off, uint64_t v) { put_le(o, off, v, 8); }
inline uint16_t get_u16(std::span<const uint8_t> i, size_t off) { return static_cast<uint16_t>(get_le(i, off, 2)); }
inline uint32_t get_u32(std::span<const uint8_t> i, size_t off) { return static_cast<uint32_t>(get_le(i, off, 4)); }
inline uint64_t get_u64(std::span<const uint8_t> i, size_t off) { return get_le(i, off, 8); }

}  // namespace cairn::snap
