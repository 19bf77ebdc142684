// SPDX-License-Identifier: GPL-2.0
/*
 * daxbench: the guest side of `make bench` (scripts/bench). Each command
 * measures one thing on the filesystem mounted at DIR, once, and prints
 * "METRIC VALUE" lines; scripts/guest/bench.sh repeats it per filesystem
 * and scripts/bench-report turns the repetitions into ratios.
 *
 *   daxbench fault DIR prealloc|empty [sync] [copy]
 *	Seed 003's methodology: the latency of each of 512 write faults on a
 *	fresh 4 KiB-page mapping of a 2 MiB file, preallocated (written and
 *	fsynced) or empty (ftruncated, the fault allocates); with MAP_SYNC;
 *	with a background file copy running on the same filesystem.
 *	Prints min/avg/max and the log2 histogram (bucket lower bound in us).
 *   daxbench pmd DIR sparse|fallocated
 *	Write faults on each 2 MiB of a 1 GiB file mapped at a 2 MiB-aligned
 *	address: their latency and the fraction of the mapping that they
 *	mapped with PMDs (a second pass touches every other 4 KiB page: a
 *	PMD-mapped 2 MiB costs no fault, a PTE-mapped one 511).
 *   daxbench cow DIR 4k|2m
 *	Write faults on a FICLONEd copy of a 64 MiB file: each 4 KiB of its
 *	first 2 MiB (PMD disabled on the mapping), or each 2 MiB of it.
 *   daxbench bw DIR|anon
 *	Sequential write and read bandwidth through a mapping of a 512 MiB
 *	file already faulted in, or of anonymous memory (the ceiling).
 *   daxbench io DIR
 *	write(2)/read(2): 4 KiB at random offsets and 1 MiB sequential over a
 *	256 MiB file.
 *   daxbench fsync DIR
 *	fsync(2) latency after dirtying N pages of a mapping (N = 1, 16, 256,
 *	4096).
 *   daxbench meta DIR
 *	Create, stat and unlink 10,000 empty files.
 *   daxbench failure DIR SHARERS
 *	notify_failure latency: a block shared by SHARERS reflinked files, all
 *	mapped by a child process, is poisoned through debugfs
 *	hwpoison/corrupt-pfn; the write returns when the filesystem has found
 *	every owner, every mapping is gone and the child (early kill) is
 *	signalled. The child must find its mappings gone and have had its
 *	SIGBUS (else the failure was not handled).
 *   daxbench fragment DIR COUNT
 *	A file of COUNT one-block extents (every other block written), to
 *	grow the reverse map before "failure" runs.
 *   daxbench age DIR [FULL_PCT WRITTEN_X10 FINAL_PCT SEED]
 *	Ages the filesystem with tests/lib/oxdax_age.h (defaults 85 30 60 1:
 *	churn at 85 % full until 3 times its size was written, then thinned
 *	to 60 %); prints what it did and how long it took.
 *   daxbench placement DIR fallocated|written|faulted
 *	A new 256 MiB file given its blocks by fallocate, by 1 MiB write(2)
 *	calls or by store faults through a 2 MiB-aligned mapping, closed,
 *	reopened and mapped 2 MiB-aligned: the fraction of its 2 MiB regions
 *	mapped by PMDs, counted by page faults (a store to the first page of
 *	each 2 MiB, then to the others: a PMD-mapped region costs the second
 *	pass no fault, a PTE-mapped one 511), the same measure on every
 *	filesystem. The file is removed.
 *   daxbench spin DIR OP SECONDS [PROCS [shared]]
 *	One operation, repeated for SECONDS by PROCS processes (default 1),
 *	for profiles (scripts/bench-profile) and the concurrency rows: OP is
 *	create (empty files), unlink (of files made beforehand), write4k
 *	(random 4 KiB pwrite into a written 64 MiB file), fault (4 KiB store
 *	faults on a written 64 MiB file, remapped when all are mapped) or
 *	fault-alloc (4 KiB store faults that allocate, in a sparse 64 MiB
 *	file truncated and remapped when full) or cow2m (a store to each 2 MiB
 *	of a FICLONEd copy of a written 64 MiB file, through a PMD-eligible
 *	mapping: copy-on-write faults of 2 MiB where the filesystem copies
 *	that much; cloned again when all are copied) or fsync (a store to
 *	each of the 4,096 pages of a written 16 MiB file through a 4 KiB-page
 *	mapping, then fsync: the writeback of fsync's last row). Each process works in
 *	its own directory, or with "shared" all in one directory (create,
 *	unlink) or one file (write4k, fault, fault-alloc, fsync; cow2m clones
 *	one source). Setup is done before the
 *	clock starts; with DAXBENCH_READY=FILE that file is created then, so
 *	a profiler can attach to the measured part only. Prints
 *	"spin_OP_per_s RATE" (operations of all processes per second).
 *
 * DAXBENCH_QUICK=1 divides every size and count by 16 (not the 512 faults
 * of "fault"): the test suite's quick tier checks that each measurement
 * runs and that notify_failure was handled, not how fast.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "oxdax_age.h"

#define PAGE 4096ul
#define PMD (2ul << 20)
#define MIB (1ul << 20)
#define FAULTS 512
#define HWPOISON_INJECT "/sys/kernel/debug/hwpoison/corrupt-pfn"

static const char *dir;
/* DAXBENCH_QUICK=1 (the test suite's quick tier): every size over 16. */
static bool quick;

