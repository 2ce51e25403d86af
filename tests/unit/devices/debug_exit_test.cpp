#include <catch2/catch.hpp>

#include "devices/debug_exit.hpp"

using namespace cairn;

TEST_CASE("debug exit records the guest's status byte and reports it") {
  std::vector<int> seen;
  DebugExit dev([&](int s) { seen.push_back(s); });
  CHECK_FALSE(dev.exit_status());
  uint8_t v = 42;
  dev.write(0, std::span(&v, 1));
  REQUIRE(dev.exit_status());
  CHECK(*dev.exit_status() == 42);
  CHECK(seen == std::vector<int>{42});
  uint16_t wide = 0x0103;  // outw: only the low byte counts
  dev.write(0, std::span(reinterpret_cast<uint8_t*>(&wide), 2));
  CHECK(*dev.exit_status() == 3);
  uint8_t r = 0xff;
  dev.read(0, std::span(&r, 1));
  CHECK(r == 0);
}
