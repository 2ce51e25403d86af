#include "devices/serial8250.hpp"

#include <unistd.h>

#include <cerrno>

namespace cairn {

namespace {
// Register offsets.
constexpr uint8_t kRbrThr = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;

constexpr uint8_t kIerRdi = 0x01, kIerThri = 0x02, kIerRlsi = 0x04, kIerMsi = 0x08;
constexpr uint8_t kIirNoInt = 0x01, kIirMsi = 0x00, kIirThri = 0x02, kIirRdi = 0x04, kIirRlsi = 0x06;
constexpr uint8_t kIirFifoBits = 0xc0;  // "FIFOs enabled": what makes Linux detect a 16550A
constexpr uint8_t kFcrEnable = 0x01, kFcrClearRx = 0x02, kFcrKeptBits = 0xc1;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kMcrDtr = 0x01, kMcrRts = 0x02, kMcrOut1 = 0x04, kMcrOut2 = 0x08, kMcrLoop = 0x10;
constexpr uint8_t kLsrDr = 0x01, kLsrOe = 0x02, kLsrErrors = 0x1e, kLsrThre = 0x20, kLsrTemt = 0x40;
constexpr uint8_t kMsrDcts = 0x01, kMsrDdsr = 0x02, kMsrTeri = 0x04, kMsrDdcd = 0x08;
constexpr uint8_t kMsrCts = 0x10, kMsrDsr = 0x20, kMsrRi = 0x40, kMsrDcd = 0x80;
constexpr uint8_t kMsrDeltas = 0x0f;
}  // namespace

Serial8250::Sink Serial8250::fd_sink(int fd) {
  return [fd](std::span<const uint8_t> bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  };
}

Serial8250::Serial8250(std::shared_ptr<InterruptLine> irq, Sink sink)
    : irq_(std::move(irq)), sink_(std::move(sink)) {}

Result<std::unique_ptr<Serial8250>> Serial8250::restore(const Serial8250State& state,
                                                        std::shared_ptr<InterruptLine> irq, Sink sink) {
  if (state.rx_fifo.size() > kRxFifoCapacity)
    return fail(Errc::corrupt, "serial state holds {} input bytes, more than the FIFO's {}",
                state.rx_fifo.size(), kRxFifoCapacity);
  auto dev = std::make_unique<Serial8250>(std::move(irq), std::move(sink));
  std::lock_guard lock(dev->mu_);
  dev->s_ = state;
  dev->s_.rx_fifo.clear();
  dev->rx_.assign(state.rx_fifo.begin(), state.rx_fifo.end());
  // Drive the line explicitly: the fresh object has no history to compare with.
  dev->line_high_ = (dev->compute_iir() & kIirNoInt) == 0;
  if (dev->irq_) dev->irq_->set_level(dev->line_high_);
  return dev;
}

Serial8250State Serial8250::save() const {
  std::lock_guard lock(mu_);
  Serial8250State st = s_;
  st.rx_fifo.assign(rx_.begin(), rx_.end());
  return st;
}

void Serial8250::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  // Wider accesses behave like consecutive byte accesses on the ISA bus.
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = offset + i < kLength ? read_reg(static_cast<uint8_t>(offset + i)) : 0;
}

void Serial8250::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i)
    if (offset + i < kLength) write_reg(static_cast<uint8_t>(offset + i), data[i]);
}

size_t Serial8250::enqueue_input(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mu_);
  size_t n = std::min(bytes.size(), kRxFifoCapacity - rx_.size());
  for (size_t i = 0; i < n; ++i) push_rx(bytes[i]);
  update_irq();
  return n;
}

size_t Serial8250::input_space() const {
  std::lock_guard lock(mu_);
  return kRxFifoCapacity - rx_.size();
}

uint8_t Serial8250::read_reg(uint8_t reg) {
  bool dlab = s_.lcr & kLcrDlab;
  switch (reg) {
    case kRbrThr: {
      if (dlab) return s_.dll;
      uint8_t b = 0;
      if (!rx_.empty()) {
        b = rx_.front();
        rx_.pop_front();
      }
      if (rx_.empty()) s_.lsr &= ~kLsrDr;
      update_irq();
      return b;
    }
    case kIer:
      return dlab ? s_.dlm : s_.ier;
    case kIirFcr: {
      uint8_t iir = compute_iir();
      // Reading IIR acknowledges a THR-empty interrupt, as on real hardware.
      if (iir == kIirThri) {
        s_.thr_interrupt_pending = false;
        update_irq();
      }
      return iir | ((s_.fcr & kFcrEnable) ? kIirFifoBits : 0);
    }
    case kLcr:
      return s_.lcr;
    case kMcr:
      return s_.mcr;
    case kLsr: {
      uint8_t v = s_.lsr;
      s_.lsr &= ~kLsrErrors;  // error bits clear on read
      update_irq();
      return v;
    }
    case kMsr: {
      uint8_t v = s_.msr;
      s_.msr &= ~kMsrDeltas;
      update_irq();
      return v;
    }
    case kScr:
      return s_.scr;
  }
  return 0;
}

