#!/usr/bin/env bash
# Incremental checkpoints end to end, on a guest that counts on its ext4 disk
# (appending "wN" to /mnt/ticks), rewrites 24 MiB of memory every second
# (cairn-memcheck --write: each page carries a generation kept in a table of
# its own) and, each cycle, drops its page cache, reads an 8 MiB file back
# (virtio-blk writing the file's pages into guest RAM from the VMM: DMA),
# waits, and reads it again from the page cache:
#  1. a chain of 10 checkpoints while it runs: c1 full, c2..c10 incremental,
#     each smaller than c1 and, loaded through its chain, equal page by page
#     to the guest's RAM as the pause left it (CAIRN_VERIFY_MEMORY=1). Odd
#     checkpoints are taken after a cache drop and before the read, even ones
#     after the read (step 3 checks where each applied one resumes): the
#     read's pages were written by the VMM alone, after the parent checkpoint;
#  2. c5 and c2, in the middle of the chain, are removed: each is folded into
#     the checkpoint built on it;
#  3. c10 (8 images deep), c9 and c6 (which c5 was folded into) are applied; the
#     restored guest, its RAM arriving lazily while it touches pages in random
#     order, goes on: memory in step with its generations, the page-cache
#     copy of the file equal to the file (so the DMA-written pages were in
#     the image), its disk's last tick that of the checkpoint;
#  4. a damaged chunk in c1, the base of the chain, met during lazy restore
#     of c10, stops the VM with a clear error.
source "$(dirname "$0")/lib.sh"
vm_test incremental_chain

guest='mount -t ext4 /dev/vda /mnt || exit 9
head -c 8388608 /dev/urandom > /mnt/blob && sync || exit 9
want=$(md5sum < /mnt/blob)
cairn-memcheck --write 24 1 &
n=0
while true; do
  n=$((n+1)); echo "w$n" >> /mnt/ticks
  echo 3 > /proc/sys/vm/drop_caches; echo "dma $n dropped"; sleep 10
  got=$(md5sum < /mnt/blob); echo "dma $n read"; sleep 12
  again=$(md5sum < /mnt/blob)
  if [ "$got" = "$want" ] && [ "$again" = "$want" ]; then echo "dma $n ok last $(tail -n1 /mnt/ticks)"; else echo "dma $n BAD"; fi
done'
console_from() { tail -c +$(( $1 + 1 )) "$CAIRN_HOME/vms/w/console.log" | tr -d '\r'; }
log_size() { stat -c %s "$CAIRN_HOME/vms/w/console.log" 2>/dev/null || echo 0; }
has_line() { console_from "$1" | grep -aqE "$2"; }
rounds_from() { console_from "$1" | grep -acE '^memcheck round [0-9]+ ok$' || true; }
rounds_past() { [ "$(rounds_from "$1")" -ge "$2" ]; }
bad_from() { console_from "$1" | grep -aE 'memcheck round [0-9]+ BAD|cairn-memcheck|^dma [0-9]+ BAD' || true; }
last_cycle() { console_from 0 | sed -n 's/^dma \([0-9]*\) dropped$/\1/p' | tail -1; }
field() { sed -n "s/^ *\"$1\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$out/last.out" | head -1; }
flip_byte() {  # flip_byte FILE OFFSET
  python3 -c 'import sys; f=open(sys.argv[1],"r+b"); o=int(sys.argv[2]); f.seek(o); b=f.read(1); f.seek(o); f.write(bytes([b[0]^0x20]))' "$1" "$2"
}

# checkpoint NAME full|incremental: a copy-on-write checkpoint, checked against the paused RAM.
declare -A bytes
checkpoint() {
  run 0 "$CAIRN" checkpoint create w "$1" --json
  [ "$(field memory_copy)" = copy-on-write ] || fail "$1: memory copied $(field memory_copy): $(cat "$out/last.out")"
  [ "$(field memory_verified)" = true ] || fail "$1: the image was not compared with the paused RAM"
  local inc=false; [ "$2" = incremental ] && inc=true
  [ "$(field incremental)" = "$inc" ] || fail "$1: incremental is $(field incremental), expected $inc: $(cat "$out/last.out")"
  bytes[$1]=$(field memory_file_bytes)
  echo "$1 ($2): paused $(field paused_ms) ms; $(field memory_file_bytes) bytes, $(field parent_chunks) chunks in its parent"
}

