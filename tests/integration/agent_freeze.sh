#!/usr/bin/env bash
# The guest agent end to end: the default guest starts cairn-agent
# (cairn.agent=1) and mounts an ext4 data disk on /mnt while a loop appends a
# line to /mnt every 0.2 s and prints "guest: tick N". From the host side,
# through the VM's hybrid vsock socket:
#  - `cairn agent` ping / info / fsfreeze-status / freeze / thaw;
#  - while frozen the guest's writes stall, a second freeze is refused (exit 3),
#    and a copy of the disk image taken then passes e2fsck (what a production
#    checkpoint relies on); after thaw the writes go on;
#  - freeze hooks in /etc/cairn-agent/fsfreeze-hook.d run with freeze and thaw;
#  - without a thaw the agent thaws by itself after its freeze timeout
#    (cairn.agent.freeze_timeout on the kernel command line);
#  - a raw QGA client (the bytes qemu's tools and libvirt send) gets protocol
#    errors for garbage, malformed JSON, a 200 KB line and unknown commands,
#    the 0xFF-delimited sync reply, and the agent keeps answering.
source "$(dirname "$0")/lib.sh"
[ -x "$BUILD/guest-agent/cairn-agent" ] || fail "build cairn-agent first (and the initramfs with it)"
# Unix sockets cannot live on the test host's 9p share: sockets and the disk go to its private /tmp.
work=$(mktemp -d /tmp/cairn-agent.XXXXXX)
sock=$work/agent.vsock
disk=$work/disk.ext4
log=$SCRATCH/agent-guest.log
cp "$IMAGES/disk.ext4" "$disk"
# Generous: under the nested test host each `cairn agent` call takes seconds.
freeze_timeout=45

guest='mkdir -p /etc/cairn-agent/fsfreeze-hook.d
printf "#!/bin/sh\necho \"hook: \$1\" > /dev/console\n" > /etc/cairn-agent/fsfreeze-hook.d/10-log
chmod 755 /etc/cairn-agent/fsfreeze-hook.d/10-log
mount -t ext4 /dev/vda /mnt && echo "guest: mounted"
i=0
while [ $i -lt 1500 ]; do i=$((i+1)); echo "w$i" >> /mnt/ticks; echo "guest: tick $i"; sleep 0.2; done'

"$CAIRN" run --vsock "3,$sock" --disk "$disk" --cmdline "cairn.agent=1 cairn.agent.freeze_timeout=$freeze_timeout" \
  -- "$guest" >"$log" 2>&1 </dev/null &
vmm=$!
trap 'kill $vmm 2>/dev/null || true' EXIT

agent() { "$CAIRN" agent --socket "$sock" "$@"; }
last_tick() { tr -d '\r' < "$log" | sed -n 's/^guest: tick \([0-9]*\)$/\1/p' | tail -1; }
wait_for() {  # wait_for SECONDS PATTERN WHAT
  local end=$((SECONDS + $1))
  until tr -d '\r' < "$log" | grep -qE "$2"; do
    [ $SECONDS -lt $end ] || { tail -30 "$log"; fail "$3"; }
    kill -0 $vmm 2>/dev/null || { tail -30 "$log"; fail "the VM ended early ($3)"; }
    sleep 0.5
  done
}

wait_for 120 '^guest: tick 3$' "the guest did not mount the disk and start writing"
end=$((SECONDS + 60))
until agent --connect-timeout 5 ping >/dev/null 2>&1; do
  [ $SECONDS -lt $end ] || { tail -30 "$log"; agent ping || true; fail "the agent never answered a ping"; }
  sleep 1
done
pass "the agent answers ping through the hybrid vsock socket"

agent --json info > "$SCRATCH/agent-info.json"
python3 - "$SCRATCH/agent-info.json" <<'PY' || fail "guest-info has the wrong shape"
import json, sys
info = json.load(open(sys.argv[1]))
names = {c["name"] for c in info["supported_commands"]}
need = {"guest-sync", "guest-sync-delimited", "guest-ping", "guest-info",
        "guest-fsfreeze-status", "guest-fsfreeze-freeze", "guest-fsfreeze-thaw"}
