#!/usr/bin/env bash
# Copy-on-write checkpoints of a guest that rewrites its memory as fast as it
# can (cairn-memcheck --write: 48 MiB of pages, each with a generation kept
# in a table of its own) while it re-reads its disk (virtio-blk writing into
# guest RAM from the VMM):
#  1. checkpoints while it runs are copy-on-write; each finished image is
#     compared page by page with the guest's RAM as the pause left it
#     (CAIRN_VERIFY_MEMORY=1 in the VMM), so every write the guest or a
#     device made during the copy waited until its chunk was stored; guest
#     writes did meet chunks not yet stored; the guest paused briefly and
#     went on;
#  2. each checkpoint applied: the guest goes on where it was (no new fill),
#     every page consistent with its generation table, round after round;
#  3. a checkpoint of that restored guest (its RAM still arriving lazily)
#     is exact too.
source "$(dirname "$0")/lib.sh"
vm_test cow_checkpoint

guest='(while :; do echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda of=/dev/null bs=64k 2>/dev/null; done) &
exec cairn-memcheck --write 48 0'
console_from() { tail -c +$(( $1 + 1 )) "$CAIRN_HOME/vms/w/console.log" | tr -d '\r'; }
log_size() { stat -c %s "$CAIRN_HOME/vms/w/console.log" 2>/dev/null || echo 0; }
rounds_from() { console_from "$1" | grep -acE '^memcheck round [0-9]+ ok$' || true; }
rounds_past() { [ "$(rounds_from "$1")" -ge "$2" ]; }
bad_from() { console_from "$1" | grep -aE 'memcheck round [0-9]+ BAD|cairn-memcheck' || true; }
field() { sed -n "s/^ *\"$1\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$out/last.out" | head -1; }

# checkpoint NAME: a copy-on-write checkpoint, checked against the paused RAM.
checkpoint() {
  run 0 "$CAIRN" checkpoint create w "$1" --json
  [ "$(field memory_copy)" = copy-on-write ] ||
    fail "$1: memory copied $(field memory_copy), not copy-on-write: $(cat "$out/last.out")"
  [ "$(field memory_verified)" = true ] || fail "$1: the image was not compared with the paused RAM"
  echo "$1: paused $(field paused_ms) ms (stopping $(field pause_ms), state $(field state_ms)," \
    "protecting $(field memory_ms)); copied in $(field live_copy_ms) ms while the guest ran," \
    "$(field cow_fault_chunks) chunks stored early for guest writes; $(field memory_file_bytes) bytes"
}

truncate -s 32M "$work/disk.img"
run 0 "$CAIRN" vm create w --memory 192M --disk "$work/disk.img" -- "$guest"
export CAIRN_VERIFY_MEMORY=1
run 0 "$CAIRN" vm start w --detach
wait_for 240 "the guest rewriting its memory" rounds_past 0 2
pass "the guest rewrites 48 MiB round after round"

# 1. Three checkpoints while it runs.
faults=0
for c in c1 c2 c3; do
  checkpoint "$c"
  faults=$(( faults + $(field cow_fault_chunks) ))
  off=$(log_size)
  wait_for 120 "the guest going on after $c" rounds_past "$off" 1
done
[ -z "$(bad_from 0)" ] || fail "the guest found bad memory: $(bad_from 0)"
[ "$faults" -gt 0 ] || fail "no guest write met a chunk not yet stored: the test did not test the copy-on-write"
pass "3 copy-on-write checkpoints equal the paused guest's RAM; guest writes waited for $faults chunks"

# 2. Apply each; the guest goes on, its pages consistent with their generations.
for c in c1 c3; do
  run 0 "$CAIRN" checkpoint apply w "$c" --yes
  off=$(log_size)
  run 0 "$CAIRN" vm start w --detach
  wait_for 240 "the guest going on from $c" rounds_past "$off" 2
  [ -z "$(bad_from "$off")" ] || fail "restored from $c, the guest found bad memory: $(bad_from "$off")"
  console_from "$off" | grep -aq 'memcheck filled' && fail "restored from $c, the guest started again"
  echo "$c: the restored guest checked and rewrote every page $(rounds_from "$off") times"
done
pass "applied, each checkpoint resumes with every page in step with its generation"

# 3. A checkpoint of the restored guest, then back to it once more.
checkpoint c4
run 0 "$CAIRN" checkpoint apply w c4 --yes
off=$(log_size)
run 0 "$CAIRN" vm start w --detach
wait_for 240 "the guest going on from c4" rounds_past "$off" 2
[ -z "$(bad_from "$off")" ] || fail "restored from c4, the guest found bad memory: $(bad_from "$off")"
pass "a checkpoint of a restored guest is exact and resumes too"
