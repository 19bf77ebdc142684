// SPDX-License-Identifier: GPL-2.0
/*
 * The filesystem's namespace: create, lookup, readdir, mkdir/rmdir, unlink,
 * rename (within and across directories, over files and directories,
 * RENAME_NOREPLACE, RENAME_EXCHANGE), hard links, name length limits, the
 * errors of each, directory link counts, and the attributes chmod, chown
 * and utimensat set (with ctime following every change).
 *
 * OXDAX_FS chooses the filesystem (oxdax, ext4 or xfs; tests/lib/oxdax_fs.h).
 */
#include <dirent.h>
#include <linux/fs.h>
#include <sys/statvfs.h>

#include "kselftest_harness.h"
#include "oxdax_fs.h"

#define MAX_ENTRIES 64

struct entry {
	char name[256];
	ino_t ino;
	unsigned char type;
};

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

/* Reads directory @path into @out (sorted by name); returns the count or -errno. */
static int list_dir(const char *path, struct entry *out, int max)
{
	DIR *dir = opendir(path);
	struct dirent *d;
	int n = 0;

	if (!dir)
		return -errno;
	while ((d = readdir(dir))) {
		if (n == max) {
			closedir(dir);
			return -E2BIG;
		}
		snprintf(out[n].name, sizeof(out[n].name), "%s", d->d_name);
		out[n].ino = d->d_ino;
		out[n].type = d->d_type;
		n++;
	}
	closedir(dir);
	qsort(out, n, sizeof(*out), entry_cmp);
	return n;
}

/* Whether directory @dir lists @name (and if so, its inode in *ino). */
static bool dir_has(const char *dir, const char *name, ino_t *ino)
{
	struct entry e[MAX_ENTRIES];
	int n = list_dir(dir, e, MAX_ENTRIES);

	for (int i = 0; i < n; i++) {
		if (strcmp(e[i].name, name) == 0) {
			if (ino)
				*ino = e[i].ino;
			return true;
		}
	}
	return false;
}

static struct stat st_of(const char *path)
{
	struct stat st;

	if (lstat(path, &st))
		memset(&st, 0xff, sizeof(st));	/* compares unequal to anything sane */
	return st;
}

static int err_of(int ret)
{
	return ret < 0 ? errno : 0;
}

static int make_file(const char *path, const char *text)
{
	return fs_write_file(path, text, strlen(text));
}

/* Reads @path as a string; "" on error. */
static const char *text_of(const char *path)
{
	static char buf[2][256];
	static int next;
	char *out = buf[next++ % 2];
	ssize_t n = fs_read_file(path, out, sizeof(buf[0]) - 1);

	out[n < 0 ? 0 : n] = '\0';
	return out;
}

static const char *text_of_fd(int fd)
{
	static char buf[256];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	buf[n < 0 ? 0 : n] = '\0';
	return buf;
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

TEST_F(fs, create_lookup_readdir)
{
	const char *files[] = { "a", "bb", "file.txt", "with space", "UPPER" };
	const char *dirs[] = { "d1", "d2" };
	struct entry e[MAX_ENTRIES];
	struct stat top, st;
	int n;

	ASSERT_EQ(0, mkdir(fs_path("top"), 0755));
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		int fd = open(fs_path("top/%s", files[i]), O_RDWR | O_CREAT | O_EXCL, 0640);

		ASSERT_LE(0, fd) TH_LOG("create %s: %s", files[i], strerror(errno));
		close(fd);
	}
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
		ASSERT_EQ(0, mkdir(fs_path("top/%s", dirs[i]), 0750));

	/* Lookup: each name is found with the type, mode and size it was made with. */
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		ASSERT_EQ(0, lstat(fs_path("top/%s", files[i]), &st));
		EXPECT_TRUE(S_ISREG(st.st_mode));
		EXPECT_EQ(0640, st.st_mode & 07777);
		EXPECT_EQ(0, st.st_size);
		EXPECT_EQ(1, st.st_nlink);
		EXPECT_EQ(0, st.st_uid);
		EXPECT_EQ(0, st.st_gid);
	}
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		ASSERT_EQ(0, lstat(fs_path("top/%s", dirs[i]), &st));
		EXPECT_TRUE(S_ISDIR(st.st_mode));
		EXPECT_EQ(0750, st.st_mode & 07777);
		EXPECT_EQ(2, st.st_nlink);
	}
	/* Names are case-sensitive and exact. */
	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("top/upper"), &st)));
	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("top/b"), &st)));
	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("top/bbb"), &st)));

	/* readdir: exactly ".", "..", the files and the directories, each once. */
	ASSERT_EQ(0, lstat(fs_path("top"), &top));
	n = list_dir(fs_path("top"), e, MAX_ENTRIES);
	ASSERT_EQ(2 + (int)ARRAY_SIZE(files) + (int)ARRAY_SIZE(dirs), n);
	const char *want[] = { ".", "..", "UPPER", "a", "bb", "d1", "d2", "file.txt",
			       "with space" };	/* strcmp order */
	for (int i = 0; i < n; i++) {
		EXPECT_STREQ(want[i], e[i].name);
		if (strcmp(e[i].name, ".") == 0) {
			EXPECT_EQ(top.st_ino, e[i].ino);
		} else if (strcmp(e[i].name, "..") == 0) {
			EXPECT_EQ(st_of(FS_MNT).st_ino, e[i].ino);
		} else {
			st = st_of(fs_path("top/%s", e[i].name));
			EXPECT_EQ(st.st_ino, e[i].ino) TH_LOG("%s", e[i].name);
			EXPECT_EQ(S_ISDIR(st.st_mode) ? DT_DIR : DT_REG, e[i].type)
				TH_LOG("d_type of %s", e[i].name);
		}
	}
	/* Every inode number is distinct. */
	for (int i = 1; i < n; i++)
		for (int j = 0; j < i; j++)
			EXPECT_NE(e[i].ino, e[j].ino);

	/* An empty directory lists just "." and "..". */
	EXPECT_EQ(2, list_dir(fs_path("top/d1"), e, MAX_ENTRIES));

	/* The namespace is the same after a remount. */
	ASSERT_EQ(0, fs_remount());
	EXPECT_EQ(n, list_dir(fs_path("top"), e, MAX_ENTRIES));
	for (int i = 0; i < n; i++)
		EXPECT_STREQ(want[i], e[i].name);
	EXPECT_EQ(top.st_ino, st_of(fs_path("top")).st_ino);
}

