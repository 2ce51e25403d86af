// The operation stream shared by the crash writer and the crash test: both
// derive the same writes from the same seed.
#pragma once
#include <cstdint>
#include <random>

namespace cairn::disk::test {

inline constexpr uint64_t kCrashDiskSize = 2 << 20;
inline constexpr uint32_t kCrashBlockShift = 14;

struct CrashOp {
  bool zero = false;   // write-zeroes instead of data
  uint64_t off = 0, len = 0;
  bool flush = false;  // flush after this op
};

class CrashOps {
 public:
  explicit CrashOps(uint64_t seed) : rng_(seed), seed_(seed) {}
  CrashOp next() {
    CrashOp op;
    op.zero = rng_() % 6 == 0;
    op.off = rng_() % kCrashDiskSize;
    op.len = 1 + rng_() % std::min<uint64_t>(48 << 10, kCrashDiskSize - op.off);
    op.flush = rng_() % 4 == 0;
    return op;
  }
  // Data written by op number `index` at disk byte `pos`: depends on both, so
  // a block served from the wrong place or time is noticed.
  uint8_t fill(uint64_t index, uint64_t pos) const {
    return uint8_t((pos >> 9) * 31 + index * 7 + seed_ * 13 + 1);
  }

 private:
  std::mt19937_64 rng_;
  uint64_t seed_;
};

}  // namespace cairn::disk::test