assert isinstance(info["version"], str) and need <= names, info
assert all(c["enabled"] is True and c["success-response"] is True for c in info["supported_commands"]), info
PY
[ "$(agent fsfreeze-status)" = thawed ] || fail "status before freeze is not thawed"

# Freeze: one ext4 file system (the initramfs, proc, sysfs, tmpfs are skipped).
start=$SECONDS
n=$(agent --json freeze) || fail "freeze failed"
[ "$n" = 1 ] || fail "freeze froze $n file systems, expected 1"
[ "$(agent fsfreeze-status)" = frozen ] || fail "status after freeze is not frozen"
set +e; agent freeze 2>"$SCRATCH/agent-refreeze.err"; rc=$?; set -e
[ $rc = 3 ] || fail "a second freeze exited with $rc, expected 3 (disabled while frozen)"
grep -q "disabled" "$SCRATCH/agent-refreeze.err" || fail "a second freeze did not say the command is disabled"
t1=$(last_tick)
cp "$disk" "$work/frozen-copy.ext4"
sleep 2
t2=$(last_tick)
[ $((t2 - t1)) -le 1 ] || fail "the guest kept writing while frozen (tick $t1 -> $t2)"
echo "frozen checks took $((SECONDS - start)) s"
[ $((SECONDS - start)) -lt $freeze_timeout ] || fail "the frozen checks took longer than the freeze timeout"
n=$(agent --json thaw) || fail "thaw failed"
[ "$n" = 1 ] || fail "thaw thawed $n file systems, expected 1"
[ "$(agent fsfreeze-status)" = thawed ] || fail "status after thaw is not thawed"
sleep 2
t3=$(last_tick)
[ $((t3 - t2)) -ge 3 ] || fail "the guest's writes did not resume after thaw (tick $t2 -> $t3)"
e2fsck -fn "$work/frozen-copy.ext4" >"$SCRATCH/agent-fsck.txt" 2>&1 \
  || { cat "$SCRATCH/agent-fsck.txt"; fail "the disk copied while frozen is not consistent"; }
wait_for 10 '^hook: freeze$' "the freeze hook did not run"
wait_for 10 '^hook: thaw$' "the thaw hook did not run"
pass "freeze stalls guest writes (ticks $t1 -> $t2), the frozen copy is clean, thaw resumes (-> $t3), hooks ran"

# Auto-thaw: freeze and go away.
n=$(agent --json freeze) || fail "second freeze failed"
[ "$n" = 1 ] || fail "second freeze froze $n file systems"
[ "$(agent fsfreeze-status)" = frozen ] || fail "not frozen before the auto-thaw"
wait_for $((freeze_timeout + 20)) "no thaw within ${freeze_timeout}000 ms" "the agent did not thaw by itself"
[ "$(agent fsfreeze-status)" = thawed ] || fail "status after the auto-thaw is not thawed"
t4=$(last_tick); sleep 2; t5=$(last_tick)
[ $((t5 - t4)) -ge 3 ] || fail "the guest's writes did not resume after the auto-thaw"
pass "the agent thawed by itself after ${freeze_timeout} s without a thaw"

# A raw QGA client: what qemu's tools and libvirt put on the wire.
python3 - "$sock" > "$SCRATCH/agent-raw.txt" 2>&1 <<'PY' || { cat "$SCRATCH/agent-raw.txt"; fail "raw QGA client checks failed"; }
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(30)
s.connect(sys.argv[1]); s.sendall(b"CONNECT 1234\n")
buf = b""
def line():
    global buf
    while b"\n" not in buf:
        chunk = s.recv(65536)
        if not chunk: raise SystemExit("connection closed; had %r" % buf)
        buf += chunk
    l, buf = buf.split(b"\n", 1)
    return l