TEST_F(fs, mkdir_rmdir)
{
	struct stat st;

	ASSERT_EQ(0, mkdir(fs_path("d"), 0755));
	ASSERT_EQ(0, lstat(fs_path("d"), &st));
	EXPECT_TRUE(S_ISDIR(st.st_mode));
	EXPECT_EQ(0, rmdir(fs_path("d")));
	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("d"), &st)));
	EXPECT_FALSE(dir_has(FS_MNT, "d", NULL));

	/* Non-empty: a file, or a subdirectory, keeps it. */
	ASSERT_EQ(0, mkdir(fs_path("d"), 0755));
	ASSERT_EQ(0, make_file(fs_path("d/f"), "x"));
	EXPECT_EQ(ENOTEMPTY, err_of(rmdir(fs_path("d"))));
	ASSERT_EQ(0, unlink(fs_path("d/f")));
	ASSERT_EQ(0, mkdir(fs_path("d/sub"), 0755));
	EXPECT_EQ(ENOTEMPTY, err_of(rmdir(fs_path("d"))));
	EXPECT_EQ(0, rmdir(fs_path("d/sub")));
	EXPECT_EQ(0, rmdir(fs_path("d")));

	/* Not a directory, missing, ".". */
	ASSERT_EQ(0, make_file(fs_path("f"), "x"));
	EXPECT_EQ(ENOTDIR, err_of(rmdir(fs_path("f"))));
	EXPECT_EQ(0, lstat(fs_path("f"), &st));
	EXPECT_EQ(ENOENT, err_of(rmdir(fs_path("missing"))));
	ASSERT_EQ(0, mkdir(fs_path("d"), 0755));
	EXPECT_EQ(EINVAL, err_of(rmdir(fs_path("d/."))));

	/* mkdir over an existing name. */
	EXPECT_EQ(EEXIST, err_of(mkdir(fs_path("d"), 0755)));
	EXPECT_EQ(EEXIST, err_of(mkdir(fs_path("f"), 0755)));
	EXPECT_EQ(ENOTDIR, err_of(mkdir(fs_path("f/sub"), 0755)));

	/* An open directory can be removed; it then lists nothing and takes no entries. */
	ASSERT_EQ(0, mkdir(fs_path("gone"), 0755));
	int dfd = open(fs_path("gone"), O_RDONLY | O_DIRECTORY);
	ASSERT_LE(0, dfd);
	EXPECT_EQ(0, rmdir(fs_path("gone")));
	ASSERT_EQ(0, fstat(dfd, &st));
	EXPECT_EQ(0, st.st_nlink);
	EXPECT_EQ(ENOENT, err_of(openat(dfd, "new", O_CREAT | O_WRONLY, 0644)));
	EXPECT_EQ(ENOENT, err_of(mkdirat(dfd, "new", 0755)));
	close(dfd);
}

TEST_F(fs, unlink)
{
	struct stat st;
	char buf[16];

	ASSERT_EQ(0, make_file(fs_path("f"), "data"));
	EXPECT_EQ(0, unlink(fs_path("f")));
	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("f"), &st)));
	EXPECT_FALSE(dir_has(FS_MNT, "f", NULL));
	EXPECT_EQ(ENOENT, err_of(unlink(fs_path("f"))));

	/* Linux's unlink(2) of a directory: EISDIR. */
	ASSERT_EQ(0, mkdir(fs_path("d"), 0755));
	EXPECT_EQ(EISDIR, err_of(unlink(fs_path("d"))));
	EXPECT_EQ(0, lstat(fs_path("d"), &st));

	/* A missing or non-directory path component. */
	EXPECT_EQ(ENOENT, err_of(unlink(fs_path("nodir/f"))));
	ASSERT_EQ(0, make_file(fs_path("f"), "data"));
	EXPECT_EQ(ENOTDIR, err_of(unlink(fs_path("f/x"))));

	/* An open file outlives its name: readable, writable, nlink 0. */
	int fd = open(fs_path("f"), O_RDWR);
	ASSERT_LE(0, fd);
	EXPECT_EQ(0, unlink(fs_path("f")));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(0, st.st_nlink);
	EXPECT_EQ(4, pread(fd, buf, sizeof(buf), 0));
	EXPECT_EQ(0, memcmp(buf, "data", 4));
	EXPECT_EQ(5, pwrite(fd, "more!", 5, 4));
	EXPECT_EQ(9, pread(fd, buf, sizeof(buf), 0));
	EXPECT_EQ(0, memcmp(buf, "datamore!", 9));
	/* The name is free for a new file. */
	ASSERT_EQ(0, make_file(fs_path("f"), "new"));
	EXPECT_STREQ("new", text_of(fs_path("f")));
	EXPECT_NE(st.st_ino, st_of(fs_path("f")).st_ino);
	close(fd);
}

/*
 * Unlinked files give back their inodes and blocks as statfs counts them,
 * at once: oxdax frees evicted inodes in batches, and statfs frees what
 * waits first. ext4 frees at eviction. xfs defers freeing to its inodegc
 * workers and its statfs does not wait for them: it is not checked.
 */
TEST_F(fs, unlink_gives_inodes_and_blocks_back)
{
	static char block[8192];
	struct statvfs before, after;
	char name[64];

	if (!strcmp(fs_type(), "xfs"))
		SKIP(return, "xfs frees unlinked inodes in the background");
	ASSERT_EQ(0, mkdir(fs_path("many"), 0755));
	ASSERT_EQ(0, statvfs(FS_MNT, &before));
	memset(block, 0x6b, sizeof(block));
	/* Over two batches of sixteen, some files with data. */
	for (int i = 0; i < 37; i++) {
		int fd;

		snprintf(name, sizeof(name), "many/f%d", i);
		fd = open(fs_path(name), O_WRONLY | O_CREAT | O_EXCL, 0644);
		ASSERT_LE(0, fd);
		if (i % 3 == 0)
			ASSERT_EQ((ssize_t)sizeof(block), write(fd, block, sizeof(block)));
		close(fd);
	}
	for (int i = 0; i < 37; i++) {
		snprintf(name, sizeof(name), "many/f%d", i);
		ASSERT_EQ(0, unlink(fs_path(name)));
	}
	ASSERT_EQ(0, statvfs(FS_MNT, &after));
	EXPECT_EQ(before.f_ffree, after.f_ffree);
	EXPECT_EQ(before.f_bfree, after.f_bfree);
	EXPECT_EQ(0, rmdir(fs_path("many")));
}

