#!/bin/sh
# Unbinding and rebinding the namespace through sysfs, ten times: the disk
# goes and comes back with its data; rmmod works while unbound and bound.
set -eu
ns=namespace0.0
drv=/sys/bus/nd/drivers/oxdax_pmem
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
printf 'oxdax-bind-%s' $$ | dd of=/dev/oxpmem0 bs=512 seek=100 conv=sync 2>/dev/null
sync

i=0
while [ $i -lt 10 ]; do
	echo $ns > $drv/unbind
	[ ! -e /dev/oxpmem0 ] || { echo "cycle $i: /dev/oxpmem0 still there after unbind"; exit 1; }
	echo $ns > $drv/bind
	[ -b /dev/oxpmem0 ] || { echo "cycle $i: no /dev/oxpmem0 after bind"; exit 1; }
	dd if=/dev/oxpmem0 bs=512 skip=100 count=1 2>/dev/null | grep -q "oxdax-bind-$$" ||
		{ echo "cycle $i: data lost"; exit 1; }
	i=$((i + 1))
done

# Unbound, then unloaded; loaded again, it binds the namespace again.
echo $ns > $drv/unbind
rmmod oxdax
insmod /oxdax/oxdax.ko
[ -b /dev/oxpmem0 ]
[ "$(basename "$(readlink /sys/bus/nd/devices/$ns/driver)")" = oxdax_pmem ]
