// SPDX-License-Identifier: GPL-2.0
/*
 * One large directory: create COUNT entries, readdir (through a small
 * getdents64 buffer, so it resumes from cookies hundreds of times) returns
 * each exactly once, lookups of random names find the inode each was
 * created with, a cookie read back with lseek resumes where it was, unlink
 * of half while a readdir is under way returns every survivor exactly once,
 * and all of it after a remount.
 *
 * OXDAX_BIGDIR_COUNT sets COUNT. The suite's default is 20000, so the test
 * stays near the 2-minute mark under TCG with the debug kernel (75 s on
 * ext4, 130 s on xfs); the full
 * 100,000-entry run (oxdax's format promises O(log n) lookup at that size)
 * is OXDAX_BIGDIR_COUNT=100000 with OXDAX_TEST_TIMEOUT=1800 (tests/run's
 * per-program limit is 600 s; 100000 took 7.5 minutes on ext4, which gets
 * "-N COUNT+1000" as its 1 GiB default has 65536 inodes). OXDAX_FS chooses
 * the filesystem (tests/lib/oxdax_fs.h).
 */
#include <dirent.h>

#include "kselftest_harness.h"
#include "oxdax_fs.h"

#define DEFAULT_COUNT 20000
#define DIRBUF 1024	/* small on purpose: many getdents64 calls */

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static unsigned int count;

/* Entry @i's name: varying lengths (4 to 96 bytes) so entries differ in size. */
static void name_of(unsigned int i, char *buf, size_t size)
{
	int n = snprintf(buf, size, "e%u.", i);

	for (unsigned int pad = (i * 7919) % 90; pad && n < (int)size - 1; pad--)
		buf[n++] = 'a' + (i + pad) % 26;
	buf[n] = '\0';
}

/* Index encoded in a name made by name_of(), or -1 if it is not one. */
static long index_of(const char *name)
{
	char *end, want[128];
	unsigned long i;

	if (name[0] != 'e')
		return -1;
	i = strtoul(name + 1, &end, 10);
	if (*end != '.' || i >= count)
		return -1;
	name_of(i, want, sizeof(want));
	return strcmp(want, name) ? -1 : (long)i;
}

struct listing {
	unsigned char *seen;	/* per index: times returned */
	unsigned int dots, dotdots, strangers, duplicates, entries;
	int64_t cookie_at_mark;	/* d_off of the entry before the mark */
	char mark_next[8][128];	/* the names that followed it */
	int marked;
};

/*
 * Reads the directory @fd from its start through getdents64 with a
 * DIRBUF buffer. Calls @midway (if set) once, after about a third of the
 * entries. Returns 0, or -errno.
 */
static int list(int fd, struct listing *l, void (*midway)(void))
{
	char buf[DIRBUF];
	bool called = false;

	memset(l->seen, 0, count);
	l->dots = l->dotdots = l->strangers = l->duplicates = l->entries = 0;
	l->marked = 0;
	if (lseek(fd, 0, SEEK_SET))
		return -errno;
	for (;;) {
		long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));

		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (void *)(buf + off);
			long i = index_of(d->d_name);

			off += d->d_reclen;
			l->entries++;
			if (strcmp(d->d_name, ".") == 0) {
				l->dots++;
			} else if (strcmp(d->d_name, "..") == 0) {
				l->dotdots++;
			} else if (i < 0) {
				l->strangers++;
				fprintf(stderr, "# unexpected name '%.100s'\n", d->d_name);
			} else if (l->seen[i]++) {
				if (l->duplicates++ < 5)
					fprintf(stderr, "# '%s' returned twice\n", d->d_name);
			}
			/* Remember a cookie about halfway and the names after it. */
			if (l->entries == count / 2)
				l->cookie_at_mark = d->d_off, l->marked = 0;
			else if (l->entries > count / 2 && l->marked < 8)
				snprintf(l->mark_next[l->marked++], 128, "%s", d->d_name);
		}
		if (midway && !called && l->entries >= count / 3) {
			called = true;
			midway();
		}
	}
}

static int dir_fd = -1;

