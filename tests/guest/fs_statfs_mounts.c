// SPDX-License-Identifier: GPL-2.0
/*
 * What a mounted filesystem reports about itself: /proc/mounts shows the
 * mount with "dax" among its options, files are DAX (STATX_ATTR_DAX), and
 * statfs has 4 KiB blocks, counts that fit the disk, free blocks and inodes
 * going down as files are written and back up when they are removed, and
 * the same counts after a remount.
 *
 * OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h).
 */
#include <linux/fs.h>
#include <linux/stat.h>
#include <sys/ioctl.h>

#include "kselftest_harness.h"
#include "oxdax_fs.h"

static struct statfs statfs_of(const char *path)
{
	struct statfs s;

	if (statfs(path, &s))
		memset(&s, 0, sizeof(s));
	return s;
}

/* Writes @len bytes of pattern to a new file @path, synced. */
static int write_file(const char *path, size_t len)
{
	static unsigned char buf[1 << 20];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		return -errno;
	for (size_t off = 0; off < len; off += sizeof(buf)) {
		size_t n = len - off < sizeof(buf) ? len - off : sizeof(buf);

		fs_fill(buf, n, off, 77);
		if (write(fd, buf, n) != (ssize_t)n) {
			close(fd);
			return -EIO;
		}
	}
	if (fsync(fd)) {
		close(fd);
		return -errno;
	}
	return close(fd) ? -errno : 0;
}

/* statfs once freeing has settled: xfs frees unlinked inodes in the
 * background, so wait (bounded) until f_bfree reaches @want. */
static struct statfs settled(uint64_t want_bfree, uint64_t want_ffree)
{
	struct statfs s = statfs_of(FS_MNT);

	for (int i = 0; i < 50 && (s.f_bfree < want_bfree || s.f_ffree < want_ffree); i++) {
		sync();
		usleep(100000);
		s = statfs_of(FS_MNT);
	}
	return s;
}

