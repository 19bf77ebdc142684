/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers for the mmap_* guest tests (DAX mappings of files on the
 * filesystem named by OXDAX_FS, see oxdax_fs.h):
 *
 *  - mm_map(): mmap() that says why it failed. Mappings made with it are
 *    remembered so that a test's teardown can unmap what a failed ASSERT
 *    left mapped (else the unmount is busy).
 *  - mm_map_aligned(): the same at a 2 MiB-aligned address (PMD-eligible
 *    when the file offset is 2 MiB-aligned too); mm_mmap_aligned(): a plain
 *    mmap() there, or at a chosen distance past such an address.
 *  - mm_touch(): one load or store that reports the signal it raised
 *    (SIGBUS, SIGSEGV) instead of dying of it.
 *  - struct mm_snap: oxdax's fault counters (debugfs, per disk) and this
 *    process's page-fault counts at one moment; mm_delta() and mm_faults()
 *    between two. Without oxdax's counters (ext4, xfs) mm_delta() is -1.
 *  - mm_child(): runs a function in a forked process, returns its status.
 *  - mm_pmd_able(): how many 2 MiB ranges of a file FIEMAP shows
 *    PMD-mappable on the disk, as text.
 */
#ifndef OXDAX_MMAP_H
#define OXDAX_MMAP_H

#include <linux/fiemap.h>
#include <linux/fs.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "oxdax_fs.h"

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif

#define MM_PAGE 4096ul
#define MM_PMD (2ul << 20)

/* oxdax's fault counters, /sys/kernel/debug/oxdax/<disk>/<name>. */
enum mm_counter {
	MM_FAULT_PTE,
	MM_FAULT_PMD,
	MM_FAULT_ZERO,
	MM_FAULT_ZERO_PMD,
	MM_FAULT_COW,
	MM_FAULT_SYNC,
	MM_FAULT_FALLBACK,
	MM_FAULT_MKWRITE,
	MM_WRITEBACK_ENTRIES,
	MM_NR_COUNTERS,
};

static const char *const mm_counter_names[MM_NR_COUNTERS] __attribute__((unused)) = {
	"fault_pte", "fault_pmd", "fault_zero", "fault_zero_pmd", "fault_cow",
	"fault_sync", "fault_fallback", "fault_mkwrite", "writeback_entries",
};

/* The counter directory of the test disk. */
static inline const char *mm_counter_dir(void)
{
	static char dir[128];

	snprintf(dir, sizeof(dir), "/sys/kernel/debug/oxdax/%s", strrchr(fs_disk(), '/') + 1);
	return dir;
}

/* Counter @name of the test disk, or -1 where there is none (ext4, xfs). */
static inline long long mm_counter(const char *name)
{
	char path[192], buf[64];

	snprintf(path, sizeof(path), "%s/%s", mm_counter_dir(), name);
	if (read_text(path, buf, sizeof(buf)))
		return -1;
	return strtoll(buf, NULL, 0);
}

/*
 * Whether the fault counters are asserted: on oxdax with its own engine
 * only (with OXDAX_FAULT_ENGINE=iomap the kernel's fault path serves the
 * mount and the engine's counters stay still).
 */
static inline bool mm_counted(void)
{
	const char *engine = getenv("OXDAX_FAULT_ENGINE");

	return fs_is("oxdax") && !(engine && *engine && strcmp(engine, "oxdax"));
}

struct mm_snap {
	bool have;			/* every counter was read */
	long long c[MM_NR_COUNTERS];
	long minflt, majflt;		/* this process's faults (all threads) */
};

/*
 * Page faults of this process, getrusage(): minor and major. A DAX fault
 * that allocates (or converts an unwritten extent) is counted as a major
 * fault by fs/dax.c (VM_FAULT_MAJOR on IOMAP_F_NEW), so a count of mapping
 * faults is the sum of both.
 */
