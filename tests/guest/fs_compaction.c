// SPDX-License-Identifier: GPL-2.0
/*
 * Compaction (Documentation/oxdax/allocator.rst, "Compaction"): when most
 * free space lies scattered over partly used 2 MiB chunks, oxdax moves the
 * blocks of nearly empty chunks into the holes of others in the
 * background, so that new files find whole chunks again.
 *
 * The setup scatters free space on purpose: FILES files of 100 KiB each
 * start a chunk of their own (oxdax keeps a region's chunk for a file
 * that is not small), then a fallocated filler takes every chunk still
 * free but two. One file is deleted, which queues compaction; syncfs waits
 * for it. Then:
 *  - chunks: free whole chunks grew by at least FILES / 2, the counters
 *    compacted_chunks and compacted_blocks say so, and the files' blocks
 *    moved (FIEMAP's physical addresses changed);
 *  - data: every file reads back its pattern; one file mapped MAP_SHARED
 *    and stored to before the move still shows its bytes through the old
 *    mapping, and a store through it afterwards reaches the file (read(2)
 *    sees it): the move removed the mapping and the next fault maps the
 *    new blocks;
 *  - a writer appending to another file meanwhile loses nothing;
 *  - fsck is clean (fs_end).
 *
 * oxdax only: ext4 and xfs do not compact (skipped there).
 */
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "kselftest_harness.h"
#include "oxdax_mmap.h"

#define FILES 24
#define FILE_SIZE (100 * KIB)
#define FS_SIZE (96 * MIB)

/* Device address of byte 0 of @fd, or -1. */
static long long physical_of(int fd)
{
	struct {
		struct fiemap map;
		struct fiemap_extent extent;
	} q = { .map = { .fm_length = FIEMAP_MAX_OFFSET, .fm_extent_count = 1 } };

	if (ioctl(fd, FS_IOC_FIEMAP, &q) || q.map.fm_mapped_extents < 1)
		return -1;
	return (long long)q.extent.fe_physical;
}

/* The path of file @i (fs_path's buffer: use before the next call). */
static const char *name_of(int i)
{
	return fs_path("f%02d", i);
}

struct appender {
	int fd;
	size_t written;
	volatile bool stop;
};

static void *append(void *arg)
{
	struct appender *a = arg;

	while (!a->stop && a->written < FILE_SIZE + MIB) {
		if (fs_write_pattern(a->fd, a->written, 16 * KIB, 77) != 16 * KIB)
			break;
		a->written += 16 * KIB;
	}
	return NULL;
}

FIXTURE(compaction) {
	bool oxdax;
};

FIXTURE_SETUP(compaction)
{
	self->oxdax = fs_is("oxdax");
	if (!self->oxdax)
		SKIP(return, "%s does not compact", fs_type());
	ASSERT_EQ(0, fs_begin_size(FS_SIZE));
}

FIXTURE_TEARDOWN(compaction)
{
	if (self->oxdax)
		EXPECT_EQ(0, fs_end());
}

TEST_F_TIMEOUT(compaction, scattered_free_space_becomes_whole_chunks, 600)
{
	long long before[FILES], chunks, blocks, free_before, free_after;
	struct appender a = { .written = 0 };
	pthread_t writer;
	unsigned char *map;
	int fd, filler;

	for (int i = 0; i < FILES; i++) {
		char name[16];

		snprintf(name, sizeof(name), "f%02d", i);
		fd = fs_make_pattern_file(name, FILE_SIZE, i);
		ASSERT_LE(0, fd);
		close(fd);
	}
	/* Every chunk still free whole but two: full of unwritten blocks. */
	filler = open(fs_path("filler"), O_RDWR | O_CREAT, 0644);
	ASSERT_LE(0, filler);
	ASSERT_EQ(0, fallocate(filler, 0, 0,
			       ((long long)mm_counter("chunks_free") - 2) * 2 * MIB));
	ASSERT_EQ(0, close(filler));
	for (int i = 0; i < FILES; i++) {
		fd = open(name_of(i), O_RDONLY);
		ASSERT_LE(0, fd);
		before[i] = physical_of(fd);
		close(fd);
	}
	/* File 1 mapped and stored to; file 2 appended to throughout. */
	fd = open(name_of(1), O_RDWR);
	ASSERT_LE(0, fd);
	map = mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, map);
	close(fd);
	map[5] = 0xa5;
	a.fd = open(name_of(2), O_WRONLY);
	ASSERT_LE(0, a.fd);
	a.written = FILE_SIZE;
	ASSERT_EQ(0, pthread_create(&writer, NULL, append, &a));

	free_before = mm_counter("chunks_free");
	chunks = mm_counter("compacted_chunks");
	blocks = mm_counter("compacted_blocks");
	ASSERT_EQ(0, unlink(name_of(0)));
	sync();
	a.stop = true;
	ASSERT_EQ(0, pthread_join(writer, NULL));
	ASSERT_EQ(0, close(a.fd));
	sync();
	free_after = mm_counter("chunks_free");
	TH_LOG("chunks free whole %lld -> %lld; compacted %lld chunks, %lld blocks",
	       free_before, free_after, mm_counter("compacted_chunks") - chunks,
	       mm_counter("compacted_blocks") - blocks);
	EXPECT_GE(free_after, free_before + FILES / 2);
	EXPECT_GE(mm_counter("compacted_chunks") - chunks, FILES / 2);
	EXPECT_GE(mm_counter("compacted_blocks") - blocks, (FILES / 2) * (FILE_SIZE / 4096));

	/* The mapping shows the file; a store through it reaches the file. */
	EXPECT_EQ(0xa5, map[5]);
	map[6] = 0x5a;
	fd = open(name_of(1), O_RDONLY);
	ASSERT_LE(0, fd);
	{
		unsigned char got[8];

		ASSERT_EQ(8, pread(fd, got, 8, 0));
		EXPECT_EQ(0xa5, got[5]);
		EXPECT_EQ(0x5a, got[6]);
	}
	EXPECT_EQ(-1, fs_check_pattern(fd, 8, FILE_SIZE - 8, 1));
	close(fd);
	ASSERT_EQ(0, munmap(map, FILE_SIZE));

	int moved = 0;

	for (int i = 1; i < FILES; i++) {
		fd = open(name_of(i), O_RDONLY);
		ASSERT_LE(0, fd);
		moved += physical_of(fd) != before[i];
		if (i != 1)
			EXPECT_EQ(-1, fs_check_pattern(fd, 0, FILE_SIZE, i)) TH_LOG("file %d", i);
		if (i == 2)
			EXPECT_EQ(-1, fs_check_pattern(fd, FILE_SIZE, a.written - FILE_SIZE, 77));
		close(fd);
	}
	TH_LOG("%d of %d files moved", moved, FILES - 1);
	EXPECT_GE(moved, FILES / 2);
}

TEST_HARNESS_MAIN
