#include "snapshot/tree/utf8.hpp"

namespace cairn::tree {

namespace {
// Length of the sequence a lead byte starts, or 0 when it cannot start one.
size_t sequence_length(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return 2;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xf0 && b <= 0xf4) return 4;
  return 0;  // continuation byte, overlong lead (0xc0, 0xc1) or beyond U+10FFFF
}
}  // namespace

Result<std::vector<char32_t>> decode_utf8(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto lead = static_cast<unsigned char>(s[i]);
    size_t n = sequence_length(lead);
    if (n == 0 || i + n > s.size())
      return fail(Errc::invalid_argument, "bad byte 0x{:02x} at offset {}", lead, i);
    char32_t c = n == 1 ? lead : (lead & (0x7f >> n));
    for (size_t k = 1; k < n; ++k) {
      auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xc0) != 0x80)
        return fail(Errc::invalid_argument, "bad byte 0x{:02x} at offset {}", b, i + k);
      c = (c << 6) | (b & 0x3f);
    }
    // Lead bytes exclude most overlongs; these catch the 3- and 4-byte ones,
    // UTF-16 surrogates and values past U+10FFFF.
    bool overlong = (n == 3 && c < 0x800) || (n == 4 && c < 0x10000);
    if (overlong || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
      return fail(Errc::invalid_argument, "bad sequence at offset {}", i);
    out.push_back(c);
    i += n;
  }
  return out;
}

size_t utf8_prefix_bytes(std::string_view s, size_t max_code_points) {
  size_t i = 0;
  for (size_t cp = 0; cp < max_code_points && i < s.size(); ++cp) {
    size_t n = sequence_length(static_cast<unsigned char>(s[i]));
    if (n == 0 || i + n > s.size()) {
      n = 1;
    } else {
      for (size_t k = 1; k < n; ++k)
        if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) { n = 1; break; }
    }
    i += n;
  }
  return i;
}

bool is_control(char32_t c) { return c < 0x20 || (c >= 0x7f && c <= 0x9f); }

bool is_white_space(char32_t c) {
  switch (c) {
    case 0x09: case 0x0a: case 0x0b: case 0x0c: case 0x0d: case 0x20: case 0x85: case 0xa0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200a;
  }
}

std::string code_point_label(char32_t c) { return fmt::format("U+{:04X}", static_cast<uint32_t>(c)); }

}  // namespace cairn::tree
