#!/bin/bash
# Two NVDIMMs (one of 4 GiB) become oxpmem0 and oxpmem1 with their sizes;
# data written through MAP_SYNC mappings on ext4-dax and xfs-dax survives a
# guest reboot on the same backing files, as do raw writes at the last
# sector of the 4 GiB device.
. "$(dirname "$0")/common.bash"
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
seed=$RANDOM
run() { "$VM" --state "$state" --nvdimm 4G --nvdimm 512M --timeout 600 -- "$@"; }

expect_status 0 run "set -e
	insmod /oxdax/oxdax.ko
	test \$(cat /sys/block/oxpmem0/size) = $((4 << 21))
	test \$(cat /sys/block/oxpmem1/size) = $((512 << 11))
	dmesg | grep -q 'oxpmem0: 4096 MiB at .*memmap 65536 KiB in RAM'
	# 3 GiB of xfs, so the raw write at the device's last sector is its own.
	mkfs.xfs -q -f -m reflink=1,rmapbt=1 -d size=3g /dev/oxpmem0
	mkfs.ext4 -q -F /dev/oxpmem1
	mkdir -p /mnt/x /mnt/e
	mount -o dax=always /dev/oxpmem0 /mnt/x
	mount -o dax /dev/oxpmem1 /mnt/e
	dax_mmap write /mnt/x/data 16777216 $seed sync
	dax_mmap write /mnt/e/data 16777216 $seed sync
	umount /mnt/x /mnt/e
	printf 'last-sector-$seed' | dd of=/dev/oxpmem0 bs=512 seek=$(((4 << 21) - 1)) conv=sync 2>/dev/null
	sync"
expect_status 0 run "set -e
	insmod /oxdax/oxdax.ko
	dd if=/dev/oxpmem0 bs=512 skip=$(((4 << 21) - 1)) count=1 2>/dev/null | grep -q last-sector-$seed
	mkdir -p /mnt/x /mnt/e
	mount -o dax=always /dev/oxpmem0 /mnt/x
	mount -o dax /dev/oxpmem1 /mnt/e
	dax_mmap verify /mnt/x/data 16777216 $seed
	dax_mmap verify /mnt/e/data 16777216 $seed
	umount /mnt/x /mnt/e"
