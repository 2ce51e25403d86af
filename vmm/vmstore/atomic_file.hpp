// Small files written so that a crash leaves either the old or the new
// content, never a mix: write a temporary file in the same folder, fsync it,
// rename it over the target, fsync the folder.
#pragma once
#include <string>
#include <string_view>

#include "vmm/base/error.hpp"

namespace cairn {

// Writes `data` to `path` atomically; the file gets `mode` (before umask).
Result<void> write_file_atomic(const std::string& path, std::string_view data, unsigned mode = 0644);

// Reads a whole file of at most `max_bytes` (larger: Errc::corrupt).
Result<std::string> read_small_file(const std::string& path, size_t max_bytes);

// fsyncs a folder so that a rename or unlink in it is durable.
Result<void> fsync_dir(const std::string& dir);

}  // namespace cairn
