// SPDX-License-Identifier: GPL-2.0
/*
 * Writeback of DAX mappings: after stores through a shared mapping,
 * fsync, fdatasync, msync(MS_SYNC), sync and syncfs each flush the dirty
 * mapping entries and write-protect them: oxdax counts writeback_entries
 * (at least one per dirty page), and the next store to the same page
 * faults again (getrusage page faults on every filesystem; on oxdax
 * fault_pte, fault_mkwrite or fault_pmd). The data is right before and
 * after a remount. msync(MS_ASYNC) breaks nothing: the entries stay dirty
 * and a later fsync flushes them.
 *
 * Also: a second fsync with nothing stored flushes no entry (oxdax); msync
 * of a subrange write-protects only that range; a PMD mapping is flushed
 * and faults again; entries dirtied through a mapping that is gone are
 * still flushed by fsync.
 *
 * OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h); the counter
 * assertions are oxdax's only (tests/lib/oxdax_mmap.h).
 */
#include <linux/falloc.h>

#include "kselftest_harness.h"
#include "oxdax_mmap.h"

#define FILE_SIZE MIB		/* under 2 MiB: PTE mappings only */
#define NR_PAGES 16
#define PAGE_STEP (64 * KIB)	/* the stored pages: 0, 64 KiB, ... */

enum method { FSYNC, FDATASYNC, MSYNC_SYNC, SYNC, SYNCFS, MSYNC_ASYNC };

/* Stores the pattern word under @seed at each of the NR_PAGES pages. */
static void store_pages(unsigned char *p, uint64_t seed)
{
	for (size_t i = 0; i < NR_PAGES; i++)
		*(volatile uint64_t *)(p + i * PAGE_STEP) = oxdax_pattern(i * PAGE_STEP, seed);
}

/* First stored page of @fd whose word is not the pattern under @seed, or -1. */
static long long check_pages(int fd, uint64_t seed)
{
	for (size_t i = 0; i < NR_PAGES; i++) {
		uint64_t word;

		if (pread(fd, &word, 8, i * PAGE_STEP) != 8 ||
		    word != oxdax_pattern(i * PAGE_STEP, seed))
			return i * PAGE_STEP;
	}
	return -1;
}

static int do_sync(enum method m, int fd, void *p, size_t len)
{
	switch (m) {
	case FSYNC:
		return fsync(fd);
	case FDATASYNC:
		return fdatasync(fd);
	case MSYNC_SYNC:
		return msync(p, len, MS_SYNC);
	case SYNC:
		sync();
		return 0;
	case SYNCFS:
		return syncfs(fd);
	case MSYNC_ASYNC:
		return msync(p, len, MS_ASYNC);
	}
	return -1;
}

/* Faults that make a page writable again, on oxdax. */
static long long refaults(const struct mm_snap *a, const struct mm_snap *b)
{
	return mm_delta(a, b, MM_FAULT_PTE) + mm_delta(a, b, MM_FAULT_MKWRITE) +
	       mm_delta(a, b, MM_FAULT_PMD);
}

FIXTURE(wb) {
};

FIXTURE_VARIANT(wb) {
	enum method method;
	bool flushes;		/* whether the call writes back (not MS_ASYNC) */
};

FIXTURE_VARIANT_ADD(wb, fsync) { .method = FSYNC, .flushes = true };
FIXTURE_VARIANT_ADD(wb, fdatasync) { .method = FDATASYNC, .flushes = true };
FIXTURE_VARIANT_ADD(wb, msync_sync) { .method = MSYNC_SYNC, .flushes = true };
FIXTURE_VARIANT_ADD(wb, sync) { .method = SYNC, .flushes = true };
FIXTURE_VARIANT_ADD(wb, syncfs) { .method = SYNCFS, .flushes = true };
FIXTURE_VARIANT_ADD(wb, msync_async) { .method = MSYNC_ASYNC, .flushes = false };

