// virtio-vsock end to end without KVM: a hand-driven guest on one side,
// real Unix sockets on the other.
#include <catch2/catch.hpp>

#include "tests/unit/devices/vsock_test_driver.hpp"

using namespace cairn;
using namespace cairn::test;

namespace {

constexpr uint32_t kGuestPort = 40000;

// Guest connects to host port 52, the device connects to PATH_52.
struct GuestToHost : VsockFixture {
  UniqueFd listener = unix_listen(path + "_52");
  UniqueFd host;

  void connect() {
    REQUIRE(dev);
    REQUIRE(listener);
    add_rx(8);
    send(drv.hdr(VsockOp::request, kGuestPort, 52));
    auto resp = drv.recv();
    REQUIRE(resp);
    CHECK(resp->hdr.operation() == VsockOp::response);
    CHECK(resp->hdr.src_cid == kVsockHostCid);
    CHECK(resp->hdr.dst_cid == VsockDriver::kCid);
    CHECK(resp->hdr.src_port == 52);
    CHECK(resp->hdr.dst_port == kGuestPort);
    CHECK(resp->hdr.type == kVsockTypeStream);
    CHECK(resp->hdr.buf_alloc == kVsockConnBufAlloc);
    host = accept_within(listener.get());
    REQUIRE(host);
  }
};

// Host writes CONNECT <port>, the guest accepts.
struct HostToGuest : VsockFixture {
  using VsockFixture::VsockFixture;
  UniqueFd host;
  uint32_t host_port = 0;

  void request(uint32_t guest_port) {
    REQUIRE(dev);
    add_rx(8);
    host = unix_connect(path);
    REQUIRE(host);
    write_all(host.get(), "CONNECT " + std::to_string(guest_port) + "\n");
    auto req = drv.recv();
    REQUIRE(req);
    REQUIRE(req->hdr.operation() == VsockOp::request);
    CHECK(req->hdr.dst_port == guest_port);
    CHECK(req->hdr.dst_cid == VsockDriver::kCid);
    CHECK(req->hdr.src_cid == kVsockHostCid);
    host_port = req->hdr.src_port;
    CHECK(host_port >= 1024);
  }
};

}  // namespace

TEST_CASE("vsock: config space holds the guest CID, little-endian", "[vsock]") {
  VsockFixture f;
  REQUIRE(f.dev);
  CHECK(f.dev->device_type() == 19);
  CHECK((f.dev->device_features() & kVirtioFVersion1));
  CHECK(f.dev->queue_max_sizes().size() == 3);
  std::array<uint8_t, 8> cfg{};
  f.dev->read_config(0, cfg);
  CHECK(cfg == std::array<uint8_t, 8>{3, 0, 0, 0, 0, 0, 0, 0});
  std::array<uint8_t, 4> past{0xff, 0xff, 0xff, 0xff};
  f.dev->read_config(6, past);
  CHECK(past == std::array<uint8_t, 4>{0, 0, 0, 0});
}

TEST_CASE("vsock: reserved CIDs and bad socket paths are refused", "[vsock]") {
  TempDir dir;
  CHECK(!VsockDevice::create(VsockConfig{2, dir.path + "/a"}));
  CHECK(!VsockDevice::create(VsockConfig{0xffffffff, dir.path + "/a"}));
  CHECK(!VsockDevice::create(VsockConfig{3, dir.path + "/missing-dir/a"}));
  CHECK(!VsockDevice::create(VsockConfig{3, std::string(200, 'x')}));
}