static size_t scaled(size_t full)
{
	return quick ? full / 16 : full;
}

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;
	int err = errno;

	fprintf(stderr, "daxbench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(err));
	exit(1);
}

static const char *path(const char *name)
{
	static char buf[2][512];
	static int next;
	char *p = buf[next++ & 1];

	snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
	return p;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static long minor_faults(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

static int create(const char *name)
{
	int fd;

	unlink(path(name));
	fd = open(path(name), O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("create %s", path(name));
	return fd;
}

/* Writes @len bytes of a non-zero pattern at @off with 1 MiB writes. */
static void fill(int fd, off_t off, size_t len)
{
	static char buf[MIB];

	memset(buf, 0x5a, sizeof(buf));
	while (len) {
		size_t n = len < MIB ? len : MIB;

		if (pwrite(fd, buf, n, off) != (ssize_t)n)
			die("write %s", dir);
		off += n;
		len -= n;
	}
}

/* A shared mapping of @len bytes of @fd at a 2 MiB-aligned address. */
static char *map_aligned(int fd, size_t len, int flags, bool pmd)
{
	char *area, *p;

	area = mmap(NULL, len + PMD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		die("reserve address space");
	p = (char *)(((uintptr_t)area + PMD - 1) & ~(PMD - 1));
	munmap(area, p - area);
	munmap(p + len, area + len + PMD - p - len);
	if (mmap(p, len, PROT_READ | PROT_WRITE, flags | MAP_FIXED, fd, 0) == MAP_FAILED)
		die("mmap %s", dir);
	if (!pmd && madvise(p, len, MADV_NOHUGEPAGE))
		die("madvise(MADV_NOHUGEPAGE)");
	return p;
}

struct latency {
	uint64_t min, max, sum;
	unsigned long n;
	unsigned long hist[32];
};

static void latency_add(struct latency *l, uint64_t ns)
{
	uint64_t us = ns / 1000;
	int bucket = 0;

	if (!l->n || ns < l->min)
		l->min = ns;
	if (ns > l->max)
		l->max = ns;
	l->sum += ns;
	l->n++;
	while (bucket < 31 && (2ull << bucket) <= us)
		bucket++;
	l->hist[us ? bucket : 0]++;
}

/* min/avg/max in microseconds and the log2 histogram: "NAME.hist LO COUNT". */
static void latency_print(const char *name, const struct latency *l)
{
	printf("%s.min_us %.2f\n%s.avg_us %.2f\n%s.max_us %.2f\n", name, l->min / 1e3, name,
	       l->sum / 1e3 / l->n, name, l->max / 1e3);
	for (int b = 0; b < 32; b++)
		if (l->hist[b])
			printf("%s.hist %lu %lu\n", name, b ? 1ul << b : 0, l->hist[b]);
}

/* A store to each page (@stride apart) of @p, each one timed. */
static void timed_stores(struct latency *l, char *p, size_t len, size_t stride)
{
	for (size_t off = 0; off < len; off += stride) {
		uint64_t t = now_ns();

		*(volatile char *)(p + off) = 1;
		latency_add(l, now_ns() - t);
	}
}

/*
 * Pages of @len bytes at @p that a second pass of stores faults on, given a
 * first pass stored to the first page of every 2 MiB: none where a PMD maps
 * it. Returns the fraction of the 2 MiB ranges mapped by PMDs.
 */
static double pmd_fraction(char *p, size_t len)
{
	long before = minor_faults(), extra;

	for (size_t off = 0; off < len; off += PAGE)
		if (off % PMD)
			*(volatile char *)(p + off) = 2;
	extra = minor_faults() - before;
	return 1.0 - (double)extra / ((PMD / PAGE - 1) * (len / PMD));
}

static pid_t background_copy(void)
{
	pid_t pid;
	int in, out;

	in = create("copy-src");
	fill(in, 0, scaled(64 * MIB));
	fsync(in);
	close(in);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid)
		return pid;
	for (;;) {
		static char buf[MIB];
		ssize_t n;

		in = open(path("copy-src"), O_RDONLY);
		out = create("copy-dst");
		while ((n = read(in, buf, sizeof(buf))) > 0)
			if (write(out, buf, n) != n)
				die("copy");
		close(in);
		close(out);
	}
}

/* Stops the copier; a copier that had died (say ENOSPC) fails the run:
 * the measurement was not taken under load. */
static void background_stop(pid_t pid)
{
	int status;

	kill(pid, SIGKILL);
	if (waitpid(pid, &status, 0) != pid || !WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
		errno = ECHILD;
		die("the background copy stopped before the measurement ended");
	}
	unlink(path("copy-src"));
	unlink(path("copy-dst"));
}

static int cmd_fault(bool prealloc, bool sync, bool copy)
{
	const size_t len = FAULTS * PAGE;
	struct latency l = {};
	pid_t copier = 0;
	char *p;
	int fd;

	fd = create("fault");
	if (prealloc)
		fill(fd, 0, len);
	else if (ftruncate(fd, len))
		die("ftruncate");
	if (fsync(fd))
		die("fsync");
	if (copy)
		copier = background_copy();
	p = map_aligned(fd, len, sync ? MAP_SHARED_VALIDATE | MAP_SYNC : MAP_SHARED, false);
	timed_stores(&l, p, len, PAGE);
	if (copier)
		background_stop(copier);
	latency_print("fault", &l);
	munmap(p, len);
	close(fd);
	unlink(path("fault"));
	return 0;
}

static int cmd_pmd(bool fallocated)
{
	const size_t len = scaled(1ul << 30);
	struct latency l = {};
	char *p;
	int fd;

	fd = create("pmd");
	if (fallocated ? fallocate(fd, 0, 0, len) : ftruncate(fd, len))
		die("size %s", path("pmd"));
	fsync(fd);
	p = map_aligned(fd, len, MAP_SHARED, true);
	timed_stores(&l, p, len, PMD);
	latency_print("pmd_fault", &l);
	printf("pmd_mapped_fraction %.4f\n", pmd_fraction(p, len));
	munmap(p, len);
	close(fd);
	unlink(path("pmd"));
	return 0;
}

static int cmd_cow(bool huge)
{
	const size_t len = scaled(64 * MIB);
	struct latency l = {};
	int src, dst;
	char *p;

	src = create("cow-src");
	fill(src, 0, len);
	fsync(src);
	dst = create("cow-dst");
	if (ioctl(dst, FICLONE, src))
		die("FICLONE");
	p = map_aligned(dst, len, MAP_SHARED, huge);
	if (huge) {
		timed_stores(&l, p, len, PMD);
		latency_print("cow_fault", &l);
		printf("pmd_mapped_fraction %.4f\n", pmd_fraction(p, len));
	} else {
		timed_stores(&l, p, PMD, PAGE);
		latency_print("cow_fault", &l);
	}
	munmap(p, len);
	close(src);
	close(dst);
	unlink(path("cow-src"));
	unlink(path("cow-dst"));
	return 0;
}

static double mb_per_s(size_t bytes, uint64_t ns)
{
	return bytes / 1e6 / (ns / 1e9);
}

static int cmd_bw(bool anon)
{
	const size_t len = scaled(512 * MIB);
	volatile uint64_t sink;
	uint64_t t, sum = 0;
	int fd = -1;
	char *p;

	if (anon) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			die("mmap anonymous");
	} else {
		fd = create("bw");
		fill(fd, 0, len);
		fsync(fd);
		p = map_aligned(fd, len, MAP_SHARED, true);
	}
	/* Fault everything in, writable: the timed passes take no fault. */
	memset(p, 1, len);
	t = now_ns();
	memset(p, 2, len);
	printf("mmap_write_MBps %.1f\n", mb_per_s(len, now_ns() - t));
	t = now_ns();
	for (const uint64_t *w = (const uint64_t *)p; w < (const uint64_t *)(p + len); w++)
		sum += *w;
	printf("mmap_read_MBps %.1f\n", mb_per_s(len, now_ns() - t));
	sink = sum;
	(void)sink;
	munmap(p, len);
	if (fd >= 0) {
		close(fd);
		unlink(path("bw"));
	}
	return 0;
}

/* @ops 4 KiB writes or reads at random pages of the first @len bytes of
 * @fd, the same pages in the same order every time; MB/s. */
static double random_io(int fd, size_t len, size_t ops, bool write)
{
	static char buf[PAGE];
	uint64_t seed = 1, t = now_ns();

	memset(buf, 0xa5, sizeof(buf));
	for (size_t i = 0; i < ops; i++) {
		off_t off;

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		off = (seed >> 33) % (len / PAGE) * PAGE;
		if ((write ? pwrite(fd, buf, PAGE, off) : pread(fd, buf, PAGE, off)) != PAGE)
			die(write ? "pwrite" : "pread");
	}
	return mb_per_s(ops * PAGE, now_ns() - t);
}

static int cmd_io(void)
{
	const size_t len = scaled(256 * MIB), random_ops = scaled(16384);
	static char buf[MIB];
	uint64_t t;
	int fd;

	fd = create("io");
	fill(fd, 0, len);
	fsync(fd);
	memset(buf, 0xa5, sizeof(buf));

	printf("write_4k_random_MBps %.1f\n", random_io(fd, len, random_ops, true));
	printf("read_4k_random_MBps %.1f\n", random_io(fd, len, random_ops, false));

	t = now_ns();
	for (size_t off = 0; off < len; off += MIB)
		if (pwrite(fd, buf, MIB, off) != MIB)
			die("pwrite");
	printf("write_1m_seq_MBps %.1f\n", mb_per_s(len, now_ns() - t));
	t = now_ns();
	for (size_t off = 0; off < len; off += MIB)
		if (pread(fd, buf, MIB, off) != MIB)
			die("pread");
	printf("read_1m_seq_MBps %.1f\n", mb_per_s(len, now_ns() - t));
	close(fd);
	unlink(path("io"));
	return 0;
}

static int cmd_fsync(void)
{
	static const size_t dirty[] = { 1, 16, 256, 4096 };
	const size_t len = 4096 * PAGE, rounds = scaled(16);
	char *p;
	int fd;

	fd = create("fsync");
	fill(fd, 0, len);
	fsync(fd);
	p = map_aligned(fd, len, MAP_SHARED, false);
	for (size_t d = 0; d < sizeof(dirty) / sizeof(dirty[0]); d++) {
		size_t stride = len / PAGE / dirty[d];
		uint64_t total = 0;

		for (size_t r = 0; r < rounds; r++) {
			uint64_t t;

			for (size_t i = 0; i < dirty[d]; i++)
				p[i * stride * PAGE] = r;
			t = now_ns();
			if (fsync(fd))
				die("fsync");
			total += now_ns() - t;
		}
		printf("fsync_%zu_dirty_us %.2f\n", dirty[d], total / 1e3 / rounds);
	}
	munmap(p, len);
	close(fd);
	unlink(path("fsync"));
	return 0;
}

static int cmd_meta(void)
{
	const int files = scaled(10000);
	char name[64];
	struct stat st;
	uint64_t t;

	if (mkdir(path("meta"), 0755) && errno != EEXIST)
		die("mkdir");
	t = now_ns();
	for (int i = 0; i < files; i++) {
		int fd;

		snprintf(name, sizeof(name), "meta/f%d", i);
		fd = open(path(name), O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0)
			die("create %s", path(name));
		close(fd);
	}
	printf("create_per_s %.0f\n", files / ((now_ns() - t) / 1e9));
	t = now_ns();
	for (int i = 0; i < files; i++) {
		snprintf(name, sizeof(name), "meta/f%d", i);
		if (stat(path(name), &st))
			die("stat %s", path(name));
	}
	printf("stat_per_s %.0f\n", files / ((now_ns() - t) / 1e9));
	t = now_ns();
	for (int i = 0; i < files; i++) {
		snprintf(name, sizeof(name), "meta/f%d", i);
		if (unlink(path(name)))
			die("unlink %s", path(name));
	}
	printf("unlink_per_s %.0f\n", files / ((now_ns() - t) / 1e9));
	rmdir(path("meta"));
	return 0;
}

/* The pagemap entry of @addr in this process: bit 63 present, low 55 the pfn. */
static uint64_t pagemap_entry(const void *addr)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t entry = 0;

	if (fd < 0 || pread(fd, &entry, sizeof(entry), (uintptr_t)addr / PAGE * sizeof(entry)) !=
			      sizeof(entry))
		die("pagemap");
	close(fd);
	return entry;
}

static uint64_t pfn_of(const void *addr)
{
	uint64_t entry = pagemap_entry(addr);

	if (!(entry & (1ull << 63)) || !(entry & ((1ull << 55) - 1))) {
		errno = ENXIO;
		die("no page frame in pagemap");
	}
	return entry & ((1ull << 55) - 1);
}

/* One-block extents of "fragments": every other block, so none merge. */
static int cmd_fragment(long fragments)
{
	static char buf[PAGE];
	int fd;

	fd = create("fragments");
	memset(buf, 0x33, sizeof(buf));
	for (long i = 0; i < fragments; i++)
		if (pwrite(fd, buf, PAGE, i * 2 * PAGE) != PAGE)
			die("write %s", path("fragments"));
	fsync(fd);
	close(fd);
	return 0;
}

static volatile sig_atomic_t action_optional_signals;

static void on_sigbus(int sig, siginfo_t *info, void *context)
{
	(void)sig;
	(void)context;
	if (info->si_code == BUS_MCEERR_AO)
		action_optional_signals++;
}

/*
 * Maps every sharer and reads its page, tells the parent through @ready,
 * then waits for @go. It asks for early kill (PR_MCE_KILL_EARLY), so the
 * failure handling must have signalled it (SIGBUS, BUS_MCEERR_AO) and
 * unmapped every page: a page still in its page tables fails the run (a
 * load would raise SIGBUS, so it asks /proc/self/pagemap instead).
 */
static int sharers_child(long sharers, int ready, int go)
{
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_RESTART };
	char **maps = calloc(sharers, sizeof(*maps));
	long still = 0;
	char name[64], c;

	if (!maps || sigaction(SIGBUS, &sa, NULL) ||
	    prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0))
		die("set up early kill");

	for (long i = 0; i < sharers; i++) {
		int fd;

		snprintf(name, sizeof(name), "share%ld", i);
		fd = open(path(name), O_RDONLY);
		if (fd < 0)
			die("open %s", path(name));
		maps[i] = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
		if (maps[i] == MAP_FAILED)
			die("mmap %s", path(name));
		close(fd);
		(void)*(volatile char *)maps[i];
	}
	if (write(ready, "r", 1) != 1 || read(go, &c, 1) != 1)
		die("pipe");
	for (long i = 0; i < sharers; i++)
		still += pagemap_entry(maps[i]) >> 63;
	if (still || !action_optional_signals) {
		fprintf(stderr, "daxbench: %ld of %ld sharers still mapped, %d BUS_MCEERR_AO signals\n",
			still, sharers, (int)action_optional_signals);
		return 1;
	}
	return 0;
}

