#!/bin/sh
# mkfs.oxdax and fsck.oxdax on an oxpmem device: a fresh filesystem checks
# clean; mkfs refuses a mounted device and, without -f, one holding a
# filesystem; a damaged metadata block makes fsck exit 4, also with -y;
# a leaked block is repaired by -p (exit 1) and the filesystem is clean.
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
# A damaged tree is not repaired: -y leaves it and still exits 4.
set +e
fsck.oxdax -y $disk
status=$?
set -e
[ $status = 4 ] || { echo "fsck -y exit status $status on a damaged tree, wanted 4"; exit 1; }

# What is safe to repair is, for one, a leaked block (in use without an
# owner). (Orphans after a crash and journal replay: host tests and the
# crash campaign.)
mkfs.oxdax -f $disk 64M >/dev/null
bitmap=$(dd if=$disk bs=1 skip=$((0x70)) count=8 2>/dev/null | od -An -tu8 | tr -d ' ')
printf '\017' | dd of=$disk bs=1 seek=$((bitmap * 4096 + 1000)) conv=notrunc oflag=direct 2>/dev/null
set +e
fsck.oxdax -n $disk; status=$?
[ $status = 4 ] || { echo "fsck -n exit status $status on a leak, wanted 4"; exit 1; }
fsck.oxdax -p $disk; status=$?
[ $status = 1 ] || { echo "fsck -p exit status $status on a leak, wanted 1"; exit 1; }
set -e
fsck.oxdax $disk
mount -t oxdax $disk /mnt/fs
head -c 100000 /dev/urandom > /mnt/fs/file
umount /mnt/fs
fsck.oxdax -n $disk