TEST_F(fs, directory_nlink)
{
	struct entry e[MAX_ENTRIES];
	int subdirs = 0, n;

	/* 2 + subdirectories; files do not count. */
	ASSERT_EQ(0, mkdir(fs_path("p"), 0755));
	EXPECT_EQ(2, st_of(fs_path("p")).st_nlink);
	ASSERT_EQ(0, make_file(fs_path("p/file"), "x"));
	EXPECT_EQ(2, st_of(fs_path("p")).st_nlink);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(0, mkdir(fs_path("p/s%d", i), 0755));
	EXPECT_EQ(5, st_of(fs_path("p")).st_nlink);
	ASSERT_EQ(0, rmdir(fs_path("p/s0")));
	EXPECT_EQ(4, st_of(fs_path("p")).st_nlink);

	/* Moving a subdirectory moves its ".." link. */
	ASSERT_EQ(0, mkdir(fs_path("q"), 0755));
	ASSERT_EQ(0, rename(fs_path("p/s1"), fs_path("q/s1")));
	EXPECT_EQ(3, st_of(fs_path("p")).st_nlink);
	EXPECT_EQ(3, st_of(fs_path("q")).st_nlink);
	EXPECT_EQ(st_of(fs_path("q")).st_ino, st_of(fs_path("q/s1/..")).st_ino);

	/* The root too (ext4 has lost+found, so count what is there). */
	n = list_dir(FS_MNT, e, MAX_ENTRIES);
	ASSERT_LT(0, n);
	for (int i = 0; i < n; i++)
		if (strcmp(e[i].name, ".") && strcmp(e[i].name, "..") &&
		    S_ISDIR(st_of(fs_path("%s", e[i].name)).st_mode))
			subdirs++;
	EXPECT_EQ(2 + subdirs, (int)st_of(FS_MNT).st_nlink);

	/* Link counts survive a remount. */
	ASSERT_EQ(0, fs_remount());
	EXPECT_EQ(3, st_of(fs_path("p")).st_nlink);
	EXPECT_EQ(3, st_of(fs_path("q")).st_nlink);
	EXPECT_EQ(2 + subdirs, (int)st_of(FS_MNT).st_nlink);
}

TEST_F(fs, rename_within_dir)
{
	struct stat before, after;

	ASSERT_EQ(0, make_file(fs_path("a"), "alpha"));
	ASSERT_EQ(0, lstat(fs_path("a"), &before));
	fs_tick();
	EXPECT_EQ(0, rename(fs_path("a"), fs_path("b")));
	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("a"), &after)));
	ASSERT_EQ(0, lstat(fs_path("b"), &after));
	EXPECT_EQ(before.st_ino, after.st_ino);
	EXPECT_EQ(1, after.st_nlink);
	EXPECT_STREQ("alpha", text_of(fs_path("b")));
	EXPECT_FALSE(dir_has(FS_MNT, "a", NULL));
	EXPECT_TRUE(dir_has(FS_MNT, "b", NULL));
	/* Linux filesystems update the renamed inode's ctime. */
	EXPECT_LT(0, ts_cmp(after.st_ctim, before.st_ctim));

	/* Renaming to itself, or to another link of the same inode, does nothing. */
	EXPECT_EQ(0, rename(fs_path("b"), fs_path("b")));
	ASSERT_EQ(0, link(fs_path("b"), fs_path("b2")));
	EXPECT_EQ(0, rename(fs_path("b"), fs_path("b2")));
	EXPECT_EQ(2, st_of(fs_path("b")).st_nlink);
	EXPECT_EQ(2, st_of(fs_path("b2")).st_nlink);

	/* Missing source, missing target directory. */
	EXPECT_EQ(ENOENT, err_of(rename(fs_path("missing"), fs_path("c"))));
	EXPECT_EQ(ENOENT, err_of(rename(fs_path("b"), fs_path("nodir/c"))));
	EXPECT_STREQ("alpha", text_of(fs_path("b")));

	ASSERT_EQ(0, fs_remount());
	EXPECT_STREQ("alpha", text_of(fs_path("b")));
	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("a"), &after)));
}

TEST_F(fs, rename_across_dirs)
{
	struct stat f, d;
	ino_t ino;

	ASSERT_EQ(0, mkdir(fs_path("d1"), 0755));
	ASSERT_EQ(0, mkdir(fs_path("d2"), 0755));
	ASSERT_EQ(0, make_file(fs_path("d1/f"), "file data"));
	ASSERT_EQ(0, mkdir(fs_path("d1/sub"), 0755));
	ASSERT_EQ(0, make_file(fs_path("d1/sub/inner"), "inner"));
	ASSERT_EQ(0, lstat(fs_path("d1/f"), &f));
	ASSERT_EQ(0, lstat(fs_path("d1/sub"), &d));

	EXPECT_EQ(0, rename(fs_path("d1/f"), fs_path("d2/g")));
	EXPECT_FALSE(dir_has(fs_path("d1"), "f", NULL));
	ASSERT_TRUE(dir_has(fs_path("d2"), "g", &ino));
	EXPECT_EQ(f.st_ino, ino);
	EXPECT_STREQ("file data", text_of(fs_path("d2/g")));

	/* A directory, with its contents; ".." follows. */
	EXPECT_EQ(0, rename(fs_path("d1/sub"), fs_path("d2/sub")));
	EXPECT_EQ(d.st_ino, st_of(fs_path("d2/sub")).st_ino);
	EXPECT_STREQ("inner", text_of(fs_path("d2/sub/inner")));
	EXPECT_EQ(st_of(fs_path("d2")).st_ino, st_of(fs_path("d2/sub/..")).st_ino);
	struct entry e[MAX_ENTRIES];
	int n = list_dir(fs_path("d2/sub"), e, MAX_ENTRIES);
	ASSERT_EQ(3, n);
	EXPECT_STREQ("..", e[1].name);
	EXPECT_EQ(st_of(fs_path("d2")).st_ino, e[1].ino);
	EXPECT_EQ(2, st_of(fs_path("d1")).st_nlink);
	EXPECT_EQ(3, st_of(fs_path("d2")).st_nlink);

	/* Not into itself or a descendant. */
	EXPECT_EQ(EINVAL, err_of(rename(fs_path("d2"), fs_path("d2/sub/d2"))));
	EXPECT_EQ(EINVAL, err_of(rename(fs_path("d2/sub"), fs_path("d2/sub/x"))));

	ASSERT_EQ(0, fs_remount());
	EXPECT_STREQ("inner", text_of(fs_path("d2/sub/inner")));
	EXPECT_STREQ("file data", text_of(fs_path("d2/g")));
	EXPECT_EQ(st_of(fs_path("d2")).st_ino, st_of(fs_path("d2/sub/..")).st_ino);
	EXPECT_EQ(2, list_dir(fs_path("d1"), e, MAX_ENTRIES));
}