static int cmd_failure(long sharers)
{
	int ready[2], go[2], fd, src, status;
	static char block[PAGE];
	char name[64], c, *p;
	uint64_t pfn, t;
	pid_t child;

	src = create("share0");
	memset(block, 0x77, sizeof(block));
	if (pwrite(src, block, PAGE, 0) != PAGE || fsync(src))
		die("write %s", path("share0"));
	for (long i = 1; i < sharers; i++) {
		snprintf(name, sizeof(name), "share%ld", i);
		fd = create(name);
		if (ioctl(fd, FICLONE, src))
			die("FICLONE %s", path(name));
		close(fd);
	}
	p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, src, 0);
	if (p == MAP_FAILED)
		die("mmap %s", path("share0"));
	(void)*(volatile char *)p;
	pfn = pfn_of(p);
	munmap(p, PAGE);
	close(src);

	if (pipe(ready) || pipe(go))
		die("pipe");
	child = fork();
	if (child < 0)
		die("fork");
	if (!child)
		exit(sharers_child(sharers, ready[1], go[0]));
	if (read(ready[0], &c, 1) != 1)
		die("child failed to map the sharers");

	fd = open(HWPOISON_INJECT, O_WRONLY);
	if (fd < 0)
		die("open %s", HWPOISON_INJECT);
	snprintf(name, sizeof(name), "%#llx", (unsigned long long)pfn);
	t = now_ns();
	if (write(fd, name, strlen(name)) < 0)
		die("inject poison at pfn %s", name);
	t = now_ns() - t;
	close(fd);

	if (write(go[1], "g", 1) != 1 || waitpid(child, &status, 0) != child)
		die("child");
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		errno = EUCLEAN;
		die("%ld sharers: the failure was not handled", sharers);
	}
	printf("notify_failure_us %.1f\n", t / 1e3);

	for (long i = 0; i < sharers; i++) {
		snprintf(name, sizeof(name), "share%ld", i);
		unlink(path(name));
	}
	return 0;
}

