#include "snapshot/memory/userfaultfd.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace cairn::snap {

Result<UniqueFd> open_userfaultfd(uint64_t& features) {
  // The syscall, or /dev/userfaultfd where the syscall is limited to
  // user-mode faults for this user.
  UniqueFd uffd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (!uffd) {
    int err = errno;
    UniqueFd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
    if (dev) uffd = UniqueFd(::ioctl(dev.get(), USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK));
    if (!uffd) return fail(Errc::unsupported, "userfaultfd is not available ({})", std::strerror(err));
  }
  uffdio_api api{.api = UFFD_API, .features = 0, .ioctls = 0};
  if (::ioctl(uffd.get(), UFFDIO_API, &api) != 0) return fail_errno("userfaultfd API handshake");
  features = api.features;
  return uffd;
}

Result<void> register_range(int uffd, uint8_t* host, uint64_t size, uint64_t mode, uint64_t ioctls) {
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uint64_t>(host);
  reg.range.len = size;
  reg.mode = mode;
  if (::ioctl(uffd, UFFDIO_REGISTER, &reg) != 0)
    return fail(errno == EPERM || errno == EINVAL ? Errc::unsupported : errc_from_errno(errno),
                "registering guest memory with userfaultfd: {}", std::strerror(errno));
  if ((reg.ioctls & ioctls) != ioctls) {
    uffdio_range range{reg.range.start, size};
    (void)::ioctl(uffd, UFFDIO_UNREGISTER, &range);
    return fail(Errc::unsupported, "userfaultfd cannot serve this guest memory");
  }
  return {};
}

void serve_faults(int uffd, int stop_fd, const std::function<void(const uffd_msg&)>& on_fault) {
  pollfd fds[2] = {{uffd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
  uffd_msg msgs[32];
  for (;;) {
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    ssize_t got = ::read(uffd, msgs, sizeof(msgs));
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return;
    }
    for (size_t k = 0; k < static_cast<size_t>(got) / sizeof(uffd_msg); ++k)
      if (msgs[k].event == UFFD_EVENT_PAGEFAULT) on_fault(msgs[k]);
  }
}

Result<void> FaultThread::start(int uffd, std::function<void(uint64_t addr)> on_fault) {
  stop_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_) return fail_errno("eventfd");
  thread_ = std::thread([uffd, stop = stop_fd_.get(), f = std::move(on_fault)] {
    serve_faults(uffd, stop, [&](const uffd_msg& m) { f(m.arg.pagefault.address); });
  });
  return {};
}

void FaultThread::stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  (void)!::write(stop_fd_.get(), &one, sizeof(one));
  thread_.join();
}

namespace {
int64_t monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void JobOutcome::restart() {
  std::lock_guard lk(mu_);
  done_ = false;
  ms_ = 0;
  start_ns_ = monotonic_ns();
}

bool JobOutcome::fail(Error e, const std::function<void(const Error&)>& first) {
  {
    std::lock_guard lk(mu_);
    if (error_) return false;
    error_ = e;
  }
  if (first) first(e);
  cv_.notify_all();
  return true;
}

bool JobOutcome::finish() {
  std::lock_guard lk(mu_);
  if (done_) return false;
  done_ = true;
  ms_ = static_cast<double>(monotonic_ns() - start_ns_) / 1e6;
  cv_.notify_all();
  return true;
}

Result<void> JobOutcome::wait() const {
  std::unique_lock lk(mu_);
  cv_.wait(lk, [this] { return done_ || error_.has_value(); });
  if (error_) return std::unexpected(*error_);
  return {};
}

bool JobOutcome::done() const {
  std::lock_guard lk(mu_);
  return done_;
}

double JobOutcome::ms() const {
  std::lock_guard lk(mu_);
  return ms_;
}

}  // namespace cairn::snap
