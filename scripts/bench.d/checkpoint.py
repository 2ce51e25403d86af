"""Checkpoint benchmark body (runs where /dev/kvm works); see scripts/bench-checkpoint.

Standard checkpoints: cairn (`checkpoint create --json`, `checkpoint apply`,
`vm start --detach`) against QEMU microvm (QMP stop + migrate to a file, cont;
a second QEMU with -incoming), same bzImage, initramfs, memory and guest
command. Production checkpoints: cairn only, the guest agent freezing 1 or 4
mounted ext4 file systems. Every wait has a deadline; every process started
here is ended on the way out. Exit status 1 when a part failed to run.
"""
import base64, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

repo = sys.argv[1]
build = os.environ.get("CAIRN_BUILD", os.path.join(repo, "build"))
images = os.environ.get("CAIRN_IMAGES", os.path.join(build, "images"))
if not os.path.exists(os.path.join(images, "bzImage")):
    images = os.path.join(repo, "build", "images")
kernel, initrd, disk_image = (os.path.join(images, f) for f in ("bzImage", "initramfs.cpio.gz", "disk.ext4"))
sizes = os.environ.get("CAIRN_BENCH_SIZES", "256M 1G").split()
disk_counts = [int(n) for n in os.environ.get("CAIRN_BENCH_DISKS", "1 4").split()]
runs = int(os.environ.get("CAIRN_BENCH_RUNS", "3"))
prod_runs = int(os.environ.get("CAIRN_BENCH_PROD_RUNS", "5"))
fill_kind = os.environ.get("CAIRN_BENCH_FILL", "random")
incr_sizes = os.environ.get("CAIRN_BENCH_INCR_SIZES", " ".join(sizes)).split()
incr_pcts = [int(n) for n in os.environ.get("CAIRN_BENCH_INCR_PCTS", "10 50").split()]
incr_runs = int(os.environ.get("CAIRN_BENCH_INCR_RUNS", "3"))
BOOT_TIMEOUT = 900  # boot plus filling RAM, under nested emulation
TICK = re.compile(rb"tick (\d+)\r?\n")

# Sockets cannot live on the test host's 9p share: everything goes to its private /tmp.
work = tempfile.mkdtemp(prefix="cairn-bench-ckpt.", dir="/tmp")
home = os.path.join(work, "home")
os.makedirs(home)
# A private copy of the binary: a rebuild of the build folder during the run changes nothing here.
CAIRN = os.path.join(work, "cairn")
shutil.copy2(os.path.join(build, "cairn"), CAIRN)
MEMDIFF = os.path.join(work, "cairn-memdiff")
shutil.copy2(os.path.join(build, "cairn-memdiff"), MEMDIFF)
ENV = dict(os.environ, CAIRN_HOME=home, CAIRN_IMAGES=images)

procs = []      # Popen objects to kill on the way out
cairn_vms = []  # VM names to stop on the way out


class Failure(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def mib(n):
    return n / (1 << 20)


def size_mib(text):
    n, unit = int(text[:-1]), text[-1].upper()
    return n * {"M": 1, "G": 1024}[unit]


# ---------------------------------------------------------------- processes

def cairn(*args, timeout=600, check=True):
    """Runs the cairn CLI; returns (rc, stdout, stderr, wall seconds)."""
    t0 = time.monotonic()
    try:
        r = subprocess.run([CAIRN, *args], env=ENV, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"cairn {' '.join(args)}: no result within {timeout}s")
    dt = time.monotonic() - t0
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    if check and r.returncode != 0:
        raise Failure(f"cairn {' '.join(args[:4])} exited with {r.returncode}:\n{out}{err}")
    return r.returncode, out, err, dt


def start_proc(cmd, **kw):
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def end_proc(p, grace=5):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    if p in procs:
        procs.remove(p)


def stop_vm(name):
    cairn("vm", "stop", "--force", name, timeout=60, check=False)
    if name in cairn_vms:
        cairn_vms.remove(name)


def end_all():
    """Ends every process and VM started here that still runs."""
    for p in list(procs):
        try:
            end_proc(p, grace=2)
        except Exception:
            pass
    for name in list(cairn_vms):
        try:
            stop_vm(name)
        except Exception:
            pass


def cleanup():
    end_all()
    shutil.rmtree(work, ignore_errors=True)


def on_signal(sig, _frame):
    raise Failure(f"interrupted by signal {sig}")


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)


# ---------------------------------------------------------------- consoles

