#!/usr/bin/env bash
# Differencing disks under a real guest: the ext4 image becomes a cairn base
# layer; the guest writes files through a 2- and then a 3-layer chain; after
# poweroff both layers are merged down, and the merged image fsck's clean and
# holds every file.
source "$(dirname "$0")/lib.sh"
cd "$SCRATCH"
"$CAIRN" disk convert "$IMAGES/disk.ext4" base.cdsk
"$CAIRN" disk diff base.cdsk l1.cdsk

guest() {  # guest TOP_LAYER SHELL_COMMAND
  set +e
  timeout 120 "$CAIRN" run --disk "$1" -- "mount -t ext4 /dev/vda /mnt && $2 && sync && umount /mnt && echo guest-done" \
    >guest.log 2>&1 </dev/null
  local rc=$?
  set -e
  tr -d '\r' < guest.log > guest.txt
  [ $rc = 0 ] || { tail -20 guest.txt; fail "guest exited $rc on $1"; }
  expect_in guest.txt '^guest-done$' "the guest did not finish on $1"
}

guest l1.cdsk 'echo one > /mnt/data/f1 && dd if=/dev/urandom of=/mnt/data/big bs=64k count=40 2>/dev/null && md5sum /mnt/data/big > /mnt/data/big.md5'
"$CAIRN" disk diff l1.cdsk l2.cdsk
guest l2.cdsk 'cat /mnt/data/f1 && echo two > /mnt/data/f2 && md5sum -c /mnt/data/big.md5 && rm /mnt/data/big'
expect_in guest.txt '^one$' "layer 2 does not see layer 1's file"
expect_in guest.txt 'big: OK' "layer 2 reads layer 1's data wrong"
"$CAIRN" disk info l2.cdsk --json > info.json
python3 -c 'import json,sys; d=json.load(open("info.json")); print(json.dumps(d)[:300])' >/dev/null || fail "disk info --json is not JSON"
"$CAIRN" disk check l2.cdsk || fail "disk check failed on the chain"

"$CAIRN" disk merge l2.cdsk
"$CAIRN" disk merge l1.cdsk
"$CAIRN" disk check base.cdsk || fail "disk check failed after merging"
"$CAIRN" disk convert base.cdsk merged.raw
e2fsck -fn merged.raw > fsck.txt 2>&1 || { cat fsck.txt; fail "e2fsck found errors in the merged image"; }
[ "$(debugfs -R 'cat /data/f1' merged.raw 2>/dev/null)" = one ] || fail "f1 lost in the merge"
[ "$(debugfs -R 'cat /data/f2' merged.raw 2>/dev/null)" = two ] || fail "f2 lost in the merge"
debugfs -R 'stat /data/big' merged.raw 2>&1 | grep -q 'not found' || fail "a file deleted in layer 2 came back"
pass "guest writes over a 3-layer chain survive two merges; e2fsck clean"
