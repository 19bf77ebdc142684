#!/bin/sh
# Guest side of scripts/bench: oxdax, ext4 -o dax and xfs -o dax (reflink,
# rmapbt) on three equally sized namespaces served by oxdax's pmem driver,
# measured by daxbench. Repetitions are interleaved across the filesystems
# (rep 1 of each, then rep 2, ...) so that a drift of the host hits all of
# them alike. Prints "R SECTION:CASE FS REP METRIC VALUE..." lines.
#   BENCH_REPS      repetitions (default 5)
#   BENCH_SECTIONS  space-separated subset of: fault pmd cow bw io fsync meta
#                   concurrency failure aging
#   BENCH_AGE       the ager's FULL_PCT WRITTEN_X10 FINAL_PCT SEED (aging
#                   section; default "85 30 60 1", see daxbench age)
#   BENCH_CONCURRENCY_OPS  the concurrency section's daxbench spin
#                   operations (default "create unlink fault-alloc fault")
set -eu -o pipefail
reps=${BENCH_REPS:-5}
sections=${BENCH_SECTIONS:-fault pmd cow bw io fsync meta concurrency failure aging}
age_args=${BENCH_AGE:-85 30 60 1}
concurrency_ops=${BENCH_CONCURRENCY_OPS:-create unlink fault-alloc fault}

# Only emergencies on the (serial, synchronous) console: the failure cases
# log a line per signalled mapping, which the console would turn into most
# of what is measured. dmesg keeps everything for the runner's checks.
echo 1 > /proc/sys/kernel/printk
insmod /oxdax/oxdax.ko
echo "bench: kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB"
for d in /sys/block/oxpmem*; do
	echo "bench: /dev/${d##*/} $(($(cat $d/size) / 2048)) MiB"
done

mkfs_fs() { # FS [2m]: 2m makes ext4 and xfs align to 2 MiB (aging)
	case $1 in
	oxdax) mkfs.oxdax -f /dev/oxpmem0 > /dev/null ;;
	ext4) mkfs.ext4 -F -q ${2:+-E stride=512,stripe_width=512} /dev/oxpmem1 ;;
	xfs) mkfs.xfs -f -q -m reflink=1,rmapbt=1 ${2:+-d su=2m,sw=1} /dev/oxpmem2 ;;
	esac
}
mount_fs() { # FS
	mkdir -p /mnt/$1
	case $1 in
	oxdax) mount -t oxdax /dev/oxpmem0 /mnt/oxdax ;;
	ext4) mount -t ext4 -o dax /dev/oxpmem1 /mnt/ext4 ;;
	xfs) mount -t xfs -o dax=always /dev/oxpmem2 /mnt/xfs ;;
	esac
	grep -q " /mnt/$1 $1 .*dax" /proc/mounts || [ "$1" = oxdax ] || {
		echo "bench: $1 did not mount with DAX"; exit 1; }
}
fresh() { # FS [2m]: a new filesystem
	umount /mnt/$1 2>/dev/null || true
	mkfs_fs "$@"
	mount_fs $1
}

run() { # CASE FS REP DAXBENCH-ARGS...
	case_=$1 fs=$2 rep=$3
	shift 3
	daxbench "$@" | sed "s|^|R $case_ $fs $rep |"
}

mutex_snapshot() { # oxdax's volume mutex: calls, wait ns, hold ns (all uses),
	# then transactions logged and all transactions' build, settle, log, home ns
	set -- /sys/kernel/debug/oxdax/oxpmem0/mutex_* /sys/kernel/debug/oxdax/oxpmem0/tx_*
	[ -e "$1" ] || { echo 0 0 0 0 0 0 0 0; return; }
	awk '{ n = FILENAME; sub(/.*\/(mutex_[a-z]*|tx)_/, "", n); t[n] += $1 }
	     END { printf "%.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f\n", t["calls"], t["wait_ns"], t["hold_ns"],
	           t["logged"], t["build_ns"], t["settle_ns"], t["log_ns"], t["home_ns"] }' "$@"
}

uptime_ns() { # busybox's date has no %N: /proc/uptime, to 10 ms
	awk '{ printf "%.0f\n", $1 * 1e9 }' /proc/uptime
}

spin_oxdax() { # CASE REP DAXBENCH-SPIN-ARGS...: daxbench spin on oxdax, and
	# its volume mutex over the timed part (not the setup: unlink's creates)
	case_=$1 rep=$2
	shift 2
	rm -f /tmp/ready
	DAXBENCH_READY=/tmp/ready daxbench spin "$@" > /tmp/spin.out &
	pid=$!
	while [ ! -e /tmp/ready ] && kill -0 $pid 2>/dev/null; do
		sleep 0.1
	done
	before=$(mutex_snapshot) start=$(uptime_ns)
	wait $pid
	after=$(mutex_snapshot) end=$(uptime_ns)
	sed "s|^|R $case_ oxdax $rep |" /tmp/spin.out
	mutex_use "$case_" "$rep" "$before" "$after" "$start" "$end"
}

