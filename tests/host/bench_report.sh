#!/bin/bash
# scripts/bench-report turns repetitions into medians and ratios with
# their per-repetition spread, marks which direction is better, sums the
# fault histograms over the repetitions and leaves out what a filesystem
# did not measure (ext4 has no reflink). No guest: known input, known rows.
. "$(dirname "$0")/common.bash"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
{
	for rep in 1 2 3 4 5; do
		# oxdax 10..14 us, ext4 twice that, xfs as fast: ratios 0.5 and 1.
		echo "R fault:empty oxdax $rep fault.avg_us $((9 + rep))"
		echo "R fault:empty ext4 $rep fault.avg_us $((2 * (9 + rep)))"
		echo "R fault:empty xfs $rep fault.avg_us $((9 + rep))"
		for fs in oxdax ext4 xfs; do
			echo "R fault:empty $fs $rep fault.min_us 5"
			echo "R fault:empty $fs $rep fault.max_us 40"
			echo "R fault:empty $fs $rep fault.hist 8 500"
			echo "R fault:empty $fs $rep fault.hist 16 12"
		done
		# A rate: oxdax 300 MB/s against 100 and 150, 3x and 2x in
		# repetition 5 only for the spread.
		echo "R io:- oxdax $rep write_4k_random_MBps $([ $rep = 5 ] && echo 200 || echo 300)"
		echo "R io:- ext4 $rep write_4k_random_MBps 100"
		echo "R io:- xfs $rep write_4k_random_MBps 150"
		echo "R cow:4k oxdax $rep cow_fault.avg_us 30"
		echo "R cow:4k xfs $rep cow_fault.avg_us 60"
		# A fraction that is zero for oxdax: a ratio of 0, kept off the
		# log-scale plot.
		echo "R aging:aged+written oxdax $rep pmd_mapped_fraction 0.0000"
		echo "R aging:aged+written ext4 $rep pmd_mapped_fraction 0.0700"
		echo "R aging:aged+written xfs $rep pmd_mapped_fraction 0.3100"
	done
	# The ager ran once per filesystem; what it did has no better side.
	for fs in oxdax ext4 xfs; do
		echo "R aging:ager $fs 1 ager_sec 100.0"
		echo "R aging:ager $fs 1 ager_used_pct 60"
	done
	echo "noise that is not a result"
} > "$dir/results.txt"

/usr/bin/python3 "$OXDAX_ROOT/scripts/bench-report" "$dir/results.txt" "$dir" \
	--commit abc123 --accel TCG --kernel 6.12.117 --namespace 2G > /dev/null 2>&1 ||
	fail "bench-report failed"
report=$dir/report.md
[ -s "$report" ] || fail "no report.md"
expect_row() { # PATTERN WHAT
	grep -qF -- "$1" "$report" || { cat "$report" >&2; fail "$2: no row with '$1'"; }
}
expect_row '| empty | fault.avg_us | lower | 12.00 | 24.00 | 12.00 | **0.50** (0.50–0.50) | **1.00** (1.00–1.00) | 5 |' \
	"fault latency: medians, ratios"
expect_row '|  | write_4k_random_MBps | higher | 300 | 100 | 150 | **3.00** (2.00–3.00) | **2.00** (1.33–2.00) | 5 |' \
	"a rate: median ratio and its spread"
expect_row '| 4k | cow_fault.avg_us | lower | 30.00 | – | 60.00 | – | **0.50** (0.50–0.50) | 5 |' \
	"copy-on-write without ext4"
expect_row '| 8–15 us | 2500 | 2500 | 2500 |' "histogram summed over 5 repetitions"
expect_row '| aged written | pmd_mapped_fraction | higher | 0.000 | 0.070 | 0.310 | **0.00** (0.00–0.00) | **0.00** (0.00–0.00) | 5 |' \
	"aging: a zero fraction"
expect_row '| ager | ager_used_pct | – | 60.00 | 60.00 | 60.00 | – | – | 1 |' \
	"aging: what the ager did, no ratio"
expect_row '| ager | ager_sec | lower | 100 | 100 | 100 |' "aging: the ager's time"
expect_row '| us | min=5.00 avg=12.00 max=40.00 |' "seed 003's min/avg/max line"
for fact in 'oxdax commit: `abc123`' 'Linux 6.12.117' 'QEMU accelerator: **TCG**' '5 repetitions'; do
	expect_row "$fact" "the report's header"
done
echo "bench-report: rows, ratios, spreads and header as expected"
