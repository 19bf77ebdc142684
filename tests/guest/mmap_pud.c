// SPDX-License-Identifier: GPL-2.0
/*
 * PUD (1 GiB) DAX mappings on oxdax (rust/dax/pud.rs), on a namespace of
 * 4 GiB (tests/host/mmap_pud.sh boots one; on a smaller test disk every
 * test skips, as on ext4 and xfs, which map 2 MiB at most):
 *  - the kernel chooses an address congruent with the file offset modulo
 *    1 GiB for a mapping that covers an aligned GiB of the file, and
 *    modulo 2 MiB only for a smaller one;
 *  - a fallocated GiB, stored to through a shared mapping: one PUD fault
 *    (fault_pud), a handful of page faults for stores all over it; the
 *    data is right through read(2) and after a remount; fsync writes it back and
 *    the next store maps the PUD again; a new read-only mapping of the
 *    written GiB maps a PUD too, and a store through a shared one makes
 *    it writable;
 *  - with MAP_SYNC the store maps the PUD after the conversion's metadata
 *    was made durable (fault_sync);
 *  - removals of mappings of part of a PUD-mapped GiB work and leave no
 *    kernel warning (core mm removes a PUD from the file side only whole,
 *    so oxdax removes the GiB): a private mapping's copy-on-write, writeback
 *    of a dirty page (the next access maps the PUD again), fork, a punched
 *    hole, truncation into the GiB; a fixed address is kept, even 0;
 *  - a hole in a GiB a PUD could map reads through PMDs of zeros, write(2)
 *    there shows through the mapping, and a store into the sparse file
 *    allocates 2 MiB, not a GiB;
 *  - a page poisoned through a second mapping of the file (PMDs): the
 *    failed page raises SIGBUS through the PUD's GiB, the rest reads;
 *  - a mapping whose address is not congruent modulo 1 GiB falls back to
 *    PMDs (fault_pud_fallback), with the data right.
 */
#include <linux/falloc.h>
#include <sys/sysmacros.h>

#ifndef MADV_HWPOISON
#define MADV_HWPOISON 100
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#include "kselftest_harness.h"
#include "oxdax_mmap.h"

#define GIB (1024 * MIB)

/* Bytes of the test disk, 0 if unknown. */
static uint64_t disk_bytes(void)
{
	char path[128], buf[64];

	snprintf(path, sizeof(path), "/sys/block/%s/size", strrchr(fs_disk(), '/') + 1);
	if (read_text(path, buf, sizeof(buf)))
		return 0;
	return strtoull(buf, NULL, 0) * 512;
}

FIXTURE(pud) {};

FIXTURE_SETUP(pud)
{
	if (!fs_is("oxdax"))
		SKIP(return, "%s maps 2 MiB at most", fs_type());
	/* The disk exists once the module is loaded. */
	ASSERT_EQ(0, fs_begin());
	if (disk_bytes() < 3 * GIB) {
		EXPECT_EQ(0, fs_end());
		SKIP(return, "needs a namespace of 3 GiB or more (tests/host/mmap_pud.sh)");
	}
}

FIXTURE_TEARDOWN(pud)
{
	mm_unmap_all();
	if (fs_mounted())
		EXPECT_EQ(0, fs_end());
}

static long long counter(int which)
{
	return mm_counter(which ? "fault_pud_fallback" : "fault_pud");
}

