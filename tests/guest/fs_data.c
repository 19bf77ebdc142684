// SPDX-License-Identifier: GPL-2.0
/*
 * File data: write/read round trips at odd offsets and sizes, sparse files,
 * extending writes and the zeros they leave, O_APPEND, pread/pwrite,
 * truncate down and up (also while another process reads), O_DIRECT,
 * fsync/fdatasync, persistence across remount (a 64 MiB pattern), and
 * ENOSPC: fill the filesystem, keep what was written, free it again.
 *
 * OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h).
 */
#include <signal.h>
#include <sys/mman.h>

#include "kselftest_harness.h"
#include "oxdax_fs.h"

static int err_of(long ret)
{
	return ret < 0 ? errno : 0;
}

/* Compares @len bytes of file @fd at @off with @want; returns the first
 * differing file offset or -1. */
static long long diff_file(int fd, const unsigned char *want, size_t len, off_t off)
{
	static unsigned char buf[1 << 20];

	for (size_t done = 0; done < len;) {
		size_t n = len - done < sizeof(buf) ? len - done : sizeof(buf);
		ssize_t got = pread(fd, buf, n, off + done);

		if (got != (ssize_t)n)
			return off + done + (got > 0 ? got : 0);
		for (size_t i = 0; i < n; i++)
			if (buf[i] != want[done + i])
				return off + done + i;
		done += n;
	}
	return -1;
}

/* Whether [@off, @off + @len) of @fd reads as zeros. */
static bool reads_zero(int fd, off_t off, size_t len)
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

static struct statfs statfs_of(void)
{
	struct statfs s;

	if (statfs(FS_MNT, &s))
		memset(&s, 0, sizeof(s));
	return s;
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

TEST_F(fs, odd_offsets_and_sizes)
{
	static const struct { size_t off, len; } writes[] = {
		{ 0, 1 }, { 1, 4095 }, { 4095, 2 }, { 4097, 8191 }, { 12345, 100000 },
		{ 2 * MIB - 3, 7 }, { MIB + 17, 3 * MIB }, { 5 * MIB - 1, 1 },
		{ 300, 5000 }, { 2 * MIB, 2 * MIB }, { 6 * MIB - 511, 4096 + 1023 },
	};
	size_t size = 0;
	unsigned char *model, *chunk;
	int fd;

	for (size_t w = 0; w < ARRAY_SIZE(writes); w++)
		if (writes[w].off + writes[w].len > size)
			size = writes[w].off + writes[w].len;
	model = calloc(size, 1);
	chunk = malloc(size);
	ASSERT_NE(NULL, model);
	ASSERT_NE(NULL, chunk);
	fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, fd);

	/* Overlapping writes, each with its own seed, applied to a model too. */
	for (size_t w = 0; w < ARRAY_SIZE(writes); w++) {
		fs_fill(chunk, writes[w].len, writes[w].off, w + 1);
		ASSERT_EQ((ssize_t)writes[w].len, pwrite(fd, chunk, writes[w].len, writes[w].off));
		memcpy(model + writes[w].off, chunk, writes[w].len);
		EXPECT_EQ(-1, diff_file(fd, model + writes[w].off, writes[w].len,
					writes[w].off));
	}
	struct stat st;
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ((off_t)size, st.st_size);
	EXPECT_EQ(-1, diff_file(fd, model, size, 0));

	/* Reads of odd sizes at odd offsets, and across EOF. */
	for (size_t off = 0, len = 1; off < size; off += len, len = len * 3 + 1) {
		size_t want = off + len > size ? size - off : len;

		memset(chunk, 0xa5, want);
		ASSERT_EQ((ssize_t)want, pread(fd, chunk, len, off));
		EXPECT_EQ(0, memcmp(chunk, model + off, want)) TH_LOG("read at %zu+%zu", off, len);
	}
	EXPECT_EQ(0, pread(fd, chunk, 10, size));
	EXPECT_EQ(0, pread(fd, chunk, 10, size + 12345));
	EXPECT_EQ(0, pwrite(fd, chunk, 0, size + 100));	/* empty write: no extension */
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ((off_t)size, st.st_size);
	close(fd);

	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, diff_file(fd, model, size, 0));
	close(fd);
	free(model);
	free(chunk);
}

