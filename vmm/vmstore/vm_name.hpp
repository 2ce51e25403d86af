// VM names: what `cairn vm create NAME` accepts. A name is also the name of
// the VM's state folder, so it is restricted to characters that are safe in a
// path component and in a shell: [A-Za-z0-9._-], 1 to 64 characters, not "."
// or "..", not starting with '-' (it would read as an option).
#pragma once
#include <string_view>

#include "vmm/base/error.hpp"

namespace cairn {

inline constexpr size_t kMaxVmNameLength = 64;

Result<void> validate_vm_name(std::string_view name);

}  // namespace cairn
