#!/bin/bash
# Legacy e820 pmem regions (memmap=), a provider other than NFIT. An aligned
# one becomes an oxpmem disk that passes the whole block I/O suite and
# carries ext4-dax with MAP_SYNC. A misaligned one is refused by libnvdimm
# with one line and EOPNOTSUPP, and nothing else is disturbed.
. "$(dirname "$0")/common.bash"
expect_status 0 "$VM" --mem 3G --append "memmap=64M!1024M memmap=63M!1153M" -- "set -e
	insmod /oxdax/oxdax.ko
	aligned= misaligned=
	for ns in /sys/bus/nd/devices/namespace*; do
		case \$(cat \$ns/resource) in
		0x40000000) aligned=\${ns##*/} ;;
		0x48100000) misaligned=\${ns##*/} ;;
		esac
	done
	test -n \"\$aligned\" && test -n \"\$misaligned\"
	disk=\$(ls /sys/bus/nd/devices/\$aligned/block)
	dmesg | grep -q \"\$disk: 64 MiB at 0x40000000\"
	test ! -e /sys/bus/nd/devices/\$misaligned/driver
	dmesg | grep -q \"oxdax_pmem \$misaligned: .*misaligned, unable to map\"
	if echo \$misaligned > /sys/bus/nd/drivers/oxdax_pmem/bind 2>/dev/null; then exit 1; fi
	OXDAX_TEST_DISK=\$disk OXDAX_TEST_NAMESPACE=\$aligned /oxdax/tests/guest/pmem_block_io
	mkfs.ext4 -q -F -b 4096 /dev/\$disk
	mkdir -p /mnt/l
	mount -o dax /dev/\$disk /mnt/l
	dax_mmap write /mnt/l/data 8388608 99 sync
	umount /mnt/l
	mount -o dax /dev/\$disk /mnt/l
	dax_mmap verify /mnt/l/data 8388608 99
	umount /mnt/l"
