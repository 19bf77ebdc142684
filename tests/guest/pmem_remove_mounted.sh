#!/bin/sh
# Removal while a filesystem uses the device. rmmod is refused (an open disk
# pins the module); unbinding the namespace under a mounted xfs goes through
# kill_dax, so xfs hears MF_MEM_PRE_REMOVE, shuts down, and can be unmounted.
set -eu
disk=/dev/oxpmem0 ns=namespace0.0
drv=/sys/bus/nd/drivers/oxdax_pmem
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
mkdir -p /mnt/fs

mkfs.ext4 -q -F $disk
mount -o dax $disk /mnt/fs
if rmmod oxdax 2>/dev/null; then
	echo "rmmod succeeded with ext4 mounted"; exit 1
fi
umount /mnt/fs

mkfs.xfs -q -f -m reflink=1,rmapbt=1 $disk
mount -o dax=always $disk /mnt/fs
dax_mmap write /mnt/fs/file 1048576 7 sync
log_start=$(dmesg | wc -l)
echo $ns > $drv/unbind
if dax_mmap verify /mnt/fs/file 1048576 7 2>/dev/null; then
	echo "file still readable after the device went away"; exit 1
fi
dmesg | tail -n +$((log_start + 1)) | grep -qi 'xfs.*shut' || {
	echo "xfs did not shut down:"; dmesg | tail -n +$((log_start + 1)); exit 1; }
umount /mnt/fs
echo $ns > $drv/bind
[ -b $disk ]
