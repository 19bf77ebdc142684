// SPDX-License-Identifier: GPL-2.0
/*
 * fs_fuzz: mount mutated oxdax images in the kernel and use them.
 *
 *   fs_fuzz DEVICE BYTES IMAGES SEED
 *   fs_fuzz sbset DEVICE OFFSET VALUE   store the u64 VALUE at byte OFFSET
 *                                       of both superblocks, checksums
 *                                       recomputed (crafted superblocks
 *                                       for the mount tests)
 *
 * The first BYTES of DEVICE hold a populated oxdax filesystem (made by the
 * caller, unmounted). For each of IMAGES rounds: write that image back,
 * mutate a few places of its metadata — superblocks, journal header,
 * free-space maps and the first blocks of the data area, where mkfs and
 * the first allocations put tree nodes and inode chunks — with bit flips,
 * crafted integers, zeros or a block copied over another, recomputing the
 * checksum half the time so the crafted values reach the checks behind
 * it (superblocks, the journal header, tree nodes, and the inode records
 * whose checksum was right), or with one field of a tree record (an
 * extent's device block or length, a refcount or reverse-map range, ...)
 * set to an edge value, or an internal node's separator moved to a
 * neighbour's key or one off it, or its child pointer elsewhere, and the
 * node resealed; then mount, walk, read, write, rename, unlink, truncate, fallocate
 * and clone whatever is there, and unmount. Every step may fail with an
 * errno; the kernel must not oops, WARN, hang or report KASAN (the test
 * runner checks the log), and unmount must always work.
 *
 * Prints a summary; exit status 0 unless unmount failed or the device
 * could not be used.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK 4096
#define MNT "/mnt/fuzz"

static uint64_t rng_state;

static uint32_t next_random(void)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return rng_state >> 33;
}

static uint32_t crc32c(uint32_t crc, const unsigned char *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78 & -(crc & 1));
	}
	return ~crc;
}

/* Recomputes the checksum of a superblock, the journal header (block 2) or
 * a tree node (oxdax's format). */
static void reseal(unsigned char *block, uint64_t number)
{
	uint32_t crc;

	if (number <= 2) {
		crc = crc32c(0, block, BLOCK - 4);
		memcpy(block + BLOCK - 4, &crc, 4);
	} else if (!memcmp(block, "OXBT", 4)) {
		crc = crc32c(crc32c(0, block, 28), block + 32, BLOCK - 32);
		memcpy(block + 28, &crc, 4);
	}
}

/*
 * Crafts one field of one record of the tree leaf at @block (if it is one)
 * to a value at an edge (past the device, its last block, zero, near
 * UINT64_MAX) and reseals the node, so the record passes the checksum and
 * reaches the checks behind it: extents' device blocks and lengths,
 * refcount and reverse-map ranges and counts, inode-chunk keys and maps,
 * directory entries' inode numbers. Returns whether it did.
 */
static int craft_record(unsigned char *image, uint64_t block, uint64_t blocks,
			uint64_t data_start)
{
	/* Per tree kind (1..5): entry size, and fields (offset, width,
	 * big-endian key field) worth crafting. */
	static const struct {
		int size, count;
		struct { int offset, width, big_endian; } field[4];
	} kinds[6] = {
		[1] = { 24, 2, { { 0, 8, 1 }, { 8, 8, 0 } } },
		[2] = { 24, 3, { { 0, 8, 1 }, { 8, 8, 0 }, { 16, 4, 0 } } },
		[3] = { 12 + 268, 1, { { 12, 8, 0 } } },
		[4] = { 40, 4, { { 0, 8, 1 }, { 8, 8, 1 }, { 16, 8, 1 }, { 24, 8, 0 } } },
		[5] = { 24, 3, { { 0, 8, 1 }, { 8, 8, 0 }, { 16, 8, 0 } } },
	};
	const uint64_t edges[] = {
		UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 512, 1ull << 63, UINT32_MAX,
		blocks, blocks - 1, 0, 1, 2,
	};
	unsigned char *node = image + block * BLOCK, bytes[8];
	uint64_t value = edges[next_random() % (sizeof(edges) / sizeof(edges[0]))];
	int kind = node[4], count = node[6] | node[7] << 8, f, at;

	if (memcmp(node, "OXBT", 4) || count == 0 || kind < 1 || kind > 5)
		return 0;
	if (node[5] > 0) {
		/* Internal: a separator moved to a neighbour's key or one off it,
		 * or a child pointer to another block of the data area. */
		int key = kind == 3 ? 12 : kind == 4 ? 24 : 8, size = key + 8;
		int i = next_random() % count, j = i + 1 < count ? i + 1 : (i ? i - 1 : 0);
		uint64_t word, to;

		at = 32 + i * size;
		if (next_random() % 2) {
			to = data_start + next_random() % 64;
			memcpy(node + at + key, &to, 8);
		} else {
			for (int b = 0; b < 8; b++)
				bytes[b] = node[32 + j * size + key - 8 + b];
			word = 0;
			for (int b = 0; b < 8; b++)
				word = word << 8 | bytes[b];
			word += (int)(next_random() % 3) - 1;
			for (int b = 0; b < 8; b++)
				node[at + key - 8 + b] = word >> (8 * (7 - b));
		}
		reseal(node, block);
		return 1;
	}
	f = next_random() % kinds[kind].count;
	at = 32 + (next_random() % count) * kinds[kind].size + kinds[kind].field[f].offset;
	for (int i = 0; i < 8; i++)
		bytes[i] = value >> (8 * (kinds[kind].field[f].big_endian ? 7 - i : i));
	if (kinds[kind].field[f].big_endian)
		memcpy(node + at, bytes + 8 - kinds[kind].field[f].width, kinds[kind].field[f].width);
	else
		memcpy(node + at, bytes, kinds[kind].field[f].width);
	reseal(node, block);
	return 1;
}

