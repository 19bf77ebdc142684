#!/bin/sh
# Memory failures on a filesystem in a GPT partition that starts 16 MiB into
# the pmem device: the DAX core reports device offsets, and the filesystem
# must translate them to its own (xfs subtracts bt_dax_part_off). A poisoned
# data page of a file signals its consumer (SIGBUS BUS_MCEERR_AR at that
# page), the filesystem does not shut down (no phantom metadata block), the
# file's other pages still read, and a failure in the device's memory
# before the partition is not the filesystem's (left to the kernel's
# generic handling: nothing of the filesystem killed or shut down). Run on
# oxdax, then on xfs as the oracle (rmapbt for its ->notify_failure; xfs
# refuses DAX with reflink on a partition).
set -eu
[ "${OXDAX_FS:-oxdax}" = oxdax ] || exit 4
disk=/dev/oxpmem0
part=${disk}p1
inject=/sys/kernel/debug/hwpoison/corrupt-pfn
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
[ -w $inject ] || { echo "no $inject (CONFIG_HWPOISON_INJECT)"; exit 4; }
fail() { echo "not ok: $fs: $*"; exit 1; }

echo 'start=32768, size=1048576' | sfdisk -q --label gpt $disk
blockdev --rereadpt $disk
i=0
while [ ! -b $part ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -b $part ] || { echo "no $part"; exit 1; }
mkdir -p /mnt/part

for fs in oxdax xfs; do
	if [ $fs = oxdax ]; then
		mkfs.oxdax -f $part > /dev/null
		mount -t oxdax $part /mnt/part
	else
		mkfs.xfs -f -q -m reflink=0,rmapbt=1 $part
		mount -t xfs -o dax=always $part /mnt/part
	fi
	head -c 1048576 /dev/urandom > /mnt/part/before
	dax_mmap write /mnt/part/other 65536 7
	log_start=$(dmesg | wc -l)
	# Creates a 4-page file, poisons page 1 through a MAP_SYNC mapping and
	# checks the SIGBUS it gets.
	dax_mmap poison /mnt/part/victim || fail "the consumer did not get SIGBUS BUS_MCEERR_AR"
	log=$(dmesg | tail -n +$((log_start + 1)))
	if [ $fs = oxdax ]; then
		echo "$log" | grep -q 'handled by the filesystem' || fail "not handled: $log"
		# oxdax remembers the poison: the page reads EIO, the others read.
		if dd if=/mnt/part/victim of=/dev/null bs=4096 skip=1 count=1 2>/dev/null; then
			fail "the poisoned page still reads"
		fi
	fi
	! echo "$log" | grep -qi 'shut' || fail "shut down: $log"
	dd if=/mnt/part/victim of=/dev/null bs=4096 count=1 2>/dev/null || fail "page 0 unreadable"
	dax_mmap verify /mnt/part/other 65536 7 || fail "another file's data changed"
	echo new > /mnt/part/new || fail "cannot create a file after the failure"

	# A page of the device before the partition: device offset 4 MiB.
	pfn=$(dax_mmap pfn /mnt/part/before)
	sector=$(xfs_io -c 'fiemap' /mnt/part/before | awk 'NR == 2 { split($3, a, "."); print a[1] }')
	base=$((pfn - (sector * 512 + 16777216) / 4096))
	log_start=$(dmesg | wc -l)
	echo $((base + 1024)) > $inject 2>/dev/null || true
	log=$(dmesg | tail -n +$((log_start + 1)))
	echo "# $fs: a failure before the partition: $(echo "$log" | grep 'memory failure' || echo none)"
	! echo "$log" | grep -qi 'shut' || fail "shut down by another partition's failure: $log"
	if [ $fs = oxdax ]; then
		echo "$log" | grep -q "not its filesystem's: generic handling" ||
			fail "a failure outside the partition was taken for the filesystem's: $log"
	fi
	echo again > /mnt/part/new2 || fail "cannot create a file after the failure outside"
	umount /mnt/part
	if [ $fs = oxdax ]; then
		fsck.oxdax -n $part
	else
		xfs_repair -n $part > /dev/null 2>&1 || fail "xfs_repair -n"
	fi
	echo "# $fs: ok"
done

# Leave the device unpartitioned for the next tests (both GPT headers).
mib=$(($(blockdev --getsz $disk) / 2048))
dd if=/dev/zero of=$disk bs=1M count=1 conv=fsync 2>/dev/null
dd if=/dev/zero of=$disk bs=1M seek=$((mib - 1)) count=1 conv=fsync 2>/dev/null
blockdev --rereadpt $disk
