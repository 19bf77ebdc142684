#!/bin/sh
# Guest side of scripts/bench-profile: each operation on each filesystem
# (made fresh) under perf record; prints "P OP FS LINE" for the reports and
# "R OP FS 1 spin_OP_per_s RATE" for the rate it ran at while profiled.
set -eu
ops=$PROFILE_OPS filesystems=$PROFILE_FS seconds=$PROFILE_SECONDS
export LD_LIBRARY_PATH=/perf/lib
perf=/perf/perf
echo 1 > /proc/sys/kernel/printk
echo 0 > /proc/sys/kernel/kptr_restrict
echo -1 > /proc/sys/kernel/perf_event_paranoid
insmod /oxdax/oxdax.ko
dev() { case $1 in oxdax) echo /dev/oxpmem0 ;; ext4) echo /dev/oxpmem1 ;; xfs) echo /dev/oxpmem2 ;; esac; }
fresh() {
	umount /mnt/$1 2>/dev/null || true
	mkdir -p /mnt/$1
	case $1 in
	oxdax) mkfs.oxdax -f $(dev oxdax) > /dev/null
		mount -t oxdax $(dev oxdax) /mnt/oxdax ;;
	ext4) mkfs.ext4 -F -q $(dev ext4)
		mount -t ext4 -o dax $(dev ext4) /mnt/ext4 ;;
	xfs) mkfs.xfs -f -q -m reflink=1,rmapbt=1 $(dev xfs)
		mount -t xfs -o dax=always $(dev xfs) /mnt/xfs ;;
	esac
}
for op in $ops; do
	for fs in $filesystems; do
		if [ $op = cow2m ] && [ $fs = ext4 ]; then
			echo "P $op $fs ext4 has no reflinks: not run"
			continue
		fi
		fresh $fs
		rm -f /tmp/ready /tmp/perf.data
		DAXBENCH_READY=/tmp/ready daxbench spin /mnt/$fs $op $seconds > /tmp/rate &
		pid=$!
		while [ ! -e /tmp/ready ]; do
			kill -0 $pid 2>/dev/null || { echo "bench-profile: $op on $fs failed"; exit 1; }
			sleep 0.1
		done
		# All CPUs: work the operation hands to kernel threads counts too.
		$perf record -q -a -g -F 1999 -o /tmp/perf.data -- sleep $((seconds - 1)) 2>/dev/null
		wait $pid
		sed "s|^|R $op $fs 1 |" /tmp/rate
		{
			echo "## who ran (samples by command)"
			$perf report -q -i /tmp/perf.data --stdio --sort comm --percent-limit 0.5 2>/dev/null
			echo "## self time of daxbench, by symbol"
			$perf report -q -i /tmp/perf.data --stdio --no-children --comm daxbench \
				--sort sym -g none --percent-limit 0.4 2>/dev/null
			echo "## inclusive time of daxbench, by symbol (callers included)"
			$perf report -q -i /tmp/perf.data --stdio --children --comm daxbench \
				--sort sym -g none --percent-limit 2 2>/dev/null
		} | sed "s|^|P $op $fs |"
	done
done
for fs in $filesystems; do umount /mnt/$fs; done
echo "bench-profile: done"
