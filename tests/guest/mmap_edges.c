// SPDX-License-Identifier: GPL-2.0
/*
 * Where a mapping, a pin or a sharer meets a change of the file's size or
 * blocks. Each case is checked on oxdax and, with OXDAX_FS, on xfs and ext4
 * (the oracle: where they differ, one is wrong):
 *  - truncation keeps MAP_PRIVATE copies of pages below the new end of file
 *    (also inside a 2 MiB range read through a PMD); pages past the page
 *    holding the new end raise SIGBUS (core mm's truncate_pagecache);
 *  - truncating a reflinked file to an unaligned size: its mapping of the
 *    end-of-file page shows the zeroed tail, never the shared block the
 *    truncation copied away from (which the other file then rewrites);
 *  - bytes stored through a mapping past the end of file (in its last page,
 *    which is legal) read as zeros once the file grows: truncate up, a write
 *    past the end, fallocate, a clone past the end;
 *  - a clone within one file waits for a page pinned in its source (a page
 *    spliced into a pipe) without letting a fault map the destination's old
 *    blocks meanwhile: after it, stores through the old mapping reach the
 *    file, never the file that reused the old blocks;
 *  - a clone between two files whose pinned page's holder must fault on the
 *    other file to let go finishes (no lock is held while it waits);
 *  - mremap grows a mapping in place where the addresses after it are free;
 *  - copy-on-write by write(2) and by faults never lets a mapping of this
 *    file show the other sharer's later data (stress, several processes).
 *
 * OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h).
 */
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#include "kselftest_harness.h"
#include "oxdax_mmap.h"

MM_FIXTURE(mm);

/* Whether the filesystem under test shares blocks (FICLONE). */
static bool can_clone(void)
{
	return !fs_is("ext4");
}

/* A file of @size bytes of the pattern under @seed in blocks that were
 * preallocated first (2 MiB-aligned where the filesystem aligns them, so
 * that aligned mappings of it get PMDs). */
static int make_preallocated(const char *name, size_t size, uint64_t seed)
{
	int fd = open(fs_path("%s", name), O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return -1;
	if (fallocate(fd, 0, 0, size) || fs_write_pattern(fd, 0, size, seed) != size) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Index of the first byte of @p[0..@len) that is not @value, or -1. */
static long first_not(const unsigned char *p, size_t len, unsigned char value)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != value)
			return i;
	return -1;
}

TEST_F(mm, truncate_keeps_private_copies_below_eof)
{
	const size_t size = 4 * MIB, new_size = MIB + 1000;
	int fd = make_preallocated("f", size, 200);
	unsigned char *p;

	ASSERT_LE(0, fd);
	p = mm_map_aligned(size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	/* Read everything (2 MiB read faults where possible), then write
	 * private copies below the new end, in its page, and past it. */
	EXPECT_EQ(-1, fs_check_fill(p, size, 0, 200));
	memset(p + 100 * KIB, 0xa1, MM_PAGE);
	memset(p + MIB, 0xa2, 100);
	memset(p + 1536 * KIB, 0xa3, MM_PAGE);
	memset(p + 3 * MIB, 0xa4, MM_PAGE);

	ASSERT_EQ(0, ftruncate(fd, new_size));
	EXPECT_EQ(-1, first_not(p + 100 * KIB, MM_PAGE, 0xa1))
		TH_LOG("a private copy below the new end was lost");
	EXPECT_EQ(-1, first_not(p + MIB, 100, 0xa2))
		TH_LOG("the private copy of the end-of-file page was lost");
	/* Pages never written privately still show the file. */
	EXPECT_EQ(-1, fs_check_fill(p + 200 * KIB, MM_PAGE, 200 * KIB, 200));
	/* Past the page of the new end: gone, SIGBUS. */
	EXPECT_EQ(SIGBUS, mm_load_sig(p + 1536 * KIB));
	EXPECT_EQ(SIGBUS, mm_load_sig(p + 3 * MIB));
	EXPECT_EQ(SIGBUS, mm_load_sig(p + MIB + MM_PAGE));
	/* The file never saw the private stores. */
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, new_size, 200));
	close(fd);
}