cp "$IMAGES/disk.ext4" "$work/w.ext4"
run 0 "$CAIRN" vm create w --memory 192M --disk "$work/w.ext4" -- "$guest"
export CAIRN_VERIFY_MEMORY=1
run 0 "$CAIRN" vm start w --detach
wait_for 240 "the guest rewriting its memory" rounds_past 0 2
pass "the guest counts, rewrites 24 MiB every second and re-reads a file from its disk"

# 1. Ten checkpoints, two per read cycle: after the cache drop, after the read.
declare -A cycle
k=0
while [ "$k" -lt 10 ]; do
  n=$(( $(last_cycle) + 1 ))
  wait_for 60 "cycle $n's cache drop" has_line 0 "^dma $n dropped$"
  k=$(( k + 1 )); kind=incremental; [ "$k" = 1 ] && kind=full
  checkpoint "c$k" "$kind"
  cycle[c$k]=$n
  if [ "$k" = 1 ]; then
    c1_img=$(ls "$CAIRN_HOME"/vms/w/checkpoints/*/memory.img)
    [ "$(echo "$c1_img" | wc -l)" = 1 ] || fail "not one memory image after c1: $c1_img"
  fi
  wait_for 60 "cycle $n's read" has_line 0 "^dma $n read$"
  k=$(( k + 1 ))
  checkpoint "c$k" incremental
  cycle[c$k]=$n
done
[ -z "$(bad_from 0)" ] || fail "the guest found bad memory or a bad read: $(bad_from 0)"
for k in $(seq 2 10); do
  [ "${bytes[c$k]}" -lt "${bytes[c1]}" ] || fail "c$k (${bytes[c$k]} bytes) is not smaller than the full c1 (${bytes[c1]})"
done
pass "a chain of 10: c1 full (${bytes[c1]} bytes), c2..c10 incremental ($(for k in $(seq 2 10); do printf '%s ' "${bytes[c$k]}"; done)bytes), each equal to the paused RAM"

# 2. Removal in the middle of the chain folds into the child.
run 0 "$CAIRN" checkpoint remove w c5 --yes
run 0 "$CAIRN" checkpoint remove w c2 --yes
run 0 "$CAIRN" checkpoint list w
for c in c2 c5; do grep -qw "$c" "$out/last.out" && fail "$c is still listed"; done
pass "c5 and c2 removed from the middle of the chain"

# 3. Apply c10 and c6; each goes on from its checkpoint.
resume() {  # resume NAME: the guest goes on from where NAME was taken in its read cycle
  local c=$1 n=${cycle[$1]} off want
  want="dma $n ok last w$n"                 # an even checkpoint: after the read
  [ $(( ${c#c} % 2 )) = 1 ] && want="dma $n read"  # an odd one: after the cache drop, before the read
  run 0 "$CAIRN" checkpoint apply w "$c" --yes
  off=$(log_size)
  run 0 "$CAIRN" vm start w --detach
  wait_for 120 "the guest restored from $c finishing cycle $n" has_line "$off" "^dma $n (ok|BAD)"
  wait_for 120 "the guest restored from $c checking its memory" rounds_past "$off" 3
  [ -z "$(bad_from "$off")" ] || fail "restored from $c, the guest found: $(bad_from "$off")"
  has_line "$off" 'memcheck filled' && fail "restored from $c, the guest started again"
  local first; first=$(console_from "$off" | grep -aE '^dma [0-9]+ ' | head -1)
  [ "$first" = "$want" ] || fail "restored from $c (taken in cycle $n), the guest went on with '$first', not '$want'"
  echo "$c: the restored guest went on with '$first' and checked 24 MiB $(rounds_from "$off") times"
}
resume c10
resume c9
resume c6
pass "applied, c10 (8 images deep), c9 and c6 (c5 folded in) go on: memory, page cache and disk as at the checkpoint; c9 was taken before the read that c10 holds"

# 4. A damaged chunk in the chain's base, met while c10 is restored lazily.
run 0 "$CAIRN" checkpoint apply w c10 --yes
img=$c1_img
size=$(stat -c %s "$img")
for off in $(seq $(( 1 << 20 )) $(( 1 << 20 )) $(( size - (2 << 20) ))); do flip_byte "$img" "$off"; done
run 8 "$CAIRN" vm start w
expect_in "$out/last.err" 'chunk [0-9]+ checksum mismatch' "a damaged chunk of c1 gave no clear error"
echo "refused: $(grep -a 'checksum' "$out/last.err" | head -1)"
pass "a damaged chunk in the chain's base stops the lazily restored VM with a clear error"
