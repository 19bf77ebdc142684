// SPDX-License-Identifier: GPL-2.0
/*
 * PMD (2 MiB) DAX mappings:
 *  - a mapping chosen by the kernel is 2 MiB-aligned to the file offset
 *    (thp_get_unmapped_area);
 *  - a fallocated 64 MiB file mapped 2 MiB-aligned, every 4 KiB page
 *    store-faulted: on oxdax at least 99% of the faults map PMDs (fault_pmd
 *    grows by 32, getrusage counts about 32 page faults); the data is right;
 *  - a sparse 16 MiB file mapped the same way, loaded (oxdax:
 *    fault_zero_pmd, one per 2 MiB; nothing allocated), then stored to
 *    (oxdax: fault_pmd, the huge zero page replaced by a block): the data is
 *    right in the storing mapping, in a second one that had loaded the
 *    holes, and for read(2); write(2) into a loaded huge hole shows too;
 *  - fallback to PTEs, with the data right: a file offset not 2 MiB-aligned
 *    to the address, a file whose size ends inside a 2 MiB range, a range
 *    that already has a 4 KiB mapping entry (from a small mapping of one page
 *    that stays mapped): oxdax counts fault_fallback, and getrusage one
 *    page fault per 4 KiB page (getrusage: minor + major).
 * On ext4 and xfs the PMD counts are printed, not asserted (xfs does not
 * align its extents physically, so it maps no PMD at all).
 *
 * OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h); the counter
 * assertions are oxdax's only (tests/lib/oxdax_mmap.h).
 */
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include "kselftest_harness.h"
#include "oxdax_mmap.h"

MM_FIXTURE(mm);

/* An open file of @size bytes, fallocated or (@sparse) a hole. */
static int make_file(const char *name, size_t size, bool sparse)
{
	int fd = open(fs_path("%s", name), O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return -1;
	if ((sparse ? ftruncate(fd, size) : fallocate(fd, 0, 0, size)) || fsync(fd)) {
		close(fd);
		return -1;
	}
	return fd;
}

TEST_F(mm, kernel_chosen_address_is_aligned)
{
	int fd = make_file("f", 8 * MIB, true);
	unsigned char *p, *q;

	ASSERT_LE(0, fd);
	p = mm_map(NULL, 4 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	q = mm_map(NULL, 6 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 4 * KIB);
	ASSERT_NE(MAP_FAILED, q);
	TH_LOG("offset 0 at %p, offset 4 KiB at %p", p, q);
	EXPECT_EQ(0, (uintptr_t)p % MM_PMD);
	EXPECT_EQ(4 * KIB, (uintptr_t)q % MM_PMD);
	/* Both show the same file. */
	p[2 * MIB + 4 * KIB + 5] = 0x5e;
	EXPECT_EQ(0x5e, q[2 * MIB + 5]);
	close(fd);
}

TEST_F(mm, fallocated_64m_maps_pmds)
{
	const size_t size = 64 * MIB;
	int fd = make_file("f", size, false);
	struct mm_snap a, b;
	unsigned char *p;
	long long blocks;

	ASSERT_LE(0, fd);
	blocks = mm_blocks(fd);
	p = mm_map_aligned(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);

	mm_snap(&a);
	mm_write_words(p, size, 0, 90);
	mm_snap_end(&b);
	TH_LOG("%s: stores to every page of 64 MiB: %s", fs_type(), mm_describe(&a, &b));
	TH_LOG("%s: %s", fs_type(), mm_pmd_able(fd, size));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LE(99 * 32, 100 * mm_delta(&a, &b, MM_FAULT_PMD));
		EXPECT_EQ(0, mm_delta(&a, &b, MM_FAULT_FALLBACK));
		EXPECT_GE(32 + 8, mm_faults(&a, &b));
	}
	EXPECT_LE(32, mm_faults(&a, &b));
	EXPECT_EQ(-1, mm_check_words_file(fd, 0, size, 90));
	EXPECT_EQ(blocks, mm_blocks(fd));	/* fallocated: nothing new */
	ASSERT_EQ(0, mm_unmap(p, size));
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, mm_check_words_file(fd, 0, size, 90));
	close(fd);
}