TEST_F(fs, sparse_file)
{
	const off_t far = 100 * MIB;
	unsigned char buf[4096];
	struct stat st;
	int fd = open(fs_path("sparse"), O_RDWR | O_CREAT, 0644);

	ASSERT_LE(0, fd);
	fs_fill(buf, sizeof(buf), 0, 1);
	ASSERT_EQ(4096, pwrite(fd, buf, 4096, 0));
	fs_fill(buf, sizeof(buf), far, 1);
	ASSERT_EQ(4096, pwrite(fd, buf, 4096, far));
	ASSERT_EQ(0, fsync(fd));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(far + 4096, st.st_size);
	/* Two 4 KiB blocks of data, plus metadata; far below 100 MiB. */
	EXPECT_LE(8 * 512, st.st_blocks * 512);
	EXPECT_GE(1 * MIB, st.st_blocks * 512) TH_LOG("st_blocks %lld", (long long)st.st_blocks);

	/* The hole reads as zeros (in full, at odd places, across its edges). */
	EXPECT_TRUE(reads_zero(fd, 4096, far - 4096));
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, 4096, 1));
	EXPECT_EQ(-1, fs_check_pattern(fd, far, 4096, 1));
	unsigned char edge[200];
	ASSERT_EQ(200, pread(fd, edge, 200, 4096 - 100));
	EXPECT_EQ(-1, fs_check_fill(edge, 100, 4096 - 100, 1));
	EXPECT_TRUE(fs_all_zero(edge + 100, 100));
	ASSERT_EQ(200, pread(fd, edge, 200, far - 100));
	EXPECT_TRUE(fs_all_zero(edge, 100));
	EXPECT_EQ(-1, fs_check_fill(edge + 100, 100, far, 1));

	/* Reading the hole allocates nothing. */
	ASSERT_EQ(0, fstat(fd, &st));
	blkcnt_t blocks = st.st_blocks;
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("sparse"), O_RDONLY);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_GE(blocks, st.st_blocks);
	EXPECT_TRUE(reads_zero(fd, 4096, 8 * MIB));
	EXPECT_EQ(-1, fs_check_pattern(fd, far, 4096, 1));
	close(fd);
}

/* Writes into a sparse file that do not grow it, back to back (within a
 * tick of the clock, mostly: the times need no change after the first),
 * still show their blocks in st_blocks at once, as the filesystem will
 * after a remount. */
TEST_F(fs, block_count_follows_writes_within_a_tick)
{
	unsigned char buf[4096];
	struct stat st, later;
	int fd = open(fs_path("holes"), O_RDWR | O_CREAT, 0644);

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, 64 * MIB));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_GE(8, st.st_blocks);
	fs_fill(buf, sizeof(buf), 0, 7);
	/* Each write allocates in a 2 MiB region of its own. */
	for (int i = 0; i < 32; i++) {
		blkcnt_t before = st.st_blocks;

		ASSERT_EQ(4096, pwrite(fd, buf, 4096, (off_t)i * 2 * MIB + 4096));
		ASSERT_EQ(0, fstat(fd, &st));
		EXPECT_LT(before, st.st_blocks) TH_LOG("write %d", i);
	}
	EXPECT_LE(32 * 4096, st.st_blocks * 512) TH_LOG("st_blocks %lld", (long long)st.st_blocks);
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, fs_remount());
	ASSERT_EQ(0, stat(fs_path("holes"), &later));
	EXPECT_EQ(st.st_blocks, later.st_blocks);
	EXPECT_EQ(64 * MIB, later.st_size);
}