TEST_CASE("vsock: guest connects to a host listener and data flows both ways", "[vsock]") {
  GuestToHost f;
  f.connect();

  f.send(f.drv.hdr(VsockOp::rw, kGuestPort, 52, 5), "hello");
  CHECK(read_n(f.host.get(), 5) == "hello");

  write_all(f.host.get(), "world!");
  auto p = f.drv.recv();
  REQUIRE(p);
  CHECK(p->hdr.operation() == VsockOp::rw);
  CHECK(p->hdr.src_port == 52);
  CHECK(p->hdr.dst_port == kGuestPort);
  CHECK(p->payload == "world!");
  CHECK(p->used_len == kVsockHeaderSize + 6);
  CHECK(p->hdr.fwd_cnt == 5);  // the 5 bytes the host took

  SECTION("guest close: host sees EOF, guest gets RST") {
    auto sd = f.drv.hdr(VsockOp::shutdown, kGuestPort, 52);
    sd.flags = kVsockShutdownRcv | kVsockShutdownSend;
    f.send(sd);
    CHECK(sees_eof(f.host.get()));
    auto rst = f.drv.recv();
    REQUIRE(rst);
    CHECK(rst->hdr.operation() == VsockOp::rst);
    CHECK(wait_until([&] { return f.dev->connection_count() == 0; }));
  }
  SECTION("guest half-close: host sees EOF and can still send") {
    auto sd = f.drv.hdr(VsockOp::shutdown, kGuestPort, 52);
    sd.flags = kVsockShutdownSend;
    f.send(sd);
    CHECK(sees_eof(f.host.get()));
    write_all(f.host.get(), "late");
    auto late = f.drv.recv();
    REQUIRE(late);
    CHECK(late->hdr.operation() == VsockOp::rw);
    CHECK(late->payload == "late");
  }
  SECTION("host close: guest gets SHUTDOWN both ways, then its RST ends the connection") {
    f.host.reset();
    auto sd = f.drv.recv();
    REQUIRE(sd);
    CHECK(sd->hdr.operation() == VsockOp::shutdown);
    CHECK(sd->hdr.flags == (kVsockShutdownRcv | kVsockShutdownSend));
    f.send(f.drv.hdr(VsockOp::rst, kGuestPort, 52));
    CHECK(wait_until([&] { return f.dev->connection_count() == 0; }));
  }
  SECTION("guest RST closes the host socket") {
    f.send(f.drv.hdr(VsockOp::rst, kGuestPort, 52));
    CHECK(sees_eof(f.host.get()));
    CHECK(wait_until([&] { return f.dev->connection_count() == 0; }));
  }
  CHECK(f.irq.used > 0);
}

TEST_CASE("vsock: guest connect to a port without listener gets RST", "[vsock]") {
  VsockFixture f;
  REQUIRE(f.dev);
  f.add_rx();
  f.send(f.drv.hdr(VsockOp::request, kGuestPort, 99));
  auto p = f.drv.recv();
  REQUIRE(p);
  CHECK(p->hdr.operation() == VsockOp::rst);
  CHECK(p->hdr.src_port == 99);
  CHECK(p->hdr.dst_port == kGuestPort);
  CHECK(f.dev->connection_count() == 0);
}

TEST_CASE("vsock: host CONNECT, guest RESPONSE, OK line, data both ways", "[vsock]") {
  HostToGuest f;
  f.request(5000);
  // Bytes the host sends before OK wait until the connection is up.
  write_all(f.host.get(), "early");
  f.send(f.drv.hdr(VsockOp::response, 5000, f.host_port));
  std::string ok = "OK " + std::to_string(f.host_port) + "\n";
  CHECK(read_n(f.host.get(), ok.size()) == ok);

  auto early = f.drv.recv();
  REQUIRE(early);
  CHECK(early->hdr.operation() == VsockOp::rw);
  CHECK(early->payload == "early");

  f.send(f.drv.hdr(VsockOp::rw, 5000, f.host_port, 4), "ping");
  CHECK(read_n(f.host.get(), 4) == "ping");
  write_all(f.host.get(), "pong");
  auto p = f.drv.recv();
  REQUIRE(p);
  CHECK(p->payload == "pong");
  CHECK(p->hdr.fwd_cnt == 4);  // "OK ..." is not guest data

  SECTION("a second connection gets another host port") {
    UniqueFd second = unix_connect(f.path);
    REQUIRE(second);
    write_all(second.get(), "CONNECT 5000\n");
    auto req = f.drv.recv();
    REQUIRE(req);
    CHECK(req->hdr.operation() == VsockOp::request);
    CHECK(req->hdr.src_port >= 1024);
    CHECK(req->hdr.src_port != f.host_port);
  }
  SECTION("host closes: data first, then SHUTDOWN") {
    write_all(f.host.get(), "bye");
    f.host.reset();
    auto last = f.drv.recv();
    REQUIRE(last);
    CHECK(last->payload == "bye");
    auto sd = f.drv.recv();
    REQUIRE(sd);
    CHECK(sd->hdr.operation() == VsockOp::shutdown);
  }
}

TEST_CASE("vsock: guest refusing a host connect closes the host socket without OK", "[vsock]") {
  HostToGuest f;
  f.request(6000);
  f.send(f.drv.hdr(VsockOp::rst, 6000, f.host_port));
  CHECK(sees_eof(f.host.get()));
  CHECK(wait_until([&] { return f.dev->connection_count() == 0; }));
}

