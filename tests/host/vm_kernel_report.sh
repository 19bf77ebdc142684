#!/bin/bash
# A report in the guest's kernel log fails the run (status 90) and is printed,
# even when the command itself succeeds.
. "$(dirname "$0")/common.bash"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
expect_status 90 "$VM" -- \
	'echo "WARNING: CPU: 0 PID: 1 at synthetic report from oxdax tests" > /dev/kmsg' 2> "$tmp"
grep -q 'synthetic report from oxdax tests' "$tmp" || fail "report not printed: $(cat "$tmp")"
