#include "snapshot/disk/disk_backend.hpp"

#include "snapshot/disk/io.hpp"

namespace cairn::disk {

DiskBackend::DiskBackend(std::unique_ptr<Chain> chain, bool read_only)
    : chain_(std::move(chain)), read_only_(read_only) {}

Result<std::unique_ptr<DiskBackend>> DiskBackend::open(const std::string& path, bool read_only) {
  CAIRN_TRY_CTX(chain, open_chain(path, !read_only), fmt::format("opening disk {}", path));
  return std::make_unique<DiskBackend>(std::move(chain), read_only);
}

Result<void> DiskBackend::read(uint64_t offset, std::span<uint8_t> out) { return chain_->read(offset, out); }

Result<void> DiskBackend::write(uint64_t offset, std::span<const uint8_t> in) {
  if (read_only_) return fail(Errc::access_denied, "disk is read-only");
  return chain_->write(offset, in);
}

Result<void> DiskBackend::flush() {
  if (read_only_) return {};
  return chain_->flush();
}

// Discard drops whole blocks like write-zeroes; virtio allows either.
Result<void> DiskBackend::discard(uint64_t offset, uint64_t len) { return write_zeroes(offset, len); }

Result<void> DiskBackend::write_zeroes(uint64_t offset, uint64_t len) {
  if (read_only_) return fail(Errc::access_denied, "disk is read-only");
  return chain_->write_zeroes(offset, len);
}

std::string DiskBackend::id() const {
  std::string s;
  for (char ch : uuid_text(chain_->top().header().uuid))
    if (ch != '-') s += ch;
  return s.substr(0, 20);
}

}  // namespace cairn::disk
