// SPDX-License-Identifier: GPL-2.0
/*
 * DAX page faults of shared file mappings:
 *  - a load from a hole reads zeros and allocates nothing (st_blocks
 *    unchanged; oxdax counts fault_zero);
 *  - a store to a hole allocates (st_blocks grows; oxdax counts fault_pte
 *    or fault_pmd) and read(2) sees the data;
 *  - a hole loaded (zero page) then stored to: the zero page is replaced
 *    everywhere: in the storing mapping, in a second mapping that had loaded
 *    the hole too, for read(2) and in another process;
 *  - many threads store-faulting the same pages of a hole at once allocate
 *    each block once: st_blocks equals a single-threaded run's, FIEMAP maps
 *    exactly the file, and no thread's store is lost;
 *  - write(2) into a hole that a mapping has loaded: the mapping shows it;
 *  - past EOF: SIGBUS for loads and stores (the page holding EOF works and
 *    does not move EOF); after the file grows, the same pages work;
 *  - fork: the child's stores through the inherited mapping are the
 *    parent's, even where the parent had loaded zero pages;
 *  - mprotect(PROT_READ): a store raises SIGSEGV (SEGV_ACCERR) and changes
 *    nothing; PROT_WRITE again lets it through;
 *  - mremap (grow, move, shrink) keeps the data and the file connection.
 *
 * OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h); the counter
 * assertions are oxdax's only (tests/lib/oxdax_mmap.h).
 */
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sys/ioctl.h>

#include "kselftest_harness.h"
#include "oxdax_mmap.h"

/* Bytes of [@start, @end) of @fd that FIEMAP shows mapped; -1 on error. */
static long long fiemap_bytes(int fd, uint64_t start, uint64_t end)
{
	static struct {
		struct fiemap map;
		struct fiemap_extent ext[512];
	} e;
	long long total = 0;

	memset(&e, 0, sizeof(e));
	e.map.fm_start = start;
	e.map.fm_length = end - start;
	e.map.fm_flags = FIEMAP_FLAG_SYNC;
	e.map.fm_extent_count = 512;
	if (ioctl(fd, FS_IOC_FIEMAP, &e.map))
		return -1;
	for (unsigned int i = 0; i < e.map.fm_mapped_extents; i++) {
		uint64_t s = e.ext[i].fe_logical, l = e.ext[i].fe_length;

		if (s < start) {
			l -= start - s;
			s = start;
		}
		if (s + l > end)
			l = end - s;
		total += l;
	}
	return total;
}

MM_FIXTURE(mm);

TEST_F(mm, hole_load_reads_zeros_allocates_nothing)
{
	const size_t size = 8 * MIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	struct mm_snap a, b;
	long long blocks;
	unsigned char *p, *r;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, size));
	ASSERT_EQ(0, fsync(fd));
	blocks = mm_blocks(fd);
	p = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);

	mm_snap(&a);
	EXPECT_EQ(0, mm_read_pages(p, size));
	mm_snap_end(&b);
	TH_LOG("loads of an 8 MiB hole: %s", mm_describe(&a, &b));
	EXPECT_TRUE(fs_all_zero(p, size));
	EXPECT_EQ(blocks, mm_blocks(fd));
	ASSERT_EQ(0, fsync(fd));
	EXPECT_EQ(blocks, mm_blocks(fd));
	EXPECT_TRUE(mm_file_zero(fd, 0, size));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LT(0, mm_delta(&a, &b, MM_FAULT_ZERO));
		EXPECT_EQ(0, mm_delta(&a, &b, MM_FAULT_PTE));
		EXPECT_EQ(0, mm_delta(&a, &b, MM_FAULT_PMD));
	}

	/* A read-only mapping of a read-only descriptor too. */
	close(fd);
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	r = mm_map(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, r);
	EXPECT_EQ(0, mm_read_pages(r + 4 * KIB, size - 4 * KIB));
	EXPECT_TRUE(fs_all_zero(r, size));
	EXPECT_EQ(blocks, mm_blocks(fd));
	close(fd);
}

