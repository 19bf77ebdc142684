/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The filesystem under test, for the fs_* guest tests.
 *
 * Every fs_* test runs against the filesystem named by OXDAX_FS:
 *
 *   oxdax (default)  mkfs.oxdax -f DISK;            mount -t oxdax DISK /mnt/fs
 *   ext4             mkfs.ext4 -F -q DISK;          mount -t ext4 -o dax DISK /mnt/fs
 *   xfs              mkfs.xfs -f -q -m reflink=1 DISK; mount -t xfs -o dax DISK /mnt/fs
 *
 * so that each test can be checked against ext4 and xfs on oxdax's own pmem
 * driver before oxdax's filesystem exists, and a later failure on oxdax is
 * oxdax's. DISK is /dev/$OXDAX_TEST_DISK (default oxpmem0). After each test
 * the filesystem is unmounted and checked (fsck.oxdax, e2fsck -fn,
 * xfs_repair -n); OXDAX_FS_FSCK=0 skips the check. On oxdax,
 * OXDAX_FAULT_ENGINE=iomap mounts with fault_engine=iomap: page faults go
 * through the kernel's dax_iomap_fault() instead of oxdax's engine, so
 * that the mmap tests compare the two. OXDAX_FS_MKFS_OPTS adds
 * options to mkfs.
 */
#ifndef OXDAX_FS_H
#define OXDAX_FS_H

#include <stdarg.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>

#include "oxdax_test.h"

#define FS_MNT "/mnt/fs"

#define KIB 1024ul
#define MIB (1024 * KIB)

/*
 * Each test formats, mounts, remounts and checks a filesystem in an
 * emulated guest with a debug kernel: the harness's 30 s per test is too
 * tight for a filesystem that is new (and slower than it will be). Included
 * after kselftest_harness.h, this changes what TEST_F() expands to.
 */
#ifdef TEST_TIMEOUT_DEFAULT
#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 120
#endif

static inline const char *fs_type(void)
{
	const char *type = getenv("OXDAX_FS");

	return type && *type ? type : "oxdax";
}

static inline bool fs_is(const char *type)
{
	return strcmp(fs_type(), type) == 0;
}

static inline const char *fs_disk(void)
{
	static char disk[64];
	const char *name = getenv("OXDAX_TEST_DISK");

	snprintf(disk, sizeof(disk), "/dev/%s", name && *name ? name : "oxpmem0");
	return disk;
}

/* Unsigned value of environment variable @name, or @def. */
static inline unsigned long fs_env_ulong(const char *name, unsigned long def)
{
	const char *v = getenv(name);

	return v && *v ? strtoul(v, NULL, 0) : def;
}

