// Sizes as users type them: "4096", "64K", "512M", "1G", "2T" (powers of 1024).
#pragma once
#include <cstdint>
#include <string_view>

#include "vmm/base/error.hpp"

namespace cairn {
Result<uint64_t> parse_size(std::string_view text);
}
