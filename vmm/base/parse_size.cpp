#include "vmm/base/parse_size.hpp"

#include <charconv>

namespace cairn {

Result<uint64_t> parse_size(std::string_view text) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end == text.data())
    return fail(Errc::invalid_argument, "size '{}' is not a number (examples: 4096, 64K, 256M, 1G)", text);
  std::string_view unit(end, text.data() + text.size() - end);
  int shift;
  if (unit.empty() || unit == "B") shift = 0;
  else if (unit == "K" || unit == "k" || unit == "KiB") shift = 10;
  else if (unit == "M" || unit == "m" || unit == "MiB") shift = 20;
  else if (unit == "G" || unit == "g" || unit == "GiB") shift = 30;
  else if (unit == "T" || unit == "t" || unit == "TiB") shift = 40;
  else return fail(Errc::invalid_argument, "size '{}' has an unknown unit (use K, M, G or T)", text);
  if (shift && v > (UINT64_MAX >> shift)) return fail(Errc::invalid_argument, "size '{}' is too large", text);
  return v << shift;
}

}  // namespace cairn