assert line().startswith(b"OK "), "no OK"
def reply():
    l = line(); delimited = l.startswith(b"\xff")
    return json.loads(l.lstrip(b"\xff")), delimited
def check(req, want_cls=None, want_return=None):
    s.sendall(req)
    r, _ = reply()
    if want_cls: assert r.get("error", {}).get("class") == want_cls, (req[:80], r)
    else: assert r.get("return") == want_return, (req[:80], r)
    print("ok:", req[:60], "->", json.dumps(r)[:100])
# libvirt: guest-sync, then commands.
check(b'{"execute":"guest-sync","arguments":{"id":1234567}}\n', want_return=1234567)
check(b'hello there\n', "GenericError")
check(b'{"execute": guest-ping}\n', "GenericError")
check(b'{"execute":"guest-ping","arguments":{"bogus":1}}\n', "GenericError")
check(b'{"execute":"' + b"x" * 200000 + b'"}\n', "GenericError")
check(b'{"execute":"guest-exec","arguments":{"path":"/bin/sh"}}\n', "CommandNotFound")
# qemu's guest-sync-delimited: 0xFF first (also flushes a half-sent request).
s.sendall(b'{"execute":"guest-pi')
s.sendall(b'\xff{"execute":"guest-sync-delimited","arguments":{"id":42}}\n')
r, delimited = reply()
assert delimited and r == {"return": 42}, (r, delimited)
print("ok: sync-delimited ->", r)
# No trailing newline, and two requests in one write.
s.sendall(b'{"execute":"guest-ping"}{"execute":"guest-fsfreeze-status","id":"x"}')
assert reply()[0] == {"return": {}}
assert reply()[0] == {"return": "thawed", "id": "x"}
print("raw client: all checks passed")
PY
agent ping >/dev/null || fail "the agent stopped answering after the raw client"
pass "protocol errors for garbage, malformed and oversized requests; 0xFF sync; the agent keeps answering"

kill $vmm 2>/dev/null || true
wait $vmm 2>/dev/null || true
trap - EXIT
pass "guest agent: freeze, thaw, auto-thaw, hooks and protocol robustness in a real guest"

# The default disk image carries the agent too: booted as the root file
# system (no initramfs), its init starts the agent, which freezes and thaws
# the root file system.
cp "$IMAGES/disk.ext4" "$work/root.ext4"
rlog=$SCRATCH/agent-root-guest.log
"$CAIRN" run --kernel "$IMAGES/vmlinux" --cmdline "root=/dev/vda rw init=/init cairn.agent=1"   --disk "$work/root.ext4" --vsock "5,$work/root.vsock" -- 'sleep 600' >"$rlog" 2>&1 </dev/null &
vmm=$!
trap 'kill $vmm 2>/dev/null || true' EXIT
end=$((SECONDS + 120))
until "$CAIRN" agent --socket "$work/root.vsock" --connect-timeout 5 ping >/dev/null 2>&1; do
  [ $SECONDS -lt $end ] || { tail -30 "$rlog"; fail "the agent of a guest booted from disk.ext4 never answered"; }
  kill -0 $vmm 2>/dev/null || { tail -30 "$rlog"; fail "the guest booted from disk.ext4 ended early"; }
  sleep 1
done
"$CAIRN" agent --socket "$work/root.vsock" freeze > "$SCRATCH/root-freeze.out" || fail "freezing the root file system failed"
grep -qE '^frozen: [1-9]' "$SCRATCH/root-freeze.out" || fail "no file system frozen: $(cat "$SCRATCH/root-freeze.out")"
"$CAIRN" agent --socket "$work/root.vsock" thaw > "$SCRATCH/root-thaw.out" || fail "thawing the root file system failed"
grep -qE '^thawed: [1-9]' "$SCRATCH/root-thaw.out" || fail "no file system thawed: $(cat "$SCRATCH/root-thaw.out")"
kill $vmm 2>/dev/null || true
wait $vmm 2>/dev/null || true
trap - EXIT
pass "a guest booted from the default disk image runs the agent, which freezes and thaws its root"
