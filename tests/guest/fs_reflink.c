// SPDX-License-Identifier: GPL-2.0
/*
 * Shared extents: FICLONE and FICLONERANGE give equal data that then
 * diverges on write, either way, through write() and through a DAX
 * mapping; unlinking the source keeps the clone; statfs counts shared
 * blocks once (a clone costs no data blocks until written, and freeing
 * one sharer frees nothing shared). copy_file_range copies between and
 * within files.
 *
 * ext4 has no reflink: there the clone tests are skipped (FICLONE gives
 * EOPNOTSUPP) and copy_file_range is still tested. oxdax and xfs must
 * clone. OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h).
 */
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "kselftest_harness.h"
#include "oxdax_fs.h"

static int err_of(long ret)
{
	return ret < 0 ? errno : 0;
}

/* Whether every extent of @fd in [@start, @end) is flagged SHARED. */
static bool all_shared(int fd, uint64_t start, uint64_t end)
{
	struct {
		struct fiemap map;
		struct fiemap_extent ext[128];
	} e = { .map = { .fm_start = start, .fm_length = end - start,
			 .fm_flags = FIEMAP_FLAG_SYNC, .fm_extent_count = 128 } };

	if (ioctl(fd, FS_IOC_FIEMAP, &e.map) || !e.map.fm_mapped_extents)
		return false;
	for (unsigned int i = 0; i < e.map.fm_mapped_extents; i++)
		if (!(e.ext[i].fe_flags & FIEMAP_EXTENT_SHARED))
			return false;
	return true;
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

/* Skips the test on ext4, which cannot clone; elsewhere a refusal fails. */
#define CLONE_OR_SKIP(ret) do { \
	if ((ret) && errno == EOPNOTSUPP && fs_is("ext4")) \
		SKIP(return, "ext4 has no reflink"); \
	ASSERT_EQ(0, (ret)) TH_LOG("clone: %s", strerror(errno)); \
} while (0)

TEST_F_TIMEOUT(fs, ficlone, 120)
{
	const size_t size = 8 * MIB;
	int src = open(fs_path("src"), O_RDWR | O_CREAT, 0644);
	int dst = open(fs_path("clone"), O_RDWR | O_CREAT, 0644);
	uint64_t before, cloned, cowed, src_gone, all_gone;

	ASSERT_LE(0, src);
	ASSERT_LE(0, dst);
	ASSERT_EQ(size, fs_write_pattern(src, 0, size, 21));
	ASSERT_EQ(0, fsync(src));
	before = fs_free_blocks(0);

	CLONE_OR_SKIP(ioctl(dst, FICLONE, src));
	EXPECT_EQ((off_t)size, fs_size_of(dst));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 0, size, 21, 0));
	EXPECT_TRUE(all_shared(src, 0, size));
	EXPECT_TRUE(all_shared(dst, 0, size));
	/* Shared blocks are counted once: the clone costs only metadata. */
	cloned = fs_free_blocks(0);
	TH_LOG("free blocks: %llu, after clone %llu", (unsigned long long)before,
	       (unsigned long long)cloned);
	EXPECT_GE(before, cloned);
	EXPECT_GT(256, before - cloned);

	/* Writes to the clone leave the source alone, and the other way round. */
	ASSERT_EQ(5000, fs_write_pattern(dst, 1 * MIB + 100, 5000, 22));
	ASSERT_EQ(4096, fs_write_pattern(src, 6 * MIB, 4096, 23));
	EXPECT_EQ(-1, fs_check_pattern_at(src, 0, 6 * MIB, 21, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(src, 6 * MIB, 4096, 23, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(src, 6 * MIB + 4096, size - 6 * MIB - 4096, 21, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 0, 1 * MIB + 100, 21, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 1 * MIB + 100, 5000, 22, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 1 * MIB + 5100, size - 1 * MIB - 5100, 21, 0));
	ASSERT_EQ(0, fsync(dst));
	ASSERT_EQ(0, fsync(src));
	cowed = fs_free_blocks(0);
	EXPECT_LT(cowed, cloned);	/* the copies took blocks */
	/* But only the 2 MiB regions around the written ones (oxdax copies
	 * whole regions, so that they map with PMDs: allocator.rst), not the
	 * file. */
	EXPECT_GT(2 * 512 + 64, cloned - cowed);

	/* Unlinking the source frees only its own blocks; the clone keeps the rest. */
	close(src);
	ASSERT_EQ(0, unlink(fs_path("src")));
	src_gone = fs_free_blocks(cowed + 1);
	TH_LOG("after CoW %llu, source unlinked %llu", (unsigned long long)cowed,
	       (unsigned long long)src_gone);
	EXPECT_GT(2 * 512 + 64, src_gone - cowed);
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 0, 1 * MIB + 100, 21, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 1 * MIB + 5100, size - 1 * MIB - 5100, 21, 0));
	close(dst);

	ASSERT_EQ(0, fs_remount());
	dst = open(fs_path("clone"), O_RDWR);
	ASSERT_LE(0, dst);
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 0, 1 * MIB + 100, 21, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 1 * MIB + 100, 5000, 22, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 1 * MIB + 5100, size - 1 * MIB - 5100, 21, 0));
	close(dst);

	/* The last sharer gone: everything comes back. */
	ASSERT_EQ(0, unlink(fs_path("clone")));
	all_gone = fs_free_blocks(before + size / 4096 - 64);
	EXPECT_LE(before + size / 4096 - 64, all_gone);
}

