#include "vmm/machine/console.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <memory>

namespace cairn {

namespace {
constexpr std::string_view kPanicLine = "Kernel panic - not syncing";
constexpr size_t kMaxPending = 4096;
}

Result<std::unique_ptr<Console>> Console::open(const std::string& spec) {
  auto c = std::unique_ptr<Console>(new Console());
  if (spec == "stdio") {
    c->out_ = UniqueFd(::dup(STDOUT_FILENO));
    c->out_is_stdout_ = true;
    if (!c->out_) return fail_errno("duplicating stdout");
  } else if (spec.starts_with("file:") && spec.size() > 5) {
    std::string path = spec.substr(5);
    c->out_ = UniqueFd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!c->out_) return fail_errno("opening console log {}", path);
  } else {
    return fail(Errc::invalid_argument, "console must be 'stdio' or 'file:PATH', not '{}'", spec);
  }
  Console* raw = c.get();
  c->flusher_ = std::thread([raw] { raw->flusher_loop(); });
  return c;
}

Console::~Console() {
  stop_input();
  {
    std::lock_guard lk(out_mu_);
    closing_ = true;
  }
  out_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  flush();
}

void Console::flush() {
  std::lock_guard lk(out_mu_);
  flush_locked();
}

void Console::flush_locked() {
  size_t off = 0;
  while (off < pending_.size()) {
    ssize_t n = ::write(out_.get(), pending_.data() + off, pending_.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // a closed terminal must not stop the guest
    off += static_cast<size_t>(n);
  }
  pending_.clear();
}

// Writes out a partial line kFlushDelay after it began.
void Console::flusher_loop() {
  std::unique_lock lk(out_mu_);
  for (;;) {
    out_cv_.wait(lk, [this] { return closing_ || !pending_.empty(); });
    if (closing_) return;
    if (out_cv_.wait_for(lk, kFlushDelay, [this] { return closing_; })) return;
    flush_locked();
  }
}

void Console::write(std::span<const uint8_t> bytes) {
  std::lock_guard lk(out_mu_);
  const bool was_empty = pending_.empty();
  pending_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (std::memchr(bytes.data(), '\n', bytes.size()) || pending_.size() >= kMaxPending)
    flush_locked();
  else if (was_empty)
    out_cv_.notify_one();
  if (panic_seen_.load(std::memory_order_relaxed)) return;
  tail_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (tail_.find(kPanicLine) != std::string::npos) panic_seen_ = true;
  if (tail_.size() > 2 * kPanicLine.size()) tail_.erase(0, tail_.size() - kPanicLine.size());
}

Result<void> Console::start_input(InputFn input, std::function<void()> quit) {
  if (!out_is_stdout_ || !::isatty(STDIN_FILENO)) return {};
  input_ = std::move(input);
  quit_ = std::move(quit);
  if (::tcgetattr(STDIN_FILENO, &saved_) != 0) return fail_errno("reading terminal settings");
  termios raw = saved_;
  ::cfmakeraw(&raw);
  raw.c_oflag |= OPOST | ONLCR;  // keep newline translation for our own messages
  if (::tcsetattr(STDIN_FILENO, TCSANOW, &raw) != 0) return fail_errno("setting the terminal to raw mode");
  raw_mode_ = true;
  stop_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC));
  if (!stop_fd_) return fail_errno("eventfd");
  input_thread_ = std::thread([this] { input_loop(); });
  return {};
}

void Console::input_loop() {
  bool ctrl_a = false;
  for (;;) {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    uint8_t buf[256];
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (n <= 0) return;
    std::string pass;
    for (ssize_t i = 0; i < n; ++i) {
      if (ctrl_a) {
        ctrl_a = false;
        if (buf[i] == 'x') {
          if (quit_) quit_();
          return;
        }
        if (buf[i] != 0x01) pass.push_back(0x01);
      } else if (buf[i] == 0x01) {
        ctrl_a = true;
        continue;
      }
      pass.push_back(static_cast<char>(buf[i]));
    }
    if (!deliver(std::span(reinterpret_cast<const uint8_t*>(pass.data()), pass.size()))) return;
  }
}

bool Console::deliver(std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    bytes = bytes.subspan(input_(bytes));
    if (bytes.empty()) break;
    // The FIFO is full: stop reading the terminal (its own buffer holds the
    // rest of a paste) and look again shortly; a guest at 115200 baud drains
    // 64 bytes in about 5 ms.
    pollfd stop = {stop_fd_.get(), POLLIN, 0};
    if (::poll(&stop, 1, 2) > 0) return false;
  }
  return true;
}

void Console::stop_input() {
  if (input_thread_.joinable()) {
    uint64_t one = 1;
    (void)!::write(stop_fd_.get(), &one, sizeof(one));
    input_thread_.join();
  }
  if (raw_mode_) {
    ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    raw_mode_ = false;
  }
}

}  // namespace cairn