/* A file of @size bytes, fallocated. */
static int gib_file(const char *name, size_t size)
{
	int fd = open(fs_path("%s", name), O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return -1;
	if (fallocate(fd, 0, 0, size) || fsync(fd)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Stores the pattern word under @seed at every 64 KiB of @p (file @off). */
static void store_words(unsigned char *p, size_t len, off_t off, uint64_t seed)
{
	for (size_t i = 0; i < len; i += 64 * KIB)
		*(volatile uint64_t *)(p + i) = oxdax_pattern(off + i, seed);
}

/* First 64 KiB step of [@off, @off + @len) of @fd that read(2) does not
 * show with the pattern under @seed (the rest of its page zero), or -1. */
static long long check_words(int fd, off_t off, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i += 64 * KIB) {
		long long bad = mm_check_words_file(fd, off + i, MM_PAGE, seed);

		if (bad >= 0)
			return bad;
	}
	return -1;
}

/* The fallocated GiB file "f", mapped shared at a kernel-chosen address and
 * stored to; one PUD fault. */
static unsigned char *written_gib(struct __test_metadata *_metadata, int *fd, uint64_t seed)
{
	long long before, faults;
	struct mm_snap a, b;
	unsigned char *p;

	*fd = gib_file("f", GIB);
	if (*fd < 0)
		return NULL;
	p = mm_map(NULL, GIB, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	if (p == MAP_FAILED)
		return NULL;
	before = counter(0);
	mm_snap(&a);
	store_words(p, GIB, 0, seed);
	mm_snap_end(&b);
	faults = mm_faults(&a, &b);
	TH_LOG("stores to a fallocated GiB: %lld PUD, %s", counter(0) - before,
	       mm_describe(&a, &b));
	EXPECT_EQ(1, counter(0) - before);
	EXPECT_EQ(0, mm_delta(&a, &b, MM_FAULT_PMD));
	EXPECT_GE(8, faults);
	return p;
}

TEST_F(pud, kernel_chosen_address_is_gib_aligned)
{
	int fd = gib_file("f", 2 * GIB);
	unsigned char *p, *q, *r;

	ASSERT_LE(0, fd);
	p = mm_map(NULL, GIB + 2 * MIB, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	/* From 2 MiB to the end: the GiB at file offset 1 GiB is covered. */
	q = mm_map(NULL, 2 * GIB - 2 * MIB, PROT_READ, MAP_SHARED, fd, 2 * MIB);
	ASSERT_NE(MAP_FAILED, q);
	/* Less than an aligned GiB of the file: 2 MiB alignment only. */
	r = mm_map(NULL, 64 * MIB, PROT_READ, MAP_SHARED, fd, 4 * MIB);
	ASSERT_NE(MAP_FAILED, r);
	TH_LOG("%p %p %p", p, q, r);
	/* A fixed address is the caller's, even 0: mapped there or refused
	 * (mmap_min_addr), never elsewhere. */
	void *z = mmap(NULL, GIB + 2 * MIB, PROT_READ, MAP_SHARED | MAP_FIXED_NOREPLACE, fd,
		       256 * MIB);

	EXPECT_TRUE(z == NULL || z == MAP_FAILED) TH_LOG("at %p (%s)", z, strerror(errno));
	if (z == NULL)
		munmap(z, GIB + 2 * MIB);
	EXPECT_EQ(0, (uintptr_t)p % GIB);
	EXPECT_EQ(2 * MIB, (uintptr_t)q % GIB);
	EXPECT_EQ(0, (uintptr_t)r % MM_PMD);
	close(fd);
}

TEST_F(pud, fallocated_gib_maps_one_pud_and_keeps_its_data)
{
	long long before;
	unsigned char *p, *q;
	int fd;

	p = written_gib(_metadata, &fd, 301);
	ASSERT_NE(NULL, p);
	EXPECT_EQ(-1, check_words(fd, 0, GIB, 301));
	/* fsync writes back and removes the mapping; a store maps it again. */
	ASSERT_EQ(0, fsync(fd));
	before = counter(0);
	store_words(p + 5 * MIB, 4 * MIB, 5 * MIB, 302);
	EXPECT_EQ(1, counter(0) - before);
	ASSERT_EQ(0, fsync(fd));
	/* A second mapping reads it with a PUD; a store makes it writable. */
	q = mm_map(NULL, GIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, q);
	before = counter(0);
	EXPECT_EQ(oxdax_pattern(6 * MIB, 302), *(volatile uint64_t *)(q + 6 * MIB));
	EXPECT_EQ(oxdax_pattern(GIB - 64 * KIB, 301), *(volatile uint64_t *)(q + GIB - 64 * KIB));
	EXPECT_EQ(1, counter(0) - before);
	q[12345] = 7;
	EXPECT_EQ(2, counter(0) - before);
	EXPECT_EQ(7, p[12345]);
	ASSERT_EQ(0, mm_unmap(p, GIB));
	ASSERT_EQ(0, mm_unmap(q, GIB));
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, check_words(fd, 9 * MIB, GIB - 9 * MIB, 301));
	EXPECT_EQ(-1, check_words(fd, 5 * MIB, 4 * MIB - 64 * KIB, 302));
	close(fd);
}

TEST_F(pud, map_sync_store_maps_a_pud)
{
	struct mm_snap a, b;
	long long before;
	unsigned char *p;
	int fd = gib_file("f", GIB);

	ASSERT_LE(0, fd);
	p = mm_map(NULL, GIB, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	before = counter(0);
	mm_snap(&a);
	p[GIB / 2] = 0x33;
	mm_snap_end(&b);
	EXPECT_EQ(1, counter(0) - before);
	/* The conversion's metadata was durable before the PUD was writable. */
	EXPECT_EQ(1, mm_delta(&a, &b, MM_FAULT_SYNC));
	close(fd);
}

TEST_F(pud, removals_inside_a_pud_mapped_gib)
{
	unsigned char *p, *priv;
	long long before;
	int fd, status;
	pid_t pid;

	p = written_gib(_metadata, &fd, 303);
	ASSERT_NE(NULL, p);
	/* A private mapping reads with a PUD; its store copies one page. */
	priv = mm_map(NULL, GIB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ASSERT_NE(MAP_FAILED, priv);
	before = counter(0);
	EXPECT_EQ(oxdax_pattern(0, 303), *(volatile uint64_t *)priv);
	EXPECT_EQ(1, counter(0) - before);
	priv[100 * MIB] = 0x77;
	EXPECT_EQ(oxdax_pattern(100 * MIB, 303) & 0xff, p[100 * MIB]);
	/* A store through the writable PUD, written back: the whole GiB is
	 * unmapped, and maps with a PUD again. */
	p[500 * MIB] = 1;
	ASSERT_EQ(0, fdatasync(fd));
	before = counter(0);
	EXPECT_EQ(1, p[500 * MIB]);
	EXPECT_EQ(1, counter(0) - before);
	/* A child reads through the inherited mappings. */
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(p[500 * MIB] == 1 && priv[100 * MIB] == 0x77 ? 0 : 1);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* Punch 4 KiB out of the PUD-mapped GiB: it reads as zeros, the rest
	 * stays, and so does the private copy. */
	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 300 * MIB,
			       MM_PAGE));
	EXPECT_EQ(0, *(volatile uint64_t *)(p + 300 * MIB));
	EXPECT_EQ(oxdax_pattern(300 * MIB + 64 * KIB, 303),
		  *(volatile uint64_t *)(p + 300 * MIB + 64 * KIB));
	EXPECT_EQ(0x77, priv[100 * MIB]);
	EXPECT_EQ(-1, check_words(fd, 301 * MIB, 100 * MIB, 303));
	close(fd);
}

TEST_F(pud, truncation_into_a_pud_mapped_gib)
{
	unsigned char page[MM_PAGE];
	unsigned char *p;
	int fd;

	p = written_gib(_metadata, &fd, 305);
	ASSERT_NE(NULL, p);
	ASSERT_EQ(0, ftruncate(fd, 700 * MIB + 100));
	EXPECT_EQ(oxdax_pattern(600 * MIB, 305), *(volatile uint64_t *)(p + 600 * MIB));
	EXPECT_EQ(SIGBUS, mm_touch(p + 800 * MIB, false, 0));
	EXPECT_EQ(MM_PAGE, pread(fd, page, MM_PAGE, 700 * MIB - MM_PAGE));
	close(fd);
}

TEST_F(pud, write_into_a_hole_of_a_gib_a_pud_could_map)
{
	long long fallbacks;
	unsigned char *p;
	uint64_t word = 0x1122334455667788ull;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT | O_TRUNC, 0644);

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, GIB));
	p = mm_map(NULL, GIB, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, (uintptr_t)p % GIB);
	/* A hole: no PUD (no 1 GiB zero page), PMDs of zeros. */
	fallbacks = counter(1);
	EXPECT_EQ(0, *(volatile uint64_t *)(p + 10 * MIB));
	EXPECT_LE(1, counter(1) - fallbacks);
	EXPECT_EQ(8, pwrite(fd, &word, 8, 10 * MIB));
	EXPECT_EQ(word, *(volatile uint64_t *)(p + 10 * MIB));
	/* A store into the sparse file allocates 2 MiB, not a GiB. */
	close(fd);
	fd = open(fs_path("f"), O_RDWR);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, mm_unmap(p, GIB));
	p = mm_map(NULL, GIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	p[700 * MIB] = 9;
	EXPECT_GT(64 * MIB / 512, mm_blocks(fd)) TH_LOG("st_blocks %lld", mm_blocks(fd));
	close(fd);
}

