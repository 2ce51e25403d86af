#!/usr/bin/env bash
# Smoke test of the harness and the guest images: QEMU's microvm boots the tiny
# kernel (bzImage) with the default initramfs under the test host's KVM, the
# guest reaches user space, runs a command and ends the VM with its status
# through the debug-exit port (QEMU reports 2*status+1).
source "$(dirname "$0")/lib.sh"
[ -c /dev/kvm ] || fail "/dev/kvm is missing"
log=$SCRATCH/qemu-smoke.log
set +e
timeout 120 qemu-system-x86_64 -enable-kvm -M microvm,acpi=off -cpu host -m 256M -smp 1 \
  -nodefaults -no-user-config -nographic -serial stdio -monitor none -no-reboot \
  -device isa-debug-exit,iobase=0x501,iosize=1 \
  -kernel "$IMAGES/bzImage" -initrd "$IMAGES/initramfs.cpio.gz" \
  -append "console=ttyS0 reboot=k panic=-1 cairn.cmd=$(guest_cmd 'echo smoke: $(uname -r); cat /proc/cpuinfo | grep -c ^processor; exit 7')" \
  </dev/null >"$log" 2>&1
rc=$?
set -e
tr -d '\r' < "$log" > "$log.txt"
expect_in "$log.txt" 'cairn-guest: user space ready' "the guest did not reach user space"
expect_in "$log.txt" '^smoke: 6\.1\.' "the guest command did not run"
expect_in "$log.txt" 'command exited with status 7' "the guest command status was not seen"
[ "$rc" = 15 ] || fail "qemu exited with $rc, expected 15 (status 7 through isa-debug-exit)"
pass "QEMU microvm booted the tiny guest to user space under the test host's KVM"
