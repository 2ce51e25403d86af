#!/usr/bin/env bash
# A disk freeze that fails half-way is undone: a running VM with a layered
# disk and a raw one is asked (over its control socket) to freeze both
# without the raw disk's import path. The layered disk's new layer, already
# put over its chain, is taken off again: no new file is left, the VMM's
# disks and config.json still name the old top, and the guest's writes after
# the failure land in that old top (it is writable again). A proper
# checkpoint then works.
source "$(dirname "$0")/lib.sh"
vm_test disk_freeze_rollback

"$CAIRN" disk convert "$IMAGES/disk.ext4" "$work/a.cdsk" >/dev/null
cp "$IMAGES/disk.ext4" "$work/b.raw"
guest='mount -t ext4 /dev/vda /mnt || exit 9; i=0; while true; do i=$((i+1)); echo w$i >> /mnt/ticks; sync; echo "tick $i"; sleep 0.2; done'
run 0 "$CAIRN" vm create r --memory 128M --disk "$work/a.cdsk" --disk "$work/b.raw" -- "$guest"
run 0 "$CAIRN" vm start r --detach
con=$CAIRN_HOME/vms/r/console.log
ticks() { tr -d '\r' < "$con" 2>/dev/null | grep -acE '^tick [0-9]+$' || true; }
ticks_past() { [ "$(ticks)" -ge "$1" ]; }
wait_for 120 "the guest writing its disk" ticks_past 3

# control REQUEST_JSON: one request on the VM's control socket; prints the reply line.
control() {
  python3 - "$CAIRN_HOME/vms/r/control.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(60)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
print(buf.decode().strip())
PY
}

reply=$(control "{\"command\":\"checkpoint-save\",\"arguments\":{\"dir\":null,\"freeze\":[{\"slot\":0,\"new_top\":\"$work/a-next.cdsk\"},{\"slot\":1,\"new_top\":\"$work/b-next.cdsk\"}]}}")
echo "$reply" > "$out/freeze.reply"
case $reply in *'"error"'*'no import path'*) ;; *) fail "the half-possible freeze did not fail as it should: $reply" ;; esac
[ ! -e "$work/a-next.cdsk" ] || fail "the layered disk's new layer was left behind"
[ ! -e "$work/b-next.cdsk" ] || fail "the raw disk's new layer was left behind"
disks=$(control '{"command":"disks"}')
case $disks in *"\"$work/a.cdsk\""*"\"$work/b.raw\""*) ;; *) fail "the VMM's disks changed: $disks" ;; esac
grep -q "\"$work/a.cdsk\"" "$CAIRN_HOME/vms/r/config.json" || fail "config.json no longer names the old top"
pass "a freeze failing at its second disk leaves no new layer and the VM on its old disks"

# The guest goes on writing; those writes are in a.cdsk.
at=$(ticks)
wait_for 60 "the guest writing on" ticks_past $((at + 5))
run 0 "$CAIRN" vm stop r
"$CAIRN" disk check "$work/a.cdsk" || fail "a.cdsk does not check out after the rollback"
"$CAIRN" disk convert "$work/a.cdsk" "$work/a.raw" >/dev/null
n=$(debugfs -R "cat /ticks" "$work/a.raw" 2>/dev/null | wc -l)
[ "$n" -ge $((at + 5)) ] || fail "a.cdsk holds $n ticks, the guest wrote at least $((at + 5)) (writes after the rollback lost)"
e2fsck -fn "$work/a.raw" > "$out/a.fsck" 2>&1 || { cat "$out/a.fsck"; fail "the file system is not clean"; }
pass "the guest's writes after the rollback are in the old top ($n ticks), e2fsck clean"

# A proper checkpoint of both disks still works.
before=$(ticks)  # the console log may keep the first run's lines
run 0 "$CAIRN" vm start r --detach
wait_for 120 "the guest writing again" ticks_past $((before + 3))
run 0 "$CAIRN" checkpoint create r c1 --json
grep -q '"c1"' "$out/last.out" || fail "checkpoint c1 not reported: $(cat "$out/last.out")"
run 0 "$CAIRN" checkpoint list r
grep -q 'c1' "$out/last.out" || fail "c1 is not in the checkpoint list: $(cat "$out/last.out")"
pass "a checkpoint of both disks works after the rollback"