TEST_CASE("vsock: a guest that never answers times out into RST", "[vsock]") {
  HostToGuest f(VsockTimeouts{std::chrono::milliseconds(100), std::chrono::milliseconds(100)});
  f.request(6001);
  CHECK(sees_eof(f.host.get()));
  auto rst = f.drv.recv();
  REQUIRE(rst);
  CHECK(rst->hdr.operation() == VsockOp::rst);
  CHECK(rst->hdr.src_port == f.host_port);
  CHECK(rst->hdr.dst_port == 6001);
}

TEST_CASE("vsock: bad CONNECT lines are closed", "[vsock]") {
  VsockFixture f;
  REQUIRE(f.dev);
  for (std::string line : std::vector<std::string>{"CONNECT\n", "CONNECT x1\n", "connect 5\n", "CONNECT 99999999999\n",
                           std::string(40, 'A')}) {
    UniqueFd host = unix_connect(f.path);
    REQUIRE(host);
    write_all(host.get(), line);
    CHECK(sees_eof(host.get()));
  }
  CHECK(f.dev->connection_count() == 0);
}

TEST_CASE("vsock: host connects are refused before the driver is live", "[vsock]") {
  TempDir dir;
  auto dev = VsockDevice::create(VsockConfig{3, dir.path + "/v.sock"});
  REQUIRE(dev);
  UniqueFd host = unix_connect(dir.path + "/v.sock");
  REQUIRE(host);
  write_all(host.get(), "CONNECT 5\n");
  CHECK(sees_eof(host.get()));
}

TEST_CASE("vsock: pause stops queue processing until resume", "[vsock]") {
  GuestToHost f;
  REQUIRE(f.dev);
  f.add_rx(2);
  f.dev->pause();
  f.send(f.drv.hdr(VsockOp::request, kGuestPort, 52));
  // Nothing may move while paused (a bounded wait: we expect silence).
  CHECK(!f.drv.wait_used(1, std::chrono::milliseconds(200)));
  f.dev->resume();
  CHECK(f.drv.wait_used(1));
  auto resp = f.drv.recv();
  REQUIRE(resp);
  CHECK(resp->hdr.operation() == VsockOp::response);
}

TEST_CASE("vsock: pause hands back an rx buffer the device was holding", "[vsock]") {
  HostToGuest f;
  f.request(5001);
  // On RESPONSE the device looks for host data: it takes an rx buffer and
  // finds none, so it keeps that buffer for later.
  f.send(f.drv.hdr(VsockOp::response, 5001, f.host_port));
  std::string ok = "OK " + std::to_string(f.host_port) + "\n";
  REQUIRE(read_n(f.host.get(), ok.size()) == ok);
  f.dev->pause();
  auto& rxq = f.drv.queues[VsockDevice::kRxQueue];
  CHECK(rxq.next_avail() == rxq.next_used());  // nothing taken and unreturned
  auto empty = f.drv.recv();
  REQUIRE(empty);
  CHECK(empty->used_len == 0);
  f.dev->resume();
  write_all(f.host.get(), "after");
  auto p = f.drv.recv();
  REQUIRE(p);
  CHECK(p->payload == "after");
}

TEST_CASE("vsock: a restored device announces TRANSPORT_RESET", "[vsock]") {
  TempDir dir;
  VsockDriver drv;
  CountingIrq irq;
  VsockState st{7};
  auto dev = VsockDevice::restore(st, VsockConfig{3, dir.path + "/v.sock"});
  REQUIRE(dev);
  CHECK((*dev)->save() == st);
  std::array<uint8_t, 8> cfg{};
  (*dev)->read_config(0, cfg);
  CHECK(cfg[0] == 7);
  drv.add_event_buffer();
  drv.add_event_buffer();
  REQUIRE((*dev)->activate(drv.mem, drv.queues, kVirtioFVersion1, irq));
  auto ev = drv.wait_used(2);
  REQUIRE(ev);
  CHECK(ev->second == 4);
  CHECK(*drv.mem.read_obj<uint32_t>(0x100000) == kVsockEventTransportReset);
  // Exactly one event: the second buffer stays with the device.
  CHECK(!drv.wait_used(2, std::chrono::milliseconds(100)));
  CHECK(irq.used > 0);
}

TEST_CASE("vsock: reset closes every connection", "[vsock]") {
  GuestToHost f;
  f.connect();
  f.dev->reset();
  CHECK(f.dev->connection_count() == 0);
  CHECK(sees_eof(f.host.get()));
}
