// Where a long operation reports how far it got. The same operation code runs
// in the foreground (TerminalProgress), in a background job (JobProgress,
// vmm/jobs/job_progress.hpp) or silently (NullProgress).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace cairn {

class Progress {
 public:
  virtual ~Progress() = default;
  // Starts a named step ("merging disk vda"); the percent starts again from 0.
  virtual void stage(std::string_view what) = 0;
  // `done` of `total` units of the current stage; total 0 means nothing to do (100%).
  virtual void update(uint64_t done, uint64_t total) = 0;
};

class NullProgress final : public Progress {
 public:
  void stage(std::string_view) override {}
  void update(uint64_t, uint64_t) override {}
};

// done/total as a whole percent in 0..100.
int percent_of(uint64_t done, uint64_t total);

// One line on stderr, "<stage> [#####     ]  42%", redrawn at most 10 times a
// second; each stage gets its own line. Draws nothing unless stderr is a tty,
// so logs and pipes stay clean.
class TerminalProgress final : public Progress {
 public:
  TerminalProgress();
  ~TerminalProgress() override;
  TerminalProgress(const TerminalProgress&) = delete;
  TerminalProgress& operator=(const TerminalProgress&) = delete;

  void stage(std::string_view what) override;
  void update(uint64_t done, uint64_t total) override;
  bool enabled() const { return tty_; }

 private:
  void draw(int percent);

  bool tty_;
  bool drawn_ = false;
  int last_percent_ = -1;
  std::string stage_;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace cairn
