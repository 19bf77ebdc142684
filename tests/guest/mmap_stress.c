// SPDX-License-Identifier: GPL-2.0
/*
 * mmap_stress: randomized concurrent file access through DAX mappings and
 * system calls, checked byte for byte against a model.
 *
 * PROCS processes of THREADS threads each (the workers) hammer FILES files
 * for EPOCHS epochs of OPS operations per worker: stores through shared
 * mappings (a process-wide 2 MiB-aligned one per file, per-operation
 * windows, some MAP_SYNC, some 2 MiB-aligned windows over 2 MiB), write,
 * pwrite, pwritev, read and mapping reads compared with the model,
 * fallocate (PUNCH_HOLE, ZERO_RANGE, default and KEEP_SIZE, also past EOF),
 * FICLONERANGE and copy_file_range between and within the files, fsync,
 * fdatasync, msync, fork (the child stores through the inherited mapping),
 * and MAP_PRIVATE copies (which must never reach the file).
 *
 * The model: every file's expected bytes, in memory shared by all
 * processes, plus its expected size. Each file is cut into 64 KiB stripes;
 * stripe s of file f belongs to worker (s + f) % WORKERS, and only that
 * worker stores, punches, zeroes, clones or copies into it (a clone or copy
 * reads only the worker's own stripes too), so while the workers run each
 * byte has exactly one writer and the model's copy of it is exact; a worker
 * checks its own bytes against the model whenever it likes. Operations on
 * whole files — truncate down or up (also to unaligned sizes), FICLONE (the
 * source over the start of the destination, which may grow; EINVAL when the
 * source's partial EOF block would land inside the destination), FICLONERANGE
 * that extends the destination, fallocate of the whole file, syncfs, and
 * processes remapping their process-wide mappings (some no longer 2 MiB-
 * aligned) — are done by the coordinator (the test process) at a barrier,
 * while every worker waits, and applied to the model there. The sizes only change there, so
 * the workers never touch their mappings past EOF: any SIGBUS is a failure.
 *
 * Every stored byte belongs to an 8-byte word that names the write it came
 * from (seed, worker, the worker's write number) and the file offset it was
 * first written at, so a mismatch says what was found instead (zeros, an
 * older write, data of another offset or worker).
 *
 * At the end every file is compared with the model through read(2) and
 * through a fresh mapping (the tail of the last page too), again after a
 * remount, and the fixture's teardown unmounts and runs the filesystem's
 * checker. Counters of what was done are printed.
 *
 * The run is a function of the seed but for where the time limit cuts it
 * and the interleaving of the workers (which the model does not depend on).
 *
 * Knobs (the environment; scripts/test passes OXDAX_TEST_* to the guest):
 *   OXDAX_TEST_MMAP_SEED     seed (default: from the clock; always printed)
 *   OXDAX_TEST_MMAP_SECONDS  stop at the next barrier after this long (45)
 *   OXDAX_TEST_MMAP_FILE_MB  largest file size in MiB, a multiple of 2 (8)
 *   OXDAX_TEST_MMAP_PROCS    worker processes (4)
 *   OXDAX_TEST_MMAP_THREADS  threads per process (2)
 *   OXDAX_TEST_MMAP_EPOCHS   epochs (200)
 *   OXDAX_TEST_MMAP_OPS      operations per worker per epoch (16)
 * Runs longer than about 500 s also need tests/run's per-test limit raised
 * (OXDAX_TEST_TIMEOUT, 600 s).
 *
 * ext4 has no reflink: its FICLONE(RANGE) refusals are counted, not failed.
 * OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h).
 */
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/futex.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/uio.h>

#include "kselftest_harness.h"
#include "oxdax_mmap.h"

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif

#define PAGE 4096ull
#define PMD_SIZE (2 * MIB)
#define STRIPE (64 * KIB)
#define MAX_FILES 3
#define MAX_PROCS 16
#define MAX_THREADS 8
#define MAX_REPORTS 20

/* What happened, counted over all workers and the coordinator. */
#define COUNTERS(X) \
	X(map_write) X(window_write) X(window_sync) X(pmd_window) X(write) \
	X(pwrite) X(pwritev) X(read_check) X(map_read_check) X(punch) \
	X(zero_range) X(alloc) X(alloc_past_eof) X(clone_range) \
	X(clone_unsupported) X(copy_range) X(fsync) X(fdatasync) X(msync) \
	X(fork) X(private_cow) X(map_sync_refused) X(bytes_stored) \
	X(truncate_down) X(truncate_up) X(ficlone) X(ficlone_refused) X(ficlone_extend) \
	X(alloc_whole) X(syncfs) X(remap) X(remap_unaligned) X(epoch_check)
#define COUNTER_ENUM(name) C_##name,
#define COUNTER_NAME(name) #name,
enum { COUNTERS(COUNTER_ENUM) NR_COUNTERS };
static const char *const counter_names[] = { COUNTERS(COUNTER_NAME) };

/* Kinds of worker operations, for the time spent in each. */
#define KINDS(X) \
	X(map_write) X(window) X(pmd_window) X(write) X(read_check) X(map_read_check) \
	X(fallocate) X(clone) X(copy) X(sync) X(fork) X(private)
#define KIND_ENUM(name) K_##name,
enum { KINDS(KIND_ENUM) NR_KINDS };
static const char *const kind_names[] = { KINDS(COUNTER_NAME) };

struct config {
	uint64_t seed;
	unsigned int seconds, procs, threads, workers, epochs, ops;
	size_t max_size;
};

/* A barrier of processes and threads (futex on shared memory). */
struct barrier {
	atomic_uint arrived;
	atomic_uint gen;
	unsigned int n;
};

/* Shared by the coordinator and every worker (MAP_SHARED anonymous). */
struct shared {
	struct barrier go, pause;
	atomic_int stop;	/* workers: leave at the next "go" */
	atomic_int abort;	/* everyone: leave now */
	atomic_uint failures;
	atomic_ulong count[NR_COUNTERS];
	atomic_ulong op_us[NR_KINDS];	/* time spent per kind of operation */
	double coord_s;			/* ... and by the coordinator at barriers */
	off_t size[MAX_FILES];	/* the model's sizes; change only at barriers */
	int remap[MAX_PROCS];	/* this epoch's remap of a process's mappings */
	unsigned int epoch;
};

struct worker {
	unsigned int id, proc, thread;
	uint64_t rng;
	uint32_t writes;
	int fd[MAX_FILES];
	unsigned char *buf;	/* STRIPE bytes */
};

static struct config cfg;
static struct shared *sh;
static unsigned char *model[MAX_FILES];	/* expected bytes, max_size each */
/* This process's process-wide mappings (max_size each). */
static unsigned char *pmap[MAX_FILES];
static int map_fd[MAX_FILES];

