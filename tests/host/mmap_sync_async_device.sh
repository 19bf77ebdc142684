#!/bin/bash
# MAP_SYNC only where it is honest: oxdax on a virtio-pmem device (a DAX
# device that is not synchronous: stores that left the CPU caches are not
# durable until the host flushes) refuses MAP_SHARED_VALIDATE|MAP_SYNC with
# EOPNOTSUPP and still maps MAP_SHARED; on the NVDIMM beside it MAP_SYNC is
# accepted.
. "$(dirname "$0")/common.bash"
expect_status 0 "$VM" --nvdimm 256M --virtio-pmem 256M -- '
set -e
insmod /oxdax/oxdax.ko
sleep 1
async= sync=
for d in /sys/block/oxpmem*; do
	if readlink -f "$d" | grep -q virtio; then async=${d##*/}; else sync=${d##*/}; fi
done
echo "synchronous: $sync, not synchronous: $async"
test -n "$async" && test -n "$sync"
cat /sys/block/$async/dax/write_cache 2>/dev/null || true
mkdir -p /mnt/a /mnt/s
mkfs.oxdax -f /dev/$async >/dev/null
mkfs.oxdax -f /dev/$sync >/dev/null
mount -t oxdax /dev/$async /mnt/a
mount -t oxdax /dev/$sync /mnt/s
dax_mmap nosync /mnt/a/f
dax_mmap flags /mnt/s/f
dmesg | grep "MAP_SYNC refused"
umount /mnt/a /mnt/s
fsck.oxdax -n /dev/$async
'
