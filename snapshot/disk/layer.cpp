#include "snapshot/disk/layer.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "snapshot/disk/io.hpp"

namespace cairn::disk {
namespace {

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace

Result<void> Layer::create(const std::string& path, const CreateParams& p) {
  if (p.virtual_size == 0 || p.virtual_size % 512 || p.virtual_size > kMaxVirtualSize)
    return fail(Errc::invalid_argument, "disk size {} must be a non-zero multiple of 512 up to 64 TiB", p.virtual_size);
  if (p.block_shift < kMinBlockShift || p.block_shift > kMaxBlockShift)
    return fail(Errc::invalid_argument, "block size must be a power of two from 4 KiB to 2 MiB");
  if (p.parent && (p.parent->path.empty() || p.parent->path.size() > kMaxPathLen))
    return fail(Errc::invalid_argument, "parent path must be 1..{} bytes", kMaxPathLen);
  if (::access(path.c_str(), F_OK) == 0) return fail(Errc::invalid_argument, "{} already exists", path);
  Header h;
  auto id = new_uuid();
  if (!id) return std::unexpected(id.error());
  h.uuid = *id;
  h.seq = 1;
  h.generation = 1;
  h.virtual_size = p.virtual_size;
  h.block_shift = p.block_shift;
  h.log_bytes = p.log_bytes;
  h.bat_entries = (p.virtual_size + h.block_size() - 1) / h.block_size();
  h.bat_offset[0] = h.log_offset + h.log_bytes;
  h.bat_offset[1] = h.bat_offset[0] + h.bat_region_bytes();
  h.data_offset = round_up(h.bat_offset[1] + h.bat_region_bytes(), std::min<uint64_t>(h.block_size(), 65536));
  std::vector<uint8_t> zeros(h.bat_bytes(), 0);
  h.bat_checksum = checksum(zeros);
  if (p.parent) {
    h.has_parent = true;
    h.parent = *p.parent;
  }

  std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return fail_errno("creating {}", tmp);
  auto cleanup = [&](Error e) {
    ::unlink(tmp.c_str());
    return std::unexpected(std::move(e).context(fmt::format("creating {}", path)));
  };
  if (::ftruncate(fd.get(), off_t(h.data_offset)) != 0) return cleanup(Error{Errc::io, "ftruncate failed"});
  // Both slots hold the same layer; slot 1 is current (larger seq).
  std::array<uint8_t, kHeaderSlotBytes> slot;
  encode_header(h, slot);
  if (auto r = pwrite_full(fd.get(), kHeaderSlotBytes, slot); !r) return cleanup(r.error());
  h.seq = 0;
  encode_header(h, slot);
  if (auto r = pwrite_full(fd.get(), 0, slot); !r) return cleanup(r.error());
  if (::fsync(fd.get()) != 0) return cleanup(Error{Errc::io, "fsync failed"});
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto e = fail_errno("renaming {} to {}", tmp, path);
    ::unlink(tmp.c_str());
    return e;
  }
  return sync_parent_dir(path);
}

Result<std::unique_ptr<Layer>> Layer::open(const std::string& path, bool writable) {
  std::unique_ptr<Layer> l(new Layer());
  l->path_ = path;
  l->writable_ = writable;
  l->opened_rw_ = writable;
  l->fd_ = UniqueFd(::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (!l->fd_) return fail_errno("opening layer {}", path);
  // Writers exclude everyone; readers only exclude writers.
  if (::flock(l->fd_.get(), (writable ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0)
    return fail(Errc::busy, "layer {} is in use by another process", path);
  if (auto r = l->load(); !r) return std::unexpected(std::move(r.error()).context(fmt::format("layer {}", path)));
  if (writable) {
    // A fresh log epoch: log blocks left past a crash point can never replay.
    if (auto r = l->checkpoint(); !r) return std::unexpected(std::move(r.error()).context(fmt::format("layer {}", path)));
  }
  return l;
}

Result<std::optional<Header>> peek_header(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail_errno("opening {}", path);
  CAIRN_TRY_CTX(size, file_size(fd.get()), fmt::format("reading the size of {}", path));
  std::vector<uint8_t> slots(2 * kHeaderSlotBytes);
  const size_t n = std::min<uint64_t>(size, slots.size());
  if (auto r = pread_full(fd.get(), 0, std::span(slots).first(n)); !r) return std::unexpected(r.error());
  // Either slot may be torn, but a torn slot still starts with the magic.
  constexpr char kMagic[8] = {'C', 'A', 'I', 'R', 'N', 'D', 'S', 'K'};
  auto magic_at = [&](size_t off) { return n >= off + 8 && std::memcmp(slots.data() + off, kMagic, 8) == 0; };
  if (!magic_at(0) && !magic_at(kHeaderSlotBytes)) return std::nullopt;
  if (n < slots.size()) return fail(Errc::corrupt, "{} is {} bytes, shorter than its headers", path, size);
  int slot = 0;
  CAIRN_TRY_CTX(h, pick_header(std::span(slots).first(kHeaderSlotBytes), std::span(slots).subspan(kHeaderSlotBytes),
                               &slot), fmt::format("reading the header of {}", path));
  return h;
}

Result<void> Layer::load() {
  CAIRN_TRY_CTX(size, file_size(fd_.get()), "reading size");
  file_size_ = size;
  if (size < kLogOffset) return fail(Errc::corrupt, "file is {} bytes, shorter than its headers", size);
  std::vector<uint8_t> slots(2 * kHeaderSlotBytes);
  if (auto r = pread_full(fd_.get(), 0, slots); !r) return std::unexpected(r.error());
  CAIRN_TRY_CTX(h, pick_header(std::span(slots).first(kHeaderSlotBytes),
                               std::span(slots).subspan(kHeaderSlotBytes), &header_slot_), "reading header");
  if (auto r = check_header_fits(h, size); !r) return std::unexpected(r.error());
  if (h.log_offset + h.log_bytes > size)
    return fail(Errc::corrupt, "log region ends past the end of the file");
  hdr_ = h;

  std::vector<uint8_t> raw(h.bat_bytes());
  if (auto r = pread_full(fd_.get(), h.bat_offset[h.bat_active], raw); !r)
    return std::unexpected(std::move(r.error()).context("reading BAT"));
  if (checksum(raw) != h.bat_checksum) return fail(Errc::corrupt, "BAT checksum mismatch (copy {})", h.bat_active);
  bat_.resize(h.bat_entries);
  std::memcpy(bat_.data(), raw.data(), raw.size());

  // Replay the log prefix of the current epoch.
  std::vector<uint8_t> blk(kLogBlockBytes);
  std::vector<LogRecord> recs;
  uint32_t nblocks = uint32_t(h.log_bytes / kLogBlockBytes);
  for (log_next_ = 0; log_next_ < nblocks; ++log_next_) {
    if (!pread_full(fd_.get(), h.log_offset + uint64_t(log_next_) * kLogBlockBytes, blk)) break;
    recs.clear();
    if (!parse_log_block(blk, h.log_epoch, log_next_, &recs)) break;
    for (auto& r : recs) {
      if (r.block >= bat_.size()) return fail(Errc::corrupt, "log block {} names block {} past the BAT", log_next_, r.block);
      bat_[r.block] = r.entry;
    }
  }

  uint64_t bs = h.block_size();
  end_slot_ = size > h.data_offset ? (size - h.data_offset) / bs : 0;
  std::vector<uint8_t> used(end_slot_, 0);
  for (uint64_t i = 0; i < bat_.size(); ++i) {
    if (auto r = check_entry(h, size, i, bat_[i]); !r) return std::unexpected(r.error());
    if (entry_state(bat_[i]) != EntryState::data) continue;
    uint64_t slot = (entry_offset(bat_[i]) - h.data_offset) / bs;
    if (used[slot]) return fail(Errc::corrupt, "BAT entry {} shares data slot {} with another block", i, slot);
    used[slot] = 1;
  }
  for (uint64_t s = end_slot_; s-- > 0;)
    if (!used[s]) free_.push_back(h.data_offset + s * bs);  // lowest slot last = reused first
  dirty_mark_.assign(bat_.size(), 0);
  return {};
}

uint64_t Layer::data_blocks() const {
  return uint64_t(std::count_if(bat_.begin(), bat_.end(), [](uint64_t e) { return entry_state(e) == EntryState::data; }));
}
uint64_t Layer::zero_blocks() const {
  return uint64_t(std::count_if(bat_.begin(), bat_.end(), [](uint64_t e) { return entry_state(e) == EntryState::zero; }));
}

Result<void> Layer::begin_change() {
  if (!writable_) return fail(Errc::invalid_state, "layer {} is open read-only", path_);
  if (changed_) return {};
  Header h = hdr_;
  h.generation++;
  if (auto r = write_header(h); !r) return r;
  changed_ = true;
  return {};
}

uint64_t Layer::allocate_slot() {
  if (!free_.empty()) {
    uint64_t off = free_.back();
    free_.pop_back();
    return off;
  }
  uint64_t off = hdr_.data_offset + end_slot_ * hdr_.block_size();
  end_slot_++;
  file_size_ = std::max(file_size_, off + hdr_.block_size());
  return off;
}

void Layer::set_entry(uint64_t i, uint64_t e) {
  uint64_t old = bat_[i];
  if (old == e) return;
  if (entry_state(old) == EntryState::data) {
    // Punching now is safe: until the entry change is durable the old entry
    // reads zeros, which is what a discard or write-zeroes promised anyway.
    ::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(entry_offset(old)),
                off_t(hdr_.block_size()));
    pending_free_.push_back(entry_offset(old));
  }
  bat_[i] = e;
  if (!dirty_mark_[i]) {
    dirty_mark_[i] = 1;
    dirty_.push_back(i);
  }
}

Result<void> Layer::commit() {
  if (!writable_) return {};
  if (dirty_.empty()) {
    if (!unsynced_) return {};
    if (auto r = datasync(fd_.get()); !r) return r;
    unsynced_ = false;
    return {};
  }
  // Data before the entries that point to it.
  if (auto r = datasync(fd_.get()); !r) return r;
  uint64_t need = (dirty_.size() + kLogRecordsPerBlock - 1) / kLogRecordsPerBlock;
  if (log_next_ + need > hdr_.log_bytes / kLogBlockBytes) {
    if (auto r = checkpoint(); !r) return r;
  } else {
    if (auto r = append_log(); !r) return r;
  }
  for (uint64_t i : dirty_) dirty_mark_[i] = 0;
  dirty_.clear();
  unsynced_ = false;
  free_.insert(free_.end(), pending_free_.begin(), pending_free_.end());
  pending_free_.clear();
  return {};
}

Result<void> Layer::end_writes() {
  if (!writable_) return {};
  if (auto r = commit(); !r) return r;
  if (::flock(fd_.get(), LOCK_SH | LOCK_NB) != 0) return fail_errno("sharing the lock on layer {}", path_);
  writable_ = false;
  return {};
}

Result<void> Layer::resume_writes() {
  if (writable_) return {};
  if (!opened_rw_) return fail(Errc::invalid_state, "layer {} was opened read-only", path_);
  if (::flock(fd_.get(), LOCK_EX | LOCK_NB) != 0)
    return fail(Errc::busy, "layer {} is in use by another process", path_);
  writable_ = true;
  return {};
}

Result<void> Layer::append_log() {
  std::vector<uint8_t> buf;
  std::vector<LogRecord> recs;
  std::array<uint8_t, kLogBlockBytes> blk;
  uint32_t first = log_next_;
  for (size_t i = 0; i < dirty_.size(); i += kLogRecordsPerBlock) {
    recs.clear();
    for (size_t j = i; j < dirty_.size() && j < i + kLogRecordsPerBlock; ++j) recs.push_back({dirty_[j], bat_[dirty_[j]]});
    encode_log_block(hdr_.log_epoch, log_next_++, recs, blk);
    buf.insert(buf.end(), blk.begin(), blk.end());
  }
  if (auto r = pwrite_full(fd_.get(), hdr_.log_offset + uint64_t(first) * kLogBlockBytes, buf); !r)
    return std::unexpected(std::move(r.error()).context("writing log"));
  return datasync(fd_.get());
}

Result<void> Layer::checkpoint() {
  Header h = hdr_;
  h.bat_active = 1 - hdr_.bat_active;
  std::span<const uint8_t> raw(reinterpret_cast<const uint8_t*>(bat_.data()), bat_.size() * 8);
  h.bat_checksum = checksum(raw);
  h.log_epoch = hdr_.log_epoch + 1;
  if (auto r = pwrite_full(fd_.get(), h.bat_offset[h.bat_active], raw); !r)
    return std::unexpected(std::move(r.error()).context("writing BAT"));
  if (auto r = datasync(fd_.get()); !r) return r;
  if (auto r = write_header(h); !r) return r;
  log_next_ = 0;
  return {};
}

Result<void> Layer::write_header(Header h) {
  if (!writable_) return fail(Errc::invalid_state, "layer {} is open read-only", path_);
  h.seq = hdr_.seq + 1;
  std::array<uint8_t, kHeaderSlotBytes> slot;
  encode_header(h, slot);
  // Never the slot holding the current header: a torn write leaves it intact.
  int target = 1 - header_slot_;
  uint64_t off = uint64_t(target) * kHeaderSlotBytes;
  if (auto r = pwrite_full(fd_.get(), off, slot); !r) return std::unexpected(std::move(r.error()).context("writing header"));
  if (auto r = datasync(fd_.get()); !r) return r;
  hdr_ = h;
  header_slot_ = target;
  return {};
}

}  // namespace cairn::disk