TEST_F(mm, store_to_hole_allocates)
{
	static const size_t at[] = { 100 * KIB, MIB + 4 * KIB, 3 * MIB + 8 * KIB + 100 };
	const size_t size = 4 * MIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	struct mm_snap a, b;
	long long blocks;
	unsigned char *p, buf[64];

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, size));
	ASSERT_EQ(0, fsync(fd));
	blocks = mm_blocks(fd);
	p = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);

	mm_snap(&a);
	for (size_t i = 0; i < ARRAY_SIZE(at); i++)
		fs_fill(p + at[i], 64, at[i], 9);
	mm_snap_end(&b);
	TH_LOG("three stores to a hole: %s; st_blocks %lld -> %lld", mm_describe(&a, &b),
	       blocks, mm_blocks(fd));
	EXPECT_LE(blocks + (long long)ARRAY_SIZE(at) * 8, mm_blocks(fd));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LT(0, mm_delta(&a, &b, MM_FAULT_PTE) + mm_delta(&a, &b, MM_FAULT_PMD));
	}

	for (size_t i = 0; i < ARRAY_SIZE(at); i++) {
		ASSERT_EQ(64, pread(fd, buf, 64, at[i]));
		EXPECT_EQ(-1, fs_check_fill(buf, 64, at[i], 9)) TH_LOG("store at %zu", at[i]);
		EXPECT_TRUE(mm_file_zero(fd, at[i] & ~(MM_PAGE - 1), at[i] & (MM_PAGE - 1)));
		EXPECT_TRUE(mm_file_zero(fd, at[i] + 64, MM_PAGE - ((at[i] + 64) & (MM_PAGE - 1))));
	}
	ASSERT_EQ(0, mm_unmap(p, size));
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	for (size_t i = 0; i < ARRAY_SIZE(at); i++) {
		ASSERT_EQ(64, pread(fd, buf, 64, at[i]));
		EXPECT_EQ(-1, fs_check_fill(buf, 64, at[i], 9)) TH_LOG("store at %zu", at[i]);
	}
	close(fd);
}

struct expect_fill {
	off_t off;
	size_t len;
	uint64_t seed;
};

/* Child: maps the file itself and checks one pattern range. */
static int child_checks_fill(void *arg)
{
	const struct expect_fill *e = arg;
	int fd = open(fs_path("f"), O_RDONLY);
	off_t base = e->off & ~(off_t)(MM_PAGE - 1);
	size_t len = e->off - base + e->len;
	unsigned char *p;

	if (fd < 0)
		return 10;
	p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, base);
	if (p == MAP_FAILED)
		return 11;
	return fs_check_fill(p + (e->off - base), e->len, e->off, e->seed) == -1 ? 0 : 12;
}

TEST_F(mm, hole_load_then_store_replaces_zero_page)
{
	const size_t size = MIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	struct expect_fill e = { 20 * KIB + 30, 3000, 10 };
	struct mm_snap a, b;
	unsigned char *p, *q, buf[3000];

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, size));
	p = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	q = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, q);

	/* Both mappings load the hole: zero pages. */
	mm_snap(&a);
	EXPECT_TRUE(fs_all_zero(p, size));
	EXPECT_TRUE(fs_all_zero(q, size));
	mm_snap_end(&b);
	TH_LOG("loads: %s", mm_describe(&a, &b));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LT(0, mm_delta(&a, &b, MM_FAULT_ZERO));
	}

	/* A store through one replaces the zero page in both. */
	mm_snap(&a);
	fs_fill(p + e.off, e.len, e.off, e.seed);
	mm_snap_end(&b);
	TH_LOG("store: %s", mm_describe(&a, &b));
	EXPECT_EQ(-1, fs_check_fill(p + e.off, e.len, e.off, e.seed));
	EXPECT_EQ(-1, fs_check_fill(q + e.off, e.len, e.off, e.seed));
	EXPECT_TRUE(fs_all_zero(q, e.off));
	EXPECT_TRUE(fs_all_zero(q + e.off + e.len, size - e.off - e.len));
	ASSERT_EQ((ssize_t)e.len, pread(fd, buf, e.len, e.off));
	EXPECT_EQ(-1, fs_check_fill(buf, e.len, e.off, e.seed));
	EXPECT_EQ(0, mm_child(child_checks_fill, &e, 30));

	/* And the other way round, on another page. */
	e.off = 900 * KIB + 4000;
	e.seed = 11;
	fs_fill(q + e.off, e.len, e.off, e.seed);
	EXPECT_EQ(-1, fs_check_fill(p + e.off, e.len, e.off, e.seed));
	ASSERT_EQ((ssize_t)e.len, pread(fd, buf, e.len, e.off));
	EXPECT_EQ(-1, fs_check_fill(buf, e.len, e.off, e.seed));
	EXPECT_EQ(0, mm_child(child_checks_fill, &e, 30));
	close(fd);
}

#define NR_THREADS 8
#define RACE_SIZE MIB	/* under 2 MiB: no PMD fault can be involved */
#define RACE_META_SECTORS 64	/* st_blocks for mapping metadata, at most */

