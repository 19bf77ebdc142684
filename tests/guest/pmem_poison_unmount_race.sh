#!/bin/sh
# Memory failures racing with unmount: 100 rounds of poisoning a data page
# of an oxdax file (hwpoison's corrupt-pfn, as a machine check would) while
# the filesystem is being unmounted. Every round ends one of three ways,
# and the test accounts for each: before the unmount oxdax handles the
# failure ("handled by the filesystem"); once the unmount began the holder
# refuses it with EBUSY (the filesystem cannot answer for its pages any
# more, and the kernel's generic handling must not run on them: the
# injection fails with EBUSY); after it, the device has no holder ("no DAX
# holder ...: generic handling"). Injections made well before the unmount (a
# quarter of the rounds) must all be handled. No round may splat (the
# runner checks dmesg), hang, or leave the filesystem unmountable or
# unclean.
set -eu
[ "${OXDAX_FS:-oxdax}" = oxdax ] || exit 4
disk=/dev/oxpmem0
inject=/sys/kernel/debug/hwpoison/corrupt-pfn
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
[ -w $inject ] || { echo "no $inject (CONFIG_HWPOISON_INJECT)"; exit 4; }
mkdir -p /mnt/fs
mkfs.oxdax -f $disk > /dev/null
rounds=${ROUNDS:-100}
handled=0 refused=0 generic=0 early=0 early_handled=0 round=0
fail() { echo "not ok: round $round: $*"; exit 1; }
while [ $round -lt $rounds ]; do
	round=$((round + 1))
	mount -t oxdax $disk /mnt/fs
	dax_mmap write /mnt/fs/f$round 65536 $round
	pfn=$(dax_mmap pfn /mnt/fs/f$round)
	log_start=$(dmesg | wc -l)
	# Every fourth round injects before the unmount starts; the others
	# stagger the injection against it (0 to 10 ms against 7 ms): before,
	# during and after it.
	rm -f /tmp/inject.err
	injected=0
	if [ $((round % 4)) = 0 ]; then
		delay=early
		echo $pfn > $inject 2>/tmp/inject.err || injected=$?
		umount /mnt/fs
	else
		delay=$(printf '0.%03d' $(( (round % 4 - 1) * 5 )))
		( sleep $delay; echo $pfn > $inject 2>/tmp/inject.err ) &
		sleep 0.007
		umount /mnt/fs
		wait $! || injected=$?
	fi
	events=$(dmesg | tail -n +$((log_start + 1)) | grep -c 'oxpmem.*: memory failure at' || true)
	log=$(dmesg | tail -n +$((log_start + 1)))
	if echo "$log" | grep -q 'handled by the filesystem'; then
		[ $injected = 0 ] || fail "handled, but the injection failed: $(cat /tmp/inject.err)"
		handled=$((handled + 1))
		[ $delay = early ] && early_handled=$((early_handled + 1))
	elif echo "$log" | grep -q 'no DAX holder'; then
		generic=$((generic + 1))
	elif [ $injected != 0 ] && grep -qi busy /tmp/inject.err; then
		refused=$((refused + 1))
	else
		fail "unaccounted for (injection status $injected: $(cat /tmp/inject.err 2>/dev/null)): $log"
	fi
	[ "$events" -le 1 ] || fail "$events failure reports for one injection"
	[ $delay = early ] && early=$((early + 1))
done
echo "# $rounds rounds: $handled handled by oxdax before its unmount, $refused refused" \
	"while unmounting (EBUSY), $generic after it; $early_handled of $early early ones handled"
[ $((handled + refused + generic)) = $rounds ]
[ $early_handled = $early ] || { echo "not ok: injections before the unmount must be handled"; exit 1; }
[ $handled -gt 0 ]
# The poisoned blocks were only remembered in memory: the filesystem is
# consistent and mounts again.
fsck.oxdax -n $disk
mount -t oxdax $disk /mnt/fs
ls /mnt/fs > /dev/null
umount /mnt/fs
