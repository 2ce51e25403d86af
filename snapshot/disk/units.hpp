// Sizes as users type them.
#pragma once
#include <cstdint>
#include <string>

#include "vmm/base/error.hpp"

namespace cairn::disk {

// "4096", "64K", "512M", "1G", "2T" (powers of 1024).
Result<uint64_t> parse_size(const std::string& text);

}  // namespace cairn::disk
