#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "devices/serial8250.hpp"
#include "devices/serial8250_state_json.hpp"
#include "test_support.hpp"

using namespace cairn;
using cairn::test::RecordingLine;

namespace {
constexpr uint64_t THR = 0, IER = 1, IIR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

struct Uart {
  std::shared_ptr<RecordingLine> line = std::make_shared<RecordingLine>();
  std::vector<uint8_t> out;
  Serial8250 dev{line, [this](std::span<const uint8_t> b) { out.insert(out.end(), b.begin(), b.end()); }};
  uint8_t in(uint64_t reg) {
    uint8_t v = 0;
    dev.read(reg, std::span(&v, 1));
    return v;
  }
  void put(uint64_t reg, uint8_t v) { dev.write(reg, std::span(&v, 1)); }
};
}  // namespace

TEST_CASE("8250 transmits to the sink and reports an empty transmitter") {
  Uart u;
  CHECK(u.in(LSR) == 0x60);  // THRE | TEMT, no data
  CHECK(u.in(IIR) == 0x01);  // no interrupt, FIFOs off
  u.put(THR, 'h');
  u.put(THR, 'i');
  CHECK(u.out == std::vector<uint8_t>{'h', 'i'});
  CHECK(u.in(LSR) == 0x60);
  CHECK(u.line->levels.empty());  // interrupts disabled: the line never moved
}

TEST_CASE("8250 divisor latch is reached through DLAB") {
  Uart u;
  u.put(LCR, 0x80 | 0x03);
  u.put(THR, 0x01);  // DLL
  u.put(IER, 0x02);  // DLM
  CHECK(u.in(THR) == 0x01);
  CHECK(u.in(IER) == 0x02);
  CHECK(u.out.empty());  // a DLL write is not a transmitted byte
  u.put(LCR, 0x03);
  CHECK(u.in(IER) == 0x00);  // IER itself untouched
  u.put(IER, 0xff);
  CHECK(u.in(IER) == 0x0f);  // reserved bits read as zero (Linux checks this)
  u.put(LCR, 0x83);
  CHECK(u.in(THR) == 0x01);
  CHECK(u.in(IER) == 0x02);
  CHECK(u.in(LCR) == 0x83);
  u.put(SCR, 0xa5);
  CHECK(u.in(SCR) == 0xa5);
}

TEST_CASE("8250 THR-empty interrupt is raised on enable and cleared by reading IIR") {
  Uart u;
  u.put(IER, 0x02);
  CHECK(u.line->level);
  CHECK(u.in(IIR) == 0x02);  // THRI reported once...
  CHECK_FALSE(u.line->level);
  CHECK(u.in(IIR) == 0x01);  // ...and acknowledged by that read

  // Each transmitted byte makes the transmitter empty again: a fresh edge.
  u.line->levels.clear();
  u.put(THR, 'x');
  CHECK(u.line->level);
  CHECK(u.line->levels == std::vector<bool>{true});
  u.line->levels.clear();
  u.put(THR, 'y');  // pending THRI is dropped then raised again
  CHECK(u.line->levels == std::vector<bool>{false, true});

  // Disabling THRI drops the line; re-enabling raises it again.
  u.put(IER, 0x00);
  CHECK_FALSE(u.line->level);
  u.put(IER, 0x02);
  CHECK(u.line->level);
  CHECK(u.in(IIR) == 0x02);
  CHECK_FALSE(u.line->level);
}

TEST_CASE("8250 FIFO control and the 16550A signature") {
  Uart u;
  u.put(IIR, 0x01);  // FCR: enable FIFOs
  CHECK((u.in(IIR) & 0xc0) == 0xc0);
  REQUIRE(u.dev.enqueue_input(std::vector<uint8_t>{1, 2, 3}) == 3);
  u.put(IIR, 0x03);  // clear receive FIFO
  CHECK((u.in(LSR) & 0x01) == 0);
  CHECK(u.dev.input_space() == Serial8250::kRxFifoCapacity);
}

