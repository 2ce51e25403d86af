#!/usr/bin/env bash
# Standard checkpoint end to end: a guest counts on its console; cairn takes
# a checkpoint while it runs (--checkpoint-after) and the guest goes on; the
# VMM is killed; `cairn run --restore` continues the guest from the saved
# count (not from 1, no reboot) and it keeps counting. Damaged checkpoints
# and a different machine are refused before any guest code runs.
# With 1 and 2 vCPUs.
source "$(dirname "$0")/lib.sh"
[ -c /dev/kvm ] || fail "/dev/kvm is missing"

AFTER=${CHECKPOINT_AFTER:-25}
COUNTER='i=0; while true; do i=$((i+1)); echo count $i; sleep 0.2; done'
# The same, reading a new block of /dev/vda each time: virtio-blk stays busy
# across the checkpoint; a spinning process keeps the other vCPU busy too.
COUNTER_DISK='(while :; do :; done) & i=0; while true; do i=$((i+1)); dd if=/dev/vda of=/dev/null bs=4096 count=1 skip=$((i % 4000)) 2>/dev/null || echo dd failed; echo count $i; sleep 0.2; done'

# The numbers of the complete "count N" lines of a console log.
counts() { tr -d '\r' 2>/dev/null < "$1" | grep -aE '^count [0-9]+$' | awk '{print $2}' || true; }
enough_counts() { [ "$(counts "$1" | wc -l)" -ge "$2" ]; }
# check_continues LOG COUNT_AT_REPORT WHAT: the restored guest went on from the
# checkpoint: no reboot, consecutive counts starting just before the count
# seen when the checkpoint was reported (it was taken a little earlier: the
# report and the test's polling lag behind). Prints the first count.
check_continues() {
  local log=$1 at=$2 what=$3 first n last
  first=$(counts "$log" | head -1)
  n=$(counts "$log" | wc -l)
  last=$(counts "$log" | tail -1)
  echo "[$cpus vCPU] $what: counts $first .. $last ($n lines), checkpoint reported at $at" >&2
  grep -aq 'user space ready' "$log" && fail "[$cpus vCPU] $what: the guest booted again"
  [ "$first" -gt 1 ] || fail "[$cpus vCPU] $what: the guest counted from $first"
  [ "$first" -le $(( at + 1 )) ] && [ "$first" -ge $(( at - 25 )) ] ||
    fail "[$cpus vCPU] $what: the guest continued at $first, the checkpoint was at about $at"
  [ $(( last - first + 1 )) = "$n" ] || fail "[$cpus vCPU] $what: the counts are not consecutive"
  echo "$first"
}
stop_vmm() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
flip_byte() {  # flip_byte FILE OFFSET
  python3 -c 'import sys; f=open(sys.argv[1],"r+b"); o=int(sys.argv[2]); f.seek(o); b=f.read(1); f.seek(o); f.write(bytes([b[0]^0x20]))' "$1" "$2"
}
# expect_refused WHAT CODE PATTERN ARGS...: a restore that must fail with CODE before the guest runs.
expect_refused() { expect_exit refused "$@"; }
# The same, but the guest may have run before the VM stopped.
expect_stopped() { expect_exit stopped "$@"; }
expect_exit() {
  local how=$1 what=$2 code=$3 pattern=$4 con=$work/refused.log; shift 4
  rm -f "$con"
  set +e
  timeout 120 "$CAIRN" run --console "file:$con" "$@" 2>"$work/refused.err"
  local rc=$?
  set -e
  [ "$rc" = "$code" ] || { cat "$work/refused.err"; fail "$what: exit code $rc, expected $code"; }
  expect_in "$work/refused.err" "$pattern" "$what: no clear error message"
  [ "$how" = stopped ] || [ ! -s "$con" ] || fail "$what: the guest ran ($con has output)"
  echo "$how as expected ($what): $(cat "$work/refused.err")"
}

