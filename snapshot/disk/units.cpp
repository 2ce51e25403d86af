#include "snapshot/disk/units.hpp"

#include <string>

namespace cairn::disk {

Result<uint64_t> parse_size(const std::string& text) {
  if (text.empty()) return fail(Errc::invalid_argument, "empty size");
  size_t pos = 0;
  uint64_t v = 0;
  try {
    v = std::stoull(text, &pos);
  } catch (...) {
    return fail(Errc::invalid_argument, "size '{}' is not a number", text);
  }
  std::string unit = text.substr(pos);
  int shift = 0;
  if (unit.empty() || unit == "B") shift = 0;
  else if (unit == "K" || unit == "k" || unit == "KiB") shift = 10;
  else if (unit == "M" || unit == "MiB") shift = 20;
  else if (unit == "G" || unit == "GiB") shift = 30;
  else if (unit == "T" || unit == "TiB") shift = 40;
  else return fail(Errc::invalid_argument, "size '{}' has an unknown unit", text);
  if (shift && v > (UINT64_MAX >> shift)) return fail(Errc::invalid_argument, "size '{}' is too large", text);
  return v << shift;
}

}  // namespace cairn::disk
