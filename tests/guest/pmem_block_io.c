// SPDX-License-Identifier: GPL-2.0
/*
 * An oxpmem disk as a block device: geometry, data integrity over the whole
 * device (direct and buffered, aligned and not, the last sector), requests
 * out of range, flushes, and bad blocks failing reads until overwritten.
 *
 * OXDAX_TEST_DISK (default oxpmem0) and OXDAX_TEST_NAMESPACE (default
 * namespace0.0) choose the disk, so host-driven tests can run it on other
 * namespaces (an unaligned legacy region, for one).
 */
#include <linux/fs.h>
#include <poll.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include "kselftest_harness.h"
#include "oxdax_test.h"

#define CHUNK (1 << 20)
#define MIB2 (2ull << 20)

static char DISK[64], SYSFS[64], NAMESPACE[96];

static void __attribute__((constructor)) choose_disk(void)
{
	const char *disk = getenv("OXDAX_TEST_DISK");
	const char *ns = getenv("OXDAX_TEST_NAMESPACE");

	snprintf(DISK, sizeof(DISK), "/dev/%s", disk ? disk : "oxpmem0");
	snprintf(SYSFS, sizeof(SYSFS), "/sys/block/%s", disk ? disk : "oxpmem0");
	snprintf(NAMESPACE, sizeof(NAMESPACE), "/sys/bus/nd/devices/%s",
		 ns ? ns : "namespace0.0");
}

static const char *path(const char *base, const char *file)
{
	static char buf[4][160];
	static int next;
	char *out = buf[next++ % 4];

	snprintf(out, sizeof(buf[0]), "%s/%s", base, file);
	return out;
}

static void fill(void *buf, size_t len, uint64_t offset, uint64_t seed)
{
	uint64_t *words = buf;

	for (size_t i = 0; i < len / 8; i++)
		words[i] = oxdax_pattern(offset + i * 8, seed);
}

static uint64_t sysfs_u64(const char *path)
{
	char buf[64];

	if (read_text(path, buf, sizeof(buf)))
		return UINT64_MAX;
	return strtoull(buf, NULL, 0);
}

/* Empties the page cache so buffered reads reach the device again. */
static void drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);

	if (fd >= 0) {
		if (write(fd, "3\n", 2) < 0)
			perror("drop_caches");
		close(fd);
	}
}

FIXTURE(disk) {
	int fd;		/* O_DIRECT */
	uint64_t size;
	void *buf;
};

FIXTURE_SETUP(disk)
{
	if (!oxdax_loaded())
		ASSERT_EQ(0, oxdax_load(""));
	self->fd = open(DISK, O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->fd) TH_LOG("open %s: %s", DISK, strerror(errno));
	ASSERT_EQ(0, ioctl(self->fd, BLKGETSIZE64, &self->size));
	ASSERT_EQ(0, posix_memalign(&self->buf, 4096, CHUNK));
}

FIXTURE_TEARDOWN(disk)
{
	free(self->buf);
	close(self->fd);
}

TEST_F(disk, geometry)
{
	int lbs = 0;
	unsigned int pbs = 0;

	/* The disk is the largest 2 MiB-aligned part of the namespace. */
	uint64_t start = sysfs_u64(path(NAMESPACE, "resource"));
	uint64_t end = start + sysfs_u64(path(NAMESPACE, "size"));
	uint64_t data_start = (start + MIB2 - 1) / MIB2 * MIB2;

	EXPECT_EQ(end / MIB2 * MIB2 - data_start, self->size);
	EXPECT_EQ(self->size / 512, sysfs_u64(path(SYSFS, "size")));
	ASSERT_EQ(0, ioctl(self->fd, BLKSSZGET, &lbs));
	EXPECT_EQ(512, lbs);
	ASSERT_EQ(0, ioctl(self->fd, BLKPBSZGET, &pbs));
	EXPECT_EQ(4096, pbs);
	EXPECT_EQ(1, sysfs_u64(path(SYSFS, "queue/dax")));
	EXPECT_EQ(0, sysfs_u64(path(SYSFS, "ro")));
}

TEST_F(disk, dax_write_cache_attribute)
{
	const char *attr = path(SYSFS, "dax/write_cache");
	uint64_t before = sysfs_u64(attr);

	ASSERT_TRUE(before == 0 || before == 1);
	ASSERT_EQ(0, write_text(attr, before ? "0" : "1"));
	EXPECT_EQ(!before, sysfs_u64(attr));
	ASSERT_EQ(0, write_text(attr, before ? "1" : "0"));
	EXPECT_EQ(before, sysfs_u64(attr));
	EXPECT_EQ(-EINVAL, write_text(attr, "maybe"));
}

TEST_F(disk, whole_device_pattern)
{
	uint64_t seed = 0x0123456789abcdefull ^ (uint64_t)getpid();

	for (uint64_t off = 0; off < self->size; off += CHUNK) {
		fill(self->buf, CHUNK, off, seed);
		ASSERT_EQ(CHUNK, pwrite(self->fd, self->buf, CHUNK, off));
	}
	ASSERT_EQ(0, fsync(self->fd));
	for (uint64_t off = 0; off < self->size; off += CHUNK) {
		uint64_t *words = self->buf;

		memset(self->buf, 0, CHUNK);
		ASSERT_EQ(CHUNK, pread(self->fd, self->buf, CHUNK, off));
		for (size_t i = 0; i < CHUNK / 8; i++) {
			if (words[i] != oxdax_pattern(off + i * 8, seed)) {
				TH_LOG("mismatch at byte %llu", (unsigned long long)(off + i * 8));
				ASSERT_EQ(oxdax_pattern(off + i * 8, seed), words[i]);
			}
		}
	}
}