struct racer {
	unsigned char *map;
	unsigned int id;
	pthread_barrier_t *start;
};

/* Every thread stores its word into every page, each starting elsewhere. */
static void race_stores(unsigned char *map, unsigned int id)
{
	const size_t pages = RACE_SIZE / MM_PAGE;

	for (size_t n = 0; n < pages; n++) {
		size_t page = (n + id * pages / NR_THREADS) % pages;
		size_t at = page * MM_PAGE + id * 64;

		*(volatile uint64_t *)(map + at) = oxdax_pattern(at, 12);
	}
}

static void *racer_main(void *arg)
{
	struct racer *r = arg;

	pthread_barrier_wait(r->start);
	race_stores(r->map, r->id);
	return NULL;
}

/* First file offset of a word some thread stored and is not there, or -1. */
static long long race_lost(int fd)
{
	static unsigned char buf[RACE_SIZE];

	if (pread(fd, buf, RACE_SIZE, 0) != RACE_SIZE)
		return 0;
	for (size_t page = 0; page < RACE_SIZE; page += MM_PAGE) {
		for (unsigned int id = 0; id < NR_THREADS; id++) {
			size_t at = page + id * 64;
			uint64_t word;

			memcpy(&word, buf + at, 8);
			if (word != oxdax_pattern(at, 12))
				return at;
		}
	}
	return -1;
}

TEST_F(mm, concurrent_store_faults_allocate_once)
{
	pthread_t threads[NR_THREADS];
	struct racer racers[NR_THREADS];
	pthread_barrier_t start;
	long long ref_blocks, blocks;
	uint64_t before, after;
	unsigned char *p;
	int ref, fd;

	sync();
	before = fs_free_blocks(0);
	/* The reference: the same stores from one thread. */
	ref = open(fs_path("ref"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, ref);
	ASSERT_EQ(0, ftruncate(ref, RACE_SIZE));
	p = mm_map(NULL, RACE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ref, 0);
	ASSERT_NE(MAP_FAILED, p);
	for (unsigned int id = 0; id < NR_THREADS; id++)
		race_stores(p, id);
	ASSERT_EQ(0, mm_unmap(p, RACE_SIZE));
	ASSERT_EQ(0, fsync(ref));
	ref_blocks = mm_blocks(ref);
	EXPECT_EQ(-1, race_lost(ref));

	fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, RACE_SIZE));
	p = mm_map(NULL, RACE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, pthread_barrier_init(&start, NULL, NR_THREADS));
	for (unsigned int id = 0; id < NR_THREADS; id++) {
		racers[id] = (struct racer){ p, id, &start };
		ASSERT_EQ(0, pthread_create(&threads[id], NULL, racer_main, &racers[id]));
	}
	for (unsigned int id = 0; id < NR_THREADS; id++)
		ASSERT_EQ(0, pthread_join(threads[id], NULL));
	pthread_barrier_destroy(&start);

	EXPECT_EQ(-1, race_lost(fd));
	ASSERT_EQ(0, mm_unmap(p, RACE_SIZE));
	ASSERT_EQ(0, fsync(fd));
	blocks = mm_blocks(fd);
	TH_LOG("st_blocks: %d threads %lld, one thread %lld; FIEMAP %lld bytes", NR_THREADS,
	       blocks, ref_blocks, fiemap_bytes(fd, 0, RACE_SIZE));
	/*
	 * Each page's block is mapped once: FIEMAP maps exactly the file, and
	 * st_blocks is that plus at most a few blocks of mapping metadata (the
	 * racers' allocation order may fragment the file more than one
	 * thread's: xfs then needs a bmbt block, 2056 against 2048).
	 */
	EXPECT_EQ((long long)RACE_SIZE, fiemap_bytes(fd, 0, RACE_SIZE));
	EXPECT_LE((long long)RACE_SIZE / 512, blocks);
	EXPECT_GE((long long)RACE_SIZE / 512 + RACE_META_SECTORS, blocks);
	EXPECT_GE((long long)RACE_SIZE / 512 + RACE_META_SECTORS, ref_blocks);
	close(fd);
	close(ref);

	/* Nothing lost across a remount. */
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, race_lost(fd));
	EXPECT_EQ(blocks, mm_blocks(fd));
	close(fd);

	/* No block leaked: with both files gone the free space is back (the
	 * fsck after the test checks the allocation maps too). */
	ASSERT_EQ(0, unlink(fs_path("f")));
	ASSERT_EQ(0, unlink(fs_path("ref")));
	after = fs_free_blocks(before);
	TH_LOG("free blocks: before %llu, after both files were removed %llu",
	       (unsigned long long)before, (unsigned long long)after);
	EXPECT_LE(before, after + (fs_is("xfs") ? 64 : 0));
}

