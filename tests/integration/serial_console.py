#!/usr/bin/env python3
"""Drives `cairn run` on a pseudo-terminal, as a user at a shell would.

The guest's shell on the serial console must see typed lines (and a paste far
longer than the UART's 64-byte FIFO, whole), Ctrl-C must reach the guest's
foreground process through its tty, and Ctrl-A x must end the VM and give the
terminal back in the mode it had.

Usage: serial_console.py CAIRN LOG
"""
import os
import pty
import select
import sys
import termios
import time

cairn, log_path = sys.argv[1], sys.argv[2]
log = open(log_path, "wb")
seen = b""


def fail(msg):
    tail = seen[-1500:].decode("utf-8", "replace")
    print(f"serial_console: {msg}\n--- console tail ---\n{tail}", file=sys.stderr)
    sys.exit(1)


def read_until(fd, needle, timeout):
    """Reads the console until `needle` (bytes) appears after the current end."""
    global seen
    start = len(seen)
    deadline = time.monotonic() + timeout
    while needle not in seen[start:]:
        left = deadline - time.monotonic()
        if left <= 0:
            fail(f"no {needle!r} within {timeout} s")
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the VMM closed the terminal
            fail(f"the console ended before {needle!r}")
        if not chunk:
            fail(f"the console ended before {needle!r}")
        log.write(chunk)
        log.flush()
        seen += chunk


def type_line(fd, text):
    os.write(fd, text.encode() + b"\r")


pid, fd = pty.fork()
if pid == 0:
    os.execv(cairn, [cairn, "run", "--console", "stdio"])

# The terminal as the VMM found it (cooked, echoing): it must look the same after Ctrl-A x.
before = termios.tcgetattr(fd)
read_until(fd, b"cairn-guest: user space ready", 120)
# A prompt that the guest's shell prints only once it has evaluated our input.
type_line(fd, "PS1='gu''est> '")
read_until(fd, b"guest> ", 30)
print("serial_console: the guest's shell took a typed line")

type_line(fd, "echo typed-$((6*7))")
read_until(fd, b"typed-42", 30)
print("serial_console: a typed command ran and printed its result")

# 600 bytes in one write: far more than the UART's FIFO holds (and less than
# the 1024 that busybox's line editor takes).
paste = "x=" + "".join(chr(ord("a") + i % 26) for i in range(600)) + "; echo len=${#x} sum=$(printf %s \"$x\" | md5sum | cut -c1-8)"
type_line(fd, paste)
import hashlib
want = hashlib.md5("".join(chr(ord("a") + i % 26) for i in range(600)).encode()).hexdigest()[:8]
read_until(fd, f"len=600 sum={want}".encode(), 60)
print("serial_console: a 600-byte paste arrived whole")

type_line(fd, "sleep 300; echo sleep-''ended")
time.sleep(1.0)
os.write(fd, b"\x03")
type_line(fd, "echo after-ctrl-c-$?")
read_until(fd, b"after-ctrl-c-130", 30)
if b"sleep-ended" in seen:
    fail("Ctrl-C did not interrupt the guest's foreground process")
print("serial_console: Ctrl-C interrupted the guest's foreground process")

os.write(fd, b"\x01x")
deadline = time.monotonic() + 30
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        fail("Ctrl-A x did not end the VM within 30 s")
    try:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            chunk = os.read(fd, 4096)
            log.write(chunk)
            seen += chunk
    except OSError:
        pass
code = os.waitstatus_to_exitcode(status)
if code != 0:
    fail(f"after Ctrl-A x cairn exited {code}, expected 0")
after = termios.tcgetattr(fd)
if after != before:
    fail(f"the terminal's mode was not restored: {before} -> {after}")
print("serial_console: Ctrl-A x ended the VM with status 0 and restored the terminal")
