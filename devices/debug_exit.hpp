// A guest-to-host exit port in the manner of QEMU's isa-debug-exit (the VMM
// maps it at port 0x501): a byte the guest writes there becomes the exit
// status of the guest's command, reported through on_exit. Unlike QEMU the
// value is passed through unchanged (no `(v << 1) | 1`). Reads return 0.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>

#include "devices/bus_device.hpp"

namespace cairn {

class DebugExit : public BusDevice {
 public:
  static constexpr uint16_t kPort = 0x501;
  static constexpr uint64_t kLength = 1;

  explicit DebugExit(std::function<void(int)> on_exit) : on_exit_(std::move(on_exit)) {}

  std::string_view name() const override { return "debug-exit"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // The last status written, if any.
  std::optional<int> exit_status() const;

 private:
  std::function<void(int)> on_exit_;
  std::atomic<int> status_{-1};  // -1: nothing written yet
};

}  // namespace cairn
