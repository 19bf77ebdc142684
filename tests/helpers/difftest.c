// SPDX-License-Identifier: GPL-2.0
/*
 * difftest: a differential, fsx-style tester of oxdax against xfs and ext4.
 *
 * One seeded sequence of operations runs on oxdax (/dev/oxpmem0), on xfs
 * -o dax=always with reflink and rmapbt (/dev/oxpmem1) and on ext4 -o dax
 * (/dev/oxpmem2), each formatted and mounted here, in one guest. After
 * every step the filesystems' answers are compared with each other and
 * with an in-memory model of every file (a third oracle: a bug that two
 * filesystems share still differs from the model). The first difference
 * ends the run: it prints the step, the last operations (enough to
 * reproduce it), what each filesystem and the model answered, and a
 * command line that reproduces it, and exits 1.
 *
 *   difftest [--seed S] [--ops N] [--files K] [--procs P] [--no-CLASS]...
 *
 * (difftest --help has every option; Documentation/oxdax/testing.rst has
 * the method.) The sequence is a function of the seed and the options
 * only: every operation is chosen from the model, never from what a
 * filesystem answered, so --ops M with the same seed runs the same first
 * M steps. --log FILE writes every operation as a line that --replay FILE
 * runs again (in one process), after any editing that keeps the lines
 * self-consistent: a replayed log is how a reproducer is cut down.
 *
 * Operations (on a few files, so that they interact): read, write past
 * EOF too, truncate to unaligned sizes, fallocate in every mode the
 * filesystems accept, FICLONE/FICLONERANGE (within one file too) and
 * copy_file_range, MAP_SHARED and MAP_PRIVATE mappings (4 KiB and 2 MiB
 * aligned ones) that stay mapped across everything else and are stored
 * to and loaded from, mremap and partial munmap of them, fork with a child
 * storing through inherited mappings, msync/fsync/fdatasync/syncfs,
 * O_DIRECT and buffered I/O whose buffer is itself a mapping, pages of a
 * mapping pinned in a pipe (vmsplice) across truncate, fallocate and
 * reflink, io_uring buffer registration from a mapping, SEEK_DATA/
 * SEEK_HOLE, and unmount/mount. --procs P runs P worker processes, each on
 * its own files, plus files shared by all that are only changed in
 * phases the driver serializes, so the results stay deterministic.
 *
 * Comparisons: every return value and errno; the size of every file the
 * step touched; its bytes around the touched range through read(2) (and
 * every byte of every file every --check-every steps); every byte of every
 * live mapping that lies below EOF, through the mapping, over the touched
 * range (all of it every --check-every steps); SIGBUS exactly from the
 * page past the EOF page on; and the holes SEEK_HOLE and FIEMAP report,
 * which must read as zeros, with every fully punched block among them.
 * What is not compared, and why, is in the table known[] below.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/futex.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "oxdax_test.h"

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif
#ifndef STATX_ATTR_DAX
#define STATX_ATTR_DAX 0x00200000
#endif

#define PAGE 4096ull
#define PMD (2ull << 20)
#define MIB (1ull << 20)
#define MAX_FS 3
#define MAX_FILES 24
#define MAX_PROCS 8
#define MAX_MAPS 8
#define MAX_TOUCH 16
#define FORK_STORES 4
#define RING 128	/* operations remembered for a report */
#define RING_SHOW 30	/* ... and shown in it */
#define LINE 360
/* The longest mapping: 2 MiB-aligned ones are 2 to 4 MiB, grown by mremap. */
#define MAX_MAP_LEN (5 * MIB)

static uint64_t round_down(uint64_t x, uint64_t a)
{
	return x / a * a;
}

static uint64_t round_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t max64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ */
/* Operation classes (--no-CLASS, --only)                              */

enum {
	CL_READ, CL_WRITE, CL_TRUNCATE, CL_FALLOC, CL_PUNCH, CL_ZERO, CL_CLONE, CL_COPY,
	CL_MMAP, CL_PRIVATE, CL_HUGE, CL_MREMAP, CL_GROW, CL_TAIL, CL_FORK, CL_SYNC, CL_DIRECT,
	CL_MAPBUF, CL_PINS, CL_URING, CL_SEEK, CL_FIEMAP, CL_REMOUNT, NR_CLASSES
};

static const char *const class_names[NR_CLASSES] = {
	"read", "write", "truncate", "falloc", "punch", "zero", "clone", "copy",
	"mmap", "private", "huge", "mremap", "mremap-grow", "tail", "fork", "sync", "direct",
	"mapbuf", "pins", "uring", "seek", "fiemap", "remount",
};

static const char *const class_help[NR_CLASSES] = {
	"pread, preadv, read",
	"pwrite, pwritev, write, O_APPEND write (past EOF too)",
	"ftruncate up and down",
	"fallocate: allocate, KEEP_SIZE",
	"fallocate: PUNCH_HOLE|KEEP_SIZE",
	"fallocate: ZERO_RANGE with and without KEEP_SIZE",
	"FICLONE, FICLONERANGE (within one file too)",
	"copy_file_range",
	"mappings: map, unmap, store, load (MAP_SHARED)",
	"MAP_PRIVATE mappings",
	"2 MiB-aligned mappings of 2 MiB and more",
	"mremap: shrink, grow, move",
	"mremap growth (in place where there is room, else a move)",
	"stores through MAP_SHARED past EOF in the EOF page",
	"fork, the child storing through inherited mappings",
	"fsync, fdatasync, msync, syncfs",
	"O_DIRECT read and write",
	"read/write whose buffer is a mapping",
	"pages of a mapping pinned in a pipe across truncate, fallocate, reflink",
	"io_uring buffer registration from a mapping",
	"SEEK_DATA/SEEK_HOLE operations and checks",
	"FIEMAP checks",
	"unmount and mount again",
};

/* ------------------------------------------------------------------ */
/* What is not compared, and why                                       */

/*
 * Where the filesystems legitimately differ, or where xfs or ext4 has a
 * known bug, the tester does not match them; each entry says what is
 * left out. The code that applies one names it. (difftest --known)
 */
enum {
	KNOWN_EXT4_REFLINK,
	KNOWN_ALLOC_GRANULARITY,
	KNOWN_SEEK_DATA,
	KNOWN_FIEMAP_EXTENTS,
	KNOWN_COPY_SHORT,
	KNOWN_EOF_TAIL,
	KNOWN_PRIVATE_TAIL,
	KNOWN_BLOCKS_TIMES,
	KNOWN_PIN_WAIT,
	KNOWN_NO_DIRECT,
	KNOWN_EXT4_TAIL,
	KNOWN_XFS_COWEXTSIZE,
	KNOWN_EXT4_STALE_ZERO,
	KNOWN_XFS_COW_SELF_BUFFER,
	NR_KNOWN
};

static const struct known {
	const char *fs, *what, *why;
} known[NR_KNOWN] = {
	[KNOWN_EXT4_REFLINK] = { "ext4",
		"FICLONE and FICLONERANGE are EOPNOTSUPP",
		"ext4 has no reflink; where the model says a clone succeeds, ext4 gets the "
		"same bytes by copy_file_range so that its files stay comparable, and its "
		"answer to the clone itself is not compared" },
	[KNOWN_ALLOC_GRANULARITY] = { "all",
		"which blocks are allocated (data) and which are holes, except blocks "
		"punched whole since anything last wrote their 2 MiB",
		"allocation granularity differs: oxdax gives 2 MiB chunks to 2 MiB "
		"faults and requests, xfs and ext4 may preallocate; so a punched block "
		"must be a hole only while nothing stored, wrote, allocated, cloned or "
		"copied into its 2 MiB-aligned neighbourhood since" },
	[KNOWN_SEEK_DATA] = { "all",
		"SEEK_DATA/SEEK_HOLE results between filesystems",
		"unwritten extents, zero pages and allocation granularity make a range "
		"data on one filesystem and a hole on another; compared instead: a hole "
		"must read as zeros, punched blocks (as above) must be holes, results "
		"lie in [offset, size], ENXIO exactly at and past EOF" },
	[KNOWN_FIEMAP_EXTENTS] = { "all",
		"FIEMAP extents between filesystems",
		"extent boundaries, merging, SHARED and UNWRITTEN flags are layout; "
		"compared instead: holes and unwritten extents below EOF read as "
		"zeros, punched blocks (as above) are in no extent" },
	[KNOWN_COPY_SHORT] = { "all",
		"the count each copy_file_range call returns",
		"xfs and oxdax clone the block-aligned part and copy the rest, ext4 "
		"splices: a call may return less than asked; the loop's total and the "
		"bytes are compared" },
	[KNOWN_EOF_TAIL] = { "all",
		"bytes past EOF in the EOF page, read through a mapping",
		"a store through MAP_SHARED there is allowed and what later loads see "
		"is not specified; but once the file grows over them (truncate up, "
		"write past EOF, fallocate, clone or copy) they must read as zeros, "
		"as on xfs, and that is compared" },
	[KNOWN_PRIVATE_TAIL] = { "all",
		"bytes of a MAP_PRIVATE copy that lay past EOF when the page was copied",
		"the copy takes whatever the EOF page held past EOF (see above); bytes "
		"this process stored into the copy are compared" },
	[KNOWN_BLOCKS_TIMES] = { "all",
		"st_blocks, timestamps, inode numbers, statfs",
		"layout and clocks, not file content" },
	[KNOWN_PIN_WAIT] = { "all",
		"whether an operation waited for a pinned page",
		"only the outcome is compared: the page drained from the pipe holds "
		"what it held when pinned, and the operation completes once the pin is "
		"released; pins are only combined with operations that do not write "
		"the pinned page without waiting (write, copy_file_range, and ext4's "
		"copy standing in for a clone never wait)" },
	[KNOWN_NO_DIRECT] = { "any",
		"O_DIRECT on a filesystem whose open(O_DIRECT) fails",
		"DAX has no page cache to bypass; a filesystem that refuses O_DIRECT "
		"(said at start) gets the same operations without it" },
	[KNOWN_EXT4_TAIL] = { "ext4",
		"stores through MAP_SHARED past EOF in the EOF page",
		"a known ext4 -o dax bug (6.12): a write or copy_file_range that extends "
		"the file does not zero its old EOF block past the old EOF, so bytes a "
		"mapping stored there become file content (truncate up and fallocate "
		"zero them; xfs zeroes them always, and so must oxdax); such stores are "
		"made on the other filesystems only" },
	[KNOWN_XFS_COWEXTSIZE] = { "xfs",
		"xfs's copy-on-write preallocation",
		"a write to shared blocks preallocates copy-on-write blocks in runs of "
		"cowextsize (32 blocks by default), which SEEK_DATA then reports as data "
		"over holes the file was punched to; difftest gives the xfs root "
		"directory (so every file) a cowextsize of one block" },
	[KNOWN_EXT4_STALE_ZERO] = { "ext4",
		"a mapping's zero page over a preallocated block that write(2) fills",
		"a known ext4 -o dax bug (6.12): when a write or copy_file_range "
		"converts an unwritten extent by zeroing it out (a short write into a "
		"split extent), ext4 does not report the block new and leaves the zero "
		"page mapped, so loads keep reading zeros; difftest drops ext4's page "
		"table entries over the written range (MADV_DONTNEED, pages that are "
		"not private copies) before it compares" },
	[KNOWN_XFS_COW_SELF_BUFFER] = { "xfs",
		"a write into a shared block from a buffer mapping that same block",
		"xfs -o dax=always (6.12) stores wrong bytes when a write(2) or "
		"O_DIRECT write to a reflinked block takes its bytes from a mapping of "
		"the same page of the same file (other bytes of it): fs/dax.c's "
		"dax_iomap_iter invalidates the page and copies the head and tail into "
		"the new copy-on-write block before it copies from the buffer, whose "
		"fault re-enters xfs mid-copy; the 1,000,000-operation run met it at "
		"seed 1022, step 396 (61 bytes of zeros and other data where oxdax, "
		"ext4 and the model have the buffer's bytes). Such writes are not made" },
};

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

static struct config {
	uint64_t seed, ops;
	unsigned int files;	/* per worker */
	unsigned int shared;	/* files shared by all workers (--procs > 1) */
	unsigned int procs;
	unsigned int check_every;
	unsigned int round_ops;	/* operations per worker between serialized phases */
	unsigned int serial_ops;	/* serialized operations per round */
	uint64_t max_size;
	bool enabled[NR_CLASSES];
	bool setup, fsck, quiet, keep;
	const char *log_path, *replay_path;
	char *dirs[MAX_FS];	/* --dir NAME=PATH: no mkfs, no mount */
	const char *fs_list;
	const char *oxdax_opts;	/* mount options of oxdax (fault_engine=iomap) */
} cfg = {
	.ops = 0,	/* 0: 10000, or a whole --replay log */
	.files = 4,
	.shared = 2,
	.procs = 1,
	.check_every = 300,
	.round_ops = 16,
	.serial_ops = 4,
	.max_size = 8 * MIB,
	.setup = true,
	.fsck = true,
	.fs_list = "oxdax,xfs,ext4",
};

static int saved_argc;
static char **saved_argv;

static bool en(int c)
{
	return cfg.enabled[c];
}

/* Files: each worker's own ones, then the shared ones. */
static unsigned int nfiles;

static int file_owner(int f)
{
	if (cfg.procs == 1)
		return 0;
	return f < (int)(cfg.procs * cfg.files) ? f / (int)cfg.files : -1;
}

static const char *fname(int f)
{
	static char names[MAX_FILES][8];

	snprintf(names[f], sizeof(names[f]), "%s%d", file_owner(f) < 0 ? "s" : "f", f);
	return names[f];
}

/* ------------------------------------------------------------------ */
/* Filesystems                                                         */

static const struct fs_kind {
	const char *name, *dev, *type, *opts, *mkfs, *fsck;
} fs_kinds[] = {
	{ "oxdax", "/dev/oxpmem0", "oxdax", NULL, "mkfs.oxdax -f %s", "fsck.oxdax %s" },
	{ "xfs", "/dev/oxpmem1", "xfs", "dax=always", "mkfs.xfs -f -q -m reflink=1,rmapbt=1 %s",
	  "xfs_repair -n %s" },
	{ "ext4", "/dev/oxpmem2", "ext4", "dax", "mkfs.ext4 -F -q %s", "e2fsck -fn %s" },
};

static struct fs {
	char name[32];
	const struct fs_kind *kind;	/* NULL: a --dir */
	char dev[128], mnt[256];
	bool clone;		/* FICLONE works (else KNOWN_EXT4_REFLINK) */
	bool direct;		/* open(O_DIRECT) works (else KNOWN_NO_DIRECT) */
	bool no_tail;		/* gets no stores past EOF (KNOWN_EXT4_TAIL) */
	bool stale_zero;	/* KNOWN_EXT4_STALE_ZERO */
	int fd[MAX_FILES];
	int dfd[MAX_FILES];	/* O_DIRECT, or fd */
} fss[MAX_FS];
static int nfs;

/* fallocate modes by K_FALLOC sub-operation; which ones every filesystem takes. */
static const int falloc_modes[] = {
	0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
	FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
};
#define NR_FALLOC 5
static bool falloc_ok[NR_FALLOC];
static bool map_sync_ok = true;	/* every filesystem takes MAP_SYNC */
static bool fiemap_ok[MAX_FS];
static const int falloc_class[NR_FALLOC] = { CL_FALLOC, CL_FALLOC, CL_PUNCH, CL_ZERO, CL_ZERO };

/* ------------------------------------------------------------------ */
/* Operations                                                          */

enum {
	K_READ, K_WRITE, K_TRUNCATE, K_FALLOC, K_CLONE, K_COPY, K_MAP, K_UNMAP, K_MREMAP,
	K_MSTORE, K_MLOAD, K_FORK, K_SYNC, K_DIO, K_URING, K_SEEK, K_REMOUNT, NR_KINDS
};

static const char *const kind_names[NR_KINDS] = {
	"read", "write", "truncate", "falloc", "clone", "copy", "map", "unmap", "mremap",
	"mstore", "mload", "fork", "sync", "dio", "uring", "seek", "remount",
};

#define MAX_SUBS 6
static const char *const sub_names[NR_KINDS][MAX_SUBS] = {
	[K_READ] = { "pread", "preadv", "read" },
	[K_WRITE] = { "pwrite", "pwritev", "write", "append" },
	[K_TRUNCATE] = { "-" },
	[K_FALLOC] = { "alloc", "keep", "punch", "zero", "zerokeep" },
	[K_CLONE] = { "ficlone", "range" },
	[K_COPY] = { "-" },
	[K_MAP] = { "-" },
	[K_UNMAP] = { "whole", "head", "tail" },
	[K_MREMAP] = { "shrink", "grow", "move" },
	[K_MSTORE] = { "-" },
	[K_MLOAD] = { "-" },
	[K_FORK] = { "-" },
	[K_SYNC] = { "fsync", "fdatasync", "msync", "msync_async", "syncfs" },
	[K_DIO] = { "read", "write" },
	[K_URING] = { "register" },
	[K_SEEK] = { "data", "hole" },
	[K_REMOUNT] = { "-" },
};

/* How often each kind is chosen (per mille, among the enabled ones). */
static const unsigned int kind_weight[NR_KINDS] = {
	[K_READ] = 60, [K_WRITE] = 130, [K_TRUNCATE] = 40, [K_FALLOC] = 90,
	[K_CLONE] = 40, [K_COPY] = 40, [K_MAP] = 45, [K_UNMAP] = 25, [K_MREMAP] = 20,
	[K_MSTORE] = 180, [K_MLOAD] = 50, [K_FORK] = 8, [K_SYNC] = 30, [K_DIO] = 60,
	[K_URING] = 4, [K_SEEK] = 25, [K_REMOUNT] = 1,
};

/* Op flags. */
#define F_DIRECT 1u	/* K_DIO: the O_DIRECT descriptor */
#define F_MAPBUF 2u	/* K_DIO: the buffer is mapping op->map at op->off2 */
/* Mapping flags (K_MAP's op->flags, struct mapping's flags). */
#define M_PRIVATE 0x10u
#define M_HUGE 0x20u		/* at a 2 MiB-aligned address */
#define M_MISALIGN 0x40u	/* ... plus one page: never PMD-mapped */
#define M_SYNC 0x80u		/* MAP_SHARED_VALIDATE | MAP_SYNC */
#define M_POPULATE 0x100u

struct op {
	uint64_t step;
	int worker, kind, sub;
	int f, g;		/* file (the destination), second file (the source) */
	uint64_t off, off2, len;
	int map;		/* mapping id, 0: none */
	unsigned int flags;
	int pin_map;		/* pinned page: mapping id (0: no pin) ... */
	uint64_t pin_off;	/* ... and its offset in the mapping */
	int nst;		/* K_FORK: the child's stores */
	struct {
		int map;
		uint64_t off, len;
	} st[FORK_STORES];
};

/* Data written by an operation: 8-byte words that name the step, how it
 * was written (a tag) and the file offset it was written at, so that a
 * report can say what it found instead (zeros, older data, data of another
 * offset). Bytes at file offset o are byte o % 8 of the word of o & ~7. */
#define MAGIC 0xd7ull
enum {
	TAG_WRITE = 1,		/* write(2), O_DIRECT, copy through a heap buffer */
	TAG_MAP = 2,		/* store through MAP_SHARED */
	TAG_PRIV = 3,		/* store through MAP_PRIVATE (never file content) */
	TAG_FORK = 4,		/* 4..7: a fork child's MAP_SHARED stores */
	TAG_FORK_PRIV = 8,	/* 8..11: its MAP_PRIVATE stores */
};

