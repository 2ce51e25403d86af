// A BlockBackend over a raw disk image: byte N of the virtual disk is byte N
// of the file. The size is fixed when the file is opened and must be a
// multiple of 512.
#pragma once
#include <memory>
#include <string>

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

 private:
  RawFileBackend(UniqueFd fd, std::string path, uint64_t size, bool read_only);
  Result<void> check(uint64_t offset, uint64_t len, bool writing) const;
  Result<void> write_zero_bytes(uint64_t offset, uint64_t len);

  UniqueFd fd_;
  std::string path_;
  std::string id_;
  uint64_t size_;
  bool read_only_;
};

}  // namespace cairn
