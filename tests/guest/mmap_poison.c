// SPDX-License-Identifier: GPL-2.0
/*
 * Memory failures (simulated hardware poison) of DAX-mapped blocks:
 *  - madvise(MADV_HWPOISON) on a mapped data page: the caller gets SIGBUS
 *    BUS_MCEERR_AR at that page (si_addr_lsb 12); the other pages of the
 *    mapping still read right;
 *  - the same on a reflinked (shared) block: a process that maps the clone,
 *    has touched the page and asked for early kill (PR_MCE_KILL_EARLY) gets
 *    SIGBUS BUS_MCEERR_AO at its own address of the page; an early-kill
 *    process mapping an unrelated file gets nothing. This needs the
 *    filesystem's ->notify_failure (xfs with rmapbt, oxdax; ext4 cannot
 *    clone: skipped): the kernel's generic handling would oops on the shared
 *    page, so the test fails first if the poison of an unshared page shows
 *    generic handling in the kernel log;
 *  - oxdax refuses a poisoned block: read(2) fails with EIO and a new fault
 *    raises SIGBUS BUS_MCEERR_AR until the block is punched out (or wholly
 *    overwritten by write(2)); punch + write + fault then show the new data
 *    (ext4 and xfs keep serving the simulated-poisoned block: there only
 *    punch + write + fault, and the overwrite, are checked);
 *  - oxdax only: a failed zero chunk (2 MiB of zeros mapped over holes) is
 *    never mapped again, also after a read-only remount made read-write;
 *  - oxdax remembers the poisoned block in every sharer: a process touching
 *    the page through the clone later gets SIGBUS BUS_MCEERR_AR there (ext4
 *    and xfs serve it again), a second MADV_HWPOISON of it fails with EFAULT;
 *    early-kill processes mapping only other pages of both files are left
 *    alone;
 *  - poison of a page inside a PMD mapping: SIGBUS BUS_MCEERR_AR at that
 *    page with si_addr_lsb 21 when the range was PMD-mapped (12 when not);
 *  - oxdax only: poison of the superblock (metadata, injected by page frame
 *    through debugfs hwpoison/corrupt-pfn) shuts the filesystem down: the
 *    kernel log says so, creating and writing fail with EIO, the filesystem
 *    still unmounts and checks clean (nothing is written after the shutdown);
 *    a data page mapped since before then and poisoned after still brings
 *    its consumer SIGBUS BUS_MCEERR_AR (found without the reverse map).
 *
 * The poison is simulated: PageHWPoison stays set on the device page but the
 * memory is fine, and oxdax's pmem block driver refuses only the blocks in
 * its badblocks list, so later tests (and mkfs) are not disturbed.
 *
 * xfs needs its reverse map for ->notify_failure (otherwise the kernel's
 * generic handling runs, which signals only the consumer and cannot handle
 * a shared page): this test formats xfs with "-m rmapbt=1" on top of
 * OXDAX_FS_MKFS_OPTS. OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h).
 */
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>

#include "kselftest_harness.h"
#include "oxdax_mmap.h"

#ifndef MADV_HWPOISON
#define MADV_HWPOISON 100
#endif

#define HWPOISON_INJECT "/sys/kernel/debug/hwpoison/corrupt-pfn"

/*
 * A fresh filesystem per test, as MM_FIXTURE, with xfs's reverse map; the
 * processes a test forks are killed in the teardown if a failed ASSERT left
 * them running (they would keep the filesystem busy).
 */
FIXTURE(mm) {
	pid_t kids[2];
};

FIXTURE_SETUP(mm)
{
	const char *extra = getenv("OXDAX_FS_MKFS_OPTS");

	/* mkfs.xfs refuses an option given twice: an explicit choice stays. */
	if (fs_is("xfs") && !(extra && strstr(extra, "rmapbt"))) {
		char opts[256];

		snprintf(opts, sizeof(opts), "-m rmapbt=1 %s", extra ? extra : "");
		setenv("OXDAX_FS_MKFS_OPTS", opts, 1);
	}
	ASSERT_EQ(0, fs_begin());
}

FIXTURE_TEARDOWN(mm)
{
	for (int i = 0; i < 2; i++) {
		if (self->kids[i] > 0) {
			kill(self->kids[i], SIGKILL);
			waitpid(self->kids[i], NULL, 0);
		}
	}
	mm_unmap_all();
	EXPECT_EQ(0, fs_end());
}

/* A SIGBUS as received: si_code, si_addr, si_addr_lsb (sig 0: none). */
struct mce {
	volatile int sig, code, lsb, count;
	void *volatile addr;
};

static sigjmp_buf poison_jmp;
static struct mce *volatile poison_got;

static void on_poison(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	poison_got->sig = sig;
	poison_got->code = si->si_code;
	poison_got->addr = si->si_addr;
	poison_got->lsb = si->si_addr_lsb;
	poison_got->count++;
	siglongjmp(poison_jmp, 1);
}

/*
 * madvise(MADV_HWPOISON) of the page at @addr, with a SIGBUS handler in
 * place: @got tells the signal it raised (got->sig 0: none). Returns 0, or
 * -errno when madvise failed (without a signal).
 */
