#include "vmm/machine/disk_open.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "devices/raw_file_backend.hpp"
#include "snapshot/disk/disk_backend.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn {

namespace {
// The first bytes of a cairn layer (docs/disk-format.md).
constexpr char kLayerMagic[8] = {'C', 'A', 'I', 'R', 'N', 'D', 'S', 'K'};

Result<bool> is_cairn_layer(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail_errno("opening disk {}", path);
  char magic[8] = {};
  ssize_t n = ::pread(fd.get(), magic, sizeof(magic), 0);
  if (n < 0) return fail_errno("reading disk {}", path);
  return n == sizeof(magic) && std::memcmp(magic, kLayerMagic, sizeof(magic)) == 0;
}
}  // namespace

Result<std::shared_ptr<BlockBackend>> open_disk(const DiskConfig& disk) {
  auto layered = is_cairn_layer(disk.path);
  if (!layered) return std::unexpected(layered.error());
  if (*layered) {
    auto b = disk::DiskBackend::open(disk.path, disk.read_only);
    if (!b) return std::unexpected(std::move(b.error()).context(fmt::format("disk {}", disk.path)));
    return std::shared_ptr<BlockBackend>(std::move(*b));
  }
  auto b = RawFileBackend::open(disk.path, disk.read_only);
  if (!b) return std::unexpected(std::move(b.error()).context(fmt::format("disk {}", disk.path)));
  return std::shared_ptr<BlockBackend>(std::move(*b));
}

}  // namespace cairn