TEST_CASE("8250 received data raises the receive interrupt until drained") {
  Uart u;
  u.put(IER, 0x01);
  CHECK_FALSE(u.line->level);
  REQUIRE(u.dev.enqueue_input(std::vector<uint8_t>{'a', 'b'}) == 2);
  CHECK(u.line->level);
  CHECK(u.in(IIR) == 0x04);
  CHECK((u.in(LSR) & 0x01) == 0x01);
  CHECK(u.in(THR) == 'a');
  CHECK(u.line->level);
  CHECK(u.in(THR) == 'b');
  CHECK_FALSE(u.line->level);
  CHECK((u.in(LSR) & 0x01) == 0);
  CHECK(u.in(IIR) == 0x01);

  // The FIFO is bounded; a full FIFO accepts nothing more.
  std::vector<uint8_t> many(200, 'z');
  CHECK(u.dev.enqueue_input(many) == Serial8250::kRxFifoCapacity);
  CHECK(u.dev.input_space() == 0);
  CHECK(u.dev.enqueue_input(many) == 0);
}

TEST_CASE("8250 receive interrupt outranks THR-empty") {
  Uart u;
  u.put(IER, 0x03);
  REQUIRE(u.dev.enqueue_input(std::vector<uint8_t>{'q'}) == 1);
  CHECK(u.in(IIR) == 0x04);
  CHECK(u.in(THR) == 'q');
  CHECK(u.in(IIR) == 0x02);
  CHECK(u.in(IIR) == 0x01);
}

TEST_CASE("8250 loopback echoes transmitted bytes and maps modem lines") {
  Uart u;
  CHECK(u.in(MSR) == 0xb0);
  u.put(MCR, 0x10 | 0x0a);  // LOOP | RTS | OUT2, as Linux's probe does
  CHECK((u.in(MSR) & 0xf0) == 0x90);
  u.put(THR, 0x5a);
  CHECK(u.out.empty());
  CHECK((u.in(LSR) & 0x01) == 0x01);
  CHECK(u.in(THR) == 0x5a);

  // Overrun: the 65th byte is lost and LSR reports it once.
  for (int i = 0; i < 65; ++i) u.put(THR, static_cast<uint8_t>(i));
  CHECK((u.in(LSR) & 0x02) == 0x02);
  CHECK((u.in(LSR) & 0x02) == 0);

  // Modem status deltas, with the modem status interrupt.
  u.put(IER, 0x08);
  u.put(MCR, 0x10 | 0x01);  // DTR only: DSR rises, CTS and DCD fall
  CHECK(u.line->level);
  uint8_t msr = u.in(MSR);
  CHECK((msr & 0xf0) == 0x20);
  CHECK((msr & 0x0b) == 0x0b);  // DCTS, DDSR, DDCD
  CHECK_FALSE(u.line->level);
  CHECK((u.in(MSR) & 0x0f) == 0);

  u.put(MCR, 0x08);
  u.put(THR, '!');
  CHECK(u.out == std::vector<uint8_t>{'!'});
}

TEST_CASE("8250 fd sink writes guest output to a file descriptor") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  Serial8250 dev(nullptr, Serial8250::fd_sink(fds[1]));
  for (uint8_t c : std::string("ok\n")) dev.write(0, std::span(&c, 1));
  char buf[8] = {};
  CHECK(::read(fds[0], buf, sizeof buf) == 3);
  CHECK(std::string(buf) == "ok\n");
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_CASE("8250 state survives save, JSON and restore") {
  Uart u;
  u.put(LCR, 0x83);
  u.put(THR, 0x03);
  u.put(LCR, 0x03);
  u.put(IER, 0x01);
  u.put(SCR, 0x42);
  REQUIRE(u.dev.enqueue_input(std::vector<uint8_t>{'x', 'y'}) == 2);
  auto st = u.dev.save();
  CHECK(st.rx_fifo == std::vector<uint8_t>{'x', 'y'});

  nlohmann::json j = st;
  auto back = j.get<Serial8250State>();
  CHECK(back == st);

  auto line = std::make_shared<RecordingLine>();
  auto r = Serial8250::restore(back, line, nullptr);
  REQUIRE(r);
  CHECK(line->level);  // pending receive interrupt re-asserted
  CHECK((*r)->save() == st);
  uint8_t b = 0;
  (*r)->read(0, std::span(&b, 1));
  CHECK(b == 'x');

  st.rx_fifo.assign(100, 0);
  auto bad = Serial8250::restore(st, line, nullptr);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == Errc::corrupt);
}
