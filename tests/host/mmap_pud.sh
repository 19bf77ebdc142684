#!/bin/bash
# PUD (1 GiB) mappings (rust/dax/pud.rs) on the 4 GiB namespace they need:
# the guest test mmap_pud (tests/guest/mmap_pud.c, which skips on the
# suite's 1 GiB disk) must pass, not skip, with no kernel report.
. "$(dirname "$0")/common.bash"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# Private: the GiBs the tests write stay in QEMU's memory. In the shared
# file they were the host's dirty pages, whose writeback stalled the next
# test's virtio-pmem flush (a host fdatasync) past the hung-task timeout.
"$VM" --private --nvdimm 4G --timeout 1500 -- /oxdax/tests/run mmap_pud > "$log" 2>&1 || status=$?
# Every test ran: none skipped for want of the namespace.
grep -qE '^ok [0-9]+ mmap_pud\r?$' "$log" && [ $status = 0 ] &&
	! grep -q 'SKIP' "$log" || {
	cat "$log"
	fail "mmap_pud on a 4 GiB namespace (guest exit $status)"
}
grep -E '^# #  *OK|^# # (PASSED|Totals)' "$log" | tr -d '\r'