TEST_F(fs, extending_writes_leave_zeros)
{
	unsigned char buf[16384];
	struct stat st;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);

	ASSERT_LE(0, fd);
	ASSERT_EQ(10, pwrite(fd, "0123456789", 10, 0));
	ASSERT_EQ(10, pwrite(fd, "abcdefghij", 10, 10000));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(10010, st.st_size);
	ASSERT_EQ(10010, pread(fd, buf, sizeof(buf), 0));
	EXPECT_EQ(0, memcmp(buf, "0123456789", 10));
	EXPECT_TRUE(fs_all_zero(buf + 10, 10000 - 10));
	EXPECT_EQ(0, memcmp(buf + 10000, "abcdefghij", 10));

	/* Stale bytes past EOF inside a block must not come back: fill a block,
	 * shrink to 100 bytes, then write beyond: 100..3999 read as zeros. */
	fs_fill(buf, 4096, 0, 7);
	ASSERT_EQ(4096, pwrite(fd, buf, 4096, 0));
	ASSERT_EQ(0, ftruncate(fd, 100));
	ASSERT_EQ(1, pwrite(fd, "X", 1, 4000));
	ASSERT_EQ(4001, pread(fd, buf, sizeof(buf), 0));
	EXPECT_EQ(-1, fs_check_fill(buf, 100, 0, 7));
	EXPECT_TRUE(fs_all_zero(buf + 100, 3900));
	EXPECT_EQ('X', buf[4000]);

	/* The same with the new write in the next block. */
	fs_fill(buf, 8192, 0, 8);
	ASSERT_EQ(8192, pwrite(fd, buf, 8192, 0));
	ASSERT_EQ(0, ftruncate(fd, 5000));
	ASSERT_EQ(1, pwrite(fd, "Y", 1, 12000));
	ASSERT_EQ(12001, pread(fd, buf, sizeof(buf), 0));
	EXPECT_EQ(-1, fs_check_fill(buf, 5000, 0, 8));
	EXPECT_TRUE(fs_all_zero(buf + 5000, 7000));
	EXPECT_EQ('Y', buf[12000]);

	/* Extending through write() from the file offset. */
	ASSERT_EQ(20000, lseek(fd, 20000, SEEK_SET));
	ASSERT_EQ(3, write(fd, "end", 3));
	ASSERT_EQ(20003, lseek(fd, 0, SEEK_CUR));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(20003, st.st_size);
	EXPECT_TRUE(reads_zero(fd, 12001, 20000 - 12001));
	close(fd);

	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	ASSERT_EQ(16384, pread(fd, buf, sizeof(buf), 0));
	EXPECT_EQ(-1, fs_check_fill(buf, 5000, 0, 8));
	EXPECT_TRUE(fs_all_zero(buf + 5000, 7000));
	EXPECT_EQ('Y', buf[12000]);
	EXPECT_TRUE(reads_zero(fd, 12001, 20000 - 12001));
	close(fd);
}

TEST_F(fs, append_and_positional_io)
{
	char buf[64];
	int a = open(fs_path("log"), O_WRONLY | O_CREAT | O_APPEND, 0644);
	int b = open(fs_path("log"), O_WRONLY | O_APPEND);
	int rw = open(fs_path("log"), O_RDWR);

	ASSERT_LE(0, a);
	ASSERT_LE(0, b);
	ASSERT_LE(0, rw);
	ASSERT_EQ(3, write(a, "one", 3));
	ASSERT_EQ(3, write(b, "two", 3));
	ASSERT_EQ(5, write(a, "three", 5));
	EXPECT_EQ(11, lseek(a, 0, SEEK_CUR));
	EXPECT_EQ(6, lseek(b, 0, SEEK_CUR));	/* b's offset: after its own write */
	/* O_APPEND writes go to the end even after a seek. */
	ASSERT_EQ(0, lseek(b, 0, SEEK_SET));
	ASSERT_EQ(4, write(b, "four", 4));
	ASSERT_EQ(15, pread(rw, buf, sizeof(buf), 0));
	EXPECT_EQ(0, memcmp(buf, "onetwothreefour", 15));

	/* pread/pwrite leave the file offset alone. */
	ASSERT_EQ(3, lseek(rw, 3, SEEK_SET));
	ASSERT_EQ(3, pwrite(rw, "TWO", 3, 3));
	ASSERT_EQ(5, pread(rw, buf, 5, 6));
	EXPECT_EQ(0, memcmp(buf, "three", 5));
	EXPECT_EQ(3, lseek(rw, 0, SEEK_CUR));
	ASSERT_EQ(3, read(rw, buf, 3));
	EXPECT_EQ(0, memcmp(buf, "TWO", 3));
	EXPECT_EQ(6, lseek(rw, 0, SEEK_CUR));

	/* Append after a truncate starts at the new end. */
	ASSERT_EQ(0, ftruncate(rw, 3));
	ASSERT_EQ(1, write(a, "!", 1));
	ASSERT_EQ(4, pread(rw, buf, sizeof(buf), 0));
	EXPECT_EQ(0, memcmp(buf, "one!", 4));

	/* Invalid positional I/O. */
	EXPECT_EQ(EINVAL, err_of(pwrite(rw, "x", 1, -1)));
	EXPECT_EQ(EINVAL, err_of(pread(rw, buf, 1, -1)));
	EXPECT_EQ(EBADF, err_of(pread(a, buf, 1, 0)));	/* write-only */
	close(a);
	close(b);
	close(rw);
}

