// SPDX-License-Identifier: GPL-2.0
/*
 * mmap_sync_crash: the guest side of the MAP_SYNC crash campaign
 * (scripts/crash-campaign --mmap-sync).
 *
 *   mmap_sync_crash run    FILE SIZE_MB SEED [FLUSH [plain]]
 *   mmap_sync_crash verify FILE SIZE_MB SEED ACKED
 *
 * run: creates FILE, sizes it to SIZE_MB MiB (a sparse file, size and name
 * made durable with fsync before anything is mapped), prints "READY", maps
 * it twice with MAP_SHARED_VALIDATE|MAP_SYNC — once 2 MiB-aligned (its
 * stores can be PMD-mapped) and once 4 KiB off that (never PMD-mapped) —
 * and then, for ever, stores a page-sized pattern into the next page of a
 * sequence (the first store of a page in a hole makes the filesystem
 * allocate a block in the write fault, and MAP_SYNC makes the fault commit
 * that allocation before it returns), writes the page's cache lines back
 * from userspace with FLUSH (clwb, clflushopt or clflush; default the best
 * the CPU has) and an sfence, and prints "ACK N": page N of the sequence
 * is durable, with no fsync or msync. The sequence is a function of SEED:
 * single pages in random order through the unaligned mapping, and now and
 * then a whole 2 MiB chunk in order through the aligned mapping; for those
 * chunks it prints how many faults the chunk took (1: PMD-mapped).
 *
 * With "plain" the mappings are plain MAP_SHARED: the same stores and
 * flushes with nothing that makes the block allocations durable — the
 * negative control, which a crash campaign should fail on ext4 or xfs.
 *
 * verify (after the guest was killed, on the next boot): FILE still has
 * its size, every page of sequence number <= ACKED holds its pattern
 * exactly, and every later page holds, word by word, its pattern or zeros
 * (the page in flight may be partly stored; later ones may or may not have
 * been reached before the kill); read(2) and a mapping show the same.
 * Prints a one-line summary ("state: ...").
 *
 * What a kill can and cannot show: QEMU's NVDIMM is a shared mapping of a
 * host file (scripts/vm, memory-backend-file,share=on), so every store the
 * guest made is in that file after QEMU is killed, flushed or not (TCG
 * models no caches; the flush instructions are still executed, chosen by
 * CPUID). What the campaign checks is the filesystem's part: that the
 * block allocation of a write fault, and the file's size, are durable when
 * the fault returns — without MAP_SYNC ("plain") ext4 loses them.
 *
 * Exit status 0 when all is as expected, 1 on a mismatch, 2 on bad usage,
 * 4 when the file cannot be mapped with MAP_SYNC (ENODEV, EOPNOTSUPP: the
 * campaign decides whether that is a skip).
 */
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif

#define PAGE 4096ul
#define PMD (2ul << 20)
#define PAGES_PER_PMD (PMD / PAGE)
#define LINE 64

static uint64_t seed;
static size_t size, pages;
/* The sequence: seq_page[n] is the n-th page stored; page_seq[p] is page
 * p's place in it; page_pmd[p] whether it is stored through the aligned
 * mapping (as part of a whole chunk). */
static uint32_t *seq_page, *page_seq;
static bool *page_pmd;

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

/*
 * Word @i of page @p stored as sequence number @n: never zero, and it says
 * what it is (a marker byte from the seed, n, p, i).
 */
static uint64_t word(uint32_t p, uint32_t n, unsigned int i)
{
	return (0x80ull | (seed & 0x7f)) << 56 | (uint64_t)(n & 0xffffff) << 32 |
	       (uint64_t)(p & 0x7fffff) << 9 | i;
}

/*
 * Builds the sequence: about a quarter of the 2 MiB chunks are stored
 * whole, in order, through the aligned mapping, one such chunk after every
 * 64 to 320 single pages; the other chunks' pages are stored one by one in
 * random order.
 */
