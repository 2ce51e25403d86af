#!/usr/bin/env bash
# Checkpoints of a stored, running VM, end to end on a real guest: the guest
# counts in memory and appends "wN" to /mnt/ticks on its ext4 disk, printing
# "count N last wM" every 0.3 s, with the guest agent running.
#  1. standard checkpoint while it runs; it runs on; apply; start: the count
#     goes back to the checkpoint's value and goes on (memory, disk and
#     serial console all continue from the checkpoint);
#  2. apply/start cycles: the restored VMM's fd count and RSS do not grow;
#  3. production checkpoint: the agent freezes the guest's file systems
#     (reported), no memory saved; its disk passes e2fsck -fn and holds a
#     prefix of w1..wN; applied, the VM is off and boots from those disks;
#  4. production without an agent falls back to standard and says so;
#     production-only fails and the guest keeps running;
#  5. removing checkpoints while the VM runs merges their layers (one of them
#     into the layer the VMM writes), and the guest's disk stays consistent;
#  6. list --json has the published fields; bad names are refused;
#  7. a standard checkpoint exported and imported as a new VM resumes there.
source "$(dirname "$0")/lib.sh"
vm_test checkpoint_tree
cycles=${CAIRN_APPLY_CYCLES:-4}

guest='mount -t ext4 /dev/vda /mnt || exit 9
i=0
while true; do i=$((i+1)); echo "w$i" >> /mnt/ticks; echo "count $i last $(tail -n1 /mnt/ticks)"; sleep 0.3; done'
console() { tr -d '\r' < "$CAIRN_HOME/vms/$1/console.log"; }
# The last count printed after byte offset $2 of VM $1's console log.
last_count() { tail -c +$(( $2 + 1 )) "$CAIRN_HOME/vms/$1/console.log" | tr -d '\r' | sed -n 's/^count \([0-9]*\) .*/\1/p' | tail -1; }
first_count() { tail -c +$(( $2 + 1 )) "$CAIRN_HOME/vms/$1/console.log" | tr -d '\r' | sed -n 's/^count \([0-9]*\) .*/\1/p' | head -1; }
log_size() { stat -c %s "$CAIRN_HOME/vms/$1/console.log" 2>/dev/null || echo 0; }
counts_past() { local c; c=$(last_count "$1" "$2"); [ -n "$c" ] && [ "$c" -ge "$3" ]; }
vm_pid() { "$CAIRN" vm show "$1" | sed -n 's/^pid: *//p'; }
state_is() { [ "$("$CAIRN" vm show "$1" | sed -n 's/^state: *//p')" = "$2" ]; }
field() { sed -n "s/^ *\"$1\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$out/last.out" | head -1; }

cp "$IMAGES/disk.ext4" "$work/a.ext4"
run 0 "$CAIRN" vm create a --memory 128M --disk "$work/a.ext4" --vsock "3,$work/a.vsock" \
  --cmdline "cairn.agent=1" -- "$guest"
run 0 "$CAIRN" vm set a --checkpoint-type standard
run 0 "$CAIRN" vm start a --detach
wait_for 180 "the guest counting" counts_past a 0 5
pass "the VM runs and counts"

# 1. Standard checkpoint, run on, apply, resume.
before=$(last_count a 0)
run 0 "$CAIRN" checkpoint create a c1 --json
after=$(last_count a 0)
[ "$(field type)" = standard ] || fail "c1 is not a standard checkpoint: $(cat "$out/last.out")"
grep -q '"memory_file_bytes"' "$out/last.out" || fail "c1 reports no memory image"
# a.ext4 is raw: c1 copied it into a first layer while the guest wrote on,
# then copied the blocks written meanwhile in the pause. The raw file is not
# written after the checkpoint, so c1's layer must hold exactly its bytes.
grep -q '"precopy_ms"' "$out/last.out" || fail "c1 did not copy the raw disk before its pause: $(cat "$out/last.out")"
c1_disk=$(sed -n '/virtual_disk_drives/{n;s/^ *"\([^"]*\)".*/\1/p}' "$out/last.out")
echo "c1: raw disk copied in $(field precopy_ms) ms while running; paused $(field paused_ms) ms"
"$CAIRN" disk convert "$c1_disk" "$work/c1.raw" >/dev/null || fail "cannot read c1's disk $c1_disk"
cmp "$work/c1.raw" "$work/a.ext4" || fail "c1's first layer differs from the raw disk as the checkpoint left it"
rm -f "$work/c1.raw"
# The saved machine, readable: the vCPU, the interrupt controllers, the disk's queue.
run 0 "$CAIRN" checkpoint show a c1 --machine
expect_in "$out/last.out" '^vCPU 0: mp_state [0-9]+ RIP 0x[0-9a-f]+' "show --machine names no vCPU"
expect_in "$out/last.out" '^IOAPIC: IRR' "show --machine has no IOAPIC"
expect_in "$out/last.out" '^virtio-blk 0: status 0xf ' "show --machine has no live virtio-blk"
expect_in "$out/last.out" 'queue 0: size [0-9]+ next avail [0-9]+ next used [0-9]+' "show --machine has no queue"
wait_for 60 "the guest counting past the checkpoint" counts_past a 0 $((after + 10))
run 2 "$CAIRN" checkpoint apply a c1          # no terminal and no --yes: refused
grep -q -- '--yes' "$out/last.err" || fail "apply without --yes does not say how to confirm"
run 0 "$CAIRN" checkpoint apply a c1 --yes
state_is a saved || fail "after applying a standard checkpoint the VM is not saved: $("$CAIRN" vm show a)"
off=$(log_size a)
run 0 "$CAIRN" vm start a --detach
wait_resumed 60 a c1 counts_past a "$off" 1
first=$(first_count a "$off")
[ "$first" -ge "$before" ] && [ "$first" -le $((after + 2)) ] ||
  fail "after apply the count went on from $first; the checkpoint was taken between $before and $after"
