#!/usr/bin/env bash
# A branched checkpoint tree on a real guest, checked after every remove:
# each remaining checkpoint, applied and started, gives back exactly its
# guest state, a value held in memory and a file on the guest's ext4 disk.
#
#   cA (A) ── cB (B)
#        └── cC (C) ── cD (D)      (cC and cD made after applying cA)
#
# Then: remove cC (middle of a branch: its layer merges into cD's), remove cB
# (a leaf), remove cA (the root, shared by both branches), checking every
# remaining checkpoint after each step. Last, checkpoints of a paused VM
# (its state as paused) and of a VM that is off (its disks only).
#
# The host sets the guest's value through a mailbox, a read-only raw disk
# (vdb) that the guest reads with O_DIRECT: "set V" makes the guest keep V
# in a shell variable (memory) and write it to /mnt/value (disk, synced). It
# prints "state mem=M disk=D" every 0.3 s. The mailbox is cleared once the
# guest has acted, so that a restored guest finds it empty.
source "$(dirname "$0")/lib.sh"
vm_test checkpoint_branches

guest='mount -t ext4 /dev/vda /mnt || exit 9
v=none
while true; do
  m=$(dd if=/dev/vdb bs=512 count=1 iflag=direct 2>/dev/null | tr -d "\000\n")
  case "$m" in
    *:set\ *) v=${m#*:set }; echo "$v" > /mnt/value; sync; echo "ack ${m%%:*}" ;;
  esac
  echo "state mem=$v disk=$(cat /mnt/value 2>/dev/null)"
  sleep 0.3
done'
log_size() { stat -c %s "$CAIRN_HOME/vms/t/console.log" 2>/dev/null || echo 0; }
# The console after byte offset $1.
since() { tail -c +$(( $1 + 1 )) "$CAIRN_HOME/vms/t/console.log" | tr -d '\r'; }
said_since() { [ -n "$(since "$1" | sed -n "/^$2\$/p")" ]; }
state_since() { [ -n "$(since "$1" | sed -n '/^state /p')" ]; }
seq_no=0
# set_value V: the guest holds V in memory and on disk.
set_value() {
  seq_no=$((seq_no + 1))
  local off; off=$(log_size)
  { printf '%s' "$seq_no:set $1"; head -c $((512 - ${#seq_no} - 5 - ${#1})) /dev/zero; } > "$work/mbox.blk"
  dd if="$work/mbox.blk" of="$work/mbox.img" bs=512 count=1 conv=notrunc,fsync 2>/dev/null
  wait_for 60 "the guest taking value $1" said_since "$off" "ack $seq_no"
  head -c 512 /dev/zero | dd of="$work/mbox.img" bs=512 count=1 conv=notrunc,fsync 2>/dev/null
  wait_for 30 "the guest reporting value $1" said_since "$off" "state mem=$1 disk=$1"
}
running() { [ "$("$CAIRN" vm show t | sed -n 's/^state: *//p')" = running ]; }

cp "$IMAGES/disk.ext4" "$work/t.ext4"
head -c 1M /dev/zero > "$work/mbox.img"
run 0 "$CAIRN" vm create t --memory 128M --disk "$work/t.ext4" --disk "$work/mbox.img,ro" -- "$guest"
run 0 "$CAIRN" vm set t --checkpoint-type standard
run 0 "$CAIRN" vm start t --detach
wait_for 180 "the guest reporting its state" said_since 0 "state mem=none disk="

# The digest of checkpoint NAME's first disk as its frozen layer chain reads:
# removing other checkpoints merges layers, which must not change it.
declare -A disk_digest
disk_of() {
  "$CAIRN" checkpoint show t "$1" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual_disk_drives"][0])'
}
digest_of() {
  local layer; layer=$(disk_of "$1")
  "$CAIRN" disk convert "$layer" "$work/digest.raw" >/dev/null || fail "cannot read $1's disk $layer"
  sha256sum < "$work/digest.raw" | cut -c1-16
  rm -f "$work/digest.raw"
}
remember_disk() { disk_digest[$1]=$(digest_of "$1"); }
# check NAME VALUE: applied and started, checkpoint NAME resumes with VALUE
# in memory and on disk (the first state the restored guest prints).
check() {
  if [ -n "${disk_digest[$1]:-}" ]; then
    local d; d=$(digest_of "$1")
    [ "$d" = "${disk_digest[$1]}" ] ||
      fail "checkpoint $1's disk reads differently now ($d) than when it was made (${disk_digest[$1]})"
  fi
  run 0 "$CAIRN" checkpoint apply t "$1" --yes
  local off; off=$(log_size)
  run 0 "$CAIRN" vm start t --detach
  wait_resumed 60 t "$1" state_since "$off"
  # awk reads all its input (an early exit would fail the pipeline under pipefail)
  local first; first=$(since "$off" | awk '/^state / && !f { print; f = 1 }')
  [ "$first" = "state mem=$2 disk=$2" ] || fail "checkpoint $1 resumed with '$first', expected value $2 in memory and on disk"
  run 0 "$CAIRN" vm stop t
}
# check_all NAME=VALUE...: every one of them, and nothing else left in the tree.
check_all() {
  run 0 "$CAIRN" checkpoint list t --json
  local n; n=$(grep -c '"checkpoint_id"' "$out/last.out" || true)
  [ "$n" = $# ] || fail "the tree holds $n checkpoints, expected $#: $(cat "$out/last.out")"
  for kv in "$@"; do check "${kv%%=*}" "${kv#*=}"; done
}

set_value A
run 0 "$CAIRN" checkpoint create t cA
remember_disk cA
set_value B
run 0 "$CAIRN" checkpoint create t cB
remember_disk cB
run 0 "$CAIRN" checkpoint apply t cA --yes
off=$(log_size)
run 0 "$CAIRN" vm start t --detach
wait_resumed 60 t cA said_since "$off" "state mem=A disk=A"
set_value C
run 0 "$CAIRN" checkpoint create t cC
remember_disk cC
set_value D
run 0 "$CAIRN" checkpoint create t cD
remember_disk cD
run 0 "$CAIRN" vm stop t
run 0 "$CAIRN" checkpoint show t cC --json
grep -q '"parent_checkpoint_id"' "$out/last.out" || fail "cC has no parent field"
pass "a branched tree: cA with children cB and cC, cD under cC"

check_all cA=A cB=B cC=C cD=D
pass "each of the four checkpoints resumes with its own value in memory and on disk"

run 0 "$CAIRN" checkpoint remove t cC --yes
check_all cA=A cB=B cD=D
pass "after removing cC (middle of a branch) cA, cB and cD are intact"

run 0 "$CAIRN" checkpoint remove t cB --yes
check_all cA=A cD=D
pass "after removing cB (a leaf) cA and cD are intact"

run 0 "$CAIRN" checkpoint remove t cA --yes
check_all cD=D
layers=$(find "$CAIRN_HOME" -name '*.cdsk' | wc -l)
echo "layer files left: $layers"
pass "after removing cA (the root) cD is intact"

# A paused VM: the checkpoint holds the state it was paused in, and the VM
# stays paused until resumed.
run 0 "$CAIRN" vm start t --detach           # off: boots from cD's disk
off=$(log_size)
wait_for 120 "the guest booting from cD's disk" said_since "$off" "state mem=none disk=D"
set_value P
run 0 "$CAIRN" vm pause t
run 0 "$CAIRN" checkpoint create t cP --json
remember_disk cP
grep -q '"memory_file_bytes"' "$out/last.out" || fail "the paused VM's checkpoint saved no memory"
[ "$("$CAIRN" vm show t | sed -n 's/^state: *//p')" = paused ] || fail "the VM is not paused after its checkpoint"
run 0 "$CAIRN" vm resume t
set_value Q
# Off: the checkpoint is of the disks; applied, the guest boots with them.
run 0 "$CAIRN" vm stop t
run 0 "$CAIRN" checkpoint create t cOff --json
grep -q '"memory_file_bytes"' "$out/last.out" && fail "the checkpoint of an off VM saved memory"
run 2 "$CAIRN" checkpoint show t cOff --machine
expect_in "$out/last.err" "holds disks only" "show --machine of a disks-only checkpoint gives no clear error"
check cP P
run 0 "$CAIRN" checkpoint apply t cOff --yes
[ "$("$CAIRN" vm show t | sed -n 's/^state: *//p')" = off ] || fail "applying the off VM's checkpoint did not leave it off"
off=$(log_size)
run 0 "$CAIRN" vm start t --detach
wait_for 120 "the guest booting from cOff's disk" said_since "$off" "state mem=none disk=Q"
pass "a paused VM's checkpoint holds the state it was paused in; an off VM's checkpoint boots from its disks"

# The options of a running VM's commands: --as-job with a description,
# --dry-run, apply --checkpoint-first, remove --subtree.
count_checkpoints() { "$CAIRN" checkpoint list t --json | grep -c '"checkpoint_id"' || true; }
set_value R
run 0 "$CAIRN" checkpoint create t cJ --description "taken as a job" --as-job --json
job=$(sed -n 's/^ *"job_id": *"\([^"]*\)".*/\1/p' "$out/last.out")
[ -n "$job" ] || fail "--as-job printed no job ID: $(cat "$out/last.out")"
run 0 "$CAIRN" job wait "$job"
run 0 "$CAIRN" checkpoint show t cJ --json
grep -q '"description": "taken as a job"' "$out/last.out" || fail "cJ lost its description: $(cat "$out/last.out")"
n=$(count_checkpoints)
set_value S
run 0 "$CAIRN" checkpoint apply t cJ --checkpoint-first --yes --dry-run
[ "$(count_checkpoints)" = "$n" ] || fail "apply --dry-run changed the tree"
running || fail "apply --dry-run stopped the VM"
run 0 "$CAIRN" checkpoint apply t cJ --checkpoint-first --yes
[ "$(count_checkpoints)" = $((n + 1)) ] || fail "apply --checkpoint-first did not add a checkpoint"
# The new checkpoint has the default name "t (MM/DD/YYYY - hh:mm:ss AM/PM)".
run 0 "$CAIRN" checkpoint list t --json
first_ck=$(sed -n 's/^ *"name": *"\(t ([0-9][0-9]\/[0-9][0-9]\/[0-9]\{4\} - [0-9:]* [AP]M)\)".*/\1/p' "$out/last.out" | tail -n 1)
[ -n "$first_ck" ] || fail "no checkpoint with a default name: $(cat "$out/last.out")"
off=$(log_size)
run 0 "$CAIRN" vm start t --detach
wait_resumed 60 t cJ state_since "$off"
[ "$(since "$off" | awk '/^state / && !f { print; f = 1 }')" = "state mem=R disk=R" ] || fail "cJ did not resume with R"
run 0 "$CAIRN" vm stop t
check "$first_ck" S
n=$(count_checkpoints)
run 0 "$CAIRN" vm start t --detach
wait_for 60 "the VM running" running
run 0 "$CAIRN" checkpoint remove t cJ --subtree --yes --dry-run
[ "$(count_checkpoints)" = "$n" ] || fail "remove --dry-run changed the tree"
run 0 "$CAIRN" checkpoint remove t cJ --subtree --yes
[ "$(count_checkpoints)" = $((n - 2)) ] || fail "remove --subtree of cJ did not remove cJ and '$first_ck'"
running || fail "the VM stopped during remove --subtree"
set_value T
run 0 "$CAIRN" vm stop t
pass "as a job with a description, dry runs, apply --checkpoint-first ('$first_ck') and remove --subtree on a running VM"