/* Page faults of this process, minor and major: fs/dax.c counts a fault
 * that allocates or converts an unwritten extent as major. */
static long all_faults(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt + ru.ru_majflt;
}

static int cmd_age(int argc, char **argv)
{
	struct age_params p = AGE_DEFAULTS;
	struct age_stats st;
	uint64_t t = now_ns();
	int ret;

	if (argc == 7) {
		p.full_pct = atoi(argv[3]);
		p.written_x10 = atoi(argv[4]);
		p.final_pct = atoi(argv[5]);
		p.seed = strtoull(argv[6], NULL, 0);
	}
	p.verbose = true;
	ret = age_fs(dir, &p, &st);
	if (ret) {
		errno = -ret;
		die("age %s", dir);
	}
	printf("ager_sec %.1f\n", (now_ns() - t) / 1e9);
	printf("ager_written_MiB %llu\n", (unsigned long long)(st.written >> 20));
	printf("ager_used_pct_max %u\n", st.used_pct_max);
	printf("ager_used_pct %u\n", st.used_pct);
	printf("ager_files %lu\n", st.live);
	return 0;
}

static int cmd_placement(const char *how)
{
	const size_t len = scaled(256 * MIB), regions = len / PMD;
	long before, extra;
	char *p;
	int fd;

	fd = create("placement");
	if (!strcmp(how, "fallocated")) {
		if (fallocate(fd, 0, 0, len))
			die("fallocate %s", path("placement"));
	} else if (!strcmp(how, "written")) {
		fill(fd, 0, len);
	} else if (!strcmp(how, "faulted")) {
		if (ftruncate(fd, len))
			die("ftruncate %s", path("placement"));
		p = map_aligned(fd, len, MAP_SHARED, true);
		for (size_t off = 0; off < len; off += PAGE)
			*(volatile char *)(p + off) = 3;
		munmap(p, len);
	} else {
		errno = EINVAL;
		die("placement %s", how);
	}
	if (close(fd))
		die("close %s", path("placement"));
	fd = open(path("placement"), O_RDWR);
	if (fd < 0)
		die("open %s", path("placement"));
	p = map_aligned(fd, len, MAP_SHARED, true);
	for (size_t off = 0; off < len; off += PMD)
		*(volatile char *)(p + off) = 4;
	before = all_faults();
	for (size_t off = 0; off < len; off += PAGE)
		if (off % PMD)
			*(volatile char *)(p + off) = 4;
	extra = all_faults() - before;
	printf("pmd_mapped_fraction %.4f\n", extra >= (long)((PMD / PAGE - 1) * regions) ? 0.0 :
	       1.0 - (double)extra / ((PMD / PAGE - 1) * regions));
	munmap(p, len);
	close(fd);
	unlink(path("placement"));
	return 0;
}

