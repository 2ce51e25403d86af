#!/usr/bin/env bash
# KVM plumbing on a real /dev/kvm with a hand-assembled real-mode guest:
# port I/O and MMIO exits reach the buses through the Machine's own dispatch,
# an unmapped port floats high, an ioeventfd takes its write without an exit.
source "$(dirname "$0")/lib.sh"
timeout 60 "$BUILD/tests/kvm/test_kvm_payload" --reporter compact > "$SCRATCH/payload.log" 2>&1 ||
  { tail -40 "$SCRATCH/payload.log"; fail "the KVM payload test failed"; }
tail -1 "$SCRATCH/payload.log"
pass "a real-mode payload's PIO, MMIO and ioeventfd accesses reached the right places"
echo "kvm_payload: all passed"
