// virtio-vsock flow control: the device never sends more than the guest's
// window, and keeps the guest informed of its own.
#include <catch2/catch.hpp>

#include "tests/unit/devices/vsock_test_driver.hpp"

using namespace cairn;
using namespace cairn::test;

namespace {

constexpr uint32_t kPort = 42000;

struct Connected : VsockFixture {
  UniqueFd listener = unix_listen(path + "_52");
  UniqueFd host;
  explicit Connected(uint32_t guest_window) {
    REQUIRE(dev);
    drv.buf_alloc = guest_window;
    add_rx(32, 512);
    send(drv.hdr(VsockOp::request, kPort, 52));
    auto resp = drv.recv();
    REQUIRE(resp);
    REQUIRE(resp->hdr.operation() == VsockOp::response);
    host = accept_within(listener.get());
    REQUIRE(host);
  }
  // Collects RW payload until `n` bytes arrived; other packets are returned in `other`.
  std::string collect(size_t n, std::vector<RxPacket>* other = nullptr) {
    std::string got;
    while (got.size() < n) {
      auto p = drv.recv();
      if (!p) break;
      if (p->hdr.operation() == VsockOp::rw) {
        CHECK(p->payload.size() <= 512);  // never more than the buffer holds
        got += p->payload;
      } else if (other) {
        other->push_back(*p);
      }
    }
    return got;
  }
};

std::string pattern(size_t n) {
  std::string s(n, 0);
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

}  // namespace

TEST_CASE("vsock: the device respects the guest's window", "[vsock]") {
  Connected f(1000);
  std::string data = pattern(3000);
  write_all(f.host.get(), data);

  std::string got = f.collect(1000);
  CHECK(got == data.substr(0, 1000));
  // Out of credit: the device asks for an update and sends nothing more.
  auto req = f.drv.recv();
  REQUIRE(req);
  CHECK(req->hdr.operation() == VsockOp::credit_request);
  CHECK(!f.drv.recv(std::chrono::milliseconds(150)));

  // The guest consumed 600 bytes: exactly 600 more may come.
  f.drv.fwd_cnt = 600;
  f.send(f.drv.hdr(VsockOp::credit_update, kPort, 52));
  CHECK(f.collect(600) == data.substr(1000, 600));
  auto req2 = f.drv.recv();
  REQUIRE(req2);
  CHECK(req2->hdr.operation() == VsockOp::credit_request);

  // A bigger window lets the rest through.
  f.drv.buf_alloc = 64 * 1024;
  f.drv.fwd_cnt = 1600;
  f.add_rx(8, 512);
  f.send(f.drv.hdr(VsockOp::credit_update, kPort, 52));
  CHECK(f.collect(1400) == data.substr(1600));
}

TEST_CASE("vsock: the device answers CREDIT_REQUEST with its window", "[vsock]") {
  Connected f(64 * 1024);
  f.send(f.drv.hdr(VsockOp::rw, kPort, 52, 3), "abc");
  CHECK(read_n(f.host.get(), 3) == "abc");
  f.send(f.drv.hdr(VsockOp::credit_request, kPort, 52));
  auto p = f.drv.recv();
  REQUIRE(p);
  CHECK(p->hdr.operation() == VsockOp::credit_update);
  CHECK(p->hdr.buf_alloc == kVsockConnBufAlloc);
  CHECK(p->hdr.fwd_cnt == 3);
}

TEST_CASE("vsock: forwarded bytes produce a CREDIT_UPDATE without asking", "[vsock]") {
  Connected f(64 * 1024);
  const std::string chunk = pattern(kVsockMaxPayload);
  f.send(f.drv.hdr(VsockOp::rw, kPort, 52, kVsockMaxPayload), chunk);
  f.send(f.drv.hdr(VsockOp::rw, kPort, 52, kVsockMaxPayload), chunk);
  CHECK(read_n(f.host.get(), 2 * chunk.size()).size() == 2 * chunk.size());
  auto p = f.drv.recv();
  REQUIRE(p);
  CHECK(p->hdr.operation() == VsockOp::credit_update);
  CHECK(p->hdr.fwd_cnt >= kVsockConnBufAlloc / 4);
  CHECK(p->hdr.fwd_cnt <= 2 * kVsockMaxPayload);
}

TEST_CASE("vsock: a guest overrunning the device's window is reset", "[vsock]") {
  Connected f(64 * 1024);
  // The host never reads: once its socket buffer and our window are full,
  // further data breaks the credit rules.
  const std::string chunk = pattern(kVsockMaxPayload);
  std::optional<RxPacket> rst;
  for (int i = 0; i < 48 && !rst; ++i) {
    f.send(f.drv.hdr(VsockOp::rw, kPort, 52, kVsockMaxPayload), chunk);
    rst = f.drv.recv(std::chrono::milliseconds(20));
    if (rst && rst->hdr.operation() != VsockOp::rst) rst.reset();
  }
  REQUIRE(rst);
  CHECK(rst->hdr.src_port == 52);
  CHECK(wait_until([&] { return f.dev->connection_count() == 0; }));
}