static int poison_page(void *addr)
{
	return madvise(addr, MM_PAGE, MADV_HWPOISON) ? 1 : 0;
}

TEST_F(pud, poison_inside_a_pud_mapped_gib)
{
	unsigned char *p, *q;
	long long before;
	int fd, status;

	p = written_gib(_metadata, &fd, 306);
	ASSERT_NE(NULL, p);
	/* Another mapping of the file maps it with PMDs (not congruent). */
	q = mm_mmap_aligned(GIB, PROT_READ, MAP_SHARED, fd, 0, 2 * MIB);
	ASSERT_NE(MAP_FAILED, q);
	mm_remember(q, GIB);
	ASSERT_NE(0, (uintptr_t)q % GIB);
	before = counter(0);
	EXPECT_EQ(oxdax_pattern(50 * MIB, 306), *(volatile uint64_t *)(q + 50 * MIB));
	EXPECT_EQ(0, counter(0) - before);
	/* Poisoned through the PMD mapping, in a child (it may get SIGBUS). */
	status = mm_child(poison_page, q + 50 * MIB, 60);
	EXPECT_TRUE(status == 0 || status == 128 + SIGBUS) TH_LOG("child: %d", status);
	/* The failed page raises SIGBUS through the PUD's GiB; the rest reads. */
	EXPECT_EQ(SIGBUS, mm_touch(p + 50 * MIB, false, 0));
	EXPECT_EQ(oxdax_pattern(60 * MIB, 306), *(volatile uint64_t *)(p + 60 * MIB));
	EXPECT_EQ(oxdax_pattern(2 * MIB, 306), *(volatile uint64_t *)(q + 2 * MIB));
	close(fd);
}