static uint64_t pat_word(uint64_t step, unsigned int tag, uint64_t off)
{
	return MAGIC << 56 | (uint64_t)(tag & 0xff) << 48 | (step & 0xffffff) << 24 |
	       ((off >> 3) & 0xffffff);
}

static void pat_fill(unsigned char *dst, uint64_t len, uint64_t off, uint64_t step,
		     unsigned int tag)
{
	uint64_t i = 0;

	for (; i < len && ((off + i) & 7); i++)
		dst[i] = pat_word(step, tag, off + i) >> (8 * ((off + i) & 7));
	for (; i + 8 <= len; i += 8) {
		uint64_t v = pat_word(step, tag, off + i);

		memcpy(dst + i, &v, 8);
	}
	for (; i < len; i++)
		dst[i] = pat_word(step, tag, off + i) >> (8 * ((off + i) & 7));
}

static const char *tag_name(unsigned int tag)
{
	switch (tag) {
	case TAG_WRITE:
		return "write";
	case TAG_MAP:
		return "MAP_SHARED store";
	case TAG_PRIV:
		return "MAP_PRIVATE store";
	case TAG_FORK ... TAG_FORK + 3:
		return "fork child's MAP_SHARED store";
	case TAG_FORK_PRIV ... TAG_FORK_PRIV + 3:
		return "fork child's MAP_PRIVATE store";
	}
	return "?";
}

/*
 * What the 8 bytes at @buf[@pos] are, in words (@buf holds @len bytes).
 * Copied data may sit off its words' alignment: the word is found by its
 * magic top byte among the bytes around @pos.
 */
static void describe(char *out, size_t n, const unsigned char *buf, uint64_t len, uint64_t pos)
{
	uint64_t w = 0;

	memcpy(&w, buf + pos, min64(8, len - pos));
	if (!w) {
		snprintf(out, n, "zeros");
		return;
	}
	for (uint64_t k = pos; k < pos + 16 && k < len; k++) {
		uint64_t v;
		unsigned int tag;

		if (buf[k] != MAGIC || k < 7)
			continue;
		memcpy(&v, buf + k - 7, 8);
		tag = v >> 48 & 0xff;
		if (tag < TAG_WRITE || tag > TAG_FORK_PRIV + 3)
			continue;
		snprintf(out, n, "%016llx: step %llu's %s of offset %#llx%s",
			 (unsigned long long)w, (unsigned long long)(v >> 24 & 0xffffff),
			 tag_name(tag), (unsigned long long)((v & 0xffffff) * 8),
			 k - 7 != pos ? " (not at its offset: copied)" : "");
		return;
	}
	snprintf(out, n, "%016llx: not written by this run", (unsigned long long)w);
}

/* ------------------------------------------------------------------ */
/* Random numbers                                                      */

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

/* A signed offset of up to @span either way. */
static int64_t jitter(uint64_t *s, uint64_t span)
{
	return (int64_t)below(s, 2 * span + 1) - (int64_t)span;
}

/* ------------------------------------------------------------------ */
/* The model and the state shared between processes                    */

/*
 * The model: every file's bytes and size (bytes past the size are always
 * zero in the model), and per 4 KiB block whether it was punched whole
 * and must still be a hole (KNOWN_ALLOC_GRANULARITY). In memory shared by
 * the driver and the workers.
 */
struct fmodel {
	uint64_t size;
	/* The smallest size since worker w last dropped its MAP_PRIVATE
	 * copies past it (a truncation discards them, see apply_truncations). */
	uint64_t trunc_min[MAX_PROCS];
};

struct ring_entry {
	uint64_t step;
	char text[LINE];
};

struct barrier {
	atomic_uint arrived;
	atomic_uint gen;
	unsigned int n;
};

/* Commands from the driver to the workers (--procs > 1). */
enum { CMD_OWN, CMD_SERIAL, CMD_CHECK_SHARED, CMD_FULL, CMD_DROP, CMD_REOPEN, CMD_EXIT };

static struct shared {
	atomic_int abort;
	struct barrier bar;
	int cmd, cmd_worker;
	uint64_t cmd_step;
	atomic_uint ring_next;
	struct ring_entry ring[RING];
	struct fmodel fm[MAX_FILES];
	atomic_ulong count[NR_KINDS];
	atomic_ulong checks, bytes_checked, pins, forks, sigbus;
	atomic_ulong us[NR_KINDS], check_us, full_us;	/* time spent */
	atomic_ulong fs_us[NR_KINDS][MAX_FS];	/* ... in system calls and stores, by filesystem */
	atomic_ullong last_step;
} *sh;

static unsigned char *mdata[MAX_FILES];	/* model bytes, msize each */
static uint8_t *mhole[MAX_FILES];	/* per block: punched, must be a hole */
static uint64_t msize;

static struct fmodel *fm(int f)
{
	return &sh->fm[f];
}

static void *shared_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("difftest: mmap");
		exit(2);
	}
	return p;
}

static void *xalloc(size_t len)
{
	/* Large scratch buffers: pages are only used when touched. */
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED) {
		perror("difftest: mmap");
		exit(2);
	}
	return p;
}

/* Blocks fully inside [lo, hi) were punched: they must be holes now. */
static void hole_set(int f, uint64_t lo, uint64_t hi)
{
	for (uint64_t b = round_up(lo, PAGE) / PAGE; (b + 1) * PAGE <= hi && b < msize / PAGE; b++)
		mhole[f][b] = 1;
}

/*
 * Something may have allocated in [lo, hi): the punched blocks of its
 * 2 MiB-aligned neighbourhood may be data again (KNOWN_ALLOC_GRANULARITY).
 */
static void hole_clear(int f, uint64_t lo, uint64_t hi)
{
	uint64_t a, b;

	if (hi <= lo)
		return;
	a = round_down(lo, PMD) / PAGE;
	b = min64(round_up(hi, PMD), msize) / PAGE;
	if (a < b)
		memset(mhole[f] + a, 0, b - a);
}

/*
 * A load or store through a mapping: on a page cache filesystem (--dir) a
 * fault allocates the page even for a load; DAX maps a hole's zero page.
 */
static void mapped_access(int f, uint64_t lo, uint64_t hi)
{
	if (!cfg.setup)
		hole_clear(f, lo, hi);
}

/* The model after data of @len bytes landed at @off of file @f. */
static void model_write(int f, uint64_t off, const unsigned char *data, uint64_t len)
{
	memcpy(mdata[f] + off, data, len);
	if (off + len > fm(f)->size)
		fm(f)->size = off + len;
}

static void model_resize(int f, uint64_t size)
{
	uint64_t old = fm(f)->size;

	if (size < old)
		memset(mdata[f] + size, 0, old - size);
	fm(f)->size = size;
}

/* A truncation: MAP_PRIVATE copies of pages past the new EOF page go. */
static void model_truncate(int f, uint64_t size)
{
	model_resize(f, size);
	for (unsigned int w = 0; w < cfg.procs; w++)
		fm(f)->trunc_min[w] = min64(fm(f)->trunc_min[w], size);
}

/* ------------------------------------------------------------------ */
/* Guarded access to mappings                                          */

/* volatile: set around accesses that only the signal handler sees */
static __thread sigjmp_buf * volatile guard;
static __thread void *volatile fault_addr;
static __thread volatile int fault_sig;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (!guard) {
		/* Not ours: die of it. */
		signal(sig, SIG_DFL);
		return;
	}
	fault_sig = sig;
	fault_addr = si->si_addr;
	siglongjmp(*guard, 1);
}

/*
 * memcpy() that survives SIGBUS and SIGSEGV: returns 0, or the signal and
 * in *@at the offset (from @base) of the address it was raised for.
 */
static int guarded_copy(void *dst, const void *src, size_t len, const void *base, uint64_t *at)
{
	sigjmp_buf jb;

	if (sigsetjmp(jb, 1)) {
		guard = NULL;
		*at = (const unsigned char *)fault_addr - (const unsigned char *)base;
		return fault_sig;
	}
	guard = &jb;
	memcpy(dst, src, len);
	guard = NULL;
	return 0;
}

