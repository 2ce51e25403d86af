#!/usr/bin/env bash
# virtio-blk: the guest mounts the ext4 disk, reads the file the image was
# built with and writes a new one; after poweroff the host sees the new file
# and the file system checks clean. A read-only disk refuses writes.
source "$(dirname "$0")/lib.sh"
disk=$SCRATCH/disk.ext4
cp "$IMAGES/disk.ext4" "$disk"
set +e
timeout 120 "$CAIRN" run --disk "$disk" -- \
  'mount -t ext4 /dev/vda /mnt && cat /mnt/data/README && echo "written by the guest" > /mnt/data/new.txt && sync && umount /mnt && echo disk-done' \
  >"$SCRATCH/rw.log" 2>&1 </dev/null
rc=$?
set -e
tr -d '\r' < "$SCRATCH/rw.log" > "$SCRATCH/rw.txt"
[ $rc = 0 ] || { tail -20 "$SCRATCH/rw.txt"; fail "guest disk job exited $rc"; }
expect_in "$SCRATCH/rw.txt" '^cairn default data disk$' "the guest could not read the disk"
expect_in "$SCRATCH/rw.txt" '^disk-done$' "the guest did not finish writing"
got=$(debugfs -R 'cat /data/new.txt' "$disk" 2>/dev/null)
[ "$got" = "written by the guest" ] || fail "host reads '$got' from the guest's file"
e2fsck -fn "$disk" >"$SCRATCH/fsck.txt" 2>&1 || { cat "$SCRATCH/fsck.txt"; fail "e2fsck found errors"; }
pass "guest writes through virtio-blk reach the host file; e2fsck is clean"

set +e
timeout 120 "$CAIRN" run --disk "$disk,ro" -- \
  'cat /sys/block/vda/ro; dd if=/dev/zero of=/dev/vda bs=512 count=1 conv=fsync 2>&1; echo dd-status=$?' \
  >"$SCRATCH/ro.log" 2>&1 </dev/null
set -e
tr -d '\r' < "$SCRATCH/ro.log" > "$SCRATCH/ro.txt"
expect_in "$SCRATCH/ro.txt" '^1$' "the guest does not see the disk as read-only"
expect_in "$SCRATCH/ro.txt" '^dd-status=[1-9]' "a write to a read-only disk succeeded"
e2fsck -fn "$disk" >/dev/null 2>&1 || fail "the read-only disk was modified"
pass "a read-only disk refuses writes"