static const char *file_name(int f)
{
	static const char *const names[MAX_FILES] = { "f0", "f1", "f2" };

	return names[f];
}

/* ------------------------------------------------------------------ */
/* Random numbers, patterns, reports                                   */

static uint64_t rnd(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

static uint64_t below(uint64_t *s, uint64_t n)
{
	return n ? rnd(s) % n : 0;
}

static bool chance(uint64_t *s, unsigned int percent)
{
	return below(s, 100) < percent;
}

static uint64_t round_down(uint64_t x, uint64_t a)
{
	return x / a * a;
}

static uint64_t round_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void count(int c, unsigned long n)
{
	atomic_fetch_add(&sh->count[c], n);
}

/*
 * Write tags: 40 bits, never 0 — 8 bits of the seed, the worker (8 bits),
 * the worker's write number (24 bits). The word at file offset @off (a
 * multiple of 8) of a write: the tag, then the offset's word index.
 */
static uint64_t make_tag(unsigned int worker, uint32_t write)
{
	return (cfg.seed & 0xff) << 32 | (uint64_t)(worker & 0xff) << 24 | (write & 0xffffff);
}

static uint64_t pat_word(uint64_t tag, uint64_t off)
{
	return tag << 24 | ((off >> 3) & 0xffffff);
}

/* Fills @dst (which stands for file offsets @off..) with write @tag. */
static void pat_fill(unsigned char *dst, size_t len, uint64_t off, uint64_t tag)
{
	size_t i = 0;

	for (; i < len && ((off + i) & 7); i++)
		dst[i] = pat_word(tag, off + i) >> (8 * ((off + i) & 7));
	for (; i + 8 <= len; i += 8) {
		uint64_t v = pat_word(tag, off + i);

		memcpy(dst + i, &v, 8);
	}
	for (; i < len; i++)
		dst[i] = pat_word(tag, off + i) >> (8 * ((off + i) & 7));
}

/* Whether @w is a word of this run's pattern. */
static bool is_pattern(uint64_t w)
{
	return (w >> 56) == (cfg.seed & 0xff) && (w >> 24 & 0xffffff);
}

/*
 * What the 8 bytes at @buf[@pos] (@pos a multiple of 8 in file offsets;
 * @buf holds @len bytes) are, in words. Data copied by copy_file_range
 * may sit off its words' alignment: the bytes before @pos are tried too.
 */
static void describe(char *out, size_t n, const unsigned char *buf, size_t len, size_t pos)
{
	uint64_t w;

	memcpy(&w, buf + pos, 8);
	if (!w) {
		snprintf(out, n, "zeros");
		return;
	}
	for (size_t shift = 0; shift < 8 && shift <= pos && pos - shift + 8 <= len; shift++) {
		uint64_t v;

		memcpy(&v, buf + pos - shift, 8);
		if (!is_pattern(v))
			continue;
		snprintf(out, n, "worker %llu write %llu of offset %#llx%s (%016llx)",
			 (unsigned long long)(v >> 48 & 0xff), (unsigned long long)(v >> 24 & 0xffffff),
			 (unsigned long long)((v & 0xffffff) * 8),
			 shift ? ", copied off its alignment" : "", (unsigned long long)w);
		return;
	}
	snprintf(out, n, "foreign %016llx", (unsigned long long)w);
}

/* Records a failure; prints the first few (one write(2) each). */
static void __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
	unsigned int n = atomic_fetch_add(&sh->failures, 1);
	char msg[1024];
	va_list ap;
	int len;

	atomic_store(&sh->stop, 1);
	if (n >= MAX_REPORTS) {
		if (n == MAX_REPORTS)
			fprintf(stderr, "# (more failures not shown)\n");
		return;
	}
	len = snprintf(msg, sizeof(msg), "# FAIL (epoch %u): ", sh->epoch);
	va_start(ap, fmt);
	len += vsnprintf(msg + len, sizeof(msg) - len, fmt, ap);
	va_end(ap);
	if (len > (int)sizeof(msg) - 2)
		len = sizeof(msg) - 2;
	msg[len++] = '\n';
	if (write(2, msg, len) < 0)
		return;
}

/*
 * Compares @actual, file @f's bytes at @off.., with the model; on a
 * difference reports the first one, what was expected and found there,
 * and how many bytes differ. Returns 0 when equal.
 */
static int check(const char *how, int f, const unsigned char *actual, uint64_t off, size_t len)
{
	const unsigned char *want = model[f] + off;
	size_t first, bad = 0, last = 0;
	uint64_t at;
	char exp_s[128], got_s[128];

	if (!memcmp(actual, want, len))
		return 0;
	for (first = 0; actual[first] == want[first]; first++)
		;
	for (size_t i = first; i < len; i++)
		if (actual[i] != want[i]) {
			bad++;
			last = i;
		}
	/* The first whole word from the first difference on (the word holding
	 * it may mix two writes), else the one holding it. */
	at = round_up(off + first, 8);
	if (at + 8 > off + len)
		at = (off + first) & ~7ull;
	if (at >= off && at + 8 <= off + len) {
		describe(exp_s, sizeof(exp_s), want, len, at - off);
		describe(got_s, sizeof(got_s), actual, len, at - off);
	} else {
		snprintf(exp_s, sizeof(exp_s), "byte %#x", want[first]);
		snprintf(got_s, sizeof(got_s), "byte %#x", actual[first]);
	}
	fail("%s: %s [%#llx, +%#zx): first difference at %#llx; at %#llx expected %s, found %s; "
	     "%zu bytes differ, the last at %#llx", how, file_name(f),
	     (unsigned long long)off, len, (unsigned long long)(off + first), (unsigned long long)at, exp_s, got_s,
	     bad, (unsigned long long)(off + last));
	return -1;
}

/* ------------------------------------------------------------------ */
/* Guarded access to mappings: a SIGBUS is caught and reported.        */

static __thread sigjmp_buf *guard_jb;
static __thread void *volatile bus_addr;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (!guard_jb) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	bus_addr = si->si_addr;
	siglongjmp(*guard_jb, 1);
}

static int guarded_fill(unsigned char *dst, size_t len, uint64_t off, uint64_t tag)
{
	sigjmp_buf jb;

	if (sigsetjmp(jb, 1)) {
		guard_jb = NULL;
		return -1;
	}
	guard_jb = &jb;
	pat_fill(dst, len, off, tag);
	guard_jb = NULL;
	return 0;
}

static int guarded_copy(void *dst, const void *src, size_t len)
{
	sigjmp_buf jb;

	if (sigsetjmp(jb, 1)) {
		guard_jb = NULL;
		return -1;
	}
	guard_jb = &jb;
	memcpy(dst, src, len);
	guard_jb = NULL;
	return 0;
}