/* One load (@store false) or store of a byte; returns 0 or the signal. */
static int guarded_touch(volatile unsigned char *p, bool store)
{
	sigjmp_buf jb;

	if (sigsetjmp(jb, 1)) {
		guard = NULL;
		return fault_sig;
	}
	guard = &jb;
	if (store)
		*p = 0x5a;
	else
		(void)*p;
	guard = NULL;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Workers and their mappings                                          */

/*
 * A mapping of one file on every filesystem. MAP_PRIVATE ones also hold
 * the model of their copied pages: a page is the file's until this
 * process stores to it, then its own (copied[]), of which the bytes that
 * lay below EOF when it was copied, or were stored since, are known.
 */
struct mapping {
	int id;			/* 0: a free slot */
	int file;
	unsigned int flags;
	uint64_t off, len;
	unsigned char *addr[MAX_FS];
	unsigned char *priv;
	uint8_t *known;
	uint8_t *copied;	/* per page */
};

struct touch {
	int file, map;		/* a file's range, or (map) a mapping's */
	uint64_t lo, hi;
};

struct worker {
	int id;
	bool serial;		/* in a serialized phase: may change shared files */
	uint64_t rng;
	int next_map;
	struct mapping maps[MAX_MAPS];
	unsigned char *wbuf;	/* data an operation writes */
	unsigned char *rbuf[MAX_FS];
	unsigned char *exp;	/* expected bytes ... */
	uint8_t *mask;		/* ... and which of them are compared */
	unsigned char *pin_exp, *pin_got[MAX_FS];
	uint8_t *pin_mask;
	uint64_t copy_want;	/* K_COPY: the total the model expects */
	int ring_fd;		/* io_uring, -1: none */
	int ntouch;
	struct touch touch[MAX_TOUCH];
	const struct op *op;	/* the operation being run, for reports */
};

static struct worker *self;	/* this process's worker */
static bool in_worker_process;	/* a forked worker (--procs > 1) */
static int log_fd = -1;

static struct mapping *find_map(struct worker *w, int id)
{
	if (!id)
		return NULL;
	for (int i = 0; i < MAX_MAPS; i++)
		if (w->maps[i].id == id)
			return &w->maps[i];
	return NULL;
}

static int live_maps(struct worker *w)
{
	int n = 0;

	for (int i = 0; i < MAX_MAPS; i++)
		n += w->maps[i].id != 0;
	return n;
}

static void map_free_model(struct mapping *m)
{
	free(m->priv);
	free(m->known);
	free(m->copied);
	m->priv = NULL;
	m->known = NULL;
	m->copied = NULL;
}

/* Resizes a private mapping's model to @len bytes (new pages not copied). */
static void map_resize_model(struct mapping *m, uint64_t len)
{
	if (!(m->flags & M_PRIVATE))
		return;
	m->priv = realloc(m->priv, len);
	m->known = realloc(m->known, len);
	m->copied = realloc(m->copied, len / PAGE);
	if (!m->priv || !m->known || !m->copied) {
		perror("difftest: realloc");
		exit(2);
	}
	if (len > m->len)
		memset(m->copied + m->len / PAGE, 0, (len - m->len) / PAGE);
}

/* Unmaps every mapping (before an unmount, at the end). */
static void drop_maps(struct worker *w)
{
	for (int i = 0; i < MAX_MAPS; i++) {
		struct mapping *m = &w->maps[i];

		if (!m->id)
			continue;
		for (int j = 0; j < nfs; j++)
			munmap(m->addr[j], m->len);
		map_free_model(m);
		m->id = 0;
	}
}

/*
 * Truncation discards MAP_PRIVATE copies of pages from the new EOF page
 * on (unmap_mapping_range(..., even_cows = 1) in truncate_pagecache());
 * copies below it survive, and so do copies across hole punching, zeroing
 * and reflink (those unmap without even_cows). Applied lazily: another
 * worker may have truncated a shared file.
 */
static void apply_truncations(struct worker *w)
{
	for (unsigned int f = 0; f < nfiles; f++) {
		uint64_t t = fm(f)->trunc_min[w->id], from;

		if (t == UINT64_MAX)
			continue;
		fm(f)->trunc_min[w->id] = UINT64_MAX;
		from = round_up(t, PAGE);
		for (int i = 0; i < MAX_MAPS; i++) {
			struct mapping *m = &w->maps[i];

			if (!m->id || m->file != (int)f || !(m->flags & M_PRIVATE))
				continue;
			for (uint64_t p = 0; p < m->len / PAGE; p++)
				if (m->off + p * PAGE >= from)
					m->copied[p] = 0;
		}
	}
}

/* May worker @w change file @f now? Its own files; shared ones in serialized phases. */
static bool may_change(const struct worker *w, int f)
{
	int o = file_owner(f);

	return o == w->id || (o < 0 && w->serial);
}

/* Stores through @m change nothing but this process's copy, or a file it may change. */
static bool may_store(const struct worker *w, const struct mapping *m)
{
	return (m->flags & M_PRIVATE) || may_change(w, m->file);
}

/* ------------------------------------------------------------------ */
/* Operation lines: the log, the ring of recent ones, --replay         */

static const char *sub_name(int kind, int sub)
{
	static char num[4][16];
	static int next;
	char *b;

	if (sub >= 0 && sub < MAX_SUBS && sub_names[kind][sub])
		return sub_names[kind][sub];
	b = num[next++ % 4];
	snprintf(b, sizeof(num[0]), "%d", sub);
	return b;
}

static int op_format(const struct op *op, char *buf, size_t n)
{
	int len = snprintf(buf, n, "step=%llu w=%d op=%s.%s f=%d g=%d off=%#llx off2=%#llx "
			   "len=%#llx m=%d fl=%#x", (unsigned long long)op->step, op->worker,
			   kind_names[op->kind], sub_name(op->kind, op->sub), op->f, op->g,
			   (unsigned long long)op->off, (unsigned long long)op->off2,
			   (unsigned long long)op->len, op->map, op->flags);

	if (op->pin_map && len < (int)n)
		len += snprintf(buf + len, n - len, " pin=%d+%#llx", op->pin_map,
				(unsigned long long)op->pin_off);
	for (int k = 0; k < op->nst && len < (int)n; k++)
		len += snprintf(buf + len, n - len, "%s%d+%#llx+%#llx", k ? "," : " st=",
				op->st[k].map, (unsigned long long)op->st[k].off,
				(unsigned long long)op->st[k].len);
	return len;
}

/* Parses a line op_format() wrote; returns 0, or -1 if it is not one. */
static int op_parse(const char *line, struct op *op)
{
	char copy[LINE * 2], *save = NULL, *tok;
	bool have_step = false, have_kind = false;

	memset(op, 0, sizeof(*op));
	op->f = op->g = -1;
	snprintf(copy, sizeof(copy), "%s", line);
	for (tok = strtok_r(copy, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
		char *eq = strchr(tok, '='), *val;

		if (!eq)
			continue;
		*eq = 0;
		val = eq + 1;
		if (!strcmp(tok, "step")) {
			op->step = strtoull(val, NULL, 0);
			have_step = true;
		} else if (!strcmp(tok, "w")) {
			op->worker = strtol(val, NULL, 0);
		} else if (!strcmp(tok, "op")) {
			char *dot = strchr(val, '.');

			if (!dot)
				return -1;
			*dot = 0;
			for (int k = 0; k < NR_KINDS; k++)
				if (!strcmp(val, kind_names[k])) {
					op->kind = k;
					have_kind = true;
				}
			if (!have_kind)
				return -1;
			op->sub = -1;
			for (int s = 0; s < MAX_SUBS; s++)
				if (sub_names[op->kind][s] && !strcmp(dot + 1, sub_names[op->kind][s]))
					op->sub = s;
			if (op->sub < 0)
				op->sub = strtol(dot + 1, NULL, 0);
		} else if (!strcmp(tok, "f")) {
			op->f = strtol(val, NULL, 0);
		} else if (!strcmp(tok, "g")) {
			op->g = strtol(val, NULL, 0);
		} else if (!strcmp(tok, "off")) {
			op->off = strtoull(val, NULL, 0);
		} else if (!strcmp(tok, "off2")) {
			op->off2 = strtoull(val, NULL, 0);
		} else if (!strcmp(tok, "len")) {
			op->len = strtoull(val, NULL, 0);
		} else if (!strcmp(tok, "m")) {
			op->map = strtol(val, NULL, 0);
		} else if (!strcmp(tok, "fl")) {
			op->flags = strtoul(val, NULL, 0);
		} else if (!strcmp(tok, "pin")) {
			char *end;

			op->pin_map = strtol(val, &end, 0);
			op->pin_off = *end == '+' ? strtoull(end + 1, NULL, 0) : 0;
		} else if (!strcmp(tok, "st")) {
			for (char *p = val; *p && op->nst < FORK_STORES;) {
				char *end;

				op->st[op->nst].map = strtol(p, &end, 0);
				if (*end != '+')
					return -1;
				op->st[op->nst].off = strtoull(end + 1, &end, 0);
				if (*end != '+')
					return -1;
				op->st[op->nst].len = strtoull(end + 1, &end, 0);
				op->nst++;
				p = *end == ',' ? end + 1 : end;
			}
		}
	}
	if (!have_step || !have_kind)
		return -1;
	if ((op->f >= (int)nfiles) || (op->g >= (int)nfiles))
		return -1;
	return 0;
}

static void ring_add(const struct op *op)
{
	unsigned int i = atomic_fetch_add(&sh->ring_next, 1) % RING;
	char line[LINE];

	op_format(op, line, sizeof(line));
	sh->ring[i].step = op->step;
	memcpy(sh->ring[i].text, line, sizeof(line));
	atomic_store(&sh->last_step, op->step);
	if (log_fd >= 0) {
		size_t n = strlen(line);

		line[n] = '\n';
		/* One write(2) per line: lines of concurrent workers do not mix. */
		if (write(log_fd, line, n + 1) < 0)
			log_fd = -1;
	}
}

/* ------------------------------------------------------------------ */
/* Reports                                                             */

static char rep[1 << 17];
static size_t rep_len;

static void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...)
{
	va_list ap;
	int n;

	if (rep_len >= sizeof(rep) - 2)
		return;
	va_start(ap, fmt);
	n = vsnprintf(rep + rep_len, sizeof(rep) - rep_len - 1, fmt, ap);
	va_end(ap);
	rep_len = min64(rep_len + n, sizeof(rep) - 2);
	rep[rep_len++] = '\n';
	rep[rep_len] = 0;
}

static const char *errname(long long ret)
{
	static char buf[4][32];
	static int next;
	char *b = buf[next++ % 4];

	if (ret >= 0)
		snprintf(b, sizeof(buf[0]), "%lld", ret);
	else
		snprintf(b, sizeof(buf[0]), "%s", strerrorname_np(-ret) ?: "E?");
	return b;
}

static uint64_t diff_step;
static uint64_t full_ok_step = UINT64_MAX;	/* the last full check that passed, after this step */

static void __attribute__((format(printf, 2, 3))) diff_begin(const struct op *op,
							     const char *fmt, ...)
{
	char what[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	rep_len = 0;
	rep[0] = 0;
	diff_step = op ? op->step : atomic_load(&sh->last_step);
	say("difftest: DIFFERENCE at step %llu (seed %llu): %s", (unsigned long long)diff_step,
	    (unsigned long long)cfg.seed, what);
	if (!op && full_ok_step != UINT64_MAX)
		say("  (found by a check of everything after step %llu; the one after step %llu "
		    "found nothing: the cause lies in between)", (unsigned long long)diff_step,
		    (unsigned long long)full_ok_step);
}

static int cmp_ring(const void *a, const void *b)
{
	const struct ring_entry *x = a, *y = b;

	return x->step < y->step ? -1 : x->step > y->step;
}

static void teardown(bool check);

/* Prints the report with the last operations and how to reproduce, and ends the run. */
static void __attribute__((noreturn)) diff_end(void)
{
	static struct ring_entry copy[RING];
	unsigned int n = min64(atomic_load(&sh->ring_next), RING), first;
	char cmd[2048];
	int len;

	memcpy(copy, sh->ring, sizeof(copy));
	qsort(copy, n, sizeof(copy[0]), cmp_ring);
	first = n > RING_SHOW ? n - RING_SHOW : 0;
	say("difftest: the last %u operations (a line is what --log writes and --replay reads):",
	    n - first);
	for (unsigned int i = first; i < n; i++)
		say("  %s", copy[i].text);
	len = snprintf(cmd, sizeof(cmd), "difftest --seed %llu --ops %llu",
		       (unsigned long long)cfg.seed, (unsigned long long)diff_step + 1);
	for (int i = 1; i < saved_argc && len < (int)sizeof(cmd); i++) {
		if (!strcmp(saved_argv[i], "--seed") || !strcmp(saved_argv[i], "--ops") ||
		    !strcmp(saved_argv[i], "--replay") || !strcmp(saved_argv[i], "--log")) {
			i++;
			continue;
		}
		len += snprintf(cmd + len, sizeof(cmd) - len, " %s", saved_argv[i]);
	}
	say("difftest: reproduce with: %s%s", cfg.replay_path ? "(replayed) " : "", cmd);
	say("difftest: seed %llu: difference at step %llu", (unsigned long long)cfg.seed,
	    (unsigned long long)diff_step);
	fflush(stdout);
	if (write(1, rep, rep_len) < 0)
		_exit(1);
	if (in_worker_process) {
		atomic_store(&sh->abort, 1);
		_exit(1);
	}
	atomic_store(&sh->abort, 1);
	teardown(false);
	exit(1);
}

/* Says which filesystems agree with the model and with each other. */
static void classify(const bool *bad)
{
	int nbad = 0;
	char good[MAX_FS * 40] = "", badl[MAX_FS * 40] = "";

	for (int i = 0; i < nfs; i++) {
		char *l = bad[i] ? badl : good;

		snprintf(l + strlen(l), sizeof(good) - strlen(l), "%s%.32s", *l ? ", " : "",
			 fss[i].name);
		nbad += bad[i];
	}
	if (nbad == nfs)
		say("  verdict: every filesystem differs from the model (a bug they share, or "
		    "in the model: check by hand)");
	else if (nbad)
		say("  verdict: %s differ%s from the model; %s agree%s with it", badl,
		    nbad == 1 ? "s" : "", good, nfs - nbad == 1 ? "s" : "");
}

/* Return values: each filesystem's (@na: not compared) against @want. */
static void expect_rets(const struct op *op, const char *what, const long long *got,
			const bool *na, long long want)
{
	bool bad[MAX_FS] = { 0 }, any = false;

	for (int i = 0; i < nfs; i++)
		if (!(na && na[i]) && got[i] != want)
			bad[i] = any = true;
	if (!any)
		return;
	diff_begin(op, "%s", what);
	for (int i = 0; i < nfs; i++)
		say("  %s: %s%s", fss[i].name, errname(got[i]),
		    na && na[i] ? " (not compared: see the known differences)" : "");
	say("  model: %s", errname(want));
	classify(bad);
	diff_end();
}

/* First index where @a and @b differ among the bytes @mask selects (NULL: all), or -1. */
static long long first_diff(const unsigned char *a, const unsigned char *b, const uint8_t *mask,
			    uint64_t n)
{
	if (!mask || !memchr(mask, 0, n)) {
		if (!memcmp(a, b, n))
			return -1;
		for (uint64_t i = 0; i < n; i++)
			if (a[i] != b[i])
				return i;
	}
	for (uint64_t i = 0; i < n; i++)
		if (mask[i] && a[i] != b[i])
			return i;
	return -1;
}

static void hexline(const char *who, const unsigned char *p, uint64_t n, uint64_t at,
		    uint64_t fo)
{
	char line[256];
	int len = 0;
	uint64_t from = at & ~15ull, to = min64(from + 32, n);

	len += snprintf(line, sizeof(line), "    %-6s %#10llx:", who, (unsigned long long)(fo + from));
	for (uint64_t i = from; i < to; i++)
		len += snprintf(line + len, sizeof(line) - len, "%s%02x", i % 8 ? "" : " ", p[i]);
	say("%s", line);
}

/*
 * Bytes @got[i] that each filesystem gave for file offsets [@fo, +@n) of
 * @what against the model's @exp (@mask: which bytes are compared).
 * Returns if they all match; else reports and ends the run.
 */
static void expect_bytes(const struct op *op, const char *what, uint64_t fo, uint64_t n,
			 unsigned char *const *got, const unsigned char *exp, const uint8_t *mask)
{
	long long d[MAX_FS];
	bool bad[MAX_FS] = { 0 }, any = false;

	for (int i = 0; i < nfs; i++) {
		d[i] = first_diff(got[i], exp, mask, n);
		if (d[i] >= 0)
			bad[i] = any = true;
	}
	if (!any)
		return;
	diff_begin(op, "%s [%#llx, %#llx) differs", what, (unsigned long long)fo,
		   (unsigned long long)(fo + n));
	for (int i = 0; i < nfs; i++) {
		uint64_t count = 0, last = 0, at;
		char es[128], gs[128];

		if (d[i] < 0) {
			say("  %s: as the model", fss[i].name);
			continue;
		}
		for (uint64_t j = d[i]; j < n; j++)
			if ((!mask || mask[j]) && got[i][j] != exp[j]) {
				count++;
				last = j;
			}
		/* The first whole word from the difference on. */
		at = round_up(fo + d[i], 8) - fo;
		if (at + 8 > n)
			at = d[i];
		describe(es, sizeof(es), exp, n, at);
		describe(gs, sizeof(gs), got[i], n, at);
		say("  %s: first difference at %#llx, %llu bytes differ, the last at %#llx", fss[i].name,
		    (unsigned long long)(fo + d[i]), (unsigned long long)count,
		    (unsigned long long)(fo + last));
		say("    at %#llx the model has %s", (unsigned long long)(fo + at), es);
		say("    %s has %s", fss[i].name, gs);
		hexline("model", exp, n, d[i], fo);
		hexline(fss[i].name, got[i], n, d[i], fo);
	}
	for (int i = 0; i < nfs; i++)
		for (int j = i + 1; j < nfs; j++)
			if (bad[i] && bad[j] && first_diff(got[i], got[j], mask, n) < 0)
				say("  %s and %s read the same bytes", fss[i].name, fss[j].name);
	classify(bad);
	diff_end();
}

/* ------------------------------------------------------------------ */
/* What a mapping must show                                            */

/*
 * The expected bytes of [@rel, @rel + @n) of mapping @m into @exp and
 * @mask (from index 0), @n cut at the end of the EOF page: from there on
 * every access raises SIGBUS, MAP_PRIVATE copies included (truncation
 * discarded them). Returns the bytes before that point. Past EOF in the
 * EOF page the bytes are not compared (KNOWN_EOF_TAIL), nor the bytes of
 * a private copy that were past EOF when it was made (KNOWN_PRIVATE_TAIL).
 */
static uint64_t view_expect(const struct mapping *m, uint64_t rel, uint64_t n,
			    unsigned char *exp, uint8_t *mask)
{
	uint64_t size = fm(m->file)->size, eofp = round_up(size, PAGE);
	uint64_t lim = eofp > m->off ? eofp - m->off : 0;

	if (rel >= lim)
		return 0;
	n = min64(n, lim - rel);
	if (!(m->flags & M_PRIVATE)) {
		uint64_t fo = m->off + rel, k = size > fo ? min64(size - fo, n) : 0;

		memcpy(exp, mdata[m->file] + fo, n);
		memset(mask, 1, k);
		memset(mask + k, 0, n - k);
		return n;
	}
	for (uint64_t done = 0; done < n;) {
		uint64_t r = rel + done, p = r / PAGE, chunk = min64(n - done, (p + 1) * PAGE - r);
		uint64_t fo = m->off + r;

		if (m->copied[p]) {
			memcpy(exp + done, m->priv + r, chunk);
			memcpy(mask + done, m->known + r, chunk);
		} else {
			uint64_t k = size > fo ? min64(size - fo, chunk) : 0;

			memcpy(exp + done, mdata[m->file] + fo, chunk);
			memset(mask + done, 1, k);
			memset(mask + done + k, 0, chunk - k);
		}
		done += chunk;
	}
	return n;
}

/* Copy on write of page @p of private mapping @m: the page as the file has it now. */
static void priv_copy(struct mapping *m, uint64_t p)
{
	uint64_t size = fm(m->file)->size, fo = m->off + p * PAGE;
	uint64_t k = size > fo ? min64(size - fo, PAGE) : 0;

	if (m->copied[p])
		return;
	memcpy(m->priv + p * PAGE, mdata[m->file] + fo, PAGE);
	memset(m->known + p * PAGE, 1, k);
	memset(m->known + p * PAGE + k, 0, PAGE - k);
	m->copied[p] = 1;
}

/* The model of a store of @n bytes at @rel through private mapping @m. */
static void priv_store(struct mapping *m, uint64_t rel, const unsigned char *data, uint64_t n)
{
	for (uint64_t p = rel / PAGE; p * PAGE < rel + n; p++)
		priv_copy(m, p);
	memcpy(m->priv + rel, data, n);
	memset(m->known + rel, 1, n);
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */

static void touch_file(struct worker *w, int f, uint64_t lo, uint64_t hi)
{
	/* A long range is checked at its ends after the step, whole at the next
	 * full check: reading megabytes of every file every step would cost
	 * most of the run. */
	if (hi > lo + 2 * MIB && w->ntouch + 1 < MAX_TOUCH) {
		w->touch[w->ntouch++] = (struct touch){ .file = f, .lo = lo, .hi = lo + 256 * 1024 };
		lo = hi - 256 * 1024;
	}
	if (w->ntouch < MAX_TOUCH)
		w->touch[w->ntouch++] = (struct touch){ .file = f, .lo = lo, .hi = hi };
}

static void touch_map(struct worker *w, const struct mapping *m, uint64_t lo, uint64_t hi)
{
	if (w->ntouch < MAX_TOUCH)
		w->touch[w->ntouch++] = (struct touch){ .file = -1, .map = m->id, .lo = lo,
							.hi = hi };
}

/*
 * KNOWN_EXT4_STALE_ZERO: after write(2) or copy_file_range wrote [@lo, @hi)
 * of file @f, the filesystems with that bug lose their page table entries
 * over the range (not the private copies'), so the next load faults.
 */
static void refresh_stale(struct worker *w, int f, uint64_t lo, uint64_t hi)
{
	for (int i = 0; i < nfs; i++) {
		if (!fss[i].stale_zero)
			continue;
		for (int k = 0; k < MAX_MAPS; k++) {
			struct mapping *m = &w->maps[k];
			uint64_t a, b;

			if (!m->id || m->file != f)
				continue;
			a = max64(round_down(lo, PAGE), m->off);
			b = min64(round_up(hi, PAGE), m->off + m->len);
			for (uint64_t fo = a; fo < b; fo += PAGE) {
				uint64_t p = (fo - m->off) / PAGE;

				if (!(m->flags & M_PRIVATE) || !m->copied[p])
					madvise(m->addr[i] + p * PAGE, PAGE, MADV_DONTNEED);
			}
		}
	}
}

static void check_size(struct worker *w, int f)
{
	long long got[MAX_FS];
	char what[64];

	for (int i = 0; i < nfs; i++) {
		struct stat st;

		got[i] = fstat(fss[i].fd[f], &st) ? -errno : st.st_size;
	}
	snprintf(what, sizeof(what), "size of %s", fname(f));
	expect_rets(w->op, what, got, NULL, fm(f)->size);
}

/* [lo, hi) of file @f through read(2) on every filesystem; hi <= size. */
static void check_read(struct worker *w, int f, uint64_t lo, uint64_t hi)
{
	long long got[MAX_FS];
	char what[96];

	if (hi <= lo)
		return;
	for (int i = 0; i < nfs; i++) {
		uint64_t done = 0;
		long long err = 0;

		while (done < hi - lo) {
			ssize_t n = pread(fss[i].fd[f], w->rbuf[i] + done, hi - lo - done, lo + done);

			if (n <= 0) {
				err = n < 0 ? -errno : 0;
				break;
			}
			done += n;
		}
		got[i] = err ? err : (long long)done;
	}
	snprintf(what, sizeof(what), "read(2) of %s [%#llx, %#llx)", fname(f),
		 (unsigned long long)lo, (unsigned long long)hi);
	expect_rets(w->op, what, got, NULL, hi - lo);
	snprintf(what, sizeof(what), "%s through read(2)", fname(f));
	expect_bytes(w->op, what, lo, hi - lo, w->rbuf, mdata[f] + lo, NULL);
	atomic_fetch_add(&sh->bytes_checked, (hi - lo) * nfs);
}

/*
 * [@rel, @rel + @n) of mapping @m on every filesystem through the mapping:
 * the bytes below the end of the EOF page as view_expect() says, then one
 * load past it, which must raise SIGBUS.
 */
static void check_view(struct worker *w, const struct mapping *m, uint64_t rel, uint64_t n)
{
	uint64_t ok, at;
	char what[128];
	int sig;

	if (rel >= m->len)
		return;
	n = min64(n, m->len - rel);
	ok = view_expect(m, rel, n, w->exp, w->mask);
	mapped_access(m->file, m->off + rel, m->off + rel + n);
	snprintf(what, sizeof(what), "%s mapping m%d of %s at %#llx", (m->flags & M_PRIVATE) ?
		 "MAP_PRIVATE" : "MAP_SHARED", m->id, fname(m->file), (unsigned long long)m->off);
	for (int i = 0; i < nfs && ok; i++) {
		sig = guarded_copy(w->rbuf[i], m->addr[i] + rel, ok, m->addr[i], &at);
		if (sig) {
			diff_begin(w->op, "%s: %s on a load at file offset %#llx, below the end "
				   "of the EOF page (size %#llx)", what, strsignal(sig),
				   (unsigned long long)(m->off + at),
				   (unsigned long long)fm(m->file)->size);
			say("  %s raised it; the model says the page is mapped", fss[i].name);
			diff_end();
		}
	}
	if (ok) {
		char w2[160];

		snprintf(w2, sizeof(w2), "%s, loaded", what);
		expect_bytes(w->op, w2, m->off + rel, ok, w->rbuf, w->exp, w->mask);
		atomic_fetch_add(&sh->bytes_checked, ok * nfs);
	}
	if (ok == n)
		return;
	/* One load past the EOF page. */
	for (int i = 0; i < nfs; i++) {
		uint64_t r = rel + ok;

		sig = guarded_touch(m->addr[i] + r, false);
		if (sig != SIGBUS) {
			diff_begin(w->op, "%s: a load at file offset %#llx, past the EOF page "
				   "(size %#llx), gave %s, not SIGBUS", what,
				   (unsigned long long)(m->off + r),
				   (unsigned long long)fm(m->file)->size,
				   sig ? strsignal(sig) : "no signal");
			for (int j = 0; j < nfs; j++)
				say("  %s: %s", fss[j].name,
				    guarded_touch(m->addr[j] + r, false) == SIGBUS ? "SIGBUS" :
				    "no SIGBUS");
			diff_end();
		}
	}
	atomic_fetch_add(&sh->sigbus, nfs);
}

/* Everything the step touched, around it: sizes, read(2), mappings. */
static void check_touched(struct worker *w)
{
	for (int t = 0; t < w->ntouch; t++) {
		struct touch *tc = &w->touch[t];

		if (tc->file < 0) {
			struct mapping *m = find_map(w, tc->map);

			if (m)
				check_view(w, m, tc->lo, tc->hi - tc->lo);
			continue;
		}
		int f = tc->file;
		uint64_t size = fm(f)->size;
		/* A page more either side: stale neighbours show there. */
		uint64_t lo = round_down(tc->lo, PAGE), hi = round_up(tc->hi, PAGE) + PAGE;

		lo = lo >= PAGE ? lo - PAGE : 0;
		check_size(w, f);
		check_read(w, f, lo, min64(hi, size));
		for (int i = 0; i < MAX_MAPS; i++) {
			struct mapping *m = &w->maps[i];
			uint64_t a, b;

			if (!m->id || m->file != f)
				continue;
			a = max64(lo, m->off);
			b = min64(hi, m->off + m->len);
			if (a < b)
				check_view(w, m, a - m->off, b - a);
		}
	}
	atomic_fetch_add(&sh->checks, 1);
}

/* Whether the model has only zeros in [lo, hi) of @f; the first non-zero offset in *at. */
static bool model_zero(int f, uint64_t lo, uint64_t hi, uint64_t *at)
{
	static const unsigned char zeros[PAGE];

	for (uint64_t i = lo; i < hi;) {
		uint64_t n = min64(hi - i, PAGE);

		if (memcmp(mdata[f] + i, zeros, n)) {
			while (!mdata[f][i])
				i++;
			*at = i;
			return false;
		}
		i += n;
	}
	return true;
}

/* The first punched block (must be a hole) in [lo, hi) of @f, or -1. */
static long long punched_in(int f, uint64_t lo, uint64_t hi)
{
	if (hi <= lo)
		return -1;
	for (uint64_t b = lo / PAGE; b * PAGE < hi; b++)
		if (mhole[f][b] && (b + 1) * PAGE > lo)
			return b * PAGE;
	return -1;
}

static void __attribute__((noreturn)) layout_diff(struct worker *w, int i, int f,
						  const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	diff_begin(w->op, "%s: %s of size %#llx: %s", fss[i].name, fname(f),
		   (unsigned long long)fm(f)->size, what);
	say("  (checked against the model only: KNOWN_SEEK_DATA, KNOWN_FIEMAP_EXTENTS)");
	diff_end();
}

/*
 * SEEK_DATA/SEEK_HOLE over all of file @f on filesystem @i: every hole
 * below EOF must read as zeros in the model and every punched block must
 * be in one.
 */
static void check_seek(struct worker *w, int i, int f)
{
	int fd = fss[i].fd[f];
	uint64_t size = fm(f)->size, pos = 0, at;

	while (pos < size) {
		off_t d = lseek(fd, pos, SEEK_DATA), h;
		long long p;

		if (d < 0 && errno != ENXIO)
			layout_diff(w, i, f, "SEEK_DATA from %#llx: %s", (unsigned long long)pos,
				    strerror(errno));
		if (d < 0 || (uint64_t)d > size)
			d = size;
		if ((uint64_t)d < pos)
			layout_diff(w, i, f, "SEEK_DATA from %#llx gave %#llx",
				    (unsigned long long)pos, (unsigned long long)d);
		if (!model_zero(f, pos, d, &at))
			layout_diff(w, i, f, "SEEK_DATA says [%#llx, %#llx) is a hole, but the file "
				    "has data at %#llx", (unsigned long long)pos,
				    (unsigned long long)d, (unsigned long long)at);
		if ((uint64_t)d >= size)
			break;
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0 || h <= d || (uint64_t)h > size)
			layout_diff(w, i, f, "SEEK_HOLE from %#llx gave %lld (%s)",
				    (unsigned long long)d, (long long)h, h < 0 ? strerror(errno) : "");
		p = punched_in(f, d, h);
		if (p >= 0 && (uint64_t)p + PAGE <= size)
			layout_diff(w, i, f, "the block at %#llx was punched (and nothing has "
				    "written its 2 MiB since), but SEEK_DATA/SEEK_HOLE say "
				    "[%#llx, %#llx) is data", p, (long long)d, (long long)h);
		pos = h;
	}
	for (off_t o = size; o < (off_t)size + 2; o++)
		if (lseek(fd, o, SEEK_DATA) >= 0 || errno != ENXIO)
			layout_diff(w, i, f, "SEEK_DATA at %#llx, at or past EOF, did not fail "
				    "with ENXIO", (unsigned long long)o);
}

/* FIEMAP of file @f on filesystem @i: holes and unwritten extents read as zeros. */
static void check_fiemap(struct worker *w, int i, int f)
{
	enum { EXTENTS = 256 };
	static __thread struct fiemap *fmp;
	uint64_t size = fm(f)->size, pos = 0, at;
	bool last = false;

	if (!fmp)
		fmp = calloc(1, sizeof(*fmp) + EXTENTS * sizeof(struct fiemap_extent));
	while (!last && pos < size) {
		memset(fmp, 0, sizeof(*fmp));
		fmp->fm_start = pos;
		fmp->fm_length = size - pos;
		fmp->fm_extent_count = EXTENTS;
		/* Page cache filesystems (--dir) hold dirty data over unwritten
		 * extents until writeback; DAX has no page cache. */
		fmp->fm_flags = cfg.setup ? 0 : FIEMAP_FLAG_SYNC;
		if (ioctl(fss[i].fd[f], FS_IOC_FIEMAP, fmp))
			layout_diff(w, i, f, "FIEMAP from %#llx: %s", (unsigned long long)pos,
				    strerror(errno));
		if (!fmp->fm_mapped_extents)
			break;
		for (unsigned int e = 0; e < fmp->fm_mapped_extents; e++) {
			struct fiemap_extent *x = &fmp->fm_extents[e];
			uint64_t lo = x->fe_logical, hi = min64(x->fe_logical + x->fe_length, size);
			long long p;

			if (lo > pos && !model_zero(f, pos, min64(lo, size), &at))
				layout_diff(w, i, f, "FIEMAP has no extent for [%#llx, %#llx), but "
					    "the file has data at %#llx", (unsigned long long)pos,
					    (unsigned long long)lo, (unsigned long long)at);
			if ((x->fe_flags & FIEMAP_EXTENT_UNWRITTEN) && lo < size &&
			    !model_zero(f, lo, hi, &at))
				layout_diff(w, i, f, "FIEMAP says [%#llx, %#llx) is unwritten, but "
					    "the file has data at %#llx", (unsigned long long)lo,
					    (unsigned long long)hi, (unsigned long long)at);
			p = punched_in(f, lo, hi);
			if (p >= 0 && (uint64_t)p + PAGE <= size)
				layout_diff(w, i, f, "the block at %#llx was punched (and nothing "
					    "has written its 2 MiB since), but FIEMAP maps it in "
					    "[%#llx, %#llx)", p, (unsigned long long)lo,
					    (unsigned long long)(x->fe_logical + x->fe_length));
			pos = max64(pos, x->fe_logical + x->fe_length);
			if (x->fe_flags & FIEMAP_EXTENT_LAST)
				last = true;
		}
	}
	if (pos < size && !model_zero(f, pos, size, &at))
		layout_diff(w, i, f, "FIEMAP has no extent for [%#llx, %#llx), but the file has "
			    "data at %#llx", (unsigned long long)pos, (unsigned long long)size,
			    (unsigned long long)at);
}

static void check_layout(struct worker *w, int f)
{
	for (int i = 0; i < nfs; i++) {
		if (en(CL_SEEK))
			check_seek(w, i, f);
		if (en(CL_FIEMAP) && fiemap_ok[i])
			check_fiemap(w, i, f);
	}
}

/* Every byte of file @f, its size and its holes. */
static void check_file(struct worker *w, int f)
{
	check_size(w, f);
	check_read(w, f, 0, fm(f)->size);
	check_layout(w, f);
}

/* Every byte of every mapping of this worker (of shared files only: @shared_only). */
static void check_maps(struct worker *w, bool shared_only)
{
	apply_truncations(w);
	for (int i = 0; i < MAX_MAPS; i++) {
		struct mapping *m = &w->maps[i];

		if (m->id && (!shared_only || file_owner(m->file) < 0))
			check_view(w, m, 0, m->len);
	}
}

/* ------------------------------------------------------------------ */
/* Running an operation on one filesystem                              */

static const void *dio_buf(struct worker *w, int i, const struct op *op);

/* copy_file_range until @want bytes are copied; the total or -errno. */
static long long copy_loop(int in_fd, uint64_t soff, int out_fd, uint64_t doff, uint64_t len,
			   uint64_t want)
{
	loff_t in = soff, out = doff;
	ssize_t n = copy_file_range(in_fd, &in, out_fd, &out, len, 0);
	long long total;

	if (n < 0)
		return -errno;
	/* Later calls ask for what is left of the first call's range only: a
	 * copy within one file may have grown it (KNOWN_COPY_SHORT). */
	for (total = n; n > 0 && (uint64_t)total < want; total += n) {
		n = copy_file_range(in_fd, &in, out_fd, &out, want - total, 0);
		if (n < 0)
			return -errno;
	}
	return total;
}

/* The system call(s) of @op on filesystem @i: its return value or -errno. */
static long long do_sys(struct worker *w, int i, const struct op *op)
{
	struct fs *fs = &fss[i];
	int fd = op->f >= 0 ? fs->fd[op->f] : -1;
	long long ret;

	switch (op->kind) {
	case K_WRITE: {
		const unsigned char *b = w->wbuf;
		uint64_t a = op->len / 3, c = op->len / 2;
		struct iovec iov[3] = { { (void *)b, a }, { (void *)(b + a), c - a },
					{ (void *)(b + c), op->len - c } };

		switch (op->sub) {
		case 0:
			ret = pwrite(fd, b, op->len, op->off);
			break;
		case 1:
			ret = pwritev(fd, iov, 3, op->off);
			break;
		case 2:
			ret = lseek(fd, op->off, SEEK_SET) < 0 ? -1 : write(fd, b, op->len);
			break;
		default:
			if (fcntl(fd, F_SETFL, O_APPEND))
				return -errno;
			ret = write(fd, b, op->len);
			if (ret < 0)
				ret = -errno;
			fcntl(fd, F_SETFL, 0);
			return ret;
		}
		return ret < 0 ? -errno : ret;
	}
	case K_TRUNCATE:
		return ftruncate(fd, op->off) ? -errno : 0;
	case K_FALLOC:
		return fallocate(fd, falloc_modes[op->sub], op->off, op->len) ? -errno : 0;
	case K_CLONE: {
		struct file_clone_range r = { .src_fd = fs->fd[op->g], .src_offset = op->off2,
					      .src_length = op->len, .dest_offset = op->off };

		if (!fs->clone)	/* KNOWN_EXT4_REFLINK: the copy standing in, if any */
			return w->copy_want ? copy_loop(fs->fd[op->g], op->off2, fd, op->off,
							w->copy_want, w->copy_want) : 0;
		if (op->sub == 0)
			return ioctl(fd, FICLONE, fs->fd[op->g]) ? -errno : 0;
		return ioctl(fd, FICLONERANGE, &r) ? -errno : 0;
	}
	case K_COPY:
		return copy_loop(fs->fd[op->g], op->off2, fd, op->off, op->len, w->copy_want);
	case K_DIO: {
		int dfd = (op->flags & F_DIRECT) ? fs->dfd[op->f] : fd;
		void *b = (void *)dio_buf(w, i, op);

		if (op->sub == 0)
			ret = pread(dfd, b, op->len, op->off);
		else
			ret = pwrite(dfd, b, op->len, op->off);
		return ret < 0 ? -errno : ret;
	}
	}
	return -EINVAL;	/* not a kind do_sys() runs */
}

/*
 * Pins: a page of a mapping is spliced into a pipe (vmsplice holds a
 * reference, as a DMA would), the operation runs in another thread, and
 * the pipe is drained once the operation finished or went to sleep
 * (waiting for the pin, most likely), or after 50 ms: a filesystem that
 * waits for the page to be released before it frees or changes its block
 * then finishes. What the pipe gave must be the page as it was pinned
 * (KNOWN_PIN_WAIT).
 */
struct pin_call {
	struct worker *w;
	int i;
	const struct op *op;
	long long ret;
	atomic_int tid;
	atomic_int done;
};

static void *pin_thread(void *arg)
{
	struct pin_call *pc = arg;

	atomic_store(&pc->tid, gettid());
	pc->ret = do_sys(pc->w, pc->i, pc->op);
	atomic_store(&pc->done, 1);
	return NULL;
}

static long long pin_vms[MAX_FS], pin_drained[MAX_FS];

/* The scheduler state of thread @tid of this process ('R', 'S', 'D', ...). */
static char thread_state(int tid)
{
	char path[64], buf[512], *p;
	int fd;
	ssize_t n;

	if (!tid)
		return '?';
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return '?';
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

static long long pin_run(struct worker *w, int i, const struct op *op, const struct mapping *m)
{
	struct pin_call pc = { .w = w, .i = i, .op = op };
	struct iovec iov = { m->addr[i] + op->pin_off, PAGE };
	pthread_t t;
	int p[2];
	double start;

	if (pipe(p)) {
		perror("difftest: pipe");
		exit(2);
	}
	pin_vms[i] = vmsplice(p[1], &iov, 1, 0);
	if (pin_vms[i] < 0)
		pin_vms[i] = -errno;
	if (pthread_create(&t, NULL, pin_thread, &pc)) {
		perror("difftest: pthread_create");
		exit(2);
	}
	/* Until the operation sleeps (waiting for the pin, most likely) or ends. */
	for (int k = 0; k < 50 && !atomic_load(&pc.done); k++) {
		char st = thread_state(atomic_load(&pc.tid));

		if (st == 'S' || st == 'D')
			break;
		usleep(1000);
	}
	pin_drained[i] = 0;
	while (pin_vms[i] > 0 && pin_drained[i] < (long long)PAGE) {
		ssize_t n = read(p[0], w->pin_got[i] + pin_drained[i], PAGE - pin_drained[i]);

		if (n <= 0) {
			if (n < 0)
				pin_drained[i] = -errno;
			break;
		}
		pin_drained[i] += n;
	}
	close(p[0]);
	close(p[1]);
	start = now();
	while (!atomic_load(&pc.done)) {
		if (now() - start > 120) {
			diff_begin(op, "%s: the operation did not finish within 120 s of the pinned "
				   "page's release", fss[i].name);
			diff_end();
		}
		usleep(2000);
	}
	pthread_join(t, NULL);
	atomic_fetch_add(&sh->pins, 1);
	return pc.ret;
}

/* @op on filesystem @i, with its pin if it has one (pin_prepare() said it can). */
static long long run_on(struct worker *w, int i, const struct op *op, const struct mapping *pin)
{
	double t0 = now();
	long long ret = pin ? pin_run(w, i, op, pin) : do_sys(w, i, op);

	atomic_fetch_add(&sh->fs_us[op->kind][i], (now() - t0) * 1e6);
	return ret;
}

/* The pinned page's mapping, its expected bytes in w->pin_exp/pin_mask; NULL: no pin. */
static const struct mapping *pin_prepare(struct worker *w, const struct op *op)
{
	const struct mapping *m = find_map(w, op->pin_map);

	if (!m || op->pin_off % PAGE || op->pin_off + PAGE > m->len)
		return NULL;
	if (view_expect(m, op->pin_off, PAGE, w->pin_exp, w->pin_mask) != PAGE)
		return NULL;
	mapped_access(m->file, m->off + op->pin_off, m->off + op->pin_off + PAGE);
	return m;
}

static void pin_check(struct worker *w, const struct op *op, const struct mapping *m)
{
	long long want = PAGE;
	char what[160];

	if (!m)
		return;
	snprintf(what, sizeof(what), "vmsplice of page %#llx of mapping m%d of %s",
		 (unsigned long long)op->pin_off, m->id, fname(m->file));
	expect_rets(op, what, pin_vms, NULL, want);
	snprintf(what, sizeof(what), "bytes drained from the pipe (pinned page of m%d)", m->id);
	expect_rets(op, what, pin_drained, NULL, want);
	snprintf(what, sizeof(what), "pinned page of m%d (%s at %#llx) drained from the pipe",
		 m->id, fname(m->file), (unsigned long long)(m->off + op->pin_off));
	expect_bytes(op, what, m->off + op->pin_off, PAGE, w->pin_got, w->pin_exp, w->pin_mask);
}

/* ------------------------------------------------------------------ */
/* Operations: run on every filesystem, compare, update the model     */

static void ex_read(struct worker *w, const struct op *op)
{
	uint64_t size = fm(op->f)->size;
	long long want = op->off >= size ? 0 : (long long)min64(op->len, size - op->off);
	long long got[MAX_FS];
	char what[96];

	for (int i = 0; i < nfs; i++) {
		int fd = fss[i].fd[op->f];
		unsigned char *b = w->rbuf[i];
		uint64_t a = op->len / 3, c = op->len / 2;
		struct iovec iov[3] = { { b, a }, { b + a, c - a }, { b + c, op->len - c } };
		ssize_t n;

		if (op->sub == 0)
			n = pread(fd, b, op->len, op->off);
		else if (op->sub == 1)
			n = preadv(fd, iov, 3, op->off);
		else
			n = lseek(fd, op->off, SEEK_SET) < 0 ? -1 : read(fd, b, op->len);
		got[i] = n < 0 ? -errno : n;
	}
	snprintf(what, sizeof(what), "%s of %s", sub_name(op->kind, op->sub), fname(op->f));
	expect_rets(op, what, got, NULL, want);
	expect_bytes(op, what, op->off, want, w->rbuf, mdata[op->f] + op->off, NULL);
}

static void ex_write(struct worker *w, const struct op *op)
{
	int f = op->f;
	uint64_t size = fm(f)->size, at = op->sub == 3 ? size : op->off;
	const struct mapping *pin;
	long long got[MAX_FS];
	char what[96];

	pat_fill(w->wbuf, op->len, at, op->step, TAG_WRITE);
	pin = pin_prepare(w, op);
	for (int i = 0; i < nfs; i++)
		got[i] = run_on(w, i, op, pin);
	pin_check(w, op, pin);
	snprintf(what, sizeof(what), "%s to %s", sub_name(op->kind, op->sub), fname(f));
	expect_rets(op, what, got, NULL, op->len);
	model_write(f, at, w->wbuf, op->len);
	hole_clear(f, min64(size, at), at + op->len);
	refresh_stale(w, f, at, at + op->len);
	touch_file(w, f, min64(size, at), at + op->len);
}

static void ex_truncate(struct worker *w, const struct op *op)
{
	uint64_t old = fm(op->f)->size;
	const struct mapping *pin = pin_prepare(w, op);
	long long got[MAX_FS];
	char what[96];

	for (int i = 0; i < nfs; i++)
		got[i] = run_on(w, i, op, pin);
	pin_check(w, op, pin);
	snprintf(what, sizeof(what), "ftruncate of %s", fname(op->f));
	expect_rets(op, what, got, NULL, 0);
	model_truncate(op->f, op->off);
	touch_file(w, op->f, min64(old, op->off), max64(old, op->off));
	/* Truncation is what endangers private copies and stale mappings of the
	 * EOF block: every mapping of the file, all of it. */
	for (int k = 0; k < MAX_MAPS; k++)
		if (w->maps[k].id && w->maps[k].file == op->f)
			touch_map(w, &w->maps[k], 0, w->maps[k].len);
}

static void ex_falloc(struct worker *w, const struct op *op)
{
	int f = op->f;
	uint64_t size = fm(f)->size, end = op->off + op->len;
	const struct mapping *pin = pin_prepare(w, op);
	long long got[MAX_FS];
	char what[96];

	for (int i = 0; i < nfs; i++)
		got[i] = run_on(w, i, op, pin);
	pin_check(w, op, pin);
	snprintf(what, sizeof(what), "fallocate(%s) of %s", sub_name(op->kind, op->sub), fname(f));
	expect_rets(op, what, got, NULL, 0);
	if (op->sub >= 2 && op->off < size)	/* punch, zero: [off, end) below EOF reads zeros */
		memset(mdata[f] + op->off, 0, min64(end, size) - op->off);
	if (op->sub == 2)
		hole_set(f, op->off, end);
	else
		hole_clear(f, op->off, end);
	if ((op->sub == 0 || op->sub == 3) && end > size)
		fm(f)->size = end;
	touch_file(w, f, min64(op->off, size), end);
}

/*
 * What FICLONE/FICLONERANGE of [@soff, +@len) (0: to EOF) of @src to @doff
 * of @dst does: 0 and in *@cnt the bytes cloned, or -EINVAL, as
 * fs/remap_range.c decides it (generic_remap_checks(),
 * generic_remap_check_len(); block size 4 KiB on every filesystem here).
 */
static long long clone_predict(int src, uint64_t soff, uint64_t len, int dst, uint64_t doff,
			       uint64_t *cnt)
{
	uint64_t isz = fm(src)->size, osz = fm(dst)->size, count, bcount;

	*cnt = 0;
	if (len == 0) {
		if (soff == isz)
			return 0;
		if (soff > isz)
			return -EINVAL;
		len = isz - soff;
	}
	if (soff % PAGE || doff % PAGE)
		return -EINVAL;
	if (soff >= isz)
		return -EINVAL;
	count = min64(len, isz - soff);
	/* Up to the source's EOF the last block may be partial. */
	if (soff + count == isz) {
		bcount = round_up(isz, PAGE) - soff;
	} else {
		count = round_down(count, PAGE);
		bcount = count;
	}
	if (src == dst && doff + bcount > soff && doff < soff + bcount)
		return -EINVAL;
	if (count != len)	/* shortened, and FICLONERANGE cannot say so */
		return -EINVAL;
	/* A partial EOF block may not land inside the destination. */
	if (count % PAGE && doff + count < osz)
		return -EINVAL;
	*cnt = count;
	return 0;
}

static void ex_clone(struct worker *w, const struct op *op)
{
	int f = op->f, g = op->g;
	uint64_t dsize = fm(f)->size, cnt;
	long long want = clone_predict(g, op->off2, op->sub == 0 ? 0 : op->len, f, op->off, &cnt);
	const struct mapping *pin;
	long long got[MAX_FS];
	bool na[MAX_FS] = { 0 };
	char what[128];

	w->copy_want = want == 0 ? cnt : 0;
	pin = pin_prepare(w, op);
	for (int i = 0; i < nfs; i++) {
		got[i] = run_on(w, i, op, pin);
		if (fss[i].clone)
			continue;
		na[i] = true;	/* KNOWN_EXT4_REFLINK */
		if (w->copy_want && got[i] != (long long)cnt) {
			diff_begin(op, "%s: copy_file_range standing in for a clone gave %s, "
				   "expected %llu", fss[i].name, errname(got[i]),
				   (unsigned long long)cnt);
			diff_end();
		}
	}
	pin_check(w, op, pin);
	snprintf(what, sizeof(what), "%s from %s to %s", op->sub ? "FICLONERANGE" : "FICLONE",
		 fname(g), fname(f));
	expect_rets(op, what, got, na, want);
	if (want == 0 && cnt) {
		memmove(mdata[f] + op->off, mdata[g] + op->off2, cnt);
		if (op->off + cnt > dsize)
			fm(f)->size = op->off + cnt;
		hole_clear(f, min64(dsize, op->off), op->off + cnt);
		refresh_stale(w, f, op->off, op->off + cnt);
	}
	touch_file(w, f, min64(dsize, op->off), op->off + max64(cnt, op->len));
}

static void ex_copy(struct worker *w, const struct op *op)
{
	int f = op->f, g = op->g;
	uint64_t isz = fm(g)->size, dsize = fm(f)->size;
	uint64_t cnt = op->off2 >= isz ? 0 : min64(op->len, isz - op->off2);
	long long want = cnt;
	const struct mapping *pin;
	long long got[MAX_FS];
	char what[128];

	if (f == g && op->off + cnt > op->off2 && op->off < op->off2 + cnt)
		want = -EINVAL;	/* overlapping within one file */
	w->copy_want = cnt;
	pin = pin_prepare(w, op);
	for (int i = 0; i < nfs; i++)
		got[i] = run_on(w, i, op, pin);
	pin_check(w, op, pin);
	snprintf(what, sizeof(what), "copy_file_range from %s to %s (total of the calls)", fname(g),
		 fname(f));
	expect_rets(op, what, got, NULL, want);
	if (want > 0) {
		memmove(mdata[f] + op->off, mdata[g] + op->off2, cnt);
		if (op->off + cnt > dsize)
			fm(f)->size = op->off + cnt;
		hole_clear(f, min64(dsize, op->off), op->off + cnt);
		refresh_stale(w, f, op->off, op->off + cnt);
	}
	touch_file(w, f, min64(dsize, op->off), op->off + max64(cnt, 1));
}

/*
 * mmap() of [@off, +@len) of @fd; M_HUGE: at a 2 MiB-aligned address
 * (plus a page with M_MISALIGN), so that an aligned @off is PMD-eligible.
 */
static void *reserve_at(uint64_t len, unsigned int mflags)
{
	uint64_t mis = (mflags & M_MISALIGN) ? PAGE : 0, span = len + PMD + mis;
	unsigned char *base = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
				   -1, 0), *at;

	if (base == MAP_FAILED)
		return MAP_FAILED;
	at = (unsigned char *)round_up((uintptr_t)base, PMD) + mis;
	if (at > base)
		munmap(base, at - base);
	if (base + span > at + len)
		munmap(at + len, base + span - (at + len));
	return at;
}

static void *map_at(int fd, uint64_t off, uint64_t len, unsigned int mflags)
{
	int flags = (mflags & M_PRIVATE) ? MAP_PRIVATE :
		    (mflags & M_SYNC) ? MAP_SHARED_VALIDATE | MAP_SYNC : MAP_SHARED;
	void *at = NULL, *p;

	if (mflags & M_POPULATE)
		flags |= MAP_POPULATE;
	if (mflags & M_HUGE) {
		at = reserve_at(len, mflags);
		if (at == MAP_FAILED)
			return MAP_FAILED;
		flags |= MAP_FIXED;
	}
	p = mmap(at, len, PROT_READ | PROT_WRITE, flags, fd, off);
	if (p == MAP_FAILED && at) {
		int err = errno;

		munmap(at, len);
		errno = err;
	}
	return p;
}

static void ex_map(struct worker *w, const struct op *op)
{
	struct mapping *m = NULL;
	long long got[MAX_FS];
	char what[128];

	for (int i = 0; i < MAX_MAPS && !m; i++)
		if (!w->maps[i].id)
			m = &w->maps[i];
	if (!m || find_map(w, op->map))
		return;	/* an edited --replay log */
	*m = (struct mapping){ .id = op->map, .file = op->f, .flags = op->flags, .off = op->off,
			       .len = op->len };
	for (int i = 0; i < nfs; i++) {
		m->addr[i] = map_at(fss[i].fd[op->f], op->off, op->len, op->flags);
		got[i] = m->addr[i] == MAP_FAILED ? -errno : 0;
	}
	snprintf(what, sizeof(what), "mmap of %s [%#llx, +%#llx) flags %#x", fname(op->f),
		 (unsigned long long)op->off, (unsigned long long)op->len, op->flags);
	expect_rets(op, what, got, NULL, 0);
	if (m->flags & M_PRIVATE) {
		m->priv = calloc(1, m->len);
		m->known = calloc(1, m->len);
		m->copied = calloc(1, m->len / PAGE);
		if (!m->priv || !m->known || !m->copied) {
			perror("difftest: calloc");
			exit(2);
		}
		/* MAP_POPULATE of a writable private mapping faults its pages in
		 * for write: each page up to the EOF page is copied now. */
		if (m->flags & M_POPULATE) {
			uint64_t eofp = round_up(fm(m->file)->size, PAGE);
			uint64_t lim = eofp > m->off ? min64(eofp - m->off, m->len) : 0;

			for (uint64_t r = 0; r < lim; r += PAGE)
				priv_copy(m, r / PAGE);
		}
	}
	touch_map(w, m, 0, m->len);
}

static void ex_unmap(struct worker *w, const struct op *op)
{
	struct mapping *m = find_map(w, op->map);
	uint64_t k = op->len;
	long long got[MAX_FS];

	if (!m || (op->sub && (k % PAGE || !k || k >= m->len)))
		return;
	for (int i = 0; i < nfs; i++) {
		void *at = op->sub == 2 ? m->addr[i] + m->len - k : m->addr[i];

		got[i] = munmap(at, op->sub ? k : m->len) ? -errno : 0;
	}
	expect_rets(op, "munmap", got, NULL, 0);
	if (op->sub == 0) {
		map_free_model(m);
		m->id = 0;
		return;
	}
	if (op->sub == 1) {
		for (int i = 0; i < nfs; i++)
			m->addr[i] += k;
		if (m->flags & M_PRIVATE) {
			memmove(m->priv, m->priv + k, m->len - k);
			memmove(m->known, m->known + k, m->len - k);
			memmove(m->copied, m->copied + k / PAGE, (m->len - k) / PAGE);
		}
		m->off += k;
	}
	m->len -= k;
	touch_map(w, m, 0, m->len);
}

static void ex_mremap(struct worker *w, const struct op *op)
{
	struct mapping *m = find_map(w, op->map);
	unsigned char *to[MAX_FS];
	long long got[MAX_FS];
	uint64_t nlen = op->sub == 2 ? (m ? m->len : 0) : op->len;

	if (!m || !nlen || nlen % PAGE || (op->sub == 0 && nlen >= m->len) ||
	    (op->sub == 1 && nlen <= m->len))
		return;
	for (int i = 0; i < nfs; i++) {
		void *r;

		if (op->sub == 0) {
			r = mremap(m->addr[i], m->len, nlen, 0);
		} else if (op->sub == 1) {
			r = mremap(m->addr[i], m->len, nlen, MREMAP_MAYMOVE);
		} else {
			void *dest = reserve_at(nlen, m->flags);

			r = dest == MAP_FAILED ? MAP_FAILED :
			    mremap(m->addr[i], m->len, nlen, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
		}
		got[i] = r == MAP_FAILED ? -errno : 0;
		to[i] = r;
	}
	expect_rets(op, "mremap", got, NULL, 0);
	for (int i = 0; i < nfs; i++)
		m->addr[i] = to[i];
	map_resize_model(m, nlen);
	m->len = nlen;
	touch_map(w, m, 0, m->len);
}

/*
 * How a store of @n bytes at @rel through @m goes: the bytes before the
 * end of the EOF page are stored (*@stop of them), and if the range goes
 * on past it, the first byte there raises SIGBUS (*@probe, relative).
 */
static void store_plan(const struct mapping *m, uint64_t rel, uint64_t n, uint64_t *stop,
		       long long *probe)
{
	uint64_t eofp = round_up(fm(m->file)->size, PAGE);
	uint64_t lim = eofp > m->off ? eofp - m->off : 0;

	*stop = rel < lim ? min64(n, lim - rel) : 0;
	*probe = rel + n > lim ? (long long)max64(rel, lim) : -1;
}

/* The bytes of a store's @stop that filesystem @i is given (KNOWN_EXT4_TAIL). */
static uint64_t fs_stop(int i, const struct mapping *m, uint64_t rel, uint64_t stop)
{
	uint64_t size = fm(m->file)->size, fo = m->off + rel;

	if (!fss[i].no_tail || (m->flags & M_PRIVATE))
		return stop;
	return fo >= size ? 0 : min64(stop, size - fo);
}

/* The model after @stop bytes of @data were stored at @rel through @m. */
static void model_store(struct worker *w, struct mapping *m, uint64_t rel,
			const unsigned char *data, uint64_t stop)
{
	uint64_t fo = m->off + rel, size = fm(m->file)->size;

	mapped_access(m->file, fo, fo + stop);
	if (m->flags & M_PRIVATE) {
		priv_store(m, rel, data, stop);
		touch_map(w, m, rel, rel + stop + PAGE);
		return;
	}
	/* Past EOF the bytes are not file content (KNOWN_EOF_TAIL). */
	if (fo < size)
		memcpy(mdata[m->file] + fo, data, min64(stop, size - fo));
	hole_clear(m->file, fo, fo + stop);
	touch_file(w, m->file, fo, fo + stop);
}

static void ex_mstore(struct worker *w, const struct op *op)
{
	struct mapping *m = find_map(w, op->map);
	int sig[MAX_FS] = { 0 }, psig[MAX_FS] = { 0 };
	uint64_t stop, at[MAX_FS] = { 0 };
	long long probe;
	bool bad = false;

	if (!m || op->off >= m->len || !op->len || op->off + op->len > m->len)
		return;
	store_plan(m, op->off, op->len, &stop, &probe);
	pat_fill(w->wbuf, stop, m->off + op->off, op->step,
		 (m->flags & M_PRIVATE) ? TAG_PRIV : TAG_MAP);
	for (int i = 0; i < nfs; i++) {
		double t0 = now();

		uint64_t n = fs_stop(i, m, op->off, stop);

		if (n)
			sig[i] = guarded_copy(m->addr[i] + op->off, w->wbuf, n, m->addr[i], &at[i]);
		if (!sig[i] && probe >= 0)
			psig[i] = guarded_touch(m->addr[i] + probe, true);
		bad |= sig[i] || (probe >= 0 && psig[i] != SIGBUS);
		atomic_fetch_add(&sh->fs_us[K_MSTORE][i], (now() - t0) * 1e6);
	}
	if (bad) {
		diff_begin(op, "store through mapping m%d of %s (size %#llx): signals differ from "
			   "the model", m->id, fname(m->file), (unsigned long long)fm(m->file)->size);
		for (int i = 0; i < nfs; i++) {
			if (sig[i])
				say("  %s: %s at file offset %#llx, below the end of the EOF page",
				    fss[i].name, strsignal(sig[i]), (unsigned long long)(m->off + at[i]));
			else
				say("  %s: stored [%#llx, %#llx)%s%s", fss[i].name,
				    (unsigned long long)(m->off + op->off),
				    (unsigned long long)(m->off + op->off + stop),
				    probe >= 0 ? ", then past the EOF page: " : "",
				    probe < 0 ? "" : psig[i] ? strsignal(psig[i]) : "no signal");
		}
		say("  model: the stores below the end of the EOF page succeed%s",
		    probe >= 0 ? ", the first one past it raises SIGBUS" : "");
		diff_end();
	}
	if (probe >= 0)
		atomic_fetch_add(&sh->sigbus, nfs);
	model_store(w, m, op->off, w->wbuf, stop);
	if (probe >= 0)
		touch_map(w, m, probe, probe + 1);
}

static void ex_mload(struct worker *w, const struct op *op)
{
	struct mapping *m = find_map(w, op->map);

	if (m)
		touch_map(w, m, op->off, op->off + op->len);
}

/*
 * A child stores through inherited mappings (its MAP_PRIVATE stores stay
 * its own), reads each store back and tells the parent what happened;
 * the parent then checks that it sees the child's MAP_SHARED stores and
 * none of its private ones.
 */
struct fork_result {
	int8_t sig[FORK_STORES], probe[FORK_STORES], readback[FORK_STORES];
};

static void ex_fork(struct worker *w, const struct op *op)
{
	static unsigned char data[FORK_STORES][8192];
	struct fork_result res[MAX_FS] = { 0 }, want = { 0 };
	struct mapping *ms[FORK_STORES] = { 0 };
	uint64_t stop[FORK_STORES] = { 0 };
	long long probe[FORK_STORES];
	int p[2], status;
	pid_t pid;
	ssize_t n;

	for (int k = 0; k < op->nst; k++) {
		struct mapping *m = find_map(w, op->st[k].map);

		probe[k] = -1;
		if (!m || op->st[k].off + op->st[k].len > m->len || op->st[k].len > sizeof(data[0]))
			continue;
		ms[k] = m;
		store_plan(m, op->st[k].off, op->st[k].len, &stop[k], &probe[k]);
		pat_fill(data[k], stop[k], m->off + op->st[k].off, op->step,
			 ((m->flags & M_PRIVATE) ? TAG_FORK_PRIV : TAG_FORK) + k);
		want.probe[k] = probe[k] >= 0 ? SIGBUS : 0;
	}
	fflush(NULL);
	if (pipe(p)) {
		perror("difftest: pipe");
		exit(2);
	}
	pid = fork();
	if (pid < 0) {
		perror("difftest: fork");
		exit(2);
	}
	if (pid == 0) {
		static unsigned char back[8192];

		close(p[0]);
		for (int i = 0; i < nfs; i++) {
			for (int k = 0; k < op->nst; k++) {
				struct mapping *m = ms[k];
				uint64_t at, n;

				if (!m)
					continue;
				n = fs_stop(i, m, op->st[k].off, stop[k]);
				if (n) {
					res[i].sig[k] = guarded_copy(m->addr[i] + op->st[k].off,
								     data[k], n, m->addr[i], &at);
					if (!res[i].sig[k] &&
					    (guarded_copy(back, m->addr[i] + op->st[k].off, n,
							  m->addr[i], &at) ||
					     memcmp(back, data[k], n)))
						res[i].readback[k] = 1;
				}
				if (probe[k] >= 0)
					res[i].probe[k] = guarded_touch(m->addr[i] + probe[k], true);
			}
		}
		if (write(p[1], res, sizeof(res)) != sizeof(res))
			_exit(3);
		_exit(0);
	}
	close(p[1]);
	n = read(p[0], res, sizeof(res));
	close(p[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) ||
	    n != sizeof(res)) {
		diff_begin(op, "the fork child ended with status %#x (%s) after %zd bytes of results",
			   status, WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exit", n);
		diff_end();
	}
	atomic_fetch_add(&sh->forks, 1);
	for (int i = 0; i < nfs; i++) {
		if (!memcmp(&res[i], &want, sizeof(want)))
			continue;
		diff_begin(op, "the fork child's stores: %s differs from the model", fss[i].name);
		for (int j = 0; j < nfs; j++)
			for (int k = 0; k < op->nst; k++)
				say("  %s: store %d (m%d +%#llx, %#llx bytes): %s%s, past the EOF page: %s",
				    fss[j].name, k, op->st[k].map, (unsigned long long)op->st[k].off,
				    (unsigned long long)op->st[k].len,
				    res[j].sig[k] ? strsignal(res[j].sig[k]) : "stored",
				    res[j].readback[k] ? ", read back differently" : "",
				    probe[k] < 0 ? "(none)" : res[j].probe[k] ?
				    strsignal(res[j].probe[k]) : "no signal");
		say("  model: stores below the end of the EOF page succeed and read back, the "
		    "first byte past it raises SIGBUS");
		diff_end();
	}
	for (int k = 0; k < op->nst; k++) {
		struct mapping *m = ms[k];

		if (!m)
			continue;
		if (m->flags & M_PRIVATE) {
			mapped_access(m->file, m->off + op->st[k].off,
				      m->off + op->st[k].off + stop[k]);
			/* The child's copy: the parent must still see its own view. */
			touch_map(w, m, op->st[k].off, op->st[k].off + op->st[k].len);
			continue;
		}
		model_store(w, m, op->st[k].off, data[k], stop[k]);
	}
}

static void ex_sync(struct worker *w, const struct op *op)
{
	struct mapping *m = find_map(w, op->map);
	long long got[MAX_FS] = { 0 };
	char what[64];

	if (op->sub >= 2 && op->sub <= 3 && (!m || op->off + op->len > m->len))
		return;
	for (int i = 0; i < nfs; i++) {
		int fd = op->f >= 0 ? fss[i].fd[op->f] : -1, r;

		switch (op->sub) {
		case 0:
			r = fsync(fd);
			break;
		case 1:
			r = fdatasync(fd);
			break;
		case 2:
			r = msync(m->addr[i] + op->off, op->len, MS_SYNC);
			break;
		case 3:
			r = msync(m->addr[i] + op->off, op->len, MS_ASYNC);
			break;
		default:
			r = syncfs(fd);
			break;
		}
		got[i] = r ? -errno : 0;
	}
	snprintf(what, sizeof(what), "%s", sub_name(op->kind, op->sub));
	expect_rets(op, what, got, NULL, 0);
	/* Writeback may unmap what it wrote back: the next loads fault again. */
	if (m)
		touch_map(w, m, op->off, op->off + op->len);
}

static const void *dio_buf(struct worker *w, int i, const struct op *op)
{
	struct mapping *m = find_map(w, op->map);

	if (op->flags & F_MAPBUF)
		return m->addr[i] + op->off2;
	return op->sub == 0 ? w->rbuf[i] + (op->off2 & 511) : w->wbuf + (op->off2 & 511);
}

/*
 * read/write, through the O_DIRECT descriptor (F_DIRECT) and/or with a
 * buffer that is a mapping (F_MAPBUF): a read stores into the mapping, a
 * write loads from it. The generator keeps the buffer's range below its
 * file's EOF, apart from the range read or written, and for a write
 * made of known bytes only.
 */
static void ex_dio(struct worker *w, const struct op *op)
{
	struct mapping *m = find_map(w, op->map);
	int f = op->f;
	uint64_t size = fm(f)->size;
	long long got[MAX_FS], want;
	unsigned char *bufs[MAX_FS];
	char what[160];

	if (op->flags & F_MAPBUF) {
		if (!m || op->off2 + op->len > m->len)
			return;
		snprintf(what, sizeof(what), "%s%s of %s into/from mapping m%d +%#llx",
			 (op->flags & F_DIRECT) ? "O_DIRECT " : "", op->sub ? "write" : "read",
			 fname(f), m->id, (unsigned long long)op->off2);
	} else {
		snprintf(what, sizeof(what), "%s%s of %s", (op->flags & F_DIRECT) ? "O_DIRECT " : "",
			 op->sub ? "write" : "read", fname(f));
	}
	if (op->sub == 0) {
		want = op->off >= size ? 0 : (long long)min64(op->len, size - op->off);
		if (op->flags & F_MAPBUF) {
			/* The bytes the read will store into the mapping. */
			memcpy(w->wbuf, mdata[f] + op->off, want);
		}
		for (int i = 0; i < nfs; i++)
			got[i] = do_sys(w, i, op);
		expect_rets(op, what, got, NULL, want);
		if (op->flags & F_MAPBUF) {
			model_store(w, m, op->off2, w->wbuf, want);
			return;
		}
		for (int i = 0; i < nfs; i++)
			bufs[i] = (unsigned char *)dio_buf(w, i, op);
		expect_bytes(op, what, op->off, want, bufs, mdata[f] + op->off, NULL);
		return;
	}
	if (op->flags & F_MAPBUF) {
		if (view_expect(m, op->off2, op->len, w->exp, w->mask) != op->len ||
		    memchr(w->mask, 0, op->len))
			return;	/* not all known: an edited --replay log */
		memcpy(w->wbuf, w->exp, op->len);
		mapped_access(m->file, m->off + op->off2, m->off + op->off2 + op->len);
	} else {
		pat_fill(w->wbuf + (op->off2 & 511), op->len, op->off, op->step, TAG_WRITE);
	}
	for (int i = 0; i < nfs; i++)
		got[i] = do_sys(w, i, op);
	expect_rets(op, what, got, NULL, op->len);
	model_write(f, op->off, (op->flags & F_MAPBUF) ? w->wbuf : w->wbuf + (op->off2 & 511),
		    op->len);
	hole_clear(f, min64(size, op->off), op->off + op->len);
	refresh_stale(w, f, op->off, op->off + op->len);
	touch_file(w, f, min64(size, op->off), op->off + op->len);
}

/*
 * Registering io_uring fixed buffers from a mapping: a long-term pin
 * (FOLL_LONGTERM), which GUP refuses for fsdax pages (EOPNOTSUPP), so
 * that no truncation has to wait for a buffer nobody will release.
 */
static void ex_uring(struct worker *w, const struct op *op)
{
	struct mapping *m = find_map(w, op->map);
	long long got[MAX_FS], want;

	if (!m || w->ring_fd < 0 || op->off + op->len > m->len)
		return;
	mapped_access(m->file, m->off + op->off, m->off + op->off + op->len);
	for (int i = 0; i < nfs; i++) {
		struct iovec iov = { m->addr[i] + op->off, op->len };
		long r = syscall(__NR_io_uring_register, w->ring_fd, IORING_REGISTER_BUFFERS, &iov, 1);

		got[i] = r < 0 ? -errno : r;
		if (r >= 0)
			syscall(__NR_io_uring_register, w->ring_fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
	}
	/*
	 * GUP's fast path pins the present, writable anonymous pages (private
	 * copies) at the start of the range before the slow path refuses the
	 * first fsdax page: a partial pin is EFAULT, all copies succeed. Which
	 * copies are still mapped writable (fork write-protects them) is not
	 * modelled: the filesystems must agree. --dir (no DAX): agreement only.
	 */
	want = -EOPNOTSUPP;
	if (!cfg.setup || ((m->flags & M_PRIVATE) && m->copied[op->off / PAGE]))
		want = got[0];
	expect_rets(op, "io_uring buffer registration from a mapping", got, NULL, want);
	if (want != -EOPNOTSUPP && want != -EFAULT && want != 0) {
		diff_begin(op, "io_uring buffer registration from a mapping gave %s", errname(want));
		diff_end();
	}
	/* A registration pins for write: it breaks copy on write. */
	if (want >= 0 && (m->flags & M_PRIVATE))
		for (uint64_t r = op->off; r < op->off + op->len; r += PAGE)
			priv_copy(m, r / PAGE);
	touch_map(w, m, op->off, op->off + op->len);
}

/* SEEK_DATA/SEEK_HOLE at one offset, on each filesystem against the model only. */
static void ex_seek(struct worker *w, const struct op *op)
{
	int f = op->f;
	uint64_t size = fm(f)->size, at;

	for (int i = 0; i < nfs; i++) {
		off_t r = lseek(fss[i].fd[f], op->off, op->sub ? SEEK_HOLE : SEEK_DATA);
		long long err = r < 0 ? -errno : 0;
		const char *how = op->sub ? "SEEK_HOLE" : "SEEK_DATA";

		if (op->off >= size) {
			if (err != -ENXIO)
				layout_diff(w, i, f, "%s at %#llx, at or past EOF, gave %s, not ENXIO",
					    how, (unsigned long long)op->off,
					    err ? errname(err) : "an offset");
			continue;
		}
		if (err && !(err == -ENXIO && !op->sub))
			layout_diff(w, i, f, "%s at %#llx: %s", how, (unsigned long long)op->off,
				    errname(err));
		if (!op->sub) {
			uint64_t d = err ? size : (uint64_t)r;

			if (d < op->off || d > size || (!err && d == size))
				layout_diff(w, i, f, "SEEK_DATA at %#llx gave %#llx",
					    (unsigned long long)op->off, (unsigned long long)d);
			if (!model_zero(f, op->off, d, &at))
				layout_diff(w, i, f, "SEEK_DATA at %#llx skips data at %#llx (to %#llx)",
					    (unsigned long long)op->off, (unsigned long long)at,
					    (unsigned long long)d);
			continue;
		}
		if ((uint64_t)r < op->off || (uint64_t)r > size)
			layout_diff(w, i, f, "SEEK_HOLE at %#llx gave %#llx",
				    (unsigned long long)op->off, (unsigned long long)r);
		if ((uint64_t)r < size &&
		    !model_zero(f, r, min64(round_up(r + 1, PAGE), size), &at))
			layout_diff(w, i, f, "SEEK_HOLE at %#llx says a hole starts at %#llx, but the "
				    "file has data at %#llx", (unsigned long long)op->off,
				    (unsigned long long)r, (unsigned long long)at);
		if (punched_in(f, op->off, r) >= 0 &&
		    (uint64_t)punched_in(f, op->off, r) + PAGE <= size)
			layout_diff(w, i, f, "SEEK_HOLE at %#llx gave %#llx, past the punched block "
				    "at %#llx", (unsigned long long)op->off, (unsigned long long)r,
				    punched_in(f, op->off, r));
	}
}

/* ------------------------------------------------------------------ */
/* Choosing operations (from the model only, never from an answer)     */

/* A file worker @w may change now: its own, or in a serialized phase a shared one. */
static int pick_changeable(struct worker *w)
{
	if (cfg.procs == 1)
		return below(&w->rng, nfiles);
	if (w->serial)
		return cfg.procs * cfg.files + below(&w->rng, cfg.shared);
	return w->id * cfg.files + below(&w->rng, cfg.files);
}

/*
 * A file worker @w may read and map: its own and the shared ones, which
 * only change in serialized phases (another worker's own files change
 * under it at any time).
 */
static int pick_readable(struct worker *w)
{
	if (cfg.procs == 1)
		return below(&w->rng, nfiles);
	if (w->serial || chance(&w->rng, 30))
		return cfg.procs * cfg.files + below(&w->rng, cfg.shared);
	return w->id * cfg.files + below(&w->rng, cfg.files);
}

/* One of this worker's mappings (one it may store through: @store), or NULL. */
static struct mapping *pick_map(struct worker *w, bool store)
{
	struct mapping *c[MAX_MAPS];
	int n = 0;

	for (int i = 0; i < MAX_MAPS; i++) {
		struct mapping *m = &w->maps[i];

		if (m->id && (!store || may_store(w, m)))
			c[n++] = m;
	}
	return n ? c[below(&w->rng, n)] : NULL;
}

static uint64_t clamp_off(int64_t o)
{
	if (o < 0)
		return 0;
	return (uint64_t)o >= cfg.max_size ? cfg.max_size - 1 : (uint64_t)o;
}

/* An offset in [0, max_size): anywhere, near EOF, near 4 KiB and 2 MiB boundaries. */
static uint64_t pick_off(struct worker *w, int f)
{
	uint64_t *r = &w->rng, max = cfg.max_size;

	switch (below(r, 8)) {
	case 0: case 1:
		return below(r, max);
	case 2: case 3:
		return clamp_off((int64_t)fm(f)->size + jitter(r, 3 * PAGE));
	case 4:
		return clamp_off((int64_t)round_down(below(r, max), PAGE) + jitter(r, 16));
	case 5:
		return clamp_off((int64_t)round_down(below(r, max), PMD) + jitter(r, 2 * PAGE));
	case 6:
		return round_down(below(r, max), PAGE);
	default:
		return round_down(below(r, max), PMD);
	}
}

/*
 * A length from @off, at most @cap, ending by max_size: mostly bytes to
 * tens of KiB, now and then to (around) a 4 KiB or 2 MiB boundary or
 * megabytes. Large ones are rare: under TCG with a debug kernel a
 * megabyte costs xfs tens of milliseconds, and most bugs live at the
 * edges of ranges, not in their middles.
 */
static uint64_t pick_len(struct worker *w, uint64_t off, uint64_t cap)
{
	uint64_t *r = &w->rng, room = min64(cfg.max_size - off, cap), x = below(r, 100);
	int64_t n;

	if (x < 30)
		n = 1 + below(r, 64);
	else if (x < 55)
		n = 1 + below(r, PAGE);
	else if (x < 70)
		n = 1 + below(r, 32 * 1024);
	else if (x < 80)
		n = PAGE * (1 + below(r, 8));
	else if (x < 90)	/* to (around) the next 4 KiB or 2 MiB boundary */
		n = (int64_t)(round_up(off + 1, chance(r, 30) ? PMD : PAGE) - off) + jitter(r, 8);
	else if (x < 96)
		n = 1 + below(r, 256 * 1024);
	else if (x < 98)
		n = PMD + jitter(r, 2 * PAGE);
	else
		n = 1 + below(r, 4 * MIB);
	if (n < 1)
		n = 1;
	return room ? min64(n, room) : 1;
}

/* A new size for file @f: anywhere, unaligned, inside the EOF page, around 2 MiB. */
static uint64_t pick_size(struct worker *w, int f)
{
	uint64_t *r = &w->rng, max = cfg.max_size, size = fm(f)->size;
	int64_t s;

	switch (below(r, 10)) {
	case 0:
		s = below(r, max + 1);
		break;
	case 1:
		s = round_down(below(r, max + 1), PAGE);
		break;
	case 2: case 3:
		s = size + jitter(r, 2 * PAGE);
		break;
	case 4: case 5:
		s = round_down(size, PAGE) + below(r, PAGE);
		break;
	case 6:
		s = size + jitter(r, 64 * 1024);
		break;
	case 7:
		s = round_down(below(r, max + 1), PMD) + jitter(r, 16);
		break;
	case 8:
		s = below(r, 3 * PAGE);
		break;
	default:
		s = size ? below(r, size) : 0;
		break;
	}
	return s < 0 ? 0 : min64(s, max);
}

/*
 * Now and then an operation runs with a page of a mapping pinned. Write
 * and copy_file_range (also ext4's copy standing in for a clone) do not
 * wait for pins: their pinned page is never one they write
 * (KNOWN_PIN_WAIT), so @dest's [@lo, @hi) is avoided unless the page is a
 * private copy.
 */
static void maybe_pin(struct worker *w, struct op *op, int dest, uint64_t lo, uint64_t hi)
{
	struct mapping *m;
	uint64_t eofp, lim, p, fo;

	if (!en(CL_PINS) || !chance(&w->rng, 5))
		return;
	m = pick_map(w, false);
	if (!m)
		return;
	eofp = round_up(fm(m->file)->size, PAGE);
	lim = eofp > m->off ? min64(eofp - m->off, m->len) : 0;
	if (!lim)
		return;
	p = round_down(below(&w->rng, lim), PAGE);
	fo = m->off + p;
	if (dest >= 0 && m->file == dest && !((m->flags & M_PRIVATE) && m->copied[p / PAGE]) &&
	    fo < hi && fo + PAGE > lo)
		return;
	op->pin_map = m->id;
	op->pin_off = p;
}

/*
 * A store through @m (at most @maxn bytes): often across EOF, also past
 * the EOF page (SIGBUS), over page boundaries, whole pages, all of it.
 * Without the "tail" class, MAP_SHARED stores leave the EOF page's bytes
 * past EOF alone.
 */
static bool pick_store(struct worker *w, const struct mapping *m, uint64_t maxn, uint64_t *rel,
		       uint64_t *n)
{
	uint64_t *r = &w->rng, size = fm(m->file)->size, eofp = round_up(size, PAGE);
	int64_t eof_rel = (int64_t)size - (int64_t)m->off;
	uint64_t len = m->len, fo;

	switch (below(r, 200)) {
	case 0 ... 59:
		if (eof_rel >= -(int64_t)PAGE && eof_rel <= (int64_t)(len + PAGE)) {
			int64_t x = eof_rel + jitter(r, 300);

			*rel = x < 0 ? 0 : min64(x, len - 1);
			*n = 1 + below(r, 600);
			break;
		}
		/* fall through */
	case 60 ... 151:
		*rel = below(r, len);
		*n = chance(r, 80) ? 1 + below(r, PAGE) : 1 + below(r, 64 * 1024);
		break;
	case 152 ... 175: {
		int64_t x = (int64_t)round_down(below(r, len), PAGE) + jitter(r, 8);

		*rel = x < 0 ? 0 : min64(x, len - 1);
		*n = 1 + below(r, 64);
		break;
	}
	case 176 ... 198:
		*rel = round_down(below(r, len), PAGE);
		*n = PAGE * (1 + below(r, 8));
		break;
	default:	/* all of it (2 MiB-aligned ones: PMD faults) */
		*rel = 0;
		*n = len;
		break;
	}
	*n = min64(min64(*n, len - *rel), maxn);
	fo = m->off + *rel;
	if (!(m->flags & M_PRIVATE) && !en(CL_TAIL)) {
		if (fo < size) {
			*n = min64(*n, size - fo);
		} else if (fo < eofp) {
			*rel = eofp - m->off;
			*n = 1;
		}
	}
	return *rel < len && *n >= 1 && *rel + *n <= len;
}

static bool kind_enabled(const struct worker *w, int k)
{
	switch (k) {
	case K_READ:
		return en(CL_READ);
	case K_WRITE:
		return en(CL_WRITE);
	case K_TRUNCATE:
		return en(CL_TRUNCATE);
	case K_FALLOC:
		for (int s = 0; s < NR_FALLOC; s++)
			if (falloc_ok[s] && en(falloc_class[s]))
				return true;
		return false;
	case K_CLONE:
		return en(CL_CLONE);
	case K_COPY:
		return en(CL_COPY);
	case K_MAP:
	case K_UNMAP:
	case K_MSTORE:
	case K_MLOAD:
		return en(CL_MMAP);
	case K_MREMAP:
		return en(CL_MMAP) && en(CL_MREMAP);
	case K_FORK:
		return en(CL_MMAP) && en(CL_FORK);
	case K_SYNC:
		return en(CL_SYNC);
	case K_DIO:
		return en(CL_DIRECT) || (en(CL_MAPBUF) && en(CL_MMAP));
	case K_URING:
		return en(CL_MMAP) && en(CL_URING) && w->ring_fd >= 0;
	case K_SEEK:
		return en(CL_SEEK);
	case K_REMOUNT:
		return en(CL_REMOUNT) && cfg.procs == 1 && cfg.setup;
	}
	return false;
}

static bool gen_clone(struct worker *w, struct op *op)
{
	uint64_t *r = &w->rng, gs, l;
	int f = pick_changeable(w), g = chance(r, 20) ? f : pick_readable(w);

	op->f = f;
	op->g = g;
	gs = fm(g)->size;
	if (chance(r, 5)) {
		op->sub = 0;	/* FICLONE: all of g over the start of f */
		l = gs;
	} else {
		op->sub = 1;
		op->off2 = chance(r, 85) ? round_down(pick_off(w, g), PAGE) : pick_off(w, g);
		switch (below(r, 10)) {
		case 0: case 1: case 2:	/* to the source's (maybe unaligned) EOF */
			if (gs > 256 * 1024 && chance(r, 80))
				op->off2 = round_down(gs - below(r, 256 * 1024), PAGE);
			op->len = gs > op->off2 ? gs - op->off2 : PAGE;
			break;
		case 3:			/* 0: to EOF */
			op->len = 0;
			break;
		case 4:
			op->len = pick_len(w, op->off2, 4 * MIB);
			break;
		default:
			op->len = PAGE * (1 + below(r, chance(r, 90) ? 16 : 1024));
			break;
		}
		l = op->len ? op->len : gs > op->off2 ? gs - op->off2 : 0;
		for (int t = 0; t < 4; t++) {
			switch (below(r, 10)) {
			case 0: case 1:	/* at or past the destination's EOF: it grows */
				op->off = round_up(fm(f)->size, PAGE) + PAGE * below(r, 3);
				break;
			case 2:
				op->off = pick_off(w, f);
				break;
			default:
				op->off = round_down(pick_off(w, f), PAGE);
				break;
			}
			/* Within one file, mostly apart (overlap is EINVAL). */
			if (f != g || op->off + l <= op->off2 || op->off2 + l <= op->off ||
			    chance(r, 10))
				break;
		}
	}
	if (op->off + l > cfg.max_size)
		return false;
	maybe_pin(w, op, f, op->off, op->off + max64(l, 1));
	return true;
}

static bool gen_copy(struct worker *w, struct op *op)
{
	uint64_t *r = &w->rng;
	int f = pick_changeable(w), g = chance(r, 20) ? f : pick_readable(w);

	op->f = f;
	op->g = g;
	op->off2 = pick_off(w, g);
	op->len = pick_len(w, op->off2, 4 * MIB);
	for (int t = 0; t < 4; t++) {
		op->off = pick_off(w, f);
		if (f != g || op->off + op->len <= op->off2 || op->off2 + op->len <= op->off ||
		    chance(r, 10))
			break;
	}
	if (op->off + op->len > cfg.max_size)
		return false;
	maybe_pin(w, op, f, op->off, op->off + op->len);
	return true;
}

static bool gen_map(struct worker *w, struct op *op)
{
	uint64_t *r = &w->rng;
	unsigned int flags = 0;
	int f;

	if (live_maps(w) >= MAX_MAPS)
		return false;
	f = pick_readable(w);
	if (en(CL_PRIVATE) && chance(r, 30))
		flags |= M_PRIVATE;
	if (en(CL_HUGE) && chance(r, 12)) {
		flags |= M_HUGE | (chance(r, 20) ? M_MISALIGN : 0);
		op->off = PMD * below(r, cfg.max_size / PMD);
		op->len = PMD + PAGE * below(r, PMD / PAGE + 1);
	} else {
		uint64_t eof = round_down(fm(f)->size, PAGE);

		if (chance(r, 50))
			op->off = eof > 8 * PAGE ? eof - PAGE * below(r, 8) : eof;
		else
			op->off = round_down(below(r, cfg.max_size), PAGE);
		op->len = PAGE * (1 + below(r, chance(r, 70) ? 16 : 512));
	}
	if (!(flags & M_PRIVATE) && chance(r, 10) && map_sync_ok)
		flags |= M_SYNC;
	if (chance(r, 8))
		flags |= M_POPULATE;
	op->f = f;
	op->flags = flags;
	op->map = w->id * 1000000 + ++w->next_map;
	return true;
}

static bool gen_dio(struct worker *w, struct op *op)
{
	uint64_t *r = &w->rng;
	bool direct = en(CL_DIRECT) && chance(r, 70);
	bool mapbuf = en(CL_MAPBUF) && en(CL_MMAP) && chance(r, 50);

	if (!direct && !mapbuf) {
		if (en(CL_DIRECT))
			direct = true;
		else
			mapbuf = true;
	}
	op->sub = below(r, 2);
	op->f = op->sub ? pick_changeable(w) : pick_readable(w);
	op->off = pick_off(w, op->f);
	op->len = pick_len(w, op->off, 256 * 1024);
	op->flags = direct ? F_DIRECT : 0;
	for (int t = 0; mapbuf && t < 8; t++) {
		struct mapping *m = pick_map(w, op->sub == 0);
		uint64_t rel, n, ms, fo;

		if (!m)
			break;
		rel = chance(r, 50) ? round_down(below(r, m->len), PAGE) : below(r, m->len);
		n = min64(op->len, m->len - rel);
		ms = fm(m->file)->size;
		fo = m->off + rel;
		/* The buffer lies below its file's EOF, ... */
		if (fo >= ms)
			continue;
		n = min64(n, ms - fo);
		/* ... a read fills all of it (a short read's fault-in could copy
		 * private pages the read never stores to), ... */
		if (op->sub == 0) {
			if (op->off >= fm(op->f)->size)
				continue;
			n = min64(n, fm(op->f)->size - op->off);
		}
		/* ... apart from the range read or written, ... */
		if (m->file == op->f && fo < op->off + n && op->off < fo + n)
			continue;
		/* ... a write's not on a page it writes (KNOWN_XFS_COW_SELF_BUFFER), ... */
		if (op->sub == 1 && m->file == op->f && fo / PAGE <= (op->off + n - 1) / PAGE &&
		    op->off / PAGE <= (fo + n - 1) / PAGE)
			continue;
		/* ... and a write's bytes are all known. */
		if (op->sub == 1 && (m->flags & M_PRIVATE)) {
			view_expect(m, rel, n, w->exp, w->mask);
			if (memchr(w->mask, 0, n))
				continue;
		}
		op->flags |= F_MAPBUF;
		op->map = m->id;
		op->off2 = rel;
		op->len = n;
		return true;
	}
	if (!direct) {
		if (!en(CL_DIRECT))
			return false;
		op->flags |= F_DIRECT;
	}
	op->off2 = below(r, 512);	/* a heap buffer, often unaligned */
	return true;
}

static bool gen_kind(struct worker *w, struct op *op, int kind)
{
	uint64_t *r = &w->rng, rel, n;
	struct mapping *m;

	op->kind = kind;
	switch (kind) {
	case K_READ:
		op->f = pick_readable(w);
		op->sub = below(r, 3);
		op->off = pick_off(w, op->f);
		op->len = pick_len(w, op->off, 4 * MIB);
		return true;
	case K_WRITE:
		op->f = pick_changeable(w);
		op->sub = chance(r, 10) ? 3 : below(r, 3);
		op->off = op->sub == 3 ? fm(op->f)->size : pick_off(w, op->f);
		if (op->off >= cfg.max_size)
			return false;
		op->len = pick_len(w, op->off, 4 * MIB);
		maybe_pin(w, op, op->f, op->off, op->off + op->len);
		return true;
	case K_TRUNCATE:
		op->f = pick_changeable(w);
		op->off = pick_size(w, op->f);
		maybe_pin(w, op, -1, 0, 0);
		return true;
	case K_FALLOC: {
		int subs[NR_FALLOC], k = 0;

		for (int s = 0; s < NR_FALLOC; s++)
			if (falloc_ok[s] && en(falloc_class[s]))
				subs[k++] = s;
		op->sub = subs[below(r, k)];
		op->f = pick_changeable(w);
		op->off = pick_off(w, op->f);
		op->len = pick_len(w, op->off, 8 * MIB);
		maybe_pin(w, op, -1, 0, 0);
		return true;
	}
	case K_CLONE:
		return gen_clone(w, op);
	case K_COPY:
		return gen_copy(w, op);
	case K_MAP:
		return gen_map(w, op);
	case K_UNMAP:
		m = pick_map(w, false);
		if (!m)
			return gen_map(w, op) && (op->kind = K_MAP, true);
		op->map = m->id;
		op->sub = m->len > PAGE && chance(r, 30) ? 1 + below(r, 2) : 0;
		if (op->sub)
			op->len = PAGE * (1 + below(r, m->len / PAGE - 1));
		return true;
	case K_MREMAP:
		m = pick_map(w, false);
		if (!m)
			return false;
		op->map = m->id;
		op->sub = below(r, 3);
		if (op->sub == 1 && !en(CL_GROW))
			op->sub = 2;
		if (op->sub == 0) {
			if (m->len <= PAGE)
				return false;
			op->len = PAGE * (1 + below(r, m->len / PAGE - 1));
		} else if (op->sub == 1) {
			op->len = m->len + PAGE * (1 + below(r, chance(r, 70) ? 16 : 512));
			if (op->len > MAX_MAP_LEN)
				return false;
		} else {
			op->len = m->len;
		}
		return true;
	case K_MSTORE:
		m = pick_map(w, true);
		if (!m)
			return gen_map(w, op) && (op->kind = K_MAP, true);
		if (!pick_store(w, m, UINT64_MAX, &rel, &n))
			return false;
		op->map = m->id;
		op->off = rel;
		op->len = n;
		return true;
	case K_MLOAD:
		m = pick_map(w, false);
		if (!m)
			return false;
		op->map = m->id;
		op->off = below(r, m->len);
		op->len = chance(r, 30) ? m->len - op->off : 1 + below(r, min64(m->len - op->off, 65536));
		return true;
	case K_FORK:
		if (!pick_map(w, true))
			return false;
		op->nst = 1 + below(r, FORK_STORES);
		for (int k = 0; k < op->nst; k++) {
			m = pick_map(w, true);
			if (!pick_store(w, m, 1024, &rel, &n))
				return false;
			op->st[k].map = m->id;
			op->st[k].off = rel;
			op->st[k].len = n;
		}
		return true;
	case K_SYNC:
		op->sub = below(r, 5);
		if (op->sub == 2 || op->sub == 3) {
			m = pick_map(w, false);
			if (!m)
				return false;
			op->map = m->id;
			op->off = PAGE * below(r, m->len / PAGE);
			op->len = PAGE * (1 + below(r, (m->len - op->off) / PAGE));
		} else {
			op->f = pick_readable(w);
		}
		return true;
	case K_DIO:
		return gen_dio(w, op);
	case K_URING:
		m = pick_map(w, false);
		if (!m)
			return false;
		op->map = m->id;
		op->off = PAGE * below(r, m->len / PAGE);
		op->len = PAGE * (1 + below(r, min64(4, (m->len - op->off) / PAGE)));
		return true;
	case K_SEEK:
		op->f = pick_readable(w);
		op->sub = below(r, 2);
		op->off = pick_off(w, op->f);
		return true;
	case K_REMOUNT:
		return true;
	}
	return false;
}

static void gen_op(struct worker *w, struct op *op, uint64_t step)
{
	unsigned int total = 0;

	/* Choices look at private copies: drop those another worker's
	 * truncation discarded first. */
	apply_truncations(w);

	for (int k = 0; k < NR_KINDS; k++)
		total += kind_enabled(w, k) ? kind_weight[k] : 0;
	for (int tries = 0; tries < 1000; tries++) {
		unsigned int x = total ? below(&w->rng, total) : 0;
		int kind = 0;

		for (kind = 0; kind < NR_KINDS; kind++) {
			unsigned int wt = kind_enabled(w, kind) ? kind_weight[kind] : 0;

			if (x < wt)
				break;
			x -= wt;
		}
		if (kind == NR_KINDS)
			break;
		memset(op, 0, sizeof(*op));
		op->step = step;
		op->worker = w->id;
		op->f = op->g = -1;
		if (gen_kind(w, op, kind))
			return;
	}
	/* Nothing enabled can run now: a read, which changes nothing. */
	memset(op, 0, sizeof(*op));
	op->step = step;
	op->worker = w->id;
	op->g = -1;
	op->kind = K_READ;
	op->f = pick_readable(w);
	op->len = 1;
}

/* ------------------------------------------------------------------ */
/* Files, mounts                                                       */

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "difftest: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(2);
}

/* Runs a shell command, its output kept in /tmp/difftest.out; returns its status. */
static int __attribute__((format(printf, 1, 2))) run_cmd(const char *fmt, ...)
{
	char cmd[512], full[640];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "%s >/tmp/difftest.out 2>&1", cmd);
	fflush(NULL);
	st = system(full);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static void show_cmd_output(void)
{
	char buf[4096];
	int fd = open("/tmp/difftest.out", O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(1, buf, n) < 0)
			break;
	close(fd);
}

static void file_path(char *out, size_t n, int i, int f)
{
	snprintf(out, n, "%s/difftest.%s", fss[i].mnt, fname(f));
}

static void open_files(bool create)
{
	for (int i = 0; i < nfs; i++) {
		for (unsigned int f = 0; f < nfiles; f++) {
			char path[300];

			file_path(path, sizeof(path), i, f);
			fss[i].fd[f] = open(path, O_RDWR | (create ? O_CREAT | O_TRUNC : 0), 0644);
			if (fss[i].fd[f] < 0)
				die("open %s: %s", path, strerror(errno));
			fss[i].dfd[f] = fss[i].direct ? open(path, O_RDWR | O_DIRECT) : fss[i].fd[f];
			if (fss[i].dfd[f] < 0)
				die("open %s with O_DIRECT: %s", path, strerror(errno));
		}
	}
}

static void close_files(void)
{
	for (int i = 0; i < nfs; i++) {
		for (unsigned int f = 0; f < nfiles; f++) {
			if (fss[i].dfd[f] >= 0 && fss[i].dfd[f] != fss[i].fd[f])
				close(fss[i].dfd[f]);
			if (fss[i].fd[f] >= 0)
				close(fss[i].fd[f]);
			fss[i].fd[f] = fss[i].dfd[f] = -1;
		}
	}
}

static bool is_mounted(const char *dir)
{
	struct stat a, b;
	char parent[300];

	snprintf(parent, sizeof(parent), "%s/..", dir);
	return !stat(dir, &a) && !stat(parent, &b) && a.st_dev != b.st_dev;
}

/* Unmounts, retrying while busy (a child may still be exiting). */
static int do_umount(const char *dir)
{
	for (int i = 0; i < 200; i++) {
		if (!umount2(dir, 0))
			return 0;
		if (errno != EBUSY)
			return -errno;
		usleep(50000);
	}
	return -EBUSY;
}

static int do_mount(struct fs *fs)
{
	const char *opts = fs->kind->opts;

	if (!strcmp(fs->name, "oxdax") && cfg.oxdax_opts)
		opts = cfg.oxdax_opts;
	return mount(fs->dev, fs->mnt, fs->kind->type, 0, opts) ? -errno : 0;
}

/* What of this process still refers to @dir (a busy unmount). */
static void say_users(const char *dir)
{
	char line[512], path[64], target[512];
	FILE *maps = fopen("/proc/self/maps", "r");

	while (maps && fgets(line, sizeof(line), maps))
		if (strstr(line, dir))
			say("  mapped: %.*s", (int)strcspn(line, "\n"), line);
	if (maps)
		fclose(maps);
	for (int fd = 0; fd < 1024; fd++) {
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = 0;
		if (strstr(target, dir))
			say("  open: fd %d %s", fd, target);
	}
}

static void remount_all(void)
{
	for (int i = 0; i < nfs; i++) {
		int ret = do_umount(fss[i].mnt);

		if (!ret)
			ret = do_mount(&fss[i]);
		if (ret) {
			diff_begin(NULL, "%s: unmount and mount of %s: %s", fss[i].name, fss[i].mnt,
				   strerror(-ret));
			say_users(fss[i].mnt);
			diff_end();
		}
	}
}

/* Formats and mounts every filesystem. */
static void setup_filesystems(void)
{
	if (!oxdax_loaded()) {
		int ret = oxdax_load("");

		if (ret)
			die("loading %s: %s", OXDAX_KO, strerror(-ret));
	}
	for (int i = 0; i < nfs; i++) {
		struct fs *fs = &fss[i];
		int ret;

		for (int t = 0; t < 100 && access(fs->dev, F_OK); t++)
			usleep(100000);
		if (access(fs->dev, F_OK))
			die("%s: %s (%s needs its own NVDIMM: scripts/vm --nvdimm 512M "
			    "--nvdimm 512M --nvdimm 512M)", fs->dev, strerror(errno), fs->name);
		mkdir("/mnt/difftest", 0755);
		mkdir(fs->mnt, 0755);
		while (is_mounted(fs->mnt))
			if (umount2(fs->mnt, MNT_DETACH))
				break;
		if (run_cmd(fs->kind->mkfs, fs->dev)) {
			show_cmd_output();
			die("mkfs of %s on %s failed", fs->name, fs->dev);
		}
		ret = do_mount(fs);
		if (ret)
			die("mount -t %s %s %s: %s", fs->kind->type, fs->dev, fs->mnt, strerror(-ret));
		/* KNOWN_XFS_COWEXTSIZE: files inherit the directory's hint. */
		if (!strcmp(fs->name, "xfs") && run_cmd("xfs_io -c 'cowextsize 4096' %s", fs->mnt)) {
			show_cmd_output();
			die("xfs_io -c 'cowextsize 4096' %s failed", fs->mnt);
		}
	}
}

/*
 * What each filesystem can do, on a probe file: fallocate modes (one that
 * any of them refuses is left out, and said), FICLONE, O_DIRECT; and that
 * xfs and ext4 really run with DAX.
 */
static void probe_filesystems(void)
{
	for (int s = 0; s < NR_FALLOC; s++)
		falloc_ok[s] = true;
	for (int i = 0; i < nfs; i++) {
		struct fs *fs = &fss[i];
		char path[300], path2[300];
		struct statx stx;
		int fd, fd2;

		snprintf(path, sizeof(path), "%s/difftest.probe", fs->mnt);
		snprintf(path2, sizeof(path2), "%s/difftest.probe2", fs->mnt);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		fd2 = open(path2, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || fd2 < 0)
			die("%s: creating %s: %s", fs->name, path, strerror(errno));
		if (ftruncate(fd, 64 * 1024))
			die("%s: ftruncate: %s", fs->name, strerror(errno));
		if (!statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx)) {
			bool dax = stx.stx_attributes & STATX_ATTR_DAX;

			if (fs->kind && strcmp(fs->name, "oxdax") && !dax)
				die("%s on %s does not use DAX (STATX_ATTR_DAX is clear)", fs->name,
				    fs->dev);
			if (!cfg.quiet)
				printf("difftest: %s: files %s STATX_ATTR_DAX\n", fs->name,
				       dax ? "have" : "do not have");
		}
		for (int s = 0; s < NR_FALLOC; s++) {
			if (fallocate(fd, falloc_modes[s], 4096, 8192) && falloc_ok[s]) {
				printf("difftest: %s refuses fallocate mode %#x (%s): left out\n",
				       fs->name, falloc_modes[s], strerror(errno));
				falloc_ok[s] = false;
			}
		}
		{
			void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
				       MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
			struct fiemap fmp = { .fm_length = 64 * 1024 };

			if (p == MAP_FAILED) {
				printf("difftest: %s: MAP_SYNC: %s: no MAP_SYNC mappings\n", fs->name,
				       strerror(errno));
				map_sync_ok = false;
			} else {
				munmap(p, PAGE);
			}
			fiemap_ok[i] = !ioctl(fd, FS_IOC_FIEMAP, &fmp);
			if (!fiemap_ok[i])
				printf("difftest: %s: FIEMAP: %s: not checked there\n", fs->name,
				       strerror(errno));
		}
		fs->clone = !ioctl(fd2, FICLONE, fd);
		if (!fs->clone)
			printf("difftest: %s: FICLONE: %s%s\n", fs->name, strerror(errno),
			       strcmp(fs->name, "ext4") ? " (a clone becomes a copy here: this "
			       "hides reflink!)" : " (KNOWN_EXT4_REFLINK)");
		close(fd2);
		fd2 = open(path, O_RDWR | O_DIRECT);
		fs->direct = fd2 >= 0;
		if (!fs->direct)
			printf("difftest: %s: open(O_DIRECT): %s; O_DIRECT operations run "
			       "without it there (KNOWN_NO_DIRECT)\n", fs->name, strerror(errno));
		else
			close(fd2);
		close(fd);
		unlink(path);
		unlink(path2);
	}
}

/* Unmaps, closes, unmounts and (@check) runs every filesystem's checker; false if one fails. */
static bool teardown_fs(bool check)
{
	bool ok = true;

	if (self)
		drop_maps(self);
	close_files();
	if (!cfg.setup || cfg.keep)
		return true;
	for (int i = 0; i < nfs; i++) {
		int ret = do_umount(fss[i].mnt);

		if (ret) {
			printf("difftest: umount %s: %s\n", fss[i].mnt, strerror(-ret));
			umount2(fss[i].mnt, MNT_DETACH);
			ok = false;
			continue;
		}
		if (check && cfg.fsck && run_cmd(fss[i].kind->fsck, fss[i].dev)) {
			show_cmd_output();
			printf("difftest: seed %llu: %s does not check clean after the run (%s)\n",
			       (unsigned long long)cfg.seed, fss[i].name, fss[i].kind->fsck);
			ok = false;
		}
	}
	return ok;
}

static void teardown(bool check)
{
	teardown_fs(check);
}

/* ------------------------------------------------------------------ */
/* Running                                                             */

static void worker_init(struct worker *w, int id)
{
	struct io_uring_params p = { 0 };
	uint64_t buf = cfg.max_size + 2 * PMD + MAX_MAP_LEN;

	memset(w, 0, sizeof(*w));
	w->id = id;
	w->rng = (cfg.seed + 1) * 0x9E3779B97F4A7C15ull + (id + 1) * 0xD1B54A32D192ED03ull;
	w->rng |= 1;
	w->wbuf = xalloc(buf);
	for (int i = 0; i < nfs; i++) {
		w->rbuf[i] = xalloc(buf);
		w->pin_got[i] = xalloc(PAGE);
	}
	w->exp = xalloc(buf);
	w->mask = xalloc(buf);
	w->pin_exp = xalloc(PAGE);
	w->pin_mask = xalloc(PAGE);
	w->ring_fd = en(CL_URING) ? syscall(__NR_io_uring_setup, 4, &p) : -1;
}

static void full_check(struct worker *w, bool files, bool maps)
{
	double t0 = now();

	w->op = NULL;
	if (files)
		for (unsigned int f = 0; f < nfiles; f++)
			check_file(w, f);
	if (maps)
		check_maps(w, false);
	atomic_fetch_add(&sh->full_us, (now() - t0) * 1e6);
	if (files && maps)
		full_ok_step = atomic_load(&sh->last_step);
}

static void ex_remount(struct worker *w)
{
	drop_maps(w);
	close_files();
	remount_all();
	open_files(false);
	full_check(w, true, false);
}

static void run_op(struct worker *w, const struct op *op)
{
	double t0 = now(), t1;

	apply_truncations(w);
	w->op = op;
	w->ntouch = 0;
	ring_add(op);
	switch (op->kind) {
	case K_READ:
		ex_read(w, op);
		break;
	case K_WRITE:
		ex_write(w, op);
		break;
	case K_TRUNCATE:
		ex_truncate(w, op);
		break;
	case K_FALLOC:
		ex_falloc(w, op);
		break;
	case K_CLONE:
		ex_clone(w, op);
		break;
	case K_COPY:
		ex_copy(w, op);
		break;
	case K_MAP:
		ex_map(w, op);
		break;
	case K_UNMAP:
		ex_unmap(w, op);
		break;
	case K_MREMAP:
		ex_mremap(w, op);
		break;
	case K_MSTORE:
		ex_mstore(w, op);
		break;
	case K_MLOAD:
		ex_mload(w, op);
		break;
	case K_FORK:
		ex_fork(w, op);
		break;
	case K_SYNC:
		ex_sync(w, op);
		break;
	case K_DIO:
		ex_dio(w, op);
		break;
	case K_URING:
		ex_uring(w, op);
		break;
	case K_SEEK:
		ex_seek(w, op);
		break;
	case K_REMOUNT:
		ex_remount(w);
		break;
	}
	w->op = op;
	t1 = now();
	check_touched(w);
	/* Punching makes holes: check them at once. */
	if (op->kind == K_FALLOC && op->sub == 2)
		check_layout(w, op->f);
	atomic_fetch_add(&sh->count[op->kind], 1);
	atomic_fetch_add(&sh->us[op->kind], (t1 - t0) * 1e6);
	atomic_fetch_add(&sh->check_us, (now() - t1) * 1e6);
}

static double t_start;

static void progress(uint64_t done)
{
	static uint64_t next = 10000;

	if (cfg.quiet || done < next)
		return;
	next = done + 10000;
	printf("difftest: seed %llu: %llu operations, %.0f/s\n", (unsigned long long)cfg.seed,
	       (unsigned long long)done, done / (now() - t_start));
	fflush(stdout);
}

static uint64_t run_single(struct worker *w)
{
	struct op op;
	uint64_t step;

	for (step = 0; step < cfg.ops; step++) {
		gen_op(w, &op, step);
		run_op(w, &op);
		if ((step + 1) % cfg.check_every == 0)
			full_check(w, true, true);
		progress(step + 1);
	}
	return step;
}

static uint64_t run_replay(struct worker *w)
{
	FILE *in = fopen(cfg.replay_path, "r");
	char line[LINE * 2];
	uint64_t n = 0;
	struct op op;

	if (!in)
		die("%s: %s", cfg.replay_path, strerror(errno));
	while (fgets(line, sizeof(line), in)) {
		if (op_parse(line, &op))
			continue;
		if (op.step >= cfg.ops)
			break;
		if (op.kind == K_REMOUNT && !cfg.setup)
			continue;
		run_op(w, &op);
		if (++n % cfg.check_every == 0)
			full_check(w, true, true);
		progress(n);
	}
	fclose(in);
	return n;
}

/* Barriers of the driver and the workers (futex on shared memory). */
static void barrier_init(struct barrier *b, unsigned int n)
{
	atomic_store(&b->arrived, 0);
	atomic_store(&b->gen, 0);
	b->n = n;
}

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
		if (!in_worker_process) {
			siginfo_t si = { 0 };

			/* A worker that died without a report. */
			if (!waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) && si.si_pid) {
				atomic_store(&sh->abort, 1);
				return -1;
			}
		}
		syscall(SYS_futex, &b->gen, FUTEX_WAIT, gen, &ts, NULL, 0);
	}
	return 0;
}