TEST_F(mm, write_into_loaded_hole_shows_in_mapping)
{
	const size_t size = MIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	unsigned char *p, buf[10000];
	long long blocks;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, size));
	ASSERT_EQ(0, fsync(fd));
	blocks = mm_blocks(fd);
	p = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, mm_read_pages(p, size));

	fs_fill(buf, sizeof(buf), 5000, 13);
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(fd, buf, sizeof(buf), 5000));
	EXPECT_LT(blocks, mm_blocks(fd));
	EXPECT_EQ(-1, fs_check_fill(p + 5000, sizeof(buf), 5000, 13));
	EXPECT_TRUE(fs_all_zero(p, 5000));
	EXPECT_TRUE(fs_all_zero(p + 15000, size - 15000));

	/* Again at the end of the file, into a page loaded just before. */
	EXPECT_EQ(0, p[size - 1]);
	fs_fill(buf, 100, size - 100, 14);
	ASSERT_EQ(100, pwrite(fd, buf, 100, size - 100));
	EXPECT_EQ(-1, fs_check_fill(p + size - 100, 100, size - 100, 14));
	close(fd);
}

TEST_F(mm, past_eof_sigbus)
{
	const size_t size = 10000;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	unsigned char *p, buf[64];

	ASSERT_LE(0, fd);
	ASSERT_EQ(size, fs_write_pattern(fd, 0, size, 15));
	p = mm_map(NULL, 16 * KIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);

	/* The page holding EOF: data, zeros after it; a store there keeps EOF. */
	EXPECT_EQ(0, mm_load_sig(p + size - 1));
	EXPECT_EQ(-1, fs_check_fill(p, size, 0, 15));
	EXPECT_TRUE(fs_all_zero(p + size, 12 * KIB - size));
	EXPECT_EQ(0, mm_store_sig(p + size + 1000, 0x3c));
	EXPECT_EQ((off_t)size, fs_size_of(fd));
	EXPECT_EQ(0, pread(fd, buf, sizeof(buf), size));

	/* The next page: SIGBUS, at the address, for loads and stores. */
	EXPECT_EQ(SIGBUS, mm_load_sig(p + 12 * KIB));
	EXPECT_EQ(p + 12 * KIB, mm_sig_addr);
	EXPECT_EQ(SIGBUS, mm_store_sig(p + 12 * KIB + 77, 1));
	EXPECT_EQ(p + 12 * KIB + 77, mm_sig_addr);
	EXPECT_EQ((off_t)size, fs_size_of(fd));

	/* Grown: the same page maps (a hole: zeros) and takes stores. */
	ASSERT_EQ(0, ftruncate(fd, 16 * KIB));
	EXPECT_EQ(0, mm_load_sig(p + 12 * KIB));
	EXPECT_TRUE(fs_all_zero(p + 12 * KIB, 4 * KIB));
	EXPECT_EQ(0, mm_store_sig(p + 12 * KIB + 77, 0x9d));
	ASSERT_EQ(1, pread(fd, buf, 1, 12 * KIB + 77));
	EXPECT_EQ(0x9d, buf[0]);
	EXPECT_EQ(-1, fs_check_fill(p, size, 0, 15));
	close(fd);

	/* An empty file: its first page already raises SIGBUS. */
	fd = open(fs_path("empty"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, fd);
	p = mm_map(NULL, 8 * KIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(SIGBUS, mm_load_sig(p));
	EXPECT_EQ(SIGBUS, mm_store_sig(p + 4097, 1));
	EXPECT_EQ(0, fs_size_of(fd));
	EXPECT_EQ(0, mm_blocks(fd));
	close(fd);
}

static unsigned char *fork_map;

static int child_stores(void *arg)
{
	(void)arg;
	fs_fill(fork_map, MIB, 0, 16);
	return 0;
}

TEST_F(mm, fork_child_stores_seen_by_parent)
{
	const size_t size = MIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	unsigned char *p;

	ASSERT_LE(0, fd);
	/* Half written, half hole; the parent loads all of it first. */
	ASSERT_EQ(size / 2, fs_write_pattern(fd, 0, size / 2, 17));
	ASSERT_EQ(0, ftruncate(fd, size));
	p = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(-1, fs_check_fill(p, size / 2, 0, 17));
	EXPECT_TRUE(fs_all_zero(p + size / 2, size / 2));

	fork_map = p;
	ASSERT_EQ(0, mm_child(child_stores, NULL, 30));
	EXPECT_EQ(-1, fs_check_fill(p, size, 0, 16));
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, size, 16));

	/* And the parent's stores after the fork reach the file too. */
	memset(p + 300 * KIB, 0xc3, 8 * KIB);
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, 300 * KIB, 16));
	EXPECT_EQ(-1, fs_check_pattern(fd, 308 * KIB, size - 308 * KIB, 16));
	close(fd);
}