/* daxbench spin: the operations, each on what spin_setup made. */
enum spin_op {
	SPIN_CREATE, SPIN_UNLINK, SPIN_WRITE4K, SPIN_FAULT, SPIN_FAULT_ALLOC, SPIN_COW2M, SPIN_FSYNC
};
static const char *const spin_names[] = { "create", "unlink", "write4k", "fault", "fault-alloc",
					  "cow2m", "fsync" };

#define SPIN_FILE (64 * MIB)
/* fsync: as many pages as fsync's last row dirties. */
#define SPIN_FSYNC_FILE (4096 * PAGE)
/* Files made for "unlink", split among the processes: more than TCG
 * unlinks in a few seconds. */
#define SPIN_UNLINK_FILES 40000

struct spin {
	enum spin_op op;
	char dir[256];	/* this process's directory */
	char prefix[32];	/* file name prefix within it */
	int fd;
	char *map;
	int src;	/* cow2m: the file each new copy is cloned from */
	size_t next;	/* next file number, page, offset seed or 2 MiB */
	size_t made;	/* unlink: files made by setup */
};

static void spin_name(const struct spin *s, size_t i, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s%zu", s->dir, s->prefix, i);
}

static void spin_setup(struct spin *s, int proc, int procs, bool shared)
{
	char name[512];

	snprintf(s->dir, sizeof(s->dir), "%s/spin%s%d", dir, shared ? "" : "-", shared ? 0 : proc);
	snprintf(s->prefix, sizeof(s->prefix), "p%d-", proc);
	if (mkdir(s->dir, 0755) && errno != EEXIST)
		die("mkdir %s", s->dir);
	snprintf(name, sizeof(name), "%s/file", s->dir);
	switch (s->op) {
	case SPIN_CREATE:
		break;
	case SPIN_UNLINK:
		for (; s->made < scaled(SPIN_UNLINK_FILES) / procs; s->made++) {
			int fd;

			spin_name(s, s->made, name, sizeof(name));
			fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0644);
			if (fd < 0)
				die("create %s", name);
			close(fd);
		}
		break;
	case SPIN_WRITE4K:
	case SPIN_FAULT:
	case SPIN_FAULT_ALLOC:
		/* One file: the first process makes it, the others open it. */
		s->fd = open(name, O_RDWR | O_CREAT, 0644);
		if (s->fd < 0)
			die("open %s", name);
		if (s->op == SPIN_FAULT_ALLOC) {
			if (ftruncate(s->fd, SPIN_FILE))
				die("ftruncate");
		} else if (!shared || proc == 0) {
			fill(s->fd, 0, SPIN_FILE);
			fsync(s->fd);
		}
		if (s->op != SPIN_WRITE4K)
			s->map = map_aligned(s->fd, SPIN_FILE, MAP_SHARED, false);
		s->next = proc * 7919ul;
		break;
	case SPIN_COW2M:
		/* Each process clones its own file: the first store to each
		 * 2 MiB of the copy is a copy-on-write fault of 2 MiB. */
		s->src = open(name, O_RDWR | O_CREAT, 0644);
		if (s->src < 0)
			die("open %s", name);
		if (!shared || proc == 0) {
			fill(s->src, 0, SPIN_FILE);
			fsync(s->src);
		}
		spin_name(s, 0, name, sizeof(name));
		s->fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (s->fd < 0)
			die("create %s", name);
		if (ioctl(s->fd, FICLONE, s->src))
			die("FICLONE (cow2m needs reflinks)");
		s->map = map_aligned(s->fd, SPIN_FILE, MAP_SHARED, true);
		break;
	case SPIN_FSYNC:
		s->fd = open(name, O_RDWR | O_CREAT, 0644);
		if (s->fd < 0)
			die("open %s", name);
		if (!shared || proc == 0) {
			fill(s->fd, 0, SPIN_FSYNC_FILE);
			fsync(s->fd);
		}
		s->map = map_aligned(s->fd, SPIN_FSYNC_FILE, MAP_SHARED, false);
		break;
	}
}