/* Entries 500 and 501 of every thousand are subdirectories. */
static bool is_dir(unsigned int i)
{
	return i % 1000 == 500 || i % 1000 == 501;
}

/* Link count of the directory holding entries [0, count) with @step 1 or 2 (evens). */
static nlink_t dir_nlink(unsigned int step)
{
	nlink_t n = 2;

	for (unsigned int i = 0; i < count; i += step)
		n += is_dir(i);
	return n;
}

/* Unlinks every odd entry. */
static void unlink_odd(void)
{
	char name[128];

	for (unsigned int i = 1; i < count; i += 2) {
		name_of(i, name, sizeof(name));
		if (unlinkat(dir_fd, name, is_dir(i) ? AT_REMOVEDIR : 0))
			fprintf(stderr, "# unlink %s: %s\n", name, strerror(errno));
	}
}

/* Progress lines, with seconds since the test started (information only). */
static struct timespec t0;
#define PHASE(what) do { \
	struct timespec now; \
	clock_gettime(CLOCK_MONOTONIC, &now); \
	fprintf(stderr, "# %6.1f s  %s\n", now.tv_sec - t0.tv_sec + \
		(now.tv_nsec - t0.tv_nsec) / 1e9, what); \
} while (0)

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static unsigned int random_below(unsigned int n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng % n;
}

FIXTURE(fs) {
};

FIXTURE_SETUP(fs)
{
	count = fs_env_ulong("OXDAX_BIGDIR_COUNT", DEFAULT_COUNT);
	ASSERT_LE(4, count);
	/* ext4 makes 65536 inodes on 1 GiB: ask for enough. */
	if (fs_is("ext4") && count > 60000 && !getenv("OXDAX_FS_MKFS_OPTS")) {
		char opts[32];

		snprintf(opts, sizeof(opts), "-N %u", count + 1000);
		setenv("OXDAX_FS_MKFS_OPTS", opts, 1);
	}
	ASSERT_EQ(0, fs_begin());
}

FIXTURE_TEARDOWN(fs)
{
	EXPECT_EQ(0, fs_end());
}

