#include "vmm/vmstore/vm_name.hpp"

namespace cairn {

Result<void> validate_vm_name(std::string_view name) {
  if (name.empty()) return fail(Errc::invalid_argument, "a VM name cannot be empty");
  if (name.size() > kMaxVmNameLength)
    return fail(Errc::invalid_argument, "VM name '{}...' is {} characters long; at most {} are allowed",
                name.substr(0, 16), name.size(), kMaxVmNameLength);
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-';
    if (!ok)
      return fail(Errc::invalid_argument,
                  "VM name '{}' has the character '{}'; use only letters, digits, '.', '_' and '-'", name,
                  (c >= 0x20 && c < 0x7f) ? std::string(1, c) : fmt::format("\\x{:02x}", static_cast<unsigned char>(c)));
  }
  if (name == "." || name == "..") return fail(Errc::invalid_argument, "'{}' is not a valid VM name", name);
  if (name.front() == '-') return fail(Errc::invalid_argument, "VM name '{}' cannot start with '-'", name);
  return {};
}

}  // namespace cairn
