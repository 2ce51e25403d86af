// virtio-vsock against a misbehaving guest: every bad packet is dropped or
// answered with RST, never followed outside the descriptors.
#include <catch2/catch.hpp>

#include "tests/unit/devices/vsock_test_driver.hpp"

using namespace cairn;
using namespace cairn::test;

namespace {

constexpr uint32_t kPort = 41000;

// Expects the next rx packet to be an RST from host port `from` to guest port `to`.
void expect_rst(VsockDriver& drv, uint32_t from, uint32_t to) {
  auto p = drv.recv();
  REQUIRE(p);
  CHECK(p->hdr.operation() == VsockOp::rst);
  CHECK(p->hdr.src_port == from);
  CHECK(p->hdr.dst_port == to);
}

struct Connected : VsockFixture {
  UniqueFd listener = unix_listen(path + "_52");
  UniqueFd host;
  Connected() {
    REQUIRE(dev);
    add_rx(16);
    send(drv.hdr(VsockOp::request, kPort, 52));
    auto resp = drv.recv();
    REQUIRE(resp);
    REQUIRE(resp->hdr.operation() == VsockOp::response);
    host = accept_within(listener.get());
    REQUIRE(host);
  }
};

}  // namespace

TEST_CASE("vsock: packets for unknown connections get RST", "[vsock]") {
  VsockFixture f;
  REQUIRE(f.dev);
  f.add_rx(4);
  f.send(f.drv.hdr(VsockOp::rw, kPort, 77, 3), "abc");
  expect_rst(f.drv, 77, kPort);
  f.send(f.drv.hdr(VsockOp::response, kPort, 78));
  expect_rst(f.drv, 78, kPort);
  // An RST for an unknown connection is not answered: the next reply is for port 79.
  f.send(f.drv.hdr(VsockOp::rst, kPort, 80));
  f.send(f.drv.hdr(VsockOp::credit_update, kPort, 79));
  expect_rst(f.drv, 79, kPort);
}

TEST_CASE("vsock: wrong type, unknown op and wrong CIDs", "[vsock]") {
  VsockFixture f;
  UniqueFd listener = unix_listen(f.path + "_52");
  REQUIRE(f.dev);
  REQUIRE(listener);
  f.add_rx(4);

  auto seqpacket = f.drv.hdr(VsockOp::request, kPort, 52);
  seqpacket.type = 2;
  f.send(seqpacket);
  expect_rst(f.drv, 52, kPort);

  auto bad_op = f.drv.hdr(VsockOp::request, kPort, 52);
  bad_op.op = 42;
  f.send(bad_op);
  expect_rst(f.drv, 52, kPort);

  // Spoofed source and a packet for another CID: dropped without reply.
  auto spoofed = f.drv.hdr(VsockOp::request, kPort, 52);
  spoofed.src_cid = 9;
  f.send(spoofed);
  auto elsewhere = f.drv.hdr(VsockOp::request, kPort, 52);
  elsewhere.dst_cid = 5;
  f.send(elsewhere);
  f.send(f.drv.hdr(VsockOp::request, kPort, 99));  // no listener: RST, and it must come next
  expect_rst(f.drv, 99, kPort);

  CHECK(!readable(listener.get(), std::chrono::milliseconds(50)));  // nobody connected to PATH_52
  CHECK(f.dev->connection_count() == 0);
}

TEST_CASE("vsock: a header shorter than 44 bytes is dropped", "[vsock]") {
  VsockFixture f;
  REQUIRE(f.dev);
  f.add_rx(2);
  auto h = f.drv.hdr(VsockOp::request, kPort, 99).encode();
  uint64_t g = f.drv.alloc(h.size());
  REQUIRE(f.drv.mem.write(g, h));
  f.drv.add_chain(1, {{g, 40, false}});
  f.dev->notify(1);
  auto used = f.drv.wait_used(1);
  REQUIRE(used);
  CHECK(used->second == 0);
  // Only the following, well-formed packet is answered.
  f.send(f.drv.hdr(VsockOp::request, kPort, 98));
  expect_rst(f.drv, 98, kPort);
}

TEST_CASE("vsock: a length beyond the buffers resets the connection", "[vsock]") {
  Connected f;
  auto h = f.drv.hdr(VsockOp::rw, kPort, 52, 1000);  // claims 1000 bytes, carries 10
  f.drv.send_raw(h, "0123456789");
  f.dev->notify(1);
  expect_rst(f.drv, 52, kPort);
  CHECK(sees_eof(f.host.get()));
  CHECK(wait_until([&] { return f.dev->connection_count() == 0; }));
}

TEST_CASE("vsock: a length over 64 KiB resets the connection", "[vsock]") {
  Connected f;
  const uint32_t len = kVsockMaxPayload + 1;
  f.drv.send_raw(f.drv.hdr(VsockOp::rw, kPort, 52, len), std::string(len, 'x'));
  f.dev->notify(1);
  expect_rst(f.drv, 52, kPort);
  CHECK(sees_eof(f.host.get()));
}

TEST_CASE("vsock: a header split over descriptors is reassembled", "[vsock]") {
  Connected f;
  auto h = f.drv.hdr(VsockOp::rw, kPort, 52, 6).encode();
  uint64_t a = f.drv.alloc(10), b = f.drv.alloc(40);
  REQUIRE(f.drv.mem.write(a, std::span(h).first(10)));
  REQUIRE(f.drv.mem.write(b, std::span(h).subspan(10)));
  std::string payload = "split!";
  uint64_t c = f.drv.alloc(payload.size());
  REQUIRE(f.drv.mem.write(c, std::span(reinterpret_cast<const uint8_t*>(payload.data()), payload.size())));
  f.drv.add_chain(1, {{a, 10, false}, {b, 34, false}, {c, 6, false}});
  f.dev->notify(1);
  CHECK(read_n(f.host.get(), 6) == "split!");
}

TEST_CASE("vsock: data on a half-closed connection resets it", "[vsock]") {
  Connected f;
  auto sd = f.drv.hdr(VsockOp::shutdown, kPort, 52);
  sd.flags = kVsockShutdownSend;
  f.send(sd);
  f.send(f.drv.hdr(VsockOp::rw, kPort, 52, 2), "no");
  expect_rst(f.drv, 52, kPort);
}

TEST_CASE("vsock: a descriptor outside guest memory stops the device, nothing else", "[vsock]") {
  VsockFixture f;
  REQUIRE(f.dev);
  f.drv.add_chain(1, {{f.drv.mem.total_size() - 8, 44, false}});
  f.dev->notify(1);
  CHECK(wait_until([&] { return f.dev->broken(); }));
  f.dev->reset();
  CHECK(!f.dev->broken());
}

TEST_CASE("vsock: an rx buffer too small for a header goes back empty", "[vsock]") {
  VsockFixture f;
  REQUIRE(f.dev);
  f.drv.add_chain(0, {{f.drv.alloc(16), 16, true}});
  f.add_rx(1);
  f.send(f.drv.hdr(VsockOp::request, kPort, 99));
  auto small = f.drv.recv();
  REQUIRE(small);
  CHECK(small->used_len == 0);
  expect_rst(f.drv, 99, kPort);
}