TEST_F(fs, clone_cow_through_mmap)
{
	const size_t size = 4 * MIB;
	int src = open(fs_path("src"), O_RDWR | O_CREAT, 0644);
	int dst = open(fs_path("clone"), O_RDWR | O_CREAT, 0644);
	unsigned char *s, *d;

	ASSERT_LE(0, src);
	ASSERT_LE(0, dst);
	ASSERT_EQ(size, fs_write_pattern(src, 0, size, 31));
	ASSERT_EQ(0, fsync(src));
	CLONE_OR_SKIP(ioctl(dst, FICLONE, src));

	/* Both mapped and read first, so both map the shared blocks. */
	s = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, src, 0);
	d = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, dst, 0);
	ASSERT_NE(MAP_FAILED, s);
	ASSERT_NE(MAP_FAILED, d);
	EXPECT_EQ(-1, fs_check_fill(s, size, 0, 31));
	EXPECT_EQ(-1, fs_check_fill(d, size, 0, 31));

	/* A store through the clone's mapping copies; the source keeps its data. */
	memset(d + 2 * MIB + 10, 0xd5, 100);
	memset(s + 4096, 0x5d, 4096);
	ASSERT_EQ(0, msync(d, size, MS_SYNC));
	ASSERT_EQ(0, msync(s, size, MS_SYNC));
	EXPECT_EQ(-1, fs_check_fill(s, 4096, 0, 31));
	EXPECT_EQ(-1, fs_check_fill(s + 8192, size - 8192, 8192, 31));
	EXPECT_EQ(-1, fs_check_fill(d, 2 * MIB + 10, 0, 31));
	EXPECT_EQ(-1, fs_check_fill(d + 2 * MIB + 110, size - 2 * MIB - 110, 2 * MIB + 110, 31));
	unsigned char buf[100];
	ASSERT_EQ(100, pread(dst, buf, 100, 2 * MIB + 10));
	for (int i = 0; i < 100; i++)
		EXPECT_EQ(0xd5, buf[i]);
	ASSERT_EQ(100, pread(src, buf, 100, 2 * MIB + 10));
	EXPECT_EQ(-1, fs_check_fill(buf, 100, 2 * MIB + 10, 31));
	ASSERT_EQ(100, pread(dst, buf, 100, 4096));
	EXPECT_EQ(-1, fs_check_fill(buf, 100, 4096, 31));
	munmap(s, size);
	munmap(d, size);
	close(src);
	close(dst);

	ASSERT_EQ(0, fs_remount());
	src = open(fs_path("src"), O_RDONLY);
	dst = open(fs_path("clone"), O_RDONLY);
	ASSERT_LE(0, src);
	ASSERT_LE(0, dst);
	EXPECT_EQ(-1, fs_check_pattern_at(src, 2 * MIB, 1 * MIB, 31, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 0, 2 * MIB + 10, 31, 0));
	ASSERT_EQ(100, pread(src, buf, 100, 4096));
	EXPECT_EQ(0x5d, buf[0]);
	close(src);
	close(dst);
}

