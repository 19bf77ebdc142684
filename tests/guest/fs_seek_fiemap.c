// SPDX-License-Identifier: GPL-2.0
/*
 * Where a file's data is: lseek SEEK_DATA/SEEK_HOLE on sparse files, FIEMAP
 * extents (checked against the disk itself at the physical offsets they
 * report), fallocate (default mode, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE).
 *
 * oxdax promises 2 MiB-aligned physical extents for requests of 2 MiB or
 * more (Documentation/oxdax/format.rst), which is what PMD mappings need;
 * that assertion is oxdax-only: xfs does not align (a 1 GiB xfs gave no PMD
 * mappings at all), ext4 happens to. For ext4 and xfs it is only logged.
 *
 * OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h).
 */
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include "kselftest_harness.h"
#include "oxdax_fs.h"

#define MAX_EXTENTS 256

struct extents {
	struct fiemap map;
	struct fiemap_extent ext[MAX_EXTENTS];
};

/* FIEMAP of the whole file (synced); returns the extent count or -errno. */
static int fiemap(int fd, struct extents *e)
{
	memset(e, 0, sizeof(*e));
	e->map.fm_start = 0;
	e->map.fm_length = FIEMAP_MAX_OFFSET;
	e->map.fm_flags = FIEMAP_FLAG_SYNC;
	e->map.fm_extent_count = MAX_EXTENTS;
	if (ioctl(fd, FS_IOC_FIEMAP, &e->map))
		return -errno;
	return e->map.fm_mapped_extents;
}

static void log_extents(const struct extents *e)
{
	for (unsigned int i = 0; i < e->map.fm_mapped_extents; i++)
		fprintf(stderr, "#   extent %u: logical %#llx physical %#llx length %#llx flags %#x\n",
			i, (unsigned long long)e->ext[i].fe_logical,
			(unsigned long long)e->ext[i].fe_physical,
			(unsigned long long)e->ext[i].fe_length, e->ext[i].fe_flags);
}

/* Bytes of [@start, @end) that the extents cover. */
static uint64_t covered(const struct extents *e, uint64_t start, uint64_t end)
{
	uint64_t sum = 0;

	for (unsigned int i = 0; i < e->map.fm_mapped_extents; i++) {
		uint64_t s = e->ext[i].fe_logical, t = s + e->ext[i].fe_length;

		s = s > start ? s : start;
		t = t < end ? t : end;
		if (t > s)
			sum += t - s;
	}
	return sum;
}

static int err_of(long ret)
{
	return ret < 0 ? errno : 0;
}

static bool reads_zero(int fd, off_t off, size_t len)
{
	static unsigned char buf[1 << 20];

	while (len) {
		size_t n = len < sizeof(buf) ? len : sizeof(buf);

		if (pread(fd, buf, n, off) != (ssize_t)n || !fs_all_zero(buf, n))
			return false;
		off += n;
		len -= n;
	}
	return true;
}

static blkcnt_t blocks_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : st.st_blocks;
}

FIXTURE(fs) {
};

FIXTURE_SETUP(fs)
{
	ASSERT_EQ(0, fs_begin());
}

FIXTURE_TEARDOWN(fs)
{
	EXPECT_EQ(0, fs_end());
}

