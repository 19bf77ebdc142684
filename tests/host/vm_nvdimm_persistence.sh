#!/bin/bash
# NVDIMM contents written in one boot are there in the next with the same
# --state, are in the host backing file, and are gone with --fresh. Uses the
# in-tree pmem driver (built as a module, loaded by hand here) as the writer.
. "$(dirname "$0")/common.bash"
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
token=oxdax-persist-$$-$RANDOM
load='modprobe nd_pmem && sleep 1 && test -b /dev/pmem0'
# 1 MiB into the namespace; a label-less NFIT namespace starts at file offset 0.
expect_status 0 "$VM" --state "$state" --nvdimm 64M -- \
	"$load && printf $token | dd of=/dev/pmem0 bs=512 seek=2048 conv=notrunc,fsync 2>/dev/null"
# grep -c reads all its input: no SIGPIPE for dd under pipefail.
dd if="$state/nvdimm0.img" bs=1M skip=1 count=1 2>/dev/null | grep -ac "$token" >/dev/null ||
	fail "token not in the backing file"
expect_status 0 "$VM" --state "$state" --nvdimm 64M -- \
	"$load && dd if=/dev/pmem0 bs=512 skip=2048 count=1 2>/dev/null | grep -q $token"
expect_status 0 "$VM" --state "$state" --nvdimm 64M --fresh -- \
	"$load && ! dd if=/dev/pmem0 bs=512 skip=2048 count=1 2>/dev/null | grep -q $token"
