#!/bin/sh
# What oxdax does so far, shown in the guest (run by scripts/demo).
set -e
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
namespaces() {
	for d in /sys/bus/nd/devices/namespace*; do
		drv=$(readlink "$d/driver" 2>/dev/null || true)
		printf '%s: %s MiB, driver %s\n' "${d##*/}" $(($(cat "$d/size") >> 20)) "${drv##*/}"
	done
}

step "guest kernel $(uname -r), emulated NVDIMM namespaces before oxdax"
namespaces
step "insmod oxdax.ko: each namespace becomes /dev/oxpmemN and a DAX device"
insmod /oxdax/oxdax.ko
dmesg | grep 'oxdax:' | tail -n 2
namespaces
for b in /sys/block/oxpmem*; do
	printf '%s: %s sectors, logical %s, physical %s, dax %s\n' "/dev/${b##*/}" \
		"$(cat $b/size)" "$(cat $b/queue/logical_block_size)" \
		"$(cat $b/queue/physical_block_size)" "$(cat $b/queue/dax)"
done
step "xfs (reflink, rmapbt) on /dev/oxpmem0, mounted with DAX"
mkfs.xfs -q -f -m reflink=1,rmapbt=1 /dev/oxpmem0
mkdir -p /mnt/pmem
mount -o dax=always /dev/oxpmem0 /mnt/pmem
grep oxpmem0 /proc/mounts
step "8 MiB written through a MAP_SHARED_VALIDATE|MAP_SYNC mapping, read back after remount"
dax_mmap write /mnt/pmem/data 8388608 42 sync
umount /mnt/pmem
mount -o dax=always /dev/oxpmem0 /mnt/pmem
dax_mmap verify /mnt/pmem/data 8388608 42 && echo "data intact"
step "a poisoned page: oxdax's page map -> xfs notify_failure -> SIGBUS to the process"
dax_mmap poison /mnt/pmem/victim
dmesg | grep 'oxdax: oxpmem0: memory failure' | tail -n 1
umount /mnt/pmem
step "oxdax's own filesystem on /dev/oxpmem0"
mkfs.oxdax -f -L demo /dev/oxpmem0
mount -t oxdax /dev/oxpmem0 /mnt/pmem
grep oxpmem0 /proc/mounts
mkdir /mnt/pmem/dir
head -c 1000000 /dev/urandom > /mnt/pmem/dir/file
step "a 4 MiB preallocated file: 2 MiB-aligned physical extents (FIEMAP)"
xfs_io -f -c "falloc 0 4m" -c "fiemap -v" /mnt/pmem/prealloc
step "a reflink shares the blocks; a write to the clone copies"
xfs_io -f -c "reflink /mnt/pmem/dir/file" /mnt/pmem/clone > /dev/null
xfs_io -c "fiemap -v" /mnt/pmem/clone
printf 'changed' | dd of=/mnt/pmem/clone bs=1 seek=5000 conv=notrunc 2>/dev/null
cmp /mnt/pmem/dir/file /mnt/pmem/clone || true
df -h /mnt/pmem
step "unmount, fsck.oxdax"
umount /mnt/pmem
fsck.oxdax /dev/oxpmem0
step "rmmod"
rmmod oxdax
dmesg | grep 'oxdax:' | tail -n 1