static int poison(void *addr, struct mce *got)
{
	struct sigaction sa = { .sa_sigaction = on_poison, .sa_flags = SA_SIGINFO };
	struct sigaction old;
	volatile int ret = 0;

	memset((void *)got, 0, sizeof(*got));
	poison_got = got;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(poison_jmp, 1) == 0) {
		if (madvise(addr, MM_PAGE, MADV_HWPOISON))
			ret = -errno;
	}
	sigaction(SIGBUS, &old, NULL);
	return got->sig ? 0 : ret;
}

static const char *mce_code(int code)
{
	switch (code) {
	case BUS_MCEERR_AR:
		return "BUS_MCEERR_AR";
	case BUS_MCEERR_AO:
		return "BUS_MCEERR_AO";
	case BUS_ADRERR:
		return "BUS_ADRERR";
	case 0:
		return "none";
	default:
		return "other";
	}
}

/* "SIGBUS BUS_MCEERR_AR at 0x... lsb 12" (static buffer, two in turn). */
static const char *mce_describe(const struct mce *m)
{
	static char text[2][128];
	static int next;
	char *out = text[next++ % 2];

	if (!m->sig)
		snprintf(out, sizeof(text[0]), "no signal");
	else
		snprintf(out, sizeof(text[0]), "%s si_code %d (%s) at %p, si_addr_lsb %d",
			 strsignal(m->sig), m->code, mce_code(m->code), m->addr, m->lsb);
	return out;
}

/* Checks that @m is SIGBUS @code at @addr with si_addr_lsb @lsb. */
static void expect_mce(struct __test_metadata *_metadata, const char *who,
		       const struct mce *m, int code, void *addr, int lsb)
{
	TH_LOG("%s: %s: %s", fs_type(), who, mce_describe(m));
	EXPECT_EQ(SIGBUS, m->sig)
		TH_LOG("%s: expected SIGBUS %s at %p", who, mce_code(code), addr);
	EXPECT_EQ(code, m->code)
		TH_LOG("%s: expected si_code %s, got %s", who, mce_code(code), mce_code(m->code));
	EXPECT_EQ(addr, m->addr)
		TH_LOG("%s: expected si_addr %p (the poisoned page), got %p", who, addr, m->addr);
	EXPECT_EQ(lsb, m->lsb)
		TH_LOG("%s: expected si_addr_lsb %d, got %d", who, lsb, m->lsb);
}

/* Whether the page at @p, a mapping of file offset @off, loads without a
 * signal and holds the pattern under @seed. */
static bool page_reads(void *p, off_t off, uint64_t seed)
{
	return mm_load_sig(p) == 0 && fs_check_fill(p, MM_PAGE, off, seed) == -1;
}

/* A mapping of the 4 pages of @fd with every page loaded and checked
 * against @seed, or MAP_FAILED. */
static unsigned char *map_touched(int fd, uint64_t seed)
{
	unsigned char *p = mm_map(NULL, 4 * MM_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		return p;
	if (fs_check_fill(p, 4 * MM_PAGE, 0, seed) != -1) {
		fprintf(stderr, "# the mapping does not show the file's data\n");
		mm_unmap(p, 4 * MM_PAGE);
		return MAP_FAILED;
	}
	return p;
}

/*
 * A 4-page file "f" with the pattern under @seed, mapped and touched, its
 * page 1 poisoned: the caller got SIGBUS BUS_MCEERR_AR there (checked).
 * Returns the file, open read-write, with the mapping unmapped.
 */
static int poisoned_file(struct __test_metadata *_metadata, uint64_t seed)
{
	int fd = fs_make_pattern_file("f", 4 * MM_PAGE, seed);
	unsigned char *p;
	struct mce got;

	if (fd < 0) {
		TH_LOG("creating f: %s", strerror(errno));
		return -1;
	}
	p = map_touched(fd, seed);
	if (p == MAP_FAILED)
		return -1;
	EXPECT_EQ(0, poison(p + MM_PAGE, &got)) TH_LOG("madvise(MADV_HWPOISON): %s",
						      strerror(errno));
	expect_mce(_metadata, "poisoning page 1", &got, BUS_MCEERR_AR, p + MM_PAGE, 12);
	mm_unmap(p, 4 * MM_PAGE);
	return fd;
}

/*
 * A new mapping of the 4-page file @fd shows page 1 with the pattern under
 * @new_seed (it replaced the poisoned page) and the other pages with the
 * file's pattern under @seed.
 */
static void expect_page_1_replaced(struct __test_metadata *_metadata, int fd,
				   uint64_t new_seed, uint64_t seed)
{
	unsigned char *q = mm_map(NULL, 4 * MM_PAGE, PROT_READ, MAP_SHARED, fd, 0);

	ASSERT_NE(MAP_FAILED, q);
	EXPECT_TRUE(page_reads(q + MM_PAGE, MM_PAGE, new_seed))
		TH_LOG("a new mapping of the replaced page: %s",
		       mm_sig ? "expected no signal" : "expected the new data");
	for (int i = 0; i < 4; i += 1 + (i == 0)) {
		EXPECT_TRUE(page_reads(q + i * MM_PAGE, i * MM_PAGE, seed))
			TH_LOG("page %d of a new mapping: expected its old data", i);
	}
	mm_unmap(q, 4 * MM_PAGE);
}

TEST_F(mm, hwpoison_data_page_sigbus_ar)
{
	int fd = fs_make_pattern_file("f", 4 * MM_PAGE, 1);
	unsigned char *p;
	struct mce got;
	int ret;

	ASSERT_LE(0, fd);
	p = map_touched(fd, 1);
	ASSERT_NE(MAP_FAILED, p);
	ret = poison(p + MM_PAGE, &got);
	ASSERT_EQ(0, ret) TH_LOG("madvise(MADV_HWPOISON): %s", strerror(-ret));
	expect_mce(_metadata, "madvise(MADV_HWPOISON) of page 1", &got, BUS_MCEERR_AR,
		   p + MM_PAGE, 12);

	/* The other pages: still mapped (or mapped again) with their data. */
	for (int i = 0; i < 4; i += 1 + (i == 0)) {
		EXPECT_TRUE(page_reads(p + i * MM_PAGE, i * MM_PAGE, 1))
			TH_LOG("page %d after the poison of page 1: expected its data, %s", i,
			       mm_sig ? "got a signal" : "got other bytes");
	}
	close(fd);
}

/* What a process that maps a file and waits reports (shared memory). */
struct sharer {
	const char *name;
	uint64_t seed;		/* the pattern its page 1 holds */
	size_t pad;		/* bytes mapped before it (its own addresses) */
	int ready[2];		/* child -> parent: page 1 touched, handler set */
	int quit[2];		/* parent -> child: exit now */
	struct mce got;		/* the last SIGBUS it received */
	void *volatile page;	/* its address of page 1 */
	volatile int failed;	/* why it could not wait (0: it did) */
};

static struct sharer *sharer_self;

static void on_sharer_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	sharer_self->got.sig = sig;
	sharer_self->got.code = si->si_code;
	sharer_self->got.addr = si->si_addr;
	sharer_self->got.lsb = si->si_addr_lsb;
	sharer_self->got.count++;
}

