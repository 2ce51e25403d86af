#include "vmm/jobs/progress.hpp"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace cairn {

namespace {
constexpr auto kRedrawEvery = std::chrono::milliseconds(100);
constexpr size_t kMaxLabel = 40;  // keeps the bar on one line of an 80-column terminal
constexpr int kBarWidth = 25;
}  // namespace

int percent_of(uint64_t done, uint64_t total) {
  if (total == 0 || done >= total) return 100;
  // done < total here, so done * 100 / total < 100; long double avoids overflow for huge totals.
  return static_cast<int>(static_cast<long double>(done) * 100 / static_cast<long double>(total));
}

TerminalProgress::TerminalProgress() : tty_(::isatty(STDERR_FILENO) == 1) {}

TerminalProgress::~TerminalProgress() {
  if (drawn_) fmt::print(stderr, "\n");
}

void TerminalProgress::stage(std::string_view what) {
  if (!tty_) return;
  if (drawn_) fmt::print(stderr, "\n");  // the finished stage keeps its line
  stage_ = std::string(what.substr(0, kMaxLabel));
  drawn_ = false;
  last_percent_ = -1;
  draw(0);
}

void TerminalProgress::update(uint64_t done, uint64_t total) {
  if (!tty_) return;
  int pct = percent_of(done, total);
  if (pct == last_percent_) return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && pct < 100 && now - last_draw_ < kRedrawEvery) return;
  draw(pct);
}

void TerminalProgress::draw(int percent) {
  last_draw_ = std::chrono::steady_clock::now();
  last_percent_ = percent;
  int fill = percent * kBarWidth / 100;
  fmt::print(stderr, "\r{:<{}} [{:<{}}] {:3}%", stage_, kMaxLabel, std::string(static_cast<size_t>(fill), '#'),
             kBarWidth, percent);
  drawn_ = true;
}

}  // namespace cairn