line=$(tail -c +$((off + 1)) "$CAIRN_HOME/vms/a/console.log" | tr -d '\r' | grep '^count' | head -1)
[ "$line" = "count $first last w$first" ] || fail "memory and disk disagree after the restore: '$line'"
wait_for 60 "the restored guest counting on" counts_past a "$off" $((first + 5))
pass "apply of a standard checkpoint resumes at count $first (taken between $before and $after), disk in step"

# 2. Apply cycles: each restore is a fresh VMM; its fds and RSS stay flat.
fds0=; rss0=
for i in $(seq 1 "$cycles"); do
  run 0 "$CAIRN" checkpoint apply a c1 --yes
  off=$(log_size a)
  run 0 "$CAIRN" vm start a --detach
  wait_resumed 60 a c1 counts_past a "$off" 1
  pid=$(vm_pid a)
  fds=$(ls /proc/"$pid"/fd | wc -l)
  rss=$(awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status)
  first=$(first_count a "$off")
  [ "$first" -ge "$before" ] && [ "$first" -le $((after + 2)) ] || fail "cycle $i resumed at count $first"
  echo "cycle $i: count $first, VMM fds $fds, RSS $rss kB (at ${SECONDS}s)"
  if [ -z "$fds0" ]; then fds0=$fds; rss0=$rss; fi
  [ "$fds" -eq "$fds0" ] || fail "cycle $i: the VMM has $fds fds, the first restore had $fds0"
  [ "$rss" -le $(( rss0 * 5 / 4 + 4096 )) ] || fail "cycle $i: RSS $rss kB grew from $rss0 kB"
done
pass "$cycles apply cycles resume at the same point with $fds0 fds and RSS ~${rss0} kB each"

# 3. Production checkpoint through the guest agent.
run 0 "$CAIRN" vm set a --checkpoint-type production-only
wait_for 90 "the agent answering" "$CAIRN" agent a ping
run 0 "$CAIRN" checkpoint create a p1 --json
[ "$(field type)" = production ] || fail "p1 is not a production checkpoint: $(cat "$out/last.out")"
window=$(field freeze_window_ms)
guest_window=$(field guest_freeze_window_ms)
frozen=$(field frozen_filesystems)
[ -n "$window" ] && [ "${frozen:-0}" -ge 1 ] || fail "p1 reports no freeze: $(cat "$out/last.out")"
# The agent's own timing: present, and a real duration (the thaw took time).
awk -v g="$guest_window" 'BEGIN { exit !(g != "" && g + 0 > 0 && g + 0 < 10000) }' ||
  fail "p1 reports no window timed in the guest: $(cat "$out/last.out")"
grep -q '"memory_file_bytes"' "$out/last.out" && fail "a production checkpoint saved memory"
p1_disk=$(sed -n '/virtual_disk_drives/{n;s/^ *"\([^"]*\)".*/\1/p}' "$out/last.out")
"$CAIRN" disk convert "$p1_disk" "$work/p1.raw" >/dev/null || fail "cannot read p1's disk $p1_disk"
e2fsck -fn "$work/p1.raw" > "$out/p1.fsck" 2>&1 || { cat "$out/p1.fsck"; fail "p1's file system is not clean"; }
debugfs -R "cat /ticks" "$work/p1.raw" 2>/dev/null > "$work/p1.ticks"
n=$(wc -l < "$work/p1.ticks")
[ "$n" -ge 1 ] && seq 1 "$n" | sed 's/^/w/' | cmp -s - "$work/p1.ticks" ||
  fail "p1's /ticks is not w1..w$n: $(head -3 "$work/p1.ticks")"
