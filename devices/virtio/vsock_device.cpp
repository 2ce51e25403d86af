#include "devices/virtio/vsock_device.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace cairn {

Result<std::unique_ptr<VsockDevice>> VsockDevice::create(VsockConfig config) {
  if (config.guest_cid < 3 || config.guest_cid >= 0xffff'ffff)
    return fail(Errc::invalid_argument, "vsock guest CID {} is reserved (use 3 to 4294967294)", config.guest_cid);
  std::unique_ptr<VsockDevice> d(new VsockDevice(std::move(config)));
  CAIRN_TRY_CTX(muxer, VsockMuxer::create(d->config_.uds_path, d->config_.guest_cid, d->config_.timeouts),
                "creating virtio-vsock");
  d->muxer_ = std::move(muxer);
  d->kick_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!d->kick_) return fail_errno("creating virtio-vsock eventfd");
  if (auto r = d->muxer_->watch(d->kick_.get(), kKickToken); !r)
    return std::unexpected(std::move(r.error()).context("creating virtio-vsock"));
  d->tx_buf_.resize(kVsockMaxPayload);
  d->rx_buf_.resize(kVsockHeaderSize + kVsockMaxPayload);
  d->thread_ = std::thread([dev = d.get()] { dev->run(); });
  return d;
}

Result<std::unique_ptr<VsockDevice>> VsockDevice::restore(const VsockState& state, VsockConfig config) {
  config.guest_cid = state.guest_cid;
  CAIRN_TRY_CTX(d, create(std::move(config)), "restoring virtio-vsock");
  std::lock_guard lock(d->mu_);
  d->reset_event_pending_ = true;
  return d;
}

VsockDevice::~VsockDevice() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  kick();
  if (thread_.joinable()) thread_.join();
}

void VsockDevice::kick() {
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the thread wakes anyway.
  [[maybe_unused]] ssize_t n = ::write(kick_.get(), &one, sizeof(one));
}

void VsockDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  std::array<uint8_t, 8> cfg{};
  for (size_t i = 0; i < cfg.size(); ++i) cfg[i] = static_cast<uint8_t>(config_.guest_cid >> (8 * i));
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < cfg.size() ? cfg[offset + i] : 0;
}

Result<void> VsockDevice::activate(GuestMemory& mem, std::span<Virtqueue> queues, uint64_t, VirtioInterrupt& irq) {
  if (queues.size() != 3) return fail(Errc::invalid_argument, "virtio-vsock needs 3 queues, got {}", queues.size());
  {
    std::lock_guard lock(mu_);
    mem_ = &mem;
    queues_ = queues;
    irq_ = &irq;
    active_ = true;
    broken_ = false;
    muxer_->set_guest_ready(true);
  }
  kick();
  return {};
}

void VsockDevice::notify(uint16_t) { kick(); }

void VsockDevice::reset() {
  std::lock_guard lock(mu_);
  active_ = false;
  broken_ = false;
  reset_event_pending_ = false;  // a re-initialised driver starts without connections
  muxer_->set_guest_ready(false);
  muxer_->reset_connections();
  held_rx_.reset();  // the driver reclaims all its buffers on reset
  mem_ = nullptr;
  queues_ = {};
  irq_ = nullptr;
}

void VsockDevice::pause() {
  std::lock_guard lock(mu_);
  paused_ = true;
  if (held_rx_ && active_ && !broken_) {
    Virtqueue& q = queues_[kRxQueue];
    if (!q.add_used(*mem_, held_rx_->head, 0)) set_broken();
    if (q.needs_notification(*mem_)) irq_->signal_used_queue();
  }
  held_rx_.reset();
}

void VsockDevice::resume() {
  {
    std::lock_guard lock(mu_);
    paused_ = false;
  }
  cv_.notify_all();
  kick();  // notifications that came while paused
}

size_t VsockDevice::connection_count() const {
  std::lock_guard lock(mu_);
  return muxer_->connection_count();
}

bool VsockDevice::broken() const {
  std::lock_guard lock(mu_);
  return broken_;
}

void VsockDevice::run() {
  std::array<epoll_event, 32> events{};
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !paused_; });
    if (stopping_) return;
    int timeout = muxer_->ms_until_deadline(VsockMuxer::Clock::now());
    lock.unlock();
    // epoll_ctl from the locked side may run concurrently: the kernel allows it.
    int n = ::epoll_wait(muxer_->epoll_fd(), events.data(), static_cast<int>(events.size()), timeout);
    lock.lock();
    if (stopping_) return;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kKickToken) {
        uint64_t v;
        [[maybe_unused]] ssize_t r = ::read(kick_.get(), &v, sizeof(v));
      } else {
        muxer_->handle_event(events[i].data.u64, events[i].events);
      }
    }
    muxer_->handle_timeouts(VsockMuxer::Clock::now());
    if (active_ && !paused_ && !broken_) process_queues();
  }
}