void Serial8250::write_reg(uint8_t reg, uint8_t value) {
  bool dlab = s_.lcr & kLcrDlab;
  switch (reg) {
    case kRbrThr:
      if (dlab) {
        s_.dll = value;
        return;
      }
      // The byte leaves at once; the line drops and rises again so that an
      // edge-triggered interrupt controller also sees a fresh THR-empty event.
      s_.thr_interrupt_pending = false;
      update_irq();
      if (s_.mcr & kMcrLoop) {
        push_rx(value);
      } else if (sink_) {
        sink_(std::span<const uint8_t>(&value, 1));
      }
      s_.thr_interrupt_pending = true;
      update_irq();
      return;
    case kIer: {
      if (dlab) {
        s_.dlm = value;
        return;
      }
      uint8_t old = s_.ier;
      s_.ier = value & 0x0f;  // bits 4-7 are reserved and read as zero on a 16550A
      // Enabling THRI with an empty transmitter raises the interrupt at once.
      if ((old ^ s_.ier) & kIerThri)
        s_.thr_interrupt_pending = (s_.ier & kIerThri) && (s_.lsr & kLsrThre);
      update_irq();
      return;
    }
    case kIirFcr:
      if (value & kFcrClearRx) {
        rx_.clear();
        s_.lsr &= ~kLsrDr;
      }
      s_.fcr = value & kFcrKeptBits;
      update_irq();
      return;
    case kLcr:
      s_.lcr = value;
      return;
    case kMcr:
      set_mcr(value & 0x1f);
      update_irq();
      return;
    case kLsr:
      return;  // read only
    case kMsr:
      return;  // read only
    case kScr:
      s_.scr = value;
      return;
  }
}

uint8_t Serial8250::modem_status_bits() const {
  if (!(s_.mcr & kMcrLoop)) return kMsrDcd | kMsrDsr | kMsrCts;  // a permanently connected peer
  uint8_t v = 0;
  if (s_.mcr & kMcrRts) v |= kMsrCts;
  if (s_.mcr & kMcrDtr) v |= kMsrDsr;
  if (s_.mcr & kMcrOut1) v |= kMsrRi;
  if (s_.mcr & kMcrOut2) v |= kMsrDcd;
  return v;
}

void Serial8250::set_mcr(uint8_t value) {
  uint8_t before = s_.msr & ~kMsrDeltas;
  s_.mcr = value;
  uint8_t after = modem_status_bits();
  uint8_t deltas = s_.msr & kMsrDeltas;
  uint8_t changed = before ^ after;
  if (changed & kMsrCts) deltas |= kMsrDcts;
  if (changed & kMsrDsr) deltas |= kMsrDdsr;
  if ((before & kMsrRi) && !(after & kMsrRi)) deltas |= kMsrTeri;  // trailing edge only
  if (changed & kMsrDcd) deltas |= kMsrDdcd;
  s_.msr = after | deltas;
}

void Serial8250::push_rx(uint8_t byte) {
  if (rx_.size() >= kRxFifoCapacity) {
    s_.lsr |= kLsrOe;
    return;
  }
  rx_.push_back(byte);
  s_.lsr |= kLsrDr;
}

uint8_t Serial8250::compute_iir() const {
  if ((s_.ier & kIerRlsi) && (s_.lsr & kLsrErrors)) return kIirRlsi;
  if ((s_.ier & kIerRdi) && (s_.lsr & kLsrDr)) return kIirRdi;
  if ((s_.ier & kIerThri) && s_.thr_interrupt_pending) return kIirThri;
  if ((s_.ier & kIerMsi) && (s_.msr & kMsrDeltas)) return kIirMsi;
  return kIirNoInt;
}

void Serial8250::update_irq() {
  bool high = (compute_iir() & kIirNoInt) == 0;
  if (high == line_high_) return;
  line_high_ = high;
  if (irq_) irq_->set_level(high);
}

}  // namespace cairn
