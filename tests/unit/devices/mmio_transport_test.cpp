#include <catch2/catch.hpp>

#include <array>

#include "devices/bus.hpp"
#include "devices/virtio/mmio_transport.hpp"
#include "devices/virtio/mmio_transport_state_json.hpp"
#include "test_support.hpp"

using namespace cairn;
using cairn::test::RecordingLine;

namespace {
constexpr uint64_t kFeatureX = 1ULL << 3;

// A two-queue device that records what the transport asks of it.
class RecordingDevice : public VirtioDevice {
 public:
  std::string_view name() const override { return "recording"; }
  uint32_t device_type() const override { return 42; }
  uint64_t device_features() const override { return kVirtioFVersion1 | kFeatureX | kVirtioFEventIdx; }
  std::vector<uint16_t> queue_max_sizes() const override { return {16, 8}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < cfg.size() ? cfg[offset + i] : 0;
  }
  void write_config(uint64_t offset, std::span<const uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i)
      if (offset + i < cfg.size()) cfg[offset + i] = data[i];
  }
  Result<void> activate(GuestMemory&, std::span<Virtqueue> queues, uint64_t acked, VirtioInterrupt& irq) override {
    if (refuse) return fail(Errc::invalid_state, "refusing");
    ++activations;
    acked_features = acked;
    queue_count = queues.size();
    event_idx_queue = queues[0].config().size;
    interrupt = &irq;
    return {};
  }
  void notify(uint16_t index) override { notified.push_back(index); }
  void reset() override { ++resets; }

  std::array<uint8_t, 8> cfg{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
  bool refuse = false;
  int activations = 0, resets = 0;
  uint64_t acked_features = 0;
  size_t queue_count = 0;
  uint16_t event_idx_queue = 0;
  VirtioInterrupt* interrupt = nullptr;
  std::vector<uint16_t> notified;
};

struct Rig {
  GuestMemory mem = cairn::test::TestRing::make(0, 1 << 20);
  std::shared_ptr<RecordingDevice> dev = std::make_shared<RecordingDevice>();
  std::shared_ptr<RecordingLine> line = std::make_shared<RecordingLine>();
  std::unique_ptr<MmioTransport> t = std::make_unique<MmioTransport>(mem, dev, line);

