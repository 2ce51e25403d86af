#!/usr/bin/env bash
# `cairn vm` end to end on real guests: create (and its errors), start
# --detach, status over the control socket, pause (the console stops
# growing) and resume, "already running", stop, list, remove; a stale control
# socket (a VMM killed with SIGKILL, and one made by hand) is cleaned up and
# the VM starts again; stop --force on a VMM that does not answer; a
# foreground start exits with the guest command's status.
source "$(dirname "$0")/lib.sh"
[ -c /dev/kvm ] || fail "/dev/kvm is missing"
pass() { echo "PASS: $* (at ${SECONDS}s)"; }
# The state folder lives on the test host's tmpfs: the writable share is 9p,
# which cannot hold Unix sockets. Logs are copied to $SCRATCH at the end.
export CAIRN_HOME=${CAIRN_VM_HOME:-$(mktemp -d /tmp/cairn-home.XXXXXX)}
export CAIRN_IMAGES=$IMAGES
out=$SCRATCH/vm_lifecycle
mkdir -p "$out"
trap stop_vms_keep_logs EXIT

# Parsed from `vm show`'s text (python would cost seconds per call under the emulated test host).
state_of() { "$CAIRN" vm show "$1" | sed -n 's/^state: *//p'; }
state_is() { [ "$(state_of "$1")" = "$2" ]; }
log_size() { stat -c %s "$CAIRN_HOME/vms/$1/console.log"; }
ticks() { grep -c '^tick' "$CAIRN_HOME/vms/$1/console.log" || true; }
# alive PID: the process exists and is not a zombie (the test host's init may not reap them).
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
gone() { ! alive "$1"; }
vm_pid() { "$CAIRN" vm show "$1" | sed -n 's/^pid: *//p'; }

# --- create: errors get one clear message and a non-zero status
run 4 "$CAIRN" vm create bad --disk /no/such/disk.img
expect_in "$out/last.err" 'disk /no/such/disk.img(: No such file or directory| does not exist)' "missing disk message"
run 2 "$CAIRN" vm create bad --memory 1M
expect_in "$out/last.err" 'memory size 1 MiB is out of range' "too-small memory message"
run 2 "$CAIRN" vm create bad --memory lots
expect_in "$out/last.err" "'lots' is not a number" "non-numeric memory message"
run 2 "$CAIRN" vm create 'bad/name'
expect_in "$out/last.err" "VM name 'bad/name' has the character '/'" "bad name message"
run 0 "$CAIRN" vm list --json
[ "$(cat "$out/last.out")" = "[]" ] || fail "failed creates left a VM behind: $(cat "$out/last.out")"
pass "vm create refuses a missing disk, bad memory sizes and bad names"

# --- a disk that vanished after create: start fails with the reason, in both modes
truncate -s 1M "$CAIRN_HOME/vanishing.img"
run 0 "$CAIRN" vm create broken --disk "$CAIRN_HOME/vanishing.img"
rm "$CAIRN_HOME/vanishing.img"
run 4 "$CAIRN" vm start broken --detach
expect_in "$out/last.err" 'vanishing.img' "detached start names the missing disk"
expect_in "$out/last.err" "VM 'broken' did not start" "detached start failure message"
run 4 "$CAIRN" vm start broken
expect_in "$out/last.err" 'vanishing.img' "foreground start names the missing disk"
state_is broken off || fail "a VM that failed to start is not off"
[ -e "$CAIRN_HOME/vms/broken/control.sock" ] && fail "a failed start left a control socket"
run 0 "$CAIRN" vm remove --yes broken
pass "a VM whose disk vanished fails to start with a clear message and stays off"

# --- create, start --detach, status
run 0 "$CAIRN" vm create ticker --memory 128M -- 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done'
run 3 "$CAIRN" vm create ticker
expect_in "$out/last.err" "a VM named 'ticker' already exists" "duplicate create message"
state_is ticker off || fail "a new VM is not off"
run 0 "$CAIRN" vm start ticker --detach
expect_in "$out/last.out" "VM 'ticker' started \(pid [0-9]+\)" "detach message"
[ "$(stat -c %a "$CAIRN_HOME/vms/ticker/control.sock")" = 600 ] || fail "control.sock is not mode 0600"
run 0 "$CAIRN" vm show ticker --json
expect_in "$out/last.out" '"state": "running"' "show --json state"
expect_in "$out/last.out" '"memory": 134217728' "show --json memory"
wait_for 90 "the guest to tick" sh -c "[ \$(grep -c '^tick' '$CAIRN_HOME/vms/ticker/console.log') -ge 2 ]"
pass "vm start --detach: the VM runs, answers on its control socket and logs its console"

