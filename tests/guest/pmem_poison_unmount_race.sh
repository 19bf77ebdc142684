#!/bin/sh
# Memory failures racing with unmount: 100 rounds of poisoning a data page
# of an oxdax file (hwpoison's corrupt-pfn, as a machine check would) while
# the filesystem is being unmounted. Before the unmount oxdax handles the
# failure; once the unmount began it refuses (the kernel's generic handling
# runs); after it, the device has no holder. No round may splat (the runner
# checks dmesg), hang, or leave the filesystem unmountable or unclean.
set -eu
[ "${OXDAX_FS:-oxdax}" = oxdax ] || exit 4
disk=/dev/oxpmem0
inject=/sys/kernel/debug/hwpoison/corrupt-pfn
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
[ -w $inject ] || { echo "no $inject (CONFIG_HWPOISON_INJECT)"; exit 4; }
mkdir -p /mnt/fs
mkfs.oxdax -f $disk > /dev/null
rounds=${ROUNDS:-100}
handled=0 round=0
while [ $round -lt $rounds ]; do
	round=$((round + 1))
	mount -t oxdax $disk /mnt/fs
	dax_mmap write /mnt/fs/f$round 65536 $round
	pfn=$(dax_mmap pfn /mnt/fs/f$round)
	log_start=$(dmesg | wc -l)
	# Stagger the injection against the unmount (0 to 15 ms against 7 ms):
	# before, during and after it. After the unmount nobody holds the
	# page: the kernel's generic handling may refuse it (EBUSY), which is
	# not this test's business.
	delay=$(printf '0.%03d' $(( (round % 4) * 5 )))
	( sleep $delay; echo $pfn > $inject 2>/dev/null || true ) &
	sleep 0.007
	umount /mnt/fs
	wait $!
	if dmesg | tail -n +$((log_start + 1)) | grep -q 'handled by the filesystem'; then
		handled=$((handled + 1))
	fi
done
echo "# $rounds rounds, $handled failures handled by oxdax before its unmount"
# The poisoned blocks were only remembered in memory: the filesystem is
# consistent and mounts again.
fsck.oxdax -n $disk
mount -t oxdax $disk /mnt/fs
ls /mnt/fs > /dev/null
umount /mnt/fs
