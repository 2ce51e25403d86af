// A one-line progress bar on stderr (percentage and MB/s), only on a tty.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace cairn::disk {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();
  void update(uint64_t done, uint64_t total);

 private:
  std::string label_;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace cairn::disk