TEST_F(fs, truncate)
{
	struct stat st;
	unsigned char buf[256];
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);

	ASSERT_LE(0, fd);
	ASSERT_EQ(4 * MIB, fs_write_pattern(fd, 0, 4 * MIB, 3));
	ASSERT_EQ(0, fstat(fd, &st));
	blkcnt_t full = st.st_blocks;
	EXPECT_LE(4 * MIB, st.st_blocks * 512);

	/* Down: reads past the new end return nothing; blocks are freed. */
	ASSERT_EQ(0, ftruncate(fd, 5000));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(5000, st.st_size);
	EXPECT_GT(full / 4, st.st_blocks);
	EXPECT_EQ(0, pread(fd, buf, sizeof(buf), 5000));
	EXPECT_EQ(0, pread(fd, buf, sizeof(buf), 1 * MIB));
	EXPECT_EQ(10, pread(fd, buf, 100, 4990));
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, 5000, 3));

	/* Up: the new range reads as zeros, also the rest of the old block. */
	ASSERT_EQ(0, truncate(fs_path("f"), 3 * MIB));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(3 * MIB, st.st_size);
	EXPECT_TRUE(reads_zero(fd, 5000, 3 * MIB - 5000));
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, 5000, 3));
	EXPECT_GT(full / 4, st.st_blocks);	/* truncating up allocates nothing */

	/* To zero and back. */
	ASSERT_EQ(0, ftruncate(fd, 0));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(0, st.st_size);
	EXPECT_EQ(0, pread(fd, buf, sizeof(buf), 0));
	ASSERT_EQ(0, ftruncate(fd, 4096 + 1));
	EXPECT_TRUE(reads_zero(fd, 0, 4097));
	EXPECT_EQ(EINVAL, err_of(ftruncate(fd, -1)));
	close(fd);

	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(4097, st.st_size);
	EXPECT_TRUE(reads_zero(fd, 0, 4097));
	close(fd);
}

TEST_F_TIMEOUT(fs, truncate_while_reading, 120)
{
	const size_t size = 4 * MIB;
	unsigned char buf[64 * 1024];
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	int reader_fd, status;
	pid_t pid;

	ASSERT_LE(0, fd);
	ASSERT_EQ(size, fs_write_pattern(fd, 0, size, 5));
	reader_fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, reader_fd);

	/* Another open file: reads stop at the new end, then see zeros. */
	ASSERT_EQ(0, ftruncate(fd, 10000));
	EXPECT_EQ(0, pread(reader_fd, buf, sizeof(buf), 10000));
	ASSERT_EQ(size, lseek(reader_fd, size, SEEK_SET));
	EXPECT_EQ(0, read(reader_fd, buf, sizeof(buf)));
	ASSERT_EQ(0, ftruncate(fd, size));
	EXPECT_EQ((ssize_t)sizeof(buf), pread(reader_fd, buf, sizeof(buf), 1 * MIB));
	EXPECT_TRUE(fs_all_zero(buf, sizeof(buf)));
	ASSERT_EQ(size, fs_write_pattern(fd, 0, size, 5));

	/*
	 * A child reads random ranges while the parent shrinks, regrows and
	 * rewrites the file: every byte read is the pattern or zero (a hole
	 * not yet rewritten), never anything else.
	 */
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		uint64_t x = 88172645463325252ull;
		unsigned long reads = 0;

		for (;;) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			off_t off = x % size;
			ssize_t n = pread(reader_fd, buf, sizeof(buf), off);

			if (n < 0)
				_exit(2);
			for (ssize_t i = 0; i < n; i++) {
				if (buf[i] && buf[i] != fs_pattern_byte(off + i, 5)) {
					fprintf(stderr, "# byte %lld read as %#x after %lu reads\n",
						(long long)(off + i), buf[i], reads);
					_exit(1);
				}
			}
			reads++;
		}
	}
	for (int round = 0; round < 40; round++) {
		off_t cut = (round * 123457) % size;

		ASSERT_EQ(0, ftruncate(fd, cut));
		ASSERT_EQ(0, ftruncate(fd, size));
		ASSERT_EQ(size - cut, fs_write_pattern(fd, cut, size - cut, 5));
		ASSERT_EQ(0, waitpid(pid, &status, WNOHANG)) TH_LOG("reader failed");
	}
	kill(pid, SIGKILL);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFSIGNALED(status)) TH_LOG("reader exit status %d", WEXITSTATUS(status));
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, size, 5));
	close(reader_fd);
	close(fd);
}

