#!/bin/sh
# The quick tier of `make bench`: every daxbench measurement once, sizes
# divided by 16 (DAXBENCH_QUICK=1), on oxdax, and the notify_failure
# measurement on xfs (rmapbt) too, on the debug kernel. Checks that each
# one runs and reports what scripts/bench-report reads, and that the
# poisoned block shared by 100 reflinked files was handled: daxbench's
# child, which maps all of them and asked for early kill, must have been
# signalled with BUS_MCEERR_AO and see no page of them mapped any more.
# The aging section's commands run on a 256 MiB oxdax aged by the ager:
# new files given their blocks by fallocate, 1 MiB writes and store faults
# must be at least 99 % PMD-mapped. The volume mutex's and the
# transactions' counters exist and count what they say. No timing is
# asserted.
set -eu
disk=/dev/oxpmem0
export DAXBENCH_QUICK=1
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
mkdir -p /mnt/bench
# The failures log a line per signalled mapping: keep them off the serial
# console (dmesg keeps them for the runner).
console_level=$(cut -f1 /proc/sys/kernel/printk)
# A failed check must not leave the disk mounted for the tests after this.
trap 'umount /mnt/bench 2>/dev/null || true; echo $console_level > /proc/sys/kernel/printk' EXIT
echo 1 > /proc/sys/kernel/printk

expect() { # OUTPUT-FILE METRIC...: each metric reported with a number
	out=$1
	shift
	for metric in "$@"; do
		grep -Eq "^$metric [0-9]+(\.[0-9]+)?$" "$out" || {
			echo "no '$metric N' in daxbench's output:"; cat "$out"; exit 1; }
	done
}