static inline void mm_rusage(long *minflt, long *majflt)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru)) {
		*minflt = *majflt = -1;
		return;
	}
	*minflt = ru.ru_minflt;
	*majflt = ru.ru_majflt;
}

/* Reads the counters first, the fault counts last (see mm_snap_end()). */
static inline void mm_snap(struct mm_snap *s)
{
	s->have = true;
	for (int i = 0; i < MM_NR_COUNTERS; i++) {
		s->c[i] = mm_counter(mm_counter_names[i]);
		if (s->c[i] < 0)
			s->have = false;
	}
	mm_rusage(&s->minflt, &s->majflt);
}

/* As mm_snap(), the fault counts first: a section measured between
 * mm_snap() and mm_snap_end() does not count the reads of the counters. */
static inline void mm_snap_end(struct mm_snap *s)
{
	long minflt, majflt;

	mm_rusage(&minflt, &majflt);
	mm_snap(s);
	s->minflt = minflt;
	s->majflt = majflt;
}

/* Growth of counter @c from @a to @b; -1 without counters. */
static inline long long mm_delta(const struct mm_snap *a, const struct mm_snap *b,
				 enum mm_counter c)
{
	if (!a->have || !b->have)
		return -1;
	return b->c[c] - a->c[c];
}

/* Page faults (minor and major) from @a to @b. */
static inline long mm_faults(const struct mm_snap *a, const struct mm_snap *b)
{
	return b->minflt - a->minflt + b->majflt - a->majflt;
}

/* "fault_pte +3 fault_pmd +0 ... minflt +5 majflt +0" between @a and @b
 * (static buffer). */
static inline const char *mm_describe(const struct mm_snap *a, const struct mm_snap *b)
{
	static char text[512];
	int n = 0;

	if (a->have && b->have)
		for (int i = 0; i < MM_NR_COUNTERS; i++)
			n += snprintf(text + n, sizeof(text) - n, "%s +%lld ",
				      mm_counter_names[i], b->c[i] - a->c[i]);
	else
		n += snprintf(text + n, sizeof(text) - n, "(no oxdax counters) ");
	snprintf(text + n, sizeof(text) - n, "minflt +%ld majflt +%ld", b->minflt - a->minflt,
		 b->majflt - a->majflt);
	return text;
}

/*
 * The mappings made by mm_map(), so that mm_unmap_all() can undo what a test
 * that stopped early left behind.
 */
static struct {
	void *addr;
	size_t len;
} mm_maps[64] __attribute__((unused));

static inline void mm_remember(void *addr, size_t len)
{
	for (size_t i = 0; i < sizeof(mm_maps) / sizeof(mm_maps[0]); i++) {
		if (!mm_maps[i].addr) {
			mm_maps[i].addr = addr;
			mm_maps[i].len = len;
			return;
		}
	}
}

static inline void mm_forget(void *addr)
{
	for (size_t i = 0; i < sizeof(mm_maps) / sizeof(mm_maps[0]); i++)
		if (mm_maps[i].addr == addr)
			mm_maps[i].addr = NULL;
}

/* Says why an mmap() of the filesystem under test failed; keeps errno. */
static inline void mm_map_failed(size_t len, int prot, int flags, off_t off)
{
	int err = errno;

	fprintf(stderr, "# mmap(%zu bytes at file offset %lld, prot %#x, flags %#x) on %s: %s\n",
		len, (long long)off, prot, flags, fs_type(), strerror(err));
	errno = err;
}

/*
 * mmap() of a file of the filesystem under test. On failure prints why and
 * returns MAP_FAILED with errno kept.
 */
static inline void *mm_map(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = mmap(addr, len, prot, flags, fd, off);

	if (p == MAP_FAILED) {
		mm_map_failed(len, prot, flags, off);
		return p;
	}
	mm_remember(p, len);
	return p;
}

/*
 * Plain mmap() of [@off, @off + @len) of @fd at an address that is 2 MiB
 * aligned plus @misalign (a multiple of the page size): with a 2 MiB-aligned
 * @off the mapping is PMD-eligible. Returns MAP_FAILED with errno set.
 */
