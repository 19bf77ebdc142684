#!/bin/sh
# Device removal while processes map files of a mounted oxdax: the DAX
# device's pre-remove notification (MF_MEM_PRE_REMOVE) shuts oxdax down and
# takes every mapping away, killing the processes that hold them with
# SIGBUS (PTE- and PMD-mapped files, data and hole reads alike); the unbind
# does not hang, the filesystem unmounts and the device comes back clean.
set -eu
[ "${OXDAX_FS:-oxdax}" = oxdax ] || exit 4
disk=/dev/oxpmem0 ns=namespace0.0
drv=/sys/bus/nd/drivers/oxdax_pmem
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
mkdir -p /mnt/fs
mkfs.oxdax -f $disk > /dev/null
mount -t oxdax $disk /mnt/fs
fallocate -l 4M /mnt/fs/pmd

pids=
for f in small:65536 pmd:4194304 sparse:8388608; do
	dax_mmap hold /mnt/fs/${f%%:*} ${f#*:} > /tmp/hold.${f%%:*} &
	pids="$pids $!"
done
for f in small pmd sparse; do
	i=0
	until grep -q ready /tmp/hold.$f 2>/dev/null; do
		i=$((i + 1)); [ $i -lt 600 ] || { echo "holder $f never got ready"; exit 1; }
		sleep 0.1
	done
done

log_start=$(dmesg | wc -l)
echo $ns > $drv/unbind
for pid in $pids; do
	status=0
	wait $pid || status=$?
	# 128 + SIGBUS (7)
	[ $status = 135 ] || { echo "holder $pid ended with status $status, want SIGBUS"; exit 1; }
done
dmesg | tail -n +$((log_start + 1)) | grep -q 'oxdax: .*device is being removed: shutting down' || {
	echo "no shutdown line:"; dmesg | tail -n +$((log_start + 1)); exit 1; }
if touch /mnt/fs/new 2>/dev/null; then
	echo "file created after the device went away"; exit 1
fi
umount /mnt/fs
echo $ns > $drv/bind
[ -b $disk ]
fsck.oxdax -n $disk
