// The guest's serial console on the host side: output to the terminal or a
// log file, input from an interactive terminal (raw mode, restored on exit;
// Ctrl-A x quits as in QEMU), and a watch for the kernel's panic line so that
// a crash is not mistaken for a clean reboot.
//
// Output is buffered: the UART hands over one byte per guest port write, and
// a write(2) per byte (with a reader woken per byte) costs more than the exit
// that produced it. Whole lines go out at once; a partial line (a shell
// prompt, typed characters echoed) goes out after at most kFlushDelay.
#pragma once
#include <termios.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

class Console {
 public:
  // spec: "stdio" or "file:PATH".
  static Result<std::unique_ptr<Console>> open(const std::string& spec);
  ~Console();

  // Guest output (called by the UART, possibly from several vCPU threads).
  void write(std::span<const uint8_t> bytes);
  // Writes out what is buffered (when the guest has stopped).
  void flush();
  static constexpr std::chrono::milliseconds kFlushDelay{10};
  bool panic_seen() const { return panic_seen_.load(); }

  // Starts forwarding stdin when it is a terminal. `input` offers bytes to the
  // UART and returns how many it took (its FIFO is small); the rest is offered
  // again once the guest drains it, so a paste is never cut short. `quit` is
  // called on Ctrl-A x.
  using InputFn = std::function<size_t(std::span<const uint8_t>)>;
  Result<void> start_input(InputFn input, std::function<void()> quit);
  void stop_input();

 private:
  Console() = default;
  void flush_locked();
  void flusher_loop();
  void input_loop();
  bool deliver(std::span<const uint8_t> bytes);  // false when asked to stop

  UniqueFd out_;
  bool out_is_stdout_ = false;
  std::string tail_;  // last bytes seen, for the panic watch (under out_mu_)
  std::atomic<bool> panic_seen_{false};

  std::mutex out_mu_;
  std::condition_variable out_cv_;
  std::string pending_;  // output not yet written (a partial line, or up to 4 KiB)
  bool closing_ = false;
  std::thread flusher_;

  bool raw_mode_ = false;
  termios saved_{};
  UniqueFd stop_fd_;
  std::thread input_thread_;
  InputFn input_;
  std::function<void()> quit_;
};

}  // namespace cairn