static inline void *mm_mmap_aligned(size_t len, int prot, int flags, int fd, off_t off,
				    size_t misalign)
{
	size_t span = len + MM_PMD + misalign;
	char *base = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			  -1, 0);
	char *at, *p;

	if (base == MAP_FAILED)
		return MAP_FAILED;
	at = (char *)(((uintptr_t)base + MM_PMD - 1) & ~(uintptr_t)(MM_PMD - 1)) + misalign;
	p = mmap(at, len, prot, flags | MAP_FIXED, fd, off);
	if (p == MAP_FAILED) {
		int err = errno;

		munmap(base, span);
		errno = err;
		return MAP_FAILED;
	}
	if (at > base)
		munmap(base, at - base);
	if (base + span > at + len)
		munmap(at + len, base + span - (at + len));
	return p;
}

/* mm_map() at a 2 MiB-aligned address chosen here. */
static inline void *mm_map_aligned(size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = mm_mmap_aligned(len, prot, flags, fd, off, 0);

	if (p == MAP_FAILED) {
		mm_map_failed(len, prot, flags, off);
		return p;
	}
	mm_remember(p, len);
	return p;
}

static inline int mm_unmap(void *addr, size_t len)
{
	mm_forget(addr);
	return munmap(addr, len);
}

/* Unmaps every mapping mm_map() made and mm_unmap() did not undo. */
static inline void mm_unmap_all(void)
{
	for (size_t i = 0; i < sizeof(mm_maps) / sizeof(mm_maps[0]); i++) {
		if (mm_maps[i].addr)
			munmap(mm_maps[i].addr, mm_maps[i].len);
		mm_maps[i].addr = NULL;
	}
}

/*
 * The mmap tests' fixture: a fresh filesystem for each test (fs_begin);
 * after it, every mapping it left is unmapped before the filesystem is
 * unmounted and checked (fs_end). kselftest_harness.h comes first.
 */
#define MM_FIXTURE(name)					\
	FIXTURE(name) {};					\
	FIXTURE_SETUP(name) { ASSERT_EQ(0, fs_begin()); }	\
	FIXTURE_TEARDOWN(name)					\
	{							\
		mm_unmap_all();					\
		EXPECT_EQ(0, fs_end());				\
	}

/* The last signal mm_touch() caught, and what it was about. */
static sigjmp_buf mm_jmp __attribute__((unused));
static volatile sig_atomic_t mm_sig __attribute__((unused));
static volatile int mm_sig_code __attribute__((unused));
static void *volatile mm_sig_addr __attribute__((unused));

static inline void mm_on_signal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	mm_sig = sig;
	mm_sig_code = si->si_code;
	mm_sig_addr = si->si_addr;
	siglongjmp(mm_jmp, 1);
}

/*
 * One access to @addr: a load, or a store of @val when @write. Returns 0, or
 * the signal (SIGBUS, SIGSEGV) it raised; mm_sig_code and mm_sig_addr then
 * tell its si_code and si_addr.
 */
static inline int mm_touch(void *addr, bool write, unsigned char val)
{
	struct sigaction sa = { .sa_sigaction = mm_on_signal, .sa_flags = SA_SIGINFO };
	struct sigaction old_bus, old_segv;
	volatile unsigned char *p = addr;
	int sig;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old_bus);
	sigaction(SIGSEGV, &sa, &old_segv);
	mm_sig = 0;
	mm_sig_code = 0;
	mm_sig_addr = NULL;
	if (sigsetjmp(mm_jmp, 1) == 0) {
		if (write)
			*p = val;
		else
			(void)*p;
	}
	sig = mm_sig;
	sigaction(SIGBUS, &old_bus, NULL);
	sigaction(SIGSEGV, &old_segv, NULL);
	return sig;
}

static inline int mm_load_sig(void *addr)
{
	return mm_touch(addr, false, 0);
}