/* One operation; false when there is nothing left to do (unlink). */
static bool spin_once(struct spin *s, bool shared)
{
	static char page[PAGE];
	char name[512];
	size_t pages = SPIN_FILE / PAGE;

	switch (s->op) {
	case SPIN_CREATE: {
		int fd;

		spin_name(s, s->next++, name, sizeof(name));
		fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0)
			die("create %s", name);
		close(fd);
		return true;
	}
	case SPIN_UNLINK:
		if (s->next == s->made)
			return false;
		spin_name(s, s->next++, name, sizeof(name));
		if (unlink(name))
			die("unlink %s", name);
		return true;
	case SPIN_WRITE4K:
		s->next = s->next * 6364136223846793005ull + 1442695040888963407ull;
		if (pwrite(s->fd, page, PAGE, (s->next >> 33) % pages * PAGE) != PAGE)
			die("pwrite");
		return true;
	case SPIN_FAULT:
	case SPIN_FAULT_ALLOC:
		if (s->next % pages == 0 && s->next) {
			/* All mapped: start over on a new mapping (of an empty
			 * file again for fault-alloc; a shared file is only
			 * emptied by its first process, the others map what
			 * is there, which then faults without allocating). */
			munmap(s->map, SPIN_FILE);
			if (s->op == SPIN_FAULT_ALLOC && !shared &&
			    (ftruncate(s->fd, 0) || ftruncate(s->fd, SPIN_FILE)))
				die("ftruncate");
			s->map = map_aligned(s->fd, SPIN_FILE, MAP_SHARED, false);
		}
		*(volatile char *)(s->map + s->next % pages * PAGE) = 1;
		s->next++;
		return true;
	case SPIN_COW2M:
		if (s->next % (SPIN_FILE / PMD) == 0 && s->next) {
			/* All copied: clone afresh, under a new mapping. */
			munmap(s->map, SPIN_FILE);
			if (ftruncate(s->fd, 0) || ioctl(s->fd, FICLONE, s->src))
				die("FICLONE again");
			s->map = map_aligned(s->fd, SPIN_FILE, MAP_SHARED, true);
		}
		*(volatile char *)(s->map + s->next % (SPIN_FILE / PMD) * PMD) = 1;
		s->next++;
		return true;
	case SPIN_FSYNC:
		for (size_t i = 0; i < SPIN_FSYNC_FILE / PAGE; i++)
			*(volatile char *)(s->map + i * PAGE) = s->next;
		s->next++;
		if (fsync(s->fd))
			die("fsync");
		return true;
	}
	return false;
}