TEST_F(fs, rename_over_file)
{
	struct stat src, old_b, st;

	ASSERT_EQ(0, make_file(fs_path("a"), "AAAA"));
	ASSERT_EQ(0, make_file(fs_path("b"), "BBBBBB"));
	ASSERT_EQ(0, link(fs_path("b"), fs_path("b-link")));
	ASSERT_EQ(0, make_file(fs_path("c"), "CCCCCCCC"));
	ASSERT_EQ(0, lstat(fs_path("a"), &src));
	int fd_b = open(fs_path("b"), O_RDONLY);
	int fd_c = open(fs_path("c"), O_RDONLY);
	ASSERT_LE(0, fd_b);
	ASSERT_LE(0, fd_c);
	ASSERT_EQ(0, fstat(fd_b, &old_b));
	EXPECT_EQ(2, old_b.st_nlink);

	/* a over b: b is a's inode now; b's old inode keeps its other link. */
	fs_tick();
	EXPECT_EQ(0, rename(fs_path("a"), fs_path("b")));
	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("a"), &st)));
	EXPECT_EQ(src.st_ino, st_of(fs_path("b")).st_ino);
	EXPECT_STREQ("AAAA", text_of(fs_path("b")));
	ASSERT_EQ(0, fstat(fd_b, &st));
	EXPECT_EQ(1, st.st_nlink);
	EXPECT_LT(0, ts_cmp(st.st_ctim, old_b.st_ctim));	/* nlink changed: ctime too */
	EXPECT_STREQ("BBBBBB", text_of_fd(fd_b));
	EXPECT_STREQ("BBBBBB", text_of(fs_path("b-link")));
	EXPECT_EQ(st.st_ino, st_of(fs_path("b-link")).st_ino);

	/* b over c, c's only link: the open fd still reads c's data. */
	EXPECT_EQ(0, rename(fs_path("b"), fs_path("c")));
	ASSERT_EQ(0, fstat(fd_c, &st));
	EXPECT_EQ(0, st.st_nlink);
	EXPECT_STREQ("CCCCCCCC", text_of_fd(fd_c));
	EXPECT_STREQ("AAAA", text_of(fs_path("c")));

	struct entry e[MAX_ENTRIES];
	/* ".", "..", "b-link", "c" (and ext4's lost+found) */
	EXPECT_EQ(fs_is("ext4") ? 5 : 4, list_dir(FS_MNT, e, MAX_ENTRIES));
	EXPECT_TRUE(dir_has(FS_MNT, "b-link", NULL));
	EXPECT_TRUE(dir_has(FS_MNT, "c", NULL));
	close(fd_b);
	close(fd_c);

	ASSERT_EQ(0, fs_remount());
	EXPECT_STREQ("AAAA", text_of(fs_path("c")));
	EXPECT_STREQ("BBBBBB", text_of(fs_path("b-link")));
	EXPECT_EQ(1, st_of(fs_path("b-link")).st_nlink);
}

TEST_F(fs, rename_dirs)
{
	struct stat st;
	ino_t ino;

	ASSERT_EQ(0, mkdir(fs_path("src"), 0755));
	ASSERT_EQ(0, make_file(fs_path("src/f"), "inside"));
	ASSERT_EQ(0, mkdir(fs_path("empty"), 0755));
	ASSERT_EQ(0, mkdir(fs_path("full"), 0755));
	ASSERT_EQ(0, make_file(fs_path("full/x"), "x"));
	ASSERT_EQ(0, make_file(fs_path("file"), "file"));
	ASSERT_EQ(0, mkdir(fs_path("parent"), 0755));
	ASSERT_EQ(0, mkdir(fs_path("parent/empty2"), 0755));
	ino = st_of(fs_path("src")).st_ino;
	nlink_t root_nlink = st_of(FS_MNT).st_nlink;

	/* Over an empty directory: replaced; the parent loses one link. */
	EXPECT_EQ(0, rename(fs_path("src"), fs_path("empty")));
	EXPECT_EQ(ino, st_of(fs_path("empty")).st_ino);
	EXPECT_STREQ("inside", text_of(fs_path("empty/f")));
	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("src"), &st)));
	EXPECT_EQ(root_nlink - 1, st_of(FS_MNT).st_nlink);

	/* Over a non-empty directory: ENOTEMPTY (xfs says EEXIST; POSIX allows both). */
	EXPECT_EQ(fs_is("xfs") ? EEXIST : ENOTEMPTY,
		  err_of(rename(fs_path("empty"), fs_path("full"))));
	EXPECT_STREQ("x", text_of(fs_path("full/x")));
	EXPECT_STREQ("inside", text_of(fs_path("empty/f")));

	/* Across parents over an empty directory: both parents' counts follow. */
	EXPECT_EQ(0, rename(fs_path("empty"), fs_path("parent/empty2")));
	EXPECT_EQ(root_nlink - 2, st_of(FS_MNT).st_nlink);
	EXPECT_EQ(3, st_of(fs_path("parent")).st_nlink);
	EXPECT_EQ(st_of(fs_path("parent")).st_ino, st_of(fs_path("parent/empty2/..")).st_ino);

	/* Directory over file, file over directory. */
	EXPECT_EQ(ENOTDIR, err_of(rename(fs_path("full"), fs_path("file"))));
	EXPECT_EQ(EISDIR, err_of(rename(fs_path("file"), fs_path("full"))));
	EXPECT_STREQ("file", text_of(fs_path("file")));
	EXPECT_TRUE(S_ISDIR(st_of(fs_path("full")).st_mode));

	ASSERT_EQ(0, fs_remount());
	EXPECT_STREQ("inside", text_of(fs_path("parent/empty2/f")));
	EXPECT_EQ(3, st_of(fs_path("parent")).st_nlink);
	EXPECT_EQ(root_nlink - 2, st_of(FS_MNT).st_nlink);
}