TEST_F(mm, mprotect_readonly_store_sigsegv)
{
	const size_t size = 64 * KIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	unsigned char *p, buf[1];

	ASSERT_LE(0, fd);
	ASSERT_EQ(size, fs_write_pattern(fd, 0, size, 18));
	p = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, mm_store_sig(p + 100, 0x42));	/* a writable PTE now */

	ASSERT_EQ(0, mprotect(p, size, PROT_READ));
	EXPECT_EQ(SIGSEGV, mm_store_sig(p + 100, 0x43));
	EXPECT_EQ(SEGV_ACCERR, mm_sig_code);
	EXPECT_EQ(p + 100, mm_sig_addr);
	EXPECT_EQ(SIGSEGV, mm_store_sig(p + 40 * KIB, 0x44));	/* never faulted */
	EXPECT_EQ(0, mm_load_sig(p + 100));
	EXPECT_EQ(0x42, p[100]);
	EXPECT_EQ(-1, fs_check_fill(p + 40 * KIB, 4 * KIB, 40 * KIB, 18));
	ASSERT_EQ(1, pread(fd, buf, 1, 100));
	EXPECT_EQ(0x42, buf[0]);

	ASSERT_EQ(0, mprotect(p, size, PROT_READ | PROT_WRITE));
	EXPECT_EQ(0, mm_store_sig(p + 100, 0x45));
	EXPECT_EQ(0, mm_store_sig(p + 40 * KIB, 0x46));
	ASSERT_EQ(1, pread(fd, buf, 1, 100));
	EXPECT_EQ(0x45, buf[0]);
	ASSERT_EQ(1, pread(fd, buf, 1, 40 * KIB));
	EXPECT_EQ(0x46, buf[0]);
	close(fd);
}

TEST_F(mm, mremap_keeps_data)
{
	const size_t size = 4 * MIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	unsigned char *p, *q, *r, *spot, buf[64];

	ASSERT_LE(0, fd);
	ASSERT_EQ(size, fs_write_pattern(fd, 0, size, 19));
	p = mm_map(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	fs_fill(p, 64 * KIB, 0, 20);

	/* Grow (it may move). */
	q = mremap(p, MIB, size, MREMAP_MAYMOVE);
	ASSERT_NE(MAP_FAILED, q);
	mm_forget(p);
	mm_remember(q, size);
	EXPECT_EQ(-1, fs_check_fill(q, 64 * KIB, 0, 20));
	EXPECT_EQ(-1, fs_check_fill(q + 64 * KIB, size - 64 * KIB, 64 * KIB, 19));
	memcpy(q + 3 * MIB, "grown", 5);
	ASSERT_EQ(5, pread(fd, buf, 5, 3 * MIB));
	EXPECT_EQ(0, memcmp(buf, "grown", 5));

	/* Move to a chosen place: the old addresses are gone. */
	spot = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, spot);
	r = mremap(q, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, spot);
	ASSERT_EQ(spot, r);
	mm_forget(q);
	mm_remember(r, size);
	EXPECT_EQ(SIGSEGV, mm_load_sig(q + 100));
	EXPECT_EQ(-1, fs_check_fill(r, 64 * KIB, 0, 20));
	EXPECT_EQ(0, memcmp(r + 3 * MIB, "grown", 5));
	EXPECT_EQ(-1, fs_check_fill(r + 3 * MIB + 5, MIB - 5, 3 * MIB + 5, 19));
	memcpy(r + MIB + 5, "moved", 5);
	ASSERT_EQ(5, pread(fd, buf, 5, MIB + 5));
	EXPECT_EQ(0, memcmp(buf, "moved", 5));

	/* Shrink: the tail is gone, the head stays. */
	ASSERT_EQ(r, mremap(r, size, 2 * MIB, 0));
	mm_forget(r);
	mm_remember(r, 2 * MIB);
	EXPECT_EQ(SIGSEGV, mm_load_sig(r + 3 * MIB));
	EXPECT_EQ(0, memcmp(r + MIB + 5, "moved", 5));
	EXPECT_EQ(-1, fs_check_fill(r, 64 * KIB, 0, 20));
	close(fd);
}

TEST_HARNESS_MAIN
