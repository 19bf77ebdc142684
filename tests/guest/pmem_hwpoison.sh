#!/bin/sh
# madvise(MADV_HWPOISON) on a page of a file mapped from xfs-dax over
# oxpmem0: the page's memory failure goes through the oxdax pagemap's
# memory_failure to xfs's notify_failure, which kills the consuming task with
# SIGBUS BUS_MCEERR_AR at the poisoned address.
set -eu
disk=/dev/oxpmem0
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
mkdir -p /mnt/fs
mkfs.xfs -q -f -m reflink=1,rmapbt=1 $disk
mount -o dax=always $disk /mnt/fs
log_start=$(dmesg | wc -l)
dax_mmap poison /mnt/fs/victim
# xfs (the DAX holder), not the kernel's generic fallback, handled it.
new_log() { dmesg | tail -n +$((log_start + 1)); }
new_log | grep -q 'oxdax: oxpmem0: memory failure at 0x[0-9a-f]*+0x1000: handled by the filesystem' || {
	echo "oxdax did not forward the failure to xfs:"; new_log; exit 1; }
umount /mnt/fs

# Without a holder (ext4 registers none) the kernel's generic handling runs,
# and the consumer is still killed.
mkfs.ext4 -q -F $disk
mount -o dax $disk /mnt/fs
log_start=$(dmesg | wc -l)
dax_mmap poison /mnt/fs/victim
new_log | grep -q 'oxdax: oxpmem0: memory failure at .*: no DAX holder.*: generic handling' || {
	echo "expected the generic path on ext4:"; new_log; exit 1; }
umount /mnt/fs
