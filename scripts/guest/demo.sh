#!/bin/sh
# What oxdax does so far, shown in the guest (run by scripts/demo).
set -e
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "guest kernel"
uname -r
step "emulated NVDIMM namespaces (libnvdimm)"
for d in /sys/bus/nd/devices/namespace*; do
	printf '%s: size %s bytes, driver %s\n' "${d##*/}" "$(cat "$d/size")" \
		"$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null || echo none)"
done
step "insmod oxdax.ko"
insmod /oxdax/oxdax.ko
dmesg | grep 'oxdax:' | tail -n 1
echo "fault_engine = $(cat /sys/module/oxdax/parameters/fault_engine)"
modinfo /oxdax/oxdax.ko | grep -E '^(version|description|parm|vermagic):'
step "rmmod oxdax"
rmmod oxdax
dmesg | grep 'oxdax:' | tail -n 1
