// virtio-blk's storage over a cairn chain: read-write at the top layer,
// flush = durable on the host.
#pragma once
#include <memory>

#include "devices/block_backend.hpp"
#include "snapshot/disk/chain.hpp"

namespace cairn::disk {

class DiskBackend final : public BlockBackend {
 public:
  explicit DiskBackend(std::unique_ptr<Chain> chain, bool read_only);
  // Opens the chain whose top layer is `path` (writable unless read_only).
  static Result<std::unique_ptr<DiskBackend>> open(const std::string& path, bool read_only);

  uint64_t size() const override { return chain_->size(); }
  bool read_only() const override { return read_only_; }
  Result<void> read(uint64_t offset, std::span<uint8_t> out) override;
  Result<void> write(uint64_t offset, std::span<const uint8_t> in) override;
  Result<void> flush() override;
  Result<void> discard(uint64_t offset, uint64_t len) override;
  Result<void> write_zeroes(uint64_t offset, uint64_t len) override;
  std::string id() const override;

  Chain& chain() { return *chain_; }

 private:
  std::unique_ptr<Chain> chain_;
  bool read_only_;
};

}  // namespace cairn::disk
