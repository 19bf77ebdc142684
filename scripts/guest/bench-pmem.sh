#!/bin/sh
# Guest side of scripts/bench-pmem: the legacy pmem region (namespace1.0,
# from memmap=) is measured under oxdax, then under the in-tree nd_pmem;
# same memory, only the driver differs. Prints "driver op bs MB/s" lines.
set -eu
reps=${BENCH_REPS:-5}
total=${BENCH_BYTES:-268435456}
insmod /oxdax/oxdax.ko
drv() { basename "$(readlink /sys/bus/nd/devices/$1/driver)"; }
ns=namespace1.0
[ "$(drv $ns)" = oxdax_pmem ] || { echo "legacy namespace not bound to oxdax"; exit 1; }
dev=/dev/$(ls /sys/bus/nd/devices/$ns/block)

measure() { # DRIVER DEVICE
	for bs in 4096 1048576; do
		for op in write read; do
			r=0
			while [ $r -lt $reps ]; do
				echo "$1 $op $bs $(blkbench $2 $op $bs $total)"
				r=$((r + 1))
			done
		done
	done
}
measure oxdax "$dev"
echo $ns > /sys/bus/nd/drivers/oxdax_pmem/unbind
modprobe nd_pmem
sleep 1
[ "$(drv $ns)" = nd_pmem ] || { echo "nd_pmem did not bind $ns"; exit 1; }
measure nd_pmem /dev/$(ls /sys/bus/nd/devices/$ns/block)
