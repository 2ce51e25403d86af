#include "vmm/machine/stop_signals.hpp"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>

namespace cairn {

namespace {
constexpr int kSignals[] = {SIGTERM, SIGINT, SIGHUP};
// The handler may only do async-signal-safe things: note the signal and
// write to an eventfd that the watcher thread polls.
std::atomic<int> g_event_fd{-1};
std::atomic<int> g_signal{0};
struct sigaction g_old[std::size(kSignals)];

void on_signal(int sig) {
  g_signal.store(sig);
  uint64_t one = 1;
  int fd = g_event_fd.load();
  if (fd >= 0) (void)!::write(fd, &one, sizeof one);
}
}  // namespace

Result<std::unique_ptr<StopOnSignals>> StopOnSignals::install(Machine& m) {
  if (g_event_fd.load() >= 0) return fail(Errc::invalid_state, "stop signals are already handled");
  auto s = std::unique_ptr<StopOnSignals>(new StopOnSignals());
  UniqueFd ev(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  s->quit_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!ev || !s->quit_) return fail_errno("creating an eventfd for stop signals");
  g_event_fd.store(ev.get());
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &sa, &g_old[i]);
  s->watcher_ = std::thread([&m, ev = std::move(ev), quit = s->quit_.get()] {
    pollfd fds[2] = {{ev.get(), POLLIN, 0}, {quit, POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0) continue;  // EINTR
      if (fds[1].revents) return;
      if (fds[0].revents) {
        uint64_t n;
        (void)!::read(ev.get(), &n, sizeof n);
        int sig = g_signal.load();
        m.request_stop({MachineExit::Kind::stopped, 0, fmt::format("stopped by signal {}", ::strsignal(sig))});
      }
    }
  });
  return s;
}

StopOnSignals::~StopOnSignals() {
  for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &g_old[i], nullptr);
  uint64_t one = 1;
  (void)!::write(quit_.get(), &one, sizeof one);
  if (watcher_.joinable()) watcher_.join();
  g_event_fd.store(-1);
}

}  // namespace cairn
