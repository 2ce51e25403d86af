#!/usr/bin/env bash
# Production checkpoints when the guest agent is killed, hung or absent, on a
# real stored VM: `production-only` fails and names the agent, `production`
# falls back to a standard checkpoint and records why, and the guest's file
# systems are never left frozen (its writes go on; a hung agent that wakes up
# later and runs a freeze left over from a dead connection thaws by itself).
#
# The host steers the guest through a mailbox: a read-only raw disk (vdb)
# that the guest reads with O_DIRECT every loop, so that a line the host
# writes into the file reaches it ("N:kill", "N:start", "N:stop", "N:cont").
source "$(dirname "$0")/lib.sh"
vm_test agent_failures

guest='mount -t ext4 /dev/vda /mnt || exit 9
i=0 last=
while true; do
  i=$((i+1)); echo "w$i" >> /mnt/ticks; echo "count $i"
  m=$(dd if=/dev/vdb bs=512 count=1 iflag=direct 2>/dev/null | tr -d "\000\n")
  if [ -n "$m" ] && [ "$m" != "$last" ]; then
    last=$m
    case "${m#*:}" in
      kill) kill -9 $(pidof cairn-agent) && echo "mbox: killed" ;;
      start) /bin/cairn-agent --daemon && echo "mbox: started" ;;
      stop) kill -STOP $(pidof cairn-agent) && echo "mbox: stopped" ;;
      cont) kill -CONT $(pidof cairn-agent) && echo "mbox: continued" ;;
    esac
  fi
  sleep 0.3
done'
log() { tr -d '\r' < "$CAIRN_HOME/vms/g/console.log"; }
last_count() { log | sed -n 's/^count \([0-9]*\)$/\1/p' | tail -1; }
counts_past() { local c; c=$(last_count); [ -n "$c" ] && [ "$c" -ge "$1" ]; }
seq_no=0
# mbox WORD: hands WORD to the guest and waits until it says it acted.
mbox() {
  seq_no=$((seq_no + 1))
  { printf '%s' "$seq_no:$1"; head -c $((512 - ${#seq_no} - 1 - ${#1})) /dev/zero; } > "$work/mbox.blk"
  dd if="$work/mbox.blk" of="$work/mbox.img" bs=512 count=1 conv=notrunc,fsync 2>/dev/null
  wait_for 60 "the guest acting on '$1'" said "$2"
}
# sed reads all its input: `log | grep -q` would fail under pipefail when
# grep stops early and tr gets SIGPIPE.
said() { [ -n "$(log | sed -n "/^mbox: $1/p")" ]; }
thawed() { [ "$("$CAIRN" agent g fsfreeze-status)" = thawed ]; }
# The guest goes on writing: three more counts within 30 s.
writes_go_on() {
  local c; c=$(last_count)
  wait_for 30 "the guest writing on ($1)" counts_past $((c + 3))
}
# no_agent_checkpoints HOW: with the agent HOW (killed, hung), production-only
# fails naming the agent and production falls back to a standard checkpoint
# ("HOW-fallback") and says so; the guest writes on after each.
no_agent_checkpoints() {
  run 0 "$CAIRN" vm set g --checkpoint-type production-only
  local t0=$SECONDS
  run 1 "$CAIRN" checkpoint create g "$1-only"
  grep -q "agent" "$out/last.err" || fail "production-only with a $1 agent does not name the agent: $(cat "$out/last.err")"
  echo "a $1 agent was given up on after $((SECONDS - t0)) s"
  writes_go_on "after production-only met a $1 agent"
  run 0 "$CAIRN" vm set g --checkpoint-type production
  run 0 "$CAIRN" checkpoint create g "$1-fallback" --json
  [ "$(field type)" = standard ] || fail "with a $1 agent the checkpoint is not standard: $(cat "$out/last.out")"
  grep -q "fell back" "$out/last.out" || fail "the fallback is not recorded: $(cat "$out/last.out")"
  writes_go_on "after the fallback checkpoint"
}
field() { sed -n "s/^ *\"$1\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$out/last.out" | head -1; }

cp "$IMAGES/disk.ext4" "$work/data.ext4"
head -c 1M /dev/zero > "$work/mbox.img"
run 0 "$CAIRN" vm create g --memory 128M --disk "$work/data.ext4" --disk "$work/mbox.img,ro" \
  --vsock "3,$work/g.vsock" --cmdline "cairn.agent=1" -- "$guest"
run 0 "$CAIRN" vm start g --detach
wait_for 180 "the guest counting" counts_past 3
wait_for 90 "the agent answering" "$CAIRN" agent g ping
pass "the guest runs with its agent and reads its mailbox"

# Killed: nothing listens on the agent's port any more.
mbox kill killed
no_agent_checkpoints killed
pass "killed agent: production-only fails, production falls back to standard, the guest writes on"

# Hung: the agent's socket still takes connections but nothing answers.
mbox start started
wait_for 60 "the restarted agent answering" "$CAIRN" agent g ping
mbox stop stopped
no_agent_checkpoints hung
pass "hung agent: production-only fails, production falls back to standard, the guest writes on"

# Woken up, the agent may run a freeze left from a connection the host gave
# up on: nobody will thaw it, so it must thaw by itself.
mbox cont continued
wait_for 60 "the agent answering again" "$CAIRN" agent g ping
wait_for 60 "the agent reporting thawed" thawed
writes_go_on "after the agent woke up"
run 0 "$CAIRN" vm set g --checkpoint-type production-only
run 0 "$CAIRN" checkpoint create g after-wake --json
[ "$(field type)" = production ] || fail "the woken agent does not serve a production checkpoint: $(cat "$out/last.out")"
writes_go_on "after a production checkpoint"
pass "a woken agent is thawed and serves production checkpoints again"

run 0 "$CAIRN" checkpoint list g
for n in killed-fallback hung-fallback after-wake; do
  grep -q "$n" "$out/last.out" || fail "checkpoint $n is missing from the list"
done
run 0 "$CAIRN" vm stop g
pass "agent failures never leave the guest frozen"