TEST_F(mm, sparse_huge_zero_then_blocks)
{
	const size_t size = 16 * MIB;
	const long pmds = size / MM_PMD;
	int fd = make_file("f", size, true);
	struct mm_snap a, b;
	unsigned char *p, *q;
	long long blocks;

	ASSERT_LE(0, fd);
	blocks = mm_blocks(fd);
	p = mm_map_aligned(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	q = mm_map_aligned(size, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, q);

	mm_snap(&a);
	EXPECT_EQ(0, mm_read_pages(p, size));
	mm_snap_end(&b);
	TH_LOG("%s: loads of every page of a 16 MiB hole: %s", fs_type(), mm_describe(&a, &b));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LE(99 * pmds, 100 * mm_delta(&a, &b, MM_FAULT_ZERO_PMD));
		EXPECT_LE(mm_delta(&a, &b, MM_FAULT_ZERO_PMD), mm_delta(&a, &b, MM_FAULT_ZERO));
		EXPECT_EQ(0, mm_delta(&a, &b, MM_FAULT_PMD));
		EXPECT_GE(pmds + 4, mm_faults(&a, &b));
	}
	EXPECT_TRUE(fs_all_zero(q, size));
	EXPECT_EQ(blocks, mm_blocks(fd));

	mm_snap(&a);
	mm_write_words(p, size, 0, 91);
	mm_snap_end(&b);
	TH_LOG("%s: stores to every page of it: %s", fs_type(), mm_describe(&a, &b));
	TH_LOG("%s: %s", fs_type(), mm_pmd_able(fd, size));
	if (mm_counted())
		EXPECT_LE(99 * pmds, 100 * mm_delta(&a, &b, MM_FAULT_PMD));
	EXPECT_LE(blocks + (long long)size / 512, mm_blocks(fd));
	EXPECT_EQ(-1, mm_check_words_file(fd, 0, size, 91));
	/* The other mapping lost its huge zero pages. */
	for (size_t i = 0; i < size; i += MM_PAGE) {
		uint64_t word;

		memcpy(&word, q + i, 8);
		ASSERT_EQ(oxdax_pattern(i, 91), word) TH_LOG("second mapping, offset %zu", i);
		ASSERT_TRUE(fs_all_zero(q + i + 8, 64));
	}
	close(fd);
}

TEST_F(mm, write_into_loaded_huge_hole)
{
	const size_t size = 4 * MIB;
	int fd = make_file("f", size, true);
	unsigned char *p, buf[8 * KIB];

	ASSERT_LE(0, fd);
	p = mm_map_aligned(size, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, mm_read_pages(p, size));
	fs_fill(buf, sizeof(buf), 2 * MIB + 100, 92);
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(fd, buf, sizeof(buf), 2 * MIB + 100));
	EXPECT_EQ(-1, fs_check_fill(p + 2 * MIB + 100, sizeof(buf), 2 * MIB + 100, 92));
	EXPECT_TRUE(fs_all_zero(p, 2 * MIB + 100));
	EXPECT_TRUE(fs_all_zero(p + 2 * MIB + 100 + sizeof(buf), 2 * MIB - 100 - sizeof(buf)));
	close(fd);
}

