#!/bin/bash
# The quick tier of the differential tester (make difftest runs 1,000,000
# operations): one guest with three NVDIMMs runs difftest on oxdax, xfs
# -o dax=always and ext4 -o dax for three fixed seeds of 2,000 operations
# each, the last one with two worker processes, and fails on any
# difference between them and the model, or on a kernel report.
# DIFFTEST_QUICK_SEED, DIFFTEST_QUICK_OPS and DIFFTEST_FLAGS change it.
. "$(dirname "$0")/common.bash"
DIFFTEST_OPS=${DIFFTEST_QUICK_OPS:-6000} DIFFTEST_SEED_OPS=2000 DIFFTEST_SEEDS=3 \
	DIFFTEST_SEED=${DIFFTEST_QUICK_SEED:-1} DIFFTEST_PROCS="1 1 2" \
	DIFFTEST_OUT=$OXDAX_ROOT/build/difftest-quick DIFFTEST_TIMEOUT=900 \
	"$OXDAX_ROOT/scripts/difftest"
