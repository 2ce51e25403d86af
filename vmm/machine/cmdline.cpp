#include "vmm/machine/cmdline.hpp"

#include <fmt/format.h>

namespace cairn {

std::string encode_guest_command(const std::vector<std::string>& args) {
  std::string cmd;
  for (size_t i = 0; i < args.size(); ++i) {
    if (i) cmd += ' ';
    cmd += args[i];
  }
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < cmd.size(); i += 3) {
    uint32_t v = (uint8_t(cmd[i]) << 16) | (uint8_t(cmd[i + 1]) << 8) | uint8_t(cmd[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (i + 1 == cmd.size()) {
    uint32_t v = uint8_t(cmd[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == cmd.size()) {
    uint32_t v = (uint8_t(cmd[i]) << 16) | (uint8_t(cmd[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string build_kernel_cmdline(const std::vector<std::string>& virtio_entries,
                                 const std::vector<std::string>& guest_command, const std::string& extra) {
  std::string c =
      "console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd tsc=reliable "
      "no_timer_check";
  for (auto& e : virtio_entries) c += " " + e;
  // With a command, only its output matters: boot messages are kept quiet (as virtme-ng does).
  if (!guest_command.empty()) c += " quiet cairn.cmd=" + encode_guest_command(guest_command);
  if (!extra.empty()) c += " " + extra;
  return c;
}

}  // namespace cairn