/* The child: early kill, maps the file, loads page 1, waits for "quit". */
static int sharer_main(struct sharer *s)
{
	struct sigaction sa = { .sa_sigaction = on_sharer_sigbus, .sa_flags = SA_SIGINFO };
	unsigned char *p;
	char c;
	int fd;

	sharer_self = s;
	close(s->ready[0]);
	close(s->quit[1]);
	if (prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0))
		return 10;
	/* Forked processes lay out their mappings alike: a padding mapping
	 * moves this one away from the parent's (and the other child's). */
	if (mmap(NULL, s->pad, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
		return 17;
	fd = open(fs_path("%s", s->name), O_RDONLY);
	if (fd < 0)
		return 11;
	p = mmap(NULL, 4 * MM_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return 12;
	if (fs_check_fill(p + MM_PAGE, MM_PAGE, MM_PAGE, s->seed) != -1)
		return 14;
	sigemptyset(&sa.sa_mask);	/* no SA_RESTART: read() returns EINTR */
	if (sigaction(SIGBUS, &sa, NULL))
		return 13;
	s->page = p + MM_PAGE;
	if (write(s->ready[1], "r", 1) != 1)
		return 15;
	while (read(s->quit[0], &c, 1) < 0)
		if (errno != EINTR)
			return 16;
	return 0;
}

/* Forks the child of @s; returns its pid (or -1). */
static pid_t sharer_start(struct sharer *s)
{
	pid_t pid;

	if (pipe(s->ready) || pipe(s->quit))
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		alarm(60);
		_exit(sharer_main(s));
	}
	close(s->ready[1]);
	close(s->quit[0]);
	return pid;
}

/* Waits (10 s at most) for the child of @s to have touched its page. */
static bool sharer_ready(struct sharer *s)
{
	struct pollfd pfd = { .fd = s->ready[0], .events = POLLIN };
	char c;

	return poll(&pfd, 1, 10000) == 1 && read(s->ready[0], &c, 1) == 1;
}

/*
 * Whether the memory failure of a data page goes to the kernel's generic
 * handling instead of the filesystem's ->notify_failure: tried on a page of
 * a file of its own ("probe"); oxdax's pmem driver logs which way each
 * failure went. The generic handling of 6.12 cannot take a page shared by
 * reflinked files: dax_lock_folio() takes PAGE_MAPPING_DAX_SHARED for an
 * address_space and oopses, leaving mf_mutex held (every later memory
 * failure then hangs), so the shared page is not poisoned then.
 */
static bool generic_handling(struct __test_metadata *_metadata)
{
	int fd = fs_make_pattern_file("probe", MM_PAGE, 12);
	struct kmsg_watch w;
	unsigned char *p;
	struct mce got;
	bool generic;

	if (fd < 0 || kmsg_watch_start(&w))
		return false;
	p = mm_map(NULL, MM_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED || mm_load_sig(p)) {
		kmsg_watch_stop(&w);
		return false;
	}
	EXPECT_EQ(0, poison(p, &got));
	expect_mce(_metadata, "poisoning a page of an unshared file", &got, BUS_MCEERR_AR, p, 12);
	generic = kmsg_count(&w, "generic handling") > 0;
	kmsg_watch_stop(&w);
	mm_unmap(p, MM_PAGE);
	close(fd);
	return generic;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

TEST_F(mm, reflinked_sharer_gets_sigbus_others_untouched)
{
	struct sharer *s = mmap(NULL, 2 * sizeof(*s), PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct sharer *sb = &s[0], *sc = &s[1];
	int fa = fs_make_pattern_file("a", 4 * MM_PAGE, 2), fb, fc;
	unsigned char *pa;
	struct mce got;
	int status;
	double t0;

	ASSERT_NE(MAP_FAILED, s);
	memset(s, 0, 2 * sizeof(*s));
	ASSERT_LE(0, fa);
	fb = open(fs_path("b"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, fb);
	if (ioctl(fb, FICLONE, fa)) {
		if (errno == EOPNOTSUPP && fs_is("ext4"))
			SKIP(return, "ext4 has no reflink");
		ASSERT_EQ(0, errno) TH_LOG("FICLONE a -> b: %s", strerror(errno));
	}
	ASSERT_EQ(0, fsync(fb));
	fc = fs_make_pattern_file("c", 4 * MM_PAGE, 3);
	ASSERT_LE(0, fc);
	ASSERT_FALSE(generic_handling(_metadata))
		TH_LOG("%s leaves data failures to the kernel's generic handling, which would oops "
		       "on the shared page: the filesystem must handle them (->notify_failure)",
		       fs_type());

	/* The sharer of the poisoned block (B) and a bystander (C). */
	*sb = (struct sharer){ .name = "b", .seed = 2, .pad = 64 * MM_PAGE };
	*sc = (struct sharer){ .name = "c", .seed = 3, .pad = 128 * MM_PAGE };
	self->kids[0] = sharer_start(sb);
	ASSERT_LT(0, self->kids[0]);
	self->kids[1] = sharer_start(sc);
	ASSERT_LT(0, self->kids[1]);
	ASSERT_TRUE(sharer_ready(sb)) TH_LOG("the child mapping b did not get ready");
	ASSERT_TRUE(sharer_ready(sc)) TH_LOG("the child mapping c did not get ready");

	pa = map_touched(fa, 2);
	ASSERT_NE(MAP_FAILED, pa);
	ASSERT_EQ(0, poison(pa + MM_PAGE, &got));
	t0 = now();
	expect_mce(_metadata, "the poisoning process (a)", &got, BUS_MCEERR_AR, pa + MM_PAGE, 12);

	/* Up to 5 s for the sharer's signal, at least 1 s for the bystander's. */
	while (!sb->got.count && now() - t0 < 5)
		usleep(10000);
	while (now() - t0 < 1)
		usleep(10000);
	for (int i = 0; i < 2; i++) {
		struct sharer *k = &s[i];

		ASSERT_EQ(1, write(k->quit[1], "q", 1));
		ASSERT_EQ(self->kids[i], waitpid(self->kids[i], &status, 0));
		self->kids[i] = 0;
		EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
			TH_LOG("the child mapping %s: %s %d", k->name,
			       WIFEXITED(status) ? "exit status" : "killed by signal",
			       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	}

	EXPECT_NE(pa + MM_PAGE, sb->page);	/* the addresses tell who got what */
	expect_mce(_metadata, "the early-kill process mapping the clone (b)", &sb->got,
		   BUS_MCEERR_AO, sb->page, 12);
	EXPECT_EQ(1, sb->got.count) TH_LOG("b: expected one SIGBUS, got %d", sb->got.count);
	TH_LOG("%s: the early-kill process mapping c: %s", fs_type(), mce_describe(&sc->got));
	EXPECT_EQ(0, sc->got.count)
		TH_LOG("c does not share the block: expected no signal, got %d", sc->got.count);

	/* The untouched pages of A and B still have their data. */
	EXPECT_EQ(-1, fs_check_pattern(fb, 2 * MM_PAGE, 2 * MM_PAGE, 2));
	EXPECT_TRUE(page_reads(pa, 0, 2));
	EXPECT_EQ(-1, fs_check_pattern(fc, 0, 4 * MM_PAGE, 3));
	munmap(s, 2 * sizeof(*s));
	close(fa);
	close(fb);
	close(fc);
}

TEST_F(mm, poisoned_block_reads_eio_until_punched)
{
	unsigned char buf[MM_PAGE], *q;
	int fd = poisoned_file(_metadata, 4);
	ssize_t n;
	int err;

	ASSERT_LE(0, fd);
	n = pread(fd, buf, MM_PAGE, MM_PAGE);
	err = n < 0 ? errno : 0;
	TH_LOG("%s: read(2) of the poisoned page: %s", fs_type(),
	       n < 0 ? strerror(err) : n == MM_PAGE ? "read" : "short");
	q = mm_map(NULL, 4 * MM_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, q);
	if (mm_load_sig(q + MM_PAGE))
		TH_LOG("%s: a new fault on the poisoned page: %s si_code %d (%s) at %p", fs_type(),
		       strsignal(mm_sig), mm_sig_code, mce_code(mm_sig_code), mm_sig_addr);
	else
		TH_LOG("%s: a new fault on the poisoned page: no signal", fs_type());
	if (fs_is("oxdax")) {
		/* oxdax refuses the poisoned block, and only it. */
		EXPECT_EQ(EIO, err) TH_LOG("read(2) of the poisoned page: expected EIO, got %s",
					   n < 0 ? strerror(err) : "the data");
		EXPECT_EQ(-1, fs_check_pattern(fd, 0, MM_PAGE, 4))
			TH_LOG("page 0 must still read: %s", strerror(errno));
		EXPECT_EQ(-1, fs_check_pattern(fd, 2 * MM_PAGE, 2 * MM_PAGE, 4))
			TH_LOG("pages 2 and 3 must still read: %s", strerror(errno));
		EXPECT_EQ(SIGBUS, mm_sig) TH_LOG("a new fault on the poisoned page: expected SIGBUS");
		EXPECT_EQ(BUS_MCEERR_AR, mm_sig_code)
			TH_LOG("expected BUS_MCEERR_AR, got si_code %d", mm_sig_code);
		EXPECT_EQ(q + MM_PAGE, mm_sig_addr);
		EXPECT_TRUE(page_reads(q + 2 * MM_PAGE, 2 * MM_PAGE, 4))
			TH_LOG("page 2 of a new mapping must still fault in");
	}
	ASSERT_EQ(0, mm_unmap(q, 4 * MM_PAGE));

	/* Punch the block out, write new data: all is well again. */
	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MM_PAGE, MM_PAGE))
		TH_LOG("punching the poisoned page: %s", strerror(errno));
	EXPECT_TRUE(mm_file_zero(fd, MM_PAGE, MM_PAGE)) TH_LOG("the punched page must read zeros");
	fs_fill(buf, MM_PAGE, MM_PAGE, 5);
	ASSERT_EQ((ssize_t)MM_PAGE, pwrite(fd, buf, MM_PAGE, MM_PAGE))
		TH_LOG("writing the punched page: %s", strerror(errno));
	EXPECT_EQ(-1, fs_check_pattern(fd, MM_PAGE, MM_PAGE, 5))
		TH_LOG("read(2) of the rewritten page: expected the new data");
	expect_page_1_replaced(_metadata, fd, 5, 4);
	close(fd);
}

TEST_F(mm, overwrite_clears_poison)
{
	unsigned char buf[MM_PAGE];
	int fd = poisoned_file(_metadata, 6);
	ssize_t n;

	ASSERT_LE(0, fd);
	if (fs_is("oxdax")) {
		EXPECT_EQ(-1, pread(fd, buf, MM_PAGE, MM_PAGE))
			TH_LOG("before the overwrite, read(2) of the poisoned page must fail (EIO)");
	}

	/* Part of the page: done, or refused with EIO (the rest is poisoned). */
	fs_fill(buf, 100, MM_PAGE + 100, 7);
	n = pwrite(fd, buf, 100, MM_PAGE + 100);
	TH_LOG("%s: write(2) of 100 bytes into the poisoned page: %s", fs_type(),
	       n == 100 ? "written" : n < 0 ? strerror(errno) : "short");
	EXPECT_TRUE(n == 100 || (n == -1 && errno == EIO))
		TH_LOG("expected success or EIO, got %zd (%s)", n, n < 0 ? strerror(errno) : "");

	/* The whole page: clears the poison. */
	fs_fill(buf, MM_PAGE, MM_PAGE, 8);
	ASSERT_EQ((ssize_t)MM_PAGE, pwrite(fd, buf, MM_PAGE, MM_PAGE))
		TH_LOG("overwriting the whole poisoned page: %s", strerror(errno));
	EXPECT_EQ(-1, fs_check_pattern(fd, MM_PAGE, MM_PAGE, 8))
		TH_LOG("read(2) of the overwritten page: expected the new data (%s)",
		       strerror(errno));
	expect_page_1_replaced(_metadata, fd, 8, 6);
	close(fd);
}

TEST_F(mm, pmd_mapped_page_poison)
{
	const size_t size = 4 * MIB;
	const size_t healthy[] = { 0, 2 * MM_PAGE, 4 * MM_PAGE, MM_PMD, size - MM_PAGE };
	int fd = open(fs_path("f"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	struct mm_snap a, b;
	unsigned char *p;
	struct mce got;
	bool pmd;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fallocate(fd, 0, 0, size));
	ASSERT_EQ(size, fs_write_pattern(fd, 0, size, 9));
	ASSERT_EQ(0, fsync(fd));
	p = mm_map_aligned(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);

	/* A store to every page; the first 2 MiB measured. */
	mm_snap(&a);
	mm_write_words(p, MM_PMD, 0, 10);
	mm_snap_end(&b);
	mm_write_words(p + MM_PMD, MM_PMD, MM_PMD, 10);
	TH_LOG("%s: stores to every page of the first 2 MiB: %s", fs_type(), mm_describe(&a, &b));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		pmd = mm_delta(&a, &b, MM_FAULT_PMD) > 0;
		EXPECT_TRUE(pmd) TH_LOG("oxdax maps a fallocated, aligned 2 MiB with a PMD");
	} else {
		/* One fault for a PMD, 512 for PTEs. */
		pmd = mm_faults(&a, &b) < (long)(MM_PMD / MM_PAGE / 2);
	}
	TH_LOG("%s: the first 2 MiB is %s-mapped", fs_type(), pmd ? "PMD" : "PTE");

	ASSERT_EQ(0, poison(p + 3 * MM_PAGE, &got));
	expect_mce(_metadata, "madvise(MADV_HWPOISON) of page 3", &got, BUS_MCEERR_AR,
		   p + 3 * MM_PAGE, pmd ? 21 : 12);

	/* The healthy pages around it, and the other 2 MiB, keep their data. */
	for (size_t i = 0; i < sizeof(healthy) / sizeof(healthy[0]); i++) {
		size_t off = healthy[i];
		uint64_t word = 0;
		int sig = mm_load_sig(p + off);

		if (!sig)
			memcpy(&word, p + off, 8);
		EXPECT_EQ(0, sig)
			TH_LOG("offset %zu after the poison of page 3: expected no signal", off);
		EXPECT_EQ(oxdax_pattern(off, 10), word)
			TH_LOG("offset %zu through the mapping: expected the stored word", off);
		word = 0;
		EXPECT_EQ(8, pread(fd, &word, 8, off));
		EXPECT_EQ(oxdax_pattern(off, 10), word)
			TH_LOG("offset %zu through read(2): expected the stored word", off);
	}
	close(fd);
}

/* Whether a line of @text holds both @a and @b. */
/*
 * oxdax maps 2 MiB holes to a 2 MiB chunk of zeros on the device (the huge
 * zero page is not exported), which no file owns. When it fails nothing is
 * lost: nobody is killed, its mappings go, and holes are served by the
 * (4 KiB) zero page from then on. Not on ext4 or xfs: there the huge zero
 * page is ordinary RAM, which this must not poison.
 */
TEST_F(mm, zero_chunk_poison)
{
	const size_t size = 4 * MIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	struct mm_snap a, b;
	unsigned char *p;
	struct mce got;

	if (!fs_is("oxdax") || !mm_counted())
		SKIP(return, "holes of %s are the kernel's huge zero page, ordinary memory",
		     fs_is("oxdax") ? "oxdax with fault_engine=iomap" : fs_type());
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, size));
	p = mm_map_aligned(size, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	mm_snap(&a);
	ASSERT_EQ(0, mm_load_sig(p));
	mm_snap_end(&b);
	ASSERT_EQ(1, mm_delta(&a, &b, MM_FAULT_ZERO_PMD))
		TH_LOG("a hole read of an aligned 2 MiB maps the zero chunk");

	ASSERT_EQ(0, poison(p + 3 * MM_PAGE, &got));
	EXPECT_EQ(0, got.sig) TH_LOG("zeros are not lost: %s", mce_describe(&got));

	/* Holes still read as zeros, through 4 KiB zero pages now. */
	mm_snap(&a);
	EXPECT_EQ(0, mm_load_sig(p + MM_PMD));
	EXPECT_EQ(0, p[MM_PMD]);
	EXPECT_EQ(0, mm_load_sig(p + 5 * MM_PAGE));
	EXPECT_EQ(0, p[5 * MM_PAGE]);
	mm_snap_end(&b);
	EXPECT_EQ(0, mm_delta(&a, &b, MM_FAULT_ZERO_PMD))
		TH_LOG("the failed zero chunk is not mapped again");
	EXPECT_EQ(2, mm_delta(&a, &b, MM_FAULT_ZERO))
		TH_LOG("both halves map zero pages (the first lost its zero chunk)");
	close(fd);
}

static bool log_has(const char *text, const char *a, const char *b)
{
	while (*text) {
		const char *end = strchr(text, '\n');
		size_t len = end ? (size_t)(end - text) : strlen(text);

		if (memmem(text, len, a, strlen(a)) && memmem(text, len, b, strlen(b)))
			return true;
		text += len + (end ? 1 : 0);
	}
	return false;
}

/* The page frame mapped at @addr in this process (/proc/self/pagemap), 0
 * if none. */
static uint64_t pagemap_pfn(const void *addr)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t entry = 0;

	if (fd < 0)
		return 0;
	if (pread(fd, &entry, 8, (uintptr_t)addr / MM_PAGE * 8) != 8)
		entry = 0;
	close(fd);
	if (!(entry >> 63))
		return 0;		/* not present */
	return entry & ((1ull << 55) - 1);
}

/*
 * A zero chunk that failed is never mapped again, also not after the
 * filesystem was remounted read-only and then read-write (which reserves
 * a zero chunk again): the next 2 MiB hole read maps another chunk.
 */
TEST_F(mm, failed_zero_chunk_not_reused_after_remount)
{
	const size_t size = 4 * MIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	uint64_t failed, now;
	struct mm_snap a, b;
	unsigned char *p;
	struct mce got;

	if (!fs_is("oxdax") || !mm_counted())
		SKIP(return, "holes of %s are the kernel's huge zero page, ordinary memory",
		     fs_is("oxdax") ? "oxdax with fault_engine=iomap" : fs_type());
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, size));
	p = mm_map_aligned(size, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, mm_load_sig(p));
	failed = pagemap_pfn(p);
	ASSERT_NE(0, failed);
	ASSERT_EQ(0, poison(p + 3 * MM_PAGE, &got));
	EXPECT_EQ(0, got.sig) TH_LOG("zeros are not lost: %s", mce_describe(&got));
	ASSERT_EQ(0, mm_unmap(p, size));
	close(fd);

	ASSERT_EQ(0, mount(NULL, FS_MNT, NULL, MS_REMOUNT | MS_RDONLY, NULL))
		TH_LOG("remount read-only: %s", strerror(errno));
	ASSERT_EQ(0, mount(NULL, FS_MNT, NULL, MS_REMOUNT, NULL))
		TH_LOG("remount read-write: %s", strerror(errno));
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	p = mm_map_aligned(size, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	mm_snap(&a);
	ASSERT_EQ(0, mm_load_sig(p + MM_PMD));
	mm_snap_end(&b);
	now = pagemap_pfn(p + MM_PMD);
	TH_LOG("failed zero chunk at pfn %#llx, a hole maps pfn %#llx now",
	       (unsigned long long)failed, (unsigned long long)now);
	EXPECT_EQ(1, mm_delta(&a, &b, MM_FAULT_ZERO_PMD)) TH_LOG("a new zero chunk maps 2 MiB holes");
	EXPECT_FALSE(now >= failed && now < failed + MM_PMD / MM_PAGE)
		TH_LOG("the failed zero chunk is mapped again");
	EXPECT_EQ(0, p[MM_PMD + 5]);
	close(fd);
}

