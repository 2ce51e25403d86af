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

# run EXPECTED_RC CMD...: runs CMD, keeps its output in $out/last.{out,err}
# ($out: the test's output folder). A command that has not ended after
# $RUN_TIMEOUT seconds (default 300) is killed and named, so that a hang
# fails the test with the command instead of running into the test host's limit.
run() {
  local want=$1; shift
  set +e
  timeout -k 5 "${RUN_TIMEOUT:-300}" "$@" </dev/null >"$out/last.out" 2>"$out/last.err"
  local rc=$?
  set -e
  if [ "$rc" = 124 ] && [ "$want" != 124 ]; then
    echo "--- stdout:"; cat "$out/last.out"; echo "--- stderr:"; cat "$out/last.err"
    fail "'$*' did not end within ${RUN_TIMEOUT:-300}s"
  fi
  if [ "$rc" != "$want" ]; then
    echo "--- stdout:"; cat "$out/last.out"; echo "--- stderr:"; cat "$out/last.err"
    fail "'$*' exited with $rc, expected $want"
  fi
}
# wait_for SECONDS WHAT CMD...: retries CMD until it succeeds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || fail "timed out after ${secs}s waiting for: $what"
    sleep 0.5
  done
}
# wait_alive SECONDS PID CMD...: polls CMD every 0.2 s; fails (returns 1)
# when PID ends first or the time is up.
wait_alive() {
  local limit=$(( $1 * 5 )) pid=$2; shift 2
  for _ in $(seq "$limit"); do
    "$@" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

# show_threads PID: where each thread of a VMM that does not go on waits
# (its kernel stack), or that it has ended.
show_threads() {
  [ -d "/proc/$1" ] || { echo "(process $1 has ended)"; return 0; }
  local t
  for t in /proc/"$1"/task/*; do
    echo "--- thread ${t##*/} ($(cat "$t/comm" 2>/dev/null)): $(cat "$t/wchan" 2>/dev/null)"
    head -8 "$t/stack" 2>/dev/null || true
  done
}

# report_stuck VM CHECKPOINT: for a guest restored from CHECKPOINT that does
# not go on, the machine as the checkpoint saved it and as it stands now
# (paused and saved in a checkpoint of its own): vCPUs, timers, interrupts, devices.
report_stuck() {
  echo "--- the machine as checkpoint $2 saved it:"
  "$CAIRN" checkpoint show "$1" "$2" --machine 2>&1 || true
  echo "--- the machine now:"
  { "$CAIRN" vm pause "$1" && "$CAIRN" checkpoint create "$1" stuck-report >/dev/null &&
    "$CAIRN" checkpoint show "$1" stuck-report --machine; } 2>&1 || true
}
# wait_resumed SECONDS VM CHECKPOINT CMD...: wait_for, for a guest restored
# from CHECKPOINT; when it does not get there, report_stuck says where it stands.
wait_resumed() {
  local secs=$1 vm=$2 ck=$3; shift 3
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      report_stuck "$vm" "$ck"
      fail "timed out after ${secs}s waiting for checkpoint $ck resuming"
    fi
    sleep 0.5
  done
}

# Stops every stored VM of $CAIRN_HOME and keeps their console logs in $out
# (for `trap stop_vms_keep_logs EXIT` in tests that start VMs).
# After a failure, the end of each console log is shown too: the test host's
# folders do not outlive it.
stop_vms_keep_logs() {
  local rc=$?
  for d in "$CAIRN_HOME"/vms/*/; do
    [ -d "$d" ] || continue
    "$CAIRN" vm stop --force "$(basename "$d")" >/dev/null 2>&1 || true
    cp "$d/console.log" "$out/$(basename "$d").console.log" 2>/dev/null || true
    if [ "$rc" != 0 ] && [ -f "$d/console.log" ]; then
      echo "--- the last lines of VM $(basename "$d")'s console:"
      tail -n 25 "$d/console.log" | tr -d '\r' | cut -c1-200
    fi
  done
}

# vm_test NAME: the common start of a test that runs stored VMs on real KVM:
# CAIRN_HOME and $work on the test host's private /tmp (Unix sockets cannot
# live on its 9p share), $out for logs, PASS lines with the elapsed time,
# and every VM stopped (its console kept) on the way out.
vm_test() {
  [ -c /dev/kvm ] || fail "/dev/kvm is missing"
  pass() { echo "PASS: $* (at ${SECONDS}s)"; }
  export CAIRN_HOME=$(mktemp -d /tmp/cairn-home.XXXXXX)
  export CAIRN_IMAGES=$IMAGES
  out=$SCRATCH/$1
  mkdir -p "$out"
  work=$(mktemp -d "/tmp/cairn-$1.XXXXXX")
  trap stop_vms_keep_logs EXIT
}