TEST_F(mm, truncate_reflinked_file_to_unaligned_size)
{
	const size_t size = MIB, new_size = 100 * KIB + 10;
	unsigned char buf[100], *q;
	int a, b;

	if (!can_clone())
		SKIP(return, "%s cannot share blocks", fs_type());
	a = fs_make_pattern_file("a", size, 201);
	ASSERT_LE(0, a);
	b = open(fs_path("b"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	ASSERT_LE(0, b);
	ASSERT_EQ(0, ioctl(b, FICLONE, a)) TH_LOG("FICLONE: %s", strerror(errno));
	q = mm_map(NULL, size, PROT_READ, MAP_SHARED, b, 0);
	ASSERT_NE(MAP_FAILED, q);
	EXPECT_EQ(-1, fs_check_fill(q, size, 0, 201));

	ASSERT_EQ(0, ftruncate(b, new_size));
	EXPECT_EQ(-1, fs_check_fill(q, new_size, 0, 201));
	EXPECT_TRUE(fs_all_zero(q + new_size, 104 * KIB - new_size))
		TH_LOG("b's mapping of its end-of-file page shows bytes past the new end");
	/* a keeps its data, and rewrites it in place now that it owns the
	 * block alone: b's mapping must not see that. */
	EXPECT_EQ(-1, fs_check_pattern(a, 0, size, 201));
	memset(buf, 0x5a, sizeof(buf));
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(a, buf, sizeof(buf), new_size));
	EXPECT_TRUE(fs_all_zero(q + new_size, sizeof(buf)))
		TH_LOG("b's mapping shows a's new data: it still maps the block b gave up");
	EXPECT_EQ(-1, fs_check_pattern(b, 0, new_size, 201));
	close(a);
	close(b);
}

/* How a file grows over the bytes past its end. */
enum growth { GROW_TRUNCATE, GROW_WRITE, GROW_FALLOCATE, GROW_CLONE };

static void grow_after_store_past_eof(struct __test_metadata *_metadata, enum growth how)
{
	static const char *const names[] = { "truncate", "write", "fallocate", "clone" };
	const off_t size = 5000, grown = 3 * MM_PAGE + 7;
	int fd = fs_make_pattern_file(names[how], size, 202), src;
	struct file_clone_range range;
	unsigned char *p, byte = 0x42;

	ASSERT_LE(0, fd);
	if (how == GROW_WRITE && fs_is("ext4"))
		SKIP(return, "ext4 -o dax does not zero the end-of-file block's tail before a "
		     "write past the end (xfs and oxdax do): it shows the bytes stored there");
	p = mm_map(NULL, 4 * MM_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	/* A store past the end of file, in its last page: legal, and not
	 * the file's data. */
	memset(p + size, 0xee, 1000);

	switch (how) {
	case GROW_TRUNCATE:
		ASSERT_EQ(0, ftruncate(fd, grown));
		break;
	case GROW_WRITE:
		ASSERT_EQ(1, pwrite(fd, &byte, 1, grown - 1));
		break;
	case GROW_FALLOCATE:
		ASSERT_EQ(0, fallocate(fd, 0, 0, grown));
		break;
	case GROW_CLONE:
		src = fs_make_pattern_file("src", MM_PAGE, 203);
		ASSERT_LE(0, src);
		range = (struct file_clone_range){ .src_fd = src, .src_length = MM_PAGE,
						   .dest_offset = 3 * MM_PAGE };
		ASSERT_EQ(0, ioctl(fd, FICLONERANGE, &range)) TH_LOG("%s", strerror(errno));
		close(src);
		break;
	}
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, size, 202));
	EXPECT_TRUE(mm_file_zero(fd, size, 3 * MM_PAGE - size))
		TH_LOG("%s: bytes past the old end of file became file data", names[how]);
	EXPECT_TRUE(fs_all_zero(p + size, 3 * MM_PAGE - size))
		TH_LOG("%s: the mapping shows bytes past the old end of file", names[how]);
	close(fd);
}