static int guarded_memset(void *dst, int c, size_t len)
{
	sigjmp_buf jb;

	if (sigsetjmp(jb, 1)) {
		guard_jb = NULL;
		return -1;
	}
	guard_jb = &jb;
	memset(dst, c, len);
	guard_jb = NULL;
	return 0;
}

static void report_sigbus(const char *how, int f, const unsigned char *base, uint64_t base_off)
{
	fail("%s: SIGBUS at %s offset %#llx (size %lld)", how, file_name(f),
	     (unsigned long long)(base_off + ((unsigned char *)bus_addr - base)),
	     (long long)sh->size[f]);
}

/* ------------------------------------------------------------------ */
/* The model                                                           */

static void model_write(int f, uint64_t off, size_t len, uint64_t tag)
{
	pat_fill(model[f] + off, len, off, tag);
	count(C_bytes_stored, len);
}

static void model_zero(int f, uint64_t off, size_t len)
{
	memset(model[f] + off, 0, len);
}

static void model_copy(int dst, uint64_t doff, int src, uint64_t soff, size_t len)
{
	memmove(model[dst] + doff, model[src] + soff, len);
}

/* Sets file @f's model size; bytes past it are zeros. */
static void model_resize(int f, off_t size)
{
	if (size < sh->size[f])
		model_zero(f, size, sh->size[f] - size);
	sh->size[f] = size;
}

/*
 * After a clone of [@soff, +@len) of @src to @doff of @dst failed with
 * @err: reports what the destination holds, block by block — unchanged,
 * the source's (cloned before the failure) or neither — and its size, then
 * takes that as the model's, so that later reports are about new damage
 * only. Reads through @fd into @buf (PAGE bytes at least).
 */
static void after_failed_clone(const char *how, int err, int fd, int dst, uint64_t doff, int src,
			       uint64_t soff, uint64_t len, unsigned char *buf)
{
	size_t same = 0, cloned = 0, neither = 0;
	off_t size = fs_size_of(fd);

	for (uint64_t i = 0; i < len && (off_t)(doff + i) < size; i += PAGE) {
		size_t n = min_u64(min_u64(PAGE, len - i), size - (doff + i));

		if (pread(fd, buf, n, doff + i) != (ssize_t)n)
			break;
		if (!memcmp(buf, model[dst] + doff + i, n)) {
			same++;
			continue;
		}
		if (!memcmp(buf, model[src] + soff + i, n))
			cloned++;
		else
			neither++;
		memcpy(model[dst] + doff + i, buf, n);
	}
	fail("%s %s [%#llx, +%#llx) to %s %#llx: %s; the destination now has %zu blocks "
	     "unchanged, %zu cloned, %zu neither (lost), size %lld (was %lld)", how,
	     file_name(src), (unsigned long long)soff, (unsigned long long)len, file_name(dst),
	     (unsigned long long)doff, strerror(err), same, cloned, neither, (long long)size,
	     (long long)sh->size[dst]);
	if (size >= 0 && size <= (off_t)cfg.max_size && size != sh->size[dst]) {
		if (size > sh->size[dst] && pread(fd, model[dst] + sh->size[dst],
						  size - sh->size[dst], sh->size[dst]) < 0)
			return;
		model_resize(dst, size);
	}
}

/* ------------------------------------------------------------------ */
/* Barriers                                                            */

static void barrier_init(struct barrier *b, unsigned int n)
{
	atomic_store(&b->arrived, 0);
	atomic_store(&b->gen, 0);
	b->n = n;
}

static bool is_coordinator;

/* In the coordinator: whether a worker process ended (it stays waitable). */
static bool worker_died(void)
{
	siginfo_t si = { 0 };

	if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) || !si.si_pid)
		return false;
	fail("worker process %d ended early (%s %d)", si.si_pid,
	     si.si_code == CLD_EXITED ? "exit status" : "signal", si.si_status);
	atomic_store(&sh->abort, 1);
	return true;
}

