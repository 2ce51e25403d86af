// Small checked wrappers over positional file I/O used by the disk layers.
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "snapshot/disk/format.hpp"
#include "vmm/base/error.hpp"

namespace cairn::disk {

// Reads exactly out.size() bytes; a short read (end of file) is Errc::corrupt.
Result<void> pread_full(int fd, uint64_t off, std::span<uint8_t> out);
Result<void> pwrite_full(int fd, uint64_t off, std::span<const uint8_t> in);
Result<uint64_t> file_size(int fd);
Result<void> datasync(int fd);
// fsync of the folder holding `path`, so a rename or create in it is durable.
Result<void> sync_parent_dir(const std::string& path);

// A fresh random RFC 4122 version 4 UUID (getrandom).
Result<Uuid> new_uuid();
std::string uuid_text(const Uuid& u);  // 8-4-4-4-12 lower-case hex

}  // namespace cairn::disk