TEST_F(mm, truncate_up_zeroes_past_old_eof)
{
	grow_after_store_past_eof(_metadata, GROW_TRUNCATE);
}

TEST_F(mm, write_past_eof_zeroes_the_gap)
{
	grow_after_store_past_eof(_metadata, GROW_WRITE);
}

TEST_F(mm, fallocate_growth_zeroes_past_old_eof)
{
	grow_after_store_past_eof(_metadata, GROW_FALLOCATE);
}

TEST_F(mm, clone_past_eof_zeroes_the_gap)
{
	if (!can_clone())
		SKIP(return, "%s cannot share blocks", fs_type());
	grow_after_store_past_eof(_metadata, GROW_CLONE);
}

struct clone_job {
	int fd, src_fd;
	off_t src, dst;
	size_t len;
	volatile int done, err;
};

static void *clone_thread(void *arg)
{
	struct clone_job *job = arg;
	struct file_clone_range range = {
		.src_fd = job->src_fd,
		.src_offset = job->src,
		.src_length = job->len,
		.dest_offset = job->dst,
	};

	job->err = ioctl(job->fd, FICLONERANGE, &range) ? errno : 0;
	job->done = 1;
	return NULL;
}

/* Pins the page at @addr: splices it into a new pipe; returns the pipe's
 * read end (the pin lasts until it is drained), or -1. */
static int pin_page(void *addr, int *write_end)
{
	struct iovec iov = { .iov_base = addr, .iov_len = MM_PAGE };
	int fds[2];

	if (pipe(fds))
		return -1;
	if (vmsplice(fds[1], &iov, 1, 0) != MM_PAGE) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	*write_end = fds[1];
	return fds[0];
}

TEST_F(mm, clone_within_file_waits_for_pins)
{
	const size_t pages = 16, len = 4 * MM_PAGE;
	const off_t dst = 8 * MM_PAGE;
	struct clone_job job = { .src = 0, .dst = dst, .len = len };
	unsigned char *p, buf[MM_PAGE];
	int fd, other, pipe_in, pipe_out;
	pthread_t thread;

	if (!can_clone())
		SKIP(return, "%s cannot share blocks", fs_type());
	fd = fs_make_pattern_file("f", pages * MM_PAGE, 204);
	ASSERT_LE(0, fd);
	p = mm_map(NULL, pages * MM_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(-1, fs_check_fill(p, pages * MM_PAGE, 0, 204));
	pipe_out = pin_page(p, &pipe_in);
	ASSERT_LE(0, pipe_out) TH_LOG("vmsplice: %s", strerror(errno));

	job.fd = job.src_fd = fd;
	ASSERT_EQ(0, pthread_create(&thread, NULL, clone_thread, &job));
	usleep(300000);
	EXPECT_EQ(0, job.done) TH_LOG("the clone did not wait for the pinned source page");
	/* A fault on the destination while the clone waits. */
	p[dst + 5] = 0x77;
	ASSERT_EQ((ssize_t)MM_PAGE, read(pipe_out, buf, MM_PAGE));
	ASSERT_EQ(0, pthread_join(thread, NULL));
	ASSERT_EQ(0, job.err) TH_LOG("FICLONERANGE: %s", strerror(job.err));
	EXPECT_EQ(-1, fs_check_pattern_at(fd, dst, len, 204, dst))
		TH_LOG("the destination does not show the source's data");

	/* Another file reuses the destination's old blocks: stores through
	 * the old mapping must reach this file (copying the shared block),
	 * never that one. */
	other = fs_make_pattern_file("other", MIB, 205);
	ASSERT_LE(0, other);
	for (size_t i = 0; i < len; i += MM_PAGE)
		p[dst + i + 1] = 0x66;
	EXPECT_EQ(-1, fs_check_pattern(other, 0, MIB, 205))
		TH_LOG("a store through the old mapping changed another file");
	for (size_t i = 0; i < len; i += MM_PAGE) {
		ASSERT_EQ(1, pread(fd, buf, 1, dst + i + 1));
		EXPECT_EQ(0x66, buf[0]);
	}
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, len, 204)) TH_LOG("the source changed");
	close(pipe_in);
	close(pipe_out);
	close(other);
	close(fd);
}