TEST_F(mm, unaligned_offset_falls_back)
{
	const size_t len = 6 * MIB, pages = len / MM_PAGE;
	const off_t off = 4 * KIB;
	int fd = make_file("f", 8 * MIB, false);
	struct mm_snap a, b;
	unsigned char *p;

	ASSERT_LE(0, fd);
	/* A 2 MiB-aligned address for a file offset that is not. */
	p = mm_map_aligned(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
	ASSERT_NE(MAP_FAILED, p);
	mm_snap(&a);
	mm_write_words(p, len, off, 93);
	mm_snap_end(&b);
	TH_LOG("%s: stores to every page, file offset 4 KiB: %s", fs_type(), mm_describe(&a, &b));
	EXPECT_LE((long)pages, mm_faults(&a, &b));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LT(0, mm_delta(&a, &b, MM_FAULT_FALLBACK));
		EXPECT_EQ(0, mm_delta(&a, &b, MM_FAULT_PMD));
		EXPECT_LT(0, mm_delta(&a, &b, MM_FAULT_PTE));
	}
	EXPECT_EQ(-1, mm_check_words_file(fd, off, len, 93));
	EXPECT_TRUE(mm_file_zero(fd, 0, off));
	EXPECT_TRUE(mm_file_zero(fd, off + len, 8 * MIB - off - len));
	close(fd);
}

TEST_F(mm, size_inside_pmd_falls_back)
{
	const size_t size = 3 * MIB;
	int fd = make_file("f", size, false);
	struct mm_snap a, b;
	unsigned char *p;

	ASSERT_LE(0, fd);
	p = mm_map_aligned(4 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	mm_snap(&a);
	mm_write_words(p, size, 0, 94);
	mm_snap_end(&b);
	TH_LOG("%s: stores to every page of a 3 MiB file: %s", fs_type(), mm_describe(&a, &b));
	/* The last MiB at least takes one fault per page. */
	EXPECT_LE((long)(MIB / MM_PAGE), mm_faults(&a, &b));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LE(1, mm_delta(&a, &b, MM_FAULT_PMD));
		EXPECT_LE(1, mm_delta(&a, &b, MM_FAULT_FALLBACK));
		EXPECT_LT(0, mm_delta(&a, &b, MM_FAULT_PTE));
		EXPECT_GE((long)(MIB / MM_PAGE) + 16, mm_faults(&a, &b));
	}
	EXPECT_EQ(-1, mm_check_words_file(fd, 0, size, 94));
	EXPECT_EQ(SIGBUS, mm_load_sig(p + size));
	EXPECT_EQ(SIGBUS, mm_store_sig(p + 4 * MIB - 1, 1));
	EXPECT_EQ((off_t)size, fs_size_of(fd));
	close(fd);
}

TEST_F(mm, existing_pte_entry_falls_back)
{
	const size_t size = 4 * MIB;
	const off_t one = 2 * MIB + 8 * KIB;
	int fd = make_file("f", size, false);
	struct mm_snap a, b;
	unsigned char *s, *p;

	ASSERT_LE(0, fd);
	/* A 4 KiB mapping entry inside the second 2 MiB, kept mapped. */
	s = mm_map(NULL, MM_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, one);
	ASSERT_NE(MAP_FAILED, s);
	memcpy(s + 100, "small", 5);

	p = mm_map_aligned(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	mm_snap(&a);
	mm_write_words(p, size, 0, 95);
	mm_snap_end(&b);
	TH_LOG("%s: stores to every page, a 4 KiB entry at 2 MiB + 8 KiB: %s", fs_type(),
	       mm_describe(&a, &b));
	/* The second 2 MiB at least is mapped page by page. */
	EXPECT_LE((long)(2 * MIB / MM_PAGE), mm_faults(&a, &b));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LE(1, mm_delta(&a, &b, MM_FAULT_PMD));
		EXPECT_LE(1, mm_delta(&a, &b, MM_FAULT_FALLBACK));
		EXPECT_LE(1, mm_delta(&a, &b, MM_FAULT_PTE));
	}

	/* Both mappings show the same page. */
	EXPECT_EQ(oxdax_pattern(one, 95), *(uint64_t *)s);
	EXPECT_EQ(0, memcmp(p + one + 100, "small", 5));
	memcpy(p + one + 200, "large", 5);
	EXPECT_EQ(0, memcmp(s + 200, "large", 5));
	EXPECT_EQ(-1, mm_check_words_file(fd, 0, one, 95));
	EXPECT_EQ(-1, mm_check_words_file(fd, one + MM_PAGE, size - one - MM_PAGE, 95));
	close(fd);
}

TEST_HARNESS_MAIN
