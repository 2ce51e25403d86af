// Just enough of the PS/2 controller (i8042) for Linux to boot and reboot:
// the VMM maps it at port 0x60 with length 5, so offset 0 is the data port
// (0x60) and offset 4 the status/command port (0x64). There is no keyboard.
//
// Commands on 0x64: 0x20 reads the controller configuration byte, 0x60
// writes it (next byte on 0x60), 0xAA self-test answers 0x55, and 0xFE
// pulses the CPU reset line, which Linux's `reboot=k` uses: it calls on_reset.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "devices/bus_device.hpp"

namespace cairn {

// Everything a checkpoint needs to rebuild the controller.
struct I8042State {
  uint8_t ctr = 0;
  std::optional<uint8_t> output;
  bool expect_ctr = false;
  bool operator==(const I8042State&) const = default;
};

class I8042 : public BusDevice {
 public:
  static constexpr uint16_t kBasePort = 0x60;
  static constexpr uint64_t kLength = 5;
  static constexpr uint8_t kCmdReadCtr = 0x20, kCmdWriteCtr = 0x60, kCmdSelfTest = 0xaa,
                           kCmdPulseReset = 0xfe;
  static constexpr uint8_t kStatusOutputFull = 0x01;
  static constexpr uint8_t kStatusSystemFlag = 0x04;  // set once POST has run

  explicit I8042(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}

  std::string_view name() const override { return "i8042"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  uint64_t reset_count() const;

  I8042State save() const;
  static std::unique_ptr<I8042> restore(const I8042State& state, std::function<void()> on_reset);

 private:
  mutable std::mutex mu_;
  std::function<void()> on_reset_;
  std::optional<uint8_t> output_;  // a byte waiting on the data port
  uint8_t ctr_ = 0;                // controller configuration byte
  bool expect_ctr_ = false;        // the last command was 0x60
  uint64_t resets_ = 0;
};

}  // namespace cairn
