// SPDX-License-Identifier: GPL-2.0
/*
 * A DAX mapping while its file changes under it:
 *  - truncate smaller: loads and stores past the page holding the new EOF
 *    raise SIGBUS, the rest keeps its data, the tail of the EOF page reads
 *    zeros; extended again, the mapping reads zeros there (no stale data,
 *    also for pages that were mapped and written before the truncate);
 *  - FALLOC_FL_PUNCH_HOLE and FALLOC_FL_ZERO_RANGE on a mapped, loaded and
 *    written range (also inside a PMD-eligible 2 MiB range): the mapping
 *    reads zeros there and its data elsewhere, stores into the range work
 *    again and reach the file;
 *  - unlink of a mapped file: the mapping works until munmap; only then
 *    is the space freed;
 *  - read(2) and write(2), with and without O_DIRECT, whose user buffer is
 *    a DAX mapping of another range of the same file, give the right data.
 *
 * OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h).
 */
#include <linux/falloc.h>

#include "kselftest_harness.h"
#include "oxdax_mmap.h"

MM_FIXTURE(mm);

TEST_F(mm, truncate_smaller_then_larger)
{
	const size_t size = MIB, small = 256 * KIB + 100;
	const size_t eof_page_end = 260 * KIB;
	int fd = fs_make_pattern_file("f", size, 100);
	unsigned char *p, buf[64];

	ASSERT_LE(0, fd);
	p = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	/* Everything loaded; some pages past the future EOF stored to. */
	EXPECT_EQ(-1, fs_check_fill(p, size, 0, 100));
	memset(p + 256 * KIB + 200, 0xee, 100);		/* the future EOF page */
	memset(p + 600 * KIB, 0xdd, 8 * KIB);

	ASSERT_EQ(0, ftruncate(fd, small));
	EXPECT_EQ(-1, fs_check_fill(p, small, 0, 100));
	EXPECT_TRUE(fs_all_zero(p + small, eof_page_end - small));
	EXPECT_EQ(SIGBUS, mm_load_sig(p + eof_page_end));
	EXPECT_EQ(p + eof_page_end, mm_sig_addr);
	EXPECT_EQ(SIGBUS, mm_load_sig(p + 600 * KIB));
	EXPECT_EQ(SIGBUS, mm_store_sig(p + 600 * KIB + 1, 1));
	EXPECT_EQ(SIGBUS, mm_load_sig(p + size - 1));
	/* Stores before EOF still work. */
	EXPECT_EQ(0, mm_store_sig(p + 1000, 0x12));
	ASSERT_EQ(1, pread(fd, buf, 1, 1000));
	EXPECT_EQ(0x12, buf[0]);
	EXPECT_EQ((off_t)small, fs_size_of(fd));

	/* Larger again: zeros where the data was, in the mapping and the file. */
	ASSERT_EQ(0, ftruncate(fd, size));
	EXPECT_EQ(0, mm_load_sig(p + 600 * KIB));
	EXPECT_TRUE(fs_all_zero(p + small, size - small));
	EXPECT_TRUE(mm_file_zero(fd, small, size - small));
	EXPECT_EQ(-1, fs_check_fill(p, 1000, 0, 100));
	EXPECT_EQ(-1, fs_check_fill(p + 1001, small - 1001, 1001, 100));
	/* And it takes stores there again. */
	memset(p + 700 * KIB, 0xcc, 4 * KIB);
	ASSERT_EQ(64, pread(fd, buf, 64, 700 * KIB));
	for (int i = 0; i < 64; i++)
		EXPECT_EQ(0xcc, buf[i]);
	close(fd);
}

