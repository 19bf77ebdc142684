#!/bin/sh
# Bad blocks under a file on ext4-dax: DAX reads of the poisoned page fail
# with EIO (direct_access refuses it with -EHWPOISON) while the rest of the
# file reads; overwriting the page with write(2) goes through the recovery
# path (direct_access in recovery mode, recovery_write), clears the poison,
# and the page reads again.
set -eu
disk=/dev/oxpmem0
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
mkdir -p /mnt/fs
mkfs.ext4 -q -F $disk
mount -o dax $disk /mnt/fs
dd if=/dev/urandom of=/mnt/fs/f bs=4096 count=4 2>/dev/null
sync
# "0: [0..31]: 34816..34847": logical..: physical range in 512-byte sectors.
sector=$(xfs_io -c fiemap /mnt/fs/f | sed -n '2s/.*\]: *\([0-9]*\)\.\..*/\1/p')
[ -n "$sector" ] || { echo "no extent for /mnt/fs/f"; xfs_io -c fiemap /mnt/fs/f; exit 1; }
echo "$sector 8" > /sys/block/oxpmem0/badblocks

if dd if=/mnt/fs/f of=/dev/null bs=4096 count=1 2>/dev/null; then
	echo "read of the poisoned page succeeded"; exit 1
fi
dd if=/mnt/fs/f of=/dev/null bs=4096 skip=1 count=3 2>/dev/null
dd if=/dev/zero of=/mnt/fs/f bs=4096 count=1 conv=notrunc 2>/dev/null
[ -z "$(cat /sys/block/oxpmem0/badblocks)" ] || {
	echo "poison not cleared: $(cat /sys/block/oxpmem0/badblocks)"; exit 1; }
[ "$(dd if=/mnt/fs/f bs=4096 count=1 2>/dev/null | tr -d '\0' | wc -c)" = 0 ]
umount /mnt/fs
