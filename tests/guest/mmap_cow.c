// SPDX-License-Identifier: GPL-2.0
/*
 * Stores through DAX mappings of reflinked (shared) extents copy them:
 *  - FICLONE A->B, store through B's mapping: A keeps its data (through
 *    read(2), through A's mapping here and in another process); on oxdax
 *    fault_cow grows;
 *  - a store through A's mapping after the clone (A's page was writable and
 *    dirty before it) leaves B alone;
 *  - clone again after a copy: the next store through the same writable
 *    mapping faults and copies again (fault_cow grows again);
 *  - write(2) to a shared range that another process has mapped: that
 *    mapping shows the new data, the clone keeps the old;
 *  - reflink (FICLONE, FICLONERANGE) into a destination that is mapped,
 *    with loaded and stored pages: the mapping shows the cloned data, and
 *    a store through it then copies;
 *  - the same with 2 MiB-aligned extents in a PMD-eligible mapping;
 *  - a 4 KiB store through a PTE mapping, and a 4 KiB write(2), into a
 *    cloned 2 MiB region copy the whole region (on oxdax: FIEMAP shows it
 *    unshared and 2 MiB-aligned, the next region still shared; the store
 *    only with oxdax's own fault engine), after
 *    the region's other pages were mapped: they show the file's data
 *    and a store to one of them copies nothing more.
 * Each test checks the files again after a remount.
 *
 * ext4 has no reflink: there every test is skipped. OXDAX_FS chooses the
 * filesystem (tests/lib/oxdax_fs.h); the counter assertions are oxdax's
 * only (tests/lib/oxdax_mmap.h).
 */
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include "kselftest_harness.h"
#include "oxdax_mmap.h"

MM_FIXTURE(mm);

/* Closes @fx and @fy, remounts, and opens files @x and @y read-only again. */
static void remount_reopen(struct __test_metadata *_metadata, const char *x, int *fx,
			   const char *y, int *fy)
{
	close(*fx);
	close(*fy);
	ASSERT_EQ(0, fs_remount());
	*fx = open(fs_path(x), O_RDONLY);
	*fy = open(fs_path(y), O_RDONLY);
	ASSERT_LE(0, *fx);
	ASSERT_LE(0, *fy);
}

/* Skips the test on ext4, which cannot clone; elsewhere a refusal fails. */
#define CLONE_OR_SKIP(ret) do { \
	if ((ret) && errno == EOPNOTSUPP && fs_is("ext4")) \
		SKIP(return, "ext4 has no reflink"); \
	ASSERT_EQ(0, (ret)) TH_LOG("clone: %s", strerror(errno)); \
} while (0)

/* One range of a file that a child process checks through its own mapping. */
struct expect {
	const char *name;
	off_t off;		/* page-aligned */
	size_t len;
	uint64_t seed;
	off_t from;		/* the pattern's offset for @off (cloned data) */
};

static int check_mapped(const struct expect *e)
{
	int fd = open(fs_path("%s", e->name), O_RDONLY);
	unsigned char *p;
	int ret;

	if (fd < 0)
		return 10;
	p = mmap(NULL, e->len, PROT_READ, MAP_SHARED, fd, e->off);
	close(fd);
	if (p == MAP_FAILED)
		return 11;
	ret = fs_check_fill(p, e->len, e->from, e->seed) == -1 ? 0 : 12;
	munmap(p, e->len);
	return ret;
}

/* Child: checks a list of ranges ending with one whose name is NULL. */
static int child_checks(void *arg)
{
	for (const struct expect *e = arg; e->name; e++) {
		int ret = check_mapped(e);

		if (ret) {
			fprintf(stderr, "# child: %s [%lld, +%zu) not as expected (%d)\n",
				e->name, (long long)e->off, e->len, ret);
			return ret;
		}
	}
	return 0;
}