/* The fallocate modes that leave zeros. */
static void zero_while_mapped(struct __test_metadata *_metadata, int mode)
{
	const size_t size = 4 * MIB;
	/* Page-aligned, unaligned, and inside the second 2 MiB. */
	static const struct { off_t off; size_t len; } r[] = {
		{ 64 * KIB, 64 * KIB }, { 300 * KIB + 100, 10000 }, { 2 * MIB + 512 * KIB, 256 * KIB },
	};
	int fd = fs_make_pattern_file("f", size, 101);
	unsigned char *p, buf[64];
	long long blocks;

	ASSERT_LE(0, fd);
	p = mm_map_aligned(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	/* Loaded everywhere; stored to in the ranges (dirty entries). */
	EXPECT_EQ(-1, fs_check_fill(p, size, 0, 101));
	for (size_t i = 0; i < ARRAY_SIZE(r); i++)
		fs_fill(p + r[i].off, r[i].len, r[i].off, 102);
	blocks = mm_blocks(fd);

	for (size_t i = 0; i < ARRAY_SIZE(r); i++) {
		ASSERT_EQ(0, fallocate(fd, mode, r[i].off, r[i].len))
			TH_LOG("fallocate(%#x, %lld, %zu): %s", mode, (long long)r[i].off, r[i].len,
			       strerror(errno));
	}
	EXPECT_EQ((off_t)size, fs_size_of(fd));
	if (mode & FALLOC_FL_PUNCH_HOLE)
		EXPECT_GT(blocks, mm_blocks(fd));
	for (size_t i = 0; i < ARRAY_SIZE(r); i++) {
		off_t end = r[i].off + r[i].len;
		off_t next = i + 1 < ARRAY_SIZE(r) ? r[i + 1].off : (off_t)size;

		EXPECT_TRUE(fs_all_zero(p + r[i].off, r[i].len)) TH_LOG("range %zu", i);
		EXPECT_TRUE(mm_file_zero(fd, r[i].off, r[i].len)) TH_LOG("range %zu", i);
		EXPECT_EQ(-1, fs_check_fill(p + end, next - end, end, 101)) TH_LOG("after range %zu", i);
	}
	EXPECT_EQ(-1, fs_check_fill(p, r[0].off, 0, 101));

	/* Stores into the ranges work again and reach the file. */
	for (size_t i = 0; i < ARRAY_SIZE(r); i++)
		fs_fill(p + r[i].off, r[i].len, r[i].off, 103);
	for (size_t i = 0; i < ARRAY_SIZE(r); i++) {
		EXPECT_EQ(-1, fs_check_pattern(fd, r[i].off, r[i].len, 103)) TH_LOG("range %zu", i);
		ASSERT_EQ(64, pread(fd, buf, 64, r[i].off + r[i].len));
		EXPECT_EQ(-1, fs_check_fill(buf, 64, r[i].off + r[i].len, 101));
	}
	ASSERT_EQ(0, mm_unmap(p, size));
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	for (size_t i = 0; i < ARRAY_SIZE(r); i++) {
		EXPECT_EQ(-1, fs_check_pattern(fd, r[i].off, r[i].len, 103)) TH_LOG("range %zu", i);
	}
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, r[0].off, 101));
	EXPECT_EQ(-1, fs_check_pattern(fd, r[2].off + r[2].len, size - r[2].off - r[2].len, 101));
	close(fd);
}