  uint32_t rd(uint64_t off) {
    uint32_t v = 0;
    t->read(off, std::span(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
  }
  void wr(uint64_t off, uint32_t v) { t->write(off, std::span(reinterpret_cast<const uint8_t*>(&v), 4)); }
  void setup_queue(uint32_t index, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used) {
    wr(0x030, index);
    wr(0x038, size);
    wr(0x080, static_cast<uint32_t>(desc));
    wr(0x084, static_cast<uint32_t>(desc >> 32));
    wr(0x090, static_cast<uint32_t>(avail));
    wr(0x094, static_cast<uint32_t>(avail >> 32));
    wr(0x0a0, static_cast<uint32_t>(used));
    wr(0x0a4, static_cast<uint32_t>(used >> 32));
    wr(0x044, 1);
  }
  // The driver's side of initialization up to FEATURES_OK (section 3.1.1).
  void negotiate(uint64_t features) {
    wr(0x070, 0);
    wr(0x070, kStatusAcknowledge);
    wr(0x070, kStatusAcknowledge | kStatusDriver);
    wr(0x024, 0);
    wr(0x020, static_cast<uint32_t>(features));
    wr(0x024, 1);
    wr(0x020, static_cast<uint32_t>(features >> 32));
    wr(0x070, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  }
};
constexpr uint32_t kUpToFeaturesOk = kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk;
}  // namespace

TEST_CASE("virtio-mmio identifies itself") {
  Rig r;
  CHECK(r.rd(0x000) == 0x74726976);
  CHECK(r.rd(0x004) == 2);
  CHECK(r.rd(0x008) == 42);
  CHECK(r.rd(0x00c) == kVirtioMmioVendor);
  r.wr(0x014, 0);
  CHECK(r.rd(0x010) == static_cast<uint32_t>(kFeatureX | kVirtioFEventIdx));
  r.wr(0x014, 1);
  CHECK(r.rd(0x010) == 1);  // VERSION_1 is bit 32
  r.wr(0x014, 2);
  CHECK(r.rd(0x010) == 0);
  r.wr(0x030, 1);
  CHECK(r.rd(0x034) == 8);
  r.wr(0x030, 2);
  CHECK(r.rd(0x034) == 0);  // no such queue
  // Unaligned or narrow register accesses read as zero.
  uint16_t half = 0xffff;
  r.t->read(0x000, std::span(reinterpret_cast<uint8_t*>(&half), 2));
  CHECK(half == 0);
}

TEST_CASE("virtio-mmio feature negotiation") {
  Rig r;
  SECTION("accepted") {
    r.negotiate(kVirtioFVersion1 | kFeatureX);
    CHECK(r.rd(0x070) == kUpToFeaturesOk);
  }
  SECTION("driver without VERSION_1 is refused") {
    r.negotiate(kFeatureX);
    CHECK((r.rd(0x070) & kStatusFeaturesOk) == 0);
  }
  SECTION("driver accepting an unoffered feature is refused") {
    r.negotiate(kVirtioFVersion1 | (1ULL << 7));
    CHECK((r.rd(0x070) & kStatusFeaturesOk) == 0);
  }
  SECTION("features are frozen after FEATURES_OK") {
    r.negotiate(kVirtioFVersion1);
    r.wr(0x024, 0);
    r.wr(0x020, static_cast<uint32_t>(kFeatureX));
    r.setup_queue(0, 16, 0x1000, 0x2000, 0x3000);
    r.wr(0x070, kUpToFeaturesOk | kStatusDriverOk);
    REQUIRE(r.dev->activations == 1);
    CHECK(r.dev->acked_features == kVirtioFVersion1);
  }
}

TEST_CASE("virtio-mmio activates on DRIVER_OK and forwards notifications and config") {
  Rig r;
  r.negotiate(kVirtioFVersion1 | kVirtioFEventIdx);
  r.setup_queue(0, 8, 0x1000, 0x2000, 0x3000);
  // Queue 1 left unused (not ready): allowed.
  r.wr(0x030, 0);
  CHECK(r.rd(0x044) == 1);
  r.wr(0x050, 0);  // before DRIVER_OK: not forwarded
  r.wr(0x070, kUpToFeaturesOk | kStatusDriverOk);
  REQUIRE(r.dev->activations == 1);
  CHECK(r.dev->queue_count == 2);
  CHECK(r.dev->event_idx_queue == 8);
  CHECK(r.rd(0x070) == (kUpToFeaturesOk | kStatusDriverOk));
  auto st = r.t->save();
  CHECK(st.queues[0].config.desc_table == 0x1000);
  CHECK(st.queues[0].config.size == 8);

  r.wr(0x050, 1);
  r.wr(0x050, 0);
  r.wr(0x050, 5);  // no such queue
  CHECK(r.dev->notified == std::vector<uint16_t>{1, 0});

  // Queue layout is frozen once live.
  r.wr(0x030, 0);
  r.wr(0x080, 0x5000);
  CHECK(r.t->save().queues[0].config.desc_table == 0x1000);

  // Config space in any width.
  uint8_t b = 0;
  r.t->read(0x102, std::span(&b, 1));
  CHECK(b == 0x33);
  CHECK(r.rd(0x104) == 0x88776655);
  uint16_t w = 0xbeef;
  r.t->write(0x100, std::span(reinterpret_cast<uint8_t*>(&w), 2));
  CHECK(r.dev->cfg[0] == 0xef);
  CHECK(r.dev->cfg[1] == 0xbe);

  // Interrupts from the device: status bits, a trigger each, ACK clears.
  REQUIRE(r.dev->interrupt);
  r.dev->interrupt->signal_used_queue();
  CHECK(r.rd(0x060) == kInterruptUsedBuffer);
  CHECK(r.line->triggers == 1);
  uint32_t gen = r.rd(0x0fc);
  r.dev->interrupt->signal_config_change();
  CHECK(r.rd(0x060) == (kInterruptUsedBuffer | kInterruptConfigChange));
  CHECK(r.rd(0x0fc) == gen + 1);
  r.wr(0x064, kInterruptUsedBuffer);
  CHECK(r.rd(0x060) == kInterruptConfigChange);
}

TEST_CASE("virtio-mmio reset clears everything and resets the device") {
  Rig r;
  r.negotiate(kVirtioFVersion1);
  r.setup_queue(0, 16, 0x1000, 0x2000, 0x3000);
  r.wr(0x070, kUpToFeaturesOk | kStatusDriverOk);
  REQUIRE(r.dev->activations == 1);
  r.dev->interrupt->signal_used_queue();
  r.wr(0x070, 0);
  CHECK(r.dev->resets == 1);
  CHECK(r.rd(0x070) == 0);
  CHECK(r.rd(0x060) == 0);
  r.wr(0x030, 0);
  CHECK(r.rd(0x044) == 0);
  auto st = r.t->save();
  CHECK(st.acked_features == 0);
  CHECK(st.queues[0].config.desc_table == 0);
  CHECK(st.queues[0].config.size == 16);
  r.wr(0x050, 0);
  CHECK(r.dev->notified.empty());
}

TEST_CASE("virtio-mmio status rules") {
  Rig r;
  SECTION("DRIVER_OK without FEATURES_OK is ignored") {
    r.wr(0x070, kStatusAcknowledge | kStatusDriver);
    r.wr(0x070, kStatusAcknowledge | kStatusDriver | kStatusDriverOk);
    CHECK(r.rd(0x070) == (kStatusAcknowledge | kStatusDriver));
    CHECK(r.dev->activations == 0);
  }
  SECTION("queues cannot be set up before FEATURES_OK") {
    r.wr(0x070, kStatusAcknowledge | kStatusDriver);
    r.setup_queue(0, 16, 0x1000, 0x2000, 0x3000);
    CHECK(r.rd(0x044) == 0);
  }
  SECTION("a bad queue sets DEVICE_NEEDS_RESET and signals a config change") {
    r.negotiate(kVirtioFVersion1);
    r.setup_queue(0, 16, 0x1000, 0x2000, (1 << 20) - 8);  // used ring outside memory
    r.wr(0x070, kUpToFeaturesOk | kStatusDriverOk);
    CHECK(r.dev->activations == 0);
    CHECK((r.rd(0x070) & kStatusNeedsReset) != 0);
    CHECK((r.rd(0x060) & kInterruptConfigChange) != 0);
    CHECK(r.line->triggers == 1);
    CHECK(r.t->last_error().find("queue 0") != std::string::npos);
    r.wr(0x050, 0);
    CHECK(r.dev->notified.empty());
  }
  SECTION("a device that refuses activation needs reset") {
    r.dev->refuse = true;
    r.negotiate(kVirtioFVersion1);
    r.setup_queue(0, 16, 0x1000, 0x2000, 0x3000);
    r.wr(0x070, kUpToFeaturesOk | kStatusDriverOk);
    CHECK((r.rd(0x070) & kStatusNeedsReset) != 0);
    CHECK(r.t->last_error() == "refusing");
  }
}

TEST_CASE("virtio-mmio state round-trips and reactivates a live device") {
  Rig r;
  r.negotiate(kVirtioFVersion1 | kFeatureX);
  r.setup_queue(0, 16, 0x1000, 0x2000, 0x3000);
  r.wr(0x070, kUpToFeaturesOk | kStatusDriverOk);
  r.dev->interrupt->signal_used_queue();
  auto st = r.t->save();
  nlohmann::json j = st;
  CHECK(j.get<MmioTransportState>() == st);
  CHECK(j["queues"][0]["desc_table"] == 0x1000);

  auto dev2 = std::make_shared<RecordingDevice>();
  int triggers = r.line->triggers;
  auto t2 = MmioTransport::restore(st, r.mem, dev2, r.line);
  REQUIRE(t2);
  CHECK(r.line->triggers == triggers + 1);  // the pending interrupt is re-announced
  CHECK(dev2->activations == 1);
  CHECK(dev2->acked_features == (kVirtioFVersion1 | kFeatureX));
  CHECK((*t2)->save() == st);
  CHECK((*t2)->interrupt_status() == kInterruptUsedBuffer);

  st.queues.pop_back();
  auto bad = MmioTransport::restore(st, r.mem, std::make_shared<RecordingDevice>(), r.line);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == Errc::corrupt);
}

TEST_CASE("virtio-mmio sits on a bus and formats its kernel command line") {
  Rig r;
  Bus mmio;
  REQUIRE(mmio.insert(0xd0000000, kVirtioMmioSize, std::shared_ptr<MmioTransport>(std::move(r.t))));
  uint32_t magic = 0;
  REQUIRE(mmio.read(0xd0000000, std::span(reinterpret_cast<uint8_t*>(&magic), 4)));
  CHECK(magic == kVirtioMmioMagic);
  CHECK(virtio_mmio_cmdline(0x1000, 0xd0000000, 5) == "virtio_mmio.device=4K@0xd0000000:5");
  CHECK(virtio_mmio_cmdline(0x200000, 0xd0001000, 12) == "virtio_mmio.device=2M@0xd0001000:12");
  CHECK(virtio_mmio_cmdline(0x300, 0x1000, 1) == "virtio_mmio.device=768@0x1000:1");
}