TEST_F(fs, ficlonerange)
{
	const size_t size = 8 * MIB;
	int src = open(fs_path("src"), O_RDWR | O_CREAT, 0644);
	int dst = open(fs_path("dst"), O_RDWR | O_CREAT, 0644);
	struct file_clone_range r = { .src_fd = src, .src_offset = 1 * MIB,
				      .src_length = 2 * MIB, .dest_offset = 4 * MIB };

	ASSERT_LE(0, src);
	ASSERT_LE(0, dst);
	ASSERT_EQ(size, fs_write_pattern(src, 0, size, 41));
	ASSERT_EQ(size, fs_write_pattern(dst, 0, size, 42));
	CLONE_OR_SKIP(ioctl(dst, FICLONERANGE, &r));

	/* dst: its own [0, 4M), src's [1M, 3M) at [4M, 6M), its own [6M, 8M). */
	EXPECT_EQ((off_t)size, fs_size_of(dst));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 0, 4 * MIB, 42, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 4 * MIB, 2 * MIB, 41, 3 * MIB));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 6 * MIB, 2 * MIB, 42, 0));
	EXPECT_TRUE(all_shared(dst, 4 * MIB, 6 * MIB));
	EXPECT_EQ(-1, fs_check_pattern_at(src, 0, size, 41, 0));

	/* Diverge: a write in dst's cloned range. */
	ASSERT_EQ(4096, fs_write_pattern(dst, 5 * MIB, 4096, 43));
	EXPECT_EQ(-1, fs_check_pattern_at(src, 2 * MIB, 4096, 41, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 5 * MIB, 4096, 43, 0));

	/* Past the destination's end: the file grows. */
	r.src_offset = 0;
	r.src_length = 1 * MIB;
	r.dest_offset = 9 * MIB;
	ASSERT_EQ(0, ioctl(dst, FICLONERANGE, &r));
	EXPECT_EQ((off_t)(10 * MIB), fs_size_of(dst));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 9 * MIB, 1 * MIB, 41, 9 * MIB));
	char zeros[4096];
	ASSERT_EQ(4096, pread(dst, zeros, sizeof(zeros), 8 * MIB));
	EXPECT_TRUE(fs_all_zero(zeros, sizeof(zeros)));

	/* Length 0 means "to the end of the source". */
	int whole = open(fs_path("whole"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, whole);
	r.src_offset = 0;
	r.src_length = 0;
	r.dest_offset = 0;
	ASSERT_EQ(0, ioctl(whole, FICLONERANGE, &r));
	EXPECT_EQ((off_t)size, fs_size_of(whole));
	EXPECT_EQ(-1, fs_check_pattern_at(whole, 0, size, 41, 0));
	close(whole);

	/* Unaligned offsets or lengths (except to the source's EOF), and
	 * ranges past the source's end, are refused; nothing changes. */
	r.src_offset = 100;
	r.src_length = 4096;
	r.dest_offset = 0;
	EXPECT_EQ(EINVAL, err_of(ioctl(dst, FICLONERANGE, &r)));
	r.src_offset = 0;
	r.src_length = 1000;
	EXPECT_EQ(EINVAL, err_of(ioctl(dst, FICLONERANGE, &r)));
	r.src_offset = size;
	r.src_length = 4096;
	EXPECT_EQ(EINVAL, err_of(ioctl(dst, FICLONERANGE, &r)));
	/* Overlapping ranges of one file. */
	r.src_fd = dst;
	r.src_offset = 0;
	r.src_length = 2 * MIB;
	r.dest_offset = 1 * MIB;
	EXPECT_EQ(EINVAL, err_of(ioctl(dst, FICLONERANGE, &r)));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 0, 4 * MIB, 42, 0));
	/* A directory. */
	int dir = open(FS_MNT, O_RDONLY | O_DIRECTORY);
	ASSERT_LE(0, dir);
	EXPECT_NE(0, err_of(ioctl(dir, FICLONE, src)));
	close(dir);

	/* Within one file, not overlapping: fine. */
	r.src_offset = 0;
	r.src_length = 1 * MIB;
	r.dest_offset = 2 * MIB;
	ASSERT_EQ(0, ioctl(dst, FICLONERANGE, &r));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 2 * MIB, 1 * MIB, 42, 2 * MIB));
	close(src);
	close(dst);

	ASSERT_EQ(0, fs_remount());
	dst = open(fs_path("dst"), O_RDONLY);
	ASSERT_LE(0, dst);
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 0, 2 * MIB, 42, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 2 * MIB, 1 * MIB, 42, 2 * MIB));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 4 * MIB, 1 * MIB, 41, 3 * MIB));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 5 * MIB, 4096, 43, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 9 * MIB, 1 * MIB, 41, 9 * MIB));
	close(dst);
}