static void __attribute__((noreturn)) worker_process(struct worker *w)
{
	in_worker_process = true;
	signal(SIGTERM, SIG_DFL);
	/* Descriptors of its own: O_APPEND is toggled on them. */
	close_files();
	open_files(false);
	for (;;) {
		uint64_t base;
		struct op op;

		if (barrier_wait(&sh->bar))
			_exit(1);
		switch (sh->cmd) {
		case CMD_OWN:
			base = sh->cmd_step + (uint64_t)w->id * cfg.round_ops;
			for (unsigned int i = 0; i < cfg.round_ops && base + i < cfg.ops; i++) {
				gen_op(w, &op, base + i);
				run_op(w, &op);
			}
			break;
		case CMD_SERIAL:
			if (sh->cmd_worker != w->id)
				break;
			w->serial = true;
			gen_op(w, &op, sh->cmd_step);
			run_op(w, &op);
			w->serial = false;
			break;
		case CMD_CHECK_SHARED:
			w->op = NULL;
			/* Another worker may have written them: KNOWN_EXT4_STALE_ZERO. */
			for (unsigned int f = cfg.procs * cfg.files; f < nfiles; f++)
				refresh_stale(w, f, 0, cfg.max_size + 2 * MAX_MAP_LEN);
			check_maps(w, true);
			break;
		case CMD_FULL:
			w->op = NULL;
			check_maps(w, false);
			break;
		case CMD_DROP:
			drop_maps(w);
			close_files();
			break;
		case CMD_REOPEN:
			open_files(false);
			break;
		case CMD_EXIT:
			drop_maps(w);
			close_files();
			_exit(0);
		}
		if (barrier_wait(&sh->bar))
			_exit(1);
	}
}

