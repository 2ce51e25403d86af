#!/usr/bin/env bash
# Chained checkpoint/apply cycles on a real guest: checkpoint the running VM,
# let it run on, apply that checkpoint, start it, and take the next
# checkpoint of the restored guest, 6 times (CAIRN_CHAIN_CYCLES; the 20-link
# chain runs in-process in kvm_roundtrip, where it costs no VMM starts). Each
# cycle must resume exactly at its checkpoint (the count held in memory and
# the last line of a file on the guest's ext4 disk agree and lie between the
# counts seen just before and just after the checkpoint), and nothing may
# pile up: each restored VMM holds the same fds apart from one per disk
# layer (the chain grows by one layer per checkpoint), and its RSS does not
# grow from cycle to cycle.
source "$(dirname "$0")/lib.sh"
vm_test checkpoint_cycles
cycles=${CAIRN_CHAIN_CYCLES:-6}

guest='mount -t ext4 /dev/vda /mnt || exit 9
i=0
while true; do i=$((i+1)); echo "w$i" >> /mnt/ticks; echo "count $i last $(tail -n1 /mnt/ticks)"; sleep 0.3; done'
log_size() { stat -c %s "$CAIRN_HOME/vms/c/console.log" 2>/dev/null || echo 0; }
# The count lines after byte offset $1 of the console log.
count_lines() { tail -c +$(( $1 + 1 )) "$CAIRN_HOME/vms/c/console.log" | tr -d '\r' | grep -a '^count [0-9]* last ' || true; }
last_count() { count_lines "$1" | tail -1 | awk '{print $2}'; }
counts_past() { local c; c=$(last_count "$1"); [ -n "$c" ] && [ "$c" -ge "$2" ]; }
vm_pid() { "$CAIRN" vm show c | sed -n 's/^pid: *//p'; }
# The VMM's open disk layers (its fds on *.cdsk files): one per layer of the chain.
layer_fds() { find /proc/"$1"/fd -lname '*.cdsk' 2>/dev/null | wc -l; }

cp "$IMAGES/disk.ext4" "$work/c.ext4"
run 0 "$CAIRN" vm create c --memory 128M --disk "$work/c.ext4" -- "$guest"
run 0 "$CAIRN" vm set c --checkpoint-type standard
run 0 "$CAIRN" vm start c --detach
wait_for 180 "the guest counting" counts_past 0 5

base_fds=; rss0=; off=0
for i in $(seq 1 "$cycles"); do
  before=$(last_count "$off")
  run 0 "$CAIRN" checkpoint create c "k$i"
  after=$(last_count "$off")
  wait_for 60 "cycle $i: the guest counting past its checkpoint" counts_past "$off" $((after + 3))
  run 0 "$CAIRN" checkpoint apply c "k$i" --yes
  off=$(log_size)
  run 0 "$CAIRN" vm start c --detach
  wait_for 60 "cycle $i: the restored guest counting" counts_past "$off" 1
  first=$(count_lines "$off" | head -1)
  n=$(echo "$first" | awk '{print $2}')
  [ "$first" = "count $n last w$n" ] || fail "cycle $i: memory and disk disagree after the restore: '$first'"
  [ "$n" -ge "$before" ] && [ "$n" -le $((after + 1)) ] ||
    fail "cycle $i resumed at count $n; its checkpoint was taken between counts $before and $after"
  pid=$(vm_pid)
  fds=$(ls /proc/"$pid"/fd | wc -l)
  rss=$(awk '/^RssAnon:/ {print $2}' /proc/"$pid"/status)
  depth=$(layer_fds "$pid")
  echo "cycle $i: resumed at count $n (checkpoint between $before and $after), VMM fds $fds with $depth disk layers, anonymous RSS $rss kB"
  if [ -z "$base_fds" ]; then base_fds=$((fds - depth)); depth1=$depth; fi
  [ "$depth" -eq $((depth1 + i - 1)) ] || fail "cycle $i: the VMM has $depth disk layers open, expected $((depth1 + i - 1))"
  [ $((fds - depth)) -eq "$base_fds" ] ||
    fail "cycle $i: the VMM holds $fds fds for $depth disk layers; the first restore held $base_fds besides its layers"
  # Anonymous RSS: the VMM's own memory, guest RAM (shared memfd pages) aside.
  # Taken from cycle 2 on: the first cycle's allocator warm-up differs.
  if [ "$i" = 2 ]; then rss0=$rss; fi
  if [ -n "$rss0" ]; then
    [ "$rss" -le $((rss0 + 8192)) ] || fail "cycle $i: the VMM's RSS grew from $rss0 kB to $rss kB"
  fi
done
run 0 "$CAIRN" vm stop c
pass "$cycles chained checkpoint/apply cycles each resumed at their checkpoint, fds flat apart from disk layers, RSS flat"
