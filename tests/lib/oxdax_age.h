/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A seeded filesystem ager: ages the filesystem mounted at a directory by a
 * churn of creates, appends and deletes, for the huge-page placement test
 * (tests/guest/fs_huge_placement.c) and the aging benchmark (daxbench age).
 *
 *  1. churn: create a file (write(2) in mixed chunk sizes), append to a
 *     live file, or delete one, with sizes from 4 KiB to 8 MiB (most files
 *     small, as on real filesystems; sizes not page multiples), until the
 *     filesystem is at least @full_pct % full and at least @written_x10 /
 *     10 times its size has been written. While at or above @full_pct % it
 *     deletes rather than grows, so the churn runs at that fullness;
 *     ENOSPC counts as full.
 *  2. thin: delete files at random until it is at most @final_pct % full,
 *     counted and by statvfs.
 *
 * Fullness is counted by the ager: what statvfs showed in use at the
 * start plus the live files' sizes in 4 KiB pages, of statvfs's size. So
 * one seed gives one sequence of operations on every run on a filesystem
 * of that size (statvfs itself moves with background work: xfs frees
 * unlinked inodes later and keeps speculative preallocation; metadata is
 * not counted). Only the end of the thinning follows statvfs. Works on any
 * filesystem: files only, under DIR/age/, with plain system calls.
 *
 * Plain C, no test harness: age_fs() returns 0 or -errno and fills
 * struct age_stats.
 */
#ifndef OXDAX_AGE_H
#define OXDAX_AGE_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

struct age_params {
	unsigned int full_pct;		/* churn at this fullness (85) */
	unsigned int written_x10;	/* until 10ths of the size written (30: 3x) */
	unsigned int final_pct;		/* then thin to this fullness (60) */
	uint64_t seed;
	bool verbose;			/* progress lines on stderr ("# age: ...") */
};

#define AGE_DEFAULTS { .full_pct = 85, .written_x10 = 30, .final_pct = 60, .seed = 1 }

struct age_stats {
	uint64_t fs_bytes;		/* statvfs size of the filesystem */
	uint64_t written;		/* bytes written by write(2) */
	unsigned long creates, appends, deletes, enospc, steps;
	unsigned long live;		/* files left */
	unsigned int used_pct_max;	/* fullest statvfs reading */
	unsigned int used_pct;		/* statvfs's fullness at the end */
};

#define AGE_DIR "age"
#define AGE_MAX_FILES 65536
#define AGE_BUF (1ul << 20)

/* splitmix64: small, fast, and the same on every machine. */
static inline uint64_t age_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/*
 * A file size from two random draws: 40 % 4-64 KiB, 30 % 64 KiB-1 MiB,
 * 25 % 1-4 MiB, 5 % 4-8 MiB; within a class each octave equally likely and
 * any byte count within it (roughly log-uniform, most files small).
 */
static inline uint64_t age_file_size(uint64_t r1, uint64_t r2)
{
	static const struct { unsigned int pct, lo_shift, hi_shift; } classes[] = {
		{ 40, 12, 16 }, { 30, 16, 20 }, { 25, 20, 22 }, { 5, 22, 23 },
	};
	unsigned int pick = r1 % 100, i = 0, octave;
	uint64_t base;

	while (i + 1 < sizeof(classes) / sizeof(classes[0]) && pick >= classes[i].pct) {
		pick -= classes[i].pct;
		i++;
	}
	octave = classes[i].lo_shift + (r1 >> 16) % (classes[i].hi_shift - classes[i].lo_shift);
	base = 1ull << octave;
	return base + r2 % base;
}

/* A write(2) size: 4 KiB, 16 KiB, 64 KiB, 256 KiB or 1 MiB, or 1 byte to
 * 128 KiB (so that appends end anywhere in a page). */
static inline size_t age_chunk_size(uint64_t r)
{
	static const size_t sizes[] = { 4096, 16384, 65536, 262144, 1048576 };
	unsigned int pick = r % 6;

	if (pick < 5)
		return sizes[pick];
	return 1 + (r >> 8) % (128 * 1024);
}

