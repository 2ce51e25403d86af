#include "devices/virtio/mmio_transport.hpp"

#include <algorithm>
#include <cstring>

namespace cairn {

namespace {
enum Reg : uint64_t {
  kMagic = 0x000,
  kVersion = 0x004,
  kDeviceId = 0x008,
  kVendorId = 0x00c,
  kDeviceFeatures = 0x010,
  kDeviceFeaturesSel = 0x014,
  kDriverFeatures = 0x020,
  kDriverFeaturesSel = 0x024,
  kQueueSel = 0x030,
  kQueueNumMax = 0x034,
  kQueueNum = 0x038,
  kQueueReady = 0x044,
  kQueueNotify = 0x050,
  kInterruptStatus = 0x060,
  kInterruptAck = 0x064,
  kStatus = 0x070,
  kQueueDescLow = 0x080,
  kQueueDescHigh = 0x084,
  kQueueDriverLow = 0x090,
  kQueueDriverHigh = 0x094,
  kQueueDeviceLow = 0x0a0,
  kQueueDeviceHigh = 0x0a4,
  kConfigGeneration = 0x0fc,
  kConfig = 0x100,
};

void set_low(uint64_t& v, uint32_t lo) { v = (v & 0xffffffff00000000ULL) | lo; }
void set_high(uint64_t& v, uint32_t hi) { v = (v & 0xffffffffULL) | (uint64_t{hi} << 32); }
}  // namespace

MmioTransport::MmioTransport(GuestMemory& mem, std::shared_ptr<VirtioDevice> dev,
                             std::shared_ptr<InterruptLine> irq)
    : mem_(mem), dev_(std::move(dev)), irq_(std::move(irq)) {
  for (uint16_t max : dev_->queue_max_sizes()) queues_.emplace_back(max);
}

MmioTransport::~MmioTransport() {
  std::lock_guard lock(mu_);
  // The device must stop touching queues that are about to disappear.
  if (activated_) dev_->reset();
}

Result<std::unique_ptr<MmioTransport>> MmioTransport::restore(const MmioTransportState& st, GuestMemory& mem,
                                                              std::shared_ptr<VirtioDevice> dev,
                                                              std::shared_ptr<InterruptLine> irq) {
  auto t = std::make_unique<MmioTransport>(mem, std::move(dev), std::move(irq));
  if (st.queues.size() != t->queues_.size())
    return fail(Errc::corrupt, "{} state has {} queues, the device has {}", t->dev_->name(), st.queues.size(),
                t->queues_.size());
  std::lock_guard lock(t->mu_);
  for (size_t i = 0; i < st.queues.size(); ++i) {
    auto& q = t->queues_[i];
    if (st.queues[i].config.max_size != q.config().max_size)
      return fail(Errc::corrupt, "{} queue {} saved with max size {}, the device has {}", t->dev_->name(), i,
                  st.queues[i].config.max_size, q.config().max_size);
    q.config() = st.queues[i].config;
    q.set_positions(st.queues[i].next_avail, st.queues[i].next_used);
  }
  t->device_features_sel_ = st.device_features_sel;
  t->driver_features_sel_ = st.driver_features_sel;
  t->queue_sel_ = st.queue_sel;
  t->acked_features_ = st.acked_features;
  t->status_ = st.status;
  t->interrupt_status_ = st.interrupt_status;
  t->config_generation_ = st.config_generation;
  if ((st.status & kStatusDriverOk) && !(st.status & kStatusNeedsReset)) {
    for (auto& q : t->queues_) {
      q.set_event_idx(st.acked_features & kVirtioFEventIdx);
      if (!q.config().ready) continue;
      if (auto r = q.validate(mem); !r)
        return std::unexpected(std::move(r.error()).context(fmt::format("restoring {}", t->dev_->name())));
    }
    if (auto r = t->dev_->activate(mem, t->queues_, st.acked_features, *t); !r)
      return std::unexpected(std::move(r.error()).context(fmt::format("reactivating {}", t->dev_->name())));
    t->activated_ = true;
  }
  // An interrupt pending at save time may not have reached the guest yet;
  // firing again is harmless (the handler finds the status bits) and never loses one.
  if (st.interrupt_status != 0 && t->irq_) t->irq_->trigger();
  return t;
}

MmioTransportState MmioTransport::save() const {
  std::lock_guard lock(mu_);
  MmioTransportState st;
  st.device_features_sel = device_features_sel_;
  st.driver_features_sel = driver_features_sel_;
  st.queue_sel = queue_sel_;
  st.acked_features = acked_features_;
  st.status = status_;
  st.interrupt_status = interrupt_status_.load();
  st.config_generation = config_generation_.load();
  for (auto& q : queues_) st.queues.push_back(MmioQueueState{q.config(), q.next_avail(), q.next_used()});
  return st;
}

uint32_t MmioTransport::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

std::string MmioTransport::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

void MmioTransport::signal_used_queue() {
  interrupt_status_.fetch_or(kInterruptUsedBuffer);
  if (irq_) irq_->trigger();
}

void MmioTransport::signal_config_change() {
  config_generation_.fetch_add(1);
  interrupt_status_.fetch_or(kInterruptConfigChange);
  if (irq_) irq_->trigger();
}

void MmioTransport::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (offset >= kConfig) {
    std::lock_guard lock(mu_);
    dev_->read_config(offset - kConfig, data);
    return;
  }
  // Registers are 32 bits wide and aligned; other accesses read as zero.
  if (data.size() != 4 || offset % 4) return;
  uint32_t v;
  if (offset == kInterruptStatus) {
    v = interrupt_status_.load();  // lock-free: the interrupt handler must not wait on device I/O
  } else {
    std::lock_guard lock(mu_);
    v = read_reg(offset);
  }
  std::memcpy(data.data(), &v, 4);
}

