#include "devices/debug_exit.hpp"

#include <algorithm>

namespace cairn {

void DebugExit::read(uint64_t, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0); }

void DebugExit::write(uint64_t offset, std::span<const uint8_t> data) {
  // Only the low byte at offset 0 counts, whatever the access width.
  if (offset != 0 || data.empty()) return;
  int status = data[0];
  status_.store(status);
  if (on_exit_) on_exit_(status);
}

std::optional<int> DebugExit::exit_status() const {
  int s = status_.load();
  if (s < 0) return std::nullopt;
  return s;
}

}  // namespace cairn