/*
 * In a child (a hang is ended by its alarm): page 0 of b pinned in a pipe;
 * a clone a -> b waits for it; the pipe is then drained into a's mapping,
 * a fault on a. Returns 0 when all of it finished and b has a's data
 * (page 2 of a: the drained page of b).
 */
static int clone_with_pins_in_both(void *arg)
{
	unsigned char *pa, *pb;
	static unsigned char ca[4 * MM_PAGE], cb[4 * MM_PAGE];
	struct clone_job job = { .len = 4 * MM_PAGE };
	int a = open(fs_path("a"), O_RDWR), b = open(fs_path("b"), O_RDWR);
	int pipe_in, pipe_out;
	pthread_t thread;

	(void)arg;
	if (a < 0 || b < 0)
		return 10;
	pa = mmap(NULL, 4 * MM_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, a, 0);
	pb = mmap(NULL, 4 * MM_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, b, 0);
	if (pa == MAP_FAILED || pb == MAP_FAILED)
		return 11;
	pipe_out = pin_page(pb, &pipe_in);
	if (pipe_out < 0)
		return 12;
	job.fd = b;
	job.src_fd = a;
	if (pthread_create(&thread, NULL, clone_thread, &job))
		return 13;
	usleep(300000);
	if (job.done)
		return 14;		/* did not wait for the pin */
	if (read(pipe_out, pa + 2 * MM_PAGE, MM_PAGE) != MM_PAGE)
		return 15;
	pthread_join(thread, NULL);
	if (job.err)
		return 16;
	/* b is a clone of a as a was once the pipe was drained into it. */
	if (pread(a, ca, sizeof(ca), 0) != sizeof(ca) || pread(b, cb, sizeof(cb), 0) != sizeof(cb))
		return 17;
	if (fs_check_fill(ca + 2 * MM_PAGE, MM_PAGE, 0, 207) != -1)
		return 18;
	return memcmp(ca, cb, sizeof(ca)) ? 19 : 0;
}

TEST_F(mm, clone_between_files_with_pins_finishes)
{
	int a, b, status;

	if (!can_clone())
		SKIP(return, "%s cannot share blocks", fs_type());
	a = fs_make_pattern_file("a", 4 * MM_PAGE, 206);
	b = fs_make_pattern_file("b", 4 * MM_PAGE, 207);
	ASSERT_LE(0, a);
	ASSERT_LE(0, b);
	close(a);
	close(b);
	status = mm_child(clone_with_pins_in_both, NULL, 30);
	EXPECT_EQ(0, status) TH_LOG("%s", status == 128 + SIGALRM ?
			"deadlock: the clone held one file's lock while it waited" :
			"see the status in clone_with_pins_in_both");
}

/*
 * mremap() grows a mapping in place where the addresses after it are free,
 * as on ext4 and xfs (a VM_MIXEDMAP mapping cannot be extended: without
 * MREMAP_MAYMOVE that was ENOMEM), and the grown part maps the file.
 */
