#!/bin/sh
# Cuts a difftest operation log (difftest --log) down to the operations a
# difference needs: drops one line at a time and keeps the drop when
# difftest --replay still reports the difference, until no line can go.
# Runs in the guest (scripts/vm --nvdimm 512M --nvdimm 512M --nvdimm 512M
# --add scripts/guest/difftest-minimize.sh:/oxdax/bin/difftest-minimize).
#
#   difftest-minimize LOG PATTERN [DIFFTEST-OPTIONS...]
#
# PATTERN (grep -E) must match the report of the difference, e.g.
# "mremap" or "ext4: first difference"; the options are those of the run
# that wrote LOG (--files, --procs, --shared, --max-size, --fs, ...).
# Prints the shortest log and its report; it is left in /tmp/min.log.
# Each try formats the filesystems again: a few seconds each under TCG,
# so cut a long log first (grep the lines of the files and mappings
# concerned; ops referring to a mapping that is not there are skipped).
set -u
[ $# -ge 2 ] || { echo "usage: difftest-minimize LOG PATTERN [DIFFTEST-OPTIONS...]" >&2; exit 2; }
log=$1 pattern=$2
shift 2
opts="$*"
cp "$log" /tmp/min.log

reproduces() { # LOG: whether its replay reports PATTERN
	# shellcheck disable=SC2086
	difftest --replay "$1" --quiet --no-fsck $opts > /tmp/min.out 2>&1
	grep -qE "$pattern" /tmp/min.out
}

if ! reproduces /tmp/min.log; then
	echo "difftest-minimize: the log does not reproduce '$pattern':"
	head -n 20 /tmp/min.out
	exit 1
fi
changed=1
while [ $changed = 1 ]; do
	changed=0
	n=$(wc -l < /tmp/min.log)
	i=1
	while [ "$i" -le "$n" ]; do
		sed "${i}d" /tmp/min.log > /tmp/min.try
		if reproduces /tmp/min.try; then
			mv /tmp/min.try /tmp/min.log
			n=$((n - 1))
			changed=1
		else
			i=$((i + 1))
		fi
	done
done
echo "difftest-minimize: $(wc -l < /tmp/min.log) operations (/tmp/min.log):"
cat /tmp/min.log
reproduces /tmp/min.log
grep -v '^  step=' /tmp/min.out