TEST_F_TIMEOUT(fs, big_directory, 1800)
{
	struct listing l = { .seen = calloc(count, 1) };
	ino_t *inos = calloc(count, sizeof(*inos));
	char name[128];
	struct stat st;

	ASSERT_NE(NULL, l.seen);
	ASSERT_NE(NULL, inos);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	TH_LOG("%u entries", count);
	ASSERT_EQ(0, mkdir(fs_path("big"), 0755));
	dir_fd = open(fs_path("big"), O_RDONLY | O_DIRECTORY);
	ASSERT_LE(0, dir_fd);

	/* Create: files, and two subdirectories in every thousand entries. */
	for (unsigned int i = 0; i < count; i++) {
		name_of(i, name, sizeof(name));
		if (is_dir(i)) {
			ASSERT_EQ(0, mkdirat(dir_fd, name, 0755)) TH_LOG("mkdir %s: %s", name,
								      strerror(errno));
			ASSERT_EQ(0, fstatat(dir_fd, name, &st, 0));
			inos[i] = st.st_ino;
			continue;
		}
		int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL, 0644);

		ASSERT_LE(0, fd) TH_LOG("create entry %u (%s): %s", i, name, strerror(errno));
		ASSERT_EQ(0, fstat(fd, &st));
		inos[i] = st.st_ino;
		close(fd);
	}
	PHASE("created");
	ASSERT_EQ(0, fstat(dir_fd, &st));
	EXPECT_EQ(dir_nlink(1), st.st_nlink);

	/* readdir: each once, plus "." and "..". */
	ASSERT_EQ(0, list(dir_fd, &l, NULL));
	EXPECT_EQ(1, l.dots);
	EXPECT_EQ(1, l.dotdots);
	EXPECT_EQ(0, l.strangers);
	EXPECT_EQ(0, l.duplicates);
	EXPECT_EQ(count + 2, l.entries);
	unsigned int missing = 0;
	for (unsigned int i = 0; i < count; i++)
		if (!l.seen[i] && missing++ < 5)
			TH_LOG("entry %u missing from readdir", i);
	EXPECT_EQ(0, missing);

	PHASE("listed");
	/* A cookie resumes the listing where it was. */
	ASSERT_EQ(8, l.marked);
	{
		char buf[DIRBUF];
		int got = 0;

		ASSERT_EQ(l.cookie_at_mark, lseek(dir_fd, l.cookie_at_mark, SEEK_SET));
		long n = syscall(SYS_getdents64, dir_fd, buf, sizeof(buf));
		for (long off = 0; off < n && got < 8;) {
			struct linux_dirent64 *d = (void *)(buf + off);

			EXPECT_STREQ(l.mark_next[got], d->d_name);
			got++;
			off += d->d_reclen;
		}
		EXPECT_LT(0, got);
	}

	/* Lookups of random names, present and absent. */
	for (int k = 0; k < 2000; k++) {
		unsigned int i = random_below(count);

		name_of(i, name, sizeof(name));
		ASSERT_EQ(0, fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW)) TH_LOG("%s", name);
		EXPECT_EQ(inos[i], st.st_ino) TH_LOG("%s", name);
		EXPECT_EQ(is_dir(i), S_ISDIR(st.st_mode));
		name_of(i, name, sizeof(name));
		strcat(name, "x");	/* a near miss */
		EXPECT_EQ(-1, fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW));
		EXPECT_EQ(ENOENT, errno);
	}

	PHASE("looked up");
	/* Unlink the odd half in the middle of a readdir: every even entry
	 * still comes exactly once (whether removed ones do is unspecified). */
	ASSERT_EQ(0, list(dir_fd, &l, unlink_odd));
	EXPECT_EQ(0, l.duplicates);
	EXPECT_EQ(0, l.strangers);
	missing = 0;
	for (unsigned int i = 0; i < count; i += 2)
		if (!l.seen[i] && missing++ < 5)
			TH_LOG("surviving entry %u missing from readdir", i);
	EXPECT_EQ(0, missing);

	PHASE("unlinked half during a listing");
	/* A fresh readdir: exactly the even half. */
	for (int pass = 0; pass < 2; pass++) {
		ASSERT_EQ(0, list(dir_fd, &l, NULL));
		EXPECT_EQ(0, l.duplicates);
		EXPECT_EQ(0, l.strangers);
		EXPECT_EQ((count + 1) / 2 + 2, l.entries);
		unsigned int wrong = 0;
		for (unsigned int i = 0; i < count; i++)
			if (l.seen[i] != !(i & 1) && wrong++ < 5)
				TH_LOG("entry %u: returned %u times", i, l.seen[i]);
		EXPECT_EQ(0, wrong);
		for (int k = 0; k < 500; k++) {
			unsigned int i = random_below(count);

			name_of(i, name, sizeof(name));
			int ret = fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW);
			if (i & 1) {
				EXPECT_EQ(-1, ret) TH_LOG("%s unlinked but found", name);
			} else {
				EXPECT_EQ(0, ret) TH_LOG("%s: %s", name, strerror(errno));
				EXPECT_EQ(inos[i], st.st_ino);
			}
		}
		PHASE("listed and looked up again");
		if (pass == 0) {
			/* The same after a remount. */
			close(dir_fd);
			ASSERT_EQ(0, fs_remount());
			dir_fd = open(fs_path("big"), O_RDONLY | O_DIRECTORY);
			ASSERT_LE(0, dir_fd);
			ASSERT_EQ(0, fstat(dir_fd, &st));
			EXPECT_EQ(dir_nlink(2), st.st_nlink);
		}
	}

	/* Removed names can be created again. */
	for (unsigned int i = 1; i < count && i < 2000; i += 2) {
		name_of(i, name, sizeof(name));
		int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
		ASSERT_LE(0, fd) TH_LOG("re-create %s: %s", name, strerror(errno));
		close(fd);
	}
	PHASE("re-created");
	close(dir_fd);
	free(l.seen);
	free(inos);
}

TEST_HARNESS_MAIN
