// Process exit codes, one per error kind (documented in README.md), and the
// one place that prints an error for the user.
#pragma once
#include "vmm/base/error.hpp"

namespace cairn {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailed = 1,
  kExitInvalidParameter = 2,  // also CLI usage errors
  kExitInvalidState = 3,
  kExitNotFound = 4,
  kExitAccessDenied = 5,
  kExitNoSpace = 6,
  kExitOutOfMemory = 7,
  kExitCorrupt = 8,
  kExitUnsupported = 9,
  kExitBusy = 10,
  kExitTimeout = 11,
  // cairn run: outcomes of the guest itself.
  kExitGuestReboot = 100,
  kExitGuestCrash = 101,
};

int exit_code_for(Errc code);

// Prints "cairn: error: <message>" to stderr and returns the matching exit code.
int report_error(const Error& e);

}  // namespace cairn
