// A BlockBackend over a raw disk image: byte N of the virtual disk is byte N
// of the file. The size is fixed when the file is opened and must be a
// multiple of 512.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "devices/block_backend.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

class RawFileBackend : public BlockBackend {
 public:
  static Result<std::unique_ptr<RawFileBackend>> open(const std::string& path, bool read_only);

  uint64_t size() const override { return size_; }
  bool read_only() const override { return read_only_; }
  Result<void> read(uint64_t offset, std::span<uint8_t> out) override;
  Result<void> write(uint64_t offset, std::span<const uint8_t> in) override;
  Result<void> flush() override;
  Result<void> discard(uint64_t offset, uint64_t len) override;
  Result<void> write_zeroes(uint64_t offset, uint64_t len) override;
  // The file's base name, truncated to 20 bytes.
  std::string id() const override { return id_; }

  // Write tracking, so that the file can be copied while the guest writes it
  // and the copy then patched with what changed: from track_writes() on, the
  // blocks (of `block_size` bytes) that writes, discards and zeroing touch
  // are remembered. A write already in flight is noted once it lands.
  void track_writes(uint64_t block_size);
  bool tracking() const;
  uint64_t tracked_block_size() const;
  // The touched blocks in ascending order, forgotten here; tracking stops
  // unless `keep_tracking` (a copy brought up to date while the guest runs).
  std::vector<uint64_t> take_written_blocks(bool keep_tracking = false);

 private:
  RawFileBackend(UniqueFd fd, std::string path, uint64_t size, bool read_only);
  Result<void> check(uint64_t offset, uint64_t len, bool writing) const;
  Result<void> write_zero_bytes(uint64_t offset, uint64_t len);
  void note_written(uint64_t offset, uint64_t len);

  UniqueFd fd_;
  std::string path_;
  std::string id_;
  uint64_t size_;
  bool read_only_;
  mutable std::mutex track_mu_;
  uint64_t track_block_ = 0;         // 0: not tracking
  std::vector<uint64_t> written_;    // one bit per block
};

}  // namespace cairn