struct age_state {
	const char *dir;
	uint64_t rng;
	uint32_t *ids;			/* live files' numbers */
	uint64_t *sizes;		/* and sizes */
	unsigned long live;
	uint64_t used;			/* bytes in use: at the start + live files' pages */
	uint64_t capacity;		/* statvfs size */
	uint32_t next_id;
	char *buf;
	struct age_stats *st;
};

static inline const char *age_name(const struct age_state *s, uint32_t id)
{
	static char path[4200];

	snprintf(path, sizeof(path), "%s/" AGE_DIR "/%08x", s->dir, (unsigned int)id);
	return path;
}

/* Fullness of the filesystem in percent (0 on error). */
static inline unsigned int age_used_pct(const char *dir, uint64_t *fs_bytes)
{
	struct statvfs v;

	if (statvfs(dir, &v) || !v.f_blocks)
		return 0;
	if (fs_bytes)
		*fs_bytes = (uint64_t)v.f_blocks * v.f_frsize;
	return (unsigned int)(100 * (v.f_blocks - v.f_bfree) / v.f_blocks);
}

static inline uint64_t age_pages(uint64_t bytes)
{
	return (bytes + 4095) / 4096 * 4096;
}

/* Fullness in percent as the ager counts it (deterministic). */
static inline unsigned int age_counted_pct(const struct age_state *s)
{
	return (unsigned int)(100 * s->used / s->capacity);
}

/* Appends @len bytes to live file @i, open as @fd, in write(2) calls of
 * mixed sizes; returns 0, -ENOSPC (what was written stays) or -errno. */
static inline int age_append(struct age_state *s, unsigned long i, int fd, uint64_t len)
{
	while (len) {
		size_t n = age_chunk_size(age_rand(&s->rng));
		ssize_t got;

		if (n > len)
			n = len;
		if (n > AGE_BUF)
			n = AGE_BUF;
		got = write(fd, s->buf, n);
		if (got < 0)
			return errno == ENOSPC || errno == EDQUOT ? -ENOSPC : -errno;
		s->st->written += got;
		s->used += age_pages(s->sizes[i] + got) - age_pages(s->sizes[i]);
		s->sizes[i] += got;
		if ((size_t)got < n)
			return -ENOSPC;
		len -= got;
	}
	return 0;
}

static inline int age_delete(struct age_state *s, uint64_t r)
{
	unsigned long i;

	if (!s->live)
		return 0;
	i = r % s->live;
	if (unlink(age_name(s, s->ids[i])))
		return -errno;
	s->used -= age_pages(s->sizes[i]);
	s->ids[i] = s->ids[--s->live];
	s->sizes[i] = s->sizes[s->live];
	s->st->deletes++;
	return 0;
}