/* Runs a shell command line; returns its exit status, or -1. */
static inline int __attribute__((format(printf, 1, 2))) fs_sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	int status;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	fflush(NULL);
	status = system(cmd);
	if (status == -1 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/*
 * Formats the first @bytes of the test disk (0: all of it); returns mkfs's
 * exit status (0: success). OXDAX_FS_MKFS_OPTS adds options (e.g. "-N
 * 120000" for ext4's inode count). A sized ext4 gets 4 KiB blocks (below
 * 512 MiB mke2fs would choose 1 KiB, which DAX cannot mount).
 */
static inline int fs_mkfs_size(uint64_t bytes)
{
	const char *extra = getenv("OXDAX_FS_MKFS_OPTS");
	char size[48] = "";

	if (!extra)
		extra = "";
	if (fs_is("oxdax")) {
		if (bytes)
			snprintf(size, sizeof(size), "%llu", (unsigned long long)bytes);
		return fs_sh("mkfs.oxdax -f %s %s %s >/tmp/mkfs.out 2>&1 || { cat /tmp/mkfs.out; exit 1; }",
			     extra, fs_disk(), size);
	}
	if (fs_is("ext4")) {
		if (bytes)
			snprintf(size, sizeof(size), "%lluk", (unsigned long long)bytes >> 10);
		return fs_sh("mkfs.ext4 -F -q %s %s %s %s", bytes ? "-b 4096" : "", extra, fs_disk(),
			     size);
	}
	if (fs_is("xfs")) {
		if (bytes)
			snprintf(size, sizeof(size), "-d size=%llu", (unsigned long long)bytes);
		return fs_sh("mkfs.xfs -f -q -m reflink=1 %s %s %s", size, extra, fs_disk());
	}
	fprintf(stderr, "# OXDAX_FS=%s: unknown filesystem (oxdax, ext4 or xfs)\n", fs_type());
	return -1;
}

/* Formats the whole test disk; returns mkfs's exit status (0: success). */
static inline int fs_mkfs(void)
{
	return fs_mkfs_size(0);
}

/* Mounts the test disk on FS_MNT; returns 0 or -errno. */
static inline int fs_mount(void)
{
	const char *engine = getenv("OXDAX_FAULT_ENGINE");
	char engine_opt[64];
	const char *opts = fs_is("oxdax") ? NULL : "dax";

	if (fs_is("oxdax") && engine && *engine) {
		snprintf(engine_opt, sizeof(engine_opt), "fault_engine=%s", engine);
		opts = engine_opt;
	}

	if (mount(fs_disk(), FS_MNT, fs_type(), 0, opts))
		return -errno;
	return 0;
}

/*
 * Unmounts FS_MNT; returns 0 or -errno. Retries a busy unmount for a while
 * (a process the test forked may still be exiting).
 */
static inline int fs_umount(void)
{
	for (int i = 0; i < 100; i++) {
		if (umount2(FS_MNT, 0) == 0)
			return 0;
		if (errno != EBUSY)
			return -errno;
		usleep(50000);
	}
	return -EBUSY;
}

static inline int fs_remount(void)
{
	int ret = fs_umount();

	return ret ? ret : fs_mount();
}

/*
 * Free blocks of the mounted filesystem once freeing has settled: xfs frees
 * unlinked inodes in the background, so statfs is polled (after sync) for
 * up to 5 s until it shows at least @want.
 */
static inline uint64_t fs_free_blocks(uint64_t want)
{
	struct statfs s = { 0 };

	for (int i = 0; i < 50; i++) {
		sync();
		if (statfs(FS_MNT, &s))
			return 0;
		if (s.f_bfree >= want)
			break;
		usleep(100000);
	}
	return s.f_bfree;
}

/* Checks the unmounted test disk; returns the checker's exit status. */
static inline int fs_fsck(void)
{
	if (!fs_env_ulong("OXDAX_FS_FSCK", 1))
		return 0;
	if (fs_is("oxdax"))
		return fs_sh("fsck.oxdax %s", fs_disk());
	if (fs_is("ext4"))
		return fs_sh("e2fsck -fn %s >/tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; exit 1; }",
			     fs_disk());
	return fs_sh("xfs_repair -n %s >/tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; exit 1; }",
		     fs_disk());
}

static inline bool fs_mounted(void)
{
	struct stat mnt, parent;

	if (stat(FS_MNT, &mnt) || stat(FS_MNT "/..", &parent))
		return false;
	return mnt.st_dev != parent.st_dev;
}

/*
 * Loads oxdax if needed, unmounts what an earlier (killed) test may have
 * left, formats the first @bytes of the disk (0: all of it) and mounts it.
 * Returns 0, or -1 after printing why.
 */
static inline int fs_begin_size(uint64_t bytes)
{
	int ret;

	if (!oxdax_loaded() && (ret = oxdax_load(""))) {
		fprintf(stderr, "# loading oxdax: %s\n", strerror(-ret));
		return -1;
	}
	mkdir(FS_MNT, 0755);
	while (fs_mounted())
		if (umount2(FS_MNT, MNT_DETACH))
			break;
	if (access(fs_disk(), F_OK)) {
		fprintf(stderr, "# %s: %s\n", fs_disk(), strerror(errno));
		return -1;
	}
	if (fs_mkfs_size(bytes)) {
		fprintf(stderr, "# mkfs (%s) on %s failed\n", fs_type(), fs_disk());
		return -1;
	}
	ret = fs_mount();
	if (ret) {
		fprintf(stderr, "# mount -t %s %s %s: %s\n", fs_type(), fs_disk(), FS_MNT,
			strerror(-ret));
		return -1;
	}
	fprintf(stderr, "# %s on %s\n", fs_type(), fs_disk());
	return 0;
}

/* fs_begin_size() of the whole disk. */
static inline int fs_begin(void)
{
	return fs_begin_size(0);
}

/*
 * Ends a test: closes every descriptor the test left open (an ASSERT may
 * have jumped past its close()), unmounts and checks the filesystem.
 * Returns 0, or -1 after printing why.
 */
static inline int fs_end(void)
{
	int ret;

	syscall(SYS_close_range, 3, ~0u, 0);
	if (!fs_mounted())
		return 0;
	ret = fs_umount();
	if (ret) {
		fprintf(stderr, "# umount %s: %s; detaching\n", FS_MNT, strerror(-ret));
		umount2(FS_MNT, MNT_DETACH);
		return -1;
	}
	if (fs_fsck()) {
		fprintf(stderr, "# the filesystem does not check clean after the test\n");
		return -1;
	}
	return 0;
}

/* Path under the mount point (four rotating buffers). */
static inline const char *fs_path(const char *fmt, ...)
{
	static char buf[4][4200];
	static int next;
	char *out = buf[next++ % 4];
	int n = snprintf(out, sizeof(buf[0]), "%s/", FS_MNT);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out + n, sizeof(buf[0]) - n, fmt, ap);
	va_end(ap);
	return out;
}