TEST_F(fs, direct_io)
{
	const size_t len = 1 * MIB;
	unsigned char *buf;
	int fd, plain;

	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, len));
	fd = open(fs_path("direct"), O_RDWR | O_CREAT | O_DIRECT, 0644);
	ASSERT_LE(0, fd) TH_LOG("O_DIRECT open: %s", strerror(errno));
	plain = open(fs_path("direct"), O_RDWR);
	ASSERT_LE(0, plain);

	fs_fill(buf, len, 8192, 11);
	ASSERT_EQ((ssize_t)len, pwrite(fd, buf, len, 8192));
	EXPECT_EQ(-1, fs_check_pattern(plain, 8192, len, 11));
	EXPECT_TRUE(reads_zero(plain, 0, 8192));

	/* Written through the other descriptor, read with O_DIRECT. */
	ASSERT_EQ(64 * KIB, fs_write_pattern(plain, 512 * KIB, 64 * KIB, 12));
	memset(buf, 0, len);
	ASSERT_EQ((ssize_t)len, pread(fd, buf, len, 8192));
	EXPECT_EQ(-1, fs_check_fill(buf, 512 * KIB - 8192, 8192, 11));
	EXPECT_EQ(-1, fs_check_fill(buf + 512 * KIB - 8192, 64 * KIB, 512 * KIB, 12));
	/* Across EOF: short. */
	EXPECT_EQ(4096, pread(fd, buf, 8192, 8192 + len - 4096));
	EXPECT_EQ(0, fsync(fd));
	close(fd);
	close(plain);

	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("direct"), O_RDONLY | O_DIRECT);
	ASSERT_LE(0, fd);
	ASSERT_EQ(4096, pread(fd, buf, 4096, 8192));
	EXPECT_EQ(-1, fs_check_fill(buf, 4096, 8192, 11));
	close(fd);
	free(buf);
}

TEST_F(fs, sync_calls)
{
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	int dir = open(FS_MNT, O_RDONLY | O_DIRECTORY);

	ASSERT_LE(0, fd);
	ASSERT_LE(0, dir);
	ASSERT_EQ(5, write(fd, "synced", 5));
	EXPECT_EQ(0, fsync(fd));
	EXPECT_EQ(0, fdatasync(fd));
	EXPECT_EQ(0, sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE |
				     SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER));
	EXPECT_EQ(0, fsync(dir));
	EXPECT_EQ(0, syncfs(fd));
	int ro = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, ro);
	EXPECT_EQ(0, fsync(ro));	/* fsync of a read-only descriptor works too */
	close(ro);
	/* O_SYNC and O_DSYNC writes. */
	int s = open(fs_path("g"), O_RDWR | O_CREAT | O_SYNC, 0644);
	int d = open(fs_path("h"), O_RDWR | O_CREAT | O_DSYNC, 0644);
	ASSERT_LE(0, s);
	ASSERT_LE(0, d);
	EXPECT_EQ(4, write(s, "sync", 4));
	EXPECT_EQ(5, write(d, "dsync", 5));
	close(s);
	close(d);
	close(fd);
	close(dir);
}

TEST_F_TIMEOUT(fs, large_file_across_remount, 300)
{
	const size_t size = fs_env_ulong("OXDAX_DATA_LARGE_MIB", 64) * MIB;
	struct stat st;
	int fd = open(fs_path("large"), O_RDWR | O_CREAT, 0644);

	ASSERT_LE(0, fd);
	ASSERT_EQ(size, fs_write_pattern(fd, 0, size, 0x1234));
	ASSERT_EQ(0, fsync(fd));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ((off_t)size, st.st_size);
	EXPECT_LE(size, st.st_blocks * 512ull);
	EXPECT_GE(size + size / 16, st.st_blocks * 512ull);
	close(fd);

	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("large"), O_RDONLY);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ((off_t)size, st.st_size);
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, size, 0x1234));
	close(fd);
}