TEST_F(mm, store_through_clone_keeps_source)
{
	const size_t size = MIB;
	struct mm_snap a, b;
	unsigned char *pa, *pb;
	int fa = fs_make_pattern_file("a", size, 30), fb;

	ASSERT_LE(0, fa);
	fb = open(fs_path("b"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, fb);
	pa = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
	ASSERT_NE(MAP_FAILED, pa);
	EXPECT_EQ(-1, fs_check_fill(pa, size, 0, 30));
	CLONE_OR_SKIP(ioctl(fb, FICLONE, fa));
	pb = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	ASSERT_NE(MAP_FAILED, pb);
	EXPECT_EQ(-1, fs_check_fill(pb, size, 0, 30));

	/* A loaded page and a page never faulted in B. */
	mm_snap(&a);
	fs_fill(pb + 100 * KIB, 5000, 100 * KIB, 31);
	mm_snap_end(&b);
	TH_LOG("store through the clone: %s", mm_describe(&a, &b));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LT(0, mm_delta(&a, &b, MM_FAULT_COW));
	}
	ASSERT_EQ(0, mm_unmap(pb, size));
	pb = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	ASSERT_NE(MAP_FAILED, pb);
	pb[800 * KIB + 1] = ~fs_pattern_byte(800 * KIB + 1, 30);

	/* B has its stores, everywhere. */
	EXPECT_EQ(-1, fs_check_fill(pb + 100 * KIB, 5000, 100 * KIB, 31));
	EXPECT_EQ(-1, fs_check_pattern(fb, 100 * KIB, 5000, 31));
	EXPECT_EQ((unsigned char)~fs_pattern_byte(800 * KIB + 1, 30), pb[800 * KIB + 1]);
	EXPECT_EQ(-1, fs_check_pattern(fb, 0, 100 * KIB, 30));
	EXPECT_EQ(-1, fs_check_pattern(fb, 100 * KIB + 5000, 700 * KIB - 5000 + 1, 30));
	/* A kept its data: read(2), its mapping here, a mapping elsewhere. */
	EXPECT_EQ(-1, fs_check_pattern(fa, 0, size, 30));
	EXPECT_EQ(-1, fs_check_fill(pa, size, 0, 30));
	struct expect e[] = { { "a", 0, size, 30, 0 }, { NULL } };
	EXPECT_EQ(0, mm_child(child_checks, e, 30));

	ASSERT_EQ(0, mm_unmap(pa, size));
	ASSERT_EQ(0, mm_unmap(pb, size));
	remount_reopen(_metadata, "a", &fa, "b", &fb);
	EXPECT_EQ(-1, fs_check_pattern(fa, 0, size, 30));
	EXPECT_EQ(-1, fs_check_pattern(fb, 100 * KIB, 5000, 31));
	EXPECT_EQ(-1, fs_check_pattern(fb, 0, 100 * KIB, 30));
	EXPECT_EQ(-1, fs_check_pattern(fb, 800 * KIB + 2, size - 800 * KIB - 2, 30));
	close(fa);
	close(fb);
}

