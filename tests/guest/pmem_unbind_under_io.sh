#!/bin/sh
# Unbind, rebind and rmmod while readers and writers hammer /dev/oxpmem0:
# in-flight I/O fails or completes, nothing hangs, the kernel stays quiet
# (the runner fails the test on any report), and the device comes back.
set -eu
ns=namespace0.0
drv=/sys/bus/nd/drivers/oxdax_pmem
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko

io_loop() { # read|write
	while [ ! -e /tmp/io.stop ]; do
		if [ "$1" = read ]; then
			dd if=/dev/oxpmem0 of=/dev/null bs=1M count=32 2>/dev/null || true
		else
			# Not dd: while the node is gone, dd would create a regular file.
			blkbench /dev/oxpmem0 write 65536 16777216 >/dev/null 2>&1 || true
		fi
	done
}
rm -f /tmp/io.stop
io_loop read & r1=$!
io_loop read & r2=$!
io_loop write & w1=$!

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

touch /tmp/io.stop
wait $r1 $r2 $w1
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
[ -b /dev/oxpmem0 ]
dd if=/dev/oxpmem0 of=/dev/null bs=1M count=4 2>/dev/null
