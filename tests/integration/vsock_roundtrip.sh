#!/usr/bin/env bash
# virtio-vsock in both directions through the hybrid Unix-socket host side:
# host -> guest with "CONNECT <port>", guest -> host on <path>_<port>.
source "$(dirname "$0")/lib.sh"
# Unix sockets cannot live on the 9p scratch share: keep them on local /tmp.
sock=$(mktemp -d)/v.sock
# Host side of guest -> host: a listener on <sock>_6000 that answers "world".
python3 - "$sock" >"$SCRATCH/host-listener.txt" 2>&1 <<'PY' &
import socket, sys, os
path = sys.argv[1] + "_6000"
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path); s.listen(1); s.settimeout(90)
c, _ = s.accept(); c.settimeout(30)
data = b""
while not data.endswith(b"\n"):
    chunk = c.recv(100)
    if not chunk: break
    data += chunk
print("host got:", data.decode().strip(), flush=True)
c.sendall(b"world from the host\n"); c.shutdown(socket.SHUT_WR); c.close()
PY
listener=$!
# Guest: answer host connections on port 5000 (echo), then call the host on 6000.
"$CAIRN" run --vsock "3,$sock" -- \
  'cairn-vsock listen 5000 & sleep 8; echo "hello from the guest" | cairn-vsock connect 2 6000; wait' \
  >"$SCRATCH/guest.log" 2>&1 </dev/null &
vmm=$!
# Host -> guest: connect through the Unix socket once the guest listens.
python3 - "$sock" >"$SCRATCH/host-client.txt" 2>&1 <<'PY'
import socket, sys, time
deadline = time.time() + 60
while True:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(10)
        s.connect(sys.argv[1]); s.sendall(b"CONNECT 5000\n")
        line = b""
        while not line.endswith(b"\n"):
            b = s.recv(1)
            if not b: raise ConnectionError("closed before OK")
            line += b
        if not line.startswith(b"OK "): raise ConnectionError(line)
        break
    except (OSError, ConnectionError) as e:
        if time.time() > deadline: print("connect failed:", e); sys.exit(1)
        time.sleep(0.5)
s.sendall(b"ping over vsock\n")
got = b""
while not got.endswith(b"\n"):
    b = s.recv(100)
    if not b: break
    got += b
print("echo:", got.decode().strip())
PY
wait $listener || true
set +e
timeout 60 tail --pid=$vmm -f /dev/null
wait $vmm; rc=$?
set -e
tr -d '\r' < "$SCRATCH/guest.log" > "$SCRATCH/guest.txt"
expect_in "$SCRATCH/host-client.txt" '^echo: ping over vsock$' "host -> guest echo failed"
expect_in "$SCRATCH/host-listener.txt" '^host got: hello from the guest$' "guest -> host data did not arrive"
expect_in "$SCRATCH/guest.txt" '^world from the host$' "the host's reply did not reach the guest"
[ $rc = 0 ] || fail "the VM exited with $rc"
pass "vsock round trips in both directions"