TEST_F(mm, store_through_source_after_clone_keeps_clone)
{
	const size_t size = MIB;
	struct mm_snap a, b;
	unsigned char *pa;
	int fa = fs_make_pattern_file("a", size, 32), fb;

	ASSERT_LE(0, fa);
	fb = open(fs_path("b"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, fb);
	pa = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
	ASSERT_NE(MAP_FAILED, pa);
	/* Page 10 writable and dirty, page 50 loaded only. */
	fs_fill(pa + 40 * KIB, 4 * KIB, 40 * KIB, 33);
	EXPECT_EQ(-1, fs_check_fill(pa + 200 * KIB, 4 * KIB, 200 * KIB, 32));

	CLONE_OR_SKIP(ioctl(fb, FICLONE, fa));
	mm_snap(&a);
	fs_fill(pa + 40 * KIB, 4 * KIB, 40 * KIB, 34);
	fs_fill(pa + 200 * KIB + 8, 100, 200 * KIB + 8, 34);
	mm_snap_end(&b);
	TH_LOG("stores through the source: %s", mm_describe(&a, &b));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LE(2, mm_delta(&a, &b, MM_FAULT_COW));
	}

	/* B is A as it was at the clone. */
	EXPECT_EQ(-1, fs_check_pattern(fb, 0, 40 * KIB, 32));
	EXPECT_EQ(-1, fs_check_pattern(fb, 40 * KIB, 4 * KIB, 33));
	EXPECT_EQ(-1, fs_check_pattern(fb, 44 * KIB, size - 44 * KIB, 32));
	struct expect e[] = {
		{ "b", 0, 40 * KIB, 32, 0 },
		{ "b", 40 * KIB, 4 * KIB, 33, 40 * KIB },
		{ "b", 44 * KIB, size - 44 * KIB, 32, 44 * KIB },
		{ NULL },
	};
	EXPECT_EQ(0, mm_child(child_checks, e, 30));
	/* A has the new stores. */
	EXPECT_EQ(-1, fs_check_pattern(fa, 40 * KIB, 4 * KIB, 34));
	EXPECT_EQ(-1, fs_check_pattern(fa, 200 * KIB + 8, 100, 34));
	EXPECT_EQ(-1, fs_check_pattern(fa, 200 * KIB, 8, 32));
	EXPECT_EQ(-1, fs_check_pattern(fa, 200 * KIB + 108, 4 * KIB - 108, 32));

	ASSERT_EQ(0, mm_unmap(pa, size));
	remount_reopen(_metadata, "a", &fa, "b", &fb);
	EXPECT_EQ(-1, fs_check_pattern(fa, 40 * KIB, 4 * KIB, 34));
	EXPECT_EQ(-1, fs_check_pattern(fb, 40 * KIB, 4 * KIB, 33));
	EXPECT_EQ(-1, fs_check_pattern(fb, 44 * KIB, size - 44 * KIB, 32));
	close(fa);
	close(fb);
}

TEST_F(mm, clone_again_copies_again)
{
	const size_t size = 512 * KIB;
	struct mm_snap a, b, c, d;
	unsigned char *pb;
	int fa = fs_make_pattern_file("a", size, 35), fb, fc;

	ASSERT_LE(0, fa);
	fb = open(fs_path("b"), O_RDWR | O_CREAT, 0644);
	fc = open(fs_path("c"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, fb);
	ASSERT_LE(0, fc);
	CLONE_OR_SKIP(ioctl(fb, FICLONE, fa));
	pb = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	ASSERT_NE(MAP_FAILED, pb);

	/* First store: B's page 7 gets a block of its own. */
	mm_snap(&a);
	fs_fill(pb + 28 * KIB, 4 * KIB, 28 * KIB, 36);
	mm_snap_end(&b);
	/* B's page 7, still mapped writable here, becomes shared with C. */
	ASSERT_EQ(0, ioctl(fc, FICLONE, fb)) TH_LOG("clone: %s", strerror(errno));
	/* Second store through the same mapping: faults and copies again. */
	mm_snap(&c);
	fs_fill(pb + 28 * KIB + 100, 200, 28 * KIB + 100, 37);
	mm_snap_end(&d);
	TH_LOG("first store %s", mm_describe(&a, &b));
	TH_LOG("second store %s", mm_describe(&c, &d));
	EXPECT_LT(0, mm_faults(&c, &d));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LT(0, mm_delta(&a, &b, MM_FAULT_COW));
		EXPECT_LT(0, mm_delta(&c, &d, MM_FAULT_COW));
	}

	/* C has B as it was at the second clone, A is untouched. */
	EXPECT_EQ(-1, fs_check_pattern(fc, 28 * KIB, 4 * KIB, 36));
	EXPECT_EQ(-1, fs_check_pattern(fc, 0, 28 * KIB, 35));
	EXPECT_EQ(-1, fs_check_pattern(fc, 32 * KIB, size - 32 * KIB, 35));
	EXPECT_EQ(-1, fs_check_pattern(fb, 28 * KIB, 100, 36));
	EXPECT_EQ(-1, fs_check_pattern(fb, 28 * KIB + 100, 200, 37));
	EXPECT_EQ(-1, fs_check_pattern(fb, 28 * KIB + 300, 4 * KIB - 300, 36));
	EXPECT_EQ(-1, fs_check_pattern(fa, 0, size, 35));
	struct expect e[] = {
		{ "c", 28 * KIB, 4 * KIB, 36, 28 * KIB },
		{ "a", 0, size, 35, 0 },
		{ NULL },
	};
	EXPECT_EQ(0, mm_child(child_checks, e, 30));

	ASSERT_EQ(0, mm_unmap(pb, size));
	close(fa);
	remount_reopen(_metadata, "b", &fb, "c", &fc);
	EXPECT_EQ(-1, fs_check_pattern(fc, 28 * KIB, 4 * KIB, 36));
	EXPECT_EQ(-1, fs_check_pattern(fb, 28 * KIB + 100, 200, 37));
	close(fb);
	close(fc);
}

