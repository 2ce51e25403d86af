# Shared helpers for the image build scripts (sourced, not run).
set -euo pipefail
IMAGES_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$IMAGES_SRC/.." && pwd)
OUT=${CAIRN_IMAGES_OUT:-$REPO/build/images}
mkdir -p "$OUT"

log() { printf 'images: %s\n' "$*" >&2; }
die() { printf 'images: error: %s\n' "$*" >&2; exit 1; }

# Cache key of a product: hash of its input files plus extra strings
# (package versions). A product is rebuilt only when its key changes.
cache_key() {
  { for f in "$@"; do if [ -f "$f" ]; then sha256sum < "$f"; else printf '%s\n' "$f"; fi; done; } \
    | sha256sum | cut -c1-16
}
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || die "package $1 is not installed (run scripts/setup)"; }
fresh() { [ -f "$OUT/$1.key" ] && [ "$(cat "$OUT/$1.key")" = "$2" ] && [ -e "$OUT/$1" ]; }
stamp() { printf '%s\n' "$2" > "$OUT/$1.key"; }

# cairn's guest binaries found in folder $1 (cairn-agent, cairn-exit,
# cairn-vsock, cairn-memcheck; those not built are left out), into the array guest_bins.
find_guest_bins() {
  guest_bins=()
  local b
  for b in cairn-agent cairn-exit cairn-vsock cairn-memcheck; do [ -x "$1/$b" ] && guest_bins+=("$1/$b"); done
  return 0
}
# Installs guest_bins into the image tree $1. Without ACPI the kernel cannot
# power off: there `poweroff` ends the VM through cairn-exit.
install_guest_bins() {
  local b
  for b in "${guest_bins[@]}"; do install -m 0755 "$b" "$1/bin/"; done
  if [ -x "$1/bin/cairn-exit" ]; then
    rm -f "$1/sbin/poweroff"
    printf '#!/bin/sh\nsync\nexec /bin/cairn-exit 0\n' > "$1/sbin/poweroff"
    chmod 0755 "$1/sbin/poweroff"
  fi
}