/* Returns 0, or -1 if the run was aborted while waiting. */
static int barrier_wait(struct barrier *b)
{
	unsigned int gen = atomic_load(&b->gen);

	if (atomic_fetch_add(&b->arrived, 1) + 1 == b->n) {
		atomic_store(&b->arrived, 0);
		atomic_fetch_add(&b->gen, 1);
		syscall(SYS_futex, &b->gen, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
		return 0;
	}
	while (atomic_load(&b->gen) == gen) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };

		if (atomic_load(&sh->abort))
			return -1;
		if (is_coordinator && worker_died())
			return -1;
		syscall(SYS_futex, &b->gen, FUTEX_WAIT, gen, &ts, NULL, 0);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Workers                                                             */

/* Stripe @s of file @f: whose it is. */
static unsigned int owner(int f, uint64_t s)
{
	return (s + f) % cfg.workers;
}

/*
 * Picks one of worker @w's stripes of file @f that starts in [@lo, @limit)
 * (@lo a multiple of STRIPE); returns its offset, or -1 if there is none.
 */
static int64_t pick_stripe_in(struct worker *w, int f, uint64_t lo, uint64_t limit)
{
	uint64_t end = min_u64(round_up(limit, STRIPE), cfg.max_size) / STRIPE;
	uint64_t first = lo / STRIPE;
	uint64_t r = (w->id + cfg.workers - f % cfg.workers) % cfg.workers;
	uint64_t n;

	first += (r + cfg.workers - first % cfg.workers) % cfg.workers;
	if (end <= first)
		return -1;
	n = (end - first + cfg.workers - 1) / cfg.workers;
	first += below(&w->rng, n) * cfg.workers;
	if (owner(f, first) != w->id)
		fail("test bug: worker %u picked stripe %llu of %s, which is worker %u's", w->id,
		     (unsigned long long)first, file_name(f), owner(f, first));
	return first * STRIPE;
}

static int64_t pick_stripe(struct worker *w, int f, uint64_t limit)
{
	return pick_stripe_in(w, f, 0, limit);
}

/*
 * A range in one of worker @w's stripes of file @f, clipped to @limit:
 * page-aligned or (@bytes) byte-granular, usually small. Returns false
 * when there is none.
 */
static bool pick_range_in(struct worker *w, int f, uint64_t lo, uint64_t limit, bool bytes,
			  uint64_t *off, size_t *len)
{
	int64_t base = pick_stripe_in(w, f, lo, limit);
	uint64_t start, end, max_len;

	if (base < 0)
		return false;
	if (bytes) {
		start = base + below(&w->rng, STRIPE);
		max_len = base + STRIPE - start;
		/* Mostly short stores, sometimes up to the stripe's end. */
		end = start + 1 + below(&w->rng, chance(&w->rng, 70) ? min_u64(max_len, 300)
								      : max_len);
	} else {
		start = base + below(&w->rng, STRIPE / PAGE) * PAGE;
		max_len = (base + STRIPE - start) / PAGE;
		end = start + (1 + below(&w->rng, chance(&w->rng, 60) ? min_u64(max_len, 2)
								       : max_len)) * PAGE;
	}
	end = min_u64(end, limit);
	if (start >= end)
		return false;
	*off = start;
	*len = end - start;
	return true;
}

static bool pick_range(struct worker *w, int f, uint64_t limit, bool bytes, uint64_t *off,
		       size_t *len)
{
	return pick_range_in(w, f, 0, limit, bytes, off, len);
}

static uint64_t next_tag(struct worker *w)
{
	return make_tag(w->id, ++w->writes);
}

/* Stores a new write into worker-owned [@off, @off + @len) of @f via @map. */
static bool store_via(const char *how, int f, unsigned char *map, uint64_t map_off, uint64_t off,
		      size_t len, uint64_t tag)
{
	if (guarded_fill(map + (off - map_off), len, off, tag)) {
		report_sigbus(how, f, map, map_off);
		return false;
	}
	model_write(f, off, len, tag);
	return true;
}

static void op_map_write(struct worker *w, int f)
{
	uint64_t off;
	size_t len;

	if (!pick_range(w, f, sh->size[f], chance(&w->rng, 50), &off, &len))
		return;
	if (store_via("store through the process-wide mapping", f, pmap[f], 0, off, len,
		      next_tag(w)))
		count(C_map_write, 1);
}

/* A mapping of just the range's pages (MAP_SYNC sometimes), then unmapped. */
static void op_window_write(struct worker *w, int f)
{
	bool sync = chance(&w->rng, 30);
	uint64_t off, moff;
	size_t len, mlen;
	unsigned char *m;

	if (!pick_range(w, f, sh->size[f], chance(&w->rng, 50), &off, &len))
		return;
	moff = round_down(off, PAGE);
	mlen = round_up(off + len, PAGE) - moff;
	m = mmap(NULL, mlen, PROT_READ | PROT_WRITE,
		 sync ? MAP_SHARED_VALIDATE | MAP_SYNC : MAP_SHARED, w->fd[f], moff);
	if (m == MAP_FAILED && sync && errno == EOPNOTSUPP) {
		count(C_map_sync_refused, 1);
		sync = false;
		m = mmap(NULL, mlen, PROT_READ | PROT_WRITE, MAP_SHARED, w->fd[f], moff);
	}
	if (m == MAP_FAILED) {
		fail("mmap %s [%#llx, +%#zx): %s", file_name(f), (unsigned long long)moff, mlen,
		     strerror(errno));
		return;
	}
	if (store_via(sync ? "store through a MAP_SYNC window" : "store through a window", f, m,
		      moff, off, len, next_tag(w))) {
		count(sync ? C_window_sync : C_window_write, 1);
		if (chance(&w->rng, 40) && msync(m, mlen, MS_SYNC))
			fail("msync of a window: %s", strerror(errno));
	}
	munmap(m, mlen);
}

/* A 2 MiB-aligned mapping of a whole 2 MiB chunk; stores to own stripes. */
static void op_pmd_window(struct worker *w, int f)
{
	uint64_t chunk, off;
	size_t len;
	unsigned char *m;
	int stores = 0;

	/* A chunk that holds one of the worker's stripes below EOF. */
	if (pick_stripe(w, f, sh->size[f]) < 0)
		return;
	chunk = round_down(pick_stripe(w, f, sh->size[f]), PMD_SIZE);
	m = mm_mmap_aligned(PMD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, w->fd[f], chunk, 0);
	if (m == MAP_FAILED) {
		fail("mmap 2 MiB of %s at %#llx: %s", file_name(f), (unsigned long long)chunk,
		     strerror(errno));
		return;
	}
	for (int i = 0; i < 4; i++) {
		if (!pick_range_in(w, f, chunk, min_u64(sh->size[f], chunk + PMD_SIZE),
				   chance(&w->rng, 30), &off, &len))
			continue;
		if (!store_via("store through a 2 MiB window", f, m, chunk, off, len, next_tag(w)))
			break;
		stores++;
	}
	if (stores)
		count(C_pmd_window, 1);
	munmap(m, PMD_SIZE);
}

static void op_write(struct worker *w, int f, int how)
{
	uint64_t off, tag = next_tag(w);
	size_t len;
	ssize_t n;

	if (!pick_range(w, f, sh->size[f], chance(&w->rng, 60), &off, &len))
		return;
	pat_fill(w->buf, len, off, tag);
	if (how == 0) {
		if (lseek(w->fd[f], off, SEEK_SET) != (off_t)off) {
			fail("lseek: %s", strerror(errno));
			return;
		}
		n = write(w->fd[f], w->buf, len);
	} else if (how == 1) {
		n = pwrite(w->fd[f], w->buf, len, off);
	} else {
		size_t a = len / 3, b = len / 2;
		struct iovec iov[3] = { { w->buf, a }, { w->buf + a, b - a },
					{ w->buf + b, len - b } };

		n = pwritev(w->fd[f], iov, 3, off);
	}
	if (n != (ssize_t)len) {
		fail("%s of %s [%#llx, +%#zx) gave %zd: %s",
		     how == 0 ? "write" : how == 1 ? "pwrite" : "pwritev", file_name(f),
		     (unsigned long long)off, len, n, n < 0 ? strerror(errno) : "short");
		return;
	}
	model_write(f, off, len, tag);
	count(how == 0 ? C_write : how == 1 ? C_pwrite : C_pwritev, 1);
}

static void op_read_check(struct worker *w, int f)
{
	uint64_t off;
	size_t len;
	ssize_t n;

	if (!pick_range(w, f, sh->size[f], chance(&w->rng, 50), &off, &len))
		return;
	n = pread(w->fd[f], w->buf, len, off);
	if (n != (ssize_t)len) {
		fail("pread of %s [%#llx, +%#zx) gave %zd: %s", file_name(f),
		     (unsigned long long)off, len, n, n < 0 ? strerror(errno) : "short");
		return;
	}
	check("pread", f, w->buf, off, len);
	count(C_read_check, 1);
}

static void op_map_read_check(struct worker *w, int f)
{
	uint64_t off;
	size_t len;

	if (!pick_range(w, f, sh->size[f], chance(&w->rng, 50), &off, &len))
		return;
	if (guarded_copy(w->buf, pmap[f] + off, len)) {
		report_sigbus("load through the process-wide mapping", f, pmap[f], 0);
		return;
	}
	check("load through the process-wide mapping", f, w->buf, off, len);
	count(C_map_read_check, 1);
}

/* PUNCH_HOLE, ZERO_RANGE, default allocation or KEEP_SIZE, in own stripes. */
static void op_fallocate(struct worker *w, int f, int how)
{
	bool keep = how == 0 || chance(&w->rng, 50);
	/* Without KEEP_SIZE the range must stay below EOF (no extension). */
	uint64_t limit = keep ? cfg.max_size : (uint64_t)sh->size[f];
	int mode;
	uint64_t off;
	size_t len;

	if (!pick_range(w, f, limit, chance(&w->rng, 50), &off, &len))
		return;
	mode = how == 0 ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
	     : how == 1 ? FALLOC_FL_ZERO_RANGE | (keep ? FALLOC_FL_KEEP_SIZE : 0)
	     : keep ? FALLOC_FL_KEEP_SIZE : 0;
	if (fallocate(w->fd[f], mode, off, len)) {
		fail("fallocate(%#x) %s [%#llx, +%#zx): %s", mode, file_name(f),
		     (unsigned long long)off, len, strerror(errno));
		return;
	}
	if (how < 2)
		model_zero(f, off, len);
	count(how == 0 ? C_punch : how == 1 ? C_zero_range
	      : off + len > (uint64_t)sh->size[f] ? C_alloc_past_eof : C_alloc, 1);
}

/*
 * FICLONERANGE (block-aligned) or copy_file_range (any bytes) from one of
 * the worker's stripes to another of its stripes, of the same file or
 * another; both ranges below both sizes, so nothing is extended.
 */
static void op_clone_or_copy(struct worker *w, bool clone)
{
	int a = below(&w->rng, MAX_FILES), b = below(&w->rng, MAX_FILES);
	uint64_t la = sh->size[a], lb = sh->size[b], soff, doff, len;
	int64_t ss, ds;

	if (clone) {
		la = round_down(la, PAGE);
		lb = round_down(lb, PAGE);
	}
	ss = pick_stripe(w, a, la);
	ds = pick_stripe(w, b, lb);
	if (ss < 0 || ds < 0 || (a == b && ss == ds))
		return;
	if (clone) {
		uint64_t p = below(&w->rng, STRIPE / PAGE);

		soff = ss + p * PAGE;
		doff = ds + below(&w->rng, STRIPE / PAGE) * PAGE;
		len = (1 + below(&w->rng, STRIPE / PAGE)) * PAGE;
	} else {
		soff = ss + below(&w->rng, STRIPE);
		doff = ds + below(&w->rng, STRIPE);
		len = 1 + below(&w->rng, STRIPE);
	}
	len = min_u64(len, min_u64(ss + STRIPE - soff, ds + STRIPE - doff));
	if (soff + len > la)
		len = la > soff ? la - soff : 0;
	if (doff + len > lb)
		len = lb > doff ? lb - doff : 0;
	if (!len)
		return;
	if (clone) {
		struct file_clone_range r = { .src_fd = w->fd[a], .src_offset = soff,
					      .src_length = len, .dest_offset = doff };

		if (ioctl(w->fd[b], FICLONERANGE, &r)) {
			if (errno == EOPNOTSUPP && fs_is("ext4")) {
				count(C_clone_unsupported, 1);
				return;
			}
			after_failed_clone("FICLONERANGE", errno, w->fd[b], b, doff, a, soff, len,
					   w->buf);
			return;
		}
		model_copy(b, doff, a, soff, len);
		count(C_clone_range, 1);
		return;
	}
	for (uint64_t done = 0; done < len;) {
		loff_t in = soff + done, out = doff + done;
		ssize_t n = copy_file_range(w->fd[a], &in, w->fd[b], &out, len - done, 0);

		if (n <= 0) {
			fail("copy_file_range %s [%#llx, +%#llx) to %s %#llx gave %zd: %s",
			     file_name(a), (unsigned long long)(soff + done),
			     (unsigned long long)(len - done), file_name(b),
			     (unsigned long long)(doff + done), n, n < 0 ? strerror(errno) : "EOF");
			model_copy(b, doff, a, soff, done);
			return;
		}
		done += n;
	}
	model_copy(b, doff, a, soff, len);
	count(C_copy_range, 1);
}

static void op_sync(struct worker *w, int f)
{
	switch (below(&w->rng, 3)) {
	case 0:
		if (fsync(w->fd[f]))
			fail("fsync: %s", strerror(errno));
		count(C_fsync, 1);
		break;
	case 1:
		if (fdatasync(w->fd[f]))
			fail("fdatasync: %s", strerror(errno));
		count(C_fdatasync, 1);
		break;
	default: {
		uint64_t off = round_down(below(&w->rng, sh->size[f] + 1), PAGE);
		size_t len = round_up(sh->size[f], PAGE) - off;

		if (len && msync(pmap[f] + off, len, chance(&w->rng, 70) ? MS_SYNC : MS_ASYNC))
			fail("msync: %s", strerror(errno));
		count(C_msync, 1);
	}
	}
}

/* A child stores through the inherited process-wide mapping; its parent
 * applies the same stores to the model once it exited cleanly. */
static void op_fork(struct worker *w, int f)
{
	struct { uint64_t off; size_t len; uint64_t tag; } st[3];
	int n = 0, status;
	pid_t pid;

	for (int i = 0; i < 3; i++)
		if (pick_range(w, f, sh->size[f], chance(&w->rng, 50), &st[n].off, &st[n].len))
			st[n].tag = next_tag(w), n++;
	if (!n)
		return;
	pid = fork();
	if (pid < 0) {
		fail("fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		for (int i = 0; i < n; i++)
			pat_fill(pmap[f] + st[i].off, st[i].len, st[i].off, st[i].tag);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fail("forked child storing to %s: status %#x%s", file_name(f), status,
		     WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS ? " (SIGBUS)" : "");
		return;
	}
	for (int i = 0; i < n; i++)
		model_write(f, st[i].off, st[i].len, st[i].tag);
	count(C_fork, 1);
}

/* MAP_PRIVATE: reads the file's data, stores stay private (CoW). */
static void op_private(struct worker *w, int f)
{
	uint64_t off, moff;
	size_t len, mlen;
	unsigned char *m;

	if (!pick_range(w, f, sh->size[f], false, &off, &len))
		return;
	moff = off;
	mlen = len;
	m = mmap(NULL, mlen, PROT_READ | PROT_WRITE, MAP_PRIVATE, w->fd[f], moff);
	if (m == MAP_FAILED) {
		fail("MAP_PRIVATE mmap: %s", strerror(errno));
		return;
	}
	if (guarded_copy(w->buf, m, len)) {
		report_sigbus("load through MAP_PRIVATE", f, m, moff);
		goto out;
	}
	if (check("load through MAP_PRIVATE", f, w->buf, off, len))
		goto out;
	if (guarded_memset(m, 0xa5, len)) {
		report_sigbus("store through MAP_PRIVATE", f, m, moff);
		goto out;
	}
	for (size_t i = 0; i < len; i++)
		if (m[i] != 0xa5) {
			fail("MAP_PRIVATE copy of %s lost a store at %#llx", file_name(f),
			     (unsigned long long)(off + i));
			goto out;
		}
	if (pread(w->fd[f], w->buf, len, off) != (ssize_t)len) {
		fail("pread after MAP_PRIVATE stores: %s", strerror(errno));
		goto out;
	}
	if (!check("pread after stores to a MAP_PRIVATE copy", f, w->buf, off, len))
		count(C_private_cow, 1);
out:
	munmap(m, mlen);
}

static void do_op(struct worker *w)
{
	int f = below(&w->rng, MAX_FILES);
	unsigned int r = below(&w->rng, 100);
	double start = now();
	int kind;

	if (r < 24)
		op_map_write(w, f), kind = K_map_write;
	else if (r < 32)
		op_window_write(w, f), kind = K_window;
	else if (r < 36)
		op_pmd_window(w, f), kind = K_pmd_window;
	else if (r < 50)
		op_write(w, f, (r - 36) % 3), kind = K_write;
	else if (r < 58)
		op_read_check(w, f), kind = K_read_check;
	else if (r < 66)
		op_map_read_check(w, f), kind = K_map_read_check;
	else if (r < 78)
		op_fallocate(w, f, (r - 66) % 3), kind = K_fallocate;
	else if (r < 83)
		op_clone_or_copy(w, true), kind = K_clone;
	else if (r < 87)
		op_clone_or_copy(w, false), kind = K_copy;
	else if (r < 92)
		op_sync(w, f), kind = K_sync;
	else if (r < 95)
		op_fork(w, f), kind = K_fork;
	else
		op_private(w, f), kind = K_private;
	atomic_fetch_add(&sh->op_us[kind], (unsigned long)((now() - start) * 1e6));
}

/* Maps every file process-wide (2 MiB-aligned, or @misalign off that). */
static int map_process_wide(size_t misalign)
{
	for (int f = 0; f < MAX_FILES; f++) {
		pmap[f] = mm_mmap_aligned(cfg.max_size, PROT_READ | PROT_WRITE, MAP_SHARED,
					  map_fd[f], 0, misalign);
		if (pmap[f] == MAP_FAILED)
			return -errno;
	}
	return 0;
}

static void unmap_process_wide(void)
{
	for (int f = 0; f < MAX_FILES; f++)
		if (pmap[f] && pmap[f] != MAP_FAILED)
			munmap(pmap[f], cfg.max_size);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (int f = 0; f < MAX_FILES; f++) {
		char path[64];

		snprintf(path, sizeof(path), "%s/%s", FS_MNT, file_name(f));
		w->fd[f] = open(path, O_RDWR);
		if (w->fd[f] < 0) {
			fail("worker %u: open %s: %s", w->id, file_name(f), strerror(errno));
			atomic_store(&sh->abort, 1);
			return NULL;
		}
	}
	for (;;) {
		if (barrier_wait(&sh->go) || atomic_load(&sh->stop))
			break;
		for (unsigned int i = 0; i < cfg.ops && !atomic_load(&sh->abort); i++)
			do_op(w);
		if (barrier_wait(&sh->pause))
			break;
		/* Between the barriers: the coordinator works, the process's
		 * first thread remaps while its other threads wait at "go". */
		if (w->thread == 0 && sh->remap[w->proc]) {
			unmap_process_wide();
			if (map_process_wide(sh->remap[w->proc] == 2 ? PAGE : 0)) {
				fail("remap: %s", strerror(errno));
				atomic_store(&sh->abort, 1);
			}
		}
	}
	for (int f = 0; f < MAX_FILES; f++)
		close(w->fd[f]);
	return NULL;
}

/* A worker process: THREADS threads, the first one this one. */
static int worker_process(unsigned int proc)
{
	struct worker w[MAX_THREADS];
	pthread_t tid[MAX_THREADS];

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (map_process_wide(0)) {
		fail("process %u: mmap: %s", proc, strerror(errno));
		atomic_store(&sh->abort, 1);
		return 1;
	}
	for (unsigned int t = 0; t < cfg.threads; t++) {
		w[t] = (struct worker){ .id = proc * cfg.threads + t, .proc = proc, .thread = t };
		w[t].rng = cfg.seed * 0x9E3779B97F4A7C15ull + (w[t].id + 1) * 0xD1B54A32D192ED03ull;
		w[t].rng |= 1;
		w[t].buf = malloc(STRIPE);
		if (!w[t].buf)
			return 1;
	}
	for (unsigned int t = 1; t < cfg.threads; t++)
		if (pthread_create(&tid[t], NULL, worker_main, &w[t])) {
			fail("pthread_create");
			atomic_store(&sh->abort, 1);
			return 1;
		}
	worker_main(&w[0]);
	for (unsigned int t = 1; t < cfg.threads; t++)
		pthread_join(tid[t], NULL);
	unmap_process_wide();
	return 0;
}

/* ------------------------------------------------------------------ */
/* The coordinator                                                     */

struct coord {
	uint64_t rng;
	int fd[MAX_FILES];
	unsigned char *buf;	/* max_size */
};

/* Compares file @f with the model through read(2): size, [off, off + len). */
static int check_file_read(struct coord *c, int f, const char *when, uint64_t off, uint64_t len)
{
	char how[128];
	off_t size = fs_size_of(c->fd[f]);
	ssize_t n;

	if (size != sh->size[f]) {
		fail("%s: %s has size %lld, expected %lld", when, file_name(f), (long long)size,
		     (long long)sh->size[f]);
		return -1;
	}
	len = min_u64(len, size > (off_t)off ? size - off : 0);
	if (!len)
		return 0;
	n = pread(c->fd[f], c->buf, len, off);
	if (n != (ssize_t)len) {
		fail("%s: pread %s [%#llx, +%#llx) gave %zd", when, file_name(f),
		     (unsigned long long)off, (unsigned long long)len, n);
		return -1;
	}
	snprintf(how, sizeof(how), "%s, read(2)", when);
	return check(how, f, c->buf, off, len);
}

/* Through a fresh 2 MiB-aligned mapping: every byte up to the end of the
 * last page (the tail past EOF must read as zeros). */
static int check_file_map(struct coord *c, int f, const char *when)
{
	size_t len = round_up(sh->size[f], PAGE);
	unsigned char *m;
	char how[128];
	int ret;

	if (!len)
		return 0;
	m = mm_mmap_aligned(len, PROT_READ, MAP_SHARED, c->fd[f], 0, 0);
	if (m == MAP_FAILED) {
		fail("%s: mmap %s: %s", when, file_name(f), strerror(errno));
		return -1;
	}
	snprintf(how, sizeof(how), "%s, fresh mapping", when);
	if (guarded_copy(c->buf, m, len)) {
		report_sigbus(how, f, m, 0);
		ret = -1;
	} else {
		ret = check(how, f, c->buf, 0, len);
	}
	munmap(m, len);
	return ret;
}

static off_t random_size(struct coord *c)
{
	uint64_t s = below(&c->rng, cfg.max_size + 1);

	return chance(&c->rng, 50) ? (off_t)round_down(s, PAGE) : (off_t)s;
}

/* One whole-file operation while the workers wait. */
static void coord_op(struct coord *c)
{
	int f = below(&c->rng, MAX_FILES), g = (f + 1 + below(&c->rng, MAX_FILES - 1)) % MAX_FILES;
	unsigned int r = below(&c->rng, 100);
	off_t size;

	if (r < 35) {		/* truncate */
		size = random_size(c);
		if (ftruncate(c->fd[f], size)) {
			fail("ftruncate %s to %lld: %s", file_name(f), (long long)size,
			     strerror(errno));
			return;
		}
		count(size < sh->size[f] ? C_truncate_down : C_truncate_up, 1);
		model_resize(f, size);
	} else if (r < 50) {	/* down, then up: the cut bytes read as zeros */
		size = below(&c->rng, sh->size[f] + 1);
		if (ftruncate(c->fd[f], size) || ftruncate(c->fd[f], sh->size[f])) {
			fail("ftruncate %s down and up: %s", file_name(f), strerror(errno));
			return;
		}
		count(C_truncate_down, 1);
		count(C_truncate_up, 1);
		model_zero(f, size, sh->size[f] - size);
	} else if (r < 62) {	/* FICLONE: f's [0, size) over g's, g may grow */
		/* A partial EOF block may not land inside g: EINVAL. */
		bool refuse = sh->size[f] % PAGE && sh->size[f] < sh->size[g];
		int ret = ioctl(c->fd[g], FICLONE, c->fd[f]);

		if (ret && errno == EOPNOTSUPP && fs_is("ext4")) {
			count(C_clone_unsupported, 1);
			return;
		}
		if (refuse) {
			if (!ret || errno != EINVAL)
				fail("FICLONE %s (size %lld) to %s (size %lld): %s, expected EINVAL",
				     file_name(f), (long long)sh->size[f], file_name(g),
				     (long long)sh->size[g], ret ? strerror(errno) : "success");
			if (!ret)
				return;	/* the model cannot say what happened */
			count(C_ficlone_refused, 1);
			return;
		}
		if (ret) {
			after_failed_clone("FICLONE", errno, c->fd[g], g, 0, f, 0, sh->size[f], c->buf);
			return;
		}
		model_copy(g, 0, f, 0, sh->size[f]);
		if (sh->size[f] > sh->size[g])
			sh->size[g] = sh->size[f];
		count(C_ficlone, 1);
	} else if (r < 74) {	/* FICLONERANGE that may extend the destination */
		uint64_t src_end = round_down(sh->size[f], PAGE), soff, doff, len;
		struct file_clone_range cr;

		if (!src_end)
			return;
		soff = round_down(below(&c->rng, src_end), PAGE);
		len = round_up(1 + below(&c->rng, src_end - soff), PAGE);
		len = min_u64(len, src_end - soff);
		doff = round_down(sh->size[g], PAGE) + below(&c->rng, 4) * PAGE;
		if (doff >= cfg.max_size)
			doff = round_down(below(&c->rng, cfg.max_size), PAGE);
		len = min_u64(len, cfg.max_size - doff);
		cr = (struct file_clone_range){ .src_fd = c->fd[f], .src_offset = soff,
						.src_length = len, .dest_offset = doff };
		if (ioctl(c->fd[g], FICLONERANGE, &cr)) {
			if (errno == EOPNOTSUPP && fs_is("ext4")) {
				count(C_clone_unsupported, 1);
				return;
			}
			after_failed_clone("FICLONERANGE", errno, c->fd[g], g, doff, f, soff, len,
					   c->buf);
			return;
		}
		model_copy(g, doff, f, soff, len);
		if ((off_t)(doff + len) > sh->size[g])
			sh->size[g] = doff + len;
		count(C_ficlone_extend, 1);
	} else if (r < 82) {	/* allocate the whole file (PMD-eligible again) */
		bool keep = chance(&c->rng, 50);

		if (fallocate(c->fd[f], keep ? FALLOC_FL_KEEP_SIZE : 0, 0, cfg.max_size)) {
			fail("fallocate %s whole: %s", file_name(f), strerror(errno));
			return;
		}
		if (!keep)
			sh->size[f] = cfg.max_size;
		count(C_alloc_whole, 1);
	} else {
		if (syncfs(c->fd[f]))
			fail("syncfs: %s", strerror(errno));
		count(C_syncfs, 1);
	}
}

static void read_config(void)
{
	cfg.seed = fs_env_ulong("OXDAX_TEST_MMAP_SEED", 0);
	if (!cfg.seed)
		cfg.seed = (uint64_t)time(NULL) * 1000003 ^ getpid();
	cfg.seconds = fs_env_ulong("OXDAX_TEST_MMAP_SECONDS", 45);
	cfg.max_size = round_up(fs_env_ulong("OXDAX_TEST_MMAP_FILE_MB", 8) * MIB, PMD_SIZE);
	cfg.procs = fs_env_ulong("OXDAX_TEST_MMAP_PROCS", 4);
	cfg.threads = fs_env_ulong("OXDAX_TEST_MMAP_THREADS", 2);
	cfg.epochs = fs_env_ulong("OXDAX_TEST_MMAP_EPOCHS", 200);
	cfg.ops = fs_env_ulong("OXDAX_TEST_MMAP_OPS", 16);
	if (cfg.procs < 1 || cfg.procs > MAX_PROCS)
		cfg.procs = 4;
	if (cfg.threads < 1 || cfg.threads > MAX_THREADS)
		cfg.threads = 2;
	if (cfg.max_size < PMD_SIZE || cfg.max_size > 64 * MIB)
		cfg.max_size = 8 * MIB;
	cfg.workers = cfg.procs * cfg.threads;
}

static void print_counters(void)
{
	char line[4096];
	int len = 0;

	for (int i = 0; i < NR_COUNTERS; i++)
		len += snprintf(line + len, sizeof(line) - len, "%s%s=%lu", i % 8 ? " " : "\n# ",
				counter_names[i], atomic_load(&sh->count[i]));
	fprintf(stderr, "# counters:%s\n", line);
	len = 0;
	for (int i = 0; i < NR_KINDS; i++)
		len += snprintf(line + len, sizeof(line) - len, " %s=%lu", kind_names[i],
				atomic_load(&sh->op_us[i]) / 1000);
	fprintf(stderr, "# worker time (ms):%s; coordinator at barriers %.0f ms\n", line,
		sh->coord_s * 1000);
}

FIXTURE(fs) {
};

FIXTURE_SETUP(fs)
{
	ASSERT_EQ(0, fs_begin());
}

FIXTURE_TEARDOWN(fs)
{
	EXPECT_EQ(0, fs_end());
}

TEST_F_TIMEOUT(fs, stress, 3600)
{
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
	pid_t pids[MAX_PROCS];
	struct coord c = { 0 };
	struct rusage ru;
	unsigned int epoch, nprocs = 0;
	double start, coord_start;
	int status;

	read_config();
	fprintf(stderr, "# seed %llu (OXDAX_TEST_MMAP_SEED=%llu reproduces it); %u processes x "
		"%u threads, %u files of up to %zu MiB, %u epochs x %u operations, at most %u s\n",
		(unsigned long long)cfg.seed, (unsigned long long)cfg.seed, cfg.procs, cfg.threads,
		MAX_FILES, (size_t)(cfg.max_size / MIB), cfg.epochs, cfg.ops, cfg.seconds);
	c.rng = cfg.seed | 1;
	sigaction(SIGBUS, &sa, NULL);

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, sh);
	barrier_init(&sh->go, cfg.workers + 1);
	barrier_init(&sh->pause, cfg.workers + 1);
	c.buf = malloc(cfg.max_size);
	ASSERT_NE(NULL, c.buf);

	/* f0 and f1 allocated whole (PMD-eligible), f2 sparse. */
	for (int f = 0; f < MAX_FILES; f++) {
		model[f] = mmap(NULL, cfg.max_size, PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		ASSERT_NE(MAP_FAILED, model[f]);
		c.fd[f] = open(fs_path("%s", file_name(f)), O_RDWR | O_CREAT, 0644);
		ASSERT_LE(0, c.fd[f]);
		if (f < 2) {
			ASSERT_EQ(0, fallocate(c.fd[f], 0, 0, cfg.max_size));
		} else {
			ASSERT_EQ(0, ftruncate(c.fd[f], cfg.max_size));
		}
		sh->size[f] = cfg.max_size;
		map_fd[f] = c.fd[f];
	}
	{
		void *probe = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, c.fd[0], 0);

		ASSERT_NE(MAP_FAILED, probe) TH_LOG("mmap: %s", strerror(errno));
		munmap(probe, PAGE);
	}

	for (unsigned int p = 0; p < cfg.procs; p++) {
		pid_t pid = fork();

		ASSERT_LE(0, pid);
		if (pid == 0)
			_exit(worker_process(p));
		pids[nprocs++] = pid;
	}

	is_coordinator = true;
	start = now();
	for (epoch = 0; epoch < cfg.epochs; epoch++) {
		sh->epoch = epoch;
		/* Processes that remap their mappings after this epoch (read
		 * by them between the barriers: decided before). */
		for (unsigned int p = 0; p < cfg.procs; p++) {
			sh->remap[p] = chance(&c.rng, 10) ? chance(&c.rng, 25) ? 2 : 1 : 0;
			if (sh->remap[p])
				count(sh->remap[p] == 2 ? C_remap_unaligned : C_remap, 1);
		}
		if (now() - start > cfg.seconds)
			atomic_store(&sh->stop, 1);
		if (atomic_load(&sh->stop) || barrier_wait(&sh->go) || barrier_wait(&sh->pause))
			break;
		coord_start = now();
		for (int i = 1 + below(&c.rng, 2); i > 0; i--)
			coord_op(&c);
		/* Something of every file each epoch, one file whole now and then. */
		for (int f = 0; f < MAX_FILES; f++) {
			uint64_t off = below(&c.rng, cfg.max_size);

			if (f == (int)(epoch % MAX_FILES) && epoch % 4 == 3)
				check_file_read(&c, f, "epoch check", 0, cfg.max_size);
			else
				check_file_read(&c, f, "epoch check", off, 256 * KIB);
		}
		count(C_epoch_check, 1);
		sh->coord_s += now() - coord_start;
	}
	/* Workers waiting at "go" see stop and leave. */
	atomic_store(&sh->stop, 1);
	if (!atomic_load(&sh->abort))
		barrier_wait(&sh->go);
	for (unsigned int p = 0; p < nprocs; p++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		int i;

		for (i = 0; i < 3000 && waitpid(pids[p], &status, WNOHANG) == 0; i++)
			nanosleep(&ts, NULL);
		if (i == 3000) {
			fail("worker process %u did not finish; killing it", p);
			atomic_store(&sh->abort, 1);
			kill(pids[p], SIGKILL);
			waitpid(pids[p], &status, 0);
		} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			fail("worker process %u ended with status %#x", p, status);
		}
	}
	is_coordinator = false;
	getrusage(RUSAGE_CHILDREN, &ru);
	fprintf(stderr, "# %u epochs in %.1f s; workers took %ld minor and %ld major faults\n",
		epoch, now() - start, ru.ru_minflt, ru.ru_majflt);

	/* The end: every byte of every file, through read(2) and a fresh
	 * mapping, then again after a remount. */
	for (int f = 0; f < MAX_FILES; f++) {
		check_file_read(&c, f, "final", 0, cfg.max_size);
		check_file_map(&c, f, "final");
		close(c.fd[f]);
	}
	print_counters();
	ASSERT_EQ(0, fs_remount());
	for (int f = 0; f < MAX_FILES; f++) {
		c.fd[f] = open(fs_path("%s", file_name(f)), O_RDWR);
		ASSERT_LE(0, c.fd[f]);
		check_file_read(&c, f, "after remount", 0, cfg.max_size);
		check_file_map(&c, f, "after remount");
		close(c.fd[f]);
	}
	{
		struct statfs st;

		if (!statfs(FS_MNT, &st))
			fprintf(stderr, "# %s: %llu of %llu blocks in use\n", fs_type(),
				(unsigned long long)(st.f_blocks - st.f_bfree),
				(unsigned long long)st.f_blocks);
	}
	EXPECT_EQ(0, atomic_load(&sh->failures))
		TH_LOG("seed %llu: %u failures", (unsigned long long)cfg.seed,
		       atomic_load(&sh->failures));
	free(c.buf);
}

TEST_HARNESS_MAIN
