# Shared helpers for integration test scripts (sourced). They run inside the
# nested test host (or directly on hardware KVM) via scripts/testhost.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${CAIRN_BUILD:-$REPO/build}
IMAGES=${CAIRN_IMAGES:-$BUILD/images}
CAIRN=$BUILD/cairn
SCRATCH=${CAIRN_SCRATCH:-$(mktemp -d)}

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "PASS: $*"; }
# expect_in FILE PATTERN WHAT: fails unless FILE contains PATTERN (grep -E).
expect_in() { grep -qE "$2" "$1" || { echo "--- $1:"; tail -40 "$1"; fail "$3"; }; }
# The command a guest should run, as cairn's default init expects it (base64 of a shell command).
guest_cmd() { printf '%s' "$1" | base64 -w0; }
