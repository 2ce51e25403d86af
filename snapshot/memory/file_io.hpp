// Positional file I/O with full-length semantics, and the durable-write
// helpers checkpoints use (fsync of files and of the folders holding them).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace cairn::snap {

// Reads exactly out.size() bytes at `off`; hitting the end of the file is Errc::corrupt
// ("truncated"), `what` names the file in messages.
Result<void> pread_full(int fd, uint64_t off, std::span<uint8_t> out, const std::string& what);
Result<void> pwrite_full(int fd, uint64_t off, std::span<const uint8_t> in, const std::string& what);
Result<uint64_t> file_size(int fd);

Result<UniqueFd> open_read(const std::string& path);
// Creates a new file (fails if it exists).
Result<UniqueFd> create_new(const std::string& path);
Result<void> fsync_fd(int fd, const std::string& what);
Result<void> fsync_dir(const std::string& dir);

// A whole small file, refused (Errc::corrupt) when larger than `max_bytes`.
Result<std::vector<uint8_t>> read_small_file(const std::string& path, uint64_t max_bytes);

}  // namespace cairn::snap
