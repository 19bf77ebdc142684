#!/bin/sh
# ext4 and xfs (reflink, rmapbt) in DAX mode on /dev/oxpmem0: they mount with
# DAX on, accept MAP_SHARED_VALIDATE|MAP_SYNC, refuse unknown mmap flags, and
# data written through a MAP_SYNC mapping survives unmount and remount.
set -eu
disk=/dev/oxpmem0
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
mkdir -p /mnt/fs

check_fs() { # NAME MOUNT-OPTIONS
	name=$1 opts=$2
	mount -o "$opts" $disk /mnt/fs
	grep -q "^$disk /mnt/fs $name .*dax" /proc/mounts || {
		echo "$name: DAX not shown in /proc/mounts:"; grep $disk /proc/mounts; exit 1; }
	dax_mmap flags /mnt/fs/flags
	dax_mmap write /mnt/fs/data 8388608 0x$$ sync
	umount /mnt/fs
	mount -o "$opts" $disk /mnt/fs
	dax_mmap verify /mnt/fs/data 8388608 0x$$
	umount /mnt/fs
	echo "# $name: MAP_SYNC mapping, data kept across remount"
}

mkfs.ext4 -q -F $disk
check_fs ext4 dax
e2fsck -fn $disk > /dev/null

mkfs.xfs -q -f -m reflink=1,rmapbt=1 $disk
check_fs xfs dax=always
xfs_repair -n $disk > /dev/null 2>&1