static pid_t pids[MAX_PROCS];

/* Tells the workers what to do next and waits until they did it. */
static void command(int cmd, int worker, uint64_t step)
{
	sh->cmd = cmd;
	sh->cmd_worker = worker;
	sh->cmd_step = step;
	if (barrier_wait(&sh->bar) || barrier_wait(&sh->bar)) {
		int status;

		/* A worker reported a difference (or died): stop them all. */
		for (unsigned int p = 0; p < cfg.procs; p++)
			kill(pids[p], SIGKILL);
		for (unsigned int p = 0; p < cfg.procs; p++)
			waitpid(pids[p], &status, 0);
		printf("difftest: seed %llu: a worker stopped the run (step %llu)\n",
		       (unsigned long long)cfg.seed, (unsigned long long)atomic_load(&sh->last_step));
		teardown(false);
		exit(1);
	}
}

/*
 * --procs P: P workers run rounds of round_ops operations each on their
 * own files at once, then serial_ops operations, one worker at a time, on
 * the shared files (also a remount now and then), then each checks its
 * mappings of shared files. Step numbers are fixed by the round, the
 * worker and the operation's place in it, so runs are reproducible.
 */
static uint64_t run_multi(struct worker *drv)
{
	uint64_t per_round = cfg.procs * cfg.round_ops + cfg.serial_ops, done = 0, checked = 0;

	barrier_init(&sh->bar, cfg.procs + 1);
	fflush(NULL);
	for (unsigned int p = 0; p < cfg.procs; p++) {
		pids[p] = fork();
		if (pids[p] < 0)
			die("fork: %s", strerror(errno));
		if (pids[p] == 0) {
			static struct worker w;

			worker_init(&w, p);
			self = &w;
			worker_process(&w);
		}
	}
	for (uint64_t round = 0;; round++) {
		uint64_t base = round * per_round;

		if (base >= cfg.ops)
			break;
		command(CMD_OWN, -1, base);
		for (unsigned int j = 0; j < cfg.serial_ops; j++) {
			uint64_t s = base + cfg.procs * cfg.round_ops + j;

			if (s >= cfg.ops)
				break;
			if (en(CL_REMOUNT) && cfg.setup &&
			    below(&drv->rng, cfg.serial_ops * 1000) < per_round) {
				struct op op = { .step = s, .worker = -1, .kind = K_REMOUNT, .f = -1,
						 .g = -1 };

				ring_add(&op);
				command(CMD_DROP, -1, s);
				close_files();
				remount_all();
				open_files(false);
				command(CMD_REOPEN, -1, s);
				full_check(drv, true, false);
				atomic_fetch_add(&sh->count[K_REMOUNT], 1);
				continue;
			}
			command(CMD_SERIAL, below(&drv->rng, cfg.procs), s);
		}
		command(CMD_CHECK_SHARED, -1, 0);
		done = min64(base + per_round, cfg.ops);
		if (done / cfg.check_every > checked) {
			checked = done / cfg.check_every;
			command(CMD_FULL, -1, 0);
			full_check(drv, true, false);
		}
		progress(done);
	}
	command(CMD_FULL, -1, 0);
	sh->cmd = CMD_EXIT;
	barrier_wait(&sh->bar);
	for (unsigned int p = 0; p < cfg.procs; p++) {
		int status;

		if (waitpid(pids[p], &status, 0) != pids[p] || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			die("worker %u ended with status %#x", p, status);
	}
	return done;
}

/* ------------------------------------------------------------------ */
/* main                                                                */

static void usage(FILE *out)
{
	fprintf(out,
"usage: difftest [OPTIONS]\n"
"Runs one seeded sequence of operations on oxdax (/dev/oxpmem0), xfs -o dax=always\n"
"(/dev/oxpmem1) and ext4 -o dax (/dev/oxpmem2), formatted and mounted here under\n"
"/mnt/difftest, and compares them after every step with each other and a model.\n"
"Exit status 0: no difference; 1: a difference (reported); 2: could not run.\n"
"\n"
"  --seed S          the seed (default: from the clock; always printed)\n"
"  --ops N           operations (steps 0..N-1; default 10000)\n"
"  --files K         files (per worker with --procs; default 4)\n"
"  --procs P         worker processes on their own files, plus --shared files\n"
"                    they change one at a time (default 1, at most %d)\n"
"  --shared K        shared files with --procs > 1 (default 2)\n"
"  --max-size MIB    largest file, a multiple of 2 (default 8)\n"
"  --check-every K   every byte of every file and mapping every K steps (300)\n"
"  --no-CLASS        leave a class of operations out (repeatable), e.g.\n"
"                    --no-private to run past a known MAP_PRIVATE bug\n"
"  --only C1,C2,...  only these classes (plus read and write)\n"
"  --fs A,B,...      filesystems among oxdax,xfs,ext4 (default all three)\n"
"  --oxdax-opts O    mount oxdax with options O (e.g. fault_engine=iomap)\n"
"  --dir NAME=PATH   use the directory PATH as filesystem NAME (no mkfs, mount,\n"
"                    remount or fsck; repeatable; for trying the tester itself)\n"
"  --log FILE        write every operation as a line\n"
"  --replay FILE     run the operations of such a log instead (one process;\n"
"                    the same --files/--procs/--shared/--max-size)\n"
"  --no-fsck         do not check the filesystems at the end\n"
"  --keep            leave them mounted at the end (to look at them)\n"
"  --quiet           no progress lines\n"
"  --known           list what is not compared, and why\n"
"\n"
"Classes:\n", MAX_PROCS - 1);
	for (int c = 0; c < NR_CLASSES; c++)
		fprintf(out, "  %-11s %s\n", class_names[c], class_help[c]);
}

static int class_by_name(const char *name, size_t len)
{
	for (int c = 0; c < NR_CLASSES; c++)
		if (strlen(class_names[c]) == len && !strncmp(class_names[c], name, len))
			return c;
	return -1;
}

static uint64_t num_arg(const char *opt, const char *v)
{
	char *end;
	uint64_t x;

	if (!v)
		die("%s needs a value", opt);
	errno = 0;
	x = strtoull(v, &end, 0);
	if (errno || *end || end == v)
		die("%s: not a number: %s", opt, v);
	return x;
}

static void parse_args(int argc, char **argv)
{
	int ndirs = 0;
	bool seeded = false;

	for (int c = 0; c < NR_CLASSES; c++)
		cfg.enabled[c] = true;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			exit(0);
		} else if (!strcmp(a, "--known")) {
			for (int k = 0; k < NR_KNOWN; k++)
				printf("%-5s %s:\n      %s\n", known[k].fs, known[k].what, known[k].why);
			exit(0);
		} else if (!strcmp(a, "--seed")) {
			cfg.seed = num_arg(a, v), i++;
			seeded = true;
		} else if (!strcmp(a, "--ops")) {
			cfg.ops = num_arg(a, v), i++;
		} else if (!strcmp(a, "--files")) {
			cfg.files = num_arg(a, v), i++;
		} else if (!strcmp(a, "--procs")) {
			cfg.procs = num_arg(a, v), i++;
		} else if (!strcmp(a, "--shared")) {
			cfg.shared = num_arg(a, v), i++;
		} else if (!strcmp(a, "--max-size")) {
			cfg.max_size = num_arg(a, v) * MIB, i++;
		} else if (!strcmp(a, "--check-every")) {
			cfg.check_every = num_arg(a, v), i++;
		} else if (!strcmp(a, "--fs")) {
			if (!v)
				die("--fs needs a list");
			cfg.fs_list = v, i++;
		} else if (!strcmp(a, "--oxdax-opts")) {
			if (!v)
				die("--oxdax-opts needs mount options");
			cfg.oxdax_opts = v, i++;
		} else if (!strcmp(a, "--dir")) {
			if (!v || !strchr(v, '=') || ndirs == MAX_FS)
				die("--dir NAME=PATH (at most %d)", MAX_FS);
			cfg.dirs[ndirs++] = strdup(v), i++;
		} else if (!strcmp(a, "--log")) {
			if (!v)
				die("--log needs a file");
			cfg.log_path = v, i++;
		} else if (!strcmp(a, "--replay")) {
			if (!v)
				die("--replay needs a file");
			cfg.replay_path = v, i++;
		} else if (!strcmp(a, "--no-fsck")) {
			cfg.fsck = false;
		} else if (!strcmp(a, "--keep")) {
			cfg.keep = true;
		} else if (!strcmp(a, "--quiet")) {
			cfg.quiet = true;
		} else if (!strcmp(a, "--only")) {
			if (!v)
				die("--only needs a list of classes");
			for (int c = 0; c < NR_CLASSES; c++)
				cfg.enabled[c] = c == CL_READ || c == CL_WRITE;
			for (const char *p = v; *p;) {
				size_t n = strcspn(p, ",");
				int c = class_by_name(p, n);

				if (c < 0)
					die("--only: no class '%.*s' (difftest --help lists them)", (int)n, p);
				cfg.enabled[c] = true;
				p += n + (p[n] == ',');
			}
			i++;
		} else if (!strncmp(a, "--no-", 5) && class_by_name(a + 5, strlen(a + 5)) >= 0) {
			cfg.enabled[class_by_name(a + 5, strlen(a + 5))] = false;
		} else {
			usage(stderr);
			die("unknown option %s", a);
		}
	}
	if (!seeded)
		cfg.seed = (uint64_t)time(NULL) * 1000003 ^ getpid();
	if (!cfg.ops)
		cfg.ops = cfg.replay_path ? UINT64_MAX : 10000;
	if (!cfg.files || cfg.procs < 1 || cfg.procs >= MAX_PROCS || !cfg.check_every)
		die("--files, --procs (1..%d) and --check-every must be positive", MAX_PROCS - 1);
	if (cfg.procs == 1)
		cfg.shared = 0;
	else if (!cfg.shared)
		die("--procs > 1 needs --shared files");
	nfiles = cfg.procs == 1 ? cfg.files : cfg.procs * cfg.files + cfg.shared;
	if (nfiles > MAX_FILES)
		die("%u files: at most %d", nfiles, MAX_FILES);
	if (cfg.max_size < PMD || cfg.max_size % PMD || cfg.max_size > 256 * MIB)
		die("--max-size: a multiple of 2 between 2 and 256");
	if (ndirs) {
		cfg.setup = false;
		cfg.enabled[CL_REMOUNT] = false;
		/* Page cache filesystems change a pinned page without waiting
		 * (a truncation zeroes the EOF page's tail in place). */
		cfg.enabled[CL_PINS] = false;
		for (int i = 0; i < ndirs; i++) {
			char *eq = strchr(cfg.dirs[i], '=');

			*eq = 0;
			snprintf(fss[i].name, sizeof(fss[i].name), "%s", cfg.dirs[i]);
			snprintf(fss[i].mnt, sizeof(fss[i].mnt), "%s", eq + 1);
		}
		nfs = ndirs;
		return;
	}
	for (const char *p = cfg.fs_list; *p;) {
		size_t n = strcspn(p, ",");
		bool found = false;

		for (size_t k = 0; k < sizeof(fs_kinds) / sizeof(fs_kinds[0]); k++) {
			if (strlen(fs_kinds[k].name) != n || strncmp(fs_kinds[k].name, p, n))
				continue;
			if (nfs == MAX_FS)
				die("--fs: at most %d", MAX_FS);
			fss[nfs].kind = &fs_kinds[k];
			fss[nfs].no_tail = !strcmp(fs_kinds[k].name, "ext4");
			fss[nfs].stale_zero = fss[nfs].no_tail;
			snprintf(fss[nfs].name, sizeof(fss[nfs].name), "%s", fs_kinds[k].name);
			snprintf(fss[nfs].dev, sizeof(fss[nfs].dev), "%s", fs_kinds[k].dev);
			snprintf(fss[nfs].mnt, sizeof(fss[nfs].mnt), "/mnt/difftest/%s",
				 fs_kinds[k].name);
			nfs++;
			found = true;
		}
		if (!found)
			die("--fs: no filesystem '%.*s' (oxdax, xfs, ext4)", (int)n, p);
		p += n + (p[n] == ',');
	}
	if (!nfs)
		die("no filesystem");
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_sigaction = on_fault, .sa_flags = SA_SIGINFO };
	static struct worker w0;
	char disabled[512] = "";
	uint64_t done;
	double secs;
	bool ok;

	saved_argc = argc;
	saved_argv = argv;
	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv);

	/* The model and the state shared with workers, before any fork. */
	msize = cfg.max_size + 2 * PMD + MAX_MAP_LEN;
	sh = shared_alloc(sizeof(*sh));
	for (unsigned int f = 0; f < nfiles; f++) {
		mdata[f] = shared_alloc(msize);
		mhole[f] = shared_alloc(msize / PAGE);
		for (unsigned int p = 0; p < MAX_PROCS; p++)
			fm(f)->trunc_min[p] = UINT64_MAX;
	}
	for (int i = 0; i < nfs; i++)
		for (unsigned int f = 0; f < MAX_FILES; f++)
			fss[i].fd[f] = fss[i].dfd[f] = -1;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (cfg.setup)
		setup_filesystems();
	probe_filesystems();
	open_files(true);
	if (cfg.log_path) {
		log_fd = open(cfg.log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
		if (log_fd < 0)
			die("%s: %s", cfg.log_path, strerror(errno));
	}
	worker_init(&w0, cfg.procs == 1 || cfg.replay_path ? 0 : cfg.procs);
	self = &w0;
	if (en(CL_URING) && w0.ring_fd < 0) {
		printf("difftest: io_uring_setup: %s: no io_uring operations\n", strerror(errno));
		cfg.enabled[CL_URING] = false;
	}
	for (int c = 0; c < NR_CLASSES; c++)
		if (!cfg.enabled[c])
			snprintf(disabled + strlen(disabled), sizeof(disabled) - strlen(disabled),
				 " %s", class_names[c]);
	printf("difftest: seed %llu, %llu operations, %u files of up to %llu MiB, %u process%s%s;",
	       (unsigned long long)cfg.seed, (unsigned long long)cfg.ops, nfiles,
	       (unsigned long long)(cfg.max_size / MIB), cfg.procs, cfg.procs > 1 ? "es" : "",
	       cfg.replay_path ? " (replaying, in one)" : "");
	for (int i = 0; i < nfs; i++)
		printf(" %s%s%s%s", fss[i].name,
		       !strcmp(fss[i].name, "oxdax") && cfg.oxdax_opts ? " -o " : "",
		       !strcmp(fss[i].name, "oxdax") && cfg.oxdax_opts ? cfg.oxdax_opts : "",
		       i + 1 < nfs ? "," : "");
	printf("%s%s\n", *disabled ? "; left out:" : "", disabled);

	t_start = now();
	if (cfg.replay_path)
		done = run_replay(&w0);
	else if (cfg.procs == 1)
		done = run_single(&w0);
	else
		done = run_multi(&w0);
	full_check(&w0, true, true);
	secs = now() - t_start;
	ok = teardown_fs(true);
	printf("difftest: seed %llu: %llu operations in %.1f s (%.0f/s), %s\n",
	       (unsigned long long)cfg.seed, (unsigned long long)done, secs, done / secs,
	       ok ? "no difference" : "the filesystems do not check clean");
	if (!cfg.quiet) {
		char line[1024];
		int len = 0;

		for (int k = 0; k < NR_KINDS; k++)
			len += snprintf(line + len, sizeof(line) - len, " %s=%lu", kind_names[k],
					atomic_load(&sh->count[k]));
		printf("difftest: operations:%s\n", line);
		len = 0;
		for (int k = 0; k < NR_KINDS; k++)
			len += snprintf(line + len, sizeof(line) - len, " %s=%lu", kind_names[k],
					atomic_load(&sh->us[k]) / 1000);
		printf("difftest: time (ms):%s; checks after steps %lu, full checks %lu\n", line,
		       atomic_load(&sh->check_us) / 1000, atomic_load(&sh->full_us) / 1000);
		for (int k = 0; k < NR_KINDS; k++) {
			unsigned long t = 0;

			len = 0;
			for (int i = 0; i < nfs; i++) {
				t += atomic_load(&sh->fs_us[k][i]);
				len += snprintf(line + len, sizeof(line) - len, " %s=%lu", fss[i].name,
						atomic_load(&sh->fs_us[k][i]) / 1000);
			}
			if (t)
				printf("difftest: %s: time in system calls or stores (ms):%s\n",
				       kind_names[k], line);
		}
		printf("difftest: %lu checks, %lu MiB compared, %lu pins, %lu forks, %lu SIGBUS "
		       "expected and seen\n", atomic_load(&sh->checks),
		       atomic_load(&sh->bytes_checked) >> 20, atomic_load(&sh->pins),
		       atomic_load(&sh->forks), atomic_load(&sh->sigbus));
	}
	return ok ? 0 : 1;
}