# run_case CPUS with-devices|no-devices
run_case() {
  local cpus=$1 counter=$COUNTER
  work=$SCRATCH/cpus$cpus
  rm -rf "$work"; mkdir -p "$work"
  local ck=$work/ckpt con1=$work/console1.log con2=$work/console2.log
  # The machine's options, repeated for every restore.
  local devs=()
  if [ "$2" = with-devices ]; then
    truncate -s 32M "$work/disk.img"
    # Unix sockets cannot live on the test host's shared folder: /tmp is a tmpfs.
    local sock; sock=$(mktemp -d)/vsock.sock
    devs=(--disk "$work/disk.img" --vsock "3,$sock")
    counter=$COUNTER_DISK
  fi
  local m=(--cpus "$cpus" "${devs[@]}")

  # The checkpoint must catch the guest counting; on a loaded machine the
  # boot may take longer than AFTER, then the first run is repeated later.
  local pid at_save after
  for after in "$AFTER" $(( AFTER * 2 )); do
    rm -rf "$ck" "$con1"
    "$CAIRN" run "${m[@]}" --console "file:$con1" --checkpoint-after "$after" --checkpoint-dir "$ck" \
      -- "$counter" 2>"$work/run1.err" &
    pid=$!
    wait_alive $(( after + 180 )) "$pid" grep -q 'checkpoint saved' "$work/run1.err" ||
      { cat "$work/run1.err"; tail -20 "$con1"; show_threads "$pid"; fail "[$cpus vCPU] no checkpoint was taken"; }
    at_save=$(counts "$con1" | tail -1)
    grep 'checkpoint saved' "$work/run1.err"
    [ -n "$at_save" ] && [ "$at_save" -ge 5 ] && break
    echo "[$cpus vCPU] the guest had not been counting long at the checkpoint (${at_save:-no count}); again with $(( after * 2 )) s"
    stop_vmm "$pid"
  done
  [ -n "$at_save" ] && [ "$at_save" -ge 5 ] || fail "[$cpus vCPU] the guest had not started counting at the checkpoint"
  [ -f "$ck/state.bin" ] && [ -f "$ck/memory.img" ] || fail "[$cpus vCPU] the checkpoint folder is incomplete"
  ls "$work" | grep -q 'tmp-' && fail "[$cpus vCPU] a temporary checkpoint folder was left behind"
  sleep 3
  stop_vmm "$pid"
  local last1; last1=$(counts "$con1" | tail -1)
  [ "$last1" -gt "$at_save" ] || fail "[$cpus vCPU] the guest stopped counting after the checkpoint"
  echo "[$cpus vCPU] first run: count $at_save when the checkpoint was reported, $last1 when killed"

  # Restore, and checkpoint the restored guest again (a chain of two restores).
  local ck2=$work/ckpt2 con3=$work/console3.log
  "$CAIRN" run "${m[@]}" --console "file:$con2" --restore "$ck" \
    --checkpoint-after 4 --checkpoint-dir "$ck2" 2>"$work/run2.err" &
  pid=$!
  wait_alive 120 "$pid" grep -q 'checkpoint saved' "$work/run2.err" ||
    { cat "$work/run2.err"; tail -20 "$con2"; show_threads "$pid"; fail "[$cpus vCPU] the restored guest was not checkpointed"; }
  local at_save2; at_save2=$(counts "$con2" | tail -1)
  wait_alive 120 "$pid" enough_counts "$con2" 15 ||
    { cat "$work/run2.err"; tail -20 "$con2"; show_threads "$pid"; fail "[$cpus vCPU] the restored guest did not keep counting"; }
  stop_vmm "$pid"
  local first; first=$(check_continues "$con2" "$at_save" "first restore")

  "$CAIRN" run "${m[@]}" --console "file:$con3" --restore "$ck2" 2>"$work/run3.err" &
  pid=$!
  wait_alive 120 "$pid" enough_counts "$con3" 10 ||
    { cat "$work/run3.err"; tail -20 "$con3"; show_threads "$pid"; fail "[$cpus vCPU] the twice-restored guest did not keep counting"; }
  stop_vmm "$pid"
  local first3; first3=$(check_continues "$con3" "$at_save2" "second restore")
  [ "$first3" -gt "$first" ] || fail "[$cpus vCPU] the second restore went back to $first3"
  grep -aq 'dd failed' "$con2" "$con3" && fail "[$cpus vCPU] disk reads failed in a restored guest"
  for e in "$work/run2.err" "$work/run3.err"; do
    grep -qi 'error\|crash' "$e" && { cat "$e"; fail "[$cpus vCPU] errors in a restored run"; }
  done

  # Damaged checkpoints: a byte flipped in each file (header and body), a truncated image.
  # Restored eagerly (CAIRN_LAZY_RESTORE=0), every damage is refused before the guest runs.
  local f off
  for f in state.bin memory.img; do
    for off in 20 $(( $(stat -c %s "$ck/$f") / 2 )); do
      rm -rf "$work/bad"; cp -r "$ck" "$work/bad"
      flip_byte "$work/bad/$f" "$off"
      CAIRN_LAZY_RESTORE=0 expect_refused "[$cpus vCPU] $f byte $off flipped" 8 \
        'corrupt|checksum|truncated|cairn memory image|cairn state file|bytes' "${m[@]}" --restore "$work/bad"
    done
  done
  # Restored lazily (the default), a damaged chunk is met while the guest
  # runs: the VM stops with the error when the chunk is loaded, before the
  # guest can read it; damaged metadata is still refused before it runs.
  expect_stopped "[$cpus vCPU] memory.img chunk data flipped, lazy restore" 8 'chunk [0-9]+ checksum mismatch' \
    "${m[@]}" --restore "$work/bad"
  rm -rf "$work/bad"; cp -r "$ck" "$work/bad"
  flip_byte "$work/bad/memory.img" 20
  expect_refused "[$cpus vCPU] memory.img header flipped, lazy restore" 8 'corrupt|checksum|cairn memory image' \
    "${m[@]}" --restore "$work/bad"
  rm -rf "$work/bad"; cp -r "$ck" "$work/bad"
  truncate -s -100 "$work/bad/memory.img"
  expect_refused "[$cpus vCPU] memory.img truncated" 8 'truncated|extended' "${m[@]}" --restore "$work/bad"
  expect_refused "[$cpus vCPU] different vCPU count" 2 'vCPUs' "${devs[@]}" --cpus $(( cpus + 1 )) --restore "$ck"
  if [ "$2" = with-devices ]; then
    expect_refused "[$cpus vCPU] without its disk" 2 'disks' --cpus "$cpus" --vsock "3,$sock" --restore "$ck"
  fi
  pass "[$cpus vCPU] checkpoint, kill, restore: the guest continued counting from $first"
}

# Usage: checkpoint_basic.sh [1|2]: 1 vCPU, or 2 busy vCPUs with a disk
# being read and a vsock device (each its own CTest entry).
case "${1:-1}" in
  1) run_case 1 no-devices ;;
  2) run_case 2 with-devices ;;
  *) fail "usage: checkpoint_basic.sh [1|2]" ;;
esac
pass "standard checkpoints save and restore a running guest (${1:-1} vCPU)"