TEST_F(mm, mremap_grows_in_place)
{
	int fd = fs_make_pattern_file("f", 8 * MM_PAGE, 209);
	unsigned char *p, *q, buf[1];

	ASSERT_LE(0, fd);
	/* Eight pages of address space, the first two mapping the file. */
	p = mmap(NULL, 8 * MM_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, munmap(p + 2 * MM_PAGE, 6 * MM_PAGE));
	q = mmap(p, 2 * MM_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	ASSERT_EQ(p, q);
	mm_remember(p, 8 * MM_PAGE);
	EXPECT_EQ(-1, fs_check_fill(p, 2 * MM_PAGE, 0, 209));
	q = mremap(p, 2 * MM_PAGE, 8 * MM_PAGE, 0);
	ASSERT_EQ(p, q) TH_LOG("mremap in place: %s", strerror(errno));
	EXPECT_EQ(-1, fs_check_fill(p, 8 * MM_PAGE, 0, 209));
	p[6 * MM_PAGE] = 0x61;
	ASSERT_EQ(0, msync(p, 8 * MM_PAGE, MS_SYNC));
	ASSERT_EQ(1, pread(fd, buf, 1, 6 * MM_PAGE));
	EXPECT_EQ(0x61, buf[0]) TH_LOG("a store through the grown part missed the file");
	close(fd);
}

/*
 * Copy-on-write stress: a is cloned to b over and over; meanwhile one
 * process writes a (copy-on-write by write(2) or by a fault), another
 * writes b in place once a gave the old blocks up, and a third reads a
 * through a mapping. a's mapping must only ever show a's old or new data,
 * never b's.
 */
#define COW_PAGES 8
#define COW_ROUNDS 400

static int cow_writer(void *arg)
{
	const char *name = arg;
	int fd = open(fs_path("%s", name), O_RDWR);
	unsigned char *p, value = name[0] == 'a' ? 0xa0 : 0xb0;

	if (fd < 0)
		return 1;
	p = mmap(NULL, COW_PAGES * MM_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return 2;
	for (int round = 0; round < COW_ROUNDS * 4; round++) {
		size_t page = round % COW_PAGES;

		if (round % 2)
			p[page * MM_PAGE + 64] = value;
		else if (pwrite(fd, &value, 1, page * MM_PAGE + 64) != 1)
			return 3;
	}
	return 0;
}

static int cow_reader(void *arg)
{
	int fd = open(fs_path("a"), O_RDONLY);
	volatile unsigned char *p;

	(void)arg;
	if (fd < 0)
		return 1;
	p = mmap(NULL, COW_PAGES * MM_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return 2;
	for (int round = 0; round < COW_ROUNDS * 40; round++) {
		unsigned char c = p[(round % COW_PAGES) * MM_PAGE + 64];

		if (c == 0xb0)
			return 20;	/* b's data through a's mapping */
	}
	return 0;
}

TEST_F(mm, cow_never_shows_the_other_sharers_data)
{
	int (*fns[])(void *) = { cow_writer, cow_writer, cow_reader };
	void *args[] = { "a", "b", NULL };
	pid_t kids[3];
	int a, b, status;

	if (!can_clone())
		SKIP(return, "%s cannot share blocks", fs_type());
	a = fs_make_pattern_file("a", COW_PAGES * MM_PAGE, 208);
	b = open(fs_path("b"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	ASSERT_LE(0, a);
	ASSERT_LE(0, b);
	ASSERT_EQ(0, ioctl(b, FICLONE, a));
	fflush(NULL);
	for (int i = 0; i < 3; i++) {
		kids[i] = fork();
		ASSERT_LE(0, kids[i]);
		if (kids[i] == 0) {
			alarm(100);
			_exit(fns[i](args[i]));
		}
	}
	for (int round = 0; round < COW_ROUNDS; round++)
		if (ioctl(b, FICLONE, a))
			break;
	EXPECT_EQ(0, ioctl(b, FICLONE, a)) TH_LOG("FICLONE: %s", strerror(errno));
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(kids[i], waitpid(kids[i], &status, 0));
		EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
			TH_LOG("process %d: %s %d", i, WIFEXITED(status) ? "exit" : "signal",
			       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	}
	close(a);
	close(b);
}

TEST_HARNESS_MAIN
