#include "snapshot/memory/userfaultfd.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
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

}  // namespace cairn::snap
