#include "devices/virtio/vsock_connection.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace cairn {

void VsockConnection::update_peer_credit(uint32_t buf_alloc, uint32_t fwd_cnt) {
  if (buf_alloc != peer_buf_alloc || fwd_cnt != peer_fwd_cnt) credit_requested = false;
  peer_buf_alloc = buf_alloc;
  peer_fwd_cnt = fwd_cnt;
}

bool VsockConnection::queue_guest_data(std::span<const uint8_t> data) {
  size_t guest_bytes = out.size() - out_uncounted;
  if (guest_bytes + data.size() > kVsockConnBufAlloc) return false;
  out.insert(out.end(), data.begin(), data.end());
  return true;
}

void VsockConnection::queue_host_line(std::string_view line) {
  // Only ever called before any guest data is queued, so it stays in front.
  out.insert(out.begin() + static_cast<ptrdiff_t>(out_uncounted), line.begin(), line.end());
  out_uncounted += line.size();
}

VsockConnection::Flush VsockConnection::flush() {
  size_t done = 0;
  Flush result = Flush::done;
  while (done < out.size()) {
    ssize_t n = ::send(fd.get(), out.data() + done, out.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      writable = false;
      result = Flush::blocked;
    } else {
      result = Flush::failed;
    }
    break;
  }
  size_t ours = std::min(done, out_uncounted);
  out_uncounted -= ours;
  fwd_cnt += static_cast<uint32_t>(done - ours);
  out.erase(out.begin(), out.begin() + static_cast<ptrdiff_t>(done));
  return result;
}

}  // namespace cairn
