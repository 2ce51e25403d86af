"""Boot-time and memory benchmark body (runs where /dev/kvm works).

For each run: start the VMM, read its console until the guest prints its
user-space marker, record the elapsed time, then let the guest end. cairn and
QEMU microvm boot the same bzImage and initramfs with 1 vCPU and 256 MiB.
"""
import os, statistics, subprocess, sys, time

repo, runs = sys.argv[1], int(sys.argv[2])
images = os.environ.get("CAIRN_IMAGES", os.path.join(repo, "build", "images"))
kernel, initrd = os.path.join(images, "bzImage"), os.path.join(images, "initramfs.cpio.gz")
MARKER = b"cairn-guest: user space ready"
# The guest waits a moment after the marker so that the VMM's RSS can be read while it runs.
CMD_B64 = "c2xlZXAgMQ=="  # base64("sleep 1")

def cairn_cmd():
    return [os.path.join(repo, "build", "cairn"), "run", "--kernel", kernel, "--initrd", initrd,
            "--memory", "256M", "--cmdline", "cairn.cmd=" + CMD_B64]

def qemu_cmd():
    return ["qemu-system-x86_64", "-enable-kvm", "-M", "microvm,acpi=off", "-cpu", "host", "-m", "256M",
            "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
            "-monitor", "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0x501,iosize=1",
            "-kernel", kernel, "-initrd", initrd,
            "-append", "console=ttyS0 reboot=k panic=-1 cairn.cmd=" + CMD_B64]

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
    return elapsed, rss

results = {}
for name, cmd in (("cairn", cairn_cmd()), ("qemu-microvm", qemu_cmd())):
    times, rsses = [], []
    one_boot(cmd, False)  # warm the page cache
    for _ in range(runs):
        t, r = one_boot(cmd, name == "cairn")
        times.append(t)
        if r is not None:
            rsses.append(r)
    results[name] = (times, rsses)

print(f"boot to user-space marker, {runs} runs each (bzImage + initramfs, 1 vCPU, 256 MiB):")
print(f"{'vmm':<14}{'median s':>10}{'min s':>10}{'max s':>10}")
for name, (times, _) in results.items():
    print(f"{name:<14}{statistics.median(times):>10.3f}{min(times):>10.3f}{max(times):>10.3f}")
ratio = statistics.median(results["qemu-microvm"][0]) / statistics.median(results["cairn"][0])
print(f"ratio qemu/cairn (median): {ratio:.2f}x  (goal: >= 1.5x)")
rss = results["cairn"][1]
print(f"cairn RSS beyond guest memory at the marker: median {statistics.median(rss)/1024:.1f} MiB, "
      f"max {max(rss)/1024:.1f} MiB  (goal: < 8 MiB)")
