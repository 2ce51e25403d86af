#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "devices/bus.hpp"

using namespace cairn;

namespace {
// Remembers the last access; reads return the low byte of the offset.
class Probe : public BusDevice {
 public:
  explicit Probe(std::string n) : name_(std::move(n)) {}
  std::string_view name() const override { return name_; }
  void read(uint64_t offset, std::span<uint8_t> data) override {
    last_offset = offset;
    for (auto& b : data) b = static_cast<uint8_t>(offset);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    last_offset = offset;
    written.assign(data.begin(), data.end());
  }
  std::string name_;
  uint64_t last_offset = ~0ULL;
  std::vector<uint8_t> written;
};
}  // namespace

TEST_CASE("bus routes accesses to the device holding them, with relative offsets") {
  Bus bus;
  auto a = std::make_shared<Probe>("a");
  auto b = std::make_shared<Probe>("b");
  REQUIRE(bus.insert(0x3f8, 8, a));
  REQUIRE(bus.insert(0x400, 0x100, b));
  CHECK(bus.size() == 2);

  uint8_t byte = 0;
  REQUIRE(bus.read(0x3fd, std::span(&byte, 1)));
  CHECK(a->last_offset == 5);
  CHECK(byte == 5);

  uint8_t word[4] = {1, 2, 3, 4};
  REQUIRE(bus.write(0x410, word));
  CHECK(b->last_offset == 0x10);
  CHECK(b->written == std::vector<uint8_t>{1, 2, 3, 4});

  // Gaps, one past the end, and accesses straddling a device's end are unmapped.
  CHECK_FALSE(bus.read(0x3f7, std::span(&byte, 1)));
  CHECK_FALSE(bus.read(0x400 + 0x100, std::span(&byte, 1)));
  CHECK_FALSE(bus.read(0x3fe, std::span(word, 4)));
  CHECK_FALSE(bus.write(0x3ff, std::span(word, 2)));
  CHECK(a->last_offset == 5);  // untouched by refused accesses

  auto slot = bus.find(0x4ff);
  CHECK(slot.dev == b);
  CHECK(slot.base == 0x400);
  CHECK(bus.find(0x500).dev == nullptr);
}

TEST_CASE("bus rejects overlapping, empty and wrapping ranges") {
  Bus bus;
  auto d = std::make_shared<Probe>("d");
  REQUIRE(bus.insert(0x1000, 0x100, d));
  CHECK_FALSE(bus.insert(0x1000, 0x100, d));   // same range
  CHECK_FALSE(bus.insert(0x10ff, 1, d));       // last byte
  CHECK_FALSE(bus.insert(0xf00, 0x101, d));    // runs into it from below
  CHECK_FALSE(bus.insert(0x800, 0x1000, d));   // covers it
  CHECK_FALSE(bus.insert(0x1050, 0x10, d));    // inside it
  CHECK_FALSE(bus.insert(0x2000, 0, d));       // empty
  CHECK_FALSE(bus.insert(UINT64_MAX - 4, 6, d));  // wraps
  CHECK_FALSE(bus.insert(0x3000, 1, nullptr));
  auto e = bus.insert(0x1080, 0x10, d);
  REQUIRE_FALSE(e);
  CHECK(e.error().code == Errc::invalid_argument);
  CHECK(e.error().message.find("overlaps") != std::string::npos);

  // Neighbours that just touch are fine, as is the very top of the space.
  CHECK(bus.insert(0xf00, 0x100, d));
  CHECK(bus.insert(0x1100, 0x100, d));
  CHECK(bus.insert(UINT64_MAX - 4, 5, d));
  uint8_t b = 0;
  CHECK(bus.read(UINT64_MAX, std::span(&b, 1)));
  CHECK(bus.size() == 4);
}

TEST_CASE("bus dispatch is safe from several threads") {
  Bus bus;
  std::vector<std::shared_ptr<Probe>> devs;
  for (int i = 0; i < 4; ++i) {
    devs.push_back(std::make_shared<Probe>("p"));
    REQUIRE(bus.insert(0x100 * i, 0x100, devs.back()));
  }
  std::vector<std::thread> threads;
  std::atomic<int> misses{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        uint8_t b;
        // Each thread uses its own device so that the probes need no locks.
        if (!bus.read(0x100 * t + (i & 0xff), std::span(&b, 1)) || b != (i & 0xff)) ++misses;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(misses == 0);
}
