// Strict UTF-8 decoding for checkpoint names and descriptions, which are
// limited in code points (as Hyper-V counts them), not bytes.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/base/error.hpp"

namespace cairn::tree {

// Decodes `s`, refusing overlong forms, surrogates, values above U+10FFFF
// and truncated sequences: Errc::invalid_argument, "bad byte 0x80 at offset 3".
Result<std::vector<char32_t>> decode_utf8(std::string_view s);

// The longest byte prefix of `s` holding at most `max_code_points` code
// points, never splitting a sequence (invalid bytes count as one each).
size_t utf8_prefix_bytes(std::string_view s, size_t max_code_points);

bool is_control(char32_t c);      // C0, DEL and C1
bool is_white_space(char32_t c);  // Unicode White_Space

// "U+000A" style, for messages.
std::string code_point_label(char32_t c);

}  // namespace cairn::tree