TEST_F(fs, seek_data_hole)
{
	const off_t size = 4 * MIB;
	int fd = open(fs_path("sparse"), O_RDWR | O_CREAT, 0644);

	ASSERT_LE(0, fd);
	/* Empty file: no data, no hole. */
	EXPECT_EQ(ENXIO, err_of(lseek(fd, 0, SEEK_DATA)));
	EXPECT_EQ(ENXIO, err_of(lseek(fd, 0, SEEK_HOLE)));

	/* data [0, 4K), hole, data [1M, 1M+8K), hole, data [3M, 3M+4K), hole to 4M */
	ASSERT_EQ(4 * KIB, fs_write_pattern(fd, 0, 4 * KIB, 1));
	ASSERT_EQ(8 * KIB, fs_write_pattern(fd, 1 * MIB, 8 * KIB, 1));
	ASSERT_EQ(4 * KIB, fs_write_pattern(fd, 3 * MIB, 4 * KIB, 1));
	ASSERT_EQ(0, ftruncate(fd, size));

	for (int round = 0; round < 2; round++) {
		EXPECT_EQ(0, lseek(fd, 0, SEEK_DATA));
		EXPECT_EQ(4 * KIB, lseek(fd, 0, SEEK_HOLE));
		EXPECT_EQ(4 * KIB - 1, lseek(fd, 4 * KIB - 1, SEEK_DATA));
		EXPECT_EQ(4 * KIB, lseek(fd, 100, SEEK_HOLE));
		EXPECT_EQ(1 * MIB, lseek(fd, 4 * KIB, SEEK_DATA));
		EXPECT_EQ(1 * MIB, lseek(fd, 5000, SEEK_DATA));
		EXPECT_EQ(5000, lseek(fd, 5000, SEEK_HOLE));	/* already in a hole */
		EXPECT_EQ(1 * MIB + 8 * KIB, lseek(fd, 1 * MIB, SEEK_HOLE));
		EXPECT_EQ(1 * MIB + 5, lseek(fd, 1 * MIB + 5, SEEK_DATA));
		EXPECT_EQ(3 * MIB, lseek(fd, 1 * MIB + 8 * KIB, SEEK_DATA));
		EXPECT_EQ(3 * MIB + 4 * KIB, lseek(fd, 3 * MIB, SEEK_HOLE));
		/* Only a hole to EOF: no more data; the hole at EOF counts. */
		EXPECT_EQ(ENXIO, err_of(lseek(fd, 3 * MIB + 4 * KIB, SEEK_DATA)));
		EXPECT_EQ(3 * MIB + 8 * KIB, lseek(fd, 3 * MIB + 8 * KIB, SEEK_HOLE));
		/* At or past EOF: ENXIO. */
		EXPECT_EQ(ENXIO, err_of(lseek(fd, size, SEEK_DATA)));
		EXPECT_EQ(ENXIO, err_of(lseek(fd, size, SEEK_HOLE)));
		EXPECT_EQ(ENXIO, err_of(lseek(fd, size + 4096, SEEK_HOLE)));
		/* Negative: ENXIO too, as iomap (ext4, xfs) answers. */
		EXPECT_EQ(ENXIO, err_of(lseek(fd, -1, SEEK_DATA)));
		if (round == 0) {
			close(fd);
			ASSERT_EQ(0, fs_remount());
			fd = open(fs_path("sparse"), O_RDONLY);
			ASSERT_LE(0, fd);
		}
	}

	/* A file that is all data: the only hole is at EOF. */
	int full = open(fs_path("full"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, full);
	ASSERT_EQ(10000, fs_write_pattern(full, 0, 10000, 2));
	EXPECT_EQ(0, lseek(full, 0, SEEK_DATA));
	EXPECT_EQ(10000, lseek(full, 0, SEEK_HOLE));
	EXPECT_EQ(9999, lseek(full, 9999, SEEK_DATA));
	close(full);
	close(fd);
}

TEST_F(fs, fiemap_matches_disk)
{
	static unsigned char file_buf[64 * KIB] __attribute__((aligned(4096)));
	static unsigned char disk_buf[64 * KIB] __attribute__((aligned(4096)));
	struct extents e;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	int disk = open(fs_disk(), O_RDONLY | O_DIRECT);	/* not the disk's page cache */
	uint64_t disk_bytes;
	int n;

	ASSERT_LE(0, fd);
	ASSERT_LE(0, disk);
	ASSERT_EQ(0, ioctl(disk, BLKGETSIZE64, &disk_bytes));
	/* Three data ranges with holes between. */
	ASSERT_EQ(64 * KIB, fs_write_pattern(fd, 0, 64 * KIB, 3));
	ASSERT_EQ(8 * KIB, fs_write_pattern(fd, 1 * MIB, 8 * KIB, 3));
	ASSERT_EQ(3 * MIB, fs_write_pattern(fd, 5 * MIB, 3 * MIB, 3));
	ASSERT_EQ(0, fsync(fd));

	n = fiemap(fd, &e);
	ASSERT_LT(0, n) TH_LOG("FIEMAP: %s", strerror(-n));
	log_extents(&e);
	EXPECT_LE(3, n);
	EXPECT_EQ(64 * KIB, covered(&e, 0, 64 * KIB));
	EXPECT_EQ(8 * KIB, covered(&e, 1 * MIB, 1 * MIB + 8 * KIB));
	EXPECT_EQ(3 * MIB, covered(&e, 5 * MIB, 8 * MIB));
	EXPECT_EQ(0, covered(&e, 64 * KIB, 1 * MIB));	/* holes are not extents */
	EXPECT_EQ(0, covered(&e, 1 * MIB + 8 * KIB, 5 * MIB));
	EXPECT_TRUE(e.ext[n - 1].fe_flags & FIEMAP_EXTENT_LAST);
	for (int i = 0; i < n; i++) {
		struct fiemap_extent *x = &e.ext[i];

		EXPECT_EQ(0, x->fe_flags & (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC |
					    FIEMAP_EXTENT_UNWRITTEN | FIEMAP_EXTENT_ENCODED));
		EXPECT_EQ(0, x->fe_physical % 4096);
		EXPECT_EQ(0, x->fe_logical % 4096);
		EXPECT_LT(0, x->fe_physical);
		EXPECT_GE(disk_bytes, x->fe_physical + x->fe_length);
		if (i)	/* sorted, not overlapping */
			EXPECT_LE(e.ext[i - 1].fe_logical + e.ext[i - 1].fe_length, x->fe_logical);
		/* The disk holds the file's bytes where FIEMAP says. */
		for (uint64_t off = 0; off < x->fe_length; off += sizeof(file_buf)) {
			size_t len = x->fe_length - off < sizeof(file_buf) ? x->fe_length - off
									  : sizeof(file_buf);

			ASSERT_EQ((ssize_t)len, pread(fd, file_buf, len, x->fe_logical + off));
			ASSERT_EQ((ssize_t)len, pread(disk, disk_buf, len, x->fe_physical + off));
			EXPECT_EQ(0, memcmp(file_buf, disk_buf, len))
				TH_LOG("extent %d: file %#llx is not at disk %#llx", i,
				       (unsigned long long)(x->fe_logical + off),
				       (unsigned long long)(x->fe_physical + off));
		}
	}
	/* No two extents share physical blocks (no reflink here). */
	for (int i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			EXPECT_TRUE(e.ext[i].fe_physical >= e.ext[j].fe_physical + e.ext[j].fe_length ||
				    e.ext[j].fe_physical >= e.ext[i].fe_physical + e.ext[i].fe_length);

	/* An empty file has no extents. */
	int empty = open(fs_path("empty"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, empty);
	EXPECT_EQ(0, fiemap(empty, &e));
	close(empty);
	close(disk);
	close(fd);
}

TEST_F(fs, fallocate_default_mode)
{
	const uint64_t len = 4 * MIB;
	struct extents e;
	struct statfs before, after;
	int fd = open(fs_path("prealloc"), O_RDWR | O_CREAT, 0644);
	int n;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, statfs(FS_MNT, &before));
	ASSERT_EQ(0, fallocate(fd, 0, 0, len)) TH_LOG("fallocate: %s", strerror(errno));
	EXPECT_EQ((off_t)len, fs_size_of(fd));
	EXPECT_LE(len, blocks_of(fd) * 512ull);
	EXPECT_TRUE(reads_zero(fd, 0, len));
	ASSERT_EQ(0, statfs(FS_MNT, &after));
	EXPECT_LE(len / 4096, before.f_bfree - after.f_bfree);

	n = fiemap(fd, &e);
	ASSERT_LT(0, n);
	log_extents(&e);
	EXPECT_EQ(len, covered(&e, 0, len));
	EXPECT_TRUE(e.ext[n - 1].fe_flags & FIEMAP_EXTENT_LAST);

	/* 2 MiB-aligned physically, so each 2 MiB of the file can be one PMD. */
	bool aligned = true;
	for (int i = 0; i < n; i++)
		if (e.ext[i].fe_physical % (2 * MIB) || e.ext[i].fe_logical % (2 * MIB))
			aligned = false;
	TH_LOG("%s: extents of a 4 MiB fallocate are %s2 MiB-aligned", fs_type(),
	       aligned ? "" : "not ");
	if (fs_is("oxdax"))
		EXPECT_TRUE(aligned);

	/* Writing into it keeps the allocation and the zeros around the write. */
	blkcnt_t blocks = blocks_of(fd);
	ASSERT_EQ(100 * KIB, fs_write_pattern(fd, 1 * MIB + 100, 100 * KIB, 4));
	EXPECT_EQ(blocks, blocks_of(fd));
	EXPECT_TRUE(reads_zero(fd, 0, 1 * MIB + 100));
	EXPECT_EQ(-1, fs_check_pattern(fd, 1 * MIB + 100, 100 * KIB, 4));
	EXPECT_TRUE(reads_zero(fd, 1 * MIB + 100 + 100 * KIB, len - 1 * MIB - 100 - 100 * KIB));
	/* Written and unwritten parts: still one allocation, all covered. */
	ASSERT_LT(0, fiemap(fd, &e));
	EXPECT_EQ(len, covered(&e, 0, len));

	/* fallocate over existing data changes nothing in it; beyond EOF extends. */
	ASSERT_EQ(0, fallocate(fd, 0, 0, len + 1 * MIB));
	EXPECT_EQ((off_t)(len + 1 * MIB), fs_size_of(fd));
	EXPECT_EQ(-1, fs_check_pattern(fd, 1 * MIB + 100, 100 * KIB, 4));
	EXPECT_TRUE(reads_zero(fd, len, 1 * MIB));
	EXPECT_EQ(EINVAL, err_of(fallocate(fd, 0, 0, 0)));
	EXPECT_EQ(EINVAL, err_of(fallocate(fd, 0, -1, 4096)));
	close(fd);

	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("prealloc"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ((off_t)(len + 1 * MIB), fs_size_of(fd));
	EXPECT_LE(blocks + 1 * MIB / 512, blocks_of(fd));
	EXPECT_GE(blocks + 1 * MIB / 512 + 64, blocks_of(fd));
	EXPECT_TRUE(reads_zero(fd, 0, 1 * MIB + 100));
	EXPECT_EQ(-1, fs_check_pattern(fd, 1 * MIB + 100, 100 * KIB, 4));
	close(fd);
}

TEST_F(fs, fallocate_keep_size)
{
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	char buf[16];

	ASSERT_LE(0, fd);
	ASSERT_EQ(4096, fs_write_pattern(fd, 0, 4096, 5));
	blkcnt_t blocks = blocks_of(fd);
	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_KEEP_SIZE, 4096, 1 * MIB));
	EXPECT_EQ(4096, fs_size_of(fd));
	EXPECT_LE(blocks + 1 * MIB / 512, blocks_of(fd));
	EXPECT_EQ(0, pread(fd, buf, sizeof(buf), 4096));	/* still EOF */
	/* Growing the size over the preallocation shows zeros. */
	ASSERT_EQ(0, ftruncate(fd, 1 * MIB));
	EXPECT_TRUE(reads_zero(fd, 4096, 1 * MIB - 4096));
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, 4096, 5));
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(1 * MIB, fs_size_of(fd));
	EXPECT_TRUE(reads_zero(fd, 4096, 1 * MIB - 4096));
	close(fd);
}

