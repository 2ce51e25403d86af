#include <vector>

#include <catch2/catch.hpp>

#include "vmm/base/all_zero.hpp"

namespace cairn {

TEST_CASE("all_zero sees a single non-zero byte anywhere, in whole 64-byte groups and in the tail") {
  for (size_t n : {size_t(0), size_t(1), size_t(63), size_t(64), size_t(65), size_t(200), size_t(4096)}) {
    std::vector<uint8_t> b(n, 0);
    CHECK(all_zero(b));
    for (size_t i = 0; i < n; ++i) {
      b[i] = 0x80;
      INFO("size " << n << ", byte " << i);
      CHECK_FALSE(all_zero(b));
      b[i] = 0;
    }
  }
  std::vector<uint8_t> block(65536, 0);
  CHECK(all_zero(block));
  block.back() = 1;
  CHECK_FALSE(all_zero(block));
  CHECK(all_zero(std::span(block).first(65535)));
}

}  // namespace cairn
