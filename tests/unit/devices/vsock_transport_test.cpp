// virtio-vsock behind the real virtio-mmio transport: register-level driver
// setup, traffic, and a checkpoint (pause, save, fresh objects, restore).
#include <catch2/catch.hpp>

#include "devices/virtio/mmio_transport.hpp"
#include "tests/unit/devices/vsock_test_driver.hpp"

using namespace cairn;
using namespace cairn::test;

namespace {

void w32(MmioTransport& t, uint64_t off, uint32_t v) {
  std::array<uint8_t, 4> b{};
  std::memcpy(b.data(), &v, 4);
  t.write(off, b);
}

uint32_t r32(MmioTransport& t, uint64_t off) {
  std::array<uint8_t, 4> b{};
  t.read(off, b);
  uint32_t v;
  std::memcpy(&v, b.data(), 4);
  return v;
}

// What a virtio-mmio driver does at probe: features, three queues, DRIVER_OK.
void bring_up(MmioTransport& t, VsockDriver& drv) {
  w32(t, 0x070, kStatusAcknowledge);
  w32(t, 0x070, kStatusAcknowledge | kStatusDriver);
  w32(t, 0x024, 1);
  w32(t, 0x020, 1);  // VERSION_1 (feature bit 32)
  w32(t, 0x070, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  REQUIRE((r32(t, 0x070) & kStatusFeaturesOk));
  for (uint32_t q = 0; q < 3; ++q) {
    auto& c = drv.queues[q].config();
    w32(t, 0x030, q);
    REQUIRE(r32(t, 0x034) >= VsockDriver::kSize);
    w32(t, 0x038, VsockDriver::kSize);
    w32(t, 0x080, static_cast<uint32_t>(c.desc_table));
    w32(t, 0x090, static_cast<uint32_t>(c.avail_ring));
    w32(t, 0x0a0, static_cast<uint32_t>(c.used_ring));
    w32(t, 0x044, 1);
  }
  w32(t, 0x070, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  REQUIRE((r32(t, 0x070) & kStatusDriverOk));
}

void expect_rst_for(VsockDriver& drv, uint32_t port) {
  auto p = drv.recv();
  REQUIRE(p);
  CHECK(p->hdr.operation() == VsockOp::rst);
  CHECK(p->hdr.src_port == port);
}

}  // namespace

TEST_CASE("vsock behind virtio-mmio: bring-up, traffic, checkpoint and restore", "[vsock]") {
  TempDir dir;
  const std::string path = dir.path + "/v.sock";
  VsockDriver drv;
  std::shared_ptr<VsockDevice> dev(std::move(*VsockDevice::create(VsockConfig{5, path})));
  auto t = std::make_unique<MmioTransport>(drv.mem, dev, nullptr);
  CHECK(r32(*t, 0x008) == 19);
  CHECK(r32(*t, 0x100) == 5);  // guest_cid, low half
  CHECK(r32(*t, 0x104) == 0);
  bring_up(*t, drv);

  drv.add_rx_buffer();
  drv.add_rx_buffer();
  w32(*t, 0x050, VsockDevice::kRxQueue);
  auto req = drv.hdr(VsockOp::request, 1234, 99);
  req.src_cid = 5;
  drv.send_raw(req, {});
  w32(*t, 0x050, VsockDevice::kTxQueue);
  expect_rst_for(drv, 99);
  CHECK((t->interrupt_status() & kInterruptUsedBuffer));

  // Checkpoint: quiesce the device, then save both halves.
  dev->pause();
  const MmioTransportState ts = t->save();
  const VsockState ds = dev->save();
  CHECK(ds.guest_cid == 5);
  t.reset();
  dev.reset();

  // The guest's event buffers (Linux posts them at probe).
  drv.add_event_buffer();
  auto restored = VsockDevice::restore(ds, VsockConfig{0, path});
  REQUIRE(restored);
  std::shared_ptr<VsockDevice> dev2(std::move(*restored));
  auto t2 = MmioTransport::restore(ts, drv.mem, dev2, nullptr);
  REQUIRE(t2);
  CHECK((*t2)->save() == ts);

  auto ev = drv.wait_used(VsockDevice::kEventQueue);
  REQUIRE(ev);
  CHECK(ev->second == 4);  // TRANSPORT_RESET delivered

  // The restored device carries on from the saved ring positions.
  req.dst_port = 98;
  drv.send_raw(req, {});
  w32(**t2, 0x050, VsockDevice::kTxQueue);
  expect_rst_for(drv, 98);

  // Driver reset (status 0) stops the device; the transport outlives no queue use.
  w32(**t2, 0x070, 0);
  CHECK(dev2->connection_count() == 0);
}
