// A 16550A UART as Linux's 8250 driver sees it on COM1 (port 0x3f8, IRQ 4).
// Transmission is instantaneous: THR is always empty, so the THR-empty
// interrupt (which the driver needs to push tty output) fires as soon as the
// guest enables it or writes a byte. Received bytes wait in a bounded FIFO.
//
// Register map (offset: read / write):
//   0: RBR / THR        (DLAB=1: DLL)
//   1: IER              (DLAB=1: DLM)
//   2: IIR / FCR
//   3: LCR (bit 7 = DLAB)
//   4: MCR (bit 4 = loopback)
//   5: LSR (read only)
//   6: MSR (read clears the delta bits)
//   7: SCR (scratch)
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "devices/bus_device.hpp"
#include "devices/interrupt.hpp"
#include "vmm/base/error.hpp"

namespace cairn {

// Everything a checkpoint needs to rebuild the UART exactly.
struct Serial8250State {
  uint8_t dll = 0x0c;  // divisor 12: 9600 baud
  uint8_t dlm = 0;
  uint8_t ier = 0;
  uint8_t fcr = 0;     // only the FIFO-enable and trigger bits are kept
  uint8_t lcr = 0x03;  // 8N1
  uint8_t mcr = 0x08;  // OUT2
  uint8_t lsr = 0x60;  // THRE | TEMT
  uint8_t msr = 0xb0;  // DCD | DSR | CTS
  uint8_t scr = 0;
  bool thr_interrupt_pending = false;
  std::vector<uint8_t> rx_fifo;  // oldest byte first
  bool operator==(const Serial8250State&) const = default;
};

class Serial8250 : public BusDevice {
 public:
  using Sink = std::function<void(std::span<const uint8_t>)>;
  static constexpr uint16_t kCom1Port = 0x3f8;
  static constexpr uint32_t kCom1Irq = 4;
  static constexpr uint64_t kLength = 8;
  static constexpr size_t kRxFifoCapacity = 64;

  // A sink writing guest output to `fd` (not owned), e.g. the VMM's stdout.
  // Output that the fd refuses is dropped: a UART has no way to push back.
  static Sink fd_sink(int fd);

  // `irq` may be null (no interrupt wiring); `sink` receives guest output.
  Serial8250(std::shared_ptr<InterruptLine> irq, Sink sink);
  // Rebuilds a UART from saved state and drives the line to match it.
  static Result<std::unique_ptr<Serial8250>> restore(const Serial8250State& state,
                                                     std::shared_ptr<InterruptLine> irq, Sink sink);
  Serial8250State save() const;

  std::string_view name() const override { return "serial8250"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Host input for the guest: returns how many bytes fit in the FIFO.
  size_t enqueue_input(std::span<const uint8_t> bytes);
  size_t input_space() const;

 private:
  uint8_t read_reg(uint8_t reg);
  void write_reg(uint8_t reg, uint8_t value);
  uint8_t compute_iir() const;
  void update_irq();  // recomputes IIR and moves the line if it changed
  void push_rx(uint8_t byte);
  void set_mcr(uint8_t value);
  uint8_t modem_status_bits() const;

  mutable std::mutex mu_;
  Serial8250State s_;
  std::deque<uint8_t> rx_;
  std::shared_ptr<InterruptLine> irq_;
  Sink sink_;
  bool line_high_ = false;
};

}  // namespace cairn