mkfs.oxdax -f $disk > /dev/null
mount -t oxdax $disk /mnt/bench
# The volume mutex's and the transactions' counters that the concurrency
# rows read: a file per use and measure, and each kind of call counted
# where it belongs.
dir=/sys/kernel/debug/oxdax/${disk##*/}
for use in namespace read write fault times evict compaction other; do
	for measure in calls wait_ns hold_ns; do
		[ -r $dir/mutex_${use}_$measure ] || { echo "no $dir/mutex_${use}_$measure"; exit 1; }
	done
done
for measure in logged build_ns settle_ns log_ns home_ns; do
	[ -r $dir/tx_$measure ] || { echo "no $dir/tx_$measure"; exit 1; }
done
grew() { # WHAT FILE BEFORE AT-LEAST
	now=$(cat $dir/$2)
	[ $((now - $3)) -ge $4 ] || { echo "$1: $2 went from $3 to $now (at least +$4 expected)"; exit 1; }
}
mkdir /mnt/bench/names
names=$(cat $dir/mutex_namespace_calls) held=$(cat $dir/mutex_namespace_hold_ns)
logged=$(cat $dir/tx_logged) log_ns=$(cat $dir/tx_log_ns)
writes=$(cat $dir/mutex_write_calls)
for i in 1 2 3 4 5 6 7 8 9 10; do : > /mnt/bench/names/$i; done
# A new filesystem keeps nothing for any file: the closes call nothing.
[ "$(cat $dir/mutex_write_calls)" = "$writes" ] || {
	echo "10 creates made write calls: $writes -> $(cat $dir/mutex_write_calls)"; exit 1; }
grew "10 creates" mutex_namespace_calls $names 10
grew "10 creates" mutex_namespace_hold_ns $held 1
grew "10 creates" tx_logged $logged 10
grew "10 creates" tx_log_ns $log_ns 1
names=$(cat $dir/mutex_namespace_calls) evicts=$(cat $dir/mutex_evict_calls)
rm -r /mnt/bench/names
grew "10 unlinks" mutex_namespace_calls $names 10
grew "10 unlinks" mutex_evict_calls $evicts 10
faults=$(cat $dir/mutex_fault_calls)
for kind in prealloc empty "empty sync copy"; do
	daxbench fault /mnt/bench $kind > /tmp/out
	expect /tmp/out fault.min_us fault.avg_us fault.max_us
	# 512 faults in the histogram, whatever their buckets.
	[ "$(awk '$1 == "fault.hist" { n += $3 } END { print n }' /tmp/out)" = 512 ] || {
		echo "fault ($kind): the histogram does not count 512 faults:"; cat /tmp/out; exit 1; }
done
grew "3 x 512 faults" mutex_fault_calls $faults 1
daxbench pmd /mnt/bench sparse > /tmp/out
expect /tmp/out pmd_fault.avg_us pmd_mapped_fraction
# oxdax allocates 2 MiB-aligned extents for a sparse file: all PMDs.
grep -q '^pmd_mapped_fraction 1.0000$' /tmp/out || {
	echo "oxdax did not map the sparse file with PMDs only:"; cat /tmp/out; exit 1; }
daxbench cow /mnt/bench 4k > /tmp/out
expect /tmp/out cow_fault.avg_us
daxbench cow /mnt/bench 2m > /tmp/out
expect /tmp/out cow_fault.avg_us pmd_mapped_fraction
daxbench bw /mnt/bench > /tmp/out
expect /tmp/out mmap_write_MBps mmap_read_MBps
daxbench bw anon > /tmp/out
expect /tmp/out mmap_write_MBps mmap_read_MBps
daxbench io /mnt/bench > /tmp/out
expect /tmp/out write_4k_random_MBps read_4k_random_MBps write_1m_seq_MBps read_1m_seq_MBps
daxbench fsync /mnt/bench > /tmp/out
expect /tmp/out fsync_1_dirty_us fsync_16_dirty_us fsync_256_dirty_us fsync_4096_dirty_us
daxbench meta /mnt/bench > /tmp/out
expect /tmp/out create_per_s stat_per_s unlink_per_s
for op in create unlink write4k fault fault-alloc; do
	daxbench spin /mnt/bench $op 1 > /tmp/out
	expect /tmp/out "spin_${op}_per_s"
	daxbench spin /mnt/bench $op 1 2 shared > /tmp/out
	expect /tmp/out "spin_${op}_per_s"
	rm -rf /mnt/bench/spin*
done
daxbench fragment /mnt/bench 2000
for sharers in 1 100; do
	daxbench failure /mnt/bench $sharers > /tmp/out
	expect /tmp/out notify_failure_us
done
rm /mnt/bench/fragments
umount /mnt/bench
fsck.oxdax $disk
echo "# oxdax: every measurement ran"

mkfs.oxdax -f $disk 256M > /dev/null
mount -t oxdax $disk /mnt/bench
daxbench age /mnt/bench 85 30 60 1 > /tmp/out
expect /tmp/out ager_sec ager_written_MiB ager_used_pct_max ager_used_pct ager_files
counters=/sys/kernel/debug/oxdax/${disk##*/}
for c in chunks_free chunks_partial chunks_full; do
	if [ -r $counters/$c ]; then echo "# aged: $c $(cat $counters/$c)"; fi
done
for kind in fallocated written faulted; do
	daxbench placement /mnt/bench $kind > /tmp/out
	expect /tmp/out pmd_mapped_fraction
	awk '$1 == "pmd_mapped_fraction" { exit !($2 >= 0.99) }' /tmp/out || {
		echo "aged oxdax, $kind: under 99 % of the file PMD-mapped:"; cat /tmp/out; exit 1; }
done
umount /mnt/bench
fsck.oxdax $disk
echo "# oxdax: aged, new files PMD-mapped"

mkfs.xfs -q -f -m reflink=1,rmapbt=1 $disk
mount -o dax=always $disk /mnt/bench
daxbench failure /mnt/bench 100 > /tmp/out
expect /tmp/out notify_failure_us
umount /mnt/bench
echo "# xfs: notify_failure measured"