void MmioTransport::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= kConfig) {
    std::lock_guard lock(mu_);
    dev_->write_config(offset - kConfig, data);
    return;
  }
  if (data.size() != 4 || offset % 4) return;
  uint32_t v;
  std::memcpy(&v, data.data(), 4);
  if (offset == kQueueNotify) {
    bool live = false;
    {
      std::lock_guard lock(mu_);
      live = activated_ && (status_ & kStatusDriverOk) && !(status_ & kStatusNeedsReset) && v < queues_.size();
    }
    // Outside the lock: request processing may take long and the device
    // serializes itself against reset.
    if (live) dev_->notify(static_cast<uint16_t>(v));
    return;
  }
  if (offset == kInterruptAck) {
    interrupt_status_.fetch_and(~v);
    return;
  }
  std::lock_guard lock(mu_);
  write_reg(offset, v);
}

Virtqueue* MmioTransport::selected_queue() {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}

uint32_t MmioTransport::read_reg(uint64_t offset) {
  Virtqueue* q = selected_queue();
  switch (offset) {
    case kMagic: return kVirtioMmioMagic;
    case kVersion: return 2;
    case kDeviceId: return dev_->device_type();
    case kVendorId: return kVirtioMmioVendor;
    case kDeviceFeatures:
      if (device_features_sel_ > 1) return 0;
      return static_cast<uint32_t>(dev_->device_features() >> (32 * device_features_sel_));
    case kQueueNumMax: return q ? q->config().max_size : 0;
    case kQueueReady: return q && q->config().ready ? 1 : 0;
    case kStatus: return status_;
    case kConfigGeneration: return config_generation_.load();
    default: return 0;  // write-only or unknown registers
  }
}

bool MmioTransport::queue_config_allowed() const {
  // Queues are set up after FEATURES_OK and before DRIVER_OK (section 3.1.1).
  return (status_ & kStatusFeaturesOk) && !(status_ & kStatusDriverOk);
}