class Console:
    """Follows a console file; finds "tick N" lines written after an offset."""

    def __init__(self, path):
        self.path = path

    def size(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def read_from(self, off):
        try:
            with open(self.path, "rb") as f:
                f.seek(off)
                return f.read()
        except OSError:
            return b""

    def tail(self, n=2000):
        return self.read_from(max(0, self.size() - n)).decode(errors="replace")

    def wait_for(self, pattern, off, timeout, what, alive=None, poll=0.005):
        """Waits for `pattern` (bytes regex) after byte `off`; returns (match, monotonic time, end offset)."""
        deadline = time.monotonic() + timeout
        pos, base, buf = off, off, b""
        while True:
            data = self.read_from(pos)
            if data:
                pos += len(data)
                buf += data
                m = re.search(pattern, buf)
                if m:
                    return m, time.monotonic(), base + m.end()
                base += max(0, len(buf) - 4096)
                buf = buf[-4096:]
            if alive is not None and not alive():
                raise Failure(f"the VM ended while waiting for {what}; console tail:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise Failure(f"timed out after {timeout}s waiting for {what}; console tail:\n{self.tail()}")
            time.sleep(poll)

    def next_tick(self, timeout=60, alive=None):
        m, t, _ = self.wait_for(TICK, self.size(), timeout, "the guest's next tick", alive)
        return int(m.group(1)), t


# ---------------------------------------------------------------- guests

def fill_command(mem_mib):
    """Fills ~50% of guest RAM with non-zero data in a tmpfs file, then ticks every 0.1 s."""
    fill = mem_mib // 2
    if fill_kind == "random":
        # 8 MiB from /dev/urandom, repeated: incompressible for lz4 (64 KiB window),
        # no zero pages, and far faster than reading all of it from urandom under emulation.
        make = (f"dd if=/dev/urandom of=/tmp/seed bs=1M count=8 2>/dev/null; n=0; "
                f"while [ $n -lt {fill // 8} ]; do cat /tmp/seed; n=$((n+1)); done > /tmp/fill; rm /tmp/seed")
    elif fill_kind == "binary":
        # Copies of the busybox binary: program-like data that lz4 compresses in part.
        make = (f"s=$(wc -c < /bin/busybox); n=0; while [ $n -lt $(({fill}*1048576/s)) ]; do "
                f"cat /bin/busybox; n=$((n+1)); done > /tmp/fill")
    else:
        raise SystemExit(f"CAIRN_BENCH_FILL={fill_kind}: expected random or binary")
    return (f"mount -o remount,size=90% /tmp; {make}; echo \"fill-done $(du -m /tmp/fill)\"; "
            f"i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 0.1; done")


def dirty_command(mem_mib, pct):
    """~50% of RAM filled with random data, pct% of RAM of it rewritten with new random data in
    rounds ("dirtied N MS": round N took MS ms), 3 s apart; ticks every 0.1 s meanwhile. Each round
    also rewrites its 8 MiB seed in place (same pages): dirty MiB + 8 are rewritten per round."""
    dirty = max(8, mem_mib * pct // 100 // 8 * 8)
    static = max(0, mem_mib // 2 - dirty) // 8 * 8
    seed = "dd if=/dev/urandom of=/tmp/seed bs=1M count=8 conv=notrunc 2>/dev/null"
    # A new 8 MiB seed per round, repeated: the pages change every round and lz4 (64 KiB window) gains nothing.
    fill = (f"{seed}; n=0; while [ $n -lt {static // 8} ]; do cat /tmp/seed; n=$((n+1)); done > /tmp/fill; "
            f"n=0; while [ $n -lt {dirty // 8} ]; do cat /tmp/seed; n=$((n+1)); done > /tmp/dirty")
    ms = "$(( $(cut -d' ' -f1 /proc/uptime | tr -d .) * 10 ))"
    rounds = (f"r=0; while true; do r=$((r+1)); {seed}; t0={ms}; n=0; while [ $n -lt {dirty // 8} ]; do "
              f"dd if=/tmp/seed of=/tmp/dirty bs=1M seek=$((n*8)) conv=notrunc 2>/dev/null; n=$((n+1)); done; "
              f"echo \"dirtied $r $(( {ms} - t0 ))\"; sleep 3; done")
    return (f"mount -o remount,size=90% /tmp; {fill}; echo \"fill-done $(du -m /tmp/fill /tmp/dirty | "
            f"awk '{{s+=$1}} END {{print s}}')\"; (i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 0.1; "
            f"done) & {rounds}")


def writer_command(n):
    letters = "abcdefgh"[:n]
    mounts = "; ".join(f"mkdir -p /mnt/{x} && mount -t ext4 /dev/vd{x} /mnt/{x} || exit 9" for x in letters)
    writes = "; ".join(f"echo w$i >> /mnt/{x}/ticks" for x in letters)
    return (f"{mounts}; echo disks-mounted; i=0; while true; do i=$((i+1)); {writes}; echo \"tick $i\"; "
            f"sleep 0.1; done")


def b64(cmd):
    return base64.b64encode(cmd.encode()).decode()


# ---------------------------------------------------------------- QMP

class Qmp:
    def __init__(self, path, timeout, alive):
        deadline = time.monotonic() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                break
            except OSError:
                s.close()
                if not alive():
                    raise Failure(f"QEMU ended before its QMP socket {path} answered")
                if time.monotonic() > deadline:
                    raise Failure(f"QEMU's QMP socket {path} did not answer within {timeout}s")
                time.sleep(0.005)
        s.settimeout(60)
        self.sock, self.f = s, s.makefile("rb")
        self.read()  # greeting
        self.cmd("qmp_capabilities")

    def read(self):
        line = self.f.readline()
        if not line:
            raise Failure("QEMU closed its QMP socket")
        return json.loads(line)

    def cmd(self, name, args=None):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self.read()
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise Failure(f"QMP {name}: {r['error']}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def qemu_cmd(mem, serial, qmp, incoming=None):
    cmd = ["qemu-system-x86_64", "-enable-kvm", "-M", "microvm,acpi=off", "-cpu", "host", "-m", mem, "-smp", "1",
           "-nodefaults", "-no-user-config", "-display", "none", "-serial", f"file:{serial}", "-monitor", "none",
           "-no-reboot", "-device", "isa-debug-exit,iobase=0x501,iosize=1",
           "-qmp", f"unix:{qmp},server=on,wait=off",
           "-kernel", kernel, "-initrd", initrd,
           "-append", f"console=ttyS0 reboot=k panic=-1 cairn.cmd={b64(fill_command(size_mib(mem)))}"]
    if incoming:
        cmd += ["-incoming", incoming]
    return cmd


def wait_file_stable(path, timeout=30):
    deadline, last = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        n = os.path.getsize(path) if os.path.exists(path) else -1
        if n == last and n > 0:
            return n
        last = n
        time.sleep(0.05)
    raise Failure(f"{path} did not stop growing within {timeout}s")


# ---------------------------------------------------------------- part 1

def measure_restore(name, con, ckpt, r, label):
    """Applies checkpoint `ckpt` of VM `name` and starts it: appends to r["apply"], r["start"] (wall of
    `vm start --detach`, which returns once the restored VMM answers, vCPUs running) and r["tick"]
    (from that launch to the guest's next tick line)."""
    _, _, _, apply_wall = cairn("checkpoint", "apply", name, ckpt, "--yes")
    off = con.size()
    t0 = time.monotonic()
    p = start_proc([CAIRN, "vm", "start", name, "--detach"], env=ENV, stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT)
    t_ready = t_tick = None
    pos, buf, deadline = off, b"", t0 + 120
    while t_ready is None or t_tick is None:
        if t_ready is None and p.poll() is not None:
            t_ready = time.monotonic()
            if p.returncode != 0:
                # Reported as a failure, but the VMM may still be restoring: the guest's tick says.
                err = p.stdout.read().decode(errors="replace").strip()
                r["start_errors"].append(f"{label}: vm start --detach exited with {p.returncode} "
                                         f"after {(t_ready - t0) * 1000:.0f} ms: {err}")
                log(f"  {r['start_errors'][-1]}")
        if t_tick is None:
            data = con.read_from(pos)
            if data:
                pos += len(data); buf += data
                if TICK.search(buf):
                    t_tick = time.monotonic()
        if time.monotonic() > deadline:
            state = (f"vm start exited with {p.returncode}" if t_ready else "vm start had not returned")
            show = cairn("vm", "show", name, timeout=30, check=False)[1]
            raise Failure(f"{label}: no tick from the restored guest within 120s ({state}); "
                          f"vm show:\n{show}console tail:\n{con.tail(600)}")
        time.sleep(0.002)
    procs.remove(p)
    r["apply"].append(apply_wall * 1000)
    if p.returncode == 0:
        r["start"].append((t_ready - t0) * 1000)
    r["tick"].append((t_tick - t0) * 1000)
    log(f"  raw {label}: apply_wall_ms={apply_wall * 1000:.1f} "
        f"start_wall_ms={(t_ready - t0) * 1000:.1f} to_next_tick_ms={(t_tick - t0) * 1000:.1f}")


def bench_cairn_standard(mem):
    name = f"std-{mem}"
    r = {"pause": [], "total": [], "wall": [], "bytes": [], "apply": [], "start": [], "tick": [], "start_errors": []}
    cairn("vm", "create", name, "--memory", mem, "--kernel", kernel, "--initrd", initrd, "--", fill_command(size_mib(mem)))
    cairn_vms.append(name)
    cairn("vm", "set", name, "--checkpoint-type", "standard")
    con = Console(os.path.join(home, "vms", name, "console.log"))
    cairn("vm", "start", name, "--detach", timeout=120)
    m, _, end = con.wait_for(rb"fill-done (\d+)\s", 0, BOOT_TIMEOUT, "the guest filling its memory")
    log(f"cairn {mem}: guest filled {int(m.group(1))} MiB")
    con.wait_for(TICK, end, 60, "the first tick")
    last = None
    for i in range(runs):
        con.next_tick()
        _, out, _, wall = cairn("checkpoint", "create", name, f"c{i}", "--json")
        j = json.loads(out)
        if j.get("type") != "standard":
            raise Failure(f"checkpoint c{i} is not standard: {out}")
        st = j["stats"]
        nbytes = st["memory_file_bytes"] + st["state_file_bytes"]
        r["pause"].append(st["paused_ms"]); r["total"].append(st["total_ms"])
        r["wall"].append(wall * 1000); r["bytes"].append(nbytes)
        log(f"  raw cairn {mem} checkpoint {i + 1}: paused_ms={st['paused_ms']:.1f} total_ms={st['total_ms']:.1f} "
            f"cli_wall_ms={wall * 1000:.1f} memory_file_bytes={st['memory_file_bytes']} "
            f"state_file_bytes={st['state_file_bytes']} memory_copy={st.get('memory_copy')} "
            f"live_copy_ms={st.get('live_copy_ms', 0):.1f} live_rounds={st.get('live_rounds', 0)} "
            f"paused_chunks={st.get('paused_chunks', 0)}")
        last = f"c{i}"
    for i in range(runs):
        measure_restore(name, con, last, r, f"cairn {mem} restore {i + 1}")
    stop_vm(name)
    shutil.rmtree(os.path.join(home, "vms", name), ignore_errors=True)
    return r


def bench_qemu_standard(mem):
    r = {"pause": [], "total": [], "wall": [], "bytes": [], "start": [], "tick": [], "loaded": []}
    image = os.path.join(work, f"qemu-{mem}.mig")
    serial, qmp_path = os.path.join(work, f"qemu-{mem}.serial"), os.path.join(work, f"qemu-{mem}.qmp")
    p = start_proc(qemu_cmd(mem, serial, qmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    alive = lambda: p.poll() is None
    q = Qmp(qmp_path, 60, alive)
    # No bandwidth cap (7.2's default is 32 MiB/s): the guest is stopped, as in a save.
    q.cmd("migrate-set-parameters", {"max-bandwidth": 100 << 30})
    con = Console(serial)
    m, _, end = con.wait_for(rb"fill-done (\d+)\s", 0, BOOT_TIMEOUT, "the guest filling its memory", alive)
    log(f"qemu {mem}: guest filled {int(m.group(1))} MiB")
    con.wait_for(TICK, end, 60, "the first tick", alive)
    for i in range(runs):
        con.next_tick(alive=alive)
        if os.path.exists(image):
            os.unlink(image)
        t0 = time.monotonic()
        q.cmd("stop")
        q.cmd("migrate", {"uri": f"exec:cat > {image}"})
        deadline = t0 + 600
        while True:
            st = q.cmd("query-migrate").get("status")
            if st == "completed":
                break
            if st in ("failed", "cancelled"):
                raise Failure(f"QEMU migration to {image}: {st}")
            if time.monotonic() > deadline:
                raise Failure("QEMU migration did not complete within 600s")
            time.sleep(0.002)
        t1 = time.monotonic()
        q.cmd("cont")
        t2 = time.monotonic()
        nbytes = wait_file_stable(image)
        r["pause"].append((t2 - t0) * 1000); r["total"].append((t2 - t0) * 1000)
        r["wall"].append((t2 - t0) * 1000); r["bytes"].append(nbytes)
        log(f"  raw qemu {mem} save {i + 1}: stop_to_completed_ms={(t1 - t0) * 1000:.1f} "
            f"stop_to_cont_ms={(t2 - t0) * 1000:.1f} file_bytes={nbytes}")
    con.next_tick(alive=alive)  # it runs on after cont
    q.close()
    end_proc(p)
    for i in range(runs):
        serial2, qmp2 = os.path.join(work, f"qemu-{mem}-r{i}.serial"), os.path.join(work, f"qemu-{mem}-r{i}.qmp")
        con2 = Console(serial2)
        t0 = time.monotonic()
        p2 = start_proc(qemu_cmd(mem, serial2, qmp2, incoming=f"exec:cat {image}"), stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
        alive2 = lambda: p2.poll() is None
        q2 = Qmp(qmp2, 60, alive2)
        deadline = t0 + 300
        while True:
            st = q2.cmd("query-status")["status"]
            if st != "inmigrate":
                break
            if time.monotonic() > deadline:
                raise Failure("QEMU's incoming migration did not finish within 300s")
            time.sleep(0.002)
        t_loaded = time.monotonic()
        if st != "running":
            q2.cmd("cont")
        if q2.cmd("query-status")["status"] != "running":
            raise Failure(f"the restored QEMU is not running after cont (it was {st})")
        t_run = time.monotonic()
        _, t_tick, _ = con2.wait_for(TICK, 0, 120, "the restored guest's next tick", alive2)
        r["loaded"].append((t_loaded - t0) * 1000); r["start"].append((t_run - t0) * 1000)
        r["tick"].append((t_tick - t0) * 1000)
        log(f"  raw qemu {mem} restore {i + 1}: loaded_ms={(t_loaded - t0) * 1000:.1f} "
            f"running_ms={(t_run - t0) * 1000:.1f} to_next_tick_ms={(t_tick - t0) * 1000:.1f}")
        q2.close()
        end_proc(p2)
    os.unlink(image)
    return r


# ---------------------------------------------------------------- part 2

def bench_production(n):
    name = f"prod-{n}"
    disks = []
    for k in range(n):
        d = os.path.join(work, f"{name}-{k}.ext4")
        shutil.copyfile(disk_image, d)
        disks += ["--disk", d]
    cairn("vm", "create", name, "--memory", "256M", "--kernel", kernel, "--initrd", initrd, *disks,
          "--vsock", f"{10 + n},{os.path.join(work, name + '.vsock')}", "--cmdline", "cairn.agent=1",
          "--", writer_command(n))
    cairn_vms.append(name)
    cairn("vm", "set", name, "--checkpoint-type", "production-only")
    con = Console(os.path.join(home, "vms", name, "console.log"))
    cairn("vm", "start", name, "--detach", timeout=120)
    _, _, end = con.wait_for(rb"disks-mounted\r?\n", 0, BOOT_TIMEOUT, f"the guest mounting {n} disk(s)")
    con.wait_for(TICK, end, 60, "the first tick")
    deadline = time.monotonic() + 180
    while cairn("agent", name, "ping", timeout=60, check=False)[0] != 0:
        if time.monotonic() > deadline:
            raise Failure(f"the guest agent of {name} did not answer within 180s")
        time.sleep(1)
    r = {"window": [], "guest": [], "disk": [], "total": [], "wall": []}
    for i in range(prod_runs):
        con.next_tick()
        _, out, _, wall = cairn("checkpoint", "create", name, f"p{i}", "--json")
        j = json.loads(out)
        st = j.get("stats", {})
        if j.get("type") != "production" or st.get("frozen_filesystems") != n:
            raise Failure(f"checkpoint p{i} of {name} is not a production checkpoint of {n} file system(s): {out}")
        if "guest_freeze_window_ms" not in st:
            raise Failure(f"checkpoint p{i} of {name}: the agent did not report its own window: {out}")
        r["window"].append(st["freeze_window_ms"]); r["disk"].append(st["disk_freeze_ms"])
        r["guest"].append(st["guest_freeze_window_ms"])
        r["total"].append(st["total_ms"]); r["wall"].append(wall * 1000)
        log(f"  raw cairn production {n} fs, checkpoint {i + 1}: freeze_ms={st.get('freeze_ms', 0):.1f} "
            f"freeze_window_ms={st['freeze_window_ms']:.1f} guest_freeze_window_ms={st['guest_freeze_window_ms']:.1f} "
            f"guest_thaw_ms={st.get('guest_thaw_ms', 0):.1f} prepare_ms={st.get('prepare_ms', 0):.1f} disk_freeze_ms={st['disk_freeze_ms']:.1f} "
            f"total_ms={st['total_ms']:.1f} cli_wall_ms={wall * 1000:.1f}"
            + (f" precopy_ms={st['precopy_ms']:.1f} (raw disks copied before the freeze)" if "precopy_ms" in st else ""))
        disks_st = st.get("disks", [])
        log(f"    in the VMM: pause_ms={st.get('pause_ms', 0):.1f} paused_ms={st.get('paused_ms', 0):.1f} "
            f"config_ms={st.get('config_ms', 0):.1f}; per disk flush/import/relayer ms "
            "(blocks copied again before/in the pause): "
            + " ".join(f"{d.get('flush_ms', 0):.1f}/{d.get('import_ms', 0):.1f}/{d.get('relayer_ms', 0):.1f}"
                       f"({d.get('live_patched_blocks', 0)}/{d.get('patched_blocks', 0)})" for d in disks_st))
    con.next_tick(timeout=30)  # the guest writes on after the last checkpoint
    stop_vm(name)
    shutil.rmtree(os.path.join(home, "vms", name), ignore_errors=True)
    for k in range(n):
        os.unlink(os.path.join(work, f"{name}-{k}.ext4"))
    return r


# ---------------------------------------------------------------- report

# ---------------------------------------------------------------- part 3

DIRTIED = re.compile(rb"dirtied (\d+) (\d+)\r?\n")


def bench_cairn_incremental(mem, pct):
    """A guest rewriting pct% of its RAM in rounds: a full checkpoint, then incr_runs incremental ones,
    each right after a round; restores from the full one and from the last incremental one."""
    name = f"inc-{mem}-{pct}"
    mem_mib = size_mib(mem)
    dirty_mib = max(8, mem_mib * pct // 100 // 8 * 8)
    r = {"dirty_mib": dirty_mib, "ckpts": [], "apply": [], "start": [], "tick": [], "start_errors": [],
         "full_restore": {"apply": [], "start": [], "tick": [], "start_errors": []}}
    cairn("vm", "create", name, "--memory", mem, "--kernel", kernel, "--initrd", initrd, "--",
          dirty_command(mem_mib, pct))
    cairn_vms.append(name)
    cairn("vm", "set", name, "--checkpoint-type", "standard")
    con = Console(os.path.join(home, "vms", name, "console.log"))
    cairn("vm", "start", name, "--detach", timeout=120)
    m, _, pos = con.wait_for(rb"fill-done (\d+)\s", 0, BOOT_TIMEOUT, "the guest filling its memory")
    log(f"cairn incremental {mem} {pct}%: guest filled {int(m.group(1))} MiB, rewrites {dirty_mib} MiB per round")
    _, _, pos = con.wait_for(DIRTIED, pos, 600, "the guest's first round")
    after = {}  # round number -> "full" or "incremental": the round that began after that checkpoint's pause
    ckdir = os.path.join(home, "vms", name, "checkpoints")
    folders = []  # each checkpoint's folder, in order
    for i in range(incr_runs + 1):
        m, _, _ = con.wait_for(DIRTIED, pos, 600, f"a round of writes before checkpoint {i}")
        before = set(os.listdir(ckdir)) if os.path.isdir(ckdir) else set()
        _, out, _, wall = cairn("checkpoint", "create", name, f"c{i}", "--json")
        new = [f for f in os.listdir(ckdir) if f not in before and os.path.exists(os.path.join(ckdir, f, "memory.img"))]
        if len(new) != 1:
            raise Failure(f"checkpoint c{i} of {name}: {len(new)} new memory images in {ckdir}")
        folders.append(os.path.join(ckdir, new[0]))
        st = json.loads(out)["stats"]
        kind = "incremental" if st.get("incremental") else "full"
        if kind != ("full" if i == 0 else "incremental"):
            raise Failure(f"checkpoint c{i} of {name} is {kind}: {out}")
        after[int(m.group(1)) + 1] = kind
        c = {"kind": kind, "pause": st["paused_ms"], "total": st["total_ms"], "wall": wall * 1000,
             "bytes": st["memory_file_bytes"] + st["state_file_bytes"], "parent_chunks": st.get("parent_chunks", 0)}
        if i > 0:
            # What really changed since the parent, page by page, compressed as cairn stores it.
            p = subprocess.run([MEMDIFF, folders[-2], folders[-1]], capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                raise Failure(f"cairn-memdiff c{i - 1} c{i}: {p.stderr.strip()}")
            d = json.loads(p.stdout)
            c["changed_lz4"] = d["changed_lz4_bytes"]
            c["changed"] = d["changed_bytes"]
        r["ckpts"].append(c)
        log(f"  raw cairn {mem} {pct}% c{i} ({kind}, after round {m.group(1).decode()}): paused_ms={c['pause']:.1f} "
            f"total_ms={c['total']:.1f} cli_wall_ms={c['wall']:.1f} memory_file_bytes={st['memory_file_bytes']} "
            f"parent_chunks={c['parent_chunks']} cow_fault_chunks={st.get('cow_fault_chunks', 0)} "
            f"live_copy_ms={st.get('live_copy_ms', 0):.1f}"
            + (f" changed_bytes={c['changed']} changed_lz4_bytes={c['changed_lz4']}" if i > 0 else ""))
        pos = con.size()
    for _ in range(2):  # rounds with no checkpoint, for the guest's own pace
        _, _, pos = con.wait_for(DIRTIED, pos, 600, "a round of writes after the checkpoints")
    rounds = {int(a): int(b) for a, b in DIRTIED.findall(con.read_from(0))}
    r["rounds"] = {"full": [], "incremental": [], "none": []}
    for n, ms in sorted(rounds.items()):
        if n > 1:  # the first round also pays for page cache warm-up
            r["rounds"][after.get(n, "none")].append(ms)
    log(f"  raw cairn {mem} {pct}% rounds (ms to rewrite {dirty_mib} MiB): "
        + " ".join(f"{n}:{ms}{'F' if after.get(n) == 'full' else 'I' if after.get(n) else ''}"
                   for n, ms in sorted(rounds.items())))
    measure_restore(name, con, f"c{incr_runs}", r, f"cairn {mem} {pct}% restore of incremental c{incr_runs}")
    measure_restore(name, con, "c0", r["full_restore"], f"cairn {mem} {pct}% restore of full c0")
    stop_vm(name)
    shutil.rmtree(os.path.join(home, "vms", name), ignore_errors=True)
    return r


def report_incremental(incr, std):
    log("")
    log(f"== incremental checkpoints: 1 vCPU, ~50% of RAM filled (random), pct% of RAM rewritten with new random")
    log(f"   data in rounds 3 s apart; c0 full, then {incr_runs} incremental, each right after a round ==")
    log("  rewritten: the MiB the guest program rewrote between two checkpoints, its 8 MiB seed included;")
    log("  changed: the pages that differ from the parent's RAM (cairn-memdiff: all writers, the kernel's too),")
    log("  lz4-compressed as cairn stores RAM; bytes: memory + state file;")
    log("  x changed: incremental bytes / changed bytes compressed (goal <= 1.10); x rewritten: / rewritten bytes")
    log("  restore: `vm start --detach` wall after apply (to running vCPUs); tick: to the guest's next tick line")
    log("  throughput: MiB/s of the guest's rewrite rounds; 'after': the round beginning 3 s after a pause")
    log("  qemu: part 1's migrate of the same size (~50% filled), its pause = its total; file = all of RAM")
    log(f"{'size':<6}{'dirty':>6} {'kind':<12}{'pause ms':>10}{'total ms':>10}{'file MiB':>10}{'changed':>9}"
        f"{'x changed':>10}{'x rewritten':>12}{'restore ms':>11}{'tick ms':>9}{'MiB/s after':>12}")
    for (mem, pct), r in incr.items():
        if not r:
            log(f"{mem:<6}{pct:>5}% (failed)")
            continue
        dirtied = (r["dirty_mib"] + 8) << 20  # the rewritten file and the seed
        idle = med(r["rounds"]["none"])
        rate = lambda xs: f"{r['dirty_mib'] / (med(xs) / 1000):.0f}" if xs else "-"
        for kind in ("full", "incremental"):
            cs = [c for c in r["ckpts"] if c["kind"] == kind]
            rr = r["full_restore"] if kind == "full" else r
            size = med([c["bytes"] for c in cs])
            if kind == "incremental":
                changed = f"{mib(med([c['changed_lz4'] for c in cs])):.1f}"
                xc = f"{med([c['bytes'] / c['changed_lz4'] for c in cs]):.2f}"
                xr = f"{size / dirtied:.2f}"
            else:
                changed = xc = xr = "-"
            log(f"{mem:<6}{pct:>5}% {kind:<12}{med([c['pause'] for c in cs]):>10.1f}{med([c['total'] for c in cs]):>10.0f}"
                f"{mib(size):>10.1f}{changed:>9}{xc:>10}{xr:>12}{med(rr['start']):>11.0f}{med(rr['tick']):>9.0f}"
                f"{rate(r['rounds'][kind]):>12}")
        log(f"{mem:<6}{pct:>5}% {'no ckpt':<12}{'':>10}{'':>10}{'':>10}{'':>9}{'':>10}{'':>12}{'':>11}{'':>9}"
            f"{rate(r['rounds']['none']):>12}")
        q = std.get((mem, "qemu"))
        if q:
            inc = [c for c in r["ckpts"] if c["kind"] == "incremental"]
            log(f"{mem:<6}{pct:>5}% {'qemu':<12}{med(q['pause']):>10.1f}{med(q['total']):>10.0f}{mib(med(q['bytes'])):>10.1f}"
                f"{'':>9}{'':>10}{'':>12}{med(q['start']):>11.0f}{med(q['tick']):>9.0f}")
            pause_x = med(q["pause"]) / med([c["pause"] for c in inc])
            start_x = med(q["start"]) / med(r["start"]) if r["start"] else float("nan")
            log(f"  {mem} {pct}%: incremental pause 1/{pause_x:.0f} of qemu's ({'met' if pause_x >= 10 else 'NOT met'}, goal 1/10); "
                f"bytes {med([c['bytes'] / c['changed_lz4'] for c in inc]):.2f}x the changed pages compressed "
                f"({'met' if med([c['bytes'] / c['changed_lz4'] for c in inc]) <= 1.1 else 'NOT met'}, goal <= 1.10x); "
                f"restore to running vCPUs 1/{start_x:.1f} of qemu's ({'met' if start_x >= 10 else 'NOT met'}, goal 1/10); "
                f"guest rewrite pace after an incremental checkpoint {rate(r['rounds']['incremental'])} MiB/s, "
                f"after a full one {rate(r['rounds']['full'])}, without {rate(r['rounds']['none'])}")


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    failed = []
    std, prod = {}, {}
    t_start = time.monotonic()
    qv = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()
    nested = "hypervisor" in open("/proc/cpuinfo").read()
    log(f"host: {os.uname().release}, {os.cpu_count()} cpus{', itself a VM (nested: absolute times are inflated, compare ratios)' if nested else ''}; "
        f"{qv[0] if qv else 'qemu: unknown version'}")
    log(f"checkpoint benchmark: sizes {' '.join(sizes)}, fill {fill_kind} (~50% of RAM), {runs} run(s) each; "
        f"production: {' '.join(map(str, disk_counts))} disk(s), {prod_runs} run(s) each")
    for mem in sizes:
        for vmm, fn in (("cairn", bench_cairn_standard), ("qemu", bench_qemu_standard)):
            try:
                std[(mem, vmm)] = fn(mem)
            except (Failure, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
                failed.append(f"{vmm} standard {mem}: {e}")
                log(f"FAILED: {vmm} standard {mem}: {e}")
                cleanup_running()
    for (mem, vmm), r in std.items():
        for e in r.get("start_errors", []):
            failed.append(f"{vmm} standard {mem}: {e}")
    incr = {}
    for mem in incr_sizes:
        for pct in incr_pcts:
            try:
                incr[(mem, pct)] = bench_cairn_incremental(mem, pct)
            except (Failure, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
                incr[(mem, pct)] = None
                failed.append(f"cairn incremental {mem} {pct}%: {e}")
                log(f"FAILED: cairn incremental {mem} {pct}%: {e}")
                cleanup_running()
    for n in disk_counts:
        try:
            prod[n] = bench_production(n)
        except (Failure, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
            failed.append(f"production {n} disk(s): {e}")
            log(f"FAILED: production {n} disk(s): {e}")
            cleanup_running()

    log("")
    log(f"== standard checkpoints: 1 vCPU, ~50% of RAM filled ({fill_kind}), medians of {runs} ==")
    log("  pause: cairn stats.paused_ms; qemu stop..cont around migrate to a file (stop-and-copy)")
    log("  total: cairn stats.total_ms (CLI wall in parentheses); qemu the same stop..cont")
    log("  restore: cairn `vm start --detach` wall after apply (apply apart); qemu -incoming launch..running after cont")
    log("  tick: from the restoring process's launch to the guest's next console line")
    hdr = f"{'size':<6}{'vmm':<12}{'pause ms':>10}{'total ms':>18}{'file MiB':>10}{'restore ms':>12}{'tick ms':>10}{'apply ms':>10}"
    log(hdr)
    for mem in sizes:
        c, q = std.get((mem, "cairn")), std.get((mem, "qemu"))
        for vmm, r in (("cairn", c), ("qemu", q)):
            if not r:
                log(f"{mem:<6}{vmm:<12}{'(failed)':>10}")
                continue
            total = f"{med(r['total']):.0f} ({med(r['wall']):.0f})" if vmm == "cairn" else f"{med(r['total']):.0f}"
            apply = f"{med(r['apply']):.0f}" if vmm == "cairn" else "-"
            bad = len(r.get("start_errors", []))
            restore = f"{med(r['start']):.0f}" + (f" ({bad} failed)" if bad else "")
            log(f"{mem:<6}{vmm:<12}{med(r['pause']):>10.1f}{total:>18}{mib(med(r['bytes'])):>10.1f}"
                f"{restore:>12}{med(r['tick']):>10.0f}{apply:>10}")
        if c and q:
            ratio = lambda k: med(q[k]) / med(c[k]) if c[k] and q[k] and med(c[k]) > 0 else float("nan")
            log(f"{mem:<6}{'qemu/cairn':<12}{ratio('pause'):>9.2f}x{ratio('total'):>17.2f}x{ratio('bytes'):>9.2f}x"
                f"{ratio('start'):>11.2f}x{ratio('tick'):>9.2f}x")
    log("")
    log("goals (qemu/cairn): pause >= 2x, file size >= 2x, restore to a running vCPU >= 1x")
    for mem in sizes:
        c, q = std.get((mem, "cairn")), std.get((mem, "qemu"))
        if not (c and q):
            log(f"  {mem}: not measured")
            continue
        parts = []
        for what, k, goal in (("pause", "pause", 2.0), ("size", "bytes", 2.0), ("restore", "start", 1.0),
                              ("restore to next tick", "tick", 1.0)):
            if not (c[k] and q[k]):
                parts.append(f"{what} n/a")
                continue
            x = med(q[k]) / med(c[k])
            parts.append(f"{what} {x:.2f}x {'met' if x >= goal else 'NOT met'}")
        log(f"  {mem}: " + "; ".join(parts))

    if incr:
        report_incremental(incr, std)
    for r in incr.values():
        for e in (r or {}).get("start_errors", []) + (r or {}).get("full_restore", {}).get("start_errors", []):
            failed.append(f"incremental: {e}")

    log("")
    log(f"== production checkpoints (guest agent freeze, 256 MiB guest), {prod_runs} run(s) each ==")
    log("  window: stats.freeze_window_ms, timed by the VMM from the agent's freeze reply to its thaw reply;")
    log("  guest: stats.guest_freeze_window_ms, the same timed by the agent in the guest (last FIFREEZE done ..")
    log("  last FITHAW done); first: the first checkpoint's (it layers the raw disks); disk freeze:")
    log("  stats.disk_freeze_ms; total: stats.total_ms; all medians but max")
    log(f"{'file systems':<14}{'window med':>11}{'max':>8}{'first':>8}{'guest med':>11}{'max':>8}{'first':>8}"
        f"{'disk freeze':>13}{'total ms':>10}{'CLI wall ms':>13}")
    for n in disk_counts:
        r = prod.get(n)
        if not r:
            log(f"{n:<14}{'(failed)':>14}")
            continue
        log(f"{n:<14}{med(r['window']):>11.1f}{max(r['window']):>8.1f}{r['window'][0]:>8.1f}"
            f"{med(r['guest']):>11.1f}{max(r['guest']):>8.1f}{r['guest'][0]:>8.1f}"
            f"{med(r['disk']):>13.1f}{med(r['total']):>10.0f}{med(r['wall']):>13.0f}")
    for n in disk_counts:
        r = prod.get(n)
        if r:
            for what, xs in (("VMM-timed", r["window"]), ("guest-timed", r["guest"])):
                log(f"  goal freeze window < 50 ms, {n} fs, {what}: max {max(xs):.1f} ms "
                    f"{'met' if max(xs) < 50 else 'NOT met'}, median {med(xs):.1f} ms "
                    f"{'met' if med(xs) < 50 else 'NOT met'}")
    log(f"\nbenchmark time {time.monotonic() - t_start:.0f} s")
    if failed:
        log(f"{len(failed)} part(s) failed to run:")
        for f in failed:
            log("  " + f.splitlines()[0])
        return 1
    return 0


def cleanup_running():
    """After a failed part: end what it left running so that the next part starts clean."""
    end_all()
    # Its files too: the test host's /tmp is a tmpfs of limited size.
    shutil.rmtree(os.path.join(home, "vms"), ignore_errors=True)
    for f in os.listdir(work):
        if f.endswith((".mig", ".ext4")):
            os.unlink(os.path.join(work, f))


if __name__ == "__main__":
    rc = 1
    try:
        rc = main()
    except (Failure, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        log(f"FAILED: {e}")
    finally:
        cleanup()
    sys.exit(rc)
