#include "devices/raw_file_backend.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

namespace cairn {

Result<std::unique_ptr<RawFileBackend>> RawFileBackend::open(const std::string& path, bool read_only) {
  UniqueFd fd(::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!fd) return fail_errno("opening disk image {}", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail_errno("inspecting disk image {}", path);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return fail(Errc::invalid_argument, "disk image {} is neither a regular file nor a block device", path);
  // lseek gives the size of block devices too, where st_size is 0.
  off_t end = ::lseek(fd.get(), 0, SEEK_END);
  if (end < 0) return fail_errno("measuring disk image {}", path);
  uint64_t size = static_cast<uint64_t>(end);
  if (size % 512 != 0)
    return fail(Errc::invalid_argument, "disk image {} is {} bytes, not a multiple of 512", path, size);
  return std::unique_ptr<RawFileBackend>(new RawFileBackend(std::move(fd), path, size, read_only));
}

RawFileBackend::RawFileBackend(UniqueFd fd, std::string path, uint64_t size, bool read_only)
    : fd_(std::move(fd)), path_(std::move(path)), size_(size), read_only_(read_only) {
  auto slash = path_.find_last_of('/');
  id_ = slash == std::string::npos ? path_ : path_.substr(slash + 1);
  if (id_.size() > 20) id_.resize(20);
}

Result<void> RawFileBackend::check(uint64_t offset, uint64_t len, bool writing) const {
  if (writing && read_only_) return fail(Errc::access_denied, "disk image {} is read-only", path_);
  if (offset > size_ || len > size_ - offset)
    return fail(Errc::invalid_argument, "{:#x}+{:#x} is past the end of {} ({} bytes)", offset, len, path_, size_);
  return {};
}

Result<void> RawFileBackend::read(uint64_t offset, std::span<uint8_t> out) {
  if (auto r = check(offset, out.size(), false); !r) return r;
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd_.get(), out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("reading {} bytes at {:#x} from {}", out.size(), offset, path_);
    }
    if (n == 0) return fail(Errc::io, "{} ended at {:#x}; it shrank while in use", path_, offset + done);
    done += static_cast<size_t>(n);
  }
  return {};
}

Result<void> RawFileBackend::write(uint64_t offset, std::span<const uint8_t> in) {
  if (auto r = check(offset, in.size(), true); !r) return r;
  size_t done = 0;
  while (done < in.size()) {
    ssize_t n = ::pwrite(fd_.get(), in.data() + done, in.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("writing {} bytes at {:#x} to {}", in.size(), offset, path_);
    }
    done += static_cast<size_t>(n);
  }
  note_written(offset, in.size());
  return {};
}

Result<void> RawFileBackend::flush() {
  if (read_only_) return {};
  if (::fdatasync(fd_.get()) != 0) return fail_errno("flushing {}", path_);
  return {};
}

Result<void> RawFileBackend::write_zero_bytes(uint64_t offset, uint64_t len) {
  static const std::vector<uint8_t> zeros(64 * 1024, 0);
  while (len > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(len, zeros.size()));
    if (auto r = write(offset, std::span(zeros.data(), n)); !r) return r;
    offset += n;
    len -= n;
  }
  return {};
}

Result<void> RawFileBackend::discard(uint64_t offset, uint64_t len) {
  if (auto r = check(offset, len, true); !r) return r;
  if (len == 0) return {};
  if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(len)) == 0) {
    note_written(offset, len);
    return {};
  }
  // File systems (and block devices) without hole punching: zeros are a valid discard.
  if (errno == EOPNOTSUPP || errno == ENODEV) return write_zero_bytes(offset, len);
  return fail_errno("discarding {:#x}+{:#x} of {}", offset, len, path_);
}

Result<void> RawFileBackend::write_zeroes(uint64_t offset, uint64_t len) {
  if (auto r = check(offset, len, true); !r) return r;
  if (len == 0) return {};
  if (::fallocate(fd_.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(len)) == 0) {
    note_written(offset, len);
    return {};
  }
  if (errno == EOPNOTSUPP || errno == ENODEV) return write_zero_bytes(offset, len);
  return fail_errno("zeroing {:#x}+{:#x} of {}", offset, len, path_);
}

void RawFileBackend::track_writes(uint64_t block_size) {
  std::lock_guard lk(track_mu_);
  track_block_ = block_size;
  written_.assign((size_ / block_size + 1 + 63) / 64, 0);
}

bool RawFileBackend::tracking() const {
  std::lock_guard lk(track_mu_);
  return track_block_ != 0;
}

uint64_t RawFileBackend::tracked_block_size() const {
  std::lock_guard lk(track_mu_);
  return track_block_;
}

// Called after the data landed: a copy that started after track_writes()
// returned either read the new bytes or finds the block noted here.
void RawFileBackend::note_written(uint64_t offset, uint64_t len) {
  std::lock_guard lk(track_mu_);
  if (track_block_ == 0 || len == 0) return;
  for (uint64_t b = offset / track_block_; b <= (offset + len - 1) / track_block_; ++b)
    written_[b / 64] |= uint64_t{1} << (b % 64);
}

std::vector<uint64_t> RawFileBackend::take_written_blocks(bool keep_tracking) {
  std::lock_guard lk(track_mu_);
  std::vector<uint64_t> out;
  for (size_t w = 0; w < written_.size(); ++w)
    for (uint64_t bits = written_[w]; bits != 0; bits &= bits - 1)
      out.push_back(w * 64 + static_cast<uint64_t>(__builtin_ctzll(bits)));
  if (keep_tracking) {
    std::fill(written_.begin(), written_.end(), 0);
    return out;
  }
  track_block_ = 0;
  written_.clear();
  return out;
}

}  // namespace cairn