TEST_F(fs, copy_file_range)
{
	const size_t size = 3 * MIB + 1234;
	int src = open(fs_path("src"), O_RDWR | O_CREAT, 0644);
	int dst = open(fs_path("dst"), O_RDWR | O_CREAT, 0644);
	loff_t in, out;
	ssize_t n;
	size_t done = 0;

	ASSERT_LE(0, src);
	ASSERT_LE(0, dst);
	ASSERT_EQ(size, fs_write_pattern(src, 0, size, 51));

	/* The whole file, through the file offsets (may take several calls). */
	while (done < size) {
		n = copy_file_range(src, NULL, dst, NULL, size - done, 0);
		ASSERT_LT(0, n) TH_LOG("copy_file_range: %s", strerror(errno));
		done += n;
	}
	EXPECT_EQ((off_t)size, lseek(src, 0, SEEK_CUR));
	EXPECT_EQ((off_t)size, lseek(dst, 0, SEEK_CUR));
	EXPECT_EQ((off_t)size, fs_size_of(dst));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 0, size, 51, 0));
	/* At the source's end: nothing more. */
	EXPECT_EQ(0, copy_file_range(src, NULL, dst, NULL, 4096, 0));

	/* The copies are independent. */
	ASSERT_EQ(4096, fs_write_pattern(dst, 1 * MIB, 4096, 52));
	ASSERT_EQ(4096, fs_write_pattern(src, 2 * MIB, 4096, 53));
	EXPECT_EQ(-1, fs_check_pattern_at(src, 1 * MIB, 4096, 51, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 2 * MIB, 4096, 51, 0));

	/* Explicit, unaligned offsets, leaving the file offsets alone. */
	in = 12345;
	out = 5 * MIB + 17;
	lseek(src, 0, SEEK_SET);
	lseek(dst, 0, SEEK_SET);
	done = 0;
	while (done < 100000) {
		n = copy_file_range(src, &in, dst, &out, 100000 - done, 0);
		ASSERT_LT(0, n);
		done += n;
	}
	EXPECT_EQ(12345 + 100000, in);
	EXPECT_EQ(5 * MIB + 17 + 100000, out);
	EXPECT_EQ(0, lseek(src, 0, SEEK_CUR));
	EXPECT_EQ(0, lseek(dst, 0, SEEK_CUR));
	EXPECT_EQ((off_t)(5 * MIB + 17 + 100000), fs_size_of(dst));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 5 * MIB + 17, 100000, 51, 5 * MIB + 17 - 12345));
	char zeros[4096];
	ASSERT_EQ(4096, pread(dst, zeros, sizeof(zeros), 4 * MIB));
	EXPECT_TRUE(fs_all_zero(zeros, sizeof(zeros)));

	/* Within one file: allowed when not overlapping, EINVAL when overlapping. */
	in = 0;
	out = 4 * MIB;
	ASSERT_EQ(65536, copy_file_range(src, &in, src, &out, 65536, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(src, 4 * MIB, 65536, 51, 4 * MIB));
	in = 0;
	out = 4096;
	EXPECT_EQ(EINVAL, err_of(copy_file_range(src, &in, src, &out, 65536, 0)));
	/* Flags must be 0; a directory is refused. */
	in = 0;
	out = 0;
	EXPECT_EQ(EINVAL, err_of(copy_file_range(src, &in, dst, &out, 4096, 1)));
	int dir = open(FS_MNT, O_RDONLY | O_DIRECTORY);
	ASSERT_LE(0, dir);
	EXPECT_EQ(EISDIR, err_of(copy_file_range(dir, &in, dst, &out, 4096, 0)));
	close(dir);
	close(src);
	close(dst);

	ASSERT_EQ(0, fs_remount());
	dst = open(fs_path("dst"), O_RDONLY);
	ASSERT_LE(0, dst);
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 0, 1 * MIB, 51, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 1 * MIB, 4096, 52, 0));
	EXPECT_EQ(-1, fs_check_pattern_at(dst, 5 * MIB + 17, 100000, 51, 5 * MIB + 17 - 12345));
	close(dst);
}

TEST_HARNESS_MAIN
