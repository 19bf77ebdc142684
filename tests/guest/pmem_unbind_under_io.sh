#!/bin/sh
# Unbind, rebind and rmmod while readers and writers hammer /dev/oxpmem0.
# Each I/O either completes or fails with an error (dd and blkbench exit
# non-zero): nothing hangs, the kernel stays quiet (the runner fails the
# test on any report), every loop makes progress while the device is
# there, data outside the written range survives every unbind, and the
# device works again at the end (a written block reads back).
set -eu
ns=namespace0.0
drv=/sys/bus/nd/drivers/oxdax_pmem
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko

# 4 MiB of known data at 100 MiB, which nothing below writes.
dd if=/dev/urandom of=/tmp/canary bs=1M count=4 2>/dev/null
dd if=/tmp/canary of=/dev/oxpmem0 bs=1M seek=100 conv=fsync 2>/dev/null

io_loop() { # read|write NAME: counts successes and failures in /tmp/io.NAME
	ok=0 failed=0
	while [ ! -e /tmp/io.stop ]; do
		if [ "$1" = read ]; then
			if dd if=/dev/oxpmem0 of=/dev/null bs=1M count=32 2>/dev/null; then
				ok=$((ok + 1))
			else
				failed=$((failed + 1))
			fi
		else
			# Not dd: while the node is gone, dd would create a regular
			# file. blkbench writes the first 16 MiB.
			if blkbench /dev/oxpmem0 write 65536 16777216 >/dev/null 2>&1; then
				ok=$((ok + 1))
			else
				failed=$((failed + 1))
			fi
		fi
	done
	echo "$ok $failed" > /tmp/io.$2
}
rm -f /tmp/io.stop /tmp/io.r1 /tmp/io.r2 /tmp/io.w1
io_loop read r1 & r1=$!
io_loop read r2 & r2=$!
io_loop write w1 & w1=$!

i=0
while [ $i -lt 6 ]; do
	sleep 1
	echo $ns > $drv/unbind
	sleep 0.3
	echo $ns > $drv/bind
	# rmmod races the I/O: refused while a dd holds the disk open.
	if [ $((i % 2)) = 1 ] && rmmod oxdax 2>/dev/null; then
		insmod /oxdax/oxdax.ko
	fi
	i=$((i + 1))
done
# Some time with the device there at the end: every loop gets through.
sleep 2
touch /tmp/io.stop
wait $r1 $r2 $w1
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
[ -b /dev/oxpmem0 ]
for loop in r1 r2 w1; do
	read -r ok failed < /tmp/io.$loop
	echo "# $loop: $ok runs completed, $failed failed"
	[ "$ok" -gt 0 ] || { echo "not ok: $loop never completed a run"; exit 1; }
done
dd if=/dev/oxpmem0 of=/tmp/canary.after bs=1M skip=100 count=4 2>/dev/null
cmp /tmp/canary /tmp/canary.after || { echo "not ok: data outside the I/O changed"; exit 1; }
dd if=/dev/urandom of=/tmp/block bs=4096 count=1 2>/dev/null
dd if=/tmp/block of=/dev/oxpmem0 bs=4096 seek=1000 conv=fsync 2>/dev/null
dd if=/dev/oxpmem0 of=/tmp/block.after bs=4096 skip=1000 count=1 2>/dev/null
cmp /tmp/block /tmp/block.after
