#include <catch2/catch.hpp>

#include "devices/bus.hpp"
#include "devices/i8042.hpp"

using namespace cairn;

TEST_CASE("i8042 pulses reset on command 0xFE and otherwise stays quiet") {
  int resets = 0;
  auto dev = std::make_shared<I8042>([&] { ++resets; });
  Bus pio;
  REQUIRE(pio.insert(I8042::kBasePort, I8042::kLength, dev));

  uint8_t v = 0xff;
  REQUIRE(pio.read(0x64, std::span(&v, 1)));
  CHECK((v & I8042::kStatusOutputFull) == 0);
  REQUIRE(pio.read(0x60, std::span(&v, 1)));
  CHECK(v == 0);

  uint8_t cmd = 0xfe;
  REQUIRE(pio.write(0x64, std::span(&cmd, 1)));
  CHECK(resets == 1);
  CHECK(dev->reset_count() == 1);
  // A 0xFE on the data port is not a command.
  REQUIRE(pio.write(0x60, std::span(&cmd, 1)));
  CHECK(resets == 1);
}

TEST_CASE("i8042 answers self-test and keeps its configuration byte") {
  I8042 dev(nullptr);
  auto out = [&](uint64_t off, uint8_t b) { dev.write(off, std::span(&b, 1)); };
  auto in = [&](uint64_t off) {
    uint8_t b = 0;
    dev.read(off, std::span(&b, 1));
    return b;
  };
  out(4, I8042::kCmdSelfTest);
  CHECK((in(4) & I8042::kStatusOutputFull) != 0);
  CHECK(in(0) == 0x55);
  CHECK((in(4) & I8042::kStatusOutputFull) == 0);
  out(4, I8042::kCmdWriteCtr);
  out(0, 0x47);
  out(4, I8042::kCmdReadCtr);
  CHECK(in(0) == 0x47);
  out(4, I8042::kCmdPulseReset);  // no callback: nothing happens, nothing breaks
  CHECK(dev.reset_count() == 1);
}
