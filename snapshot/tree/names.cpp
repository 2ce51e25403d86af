// Checkpoint names and descriptions: the limits Hyper-V applies (seed 000:
// at most 100 characters, not blank) and its default "VM (date - time)" name.
#include <algorithm>

#include "snapshot/tree/checkpoint_tree.hpp"
#include "snapshot/tree/utf8.hpp"

namespace cairn::tree {

Result<void> validate_name(std::string_view name) {
  auto cps = decode_utf8(name);
  if (!cps) return fail(Errc::invalid_argument, "a checkpoint name must be valid UTF-8 ({})", cps.error().message);
  if (std::all_of(cps->begin(), cps->end(), is_white_space))
    return fail(Errc::invalid_argument, "a checkpoint name cannot be blank");
  for (size_t i = 0; i < cps->size(); ++i) {
    if (is_control((*cps)[i]))
      return fail(Errc::invalid_argument,
                  "a checkpoint name cannot contain control characters ({} at character {})",
                  code_point_label((*cps)[i]), i + 1);
  }
  if (cps->size() > kMaxNameChars)
    return fail(Errc::invalid_argument, "a checkpoint name can have at most {} characters (this one has {})",
                kMaxNameChars, cps->size());
  return {};
}

Result<void> validate_description(std::string_view d) {
  if (d.size() > kMaxDescriptionBytes)
    return fail(Errc::invalid_argument, "a checkpoint description can have at most {} bytes (this one has {})",
                kMaxDescriptionBytes, d.size());
  auto cps = decode_utf8(d);
  if (!cps) return fail(Errc::invalid_argument, "a checkpoint description must be valid UTF-8 ({})", cps.error().message);
  // Descriptions are free text over several lines, so line breaks and tabs stay.
  for (size_t i = 0; i < cps->size(); ++i) {
    char32_t c = (*cps)[i];
    if (is_control(c) && c != '\n' && c != '\r' && c != '\t')
      return fail(Errc::invalid_argument,
                  "a checkpoint description cannot contain control characters ({} at character {})",
                  code_point_label(c), i + 1);
  }
  return {};
}

std::string default_name(std::string_view vm_name, std::time_t when) {
  std::tm tm{};
  if (!::localtime_r(&when, &tm)) ::gmtime_r(&when, &tm);
  int hour12 = tm.tm_hour % 12 == 0 ? 12 : tm.tm_hour % 12;
  // Built by hand rather than with strftime's %p, which follows the locale.
  std::string suffix = fmt::format(" ({:02}/{:02}/{:04} - {:02}:{:02}:{:02} {})", tm.tm_mon + 1, tm.tm_mday,
                                   tm.tm_year + 1900, hour12, tm.tm_min, tm.tm_sec, tm.tm_hour < 12 ? "AM" : "PM");
  size_t room = kMaxNameChars > suffix.size() ? kMaxNameChars - suffix.size() : 0;  // the suffix is ASCII
  return std::string(vm_name.substr(0, utf8_prefix_bytes(vm_name, room))) + suffix;
}

}  // namespace cairn::tree
