// A guest-side virtio-vsock driver for unit tests: three split virtqueues in
// anonymous guest memory, filled and read the way a guest driver does, plus
// host-side Unix socket helpers. Waiting is polling with a deadline.
#pragma once
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "devices/virtio/queue.hpp"
#include "devices/virtio/virtio_device.hpp"
#include "devices/virtio/vsock_device.hpp"
#include "devices/virtio/vsock_packet.hpp"
#include "vmm/base/guest_memory.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn::test {

using namespace std::chrono_literals;

struct CountingIrq : VirtioInterrupt {
  std::atomic<int> used{0};
  void signal_used_queue() override { ++used; }
  void signal_config_change() override {}
};

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/cairn-vsock-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// Polls `cond` until it holds or `timeout` passes.
template <class F>
bool wait_until(F cond, std::chrono::milliseconds timeout = 3000ms) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

struct RxPacket {
  VsockHeader hdr;
  std::string payload;
  uint32_t used_len = 0;
};

class VsockDriver {
 public:
  static constexpr uint16_t kSize = 64;
  static constexpr uint64_t kCid = 3;

  VsockDriver() : mem(*GuestMemory::create_anonymous(0, 16 << 20)) {
    for (uint16_t i = 0; i < 3; ++i) {
      queues.emplace_back(i == 2 ? 64 : 256);
      auto& c = queues.back().config();
      c.size = kSize;
      c.desc_table = ring_base(i);
      c.avail_ring = ring_base(i) + 0x400;
      c.used_ring = ring_base(i) + 0x800;
      c.ready = true;
      for (uint16_t d = 0; d < kSize; ++d) qs_[i].free_desc.push_back(d);
    }
  }

  uint64_t alloc(uint64_t n) {
    uint64_t at = next_buf_;
    next_buf_ += (n + 15) & ~15ULL;
    return at;
  }

  struct Buf {
    uint64_t gpa;
    uint32_t len;
    bool write;
  };
  // Publishes a chain on queue `q`; returns its head.
  uint16_t add_chain(uint16_t q, const std::vector<Buf>& bufs) {
    auto& st = qs_[q];
    // Reclaim finished tx chains when descriptors run short.
    while (q == 1 && st.free_desc.size() < bufs.size() && wait_used(1)) {
    }
    std::vector<uint16_t> ids;
    for (size_t i = 0; i < bufs.size(); ++i) {
      ids.push_back(st.free_desc.back());
      st.free_desc.pop_back();
    }
    auto& cfg = queues[q].config();
    for (size_t i = 0; i < bufs.size(); ++i) {
      uint16_t flags = (bufs[i].write ? 2 : 0) | (i + 1 < bufs.size() ? 1 : 0);
      uint16_t next = i + 1 < bufs.size() ? ids[i + 1] : 0;
      uint64_t d = cfg.desc_table + 16ULL * ids[i];
      (void)mem.write_obj(d, bufs[i].gpa);
      (void)mem.write_obj(d + 8, bufs[i].len);
      (void)mem.write_obj(d + 12, flags);
      (void)mem.write_obj(d + 14, next);
    }
    st.chains[ids[0]] = {ids, bufs};
    (void)mem.write_obj<uint16_t>(cfg.avail_ring + 4 + 2ULL * (st.avail_idx % kSize), ids[0]);
    std::atomic_thread_fence(std::memory_order_release);
    ++st.avail_idx;
    index_ref(cfg.avail_ring + 2).store(st.avail_idx, std::memory_order_release);
    return ids[0];
  }

  // An rx buffer as Linux >= 6.x posts it: one device-writable buffer (or
  // header and payload split over two descriptors when `split`).
  void add_rx_buffer(uint32_t payload_room = 4096, bool split = false) {
    if (split) {
      add_chain(0, {{alloc(kVsockHeaderSize), kVsockHeaderSize, true}, {alloc(payload_room), payload_room, true}});
    } else {
      uint32_t n = kVsockHeaderSize + payload_room;
      add_chain(0, {{alloc(n), n, true}});
    }
  }
  void add_event_buffer() { add_chain(2, {{alloc(4), 4, true}}); }

  // Posts a tx packet, header and payload in separate descriptors as Linux does.
  uint16_t send_raw(const VsockHeader& h, std::string_view payload, uint32_t payload_room = 0) {
    auto hb = h.encode();
    uint64_t hg = alloc(hb.size());
    (void)mem.write(hg, hb);
    std::vector<Buf> bufs{{hg, static_cast<uint32_t>(hb.size()), false}};
    uint32_t room = std::max<uint32_t>(payload_room, static_cast<uint32_t>(payload.size()));
    if (room > 0) {
      uint64_t pg = alloc(room);
      (void)mem.write(pg, std::span(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()));
      bufs.push_back({pg, room, false});
    }
    return add_chain(1, bufs);
  }

  VsockHeader hdr(VsockOp op, uint32_t src_port, uint32_t dst_port, uint32_t len = 0) const {
    VsockHeader h;
    h.src_cid = kCid;
    h.dst_cid = kVsockHostCid;
    h.src_port = src_port;
    h.dst_port = dst_port;
    h.len = len;
    h.op = static_cast<uint16_t>(op);
    h.buf_alloc = buf_alloc;
    h.fwd_cnt = fwd_cnt;
    return h;
  }