/* The device byte offset of file offset 0 of @fd (FIEMAP), or -1. */
static long long device_offset(int fd)
{
	struct {
		struct fiemap map;
		struct fiemap_extent ext[1];
	} e;

	memset(&e, 0, sizeof(e));
	e.map.fm_length = MM_PAGE;
	e.map.fm_flags = FIEMAP_FLAG_SYNC;
	e.map.fm_extent_count = 1;
	if (ioctl(fd, FS_IOC_FIEMAP, &e.map) || e.map.fm_mapped_extents != 1 ||
	    e.ext[0].fe_logical != 0)
		return -1;
	return e.ext[0].fe_physical;
}

/*
 * A process that maps pages [@first, @first + @count) of file @name (early
 * kill asked), touches them, says so, and waits for "quit"; it exits 0 if
 * it got no signal and its pages still hold the pattern under @seed.
 */
struct bystander {
	const char *name;
	uint64_t seed;
	size_t first, count;
	int ready[2], quit[2];
};

static volatile sig_atomic_t bystander_signals;

static void on_bystander_sigbus(int sig)
{
	(void)sig;
	bystander_signals++;
}

static int bystander_main(struct bystander *b)
{
	int fd = open(fs_path("%s", b->name), O_RDONLY);
	size_t len = b->count * MM_PAGE;
	off_t off = b->first * MM_PAGE;
	unsigned char *p;
	char c;

	close(b->ready[0]);
	close(b->quit[1]);
	signal(SIGBUS, on_bystander_sigbus);
	if (fd < 0 || prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0))
		return 10;
	p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, off);
	if (p == MAP_FAILED || fs_check_fill(p, len, off, b->seed) != -1)
		return 11;
	if (write(b->ready[1], "r", 1) != 1)
		return 12;
	while (read(b->quit[0], &c, 1) < 0)
		if (errno != EINTR)
			return 13;
	if (bystander_signals)
		return 14;
	return fs_check_fill(p, len, off, b->seed) == -1 ? 0 : 15;
}

