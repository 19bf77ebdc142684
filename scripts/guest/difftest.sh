#!/bin/sh
# Guest side of scripts/difftest: runs difftest (tests/helpers/difftest.c)
# seed after seed, each on freshly made oxdax, xfs and ext4 filesystems,
# until DIFFTEST_OPS operations ran. A seed ends at its first difference
# (the next seed starts fresh), and a kernel report logged while a seed ran
# counts as a difference of that seed. Prints each seed's result, then
#   difftest: N operations, M differences
# and exits 0 only without differences.
#   DIFFTEST_OPS        operations in all (default 1000000)
#   DIFFTEST_SEED       the first seed (default 1); the next ones count up
#   DIFFTEST_SEED_OPS   operations per seed at most (default 20000)
#   DIFFTEST_SEEDS      seeds at most (default: as many as it takes)
#   DIFFTEST_PROCS      worker processes, a list used in turn per seed ("1 2")
#   DIFFTEST_FLAGS      more difftest options (e.g. --no-mremap)
set -u
total=${DIFFTEST_OPS:-1000000}
seed=${DIFFTEST_SEED:-1}
per=${DIFFTEST_SEED_OPS:-20000}
max_seeds=${DIFFTEST_SEEDS:-0}
procs_list=${DIFFTEST_PROCS:-1}
flags=${DIFFTEST_FLAGS:-}
report_re=$(cat /oxdax/tests/kernel-report.re)

# The module's own messages stay in the kernel log, not on the console.
echo 1 > /proc/sys/kernel/printk
done=0 diffs=0 n=0 failed_seeds=
start=$(date +%s)
while [ "$done" -lt "$total" ] && { [ "$max_seeds" = 0 ] || [ "$n" -lt "$max_seeds" ]; }; do
	ops=$per
	[ $((total - done)) -lt "$ops" ] && ops=$((total - done))
	set -- $procs_list
	shift $((n % $#))
	procs=$1
	before=$(dmesg | wc -l)
	# Shown as it runs (progress lines); busybox sh has no pipefail.
	# shellcheck disable=SC2086
	{ difftest --seed "$seed" --ops "$ops" --procs "$procs" $flags 2>&1; echo $? > /tmp/seed.rc; } |
		tee /tmp/seed.out
	rc=$(cat /tmp/seed.rc)
	ran=$(sed -n 's/^difftest: seed [0-9]*: \([0-9]*\) operations in .*/\1/p' /tmp/seed.out | tail -n1)
	step=$(sed -n 's/^difftest: seed [0-9]*: difference at step \([0-9]*\)$/\1/p' /tmp/seed.out |
		head -n1)
	if [ -n "$step" ]; then
		ran=$((step + 1))
		diffs=$((diffs + 1))
		failed_seeds="$failed_seeds $seed:$step:$procs"
		echo "difftest-run: seed $seed (--procs $procs): DIFFERENCE at step $step"
	elif [ "$rc" != 0 ]; then
		echo "difftest-run: seed $seed (--procs $procs): difftest exited $rc without a difference"
		[ "$rc" = 2 ] && { echo "difftest-run: cannot run; stopping"; diffs=$((diffs + 1)); break; }
		diffs=$((diffs + 1))
		failed_seeds="$failed_seeds $seed:?:$procs"
	fi
	[ -n "$ran" ] || ran=0
	done=$((done + ran))
	dmesg | tail -n +$((before + 1)) > /tmp/seed.dmesg
	if grep -qE "$report_re" /tmp/seed.dmesg; then
		echo "difftest-run: seed $seed: kernel report while it ran:"
		grep -E -A20 "$report_re" /tmp/seed.dmesg | head -n 60 | sed 's/^/difftest-run: | /'
		diffs=$((diffs + 1))
		failed_seeds="$failed_seeds $seed:kernel-report:$procs"
	fi
	now=$(date +%s)
	echo "difftest-run: $done of $total operations after $((now - start)) s"
	seed=$((seed + 1))
	n=$((n + 1))
	# Without operations (ran=0 and no difference) the loop would never end.
	[ "$ran" = 0 ] && [ -z "$step" ] && break
done
for f in $failed_seeds; do
	echo "difftest-run: failed seed:step:procs $f"
done
echo "difftest: $done operations, $diffs differences"
[ "$diffs" = 0 ]
