#include "devices/i8042.hpp"

#include <algorithm>

namespace cairn {

namespace {
constexpr uint64_t kData = 0;
constexpr uint64_t kCommand = 4;
}  // namespace

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.empty()) return;
  std::fill(data.begin(), data.end(), 0);
  std::lock_guard lock(mu_);
  if (offset == kData) {
    data[0] = output_.value_or(0);
    output_.reset();
  } else if (offset == kCommand) {
    data[0] = kStatusSystemFlag | (output_ ? kStatusOutputFull : 0);
  }
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  uint8_t v = data[0];
  bool reset = false;
  {
    std::lock_guard lock(mu_);
    if (offset == kData) {
      if (expect_ctr_) ctr_ = v;
      expect_ctr_ = false;
    } else if (offset == kCommand) {
      expect_ctr_ = false;
      switch (v) {
        case kCmdReadCtr: output_ = ctr_; break;
        case kCmdWriteCtr: expect_ctr_ = true; break;
        case kCmdSelfTest: output_ = 0x55; break;
        case kCmdPulseReset:
          ++resets_;
          reset = true;
          break;
        default: break;  // other commands have no effect here
      }
    }
  }
  // Outside the lock: the callback may stop vCPUs, which may be touching this device.
  if (reset && on_reset_) on_reset_();
}

uint64_t I8042::reset_count() const {
  std::lock_guard lock(mu_);
  return resets_;
}

I8042State I8042::save() const {
  std::lock_guard lock(mu_);
  return I8042State{ctr_, output_, expect_ctr_};
}

std::unique_ptr<I8042> I8042::restore(const I8042State& state, std::function<void()> on_reset) {
  auto d = std::make_unique<I8042>(std::move(on_reset));
  d->ctr_ = state.ctr;
  d->output_ = state.output;
  d->expect_ctr_ = state.expect_ctr;
  return d;
}

}  // namespace cairn