/* At most this many free blocks are left when data no longer fits. */
static uint64_t nearly_full(const struct statfs *empty)
{
	return empty->f_bfree / 50 + 256;
}

TEST_F_TIMEOUT(fs, enospc, 600)
{
	struct statfs before = statfs_of(), full;
	size_t written, chunk = 1 * MIB;
	int fd;

	ASSERT_LT(0, before.f_bfree);
	fd = open(fs_path("filler"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, fd);

	/* Fill: writes succeed until one is short or fails with ENOSPC. */
	written = fs_write_pattern(fd, 0, before.f_bsize * before.f_bfree + 64 * MIB, 0xf111);
	int err = errno;
	TH_LOG("wrote %zu MiB of %llu MiB free", written >> 20,
	       (unsigned long long)(before.f_bsize * before.f_bfree) >> 20);
	EXPECT_TRUE(err == ENOSPC || err == 0) TH_LOG("stopped with %s", strerror(err));
	EXPECT_LE((before.f_bsize * before.f_bfree) * 9 / 10, written);
	EXPECT_GE(before.f_bsize * before.f_bfree, written);

	/* Nothing more fits; what was written is there and intact. */
	unsigned char buf[4096];
	size_t total = written;
	for (int i = 0; i < 4; i++) {
		ssize_t n;

		fs_fill(buf, sizeof(buf), total, 0xf111);
		n = pwrite(fd, buf, sizeof(buf), total);
		if (n > 0) {
			total += n;	/* reserved slack may take a little more */
			continue;
		}
		EXPECT_EQ(-1, n);
		EXPECT_EQ(ENOSPC, errno);
		break;
	}
	EXPECT_GE(written + chunk, total);
	/* Nearly nothing is left (ext4 shows as free the 2% up to 4096
	 * blocks it reserves for metadata and never gives to data). */
	full = statfs_of();
	EXPECT_GE(nearly_full(&before), full.f_bfree);
	/* Another file gets at most those last few blocks (xfs, for one,
	 * trims its preallocations at ENOSPC and lets a little more in). */
	size_t other_written = 0;
	int other = open(fs_path("other"), O_RDWR | O_CREAT, 0644);
	if (other >= 0) {
		other_written = fs_write_pattern(other, 0, 64 * MIB, 0x07e5);
		EXPECT_TRUE(errno == ENOSPC || errno == 0) TH_LOG("%s", strerror(errno));
		EXPECT_GE(nearly_full(&before) * before.f_bsize, other_written);
		close(other);
	} else {
		EXPECT_EQ(ENOSPC, errno);
	}
	EXPECT_EQ(0, fsync(fd));
	struct stat st;
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ((off_t)total, st.st_size);
	close(fd);

	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("filler"), O_RDONLY);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ((off_t)total, st.st_size);
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, total, 0xf111));
	other = open(fs_path("other"), O_RDONLY);
	if (other >= 0) {
		EXPECT_EQ(-1, fs_check_pattern(other, 0, other_written, 0x07e5));
		close(other);
	}

	/* Unlinked while open: the space comes back at close. */
	ASSERT_EQ(0, unlink(fs_path("filler")));
	unlink(fs_path("other"));
	EXPECT_GE(nearly_full(&before), statfs_of().f_bfree);
	close(fd);
	uint64_t after = fs_free_blocks(before.f_bfree - before.f_bfree / 1000);
	EXPECT_LE(before.f_bfree - before.f_bfree / 1000, after)
		TH_LOG("free blocks %llu before filling, %llu after unlink",
		       (unsigned long long)before.f_bfree, (unsigned long long)after);
	EXPECT_GE(before.f_bfree, after);

	/* And can be used again. */
	fd = open(fs_path("again"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(16 * MIB, fs_write_pattern(fd, 0, 16 * MIB, 0xa9a1));
	close(fd);
}

TEST_HARNESS_MAIN
