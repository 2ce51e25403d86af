#!/usr/bin/env bash
# cairn boots the default guest to user space with 1 and 2 vCPUs, from the
# ELF vmlinux and from the bzImage; the guest command's exit status, a reboot,
# a poweroff and a kernel panic each end `cairn run` with their own status.
source "$(dirname "$0")/lib.sh"

run_guest() {  # run_guest LOG EXPECTED_STATUS CAIRN_ARGS...
  local log=$1 want=$2; shift 2
  set +e
  timeout 120 "$CAIRN" run "$@" >"$log" 2>&1 </dev/null
  local rc=$?
  set -e
  tr -d '\r' < "$log" > "$log.txt"
  [ "$rc" = "$want" ] || { tail -30 "$log.txt"; fail "cairn run $* exited $rc, expected $want"; }
}

for cpus in 1 2; do
  start=$(date +%s%N)
  run_guest "$SCRATCH/boot$cpus.log" 7 --cpus "$cpus" -- 'echo "cpus=$(grep -c ^processor /proc/cpuinfo)"; exit 7'
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  expect_in "$SCRATCH/boot$cpus.log.txt" 'cairn-guest: user space ready' "no user-space marker with $cpus vCPU(s)"
  expect_in "$SCRATCH/boot$cpus.log.txt" "^cpus=$cpus\$" "the guest does not see $cpus vCPU(s)"
  pass "booted to user space with $cpus vCPU(s) in ${ms} ms; the command's status 7 came back"
done

run_guest "$SCRATCH/bz.log" 0 --kernel "$IMAGES/bzImage" --initrd "$IMAGES/initramfs.cpio.gz" -- 'echo bz-ok'
expect_in "$SCRATCH/bz.log.txt" '^bz-ok$' "the bzImage guest did not run its command"
pass "booted the bzImage"

run_guest "$SCRATCH/reboot.log" 100 -- 'reboot -f'
pass "a guest reboot ends the VM with status 100"

run_guest "$SCRATCH/poweroff.log" 0 -- 'poweroff'
pass "a guest poweroff ends the VM with status 0"

run_guest "$SCRATCH/panic.log" 101 -- 'echo c > /proc/sysrq-trigger'
expect_in "$SCRATCH/panic.log.txt" 'the guest crashed' "a panic was not reported as a crash"
pass "a guest kernel panic ends the VM with status 101"

# The serial console's input path: a user at a terminal types into the guest's
# shell, pastes a long line, interrupts a command and quits with Ctrl-A x.
timeout 240 python3 "$(dirname "$0")/serial_console.py" "$CAIRN" "$SCRATCH/console.log" ||
  fail "the serial console on a terminal (see $SCRATCH/console.log)"
pass "the serial console takes typed and pasted input, Ctrl-C and Ctrl-A x on a terminal"

echo "boot_basic: all passed"