/* One churn step: create, append or delete, as the draws and @grow say. */
static inline int age_step(struct age_state *s, bool grow)
{
	uint64_t r_op = age_rand(&s->rng), r_file = age_rand(&s->rng);
	uint64_t r_size1 = age_rand(&s->rng), r_size2 = age_rand(&s->rng);
	unsigned int op = r_op % 100;
	int fd, ret;

	s->st->steps++;
	/* Growing: 55 % create, 25 % append, 20 % delete. Full: delete. */
	if (!grow && !s->live)
		return -ENOSPC;		/* full of what is not the ager's */
	if (!grow || op >= 80 || s->live == AGE_MAX_FILES)
		return age_delete(s, r_file);
	if (op < 55 || !s->live) {
		uint32_t id = s->next_id++;

		fd = open(age_name(s, id), O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			return errno == ENOSPC ? -ENOSPC : -errno;
		s->ids[s->live] = id;
		s->sizes[s->live] = 0;
		s->st->creates++;
		ret = age_append(s, s->live++, fd, age_file_size(r_size1, r_size2));
	} else {
		unsigned long i = r_file % s->live;

		fd = open(age_name(s, s->ids[i]), O_WRONLY | O_APPEND);
		if (fd < 0)
			return -errno;
		s->st->appends++;
		/* An append: up to a quarter of a new file's size mix. */
		ret = age_append(s, i, fd, age_file_size(r_size1, r_size2) / 4 + 1);
	}
	if (close(fd) && !ret)
		ret = errno == ENOSPC ? -ENOSPC : -errno;
	return ret;
}

/*
 * Ages the filesystem mounted at @dir (files under @dir/age/, left there)
 * as @p says; fills @st. Returns 0 or -errno (the first error that is not
 * ENOSPC).
 */
static inline int age_fs(const char *dir, const struct age_params *p, struct age_stats *st)
{
	struct age_state s = { .dir = dir, .rng = p->seed, .st = st };
	struct statvfs v;
	char sub[4200];
	uint64_t target;
	int ret = 0;

	memset(st, 0, sizeof(*st));
	snprintf(sub, sizeof(sub), "%s/" AGE_DIR, dir);
	if (statvfs(dir, &v) || !v.f_blocks || (mkdir(sub, 0755) && errno != EEXIST))
		return -errno;
	s.capacity = st->fs_bytes = (uint64_t)v.f_blocks * v.f_frsize;
	s.used = (uint64_t)(v.f_blocks - v.f_bfree) * v.f_frsize;
	target = st->fs_bytes / 10 * p->written_x10;
	s.ids = calloc(AGE_MAX_FILES, sizeof(*s.ids));
	s.sizes = calloc(AGE_MAX_FILES, sizeof(*s.sizes));
	s.buf = malloc(AGE_BUF);
	if (!s.ids || !s.sizes || !s.buf) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < AGE_BUF; i++)
		s.buf[i] = (char)(0x5a ^ (i * 131));

	/* 1. Churn at the target fullness until enough was written. */
	while (st->written < target || age_counted_pct(&s) < p->full_pct) {
		unsigned int used;

		ret = age_step(&s, age_counted_pct(&s) < p->full_pct);
		if (ret == -ENOSPC) {
			st->enospc++;
			/* Full before the count says so: make room, go on. */
			ret = age_delete(&s, age_rand(&s.rng));
		}
		if (ret)
			break;
		if (st->enospc > 1000 + st->steps / 2) {
			ret = -ENOSPC;	/* nothing fits: a filesystem this small */
			break;
		}
		used = age_used_pct(dir, NULL);
		if (used > st->used_pct_max)
			st->used_pct_max = used;
		if (p->verbose && st->steps % 500 == 0)
			fprintf(stderr, "# age: %lu steps, %u%% full (%u%% counted), "
				"%llu MiB written of %llu\n", st->steps, used,
				age_counted_pct(&s), (unsigned long long)(st->written >> 20),
				(unsigned long long)(target >> 20));
	}

	/* 2. Thin to the final fullness as counted, then on (the same draws)
	 * while statvfs, after a sync, still shows more: xfs keeps the
	 * speculative preallocation of files that are appended to again and
	 * again past their close. */
	while (!ret && age_counted_pct(&s) > p->final_pct && s.live)
		ret = age_delete(&s, age_rand(&s.rng));
	sync();
	st->used_pct = age_used_pct(dir, NULL);
	while (!ret && st->used_pct > p->final_pct && s.live) {
		ret = age_delete(&s, age_rand(&s.rng));
		sync();
		st->used_pct = age_used_pct(dir, NULL);
	}
	st->live = s.live;
	if (p->verbose)
		fprintf(stderr,
			"# age: seed %llu: %lu steps (%lu creates, %lu appends, %lu deletes, %lu ENOSPC), "
			"%llu MiB written on %llu MiB, %u%% full at most, %u%% now, %lu files\n",
			(unsigned long long)p->seed, st->steps, st->creates, st->appends, st->deletes,
			st->enospc, (unsigned long long)(st->written >> 20),
			(unsigned long long)(st->fs_bytes >> 20), st->used_pct_max, st->used_pct,
			st->live);
out:
	free(s.ids);
	free(s.sizes);
	free(s.buf);
	return ret;
}

#endif /* OXDAX_AGE_H */