/* Creates (truncates) @path holding @len bytes of @data; returns 0 or -errno. */
static inline int fs_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = len ? write(fd, data, len) : 0;
	close(fd);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

/* Reads up to @size bytes of @path into @buf; returns the count or -errno. */
static inline ssize_t fs_read_file(const char *path, void *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, size);
	close(fd);
	return n < 0 ? -errno : n;
}

/* Byte @offset of a file holding the shared test pattern under @seed. */
static inline unsigned char fs_pattern_byte(uint64_t offset, uint64_t seed)
{
	return oxdax_pattern(offset & ~7ull, seed) >> (8 * (offset & 7));
}

/* Fills @buf with the pattern's bytes for file offsets @offset.. */
static inline void fs_fill(void *buf, size_t len, uint64_t offset, uint64_t seed)
{
	unsigned char *p = buf;
	size_t i = 0;

	for (; i < len && ((offset + i) & 7); i++)
		p[i] = fs_pattern_byte(offset + i, seed);
	for (; i + 8 <= len; i += 8) {
		uint64_t word = oxdax_pattern(offset + i, seed);

		memcpy(p + i, &word, 8);	/* little-endian: byte k is bits 8k.. */
	}
	for (; i < len; i++)
		p[i] = fs_pattern_byte(offset + i, seed);
}

/* File offset of the first byte of @buf that is not the pattern, or -1. */
static inline long long fs_check_fill(const void *buf, size_t len, uint64_t offset,
				      uint64_t seed)
{
	const unsigned char *p = buf;
	size_t i = 0;

	for (; i < len && ((offset + i) & 7); i++)
		if (p[i] != fs_pattern_byte(offset + i, seed))
			return (long long)(offset + i);
	for (; i + 8 <= len; i += 8) {
		uint64_t word;

		memcpy(&word, p + i, 8);
		if (word != oxdax_pattern(offset + i, seed))
			break;
	}
	for (; i < len; i++)
		if (p[i] != fs_pattern_byte(offset + i, seed))
			return (long long)(offset + i);
	return -1;
}

/* Writes the pattern under @seed to [@off, @off + @len) of @fd; returns
 * the bytes written (short at ENOSPC), with errno set if short. */
static inline size_t fs_write_pattern(int fd, off_t off, size_t len, uint64_t seed)
{
	static unsigned char buf[1 << 20];
	size_t done = 0;

	while (done < len) {
		size_t n = len - done < sizeof(buf) ? len - done : sizeof(buf);
		ssize_t got;

		fs_fill(buf, n, off + done, seed);
		got = pwrite(fd, buf, n, off + done);
		if (got <= 0)
			break;
		done += got;
		if ((size_t)got < n) {
			errno = 0;
			break;
		}
	}
	return done;
}

/* Creates @name (under the mount) holding @size bytes of the pattern under
 * @seed, fsynced; returns it open read-write, or -1. */
static inline int fs_make_pattern_file(const char *name, size_t size, uint64_t seed)
{
	int fd = open(fs_path("%s", name), O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return -1;
	if (fs_write_pattern(fd, 0, size, seed) != size || fsync(fd)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* First offset in [@off, @off + @len) of @fd whose byte is not the pattern
 * under @seed for file offset (that offset - @delta), or -1; a short read
 * gives the offset where it stopped. */
static inline long long fs_check_pattern_at(int fd, off_t off, size_t len, uint64_t seed,
					    off_t delta)
{
	static unsigned char buf[1 << 20];

	for (size_t done = 0; done < len;) {
		size_t n = len - done < sizeof(buf) ? len - done : sizeof(buf);
		ssize_t got = pread(fd, buf, n, off + done);
		long long bad;

		if (got != (ssize_t)n)
			return off + done + (got > 0 ? got : 0);
		bad = fs_check_fill(buf, n, off + done - delta, seed);
		if (bad >= 0)
			return bad + delta;
		done += n;
	}
	return -1;
}

/* The pattern check of [@off, @off + @len) at its own offsets. */
static inline long long fs_check_pattern(int fd, off_t off, size_t len, uint64_t seed)
{
	return fs_check_pattern_at(fd, off, len, seed, 0);
}

/* The size of open file @fd, -1 on error. */
static inline off_t fs_size_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : st.st_size;
}

static inline bool fs_all_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* Sleeps long enough for the coarse file-time clock to tick (6.12 has no
 * multigrain timestamps: back-to-back changes may share a ctime). */
static inline void fs_tick(void)
{
	usleep(30000);
}

static inline int ts_cmp(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec)
		return a.tv_sec < b.tv_sec ? -1 : 1;
	if (a.tv_nsec != b.tv_nsec)
		return a.tv_nsec < b.tv_nsec ? -1 : 1;
	return 0;
}

#endif /* OXDAX_FS_H */