pass "production checkpoint: $frozen file system(s) frozen ${window} ms (${guest_window} ms in the guest); its disk is clean and holds w1..w$n"

# 4. No agent: production falls back to standard, production-only fails, the guest goes on.
cp "$IMAGES/disk.ext4" "$work/b.ext4"
run 0 "$CAIRN" vm create b --memory 128M --disk "$work/b.ext4" --vsock "4,$work/b.vsock" -- "$guest"
run 0 "$CAIRN" vm set b --checkpoint-type production-only
run 0 "$CAIRN" vm start b --detach
wait_for 180 "guest b counting" counts_past b 0 3
run 1 "$CAIRN" checkpoint create b nope
grep -q "agent" "$out/last.err" || fail "production-only without an agent does not name the agent: $(cat "$out/last.err")"
c=$(last_count b 0)
wait_for 30 "guest b counting after the failed checkpoint" counts_past b 0 $((c + 3))
run 0 "$CAIRN" vm set b --checkpoint-type production
run 0 "$CAIRN" checkpoint create b fallback --json
[ "$(field type)" = standard ] || fail "the fallback checkpoint is not standard"
grep -q "fell back" "$out/last.out" || fail "the fallback is not recorded"
run 0 "$CAIRN" vm stop b
pass "without an agent: production-only fails (guest keeps running), production falls back to standard"

# 7. Export c1 (standard: memory too) and import it as VM "c": saved, resumes at c1's count.
run 0 "$CAIRN" checkpoint export a c1 --path "$work/export-c1"
[ -f "$work/export-c1/state/memory.img" ] || fail "the export of a standard checkpoint has no memory image"
run 0 "$CAIRN" vm import "$work/export-c1" --name c
state_is c saved || fail "the imported VM is not saved"
run 0 "$CAIRN" vm start c --detach
wait_for 60 "the imported VM counting" counts_past c 0 1
first=$(first_count c 0)
[ "$first" -ge "$before" ] && [ "$first" -le $((after + 2)) ] || fail "the imported VM resumed at count $first"
run 0 "$CAIRN" vm stop c
pass "c1 exported and imported as a new VM resumes at count $first"

# 5. Apply the production checkpoint: off, then boots from its disks.
run 0 "$CAIRN" checkpoint apply a p1 --yes
state_is a off || fail "after applying a production checkpoint the VM is not off"
off=$(log_size a)
run 0 "$CAIRN" vm start a --detach
wait_for 180 "the guest booting from p1's disks" counts_past a "$off" 2
line=$(tail -c +$((off + 1)) "$CAIRN_HOME/vms/a/console.log" | tr -d '\r' | grep '^count' | head -1)
[ "$line" = "count 1 last w1" ] || fail "the guest booted from p1 prints '$line'"
pass "applying p1 leaves the VM off; it boots from p1's disks"

# 6. Remove checkpoints while the VM runs: c1 (p1's parent) merges into p1's
#    layer; p1 then merges into the layer the running VMM writes.
run 0 "$CAIRN" checkpoint list a --json
for f in checkpoint_id name description type added_time modified_time parent_checkpoint_id \
         virtual_disk_drives vm_id vm_name enabled most_recent_task; do
  grep -q "\"$f\":" "$out/last.out" || fail "list --json lacks $f"
done
run 0 "$CAIRN" checkpoint rename a p1 "$(printf 'p%.0s' $(seq 1 100))"
run 2 "$CAIRN" checkpoint rename a c1 "$(printf 'p%.0s' $(seq 1 101))"
run 2 "$CAIRN" checkpoint rename a c1 "   "
run 0 "$CAIRN" checkpoint rename a "$(printf 'p%.0s' $(seq 1 100))" p1
run 0 "$CAIRN" checkpoint remove a c1 --yes
run 0 "$CAIRN" checkpoint list a
grep -q c1 "$out/last.out" && fail "c1 still listed"
c=$(last_count a "$off")
run 0 "$CAIRN" checkpoint remove a p1 --yes
wait_for 60 "the guest writing after the live merge" counts_past a "$off" $((c + 5))
layers=$(ls "$CAIRN_HOME/vms/a/disks" | wc -l)
[ "$layers" -eq 1 ] || fail "after removing every checkpoint $layers layers remain: $(ls "$CAIRN_HOME/vms/a/disks")"
run 0 "$CAIRN" vm stop a
top=$("$CAIRN" vm show a | sed -n 's/^disk: *vda \(.*\)$/\1/p')
"$CAIRN" disk check "$top" > "$out/top.check" 2>&1 || { cat "$out/top.check"; fail "the merged disk fails its check"; }
pass "removing c1 and p1 while the VM runs merges their layers into one"