/* Runs @s until @seconds passed; writes the operation count to @report. */
static void spin_run(struct spin *s, bool shared, int seconds, int start, int report)
{
	uint64_t end, ops = 0;
	char go;

	if (read(start, &go, 1) != 1)
		die("spin: start");
	end = now_ns() + seconds * 1000000000ull;
	while (now_ns() < end && spin_once(s, shared))
		ops++;
	if (write(report, &ops, sizeof(ops)) != sizeof(ops))
		die("spin: report");
}

static int cmd_spin(const char *op_name, int seconds, int procs, bool shared)
{
	int start[2], report[2], ready[2];
	const char *ready_file = getenv("DAXBENCH_READY");
	uint64_t t, total = 0;
	enum spin_op op;

	for (op = 0; op < sizeof(spin_names) / sizeof(spin_names[0]); op++)
		if (!strcmp(op_name, spin_names[op]))
			break;
	if (op == sizeof(spin_names) / sizeof(spin_names[0]) || seconds < 1 || procs < 1 ||
	    procs > 64) {
		errno = EINVAL;
		die("spin %s %d %d", op_name, seconds, procs);
	}
	if (pipe(start) || pipe(report) || pipe(ready))
		die("pipe");
	for (int p = 0; p < procs; p++) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		if (!pid) {
			struct spin s = { .op = op, .fd = -1, .src = -1 };

			spin_setup(&s, p, procs, shared);
			if (write(ready[1], "r", 1) != 1)
				die("spin: ready");
			spin_run(&s, shared, seconds, start[0], report[1]);
			_exit(0);
		}
	}
	for (int p = 0; p < procs; p++) {
		char r;

		if (read(ready[0], &r, 1) != 1)
			die("spin: a process failed its setup");
	}
	if (ready_file && close(open(ready_file, O_WRONLY | O_CREAT, 0644)))
		die("create %s", ready_file);
	t = now_ns();
	for (int p = 0; p < procs; p++)
		if (write(start[1], "g", 1) != 1)
			die("spin: start");
	for (int p = 0; p < procs; p++) {
		uint64_t ops;

		if (read(report[0], &ops, sizeof(ops)) != sizeof(ops))
			die("spin: a process failed");
		total += ops;
	}
	t = now_ns() - t;
	while (wait(NULL) > 0)
		;
	printf("spin_%s_per_s %.0f\n", op_name, total / (t / 1e9));
	return 0;
}

