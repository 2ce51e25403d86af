#!/usr/bin/env bash
# Standard checkpoints round trip on the default guest (2 vCPUs, 128 MiB):
# a paused counting guest saved (A), restored into a machine that never runs
# and saved again (B) gives the same vCPU, VM and device state and the same
# RAM; the restored guest counts on from where it was; a chain of 20
# checkpoints, each restored from the one before, goes on counting from each
# link's count, and the process leaks no fds and no guest memory on the way.
source "$(dirname "$0")/lib.sh"
[ -c /dev/kvm ] || fail "/dev/kvm is missing"
export CAIRN_IMAGES=$IMAGES
timeout 700 "$BUILD/tests/kvm/test_kvm_roundtrip" --reporter compact > "$SCRATCH/roundtrip.log" 2>&1 ||
  { tail -60 "$SCRATCH/roundtrip.log"; fail "the KVM round-trip test failed"; }
tail -1 "$SCRATCH/roundtrip.log"
pass "a checkpoint restored and saved again is unchanged, the guest runs on, and restores leak nothing"
echo "kvm_roundtrip: all passed"