# --- pause: the console stops growing; resume: it grows again
run 0 "$CAIRN" vm pause ticker
state_is ticker paused || fail "state is not paused after pause"
s1=$(log_size ticker); sleep 3; s2=$(log_size ticker)
[ "$s1" = "$s2" ] || fail "console.log grew while paused ($s1 -> $s2)"
run 0 "$CAIRN" vm pause ticker   # idempotent
run 0 "$CAIRN" vm resume ticker
state_is ticker running || fail "state is not running after resume"
wait_for 20 "the console to grow after resume" sh -c "[ \$(stat -c %s '$CAIRN_HOME/vms/ticker/console.log') -gt $s2 ]"
pass "vm pause stops the guest (console silent for 3 s), vm resume restarts it"

# --- a running VM cannot be started twice or removed
pid=$(vm_pid ticker)
run 3 "$CAIRN" vm start ticker --detach
expect_in "$out/last.err" "VM 'ticker' is already running \(pid $pid\)" "already-running message (detach)"
run 3 "$CAIRN" vm start ticker
expect_in "$out/last.err" "already running" "already-running message (foreground)"
run 3 "$CAIRN" vm remove --yes ticker
expect_in "$out/last.err" "is running" "remove-while-running message"
run 0 "$CAIRN" vm list
expect_in "$out/last.out" '^ticker +running +1 +128M' "list row of a running VM"
pass "a running VM refuses start and remove with exit status 3"

# --- stop
run 0 "$CAIRN" vm stop ticker
wait_for 5 "the VMM (pid $pid) to exit after stop" gone "$pid"
[ -e "$CAIRN_HOME/vms/ticker/control.sock" ] && fail "control.sock left behind after stop"
state_is ticker off || fail "state is not off after stop"
run 0 "$CAIRN" vm list
expect_in "$out/last.out" '^ticker +off' "list row of a stopped VM"
run 3 "$CAIRN" vm stop ticker
expect_in "$out/last.err" "VM 'ticker' is not running" "stop-when-off message"
run 3 "$CAIRN" vm pause ticker
pass "vm stop ends the VMM and removes its socket; stopping an off VM is invalid state"

# --- stale control sockets: a VMM killed outright, and one made by hand
run 0 "$CAIRN" vm start ticker --detach
pid=$(vm_pid ticker)
kill -9 "$pid"
wait_for 10 "the killed VMM to go away" gone "$pid"
[ -S "$CAIRN_HOME/vms/ticker/control.sock" ] || fail "expected a stale control.sock after SIGKILL"
state_is ticker off || fail "a VM whose VMM was killed is not off"
[ -e "$CAIRN_HOME/vms/ticker/control.sock" ] && fail "the stale control.sock was not removed"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$CAIRN_HOME/vms/ticker/control.sock"
[ -S "$CAIRN_HOME/vms/ticker/control.sock" ] || fail "could not make a stale socket by hand"
run 0 "$CAIRN" vm start ticker --detach
state_is ticker running || fail "the VM did not start over a stale socket"
pass "stale control sockets are told apart by the lock, removed, and the VM starts"

# --- stop --force on a VMM that does not answer
pid=$(vm_pid ticker)
kill -STOP "$pid"
run 0 "$CAIRN" vm stop --force ticker
expect_in "$out/last.out" "was killed" "forced stop message"
state_is ticker off || fail "state is not off after stop --force"
pass "vm stop --force kills a VMM that does not answer"

# --- SIGTERM to the VMM: a clean stop (socket removed, lock released, a message in the log)
run 0 "$CAIRN" vm start ticker --detach
wait_for 60 "ticker running again" state_is ticker running
pid=$(vm_pid ticker)
kill -TERM "$pid"
wait_for 30 "the VMM ending after SIGTERM" gone "$pid"
state_is ticker off || fail "state is not off after SIGTERM"
[ -e "$CAIRN_HOME/vms/ticker/control.sock" ] && fail "SIGTERM left the control socket behind"
expect_in "$CAIRN_HOME/vms/ticker/console.log" "stopped by signal" "SIGTERM stop message"
pass "SIGTERM stops a VM cleanly"

# --- foreground start: the guest command's exit status, like cairn run
run 0 "$CAIRN" vm create fg --memory 64M -- 'echo fg-ran; exit 7'
run 7 "$CAIRN" vm start fg
expect_in "$out/last.out" '^fg-ran' "foreground console output"
pass "vm start in the foreground exits with the guest command's status"

# --- remove
run 0 "$CAIRN" vm remove --yes ticker
run 0 "$CAIRN" vm remove fg
run 4 "$CAIRN" vm show ticker
expect_in "$out/last.err" "no VM named 'ticker'" "show-after-remove message"
[ -d "$CAIRN_HOME/vms/ticker" ] && fail "the state folder is still there after remove"
pass "vm remove deletes the VM"