TEST_F(mm, write_to_shared_range_shows_in_other_mapping)
{
	const size_t size = MIB;
	unsigned char buf[8 * KIB], go = 1;
	int fa = fs_make_pattern_file("a", size, 40), fb, ready[2], start[2], status;
	pid_t pid;

	ASSERT_LE(0, fa);
	fb = open(fs_path("b"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, fb);
	CLONE_OR_SKIP(ioctl(fb, FICLONE, fa));
	ASSERT_EQ(0, pipe(ready));
	ASSERT_EQ(0, pipe(start));

	fflush(NULL);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		/* Maps A and B, loads both (the shared blocks), waits. */
		int a = open(fs_path("a"), O_RDONLY), b = open(fs_path("b"), O_RDONLY);
		unsigned char *ma, *mb;

		alarm(60);
		close(ready[0]);
		close(start[1]);
		if (a < 0 || b < 0)
			_exit(20);
		ma = mmap(NULL, size, PROT_READ, MAP_SHARED, a, 0);
		mb = mmap(NULL, size, PROT_READ, MAP_SHARED, b, 0);
		if (ma == MAP_FAILED || mb == MAP_FAILED)
			_exit(21);
		if (fs_check_fill(ma, size, 0, 40) != -1 || fs_check_fill(mb, size, 0, 40) != -1)
			_exit(22);
		if (write(ready[1], &go, 1) != 1 || read(start[0], &go, 1) != 1)
			_exit(23);
		/* A's mapping shows the write, B's does not. */
		if (fs_check_fill(ma + 200 * KIB, sizeof(buf), 200 * KIB, 41) != -1)
			_exit(24);
		if (fs_check_fill(ma, 200 * KIB, 0, 40) != -1 ||
		    fs_check_fill(ma + 208 * KIB, size - 208 * KIB, 208 * KIB, 40) != -1)
			_exit(25);
		if (fs_check_fill(mb, size, 0, 40) != -1)
			_exit(26);
		_exit(0);
	}
	close(ready[1]);
	close(start[0]);
	if (read(ready[0], &go, 1) != 1) {
		waitpid(pid, &status, 0);
		ASSERT_TRUE(false) TH_LOG("the child did not get ready: exit status %d",
					  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	}
	fs_fill(buf, sizeof(buf), 200 * KIB, 41);
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(fa, buf, sizeof(buf), 200 * KIB));
	ASSERT_EQ(1, write(start[1], &go, 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("child exit status %d (24: A's mapping stale, 26: B changed)",
		       WEXITSTATUS(status));
	EXPECT_EQ(-1, fs_check_pattern(fb, 0, size, 40));
	EXPECT_EQ(-1, fs_check_pattern(fa, 200 * KIB, sizeof(buf), 41));
	close(fa);
	close(fb);
}

TEST_F(mm, clone_into_mapped_destination)
{
	const size_t size = MIB;
	unsigned char *pb, *pd;
	int fa = fs_make_pattern_file("a", size, 50), fb = fs_make_pattern_file("b", size, 51);
	int fd = fs_make_pattern_file("d", size, 52);

	ASSERT_LE(0, fa);
	ASSERT_LE(0, fb);
	ASSERT_LE(0, fd);
	pb = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	ASSERT_NE(MAP_FAILED, pb);
	/* Loaded pages, a stored (writable, dirty) page, untouched pages. */
	EXPECT_EQ(-1, fs_check_fill(pb, size / 2, 0, 51));
	fs_fill(pb + 12 * KIB, 4 * KIB, 12 * KIB, 53);

	CLONE_OR_SKIP(ioctl(fb, FICLONE, fa));
	EXPECT_EQ(-1, fs_check_fill(pb, size, 0, 50));
	EXPECT_EQ(-1, fs_check_pattern(fb, 0, size, 50));
	/* A store through it now copies: A keeps its data. */
	fs_fill(pb + 12 * KIB, 4 * KIB, 12 * KIB, 54);
	EXPECT_EQ(-1, fs_check_pattern(fa, 0, size, 50));
	EXPECT_EQ(-1, fs_check_pattern(fb, 12 * KIB, 4 * KIB, 54));

	/* A range cloned into the middle of a mapped file. */
	pd = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, pd);
	EXPECT_EQ(-1, fs_check_fill(pd, size, 0, 52));
	fs_fill(pd + 520 * KIB, 4 * KIB, 520 * KIB, 55);
	struct file_clone_range r = {
		.src_fd = fa, .src_offset = 128 * KIB, .src_length = 64 * KIB,
		.dest_offset = 512 * KIB,
	};
	ASSERT_EQ(0, ioctl(fd, FICLONERANGE, &r)) TH_LOG("FICLONERANGE: %s", strerror(errno));
	EXPECT_EQ(-1, fs_check_fill(pd, 512 * KIB, 0, 52));
	EXPECT_EQ(-1, fs_check_fill(pd + 512 * KIB, 64 * KIB, 128 * KIB, 50));
	EXPECT_EQ(-1, fs_check_fill(pd + 576 * KIB, size - 576 * KIB, 576 * KIB, 52));
	struct expect e[] = {
		{ "d", 512 * KIB, 64 * KIB, 50, 128 * KIB },
		{ "b", 0, 12 * KIB, 50, 0 },
		{ "b", 12 * KIB, 4 * KIB, 54, 12 * KIB },
		{ NULL },
	};
	EXPECT_EQ(0, mm_child(child_checks, e, 30));
	fs_fill(pd + 540 * KIB, 100, 540 * KIB, 56);
	EXPECT_EQ(-1, fs_check_pattern(fa, 0, size, 50));
	EXPECT_EQ(-1, fs_check_pattern(fd, 540 * KIB, 100, 56));

	ASSERT_EQ(0, mm_unmap(pb, size));
	ASSERT_EQ(0, mm_unmap(pd, size));
	close(fb);
	remount_reopen(_metadata, "a", &fa, "d", &fd);
	EXPECT_EQ(-1, fs_check_pattern(fa, 0, size, 50));
	EXPECT_EQ(-1, fs_check_pattern_at(fd, 512 * KIB, 28 * KIB, 50, 384 * KIB));
	EXPECT_EQ(-1, fs_check_pattern(fd, 540 * KIB, 100, 56));
	EXPECT_EQ(-1, fs_check_pattern(fd, 576 * KIB, size - 576 * KIB, 52));
	close(fa);
	close(fd);
}

TEST_F(mm, pmd_aligned_clone_cow)
{
	const size_t size = 4 * MIB;
	struct mm_snap a, b;
	unsigned char *pa, *pb;
	int fa = open(fs_path("a"), O_RDWR | O_CREAT, 0644), fb;

	ASSERT_LE(0, fa);
	fb = open(fs_path("b"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, fb);
	ASSERT_EQ(0, fallocate(fa, 0, 0, size));
	ASSERT_EQ(size, fs_write_pattern(fa, 0, size, 60));
	ASSERT_EQ(0, fsync(fa));
	CLONE_OR_SKIP(ioctl(fb, FICLONE, fa));

	pa = mm_map_aligned(size, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
	ASSERT_NE(MAP_FAILED, pa);
	pb = mm_map_aligned(size, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	ASSERT_NE(MAP_FAILED, pb);
	mm_snap(&a);
	EXPECT_EQ(-1, fs_check_fill(pb, size, 0, 60));
	EXPECT_EQ(-1, fs_check_fill(pa, size, 0, 60));
	mm_snap_end(&b);
	TH_LOG("loads of both (8 MiB): %s", mm_describe(&a, &b));

	mm_snap(&a);
	fs_fill(pb + 2 * MIB + 100, 64, 2 * MIB + 100, 61);
	mm_snap_end(&b);
	TH_LOG("store through the clone: %s", mm_describe(&a, &b));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_LT(0, mm_delta(&a, &b, MM_FAULT_COW));
	}
	EXPECT_EQ(-1, fs_check_fill(pb, 2 * MIB + 100, 0, 60));
	EXPECT_EQ(-1, fs_check_fill(pb + 2 * MIB + 100, 64, 2 * MIB + 100, 61));
	EXPECT_EQ(-1, fs_check_fill(pb + 2 * MIB + 164, 2 * MIB - 164, 2 * MIB + 164, 60));
	EXPECT_EQ(-1, fs_check_pattern(fb, 2 * MIB + 164, 2 * MIB - 164, 60));
	EXPECT_EQ(-1, fs_check_pattern(fa, 0, size, 60));
	EXPECT_EQ(-1, fs_check_fill(pa, size, 0, 60));

	/* And through the source, in the other 2 MiB. */
	mm_snap(&a);
	fs_fill(pa + 5000, 64, 5000, 62);
	mm_snap_end(&b);
	TH_LOG("store through the source: %s", mm_describe(&a, &b));
	if (mm_counted())
		EXPECT_LT(0, mm_delta(&a, &b, MM_FAULT_COW));
	EXPECT_EQ(-1, fs_check_fill(pb, 2 * MIB, 0, 60));
	EXPECT_EQ(-1, fs_check_pattern(fb, 0, 2 * MIB, 60));
	EXPECT_EQ(-1, fs_check_pattern(fa, 5000, 64, 62));
	struct expect e[] = {
		{ "b", 0, 2 * MIB, 60, 0 },
		{ "a", 2 * MIB, 2 * MIB, 60, 2 * MIB },
		{ NULL },
	};
	EXPECT_EQ(0, mm_child(child_checks, e, 30));

	ASSERT_EQ(0, mm_unmap(pa, size));
	ASSERT_EQ(0, mm_unmap(pb, size));
	remount_reopen(_metadata, "a", &fa, "b", &fb);
	EXPECT_EQ(-1, fs_check_pattern(fa, 5000, 64, 62));
	EXPECT_EQ(-1, fs_check_pattern(fa, 5064, size - 5064, 60));
	EXPECT_EQ(-1, fs_check_pattern(fb, 0, 2 * MIB + 100, 60));
	EXPECT_EQ(-1, fs_check_pattern(fb, 2 * MIB + 100, 64, 61));
	close(fa);
	close(fb);
}

/* Whether FIEMAP shows [@off, @off + 2 MiB) of @fd as one extent,
 * 2 MiB-aligned on the disk, and shared (1), not shared (0), or neither
 * whole nor aligned (-1). */
static int region_state(int fd, off_t off)
{
	struct {
		struct fiemap map;
		struct fiemap_extent ext[64];
	} e;

	memset(&e, 0, sizeof(e));
	e.map.fm_start = off;
	e.map.fm_length = MM_PMD;
	e.map.fm_flags = FIEMAP_FLAG_SYNC;
	e.map.fm_extent_count = 64;
	if (ioctl(fd, FS_IOC_FIEMAP, &e.map) || e.map.fm_mapped_extents < 1)
		return -1;
	const struct fiemap_extent *x = &e.ext[0];

	if (x->fe_logical > (uint64_t)off || off + MM_PMD > x->fe_logical + x->fe_length ||
	    (x->fe_physical + off - x->fe_logical) % MM_PMD)
		return -1;
	return !!(x->fe_flags & FIEMAP_EXTENT_SHARED);
}

TEST_F(mm, small_copy_on_write_copies_its_region)
{
	const size_t size = 6 * MIB;
	struct mm_snap a, b;
	unsigned char *pb, page[4096];
	int fa = open(fs_path("a"), O_RDWR | O_CREAT, 0644), fb;

	ASSERT_LE(0, fa);
	fb = open(fs_path("b"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, fb);
	ASSERT_EQ(0, fallocate(fa, 0, 0, size));
	ASSERT_EQ(size, fs_write_pattern(fa, 0, size, 70));
	ASSERT_EQ(0, fsync(fa));
	CLONE_OR_SKIP(ioctl(fb, FICLONE, fa));
	TH_LOG("clone: region 0 %d, 1 %d, 2 %d", region_state(fb, 0), region_state(fb, 2 * MIB),
	       region_state(fb, 4 * MIB));

	/* 4 KiB pages only; every page of region 0 mapped (read) first. */
	pb = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	ASSERT_NE(MAP_FAILED, pb);
	ASSERT_EQ(0, madvise(pb, size, MADV_NOHUGEPAGE));
	EXPECT_EQ(-1, fs_check_fill(pb, 2 * MIB, 0, 70));
	mm_snap(&a);
	fs_fill(pb + 100, 64, 100, 71);
	mm_snap_end(&b);
	TH_LOG("4 KiB store into region 0: %s", mm_describe(&a, &b));
	if (mm_counted())
		EXPECT_EQ(1, mm_delta(&a, &b, MM_FAULT_COW));
	/* oxdax's own engine copies the region; the kernel's (fault_engine=
	 * iomap) copies what it stores to, as on xfs. */
	if (mm_counted()) {
		EXPECT_EQ(0, region_state(fb, 0));
		EXPECT_EQ(1, region_state(fb, 2 * MIB));
	}
	TH_LOG("after the store: region 0 %d, 1 %d", region_state(fb, 0),
	       region_state(fb, 2 * MIB));
	/* The region's other pages, mapped before, show the file. */
	EXPECT_EQ(-1, fs_check_fill(pb, 100, 0, 70));
	EXPECT_EQ(-1, fs_check_fill(pb + 164, 2 * MIB - 164, 164, 70));
	mm_snap(&a);
	fs_fill(pb + 300 * 4096, 64, 300 * 4096, 72);
	mm_snap_end(&b);
	TH_LOG("store to another page of region 0: %s", mm_describe(&a, &b));
	if (mm_counted())
		EXPECT_EQ(0, mm_delta(&a, &b, MM_FAULT_COW));
	EXPECT_EQ(-1, fs_check_pattern(fb, 300 * 4096, 64, 72));
	EXPECT_EQ(-1, fs_check_pattern(fb, 164, 300 * 4096 - 164, 70));

	/* write(2) of 4 KiB into region 1. */
	fs_fill(page, sizeof(page), 2 * MIB + 8192, 73);
	ASSERT_EQ(sizeof(page), pwrite(fb, page, sizeof(page), 2 * MIB + 8192));
	if (fs_is("oxdax")) {
		EXPECT_EQ(0, region_state(fb, 2 * MIB));
		EXPECT_EQ(1, region_state(fb, 4 * MIB));
	}
	EXPECT_EQ(-1, fs_check_fill(pb + 2 * MIB, 8192, 2 * MIB, 70));
	EXPECT_EQ(-1, fs_check_fill(pb + 2 * MIB + 8192, 4096, 2 * MIB + 8192, 73));
	EXPECT_EQ(-1, fs_check_pattern(fb, 2 * MIB + 12288, 4 * MIB - 12288, 70));
	EXPECT_EQ(-1, fs_check_pattern(fa, 0, size, 70));

	ASSERT_EQ(0, mm_unmap(pb, size));
	remount_reopen(_metadata, "a", &fa, "b", &fb);
	EXPECT_EQ(-1, fs_check_pattern(fa, 0, size, 70));
	EXPECT_EQ(-1, fs_check_pattern(fb, 0, 100, 70));
	EXPECT_EQ(-1, fs_check_pattern(fb, 100, 64, 71));
	EXPECT_EQ(-1, fs_check_pattern(fb, 300 * 4096, 64, 72));
	EXPECT_EQ(-1, fs_check_pattern(fb, 2 * MIB + 8192, 4096, 73));
	EXPECT_EQ(-1, fs_check_pattern(fb, 2 * MIB + 12288, size - 2 * MIB - 12288, 70));
	close(fa);
	close(fb);
}

TEST_HARNESS_MAIN