TEST_F(fs, renameat2_noreplace)
{
	ASSERT_EQ(0, make_file(fs_path("a"), "a"));
	ASSERT_EQ(0, make_file(fs_path("b"), "b"));
	ASSERT_EQ(0, mkdir(fs_path("d"), 0755));
	EXPECT_EQ(EEXIST, err_of(renameat2(AT_FDCWD, fs_path("a"), AT_FDCWD, fs_path("b"),
					   RENAME_NOREPLACE)));
	EXPECT_EQ(EEXIST, err_of(renameat2(AT_FDCWD, fs_path("a"), AT_FDCWD, fs_path("d"),
					   RENAME_NOREPLACE)));
	EXPECT_STREQ("a", text_of(fs_path("a")));
	EXPECT_STREQ("b", text_of(fs_path("b")));
	EXPECT_EQ(0, renameat2(AT_FDCWD, fs_path("a"), AT_FDCWD, fs_path("d/c"),
			       RENAME_NOREPLACE));
	EXPECT_STREQ("a", text_of(fs_path("d/c")));
	EXPECT_FALSE(dir_has(FS_MNT, "a", NULL));
	/* NOREPLACE and EXCHANGE together are invalid. */
	EXPECT_EQ(EINVAL, err_of(renameat2(AT_FDCWD, fs_path("b"), AT_FDCWD, fs_path("d/c"),
					   RENAME_NOREPLACE | RENAME_EXCHANGE)));
}

TEST_F(fs, renameat2_exchange)
{
	struct stat a, b, d;
	int ret;

	ASSERT_EQ(0, make_file(fs_path("a"), "first"));
	ASSERT_EQ(0, make_file(fs_path("b"), "second"));
	ASSERT_EQ(0, mkdir(fs_path("p"), 0755));
	ASSERT_EQ(0, mkdir(fs_path("p/d"), 0755));
	ASSERT_EQ(0, make_file(fs_path("p/d/in"), "in"));
	ASSERT_EQ(0, lstat(fs_path("a"), &a));
	ASSERT_EQ(0, lstat(fs_path("b"), &b));
	ASSERT_EQ(0, lstat(fs_path("p/d"), &d));

	ret = renameat2(AT_FDCWD, fs_path("a"), AT_FDCWD, fs_path("b"), RENAME_EXCHANGE);
	if (ret && errno == EINVAL && fs_is("oxdax")) {
		/* oxdax may refuse RENAME_EXCHANGE; then nothing may have changed. */
		TH_LOG("RENAME_EXCHANGE refused with EINVAL (allowed for oxdax)");
		EXPECT_STREQ("first", text_of(fs_path("a")));
		EXPECT_STREQ("second", text_of(fs_path("b")));
		EXPECT_EQ(a.st_ino, st_of(fs_path("a")).st_ino);
		return;
	}
	ASSERT_EQ(0, ret) TH_LOG("RENAME_EXCHANGE: %s", strerror(errno));
	EXPECT_EQ(b.st_ino, st_of(fs_path("a")).st_ino);
	EXPECT_EQ(a.st_ino, st_of(fs_path("b")).st_ino);
	EXPECT_STREQ("second", text_of(fs_path("a")));
	EXPECT_STREQ("first", text_of(fs_path("b")));

	/* A file and a directory in different parents: ".." and link counts follow. */
	nlink_t root_nlink = st_of(FS_MNT).st_nlink;
	EXPECT_EQ(3, st_of(fs_path("p")).st_nlink);
	ASSERT_EQ(0, renameat2(AT_FDCWD, fs_path("a"), AT_FDCWD, fs_path("p/d"),
			       RENAME_EXCHANGE));
	EXPECT_EQ(d.st_ino, st_of(fs_path("a")).st_ino);
	EXPECT_TRUE(S_ISDIR(st_of(fs_path("a")).st_mode));
	EXPECT_TRUE(S_ISREG(st_of(fs_path("p/d")).st_mode));
	EXPECT_STREQ("second", text_of(fs_path("p/d")));
	EXPECT_STREQ("in", text_of(fs_path("a/in")));
	EXPECT_EQ(st_of(FS_MNT).st_ino, st_of(fs_path("a/..")).st_ino);
	EXPECT_EQ(root_nlink + 1, st_of(FS_MNT).st_nlink);
	EXPECT_EQ(2, st_of(fs_path("p")).st_nlink);

	/* Exchange needs both names. */
	EXPECT_EQ(ENOENT, err_of(renameat2(AT_FDCWD, fs_path("b"), AT_FDCWD,
					   fs_path("missing"), RENAME_EXCHANGE)));

	ASSERT_EQ(0, fs_remount());
	EXPECT_STREQ("in", text_of(fs_path("a/in")));
	EXPECT_STREQ("second", text_of(fs_path("p/d")));
	EXPECT_EQ(2, st_of(fs_path("p")).st_nlink);
	EXPECT_EQ(root_nlink + 1, st_of(FS_MNT).st_nlink);
}