void MmioTransport::write_reg(uint64_t offset, uint32_t v) {
  switch (offset) {
    case kDeviceFeaturesSel: device_features_sel_ = v; return;
    case kDriverFeaturesSel: driver_features_sel_ = v; return;
    case kDriverFeatures:
      // Features are only negotiable between DRIVER and FEATURES_OK.
      if (!(status_ & kStatusDriver) || (status_ & kStatusFeaturesOk) || driver_features_sel_ > 1) return;
      if (driver_features_sel_ == 0)
        set_low(acked_features_, v);
      else
        set_high(acked_features_, v);
      return;
    case kQueueSel: queue_sel_ = v; return;
    case kStatus: write_status(v); return;
    default: break;
  }
  Virtqueue* q = selected_queue();
  if (!q || !queue_config_allowed()) return;
  auto& c = q->config();
  if (offset == kQueueReady) {
    c.ready = v == 1;
    return;
  }
  if (c.ready) return;  // a live queue's layout cannot change
  switch (offset) {
    case kQueueNum: c.size = static_cast<uint16_t>(std::min<uint32_t>(v, 0xffff)); break;
    case kQueueDescLow: set_low(c.desc_table, v); break;
    case kQueueDescHigh: set_high(c.desc_table, v); break;
    case kQueueDriverLow: set_low(c.avail_ring, v); break;
    case kQueueDriverHigh: set_high(c.avail_ring, v); break;
    case kQueueDeviceLow: set_low(c.used_ring, v); break;
    case kQueueDeviceHigh: set_high(c.used_ring, v); break;
    default: break;
  }
}

void MmioTransport::write_status(uint32_t v) {
  if (v == 0) {
    reset_locked();
    return;
  }
  // The driver only ever adds bits (section 2.1.2); anything else is ignored.
  if ((v & status_) != status_) return;
  uint32_t added = v & ~status_;
  if (added & kStatusFeaturesOk) {
    uint64_t offered = dev_->device_features();
    if (!(acked_features_ & kVirtioFVersion1) || (acked_features_ & ~offered)) {
      // Leave FEATURES_OK clear: the driver reads it back and gives up.
      v &= ~kStatusFeaturesOk;
    }
  }
  if ((added & kStatusDriverOk) && !(v & kStatusFeaturesOk)) v &= ~kStatusDriverOk;
  status_ = v;
  if ((added & kStatusDriverOk) && (status_ & kStatusDriverOk)) activate_locked();
}

void MmioTransport::activate_locked() {
  for (size_t i = 0; i < queues_.size(); ++i) {
    auto& q = queues_[i];
    q.set_event_idx(acked_features_ & kVirtioFEventIdx);
    if (!q.config().ready) continue;  // unused queues are allowed
    if (auto r = q.validate(mem_); !r) {
      fail_device_locked(std::move(r.error()).context(fmt::format("queue {}", i)));
      return;
    }
  }
  if (auto r = dev_->activate(mem_, queues_, acked_features_, *this); !r) {
    fail_device_locked(r.error());
    return;
  }
  activated_ = true;
}

void MmioTransport::fail_device_locked(const Error& e) {
  last_error_ = e.message;
  status_ |= kStatusNeedsReset;
  signal_config_change();
}

void MmioTransport::reset_locked() {
  if (activated_) dev_->reset();
  activated_ = false;
  for (auto& q : queues_) q.reset();
  device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
  acked_features_ = 0;
  status_ = 0;
  interrupt_status_ = 0;
}

std::string virtio_mmio_cmdline(uint64_t size, uint64_t base, uint32_t irq) {
  // The kernel parses the size with memparse(), which takes K/M/G suffixes.
  std::string sz;
  if (size != 0 && size % (1ULL << 30) == 0)
    sz = fmt::format("{}G", size >> 30);
  else if (size != 0 && size % (1ULL << 20) == 0)
    sz = fmt::format("{}M", size >> 20);
  else if (size != 0 && size % (1ULL << 10) == 0)
    sz = fmt::format("{}K", size >> 10);
  else
    sz = fmt::format("{}", size);
  return fmt::format("virtio_mmio.device={}@{:#x}:{}", sz, base, irq);
}

}  // namespace cairn
