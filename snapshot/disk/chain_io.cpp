// Reading and writing through a chain.
#include <algorithm>
#include <cstring>

#include "snapshot/disk/chain.hpp"
#include "snapshot/disk/io.hpp"

namespace cairn::disk {

Result<void> Chain::check_range(uint64_t off, uint64_t len) const {
  if (off > size() || len > size() - off)
    return fail(Errc::invalid_argument, "range {:#x}+{:#x} is outside the {}-byte disk", off, len, size());
  return {};
}

Result<void> Chain::read_below(uint64_t block, std::span<uint8_t> out) const {
  Below b = below_[block];
  if (b.layer == 0) {
    std::memset(out.data(), 0, out.size());
    return {};
  }
  return pread_full(layers_[b.layer]->fd(), entry_offset(b.entry), out);
}

Result<void> Chain::read(uint64_t off, std::span<uint8_t> out) {
  if (auto r = check_range(off, out.size()); !r) return r;
  std::lock_guard lock(mu_);
  const uint64_t bs = block_size();
  Layer& t = top();
  size_t done = 0;
  while (done < out.size()) {
    uint64_t pos = off + done;
    uint64_t blk = pos / bs, in = pos % bs;
    size_t n = size_t(std::min<uint64_t>(bs - in, out.size() - done));
    uint64_t e = t.entry(blk);
    int fd = t.fd();
    if (entry_state(e) == EntryState::unallocated) {
      Below b = below_[blk];
      e = b.entry;
      fd = layers_[b.layer]->fd();
    }
    auto piece = out.subspan(done, n);
    if (entry_state(e) == EntryState::data) {
      // Extend over following blocks that sit contiguously in the same file.
      uint64_t file_off = entry_offset(e) + in;
      while (done + n < out.size()) {
        uint64_t nb = blk + (n + in) / bs;
        uint64_t ne = t.entry(nb);
        int nfd = t.fd();
        if (entry_state(ne) == EntryState::unallocated) {
          ne = below_[nb].entry;
          nfd = layers_[below_[nb].layer]->fd();
        }
        if (nfd != fd || entry_state(ne) != EntryState::data || entry_offset(ne) != file_off + n) break;
        n += size_t(std::min<uint64_t>(bs, out.size() - done - n));
      }
      piece = out.subspan(done, n);
      if (auto r = pread_full(fd, file_off, piece); !r) return r;
    } else {
      std::memset(piece.data(), 0, piece.size());
    }
    done += n;
  }
  return {};
}

Result<void> Chain::write_block(uint64_t blk, uint64_t in, std::span<const uint8_t> data) {
  Layer& t = top();
  const uint64_t bs = block_size();
  uint64_t e = t.entry(blk);
  if (entry_state(e) == EntryState::data)
    return pwrite_full(t.fd(), entry_offset(e) + in, data);
  std::span<const uint8_t> whole = data;
  if (data.size() != bs) {
    // Copy-on-write: the rest of the block comes from the parents (or is
    // zero when this layer hides them).
    if (entry_state(e) == EntryState::zero) {
      std::memset(scratch_.data(), 0, bs);
    } else if (auto r = read_below(blk, scratch_); !r) {
      return r;
    }
    std::memcpy(scratch_.data() + in, data.data(), data.size());
    whole = scratch_;
  }
  uint64_t slot = t.allocate_slot();
  if (auto r = pwrite_full(t.fd(), slot, whole); !r) return r;
  t.set_entry(blk, make_data_entry(slot));
  return {};
}

Result<void> Chain::write(uint64_t off, std::span<const uint8_t> in) {
  if (auto r = check_range(off, in.size()); !r) return r;
  std::lock_guard lock(mu_);
  Layer& t = top();
  if (auto r = t.begin_change(); !r) return r;
  const uint64_t bs = block_size();
  size_t done = 0;
  while (done < in.size()) {
    uint64_t pos = off + done;
    uint64_t blk = pos / bs, o = pos % bs;
    size_t n = size_t(std::min<uint64_t>(bs - o, in.size() - done));
    uint64_t e = t.entry(blk);
    if (entry_state(e) != EntryState::data && n != bs) {
      if (auto r = write_block(blk, o, in.subspan(done, n)); !r) return r;
      done += n;
      continue;
    }
    // A run of blocks that land contiguously in the file (held in place, or
    // whole new blocks taking consecutive slots) becomes one pwrite.
    uint64_t target = entry_state(e) == EntryState::data ? entry_offset(e) + o : t.peek_slot();
    size_t len = 0;
    uint64_t b = blk;
    new_blocks_.clear();
    for (;;) {
      size_t nn = size_t(std::min<uint64_t>(bs - (len ? 0 : o), in.size() - done - len));
      uint64_t be = t.entry(b);
      if (entry_state(be) == EntryState::data) {
        if (entry_offset(be) + (len ? 0 : o) != target + len) break;
      } else {
        if (nn != bs || t.peek_slot() != target + len) break;
        new_blocks_.push_back({b, t.allocate_slot()});
      }
      len += nn;
      ++b;
      if (done + len == in.size()) break;
    }
    if (auto r = pwrite_full(t.fd(), target, in.subspan(done, len)); !r) return r;
    for (auto [nb, slot] : new_blocks_) t.set_entry(nb, make_data_entry(slot));
    done += len;
  }
  t.note_data_written();
  return {};
}

Result<void> Chain::write_zeroes(uint64_t off, uint64_t len) {
  if (auto r = check_range(off, len); !r) return r;
  std::lock_guard lock(mu_);
  if (auto r = top().begin_change(); !r) return r;
  const uint64_t bs = block_size();
  Layer& t = top();
  static const std::vector<uint8_t> zeros(size_t(1) << kMaxBlockShift, 0);
  uint64_t done = 0;
  while (done < len) {
    uint64_t pos = off + done;
    uint64_t blk = pos / bs, o = pos % bs;
    uint64_t n = std::min<uint64_t>(bs - o, len - done);
    uint64_t e = t.entry(blk);
    bool parents_hold_data = below_[blk].layer != 0;
    if (n == bs || pos + n == size()) {
      // Whole block (or the disk's tail): drop this layer's copy.
      if (o == 0) {
        t.set_entry(blk, parents_hold_data ? kZeroEntry : 0);
        done += n;
        continue;
      }
    }
    bool already_zero = entry_state(e) == EntryState::zero ||
                        (entry_state(e) == EntryState::unallocated && !parents_hold_data);
    if (!already_zero) {
      if (auto r = write_block(blk, o, std::span(zeros).first(n)); !r) return r;
      t.note_data_written();
    }
    done += n;
  }
  return {};
}

Chain::~Chain() {
  if (!layers_.empty() && top().writable()) (void)top().commit();
}

Result<void> Chain::flush() {
  std::lock_guard lock(mu_);
  return top().commit();
}

}  // namespace cairn::disk
