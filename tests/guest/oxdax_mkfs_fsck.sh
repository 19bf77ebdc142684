#!/bin/sh
# mkfs.oxdax and fsck.oxdax on an oxpmem device: a fresh filesystem checks
# clean; mkfs refuses a mounted device and, without -f, one holding a
# filesystem; a damaged metadata block makes fsck exit 4.
set -eu
disk=/dev/oxpmem0
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
mkdir -p /mnt/fs

mkfs.ext4 -q -F -b 4096 $disk
mount $disk /mnt/fs
if mkfs.oxdax -f $disk 2>/tmp/err; then echo "mkfs on a mounted device"; exit 1; fi
grep -q 'is mounted' /tmp/err
umount /mnt/fs
if mkfs.oxdax $disk 2>/tmp/err; then echo "mkfs over ext4 without -f"; exit 1; fi
grep -q 'contains an existing ext2/3/4 filesystem' /tmp/err

mkfs.oxdax -f -L guest-test $disk
fsck.oxdax $disk
if mkfs.oxdax $disk 2>/dev/null; then echo "mkfs over oxdax without -f"; exit 1; fi
if mkfs.oxdax -f -L "$(printf 'x%.0s' $(seq 32))" $disk 2>/dev/null; then echo "32-byte label accepted"; exit 1; fi

# Damage the reverse-map root (the superblock says where it is: byte 0xa8):
# byte 33 is the second byte of the first record's big-endian start block,
# zero on any device below 2^48 bytes.
rmap_root=$(dd if=$disk bs=1 skip=$((0xa8)) count=8 2>/dev/null | od -An -tu8 | tr -d ' ')
[ "$(dd if=$disk bs=1 skip=$((rmap_root * 4096 + 33)) count=1 2>/dev/null | od -An -tx1 | tr -d ' ')" = 00 ]
printf '\377' | dd of=$disk bs=1 seek=$((rmap_root * 4096 + 33)) conv=notrunc 2>/dev/null
set +e
fsck.oxdax $disk
status=$?
set -e
[ $status = 4 ] || { echo "fsck exit status $status after damage, wanted 4"; exit 1; }