static void __attribute__((noreturn)) usage(void)
{
	fprintf(stderr, "usage: daxbench fault DIR prealloc|empty [sync] [copy]\n"
			"       daxbench pmd DIR sparse|fallocated\n"
			"       daxbench cow DIR 4k|2m\n"
			"       daxbench bw DIR|anon\n"
			"       daxbench io|fsync|meta DIR\n"
			"       daxbench failure DIR SHARERS\n"
			"       daxbench fragment DIR COUNT\n"
			"       daxbench age DIR [FULL_PCT WRITTEN_X10 FINAL_PCT SEED]\n"
			"       daxbench placement DIR fallocated|written|faulted\n"
			"       daxbench spin DIR create|unlink|write4k|fault|fault-alloc|cow2m|fsync SECONDS "
			"[PROCS [shared]]\n");
	exit(2);
}

static bool has_arg(int argc, char **argv, int from, const char *word)
{
	for (int i = from; i < argc; i++)
		if (!strcmp(argv[i], word))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 3)
		usage();
	cmd = argv[1];
	dir = argv[2];
	setvbuf(stdout, NULL, _IOLBF, 0);
	quick = getenv("DAXBENCH_QUICK") && !strcmp(getenv("DAXBENCH_QUICK"), "1");
	if (!strcmp(cmd, "fault") && argc >= 4)
		return cmd_fault(!strcmp(argv[3], "prealloc"), has_arg(argc, argv, 4, "sync"),
				 has_arg(argc, argv, 4, "copy"));
	if (!strcmp(cmd, "pmd") && argc == 4)
		return cmd_pmd(!strcmp(argv[3], "fallocated"));
	if (!strcmp(cmd, "cow") && argc == 4)
		return cmd_cow(!strcmp(argv[3], "2m"));
	if (!strcmp(cmd, "bw"))
		return cmd_bw(!strcmp(dir, "anon"));
	if (!strcmp(cmd, "io"))
		return cmd_io();
	if (!strcmp(cmd, "fsync"))
		return cmd_fsync();
	if (!strcmp(cmd, "meta"))
		return cmd_meta();
	if (!strcmp(cmd, "failure") && argc == 4)
		return cmd_failure(atol(argv[3]));
	if (!strcmp(cmd, "fragment") && argc == 4)
		return cmd_fragment(atol(argv[3]));
	if (!strcmp(cmd, "age") && (argc == 3 || argc == 7))
		return cmd_age(argc, argv);
	if (!strcmp(cmd, "spin") && argc >= 5 && argc <= 7)
		return cmd_spin(argv[3], atoi(argv[4]), argc >= 6 ? atoi(argv[5]) : 1,
				has_arg(argc, argv, 6, "shared"));
	if (!strcmp(cmd, "placement") && argc == 4)
		return cmd_placement(argv[3]);
	usage();
}