  uint16_t used_idx(uint16_t q) { return index_ref(queues[q].config().used_ring + 2).load(std::memory_order_acquire); }

  // The next used element of queue `q`, within `timeout`.
  std::optional<std::pair<uint16_t, uint32_t>> wait_used(uint16_t q, std::chrono::milliseconds timeout = 3000ms) {
    auto& st = qs_[q];
    if (!wait_until([&] { return used_idx(q) != st.last_used; }, timeout)) return std::nullopt;
    uint64_t e = queues[q].config().used_ring + 4 + 8ULL * (st.last_used % kSize);
    ++st.last_used;
    uint32_t id = *mem.read_obj<uint32_t>(e);
    uint32_t len = *mem.read_obj<uint32_t>(e + 4);
    auto it = st.chains.find(static_cast<uint16_t>(id));
    if (it != st.chains.end()) {
      last_chain_ = it->second.bufs;
      for (uint16_t d : it->second.ids) st.free_desc.push_back(d);
      st.chains.erase(it);
    }
    return std::pair{static_cast<uint16_t>(id), len};
  }

  // The next packet the device put in the rx queue.
  std::optional<RxPacket> recv(std::chrono::milliseconds timeout = 3000ms) {
    auto u = wait_used(0, timeout);
    if (!u) return std::nullopt;
    std::vector<uint8_t> bytes;
    for (auto& b : last_chain_) {
      std::vector<uint8_t> part(b.len);
      (void)mem.read(b.gpa, part);
      bytes.insert(bytes.end(), part.begin(), part.end());
    }
    RxPacket p;
    p.used_len = u->second;
    if (u->second < kVsockHeaderSize) return p;
    p.hdr = VsockHeader::decode(std::span<const uint8_t, kVsockHeaderSize>(bytes.data(), kVsockHeaderSize));
    size_t n = std::min<size_t>(p.hdr.len, bytes.size() - kVsockHeaderSize);
    p.payload.assign(reinterpret_cast<const char*>(bytes.data()) + kVsockHeaderSize, n);
    return p;
  }

  GuestMemory mem;
  std::vector<Virtqueue> queues;
  uint32_t buf_alloc = 64 * 1024;  // the window this "guest" advertises
  uint32_t fwd_cnt = 0;

 private:
  static uint64_t ring_base(uint16_t q) { return 0x10000 + 0x1000ULL * q; }
  std::atomic_ref<uint16_t> index_ref(uint64_t gpa) {
    return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(mem.slice(gpa, 2).data()));
  }
  struct Chain {
    std::vector<uint16_t> ids;
    std::vector<Buf> bufs;
  };
  struct QueueState {
    std::vector<uint16_t> free_desc;
    std::map<uint16_t, Chain> chains;
    uint16_t avail_idx = 0;
    uint16_t last_used = 0;
  };
  QueueState qs_[3];
  std::vector<Buf> last_chain_;
  uint64_t next_buf_ = 0x100000;
};

// Host side: plain blocking-with-timeout Unix socket helpers.
inline UniqueFd unix_listen(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd.get(), 8) != 0) return {};
  return fd;
}

inline UniqueFd unix_connect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return {};
  return fd;
}

inline bool readable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

inline UniqueFd accept_within(int listener, std::chrono::milliseconds timeout = 3000ms) {
  if (!readable(listener, timeout)) return {};
  return UniqueFd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
}

// Reads exactly `n` bytes (or up to EOF) within `timeout`.
inline std::string read_n(int fd, size_t n, std::chrono::milliseconds timeout = 3000ms) {
  std::string out;
  auto end = std::chrono::steady_clock::now() + timeout;
  while (out.size() < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !readable(fd, left)) break;
    char buf[4096];
    ssize_t r = ::read(fd, buf, std::min(sizeof(buf), n - out.size()));
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

// True when the peer closed within `timeout`: EOF, or ECONNRESET when it
// closed with bytes of ours still unread.
inline bool sees_eof(int fd, std::chrono::milliseconds timeout = 3000ms) {
  if (!readable(fd, timeout)) return false;
  char c;
  ssize_t n = ::read(fd, &c, 1);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

// MSG_NOSIGNAL: the device may already have closed a refused socket.
inline void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    s.remove_prefix(static_cast<size_t>(n));
  }
}

// A device over a VsockDriver, activated, with its socket in a fresh directory.
struct VsockFixture {
  TempDir dir;
  std::string path = dir.path + "/v.sock";
  VsockDriver drv;
  CountingIrq irq;
  std::unique_ptr<VsockDevice> dev;

  explicit VsockFixture(VsockTimeouts t = {}) {
    auto d = VsockDevice::create(VsockConfig{VsockDriver::kCid, path, t});
    if (d) dev = std::move(*d);
    if (dev && !dev->activate(drv.mem, drv.queues, kVirtioFVersion1, irq)) dev.reset();
  }
  void send(const VsockHeader& h, std::string_view payload = {}) {
    drv.send_raw(h, payload);
    dev->notify(VsockDevice::kTxQueue);
  }
  void add_rx(int n = 1, uint32_t room = 4096) {
    for (int i = 0; i < n; ++i) drv.add_rx_buffer(room);
    dev->notify(VsockDevice::kRxQueue);
  }
};

}  // namespace cairn::test