FIXTURE_SETUP(wb)
{
	ASSERT_EQ(0, fs_begin());
}

FIXTURE_TEARDOWN(wb)
{
	mm_unmap_all();
	EXPECT_EQ(0, fs_end());
}

TEST_F(wb, store_sync_store)
{
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	struct mm_snap a, b, c, d;
	unsigned char *p;

	ASSERT_LE(0, fd);
	ASSERT_EQ(FILE_SIZE, fs_write_pattern(fd, 0, FILE_SIZE, 70));
	ASSERT_EQ(0, fsync(fd));
	p = mm_map(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);

	store_pages(p, 71);
	mm_snap(&a);
	ASSERT_EQ(0, do_sync(variant->method, fd, p, FILE_SIZE));
	mm_snap(&b);
	EXPECT_EQ(-1, check_pages(fd, 71));

	/* The same stores again: each page faults to become writable. */
	mm_snap(&c);
	store_pages(p, 72);
	mm_snap_end(&d);
	TH_LOG("sync: %s", mm_describe(&a, &b));
	TH_LOG("stores after it: %s", mm_describe(&c, &d));
	if (variant->flushes)
		EXPECT_LE(NR_PAGES, mm_faults(&c, &d));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		if (variant->flushes) {
			EXPECT_LE(NR_PAGES, mm_delta(&a, &b, MM_WRITEBACK_ENTRIES));
			EXPECT_LE(NR_PAGES, refaults(&c, &d));
		}
	}
	EXPECT_EQ(-1, check_pages(fd, 72));
	EXPECT_EQ(-1, fs_check_fill(p + 8, PAGE_STEP - 8, 8, 70));

	/* Whatever the call did, fsync now flushes what is dirty. */
	mm_snap(&a);
	ASSERT_EQ(0, fsync(fd));
	mm_snap(&b);
	TH_LOG("fsync after the second stores: %s", mm_describe(&a, &b));
	if (mm_counted())
		EXPECT_LE(NR_PAGES, mm_delta(&a, &b, MM_WRITEBACK_ENTRIES));

	ASSERT_EQ(0, mm_unmap(p, FILE_SIZE));
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, check_pages(fd, 72));
	EXPECT_EQ(-1, fs_check_pattern(fd, 8, PAGE_STEP - 8, 70));
	close(fd);
}

MM_FIXTURE(mm);

TEST_F(mm, clean_sync_flushes_nothing)
{
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	struct mm_snap a, b, c;
	unsigned char *p;

	ASSERT_LE(0, fd);
	ASSERT_EQ(FILE_SIZE, fs_write_pattern(fd, 0, FILE_SIZE, 73));
	p = mm_map(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	store_pages(p, 74);
	mm_snap(&a);
	ASSERT_EQ(0, fsync(fd));
	mm_snap(&b);
	ASSERT_EQ(0, fsync(fd));
	ASSERT_EQ(0, msync(p, FILE_SIZE, MS_SYNC));
	mm_snap(&c);
	TH_LOG("first fsync: %s", mm_describe(&a, &b));
	TH_LOG("fsync and msync with nothing stored: %s", mm_describe(&b, &c));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LE(NR_PAGES, mm_delta(&a, &b, MM_WRITEBACK_ENTRIES));
		EXPECT_EQ(0, mm_delta(&b, &c, MM_WRITEBACK_ENTRIES));
	}
	/* Loads of the clean pages. */
	for (size_t i = 0; i < NR_PAGES; i++)
		EXPECT_EQ(oxdax_pattern(i * PAGE_STEP, 74), *(uint64_t *)(p + i * PAGE_STEP));
	EXPECT_EQ(-1, check_pages(fd, 74));
	close(fd);
}

