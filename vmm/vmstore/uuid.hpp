// Random (version 4) UUIDs, as VM ids: "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"
// in lower-case hex, 122 random bits from getrandom(2).
#pragma once
#include <string>

#include "vmm/base/error.hpp"

namespace cairn {

Result<std::string> uuid_v4();
bool is_uuid(std::string_view s);

}  // namespace cairn
