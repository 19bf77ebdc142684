#!/bin/sh
# Load and unload oxdax 20 times: every cycle logs one load and one unload
# line, leaves no trace in /proc/modules or sysfs, and kmemleak finds nothing
# new afterwards.
set -eu
cycles=20
kmemleak=/sys/kernel/debug/kmemleak

lsmod | grep -q '^oxdax ' && rmmod oxdax
[ -w $kmemleak ] && echo clear > $kmemleak
# Never clear the log (the runner checks it per test): count from here on.
log_start=$(dmesg | wc -l)
new_log() { dmesg | tail -n +$((log_start + 1)); }

i=0
while [ $i -lt $cycles ]; do
	insmod /oxdax/oxdax.ko
	grep -q '^oxdax ' /proc/modules
	[ "$(cat /sys/module/oxdax/initstate)" = live ]
	[ "$(cat /sys/module/oxdax/refcnt)" = 0 ]
	rmmod oxdax
	if grep -q '^oxdax ' /proc/modules || [ -e /sys/module/oxdax ]; then
		echo "cycle $i: oxdax still present after rmmod"
		exit 1
	fi
	i=$((i + 1))
done

loads=$(new_log | grep -c 'oxdax: version .* loaded')
unloads=$(new_log | grep -c 'oxdax: unloaded')
echo "# $loads loads, $unloads unloads logged"
[ "$loads" = $cycles ] && [ "$unloads" = $cycles ]

if [ -w $kmemleak ]; then
	# kmemleak ignores objects younger than 5 s.
	sleep 6
	echo scan > $kmemleak
	echo scan > $kmemleak
	if [ -s $kmemleak ]; then
		echo "kmemleak found leaks:"
		cat $kmemleak
		exit 1
	fi
	echo "# kmemleak: no new leaks"
else
	echo "kmemleak is not available in this kernel"
	exit 1
fi