TEST_F(fs, hard_links)
{
	struct stat before, st;

	ASSERT_EQ(0, make_file(fs_path("a"), "shared"));
	ASSERT_EQ(0, mkdir(fs_path("d"), 0755));
	ASSERT_EQ(0, lstat(fs_path("a"), &before));
	fs_tick();
	ASSERT_EQ(0, link(fs_path("a"), fs_path("d/b")));
	ASSERT_EQ(0, lstat(fs_path("d/b"), &st));
	EXPECT_EQ(before.st_ino, st.st_ino);
	EXPECT_EQ(2, st.st_nlink);
	EXPECT_EQ(2, st_of(fs_path("a")).st_nlink);
	EXPECT_LT(0, ts_cmp(st.st_ctim, before.st_ctim));	/* link changes ctime */
	EXPECT_EQ(0, ts_cmp(st.st_mtim, before.st_mtim));	/* but not mtime */
	EXPECT_EQ(2, st_of(fs_path("d")).st_nlink);	/* a file link is no subdirectory */

	/* Data is shared both ways. */
	int fd = open(fs_path("d/b"), O_WRONLY | O_APPEND);
	ASSERT_LE(0, fd);
	ASSERT_EQ(4, write(fd, " one", 4));
	close(fd);
	EXPECT_STREQ("shared one", text_of(fs_path("a")));
	ASSERT_EQ(0, link(fs_path("d/b"), fs_path("c")));
	EXPECT_EQ(3, st_of(fs_path("a")).st_nlink);

	/* Unlinking one name keeps the others. */
	EXPECT_EQ(0, unlink(fs_path("a")));
	EXPECT_EQ(2, st_of(fs_path("c")).st_nlink);
	EXPECT_STREQ("shared one", text_of(fs_path("d/b")));
	EXPECT_EQ(0, unlink(fs_path("d/b")));
	EXPECT_EQ(1, st_of(fs_path("c")).st_nlink);
	EXPECT_STREQ("shared one", text_of(fs_path("c")));

	/* Errors: existing target, missing source, directories. */
	ASSERT_EQ(0, make_file(fs_path("x"), "x"));
	EXPECT_EQ(EEXIST, err_of(link(fs_path("c"), fs_path("x"))));
	EXPECT_EQ(ENOENT, err_of(link(fs_path("a"), fs_path("y"))));
	EXPECT_EQ(EPERM, err_of(link(fs_path("d"), fs_path("dlink"))));
	EXPECT_EQ(ENOENT, err_of(link(fs_path("c"), fs_path("nodir/y"))));

	ASSERT_EQ(0, link(fs_path("c"), fs_path("d/again")));
	ASSERT_EQ(0, fs_remount());
	EXPECT_EQ(2, st_of(fs_path("c")).st_nlink);
	EXPECT_EQ(st_of(fs_path("c")).st_ino, st_of(fs_path("d/again")).st_ino);
	EXPECT_STREQ("shared one", text_of(fs_path("d/again")));
}

TEST_F(fs, exclusive_create)
{
	struct stat st;
	int fd;

	ASSERT_EQ(0, make_file(fs_path("f"), "keep"));
	ASSERT_EQ(0, mkdir(fs_path("d"), 0755));
	EXPECT_EQ(EEXIST, err_of(open(fs_path("f"), O_RDWR | O_CREAT | O_EXCL, 0644)));
	EXPECT_EQ(EEXIST, err_of(open(fs_path("d"), O_RDWR | O_CREAT | O_EXCL, 0644)));
	EXPECT_EQ(EEXIST, err_of(mkdir(fs_path("f"), 0755)));
	EXPECT_EQ(EEXIST, err_of(mkdir(fs_path("d"), 0755)));
	EXPECT_EQ(EISDIR, err_of(open(fs_path("d"), O_RDWR | O_CREAT, 0644)));
	EXPECT_EQ(EISDIR, err_of(open(fs_path("d"), O_WRONLY)));

	/* O_CREAT without O_EXCL opens the existing file and keeps its data. */
	fd = open(fs_path("f"), O_RDWR | O_CREAT, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(4, st.st_size);
	EXPECT_EQ(0644, st.st_mode & 07777);
	close(fd);
	EXPECT_STREQ("keep", text_of(fs_path("f")));

	/* O_TRUNC empties it. */
	fd = open(fs_path("f"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(0, st.st_size);
	close(fd);

	/* The creation mode goes through the umask. */
	umask(022);
	fd = open(fs_path("g"), O_RDWR | O_CREAT | O_EXCL, 0666);
	ASSERT_LE(0, fd);
	close(fd);
	EXPECT_EQ(0644, st_of(fs_path("g")).st_mode & 07777);
}

TEST_F(fs, name_length)
{
	char name255[256], name256[257];
	struct entry e[MAX_ENTRIES];
	int fd, n;
	bool found = false;

	memset(name255, 'n', 255);
	name255[255] = '\0';
	name255[0] = 'A';
	name255[254] = 'Z';
	memset(name256, 'n', 256);
	name256[256] = '\0';

	/* 255 bytes: the limit, every operation works. */
	fd = open(fs_path("%s", name255), O_RDWR | O_CREAT | O_EXCL, 0644);
	ASSERT_LE(0, fd) TH_LOG("255-byte name: %s", strerror(errno));
	ASSERT_EQ(3, write(fd, "max", 3));
	close(fd);
	EXPECT_STREQ("max", text_of(fs_path("%s", name255)));
	n = list_dir(FS_MNT, e, MAX_ENTRIES);
	for (int i = 0; i < n; i++)
		if (strcmp(e[i].name, name255) == 0)
			found = true;
	EXPECT_TRUE(found);
	name255[100] = 'm';	/* another 255-byte name, equal but for one byte */
	EXPECT_EQ(ENOENT, err_of(access(fs_path("%s", name255), F_OK)));
	EXPECT_EQ(0, mkdir(fs_path("%s", name255), 0755));
	EXPECT_EQ(0, rmdir(fs_path("%s", name255)));
	name255[100] = 'n';

	struct statfs sfs;
	ASSERT_EQ(0, statfs(FS_MNT, &sfs));
	EXPECT_EQ(255, sfs.f_namelen);

	/* 256 bytes: ENAMETOOLONG everywhere, nothing created. */
	EXPECT_EQ(ENAMETOOLONG, err_of(open(fs_path("%s", name256), O_RDWR | O_CREAT, 0644)));
	EXPECT_EQ(ENAMETOOLONG, err_of(mkdir(fs_path("%s", name256), 0755)));
	EXPECT_EQ(ENAMETOOLONG, err_of(access(fs_path("%s", name256), F_OK)));
	EXPECT_EQ(ENAMETOOLONG, err_of(rename(fs_path("%s", name255), fs_path("%s", name256))));
	EXPECT_EQ(ENAMETOOLONG, err_of(link(fs_path("%s", name255), fs_path("%s", name256))));
	EXPECT_EQ(ENAMETOOLONG, err_of(unlink(fs_path("%s", name256))));

	/* Long names survive a remount; then rename and unlink them. */
	ASSERT_EQ(0, fs_remount());
	EXPECT_STREQ("max", text_of(fs_path("%s", name255)));
	EXPECT_EQ(0, rename(fs_path("%s", name255), fs_path("short")));
	EXPECT_STREQ("max", text_of(fs_path("short")));
	EXPECT_EQ(0, rename(fs_path("short"), fs_path("%s", name255)));
	EXPECT_EQ(0, unlink(fs_path("%s", name255)));
	EXPECT_EQ(ENOENT, err_of(access(fs_path("%s", name255), F_OK)));
}

TEST_F(fs, enoent)
{
	struct stat st;

	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("missing"), &st)));
	EXPECT_EQ(ENOENT, err_of(open(fs_path("missing"), O_RDONLY)));
	EXPECT_EQ(ENOENT, err_of(open(fs_path("nodir/f"), O_RDWR | O_CREAT, 0644)));
	EXPECT_EQ(ENOENT, err_of(mkdir(fs_path("nodir/d"), 0755)));
	EXPECT_EQ(ENOENT, err_of(rmdir(fs_path("missing"))));
	EXPECT_EQ(ENOENT, err_of(unlink(fs_path("missing"))));
	EXPECT_EQ(ENOENT, err_of(rename(fs_path("missing"), fs_path("x"))));
	EXPECT_EQ(ENOENT, err_of(link(fs_path("missing"), fs_path("x"))));
	EXPECT_EQ(ENOENT, err_of(chmod(fs_path("missing"), 0644)));
	EXPECT_EQ(ENOENT, err_of(truncate(fs_path("missing"), 0)));
	EXPECT_EQ(ENOENT, err_of(opendir(fs_path("missing")) ? 0 : -1));
	/* Nothing appeared on the way. */
	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("x"), &st)));
	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("nodir"), &st)));

	/* A name that existed and is gone. */
	ASSERT_EQ(0, make_file(fs_path("was"), "x"));
	ASSERT_EQ(0, unlink(fs_path("was")));
	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("was"), &st)));
	ASSERT_EQ(0, mkdir(fs_path("wasdir"), 0755));
	ASSERT_EQ(0, rmdir(fs_path("wasdir")));
	EXPECT_EQ(ENOENT, err_of(lstat(fs_path("wasdir"), &st)));
	EXPECT_EQ(ENOENT, err_of(open(fs_path("wasdir/f"), O_RDWR | O_CREAT, 0644)));
}

