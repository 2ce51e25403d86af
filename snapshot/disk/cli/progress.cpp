#include "snapshot/disk/cli/progress.hpp"

#include <unistd.h>

#include <fmt/format.h>

namespace cairn::disk {

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), tty_(::isatty(2) == 1), start_(std::chrono::steady_clock::now()), last_(start_) {}

ProgressBar::~ProgressBar() {
  if (drawn_) fmt::print(stderr, "\n");
}

void ProgressBar::update(uint64_t done, uint64_t total) {
  if (!tty_) return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && done < total && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  double secs = std::chrono::duration<double>(now - start_).count();
  double pct = total ? 100.0 * double(done) / double(total) : 100.0;
  double mbs = secs > 0 ? double(done) / 1e6 / secs : 0;
  constexpr int kWidth = 30;
  int fill = int(pct / 100.0 * kWidth);
  fmt::print(stderr, "\r{} [{:<{}}] {:5.1f}% {:8.1f} MB/s", label_, std::string(size_t(fill), '#'), kWidth, pct, mbs);
  drawn_ = true;
}

}  // namespace cairn::disk