/* The checksum of the inode record @rec of inode @ino. */
static uint32_t inode_crc(uint64_t ino, const unsigned char *rec)
{
	unsigned char le[8];

	for (int i = 0; i < 8; i++)
		le[i] = ino >> (8 * i);
	return crc32c(crc32c(0, le, 8), rec, 252);
}

/*
 * Reseals the inode records of block @number whose checksum was right in
 * @before: the checksum is seeded with the inode number, which the block
 * alone does not tell (it may be any of a chunk's four blocks), so each
 * possible one is tried.
 */
static void reseal_inodes(const unsigned char *before, unsigned char *after, uint64_t number)
{
	for (int r = 0; r < BLOCK / 256; r++) {
		uint32_t stored, crc;

		memcpy(&stored, before + r * 256 + 252, 4);
		for (uint64_t back = 0; back < 4 && back < number; back++) {
			uint64_t ino = (number - back) << 6 | (back * 16 + r);

			if (inode_crc(ino, before + r * 256) == stored) {
				crc = inode_crc(ino, after + r * 256);
				memcpy(after + r * 256 + 252, &crc, 4);
				break;
			}
		}
	}
}

static void mutate(unsigned char *image, uint64_t blocks, uint64_t data_start)
{
	static unsigned char before[BLOCK];

	int changes = 1 + next_random() % 4;

	for (int i = 0; i < changes; i++) {
		uint64_t block = next_random() % 2 ? next_random() % data_start
						   : data_start + next_random() % 64;
		unsigned char *at;
		uint64_t value;

		if (block >= blocks)
			block = next_random() % blocks;
		if (next_random() % 3 == 0)
			block = next_random() % 3; /* superblocks, journal header */
		if (next_random() % 3 == 0 && craft_record(image, block, blocks, data_start))
			continue;
		at = image + block * BLOCK + (next_random() % (BLOCK / 8)) * 8;
		memcpy(before, image + block * BLOCK, BLOCK);
		switch (next_random() % 5) {
		case 0:
			at[next_random() % 8] ^= 1 << (next_random() % 8);
			break;
		case 1:
			memset(at, 0xff, 8);
			break;
		case 2:
			value = next_random() % 8192;
			memcpy(at, &value, 8);
			break;
		case 3:
			memset(at, 0, 8);
			break;
		default:
			memcpy(image + block * BLOCK,
			       image + (data_start + next_random() % 64) % blocks * BLOCK, BLOCK);
		}
		if (next_random() % 2) {
			reseal(image + block * BLOCK, block);
			reseal_inodes(before, image + block * BLOCK, block);
		}
	}
}

static void exercise_file(const char *path, int round)
{
	static char buf[65536];
	int fd = open(path, O_RDWR);

	if (fd < 0)
		return;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	if (pwrite(fd, buf, 5000, round % 9000) < 0)
		(void)0;
	if (ftruncate(fd, round % 20000) < 0)
		(void)0;
	if (fallocate(fd, 0, 0, 16384) < 0)
		(void)0;
	if (fallocate(fd, 3, 4096, 4096) < 0)
		(void)0;
	lseek(fd, 0, SEEK_DATA);
	lseek(fd, 0, SEEK_HOLE);
	fsync(fd);
	close(fd);
}