TEST_F(fs, chmod_chown)
{
	struct stat before, st;

	ASSERT_EQ(0, make_file(fs_path("f"), "attrs"));
	ASSERT_EQ(0, mkdir(fs_path("d"), 0755));
	ASSERT_EQ(0, lstat(fs_path("f"), &before));

	fs_tick();
	ASSERT_EQ(0, chmod(fs_path("f"), 0640));
	ASSERT_EQ(0, lstat(fs_path("f"), &st));
	EXPECT_EQ(S_IFREG | 0640, st.st_mode);
	EXPECT_LT(0, ts_cmp(st.st_ctim, before.st_ctim));
	EXPECT_EQ(0, ts_cmp(st.st_mtim, before.st_mtim));
	ASSERT_EQ(0, chmod(fs_path("d"), 01777));
	EXPECT_EQ(S_IFDIR | 01777, st_of(fs_path("d")).st_mode);
	ASSERT_EQ(0, chmod(fs_path("f"), 06755));
	EXPECT_EQ(S_IFREG | 06755, st_of(fs_path("f")).st_mode);

	before = st_of(fs_path("f"));
	fs_tick();
	ASSERT_EQ(0, chown(fs_path("f"), 1234, 5678));
	ASSERT_EQ(0, lstat(fs_path("f"), &st));
	EXPECT_EQ(1234, st.st_uid);
	EXPECT_EQ(5678, st.st_gid);
	EXPECT_LT(0, ts_cmp(st.st_ctim, before.st_ctim));
	/* chown of an executable clears set-user-ID and set-group-ID. */
	EXPECT_EQ(S_IFREG | 0755, st.st_mode);
	/* -1 leaves an id alone. */
	ASSERT_EQ(0, chown(fs_path("f"), -1, 42));
	EXPECT_EQ(1234, st_of(fs_path("f")).st_uid);
	EXPECT_EQ(42, st_of(fs_path("f")).st_gid);
	ASSERT_EQ(0, chown(fs_path("d"), 99, 98));
	/* Large ids. */
	ASSERT_EQ(0, lchown(fs_path("f"), 4000000000u, 3000000000u));
	EXPECT_EQ(4000000000u, st_of(fs_path("f")).st_uid);
	EXPECT_EQ(3000000000u, st_of(fs_path("f")).st_gid);

	/* fchmod/fchown on an open file. */
	int fd = open(fs_path("f"), O_RDWR);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fchmod(fd, 0600));
	ASSERT_EQ(0, fchown(fd, 7, 8));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(S_IFREG | 0600, st.st_mode);
	EXPECT_EQ(7, st.st_uid);
	close(fd);

	ASSERT_EQ(0, fs_remount());
	st = st_of(fs_path("f"));
	EXPECT_EQ(S_IFREG | 0600, st.st_mode);
	EXPECT_EQ(7, st.st_uid);
	EXPECT_EQ(8, st.st_gid);
	st = st_of(fs_path("d"));
	EXPECT_EQ(S_IFDIR | 01777, st.st_mode);
	EXPECT_EQ(99, st.st_uid);
	EXPECT_EQ(98, st.st_gid);
	EXPECT_STREQ("attrs", text_of(fs_path("f")));
}