TEST_F(mm, msync_range_protects_only_the_range)
{
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	struct mm_snap a, b, c, d;
	unsigned char *p;

	ASSERT_LE(0, fd);
	ASSERT_EQ(FILE_SIZE, fs_write_pattern(fd, 0, FILE_SIZE, 75));
	p = mm_map(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	store_pages(p, 76);

	/* The first half of the stored pages only. */
	mm_snap(&a);
	ASSERT_EQ(0, msync(p, NR_PAGES / 2 * PAGE_STEP, MS_SYNC));
	mm_snap(&b);
	/* Stores to the second half: still writable, no fault. */
	for (size_t i = NR_PAGES / 2; i < NR_PAGES; i++)
		*(volatile uint64_t *)(p + i * PAGE_STEP) = oxdax_pattern(i * PAGE_STEP, 77);
	mm_snap_end(&c);
	/* Stores to the first half: each faults. */
	for (size_t i = 0; i < NR_PAGES / 2; i++)
		*(volatile uint64_t *)(p + i * PAGE_STEP) = oxdax_pattern(i * PAGE_STEP, 77);
	mm_snap_end(&d);
	TH_LOG("msync of half: %s", mm_describe(&a, &b));
	TH_LOG("stores outside it: %s", mm_describe(&b, &c));
	TH_LOG("stores inside it: %s", mm_describe(&c, &d));
	EXPECT_EQ(0, mm_faults(&b, &c));
	EXPECT_LE(NR_PAGES / 2, mm_faults(&c, &d));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LE(NR_PAGES / 2, mm_delta(&a, &b, MM_WRITEBACK_ENTRIES));
		EXPECT_GT(NR_PAGES, mm_delta(&a, &b, MM_WRITEBACK_ENTRIES));
		EXPECT_LE(NR_PAGES / 2, refaults(&c, &d));
	}
	EXPECT_EQ(-1, check_pages(fd, 77));
	close(fd);
}

TEST_F(mm, pmd_mapping_flushed_and_refaults)
{
	const size_t size = 4 * MIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	struct mm_snap a, b, c, d;
	unsigned char *p;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fallocate(fd, 0, 0, size));
	ASSERT_EQ(0, fsync(fd));
	p = mm_map_aligned(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);

	mm_snap(&a);
	mm_write_words(p, 2 * MIB, 0, 78);
	mm_snap_end(&b);
	ASSERT_EQ(0, fsync(fd));
	mm_snap(&c);
	mm_write_words(p, 2 * MIB, 0, 79);
	mm_snap_end(&d);
	TH_LOG("first stores to 2 MiB: %s", mm_describe(&a, &b));
	TH_LOG("fsync: %s", mm_describe(&b, &c));
	TH_LOG("stores after it: %s", mm_describe(&c, &d));
	EXPECT_LE(1, mm_faults(&c, &d));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LE(1, mm_delta(&b, &c, MM_WRITEBACK_ENTRIES));
		EXPECT_LE(1, refaults(&c, &d));
	}
	EXPECT_EQ(-1, mm_check_words_file(fd, 0, 2 * MIB, 79));
	EXPECT_TRUE(mm_file_zero(fd, 2 * MIB, 2 * MIB));
	ASSERT_EQ(0, mm_unmap(p, size));
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, mm_check_words_file(fd, 0, 2 * MIB, 79));
	close(fd);
}

TEST_F(mm, fsync_after_munmap_flushes)
{
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	struct mm_snap a, b;
	unsigned char *p;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, FILE_SIZE));	/* stores allocate */
	p = mm_map(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	store_pages(p, 80);
	ASSERT_EQ(0, mm_unmap(p, FILE_SIZE));
	mm_snap(&a);
	ASSERT_EQ(0, fsync(fd));
	mm_snap(&b);
	TH_LOG("fsync after munmap: %s", mm_describe(&a, &b));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LE(NR_PAGES, mm_delta(&a, &b, MM_WRITEBACK_ENTRIES));
	}
	EXPECT_EQ(-1, check_pages(fd, 80));
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, check_pages(fd, 80));
	close(fd);
}

TEST_HARNESS_MAIN
