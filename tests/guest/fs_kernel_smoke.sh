#!/bin/sh
# The oxdax filesystem's kernel side on an oxpmem device: mount with DAX
# shown in /proc/mounts, statfs, file data (written, read back, holes,
# truncation, O_DIRECT), namespace operations (mkdir, readdir, rename,
# link, unlink, rmdir), persistence across remount and read-only remount,
# and refused mounts (unknown option, dax=never, no filesystem, a device
# without DAX, a filesystem larger than the device, an unknown
# incompatible feature): each refused with its errno and exactly one oxdax line in
# the kernel log.
set -eu
disk=${OXDAX_TEST_DISK:-/dev/oxpmem0}
mnt=/mnt/oxfs
lsmod | grep -q '^oxdax ' || insmod /oxdax/oxdax.ko
mkdir -p $mnt
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
fail() { echo "not ok $((n + 1)) - $*"; exit 1; }

# Runs a mount that must fail: MOUNT-ARGS... ; checks the errno text and
# that the kernel logged exactly one line naming oxdax.
refused() { # ERRNO-TEXT DESCRIPTION MOUNT-ARGS...
	want=$1 what=$2
	shift 2
	before=$(dmesg | wc -l)
	if mount "$@" 2>/tmp/mount.err; then
		umount $mnt
		fail "$what: mounted"
	fi
	grep -q "$want" /tmp/mount.err || { cat /tmp/mount.err; fail "$what: not '$want'"; }
	lines=$(dmesg | tail -n +$((before + 1)) | grep -c oxdax || true)
	[ "$lines" = 1 ] || { dmesg | tail -n +$((before + 1)); fail "$what: $lines oxdax lines"; }
	ok "$what: refused ($want), one log line: $(dmesg | tail -n +$((before + 1)) | grep oxdax)"
}

# Refused mounts first: they need no working filesystem.
mkfs.oxdax -f -L smoke $disk > /dev/null
refused "Invalid argument" "unknown option" -t oxdax -o bogus $disk $mnt
refused "Invalid argument" "dax=never" -t oxdax -o dax=never $disk $mnt

if losetup -f > /dev/null 2>&1; then
	truncate -s 64M /tmp/loop.img
	loop=$(losetup -f)
	losetup $loop /tmp/loop.img
	refused "Invalid argument" "non-DAX device" -t oxdax $loop $mnt
	losetup -d $loop
	rm /tmp/loop.img
else
	echo "ok $((n + 1)) - non-DAX device # SKIP no loop device"
	n=$((n + 1))
fi
# Both superblocks (blocks 0 and 1) zeroed: no filesystem.
dd if=/dev/zero of=$disk bs=4096 count=2 2>/dev/null
refused "Invalid argument" "no filesystem" -t oxdax $disk $mnt
# A filesystem larger than the device: made on a 2 GiB image, its start
# (every block mkfs wrote) copied to the 1 GiB device.
truncate -s 2G /tmp/big.img
mkfs.oxdax -f /tmp/big.img > /dev/null
dd if=/tmp/big.img of=$disk bs=1M count=16 oflag=direct 2>/dev/null
rm /tmp/big.img
refused "Invalid argument" "filesystem larger than the device" -t oxdax $disk $mnt
# An incompatible feature this code does not know (bit 63), in both
# superblocks with their checksums right.
mkfs.oxdax -f $disk > /dev/null
fs_fuzz sbset $disk 0x20 0x8000000000000003
refused "Invalid argument" "unknown incompatible feature" -t oxdax $disk $mnt

mkfs.oxdax -f -L smoke $disk > /dev/null
mount -t oxdax $disk $mnt
grep -q "^$disk $mnt oxdax .*dax" /proc/mounts || { grep $disk /proc/mounts; fail "dax not shown"; }
ok "mounted, /proc/mounts: $(grep "^$disk" /proc/mounts)"

set -- $(stat -f -c '%S %b %f %c %d' $mnt)
[ "$1" = 4096 ] && [ "$2" -gt 0 ] && [ "$3" -gt 0 ] && [ "$3" -le "$2" ] && [ "$4" -ge "$5" ] ||
	fail "statfs: bsize $1 blocks $2 free $3 files $4 ffree $5"
ok "statfs: bsize $1, $3 of $2 blocks free"