void VsockDevice::process_queues() {
  bool used_tx = false, used_rx = false;
  for (;;) {
    size_t before = queues_[kTxQueue].next_used();
    bool tx_done = process_tx();
    used_tx |= queues_[kTxQueue].next_used() != before;
    bool rx_progress = process_rx();
    used_rx |= rx_progress;
    // Stopped by back-pressure: go on once the guest took some RSTs.
    if (tx_done || !rx_progress || broken_) break;
  }
  bool used_event = process_event();
  bool signal = false;
  if (used_tx) signal |= queues_[kTxQueue].needs_notification(*mem_);
  if (used_rx) signal |= queues_[kRxQueue].needs_notification(*mem_);
  if (used_event) signal |= queues_[kEventQueue].needs_notification(*mem_);
  if (signal) irq_->signal_used_queue();
}

bool VsockDevice::process_tx() {
  Virtqueue& q = queues_[kTxQueue];
  if (!q.config().ready) return true;
  while (!broken_) {
    if (muxer_->rst_queue_full()) return false;
    auto chain = q.pop(*mem_);
    if (!chain) {
      set_broken();
      break;
    }
    if (!*chain) break;
    handle_tx_chain(**chain);
    if (!q.add_used(*mem_, (*chain)->head, 0)) set_broken();
  }
  return true;
}

void VsockDevice::handle_tx_chain(const DescriptorChain& chain) {
  const uint64_t readable = chain.readable_bytes();
  if (readable < kVsockHeaderSize) return;  // too short to be a packet: dropped
  std::array<uint8_t, kVsockHeaderSize> raw{};
  auto got = chain_read(*mem_, chain, 0, raw);
  if (!got || *got != raw.size()) return;
  VsockHeader hdr = VsockHeader::decode(raw);
  bool len_valid = hdr.len <= kVsockMaxPayload && hdr.len <= readable - kVsockHeaderSize;
  std::span<const uint8_t> payload;
  if (len_valid && hdr.len > 0) {
    std::span<uint8_t> buf(tx_buf_.data(), hdr.len);
    auto n = chain_read(*mem_, chain, kVsockHeaderSize, buf);
    if (n && *n == hdr.len)
      payload = buf;
    else
      len_valid = false;
  }
  muxer_->handle_guest_packet(hdr, payload, len_valid);
}

bool VsockDevice::process_rx() {
  Virtqueue& q = queues_[kRxQueue];
  if (!q.config().ready) return false;
  bool used = false;
  while (!broken_ && muxer_->has_rx()) {
    if (!held_rx_) {
      auto chain = q.pop(*mem_);
      if (!chain) {
        set_broken();
        break;
      }
      if (!*chain) break;  // no buffers: the driver kicks when it adds some
      held_rx_ = std::move(**chain);
    }
    const uint64_t cap = held_rx_->writable_bytes();
    size_t len = 0;
    if (cap >= kVsockHeaderSize) {
      std::span<uint8_t> buf(rx_buf_.data(), std::min<uint64_t>(cap, rx_buf_.size()));
      len = muxer_->next_rx(buf);
      if (len == 0) break;  // nothing after all: keep the buffer for later
      auto w = chain_write(*mem_, *held_rx_, 0, buf.first(len));
      if (!w || *w != len) {
        set_broken();
        len = 0;
      }
    }
    // A buffer too small for a header goes back empty, as Linux expects of a bad buffer.
    if (!q.add_used(*mem_, held_rx_->head, static_cast<uint32_t>(len))) set_broken();
    held_rx_.reset();
    used = true;
  }
  return used;
}

bool VsockDevice::process_event() {
  Virtqueue& q = queues_[kEventQueue];
  bool used = false;
  while (reset_event_pending_ && q.config().ready && !broken_) {
    auto chain = q.pop(*mem_);
    if (!chain) {
      set_broken();
      break;
    }
    if (!*chain) break;
    // struct virtio_vsock_event { le32 id; }
    std::array<uint8_t, 4> ev{};
    for (size_t i = 0; i < ev.size(); ++i) ev[i] = static_cast<uint8_t>(kVsockEventTransportReset >> (8 * i));
    uint32_t written = 0;
    if ((*chain)->writable_bytes() >= ev.size()) {
      auto w = chain_write(*mem_, **chain, 0, ev);
      if (w && *w == ev.size()) {
        written = static_cast<uint32_t>(ev.size());
        reset_event_pending_ = false;
      }
    }
    if (!q.add_used(*mem_, (*chain)->head, written)) set_broken();
    used = true;
  }
  return used;
}

}  // namespace cairn
