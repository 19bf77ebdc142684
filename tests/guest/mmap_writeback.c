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
 * still flushed by fsync; consecutive dirty pages across a 2 MiB boundary
 * (oxdax removes the mappings of a run of them at once) are all flushed
 * and all fault again, and an msync that cuts such a run protects only
 * its part; stores racing fsync from other threads never leave a page
 * writable behind a clean entry (every page faults after the last fsync).
 *
 * OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h); the counter
 * assertions are oxdax's only (tests/lib/oxdax_mmap.h).
 */
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>

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

/* A mapping of @len bytes of @fd at an address a page off 2 MiB alignment:
 * no PMD can map it, so every page is a 4 KiB entry. */
static unsigned char *map_ptes(int fd, size_t len)
{
	unsigned char *p = mm_mmap_aligned(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0, MM_PAGE);

	if (p != MAP_FAILED)
		mm_remember(p, len);
	return p;
}

/* Pages [1 MiB, 3 MiB) of a 4 MiB file but four pages at 1.5 MiB: two runs
 * in the first 2 MiB region, one crossing into the second. */
#define RUN_FIRST MIB
#define RUN_END (3 * MIB)
#define GAP_FIRST (MIB + MIB / 2)
#define GAP_END (GAP_FIRST + 4 * MM_PAGE)
#define RUN_PAGES ((RUN_END - RUN_FIRST - (GAP_END - GAP_FIRST)) / MM_PAGE)

static void store_runs(unsigned char *p, uint64_t seed)
{
	mm_write_words(p + RUN_FIRST, GAP_FIRST - RUN_FIRST, RUN_FIRST, seed);
	mm_write_words(p + GAP_END, RUN_END - GAP_END, GAP_END, seed);
}

static long long check_runs(int fd, uint64_t seed)
{
	long long bad = mm_check_words_file(fd, RUN_FIRST, GAP_FIRST - RUN_FIRST, seed);

	if (bad < 0)
		bad = mm_check_words_file(fd, GAP_END, RUN_END - GAP_END, seed);
	if (bad < 0 && !mm_file_zero(fd, GAP_FIRST, GAP_END - GAP_FIRST))
		bad = GAP_FIRST;
	return bad;
}

TEST_F(mm, runs_of_dirty_pages_flushed_and_refault)
{
	const size_t size = 4 * MIB, cut_first = 2 * MIB - 64 * KIB, cut_end = 2 * MIB + 64 * KIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	struct mm_snap a, b, c, d, e;
	unsigned char *p;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fallocate(fd, 0, 0, size));
	ASSERT_EQ(0, fsync(fd));
	p = map_ptes(fd, size);
	ASSERT_NE(MAP_FAILED, p);

	store_runs(p, 81);
	mm_snap(&a);
	ASSERT_EQ(0, fsync(fd));
	mm_snap(&b);
	store_runs(p, 82);
	mm_snap_end(&c);
	TH_LOG("fsync of %lu dirty pages: %s", RUN_PAGES, mm_describe(&a, &b));
	TH_LOG("stores after it: %s", mm_describe(&b, &c));
	EXPECT_LE((long)RUN_PAGES, mm_faults(&b, &c));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_EQ((long long)RUN_PAGES, mm_delta(&a, &b, MM_WRITEBACK_ENTRIES));
		EXPECT_LE((long long)RUN_PAGES, refaults(&b, &c));
	}
	EXPECT_EQ(-1, check_runs(fd, 82));

	/* msync of 128 KiB in the middle of the run across 2 MiB: its pages
	 * fault again, the pages on either side of it stay writable. */
	ASSERT_EQ(0, msync(p + cut_first, cut_end - cut_first, MS_SYNC));
	mm_snap(&c);
	*(volatile uint64_t *)(p + cut_first - MM_PAGE) = oxdax_pattern(cut_first - MM_PAGE, 83);
	*(volatile uint64_t *)(p + cut_end) = oxdax_pattern(cut_end, 83);
	mm_snap_end(&d);
	mm_write_words(p + cut_first, cut_end - cut_first, cut_first, 83);
	mm_snap_end(&e);
	TH_LOG("stores beside the msync'd range: %s", mm_describe(&c, &d));
	TH_LOG("stores in it: %s", mm_describe(&d, &e));
	EXPECT_EQ(0, mm_faults(&c, &d));
	EXPECT_LE((long)((cut_end - cut_first) / MM_PAGE), mm_faults(&d, &e));

	ASSERT_EQ(0, fsync(fd));
	ASSERT_EQ(0, mm_unmap(p, size));
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, mm_check_words_file(fd, cut_first - MM_PAGE, cut_end - cut_first + 2 * MM_PAGE,
					  83));
	EXPECT_EQ(-1, mm_check_words_file(fd, RUN_FIRST, GAP_FIRST - RUN_FIRST, 82));
	EXPECT_EQ(-1, mm_check_words_file(fd, GAP_END, cut_first - MM_PAGE - GAP_END, 82));
	EXPECT_TRUE(mm_file_zero(fd, GAP_FIRST, GAP_END - GAP_FIRST));
	EXPECT_EQ(-1, mm_check_words_file(fd, cut_end + MM_PAGE, RUN_END - cut_end - MM_PAGE, 82));
	close(fd);
}

struct storer {
	unsigned char *p;
	atomic_bool *stop;
	uint64_t seed;
};

static void *store_until_stopped(void *arg)
{
	struct storer *s = arg;

	while (!atomic_load(s->stop))
		mm_write_words(s->p, FILE_SIZE, 0, s->seed);
	return NULL;
}

TEST_F(mm, stores_racing_fsync_leave_no_page_writable)
{
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	struct storer storers[2];
	pthread_t threads[2];
	atomic_bool stop = false;
	struct mm_snap a, b, c;
	unsigned char *p;
	int syncs = 0;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fallocate(fd, 0, 0, FILE_SIZE));	/* zeros but the stored words */
	ASSERT_EQ(0, fsync(fd));
	p = mm_map(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	for (int i = 0; i < 2; i++) {
		storers[i] = (struct storer){ .p = p, .stop = &stop, .seed = 85 + i };
		ASSERT_EQ(0, pthread_create(&threads[i], NULL, store_until_stopped, &storers[i]));
	}
	for (time_t end = time(NULL) + 2; time(NULL) < end; syncs++)
		ASSERT_EQ(0, fsync(fd));
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_join(threads[i], NULL));
	ASSERT_EQ(0, fsync(fd));

	/* Whatever raced, the last fsync left every page write-protected: a
	 * page still writable behind a clean entry would take this store
	 * without a fault, and no later fsync would write it back. */
	mm_snap(&a);
	mm_write_words(p, FILE_SIZE, 0, 87);
	mm_snap_end(&b);
	ASSERT_EQ(0, fsync(fd));
	mm_snap(&c);
	TH_LOG("%d fsyncs raced the stores", syncs);
	TH_LOG("stores after the last: %s", mm_describe(&a, &b));
	EXPECT_LE((long)(FILE_SIZE / MM_PAGE), mm_faults(&a, &b));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LE((long long)(FILE_SIZE / MM_PAGE), refaults(&a, &b));
		EXPECT_LE((long long)(FILE_SIZE / MM_PAGE), mm_delta(&b, &c, MM_WRITEBACK_ENTRIES));
	}
	ASSERT_EQ(0, mm_unmap(p, FILE_SIZE));
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, mm_check_words_file(fd, 0, FILE_SIZE, 87));
	close(fd);
}

TEST_HARNESS_MAIN