static inline int mm_store_sig(void *addr, unsigned char val)
{
	return mm_touch(addr, true, val);
}

/* Loads one byte of every page of [@p, @p + @len); returns their sum. */
static inline unsigned long mm_read_pages(const void *p, size_t len)
{
	const volatile unsigned char *c = p;
	unsigned long sum = 0;

	for (size_t i = 0; i < len; i += MM_PAGE)
		sum += c[i];
	return sum;
}

/* Stores the pattern word under @seed at the start of every page of the
 * mapping @p of file offsets [@off, @off + @len). */
static inline void mm_write_words(void *p, size_t len, off_t off, uint64_t seed)
{
	for (size_t i = 0; i < len; i += MM_PAGE)
		*(volatile uint64_t *)((char *)p + i) = oxdax_pattern(off + i, seed);
}

/* First file offset of a page of [@off, @off + @len) of @fd whose first word
 * is not the pattern under @seed or whose rest is not zero, or -1. */
static inline long long mm_check_words_file(int fd, off_t off, size_t len, uint64_t seed)
{
	static unsigned char buf[1 << 20];

	for (size_t done = 0; done < len;) {
		size_t n = len - done < sizeof(buf) ? len - done : sizeof(buf);

		if (pread(fd, buf, n, off + done) != (ssize_t)n)
			return off + done;
		for (size_t i = 0; i < n; i += MM_PAGE) {
			uint64_t word;

			memcpy(&word, buf + i, 8);
			if (word != oxdax_pattern(off + done + i, seed) ||
			    !fs_all_zero(buf + i + 8, MM_PAGE - 8))
				return off + done + i;
		}
		done += n;
	}
	return -1;
}

/* Whether [@off, @off + @len) of @fd reads as zeros. */
static inline bool mm_file_zero(int fd, off_t off, size_t len)
{
	static unsigned char buf[1 << 20];

	while (len) {
		size_t n = len < sizeof(buf) ? len : sizeof(buf);

		if (pread(fd, buf, n, off) != (ssize_t)n || !fs_all_zero(buf, n))
			return false;
		off += n;
		len -= n;
	}
	return true;
}

/* st_blocks (512-byte units) of @fd, -1 on error. */
static inline long long mm_blocks(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : (long long)st.st_blocks;
}

/*
 * Runs @fn(@arg) in a forked process (killed after @timeout s); returns its
 * exit status, 128 + signal if it died of one, -1 if it could not run.
 */
static inline int mm_child(int (*fn)(void *), void *arg, unsigned int timeout)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		alarm(timeout);
		_exit(fn(arg));
	}
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/*
 * How many of the 2 MiB file ranges of [0, @size) of @fd FIEMAP shows in
 * one extent starting 2 MiB-aligned on the disk (what a PMD needs), as
 * text: it explains the PMD counts a test prints.
 */
static inline const char *mm_pmd_able(int fd, size_t size)
{
	static struct {
		struct fiemap map;
		struct fiemap_extent ext[2048];
	} e;
	static char text[96];
	size_t able = 0;

	memset(&e, 0, sizeof(e));
	e.map.fm_length = size;
	e.map.fm_flags = FIEMAP_FLAG_SYNC;
	e.map.fm_extent_count = 2048;
	if (ioctl(fd, FS_IOC_FIEMAP, &e.map))
		return "FIEMAP failed";
	for (size_t off = 0; off < size; off += MM_PMD) {
		for (unsigned int i = 0; i < e.map.fm_mapped_extents; i++) {
			const struct fiemap_extent *x = &e.ext[i];

			if (x->fe_logical <= off && off + MM_PMD <= x->fe_logical + x->fe_length &&
			    (x->fe_physical + off - x->fe_logical) % MM_PMD == 0)
				able++;
		}
	}
	snprintf(text, sizeof(text), "FIEMAP %u extents, %zu of %zu ranges PMD-able",
		 e.map.fm_mapped_extents, able, size / MM_PMD);
	return text;
}

#endif /* OXDAX_MMAP_H */