TEST_F(fs, utimensat)
{
	struct timespec times[2] = {
		{ .tv_sec = 1234567890, .tv_nsec = 123456789 },	/* atime */
		{ .tv_sec = 1500000000, .tv_nsec = 987654321 },	/* mtime */
	};
	struct stat before, st;
	struct timespec now;

	ASSERT_EQ(0, make_file(fs_path("f"), "times"));
	ASSERT_EQ(0, lstat(fs_path("f"), &before));
	fs_tick();
	ASSERT_EQ(0, utimensat(AT_FDCWD, fs_path("f"), times, 0));
	ASSERT_EQ(0, lstat(fs_path("f"), &st));
	EXPECT_EQ(times[0].tv_sec, st.st_atim.tv_sec);
	EXPECT_EQ(times[0].tv_nsec, st.st_atim.tv_nsec);
	EXPECT_EQ(times[1].tv_sec, st.st_mtim.tv_sec);
	EXPECT_EQ(times[1].tv_nsec, st.st_mtim.tv_nsec);
	EXPECT_LT(0, ts_cmp(st.st_ctim, before.st_ctim));	/* ctime is "now" */
	ASSERT_EQ(0, clock_gettime(CLOCK_REALTIME, &now));
	EXPECT_GE(0, ts_cmp(st.st_ctim, now));

	/* UTIME_OMIT keeps one, UTIME_NOW sets it to now. */
	struct timespec omit_now[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_NOW } };
	ASSERT_EQ(0, utimensat(AT_FDCWD, fs_path("f"), omit_now, 0));
	ASSERT_EQ(0, lstat(fs_path("f"), &st));
	EXPECT_EQ(times[0].tv_sec, st.st_atim.tv_sec);
	EXPECT_EQ(times[0].tv_nsec, st.st_atim.tv_nsec);
	EXPECT_LE(now.tv_sec - 1, st.st_mtim.tv_sec);

	/* Before 1970 and after 2038, on a directory too. */
	struct timespec wide[2] = {
		{ .tv_sec = -1000000000, .tv_nsec = 1 },
		{ .tv_sec = 4102444800ll, .tv_nsec = 999999999 },	/* 2100-01-01 */
	};
	ASSERT_EQ(0, mkdir(fs_path("d"), 0755));
	ASSERT_EQ(0, utimensat(AT_FDCWD, fs_path("d"), wide, 0));
	ASSERT_EQ(0, lstat(fs_path("d"), &st));
	EXPECT_EQ(wide[0].tv_sec, st.st_atim.tv_sec);
	EXPECT_EQ(wide[0].tv_nsec, st.st_atim.tv_nsec);
	EXPECT_EQ(wide[1].tv_sec, st.st_mtim.tv_sec);
	EXPECT_EQ(wide[1].tv_nsec, st.st_mtim.tv_nsec);

	/* A write sets mtime and ctime to now. */
	ASSERT_EQ(0, utimensat(AT_FDCWD, fs_path("f"), times, 0));
	before = st_of(fs_path("f"));
	fs_tick();
	ASSERT_EQ(0, fs_write_file(fs_path("f"), "changed", 7));
	st = st_of(fs_path("f"));
	EXPECT_LT(0, ts_cmp(st.st_mtim, times[1]));
	EXPECT_LT(0, ts_cmp(st.st_ctim, before.st_ctim));
	EXPECT_EQ(0, ts_cmp(st.st_mtim, st.st_ctim));

	/* Creating an entry sets the directory's mtime and ctime. */
	ASSERT_EQ(0, mkdir(fs_path("d2"), 0755));
	before = st_of(fs_path("d2"));
	fs_tick();
	ASSERT_EQ(0, make_file(fs_path("d2/new"), ""));
	st = st_of(fs_path("d2"));
	EXPECT_LT(0, ts_cmp(st.st_mtim, before.st_mtim));
	EXPECT_LT(0, ts_cmp(st.st_ctim, before.st_ctim));

	/* Explicit times round-trip through a remount, to the nanosecond. */
	ASSERT_EQ(0, utimensat(AT_FDCWD, fs_path("f"), times, 0));
	ASSERT_EQ(0, utimensat(AT_FDCWD, fs_path("d"), wide, 0));
	struct stat f_saved = st_of(fs_path("f"));
	ASSERT_EQ(0, fs_remount());
	st = st_of(fs_path("f"));
	EXPECT_EQ(0, ts_cmp(times[0], st.st_atim));
	EXPECT_EQ(0, ts_cmp(times[1], st.st_mtim));
	EXPECT_EQ(0, ts_cmp(f_saved.st_ctim, st.st_ctim));
	st = st_of(fs_path("d"));
	EXPECT_EQ(0, ts_cmp(wide[0], st.st_atim));
	EXPECT_EQ(0, ts_cmp(wide[1], st.st_mtim));
}

/* An overwrite that does not grow the file sets mtime and ctime to now
 * too, and the times stat shows after a burst of overwrites (most of them
 * within one tick of the clock) are the ones a remount reads. */
TEST_F(fs, overwrite_times)
{
	const struct timespec old[2] = {
		{ .tv_sec = 1234567890, .tv_nsec = 123456789 },
		{ .tv_sec = 1500000000, .tv_nsec = 987654321 },
	};
	struct stat before, st, shown;
	int fd;

	ASSERT_EQ(0, make_file(fs_path("f"), "0123456789abcdef"));
	ASSERT_EQ(0, utimensat(AT_FDCWD, fs_path("f"), old, 0));
	before = st_of(fs_path("f"));
	fs_tick();
	fd = open(fs_path("f"), O_WRONLY);
	ASSERT_LE(0, fd);
	ASSERT_EQ(1, pwrite(fd, "x", 1, 3));
	st = st_of(fs_path("f"));
	EXPECT_LT(0, ts_cmp(st.st_mtim, old[1]));
	EXPECT_LT(0, ts_cmp(st.st_ctim, before.st_ctim));
	EXPECT_EQ(0, ts_cmp(st.st_mtim, st.st_ctim));
	EXPECT_EQ(16, st.st_size);

	/* Set the times back and overwrite again, within the same tick. */
	ASSERT_EQ(0, futimens(fd, old));
	ASSERT_EQ(1, pwrite(fd, "y", 1, 4));
	st = st_of(fs_path("f"));
	EXPECT_LT(0, ts_cmp(st.st_mtim, old[1]));
	EXPECT_EQ(0, ts_cmp(st.st_mtim, st.st_ctim));

	for (int i = 0; i < 200; i++) {
		ASSERT_EQ(1, pwrite(fd, "z", 1, i % 16));
		if (i % 50 == 0)
			fs_tick();
	}
	shown = st_of(fs_path("f"));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, fs_remount());
	st = st_of(fs_path("f"));
	EXPECT_EQ(0, ts_cmp(shown.st_mtim, st.st_mtim));
	EXPECT_EQ(0, ts_cmp(shown.st_ctim, st.st_ctim));
	EXPECT_EQ(16, st.st_size);
	EXPECT_STREQ("zzzzzzzzzzzzzzzz", text_of(fs_path("f")));
}

TEST_HARNESS_MAIN