/* The /proc/mounts line of FS_MNT, split; returns false if there is none. */
static bool mount_entry(char *dev, char *type, char *opts)
{
	char line[1024], mnt[256];
	bool found = false;
	FILE *f = fopen("/proc/mounts", "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%255s %255s %63s %511s", dev, mnt, type, opts) == 4 &&
		    strcmp(mnt, FS_MNT) == 0) {
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

/* Whether comma-separated @opts has @opt exactly. */
static bool has_opt(const char *opts, const char *opt)
{
	size_t len = strlen(opt);

	for (const char *p = opts; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (strncmp(p, opt, len) == 0 && (p[len] == ',' || p[len] == '\0'))
			return true;
	return false;
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

TEST_F(fs, proc_mounts_shows_dax)
{
	char dev[256], type[64], opts[512];

	for (int round = 0; round < 2; round++) {
		ASSERT_TRUE(mount_entry(dev, type, opts)) TH_LOG("%s not in /proc/mounts", FS_MNT);
		TH_LOG("%s %s %s", dev, type, opts);
		EXPECT_STREQ(fs_disk(), dev);
		EXPECT_STREQ(fs_type(), type);
		EXPECT_TRUE(has_opt(opts, "rw"));
		/* "dax" or "dax=always" (ext4 and xfs print the latter) */
		EXPECT_TRUE(has_opt(opts, "dax") || has_opt(opts, "dax=always")) TH_LOG("%s", opts);
		ASSERT_EQ(0, fs_remount());
	}
}

TEST_F(fs, files_are_dax)
{
	struct statx stx;

	ASSERT_EQ(0, fs_write_file(fs_path("f"), "dax", 3));
	ASSERT_EQ(0, mkdir(fs_path("d"), 0755));
	ASSERT_EQ(0, fs_write_file(fs_path("d/g"), "dax", 3));
	const char *files[] = { fs_path("f"), fs_path("d/g") };
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(0, statx(AT_FDCWD, files[i], 0, STATX_BASIC_STATS, &stx));
		EXPECT_TRUE(stx.stx_attributes_mask & STATX_ATTR_DAX);
		EXPECT_TRUE(stx.stx_attributes & STATX_ATTR_DAX) TH_LOG("%s is not DAX", files[i]);
		EXPECT_EQ(4096, stx.stx_blksize);
	}
	ASSERT_EQ(0, fs_remount());
	ASSERT_EQ(0, statx(AT_FDCWD, fs_path("f"), 0, STATX_BASIC_STATS, &stx));
	EXPECT_TRUE(stx.stx_attributes & STATX_ATTR_DAX);
}

TEST_F(fs, statfs_geometry)
{
	struct statfs s = statfs_of(FS_MNT), f;
	uint64_t disk_bytes = 0;
	int fd = open(fs_disk(), O_RDONLY);

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ioctl(fd, BLKGETSIZE64, &disk_bytes));
	close(fd);
	TH_LOG("type %#lx bsize %ld blocks %llu bfree %llu bavail %llu files %llu ffree %llu",
	       (long)s.f_type, (long)s.f_bsize, (unsigned long long)s.f_blocks,
	       (unsigned long long)s.f_bfree, (unsigned long long)s.f_bavail,
	       (unsigned long long)s.f_files, (unsigned long long)s.f_ffree);

	EXPECT_NE(0, s.f_type);
	if (fs_is("ext4"))
		EXPECT_EQ(0xEF53, s.f_type);
	if (fs_is("xfs"))
		EXPECT_EQ(0x58465342, s.f_type);
	EXPECT_EQ(4096, s.f_bsize);
	EXPECT_EQ(4096, s.f_frsize);
	EXPECT_EQ(255, s.f_namelen);
	/* The blocks fit the disk, and most of it is there for data. */
	EXPECT_GE(disk_bytes / 4096, s.f_blocks);
	EXPECT_LE(disk_bytes / 4096 * 8 / 10, s.f_blocks);
	EXPECT_GE(s.f_blocks, s.f_bfree);
	EXPECT_LE(s.f_blocks * 8 / 10, s.f_bfree);	/* a new filesystem is mostly free */
	EXPECT_GE(s.f_bfree, s.f_bavail);
	EXPECT_LT(0, s.f_bavail);
	EXPECT_LT(1000, s.f_files);
	EXPECT_GE(s.f_files, s.f_ffree);
	EXPECT_LT(0, s.f_ffree);
	/* A non-zero fsid (fanotify and others need one), the same for any path. */
	EXPECT_TRUE(s.f_fsid.__val[0] || s.f_fsid.__val[1]);
	ASSERT_EQ(0, fs_write_file(fs_path("f"), "x", 1));
	f = statfs_of(fs_path("f"));
	EXPECT_EQ(0, memcmp(&s.f_fsid, &f.f_fsid, sizeof(s.f_fsid)));
	EXPECT_EQ(s.f_blocks, f.f_blocks);
	EXPECT_EQ(s.f_type, f.f_type);

	/* The same geometry after a remount. */
	ASSERT_EQ(0, fs_remount());
	f = statfs_of(FS_MNT);
	EXPECT_EQ(s.f_type, f.f_type);
	EXPECT_EQ(s.f_bsize, f.f_bsize);
	EXPECT_EQ(s.f_blocks, f.f_blocks);
	EXPECT_EQ(0, memcmp(&s.f_fsid, &f.f_fsid, sizeof(s.f_fsid)));
}

TEST_F_TIMEOUT(fs, statfs_counts_follow_usage, 120)
{
	const uint64_t file_blocks = 32 * MIB / 4096;
	struct statfs empty, used, freed, remounted;

	ASSERT_EQ(0, mkdir(fs_path("d"), 0755));
	sync();
	empty = statfs_of(FS_MNT);

	/* 32 MiB of data and 100 small files: free blocks go down by the 32 MiB
	 * and a little (small files may be inline somewhere), free inodes by 101
	 * or a little more. */
	ASSERT_EQ(0, write_file(fs_path("big"), 32 * MIB));
	for (int i = 0; i < 100; i++)
		ASSERT_EQ(0, write_file(fs_path("d/small%d", i), 100));
	sync();
	used = statfs_of(FS_MNT);
	TH_LOG("bfree %llu -> %llu, ffree %llu -> %llu", (unsigned long long)empty.f_bfree,
	       (unsigned long long)used.f_bfree, (unsigned long long)empty.f_ffree,
	       (unsigned long long)used.f_ffree);
	EXPECT_EQ(empty.f_blocks, used.f_blocks);
	EXPECT_LE(empty.f_bfree - file_blocks - 100 - 1024, used.f_bfree);
	EXPECT_GE(empty.f_bfree - file_blocks, used.f_bfree);
	EXPECT_GE(empty.f_bavail - file_blocks, used.f_bavail);
	EXPECT_LE(empty.f_ffree - 100 - 1024, used.f_ffree);
	EXPECT_GE(empty.f_ffree - 101, used.f_ffree);	/* 100 files and "big" */

	/* The counts are kept across a remount. */
	ASSERT_EQ(0, fs_remount());
	remounted = statfs_of(FS_MNT);
	EXPECT_GE(used.f_bfree + 256, remounted.f_bfree);
	EXPECT_LE(used.f_bfree - 256, remounted.f_bfree);
	EXPECT_GE(used.f_ffree + 256, remounted.f_ffree);
	EXPECT_LE(used.f_ffree - 256, remounted.f_ffree);

	/* Removing them gives the blocks and inodes back. */
	ASSERT_EQ(0, unlink(fs_path("big")));
	for (int i = 0; i < 100; i++)
		ASSERT_EQ(0, unlink(fs_path("d/small%d", i)));
	freed = settled(used.f_bfree + file_blocks, used.f_ffree + 100);
	TH_LOG("after unlink: bfree %llu, ffree %llu", (unsigned long long)freed.f_bfree,
	       (unsigned long long)freed.f_ffree);
	EXPECT_LE(used.f_bfree + file_blocks, freed.f_bfree);
	EXPECT_LE(empty.f_bfree - 256, freed.f_bfree);
	EXPECT_GE(empty.f_bfree + 256, freed.f_bfree);
	EXPECT_LE(empty.f_ffree - 256, freed.f_ffree);
	EXPECT_LE(used.f_ffree + 100, freed.f_ffree);

	/* Truncating frees blocks too. */
	ASSERT_EQ(0, write_file(fs_path("t"), 16 * MIB));
	used = statfs_of(FS_MNT);
	ASSERT_EQ(0, truncate(fs_path("t"), 4096));
	freed = settled(used.f_bfree + 16 * MIB / 4096 - 16, 0);
	EXPECT_LE(used.f_bfree + 16 * MIB / 4096 - 16, freed.f_bfree);
}

TEST_HARNESS_MAIN
