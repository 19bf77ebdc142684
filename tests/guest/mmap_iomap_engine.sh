#!/bin/sh
# The mmap tests again, on oxdax mounted with fault_engine=iomap: the same
# block-mapping answers served by the kernel's dax_iomap_fault() instead of
# oxdax's own engine. Both must give the same results (the engine's
# counters are not asserted here: they do not move). A difference is a bug
# in one of them.
cd "$(dirname "$0")" || exit 1
[ "${OXDAX_FS:-oxdax}" = oxdax ] || exit 4
export OXDAX_FAULT_ENGINE=iomap
status=0
for t in mmap_flags mmap_fault mmap_cow mmap_writeback mmap_pmd mmap_truncate; do
	[ -x "./$t" ] || { echo "# $t missing"; status=1; continue; }
	echo "# $t (fault_engine=iomap)"
	if ./"$t" > /tmp/iomap-engine.out 2>&1; then
		grep -E '^# (PASSED|FAILED|Totals)' /tmp/iomap-engine.out
	else
		cat /tmp/iomap-engine.out
		echo "# $t failed with fault_engine=iomap"
		status=1
	fi
done
exit $status