# Data: a small file, a large one (2 MiB allocations), a hole, an append.
echo hello > $mnt/small
[ "$(cat $mnt/small)" = hello ] || fail "small file"
dd if=/dev/urandom of=/tmp/pattern bs=1000 count=3333 2>/dev/null
cp /tmp/pattern $mnt/big
cmp /tmp/pattern $mnt/big || fail "big file differs"
[ "$(stat -c %s $mnt/big)" = 3333000 ] || fail "big file size"
dd if=/tmp/pattern of=$mnt/sparse bs=4096 count=1 seek=100 2>/dev/null
[ "$(stat -c %s $mnt/sparse)" = $((101 * 4096)) ] || fail "sparse size"
[ "$(dd if=$mnt/sparse bs=4096 count=100 2>/dev/null | tr -d '\0' | wc -c)" = 0 ] || fail "hole not zero"
echo more >> $mnt/small
[ "$(cat $mnt/small)" = "$(printf 'hello\nmore')" ] || fail "append"
truncate -s 3 $mnt/small
[ "$(cat $mnt/small)" = hel ] || fail "truncate down"
truncate -s 8192 $mnt/small
[ "$(stat -c %s $mnt/small)" = 8192 ] || fail "truncate up"
if dd if=/tmp/pattern of=$mnt/direct bs=4096 count=4 oflag=direct 2>/tmp/dd.err; then
	dd if=$mnt/direct of=/tmp/direct bs=4096 count=4 iflag=direct 2>/dev/null
	[ "$(head -c 16384 /tmp/pattern | md5sum | cut -d' ' -f1)" = "$(md5sum < /tmp/direct | cut -d' ' -f1)" ] ||
		fail "O_DIRECT data"
	ok "O_DIRECT write and read"
fi
ok "file data: write, read, hole, append, truncate"

# Namespace.
mkdir $mnt/d
touch $mnt/d/a $mnt/d/b
mkdir $mnt/d/sub
[ "$(ls $mnt/d | tr '\n' ' ')" = "a b sub " ] || fail "readdir: $(ls $mnt/d)"
[ "$(stat -c %h $mnt/d)" = 3 ] || fail "dir nlink $(stat -c %h $mnt/d)"
mv $mnt/d/a $mnt/d/c
mv $mnt/d/c $mnt/d/sub/c
ln $mnt/big $mnt/d/biglink
[ "$(stat -c %h $mnt/big)" = 2 ] || fail "link count"
rm $mnt/d/b
if rmdir $mnt/d/sub 2>/dev/null; then fail "rmdir of a non-empty directory"; fi
rm $mnt/d/sub/c
rmdir $mnt/d/sub
[ "$(ls $mnt/d | tr '\n' ' ')" = "biglink " ] || fail "after removals: $(ls $mnt/d)"
mknod $mnt/fifo p
[ -p $mnt/fifo ] || fail "mknod fifo"
many=0
while [ $many -lt 300 ]; do : > $mnt/d/file-$many; many=$((many + 1)); done
[ "$(ls $mnt/d | wc -l)" = 301 ] || fail "300 entries: $(ls $mnt/d | wc -l)"
ok "namespace: mkdir, readdir (301 entries), rename, link, unlink, rmdir, mknod"

umount $mnt
mount -t oxdax -o dax $disk $mnt
cmp /tmp/pattern $mnt/d/biglink || fail "data after remount"
[ "$(ls $mnt/d | wc -l)" = 301 ] || fail "entries after remount"
ok "data and names persist across umount/mount"

mount -o remount,ro $mnt
if touch $mnt/ro 2>/dev/null; then fail "write on a read-only remount"; fi
mount -o remount,rw $mnt
touch $mnt/rw
ok "remount read-only and back"
rm -r $mnt/d

# Unmount with a file open behaves as on ext4: EBUSY; a lazy unmount
# detaches the mount and the open file stays usable until closed.
echo open-file > $mnt/held
exec 3< $mnt/held
if umount $mnt 2>/dev/null; then fail "umount with an open file"; fi
umount -l $mnt
grep -q " $mnt " /proc/mounts && fail "still mounted after umount -l"
[ "$(cat <&3)" = open-file ] || fail "read after a lazy unmount"
exec 3<&-
mount -t oxdax $disk $mnt
[ "$(cat $mnt/held)" = open-file ] || fail "file after a lazy unmount"
rm $mnt/held
ok "umount with an open file: EBUSY; lazy unmount, then mounted again"
umount $mnt
fsck.oxdax -n $disk > /dev/null || fail "fsck after the smoke test"
ok "umount, fsck clean"

echo "1..$n"