TEST_F(disk, unaligned_buffered_ranges)
{
	/* Odd offsets and lengths, across page and 2 MiB boundaries. */
	static const struct { uint64_t off; size_t len; } ranges[] = {
		{ 1, 1 }, { 511, 2 }, { 1000, 3000 }, { 4095, 4098 },
		{ (2 << 20) - 77, 155 }, { (6 << 20) + 4093, 70001 },
	};
	int fd = open(DISK, O_RDWR);
	char *want = malloc(1 << 17), *got = malloc(1 << 17);

	ASSERT_LE(0, fd);
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		uint64_t off = ranges[i].off;
		size_t len = ranges[i].len;

		for (size_t j = 0; j < len; j++)
			want[j] = (char)(off + j + i * 7);
		ASSERT_EQ((ssize_t)len, pwrite(fd, want, len, off));
	}
	ASSERT_EQ(0, fsync(fd));
	drop_caches();
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		uint64_t off = ranges[i].off;
		size_t len = ranges[i].len;

		for (size_t j = 0; j < len; j++)
			want[j] = (char)(off + j + i * 7);
		ASSERT_EQ((ssize_t)len, pread(fd, got, len, off));
		EXPECT_EQ(0, memcmp(want, got, len)) TH_LOG("range %zu", i);
	}
	free(want);
	free(got);
	close(fd);
}

TEST_F(disk, last_sector_and_beyond)
{
	uint64_t last = self->size - 512;
	char *buf = self->buf;

	memset(buf, 0xa5, 512);
	ASSERT_EQ(512, pwrite(self->fd, buf, 512, last));
	memset(buf, 0, 512);
	ASSERT_EQ(512, pread(self->fd, buf, 512, last));
	EXPECT_EQ((char)0xa5, buf[0]);
	EXPECT_EQ((char)0xa5, buf[511]);
	/* A transfer that starts inside and runs past the end is cut short. */
	EXPECT_EQ(512, pread(self->fd, buf, 4096, last));
	/* At the end: nothing to read, no room to write. */
	EXPECT_EQ(0, pread(self->fd, buf, 512, self->size));
	EXPECT_EQ(-1, pwrite(self->fd, buf, 512, self->size));
	EXPECT_EQ(ENOSPC, errno);
	/* Direct I/O must be sector aligned. */
	EXPECT_EQ(-1, pread(self->fd, buf, 512, 100));
	EXPECT_EQ(EINVAL, errno);
}

TEST_F(disk, synchronous_writes_and_flush)
{
	int fd = open(DISK, O_RDWR | O_DIRECT | O_SYNC);

	ASSERT_LE(0, fd);
	fill(self->buf, 65536, 0, 42);
	/* O_SYNC direct writes carry REQ_FUA. */
	ASSERT_EQ(65536, pwrite(fd, self->buf, 65536, 8 << 20));
	ASSERT_EQ(0, fdatasync(fd));	/* an empty REQ_PREFLUSH bio */
	memset(self->buf, 0, 65536);
	ASSERT_EQ(65536, pread(fd, self->buf, 65536, 8 << 20));
	EXPECT_EQ(oxdax_pattern(8, 42), ((uint64_t *)self->buf)[1]);
	close(fd);
}

static int set_badblocks(const char *spec)
{
	return write_text(path(SYSFS, "badblocks"), spec);
}

TEST_F(disk, bad_blocks_fail_reads_until_overwritten)
{
	char list[256];
	uint64_t bad = 4096;	/* sector */

	ASSERT_EQ(0, set_badblocks("4096 8"));
	ASSERT_EQ(0, read_text(path(SYSFS, "badblocks"), list, sizeof(list)));
	EXPECT_STREQ("4096 8\n", list);

	/* Reads touching the bad sectors fail; their neighbours do not. */
	EXPECT_EQ(-1, pread(self->fd, self->buf, 512, bad * 512));
	EXPECT_EQ(EIO, errno);
	EXPECT_EQ(-1, pread(self->fd, self->buf, 8192, (bad - 4) * 512));
	EXPECT_EQ(EIO, errno);
	EXPECT_EQ(4096, pread(self->fd, self->buf, 4096, (bad - 8) * 512));
	EXPECT_EQ(4096, pread(self->fd, self->buf, 4096, (bad + 8) * 512));

	/* Overwriting clears the poison and the list, and pollers hear of it. */
	int watch = open(path(SYSFS, "badblocks"), O_RDONLY);
	struct pollfd pfd = { .fd = watch, .events = POLLPRI };

	ASSERT_LE(0, watch);
	ASSERT_LT(0, read(watch, list, sizeof(list)));
	EXPECT_EQ(0, poll(&pfd, 1, 0));	/* nothing changed since the read */
	fill(self->buf, 4096, bad * 512, 7);
	ASSERT_EQ(4096, pwrite(self->fd, self->buf, 4096, bad * 512));
	ASSERT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_TRUE(pfd.revents & POLLPRI);
	close(watch);
	ASSERT_EQ(0, read_text(path(SYSFS, "badblocks"), list, sizeof(list)));
	EXPECT_STREQ("", list);
	memset(self->buf, 0, 4096);
	ASSERT_EQ(4096, pread(self->fd, self->buf, 4096, bad * 512));
	EXPECT_EQ(oxdax_pattern(bad * 512 + 8, 7), ((uint64_t *)self->buf)[1]);
}

TEST_HARNESS_MAIN