TEST_F(fs, punch_hole)
{
	const off_t size = 4 * MIB, hole = 1 * MIB + 4096, hole_len = 256 * KIB;
	struct statfs before, after;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);

	ASSERT_LE(0, fd);
	ASSERT_EQ((size_t)size, fs_write_pattern(fd, 0, size, 6));
	ASSERT_EQ(0, fsync(fd));
	blkcnt_t blocks = blocks_of(fd);
	ASSERT_EQ(0, statfs(FS_MNT, &before));

	/* Block-aligned: zeros, blocks freed, neighbours intact, size kept. */
	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, hole, hole_len))
		TH_LOG("punch: %s", strerror(errno));
	EXPECT_EQ(size, fs_size_of(fd));
	EXPECT_TRUE(reads_zero(fd, hole, hole_len));
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, hole, 6));
	EXPECT_EQ(-1, fs_check_pattern(fd, hole + hole_len, size - hole - hole_len, 6));
	EXPECT_GE(blocks - hole_len / 512, blocks_of(fd));
	ASSERT_EQ(0, statfs(FS_MNT, &after));
	EXPECT_LE(before.f_bfree + hole_len / 4096, after.f_bfree);
	EXPECT_EQ(hole, lseek(fd, 0, SEEK_HOLE));
	EXPECT_EQ(hole + hole_len, lseek(fd, hole, SEEK_DATA));

	/* Not block-aligned: exactly those bytes become zero. */
	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 10000));
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, 100, 6));
	EXPECT_TRUE(reads_zero(fd, 100, 10000));
	EXPECT_EQ(-1, fs_check_pattern(fd, 10100, hole - 10100, 6));

	/* Past EOF: nothing changes. Without KEEP_SIZE: refused. */
	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, size, 1 * MIB));
	EXPECT_EQ(size, fs_size_of(fd));
	EXPECT_EQ(EOPNOTSUPP, err_of(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096)));

	/* The hole can be written again. */
	ASSERT_EQ(4096, fs_write_pattern(fd, hole + 8192, 4096, 6));
	EXPECT_TRUE(reads_zero(fd, hole, 8192));
	EXPECT_EQ(-1, fs_check_pattern(fd, hole + 8192, 4096, 6));
	close(fd);

	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(size, fs_size_of(fd));
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, 100, 6));
	EXPECT_TRUE(reads_zero(fd, 100, 10000));
	EXPECT_TRUE(reads_zero(fd, hole, 8192));
	EXPECT_EQ(-1, fs_check_pattern(fd, hole + 8192, 4096, 6));
	EXPECT_TRUE(reads_zero(fd, hole + 12288, hole_len - 12288));
	EXPECT_EQ(-1, fs_check_pattern(fd, hole + hole_len, size - hole - hole_len, 6));
	close(fd);
}

