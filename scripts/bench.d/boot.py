"""Boot-time and memory benchmark body (runs where /dev/kvm works).

For each run: start the VMM, read its console until the guest prints its
user-space marker, record the elapsed time, then let the guest end. cairn and
QEMU microvm boot the same bzImage and initramfs with 1 vCPU and 256 MiB and
the same kernel command line (QEMU gets the one cairn's guest reports).

Two boots are measured:
- quiet: `quiet` on the command line, as `cairn run -- CMD` boots. The time is
  the VMMs' and the kernel's own work (Firecracker's boot-time test goes
  further and has no serial port at all).
- verbose: the kernel's whole boot log (about 10 KB) goes over the emulated
  8250, which costs two port exits per character on either VMM.
Runs of the two VMMs alternate so that a slow spell of a noisy machine falls
on both.
"""
import os, re, statistics, subprocess, sys, time

repo, runs = sys.argv[1], int(sys.argv[2])
images = os.environ.get("CAIRN_IMAGES", os.path.join(repo, "build", "images"))
kernel, initrd = os.path.join(images, "bzImage"), os.path.join(images, "initramfs.cpio.gz")
MARKER = b"cairn-guest: user space ready"
# The guest waits a moment after the marker so that the VMM's RSS can be read while it runs.
CMD_B64 = "c2xlZXAgMQ=="  # base64("sleep 1")
EXTRA = {"quiet": "quiet cairn.cmd=" + CMD_B64, "verbose": "cairn.cmd=" + CMD_B64}

def cairn_cmd(extra):
    return [os.path.join(repo, "build", "cairn"), "run", "--kernel", kernel, "--initrd", initrd,
            "--memory", "256M", "--cmdline", extra]

def qemu_cmd(cmdline):
    return ["qemu-system-x86_64", "-enable-kvm", "-M", "microvm,acpi=off", "-cpu", "host", "-m", "256M",
            "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
            "-monitor", "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0x501,iosize=1",
            "-kernel", kernel, "-initrd", initrd, "-append", cmdline]

def rss_beyond_guest(pid):
    """VmRSS minus shared memory (cairn's guest RAM is a memfd, counted as RssShmem)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    kb = lambda k: int(fields.get(k, "0 kB").split()[0])
    return kb("VmRSS") - kb("RssShmem")

def one_boot(cmd, measure_rss):
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    buf, elapsed, rss = b"", None, None
    while True:
        chunk = p.stdout.read1(4096)
        if not chunk:
            break
        buf += chunk
        if elapsed is None and MARKER in buf:
            elapsed = time.monotonic() - start
            if measure_rss:
                rss = rss_beyond_guest(p.pid)
    p.wait(timeout=60)
    if elapsed is None:
        sys.exit(f"no user-space marker from {cmd[0]} (exit {p.returncode}):\n{buf[-2000:].decode(errors='replace')}")
    return elapsed, rss, buf

def kernel_cmdline(log):
    m = re.search(rb"Kernel command line: (.*?)\r?\n", log)
    if not m:
        sys.exit("the guest did not print its kernel command line")
    return m.group(1).decode()

# A verbose cairn boot (which also warms the page cache) tells the command line cairn gives.
_, _, log = one_boot(cairn_cmd(EXTRA["verbose"]), False)
cairn_line = kernel_cmdline(log)
if not cairn_line.endswith(EXTRA["verbose"]):
    sys.exit(f"unexpected cairn kernel command line: {cairn_line}")
base = cairn_line[: -len(EXTRA["verbose"])].rstrip()
_, _, log = one_boot(qemu_cmd(f"{base} {EXTRA['verbose']}"), False)
if kernel_cmdline(log) != cairn_line:
    sys.exit(f"QEMU's guest got another command line: {kernel_cmdline(log)}")
print(f"kernel command line (both VMMs): {base} [quiet] cairn.cmd=...")

results = {}
for mode, extra in EXTRA.items():
    cmds = {"cairn": cairn_cmd(extra), "qemu-microvm": qemu_cmd(f"{base} {extra}")}
    times = {name: [] for name in cmds}
    rss = []
    for _ in range(runs):
        for name, cmd in cmds.items():
            t, r, _ = one_boot(cmd, name == "cairn")
            times[name].append(t)
            if r is not None:
                rss.append(r)
    results[mode] = (times, rss)

print(f"boot to user-space marker, {runs} runs each (bzImage + initramfs, 1 vCPU, 256 MiB):")
print(f"{'boot':<9}{'vmm':<14}{'median s':>10}{'min s':>10}{'max s':>10}")
for mode, (times, _) in results.items():
    for name, t in times.items():
        print(f"{mode:<9}{name:<14}{statistics.median(t):>10.3f}{min(t):>10.3f}{max(t):>10.3f}")
for mode, (times, _) in results.items():
    ratio = statistics.median(times["qemu-microvm"]) / statistics.median(times["cairn"])
    print(f"ratio qemu/cairn (median), {mode} boot: {ratio:.2f}x  (goal: >= 1.5x)")
rss = results["quiet"][1] + results["verbose"][1]
print(f"cairn RSS beyond guest memory at the marker: median {statistics.median(rss)/1024:.1f} MiB, "
      f"max {max(rss)/1024:.1f} MiB  (goal: < 8 MiB)")