static void walk(const char *dir, int depth, int round, int *budget)
{
	struct dirent *entry;
	DIR *d;

	if (depth > 8 || (d = opendir(dir)) == NULL)
		return;
	while ((entry = readdir(d)) && (*budget)-- > 0) {
		char path[1024];
		struct stat st;

		if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
		if (lstat(path, &st))
			continue;
		if (S_ISDIR(st.st_mode))
			walk(path, depth + 1, round, budget);
		else if (S_ISREG(st.st_mode))
			exercise_file(path, round);
	}
	closedir(d);
}

static void exercise(int round)
{
	int budget = 300, fd;

	walk(MNT, 0, round, &budget);
	fd = open(MNT "/fuzz-new", O_CREAT | O_RDWR, 0644);
	if (fd >= 0) {
		if (write(fd, "fuzz", 4) < 0)
			(void)0;
		close(fd);
	}
	if (mkdir(MNT "/fuzz-dir", 0755) < 0)
		(void)0;
	if (rename(MNT "/fuzz-new", MNT "/fuzz-dir/moved") < 0)
		(void)0;
	if (link(MNT "/fuzz-dir/moved", MNT "/fuzz-link") < 0)
		(void)0;
	if (unlink(MNT "/fuzz-link") < 0)
		(void)0;
	if (unlink(MNT "/fuzz-dir/moved") < 0)
		(void)0;
	if (rmdir(MNT "/fuzz-dir") < 0)
		(void)0;
}

static int set_superblocks(const char *path, uint64_t offset, uint64_t value)
{
	unsigned char *block;
	int fd = open(path, O_RDWR | O_DIRECT);

	if (fd < 0 || offset + 8 > BLOCK - 4 || posix_memalign((void **)&block, BLOCK, BLOCK)) {
		perror(path);
		return 1;
	}
	for (uint64_t n = 0; n < 2; n++) {
		if (pread(fd, block, BLOCK, n * BLOCK) != BLOCK)
			return 1;
		memcpy(block + offset, &value, 8);
		reseal(block, n);
		if (pwrite(fd, block, BLOCK, n * BLOCK) != BLOCK)
			return 1;
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned char *base, *image;
	uint64_t bytes, blocks, data_start;
	int images, device, mounted = 0, refused = 0;

	if (argc == 5 && !strcmp(argv[1], "sbset"))
		return set_superblocks(argv[2], strtoull(argv[3], NULL, 0),
				       strtoull(argv[4], NULL, 0));
	if (argc != 5) {
		fprintf(stderr, "usage: fs_fuzz DEVICE BYTES IMAGES SEED\n");
		return 2;
	}
	bytes = strtoull(argv[2], NULL, 0);
	images = atoi(argv[3]);
	rng_state = strtoull(argv[4], NULL, 0);
	blocks = bytes / BLOCK;
	device = open(argv[1], O_RDWR | O_DIRECT);
	if (device < 0 || posix_memalign((void **)&base, BLOCK, bytes) ||
	    posix_memalign((void **)&image, BLOCK, bytes) ||
	    pread(device, base, bytes, 0) != (ssize_t)bytes) {
		perror(argv[1]);
		return 1;
	}
	memcpy(&data_start, base + 0x90, 8);
	if (data_start == 0 || data_start >= blocks) {
		fprintf(stderr, "fs_fuzz: %s holds no oxdax filesystem\n", argv[1]);
		return 1;
	}
	mkdir(MNT, 0755);
	for (int round = 0; round < images; round++) {
		memcpy(image, base, bytes);
		mutate(image, blocks, data_start);
		if (pwrite(device, image, bytes, 0) != (ssize_t)bytes) {
			perror("write image");
			return 1;
		}
		if (mount(argv[1], MNT, "oxdax", 0, NULL)) {
			refused++;
			continue;
		}
		mounted++;
		exercise(round);
		if (umount(MNT)) {
			fprintf(stderr, "fs_fuzz: round %d: umount: %s\n", round, strerror(errno));
			return 1;
		}
	}
	printf("fs_fuzz: %d images: %d mounted and used, %d refused\n", images, mounted, refused);
	/* Leave a sane filesystem behind. */
	if (pwrite(device, base, bytes, 0) != (ssize_t)bytes)
		return 1;
	return 0;
}