static pid_t bystander_start(struct bystander *b)
{
	pid_t pid;

	if (pipe(b->ready) || pipe(b->quit))
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		alarm(60);
		_exit(bystander_main(b));
	}
	close(b->ready[1]);
	close(b->quit[0]);
	return pid;
}

/* A process that maps file "b" and touches page 1 after the poison. */
static int touch_clone_page_1(void *arg)
{
	int fd = open(fs_path("b"), O_RDONLY);
	struct mce *got = arg;
	unsigned char *p;

	if (fd < 0)
		return 10;
	p = mmap(NULL, 4 * MM_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return 11;
	mm_load_sig(p + MM_PAGE);
	got->sig = mm_sig;
	got->code = mm_sig_code;
	got->addr = mm_sig_addr;
	got->lsb = mm_sig_addr == p + MM_PAGE;	/* the right address */
	if (!page_reads(p, 0, 2) || !page_reads(p + 2 * MM_PAGE, 2 * MM_PAGE, 2))
		return 12;
	return 0;
}

/*
 * oxdax remembers a poisoned block until it is rewritten or freed, in every
 * file that shares it: a process touching the poisoned page through the
 * clone afterwards gets SIGBUS BUS_MCEERR_AR there, where ext4 and xfs serve
 * the (software-poisoned) page again. Processes that map only other pages
 * of the two files, even with early kill, are left alone. A second
 * MADV_HWPOISON of the page fails with EFAULT on oxdax (get_user_pages meets
 * the refused fault). Documentation/oxdax/failure.rst says why.
 */
TEST_F(mm, poisoned_page_of_any_sharer_sigbus_others_untouched)
{
	struct bystander *by = mmap(NULL, 2 * sizeof(*by), PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct mce *got = mmap(NULL, sizeof(*got), PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int fa = fs_make_pattern_file("a", 4 * MM_PAGE, 2), fb, status, ret;
	unsigned char *pa;
	struct mce mine;

	ASSERT_NE(MAP_FAILED, by);
	ASSERT_NE(MAP_FAILED, got);
	ASSERT_LE(0, fa);
	fb = open(fs_path("b"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, fb);
	if (ioctl(fb, FICLONE, fa)) {
		if (errno == EOPNOTSUPP && fs_is("ext4"))
			SKIP(return, "ext4 has no reflink");
		ASSERT_EQ(0, errno) TH_LOG("FICLONE a -> b: %s", strerror(errno));
	}
	ASSERT_EQ(0, fsync(fb));
	/* Pages 2 and 3 of a, page 0 of b. */
	by[0] = (struct bystander){ .name = "a", .seed = 2, .first = 2, .count = 2 };
	by[1] = (struct bystander){ .name = "b", .seed = 2, .first = 0, .count = 1 };
	for (int i = 0; i < 2; i++) {
		char c;

		self->kids[i] = bystander_start(&by[i]);
		ASSERT_LT(0, self->kids[i]);
		ASSERT_EQ(1, read(by[i].ready[0], &c, 1)) TH_LOG("bystander %d not ready", i);
	}

	pa = map_touched(fa, 2);
	ASSERT_NE(MAP_FAILED, pa);
	ASSERT_EQ(0, poison(pa + MM_PAGE, &mine));
	expect_mce(_metadata, "the poisoning process (a)", &mine, BUS_MCEERR_AR, pa + MM_PAGE, 12);

	memset(got, 0, sizeof(*got));
	EXPECT_EQ(0, mm_child(touch_clone_page_1, got, 30))
		TH_LOG("the process touching b's page 1 could not read b's other pages");
	TH_LOG("%s: a later touch of the clone's poisoned page: %s", fs_type(), mce_describe(got));
	if (fs_is("oxdax")) {
		EXPECT_EQ(SIGBUS, got->sig);
		EXPECT_EQ(BUS_MCEERR_AR, got->code);
		EXPECT_EQ(1, got->lsb) TH_LOG("the signal's address is not the touched page");
		ret = poison(pa + MM_PAGE, &mine);
		EXPECT_EQ(-EFAULT, ret) TH_LOG("a second MADV_HWPOISON: %s",
					       ret ? strerror(-ret) : mce_describe(&mine));
	}

	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(1, write(by[i].quit[1], "q", 1));
		ASSERT_EQ(self->kids[i], waitpid(self->kids[i], &status, 0));
		self->kids[i] = 0;
		EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
			TH_LOG("the process mapping other pages of %s: %s %d", by[i].name,
			       WIFEXITED(status) ? "exit status" : "killed by signal",
			       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	}
	munmap(by, 2 * sizeof(*by));
	munmap(got, sizeof(*got));
	close(fa);
	close(fb);
}

TEST_F(mm, metadata_poison_shuts_down)
{
	int fd = fs_make_pattern_file("f", MM_PAGE, 11);
	struct kmsg_watch w;
	unsigned char *p, *kept;
	struct mce got;
	long long phys;
	uint64_t pfn, base;
	char text[32];
	ssize_t n;
	int ret, err;
	bool shut;

	if (!fs_is("oxdax"))
		SKIP(return, "%s: only oxdax promises to shut down on metadata poison", fs_type());
	ASSERT_LE(0, fd);

	/* The device's first page frame: a data page's, less its offset. */
	p = mm_map(NULL, MM_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_TRUE(page_reads(p, 0, 11));
	pfn = pagemap_pfn(p);
	ASSERT_NE(0, pfn) TH_LOG("no page frame for the mapped page in /proc/self/pagemap");
	ASSERT_EQ(0, mm_unmap(p, MM_PAGE));
	phys = device_offset(fd);
	ASSERT_LE(0, phys) TH_LOG("FIEMAP of f: %s", strerror(errno));
	ASSERT_EQ(0, phys % MM_PAGE);
	ASSERT_LE((uint64_t)phys, pfn * MM_PAGE);
	base = pfn * MM_PAGE - phys;
	TH_LOG("file page at pfn %#llx, device offset %#llx: the device starts at %#llx",
	       (unsigned long long)pfn, phys, (unsigned long long)base);
	/* Mapped across the shutdown, for the data poison below. */
	kept = mm_map(NULL, MM_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, kept);
	ASSERT_TRUE(page_reads(kept, 0, 11));

	/* Poison block 0, the superblock. */
	ASSERT_EQ(0, access(HWPOISON_INJECT, W_OK))
		TH_LOG("%s: %s (CONFIG_HWPOISON_INJECT, debugfs)", HWPOISON_INJECT, strerror(errno));
	ASSERT_EQ(0, kmsg_watch_start(&w));
	snprintf(text, sizeof(text), "0x%llx", (unsigned long long)(base / MM_PAGE));
	ret = write_text(HWPOISON_INJECT, text);
	TH_LOG("%s < %s: %s", HWPOISON_INJECT, text, ret ? strerror(-ret) : "done");
	shut = log_has(kmsg_collect(&w), "oxdax", "shut");
	for (char *c = w.text; *c; c++)
		if (*c == '\n' && c[1])
			*c = '|';	/* one line in the test's output */
	EXPECT_TRUE(shut)
		TH_LOG("expected a kernel message from oxdax that it shut down; got: %s", w.text);
	kmsg_watch_stop(&w);

	/* Nothing is written any more. */
	ret = open(fs_path("new"), O_CREAT | O_WRONLY, 0644);
	err = ret < 0 ? errno : 0;
	EXPECT_EQ(EIO, err) TH_LOG("creating a file after the shutdown: expected EIO, got %s",
				   ret < 0 ? strerror(err) : "a new file");
	n = pwrite(fd, "x", 1, 0);
	err = n < 0 ? errno : 0;
	EXPECT_EQ(EIO, err) TH_LOG("writing a file after the shutdown: expected EIO, got %s",
				   n < 0 ? strerror(err) : "written");

	/*
	 * A data page mapped since before the shutdown fails now: the reverse
	 * map cannot be asked any more, so oxdax finds the mappers through the
	 * mapping entries of the inodes in memory; the consumer still gets
	 * its SIGBUS at that page.
	 */
	ret = poison(kept, &got);
	EXPECT_EQ(0, ret) TH_LOG("madvise(MADV_HWPOISON) after the shutdown: %s", strerror(-ret));
	expect_mce(_metadata, "poisoning a mapped data page after the shutdown", &got,
		   BUS_MCEERR_AR, kept, 12);
	close(fd);
	/* The teardown unmounts and checks: clean, as oxdax wrote nothing since. */
}

TEST_HARNESS_MAIN
