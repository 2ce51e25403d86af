// Whether a buffer holds only zero bytes: eight words at a time, so that the
// zero checks on every disk block and memory page copied stay cheap (a byte
// loop cost milliseconds per disk block under emulation), and stopping at
// the first 64 bytes that hold data.
#pragma once
#include <cstdint>
#include <cstring>
#include <span>

namespace cairn {

inline bool all_zero(std::span<const uint8_t> b) {
  const uint8_t* p = b.data();
  size_t n = b.size();
  for (; n >= 64; p += 64, n -= 64) {
    uint64_t w[8];
    std::memcpy(w, p, sizeof(w));
    if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0) return false;
  }
  for (; n > 0; ++p, --n)
    if (*p) return false;
  return true;
}

}  // namespace cairn
