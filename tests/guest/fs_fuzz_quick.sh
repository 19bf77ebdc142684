#!/bin/sh
# The quick tier of the kernel fuzz target: a populated 16 MiB oxdax
# filesystem, mutated (OXDAX_FUZZ_IMAGES times, default 40) in its
# metadata and mounted and used each time by fs_fuzz. Every operation may
# fail; the kernel must not report anything (the runner checks the log)
# and unmount must work. `make fuzz` runs 10,000 images.
set -eu
disk=/dev/oxpmem0
size=$((16 << 20))
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
mkdir -p /mnt/fuzz
mkfs.oxdax -f $disk $size >/dev/null
mount -t oxdax $disk /mnt/fuzz
mkdir /mnt/fuzz/a /mnt/fuzz/a/b
i=0
while [ $i -lt 30 ]; do
	head -c $((i * 3000 + 100)) /dev/urandom > /mnt/fuzz/a/f$i
	i=$((i + 1))
done
xfs_io -f -c "pwrite -q 0 3m" /mnt/fuzz/big
xfs_io -f -c "reflink /mnt/fuzz/big" /mnt/fuzz/a/b/clone >/dev/null
xfs_io -f -c "falloc -k 0 1m" /mnt/fuzz/a/prealloc
ln /mnt/fuzz/a/f1 /mnt/fuzz/a/b/hardlink
umount /mnt/fuzz
fsck.oxdax $disk
fs_fuzz $disk $size "${OXDAX_FUZZ_IMAGES:-40}" "${OXDAX_FUZZ_SEED:-$$}"
fsck.oxdax $disk