TEST_F(fs, zero_range)
{
	const off_t size = 2 * MIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);

	ASSERT_LE(0, fd);
	ASSERT_EQ((size_t)size, fs_write_pattern(fd, 0, size, 7));

	/* Unaligned, inside the file. */
	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_ZERO_RANGE, 3000, 70000))
		TH_LOG("zero range: %s", strerror(errno));
	EXPECT_EQ(size, fs_size_of(fd));
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, 3000, 7));
	EXPECT_TRUE(reads_zero(fd, 3000, 70000));
	EXPECT_EQ(-1, fs_check_pattern(fd, 73000, size - 73000, 7));
	/* Zeroed blocks stay allocated (unlike a punched hole). */
	EXPECT_LE(size, blocks_of(fd) * 512);

	/* Across EOF: extends the file, unless KEEP_SIZE. */
	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
			       size - 4096, 1 * MIB));
	EXPECT_EQ(size, fs_size_of(fd));
	EXPECT_TRUE(reads_zero(fd, size - 4096, 4096));
	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_ZERO_RANGE, size - 100, 1 * MIB));
	EXPECT_EQ(size - 100 + 1 * MIB, fs_size_of(fd));
	EXPECT_TRUE(reads_zero(fd, size - 4096, 1 * MIB));
	EXPECT_EQ(-1, fs_check_pattern(fd, 73000, size - 4096 - 73000, 7));
	close(fd);

	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(size - 100 + 1 * MIB, fs_size_of(fd));
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, 3000, 7));
	EXPECT_TRUE(reads_zero(fd, 3000, 70000));
	EXPECT_EQ(-1, fs_check_pattern(fd, 73000, size - 4096 - 73000, 7));
	EXPECT_TRUE(reads_zero(fd, size - 4096, 1 * MIB));
	close(fd);
}

TEST_HARNESS_MAIN
