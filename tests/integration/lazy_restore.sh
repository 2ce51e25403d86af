#!/usr/bin/env bash
# Lazy restore end to end: a guest fills 64 MiB with a pattern that names
# each page and reads it all back, in a new random order, every second
# (cairn-memcheck). cairn checkpoints it while it runs; the VMM is killed;
# `cairn run --restore` starts the guest at once while its RAM is loaded on
# first touch and by prefetch threads, so its next rounds touch memory in
# random order during the load. Every round must find every page intact, and
# the restored guest must not boot again. Then the same with the load done
# first (CAIRN_LAZY_RESTORE=0), for comparison of the first-round times.
source "$(dirname "$0")/lib.sh"
[ -c /dev/kvm ] || fail "/dev/kvm is missing"

work=$SCRATCH/lazy
rm -rf "$work"; mkdir -p "$work"
ck=$work/ckpt
MIB=64

rounds() { tr -d '\r' < "$1" 2>/dev/null | grep -acE '^memcheck round [0-9]+ ok$' || true; }
bad() { tr -d '\r' < "$1" 2>/dev/null | grep -aE 'memcheck round [0-9]+ BAD' || true; }
at_least() { [ "$(rounds "$1")" -ge "$2" ]; }
stop_vmm() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# 1. Boot, let the guest check its memory twice, checkpoint it as it runs.
con1=$work/console1.log
"$CAIRN" run --memory 256M --console "file:$con1" --checkpoint-after 30 --checkpoint-dir "$ck" \
  -- "cairn-memcheck $MIB" 2>"$work/run1.err" &
pid=$!
wait_alive 300 "$pid" grep -q 'checkpoint saved' "$work/run1.err" ||
  { cat "$work/run1.err"; tail -20 "$con1"; show_threads "$pid"; fail "no checkpoint was taken"; }
grep 'checkpoint saved' "$work/run1.err"
stop_vmm "$pid"
[ "$(rounds "$con1")" -ge 1 ] || { tail -20 "$con1"; fail "the guest had not checked its memory once at the checkpoint"; }
[ -z "$(bad "$con1")" ] || fail "the guest found bad memory before any checkpoint: $(bad "$con1")"

# 2-3. Restore lazily, then eagerly: the guest goes on, its memory intact.
restore() {  # restore WHAT CONSOLE [ENV...]
  local what=$1 con=$2; shift 2
  local t0; t0=$(date +%s%N)
  env "$@" "$CAIRN" run --memory 256M --console "file:$con" --restore "$ck" 2>"$work/$what.err" &
  local p=$!
  wait_alive 300 "$p" at_least "$con" 3 ||
    { cat "$work/$what.err"; tail -20 "$con"; show_threads "$p"; fail "$what: the restored guest did not check its memory 3 times"; }
  local t1; t1=$(date +%s%N)
  stop_vmm "$p"
  [ -z "$(bad "$con")" ] || { tail -20 "$con"; fail "$what: the restored guest found bad memory: $(bad "$con")"; }
  grep -aq 'memcheck filled' "$con" && fail "$what: the guest started again instead of going on"
  grep -qi 'error\|crash' "$work/$what.err" && { cat "$work/$what.err"; fail "$what: errors in the restored run"; }
  echo "$what: 3 rounds over $MIB MiB intact, $(( (t1 - t0) / 1000000 )) ms after the restore started"
}
restore lazy "$work/console-lazy.log"
restore eager "$work/console-eager.log" CAIRN_LAZY_RESTORE=0
pass "a lazily restored guest read every page of $MIB MiB intact, in random order, while its RAM arrived"