mutex_use() { # CASE REP BEFORE AFTER START_NS END_NS: the mutex over a run
	echo "$3 $4 $5 $6" | awk -v c="$1" -v r="$2" '{
		for (i = 1; i <= 8; i++) d[i] = $(i + 8) - $i
		calls = d[1]; hold = d[3]; wall = $18 - $17
		if (calls <= 0 || wall <= 0 || hold <= 0) exit
		printf "R %s oxdax %s mutex_held_pct %.1f\n", c, r, 100 * hold / wall
		printf "R %s oxdax %s mutex_wait_per_call_us %.2f\n", c, r, d[2] / calls / 1000
		printf "R %s oxdax %s mutex_hold_per_call_us %.2f\n", c, r, hold / calls / 1000
		printf "R %s oxdax %s mutex_logged_tx_per_call %.2f\n", c, r, d[4] / calls
		split("build settle log home", phase)
		for (i = 1; i <= 4; i++)
			printf "R %s oxdax %s mutex_hold_%s_pct %.1f\n", c, r, phase[i], 100 * d[4 + i] / hold
	}'
}

placements() { # STATE: the aging section's PMD fractions of new files
	rep=1
	while [ $rep -le $reps ]; do
		for kind in fallocated written faulted; do
			for fs in oxdax ext4 xfs; do
				run aging:$1+$kind $fs $rep placement /mnt/$fs $kind
			done
		done
		rep=$((rep + 1))
	done
}

for fs in oxdax ext4 xfs; do
	fresh $fs
done

for section in $sections; do
	echo "bench: section $section"
	rep=1
	while [ $rep -le $reps ]; do
		case $section in
		fault)
			for kind in prealloc empty "empty sync"; do
				for load in "" copy; do
					name=fault:$(echo $kind $load | tr ' ' +)
					for fs in oxdax ext4 xfs; do
						run $name $fs $rep fault /mnt/$fs $kind $load
					done
				done
			done ;;
		pmd)
			for kind in sparse fallocated; do
				for fs in oxdax ext4 xfs; do
					run pmd:$kind $fs $rep pmd /mnt/$fs $kind
				done
			done ;;
		cow) # ext4 cannot reflink
			for size in 4k 2m; do
				for fs in oxdax xfs; do
					run cow:$size $fs $rep cow /mnt/$fs $size
				done
			done ;;
		bw)
			run bw:mmap ceiling $rep bw anon
			for fs in oxdax ext4 xfs; do
				run bw:mmap $fs $rep bw /mnt/$fs
			done ;;
		io|fsync|meta)
			for fs in oxdax ext4 xfs; do
				run $section:- $fs $rep $section /mnt/$fs
			done ;;
		concurrency)
			# 1, 2 and 4 processes (the guest has 2 CPUs), each in its
			# own directory or file, or all in one. "fault": store
			# faults on allocated blocks, which look up only (the volume
			# lock shared).
			for op in $concurrency_ops; do
				for procs in 1 2 4; do
					for where in separate shared; do
						[ $procs = 1 ] && [ $where = shared ] && continue
						case_=concurrency:$op+$procs+$where
						shared=$([ $where = shared ] && echo shared || true)
						for fs in oxdax ext4 xfs; do
							if [ $fs = oxdax ]; then
								# shellcheck disable=SC2086
								spin_oxdax $case_ $rep /mnt/oxdax $op 2 $procs $shared
							else
								# shellcheck disable=SC2086
								run $case_ $fs $rep spin /mnt/$fs $op 2 $procs $shared
							fi
							rm -rf /mnt/$fs/spin*
						done
					done
				done
			done ;;
		failure|aging) ;; # below: each case on a new filesystem
		*) echo "bench: unknown section $section"; exit 1 ;;
		esac
		rep=$((rep + 1))
	done
	# Aging: the PMD fraction of new files on filesystems made for 2 MiB
	# (ext4 with a 2 MiB stripe, xfs with a 2 MiB stripe unit), fresh and
	# after the ager (once per filesystem: it writes several times the
	# namespace), the repetitions interleaved on the aged filesystems. The
	# next section gets the usual filesystems again.
	if [ $section = aging ]; then
		for fs in oxdax ext4 xfs; do
			fresh $fs 2m
		done
		placements fresh
		for fs in oxdax ext4 xfs; do
			echo "bench: aging $fs ($age_args)"
			# shellcheck disable=SC2086
			run aging:ager $fs 1 age /mnt/$fs $age_args
		done
		placements aged
		for fs in oxdax ext4 xfs; do
			fresh $fs
		done
	fi
	# notify_failure poisons blocks for good (until the next mkfs): each
	# filesystem is made anew for each reverse-map size, and its cases poison
	# one block per repetition (10 in all, under oxdax's limit of 32 runs).
	# ext4 has neither reflink nor a reverse map.
	[ $section = failure ] || continue
	for fragments in 0 100000; do
		for fs in oxdax xfs; do
			fresh $fs
			[ $fragments = 0 ] || daxbench fragment /mnt/$fs $fragments
			for sharers in 1 1000; do
				rep=1
				while [ $rep -le $reps ]; do
					run failure:${sharers}+sharers+${fragments}+extents $fs $rep \
						failure /mnt/$fs $sharers
					rep=$((rep + 1))
				done
			done
		done
	done
done

for fs in oxdax ext4 xfs; do
	umount /mnt/$fs
done
fsck.oxdax /dev/oxpmem0 > /dev/null && echo "bench: fsck.oxdax clean"
echo "bench: done"
