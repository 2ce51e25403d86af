// The vsock header's byte layout and the host command line parser.
#include <catch2/catch.hpp>

#include "devices/virtio/vsock_connection.hpp"
#include "devices/virtio/vsock_packet.hpp"
#include "devices/virtio/vsock_unix.hpp"

using namespace cairn;

TEST_CASE("vsock header: little-endian fields at the spec's offsets", "[vsock]") {
  VsockHeader h;
  h.src_cid = 0x0102030405060708;
  h.dst_cid = 2;
  h.src_port = 0x11223344;
  h.dst_port = 52;
  h.len = 0x1000;
  h.type = kVsockTypeStream;
  h.op = static_cast<uint16_t>(VsockOp::rw);
  h.flags = 3;
  h.buf_alloc = 0x40000;
  h.fwd_cnt = 0xaabbccdd;
  auto b = h.encode();
  REQUIRE(b.size() == 44);
  CHECK(b[0] == 0x08);
  CHECK(b[7] == 0x01);
  CHECK(b[8] == 2);
  CHECK(b[16] == 0x44);
  CHECK(b[19] == 0x11);
  CHECK(b[20] == 52);
  CHECK(b[25] == 0x10);
  CHECK(b[28] == 1);
  CHECK(b[30] == 5);
  CHECK(b[32] == 3);
  CHECK(b[38] == 0x04);
  CHECK(b[40] == 0xdd);
  CHECK(b[43] == 0xaa);
  auto d = VsockHeader::decode(b);
  CHECK(d.src_cid == h.src_cid);
  CHECK(d.src_port == h.src_port);
  CHECK(d.len == h.len);
  CHECK(d.operation() == VsockOp::rw);
  CHECK(d.buf_alloc == h.buf_alloc);
  CHECK(d.fwd_cnt == h.fwd_cnt);
}

TEST_CASE("vsock CONNECT line parsing", "[vsock]") {
  CHECK(vsock_parse_connect("CONNECT 52") == 52u);
  CHECK(vsock_parse_connect("CONNECT 4294967295\r") == 4294967295u);
  CHECK(!vsock_parse_connect("CONNECT "));
  CHECK(!vsock_parse_connect("CONNECT 52 "));
  CHECK(!vsock_parse_connect("CONNECT -1"));
  CHECK(!vsock_parse_connect("CONNECT 4294967296"));
  CHECK(!vsock_parse_connect("OPEN 52"));
}

TEST_CASE("vsock peer credit wraps like the spec's u32 counters", "[vsock]") {
  VsockConnection c;
  c.update_peer_credit(1000, 0xffffff00);
  c.tx_cnt = 0xffffff00 + 300;  // wrapped past zero
  CHECK(c.peer_free() == 700);
  c.tx_cnt = 0xffffff00 + 1000;
  CHECK(c.peer_free() == 0);
  c.tx_cnt = 0xffffff00 + 2000;  // a guest reporting nonsense gets nothing
  CHECK(c.peer_free() == 0);
}