static int make_sequence(void)
{
	size_t chunks = pages / PAGES_PER_PMD, singles = 0, n = 0, s = 0;
	uint64_t r = seed * 0x9E3779B97F4A7C15ull | 1;
	uint32_t *single, *pmd_chunk;
	size_t nchunks = 0, c = 0;
	long gap;

	seq_page = calloc(pages, sizeof(*seq_page));
	page_seq = calloc(pages, sizeof(*page_seq));
	page_pmd = calloc(pages, sizeof(*page_pmd));
	single = calloc(pages, sizeof(*single));
	pmd_chunk = calloc(chunks + 1, sizeof(*pmd_chunk));
	if (!seq_page || !page_seq || !page_pmd || !single || !pmd_chunk)
		return -1;
	for (size_t ch = 0; ch < chunks; ch++)
		if (rnd(&r) % 4 == 0)
			pmd_chunk[nchunks++] = ch;
	for (size_t p = 0; p < pages; p++) {
		size_t ch = p / PAGES_PER_PMD;
		bool whole = false;

		for (size_t k = 0; k < nchunks; k++)
			whole |= pmd_chunk[k] == ch;
		page_pmd[p] = whole;
		if (!whole)
			single[singles++] = p;
	}
	for (size_t i = singles; i > 1; i--) {
		size_t j = rnd(&r) % i;
		uint32_t t = single[i - 1];

		single[i - 1] = single[j];
		single[j] = t;
	}
	gap = 64 + rnd(&r) % 256;
	while (n < pages) {
		if (c < nchunks && (gap-- <= 0 || s == singles)) {
			for (size_t i = 0; i < PAGES_PER_PMD; i++)
				seq_page[n++] = pmd_chunk[c] * PAGES_PER_PMD + i;
			c++;
			gap = 64 + rnd(&r) % 256;
		} else {
			seq_page[n++] = single[s++];
		}
	}
	for (size_t i = 0; i < pages; i++)
		page_seq[seq_page[i]] = i;
	free(single);
	free(pmd_chunk);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Writing cache lines back from userspace                             */

enum flush { FLUSH_CLFLUSH, FLUSH_CLFLUSHOPT, FLUSH_CLWB };
static const char *const flush_names[] = { "clflush", "clflushopt", "clwb" };

static bool cpu_has(enum flush f)
{
	unsigned int a, b, c, d;

	if (f == FLUSH_CLFLUSH)
		return __get_cpuid(1, &a, &b, &c, &d) && (d & (1u << 19));
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return false;
	return b & (1u << (f == FLUSH_CLWB ? 24 : 23));
}

static void flush_range(enum flush f, void *addr, size_t len)
{
	char *p = addr;

	for (size_t i = 0; i < len; i += LINE) {
		switch (f) {
		case FLUSH_CLWB:
			asm volatile("clwb %0" : "+m"(*(volatile char *)(p + i)));
			break;
		case FLUSH_CLFLUSHOPT:
			asm volatile("clflushopt %0" : "+m"(*(volatile char *)(p + i)));
			break;
		default:
			asm volatile("clflush %0" : "+m"(*(volatile char *)(p + i)));
			break;
		}
	}
	asm volatile("sfence" ::: "memory");
}

/* ------------------------------------------------------------------ */

static int die(const char *what)
{
	fprintf(stderr, "mmap_sync_crash: %s: %s\n", what, strerror(errno));
	return 1;
}

static bool plain;

static void *map_at(int fd, size_t misalign)
{
	size_t total = size + PMD + misalign;
	char *res, *at;
	void *p;
	int err;

	res = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		return MAP_FAILED;
	at = (char *)(((uintptr_t)res + PMD - 1) & ~(PMD - 1)) + misalign;
	p = mmap(at, size, PROT_READ | PROT_WRITE,
		 (plain ? MAP_SHARED : MAP_SHARED_VALIDATE | MAP_SYNC) | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED) {
		err = errno;
		munmap(res, total);
		errno = err;
		return MAP_FAILED;
	}
	if (at > res)
		munmap(res, at - res);
	munmap(at + size, res + total - (at + size));
	return p;
}

static long minor_faults(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

static int do_run(const char *path, const char *flush_arg)
{
	enum flush f = cpu_has(FLUSH_CLWB) ? FLUSH_CLWB
		     : cpu_has(FLUSH_CLFLUSHOPT) ? FLUSH_CLFLUSHOPT : FLUSH_CLFLUSH;
	char dir[4096];
	uint64_t *aligned, *unaligned;
	long chunk_faults = 0;
	int fd, dfd;

	if (flush_arg) {
		for (f = FLUSH_CLFLUSH; f <= FLUSH_CLWB; f++)
			if (!strcmp(flush_arg, flush_names[f]))
				break;
		if (f > FLUSH_CLWB) {
			fprintf(stderr, "mmap_sync_crash: unknown flush '%s'\n", flush_arg);
			return 2;
		}
	}
	if (!cpu_has(f)) {
		fprintf(stderr, "mmap_sync_crash: the CPU has no %s\n", flush_names[f]);
		return 1;
	}
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return die("open");
	if (ftruncate(fd, size) || fsync(fd))
		return die("ftruncate");
	snprintf(dir, sizeof(dir), "%s", path);
	dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
	if (dfd < 0 || fsync(dfd))
		return die("fsync of the directory");
	close(dfd);
	aligned = map_at(fd, 0);
	if (aligned == MAP_FAILED && (errno == ENODEV || errno == EOPNOTSUPP)) {
		printf("SKIP: cannot map with MAP_SHARED_VALIDATE|MAP_SYNC: %s\n", strerror(errno));
		return 4;
	}
	if (aligned == MAP_FAILED)
		return die("mmap (aligned)");
	unaligned = map_at(fd, PAGE);
	if (unaligned == MAP_FAILED)
		return die("mmap (unaligned)");
	printf("READY %s, %zu pages, flush with %s%s\n", path, pages, flush_names[f],
	       plain ? ", plain MAP_SHARED (negative control)" : "");
	fflush(stdout);

	for (size_t n = 0; n < pages; n++) {
		uint32_t p = seq_page[n];
		uint64_t *dst = (page_pmd[p] ? aligned : unaligned) + p * (PAGE / 8);
		bool chunk_start = page_pmd[p] && p % PAGES_PER_PMD == 0;

		if (chunk_start)
			chunk_faults = minor_faults();
		for (unsigned int i = 0; i < PAGE / 8; i++)
			dst[i] = word(p, n, i);
		flush_range(f, dst, PAGE);
		printf("ACK %zu\n", n);
		if (page_pmd[p] && p % PAGES_PER_PMD == PAGES_PER_PMD - 1) {
			long faults = minor_faults() - chunk_faults;

			printf("# 2 MiB chunk at %#lx: %ld fault%s%s\n", (p + 1 - PAGES_PER_PMD) * PAGE,
			       faults, faults == 1 ? "" : "s", faults == 1 ? " (PMD-mapped)" : "");
		}
		fflush(stdout);
	}
	printf("DONE: every page stored\n");
	fflush(stdout);
	for (;;)
		pause();
}

/* What word @w at word @i of page @p is, in words. */
static void describe(char *out, size_t len, uint64_t w)
{
	if (!w)
		snprintf(out, len, "zero");
	else if ((w >> 56) == (0x80 | (seed & 0x7f)))
		snprintf(out, len, "%#018llx (page %llu, sequence number %llu, word %llu)",
			 (unsigned long long)w, (unsigned long long)(w >> 9 & 0x7fffff),
			 (unsigned long long)(w >> 32 & 0xffffff), (unsigned long long)(w & 511));
	else
		snprintf(out, len, "%#018llx (not this run's pattern)", (unsigned long long)w);
}

static int do_verify(const char *path, long acked)
{
	static uint64_t buf[PAGE / 8];
	size_t intact = 0, acked_pmd = 0, whole = 0, partial = 0, zero = 0, bad = 0;
	struct stat st;
	uint64_t *map;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return die("open");
	if (fstat(fd, &st))
		return die("fstat");
	if ((size_t)st.st_size != size) {
		fprintf(stderr, "mmap_sync_crash: %s has size %lld, expected %zu\n", path,
			(long long)st.st_size, size);
		return 1;
	}
	map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return die("mmap");
	for (size_t p = 0; p < pages; p++) {
		uint32_t n = page_seq[p];
		size_t stored = 0, zeros = 0;
		bool must = (long)n <= acked;

		if (pread(fd, buf, PAGE, p * PAGE) != (ssize_t)PAGE)
			return die("pread");
		if (memcmp(buf, map + p * (PAGE / 8), PAGE)) {
			fprintf(stderr, "mmap_sync_crash: page %zu reads differently through read(2) "
				"and a mapping\n", p);
			bad++;
		}
		for (unsigned int i = 0; i < PAGE / 8; i++) {
			char exp[128], got[128];

			if (buf[i] == word(p, n, i)) {
				stored++;
				continue;
			}
			if (!buf[i] && !must) {
				zeros++;
				continue;
			}
			describe(exp, sizeof(exp), word(p, n, i));
			describe(got, sizeof(got), buf[i]);
			if (bad++ < 10)
				fprintf(stderr, "mmap_sync_crash: page %zu (offset %#zx, %s, sequence "
					"number %u, %s) word %u: expected %s, found %s\n", p,
					p * PAGE, page_pmd[p] ? "2 MiB chunk" : "single",
					n, must ? "acknowledged" : "not acknowledged", i, exp, got);
			break;
		}
		if (must && stored == PAGE / 8) {
			intact++;
			acked_pmd += page_pmd[p];
		} else if (!must && stored == PAGE / 8) {
			whole++;
		} else if (!must && zeros == PAGE / 8) {
			zero++;
		} else if (!must && stored + zeros == PAGE / 8) {
			partial++;
		}
	}
	munmap(map, size);
	close(fd);
	printf("state: %zu acknowledged pages intact (%zu in 2 MiB chunks); after the last "
	       "acknowledgement %zu stored, %zu partly stored, %zu zero; %zu bad\n", intact,
	       acked_pmd, whole, partial, zero, bad);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	bool run = argc >= 5 && argc <= 7 && !strcmp(argv[1], "run");
	bool verify = argc == 6 && !strcmp(argv[1], "verify");

	if (!run && !verify) {
		fprintf(stderr, "usage: mmap_sync_crash run FILE SIZE_MB SEED [clwb|clflushopt|clflush|best [plain]]\n"
				"       mmap_sync_crash verify FILE SIZE_MB SEED ACKED\n");
		return 2;
	}
	size = strtoull(argv[3], NULL, 0) << 20;
	seed = strtoull(argv[4], NULL, 0);
	if (!size || size % PMD) {
		fprintf(stderr, "mmap_sync_crash: SIZE_MB must be a positive multiple of 2\n");
		return 2;
	}
	pages = size / PAGE;
	if (make_sequence())
		return die("calloc");
	if (run) {
		plain = argc == 7 && !strcmp(argv[6], "plain");
		if (argc == 7 && !plain)
			return 2;
		return do_run(argv[2], argc >= 6 && strcmp(argv[5], "best") ? argv[5] : NULL);
	}
	return do_verify(argv[2], strtol(argv[5], NULL, 0));
}