TEST_F(mm, punch_hole_while_mapped)
{
	zero_while_mapped(_metadata, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
}

TEST_F(mm, zero_range_while_mapped)
{
	zero_while_mapped(_metadata, FALLOC_FL_ZERO_RANGE);
}

TEST_F(mm, unlinked_file_stays_mapped)
{
	const size_t size = 8 * MIB;
	uint64_t before, unlinked, unmapped;
	int fd = fs_make_pattern_file("f", size, 104);
	unsigned char *p;

	ASSERT_LE(0, fd);
	p = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	close(fd);
	before = fs_free_blocks(0);
	ASSERT_EQ(0, unlink(fs_path("f")));
	ASSERT_NE(0, access(fs_path("f"), F_OK));

	/* Stores to pages never faulted, loads of everything. */
	fs_fill(p + 3 * MIB + 5, 100000, 3 * MIB + 5, 105);
	EXPECT_EQ(-1, fs_check_fill(p, 3 * MIB + 5, 0, 104));
	EXPECT_EQ(-1, fs_check_fill(p + 3 * MIB + 5, 100000, 3 * MIB + 5, 105));
	EXPECT_EQ(-1, fs_check_fill(p + 3 * MIB + 100005, size - 3 * MIB - 100005,
				    3 * MIB + 100005, 104));
	ASSERT_EQ(0, msync(p, size, MS_SYNC));
	unlinked = fs_free_blocks(0);

	ASSERT_EQ(0, mm_unmap(p, size));
	unmapped = fs_free_blocks(before + size / 4096 - 64);
	TH_LOG("free blocks: mapped %llu, unlinked but mapped %llu, unmapped %llu",
	       (unsigned long long)before, (unsigned long long)unlinked,
	       (unsigned long long)unmapped);
	EXPECT_GT(before + 64, unlinked);	/* still held by the mapping */
	EXPECT_LE(before + size / 4096 - 64, unmapped);
}

/* read(2)/write(2) through a buffer that maps another range of the file. */
static void io_through_mapping(struct __test_metadata *_metadata, int flags)
{
	const size_t size = 4 * MIB;
	int fd = fs_make_pattern_file("f", size, 106), io;
	unsigned char *p;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, 6 * MIB));	/* [4, 6) MiB: a hole */
	p = mm_map(NULL, 6 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	io = open(fs_path("f"), O_RDWR | flags);
	ASSERT_LE(0, io) TH_LOG("open(%#x): %s", flags, strerror(errno));

	/* read(2) of [0, 1 MiB) into the mapping of [2, 3) MiB. */
	ASSERT_EQ((ssize_t)MIB, pread(io, p + 2 * MIB, MIB, 0));
	EXPECT_EQ(-1, fs_check_fill(p + 2 * MIB, MIB, 0, 106));
	EXPECT_EQ(-1, fs_check_pattern_at(fd, 2 * MIB, MIB, 106, 2 * MIB));
	/* Into a hole of the file, never faulted: [4, 4.5) MiB. */
	ASSERT_EQ((ssize_t)(512 * KIB), pread(io, p + 4 * MIB, 512 * KIB, MIB));
	EXPECT_EQ(-1, fs_check_pattern_at(fd, 4 * MIB, 512 * KIB, 106, 3 * MIB));

	/* write(2) of the mapping of [1, 1.5) MiB to [3, 3.5) MiB. */
	ASSERT_EQ((ssize_t)(512 * KIB), pwrite(io, p + MIB, 512 * KIB, 3 * MIB));
	EXPECT_EQ(-1, fs_check_pattern_at(fd, 3 * MIB, 512 * KIB, 106, 2 * MIB));
	EXPECT_EQ(-1, fs_check_fill(p + 3 * MIB, 512 * KIB, MIB, 106));
	/* From a hole of the file, never faulted: [5, 5.25) MiB to [3.5, 3.75). */
	ASSERT_EQ((ssize_t)(256 * KIB), pwrite(io, p + 5 * MIB, 256 * KIB, 3 * MIB + 512 * KIB));
	EXPECT_TRUE(mm_file_zero(fd, 3 * MIB + 512 * KIB, 256 * KIB));
	EXPECT_TRUE(fs_all_zero(p + 3 * MIB + 512 * KIB, 256 * KIB));

	/* The ranges not involved are as they were. */
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, 2 * MIB, 106));
	EXPECT_EQ(-1, fs_check_pattern(fd, 3 * MIB + 768 * KIB, 256 * KIB, 106));
	EXPECT_TRUE(mm_file_zero(fd, 4 * MIB + 512 * KIB, 1536 * KIB));
	close(io);
	close(fd);
}

TEST_F(mm, direct_io_buffer_maps_same_file)
{
	io_through_mapping(_metadata, O_DIRECT);
}

TEST_F(mm, buffered_io_buffer_maps_same_file)
{
	io_through_mapping(_metadata, 0);
}

TEST_HARNESS_MAIN
