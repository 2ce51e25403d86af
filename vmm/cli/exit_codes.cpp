#include "vmm/cli/exit_codes.hpp"

#include <cstdio>

namespace cairn {

int exit_code_for(Errc code) {
  switch (code) {
    case Errc::invalid_argument: return kExitInvalidParameter;
    case Errc::invalid_state: return kExitInvalidState;
    case Errc::not_found: return kExitNotFound;
    case Errc::access_denied: return kExitAccessDenied;
    case Errc::no_space: return kExitNoSpace;
    case Errc::out_of_memory: return kExitOutOfMemory;
    case Errc::corrupt: return kExitCorrupt;
    case Errc::unsupported: return kExitUnsupported;
    case Errc::busy: return kExitBusy;
    case Errc::timeout: return kExitTimeout;
    case Errc::failed:
    case Errc::io: return kExitFailed;
  }
  return kExitFailed;
}

int report_error(const Error& e) {
  fmt::print(stderr, "cairn: error: {}\n", e.message);
  return exit_code_for(e.code);
}

}  // namespace cairn