TEST_F(pud, misaligned_mapping_falls_back_to_pmds)
{
	struct mm_snap a, b;
	long long before, fallbacks;
	unsigned char *p;
	int fd = gib_file("f", GIB);

	ASSERT_LE(0, fd);
	/* 2 MiB-aligned, not 1 GiB: at 2 MiB past a GiB boundary. */
	p = mm_mmap_aligned(GIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0, 0);
	ASSERT_NE(MAP_FAILED, p);
	mm_remember(p, GIB);
	if ((uintptr_t)p % GIB == 0) {
		ASSERT_EQ(0, mm_unmap(p, GIB));
		p = mm_mmap_aligned(GIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0, 2 * MIB);
		ASSERT_NE(MAP_FAILED, p);
		mm_remember(p, GIB);
	}
	ASSERT_NE(0, (uintptr_t)p % GIB);
	before = counter(0);
	fallbacks = counter(1);
	mm_snap(&a);
	store_words(p, 64 * MIB, 0, 304);
	mm_snap_end(&b);
	EXPECT_EQ(0, counter(0) - before);
	EXPECT_LE(1, counter(1) - fallbacks);
	EXPECT_EQ(32, mm_delta(&a, &b, MM_FAULT_PMD));
	EXPECT_EQ(-1, check_words(fd, 0, 64 * MIB, 304));
	close(fd);
}

TEST_HARNESS_MAIN
