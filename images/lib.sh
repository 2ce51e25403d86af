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
