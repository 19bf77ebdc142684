// SPDX-License-Identifier: GPL-2.0
/*
 * mmap() flags on DAX files:
 *  - MAP_SHARED_VALIDATE|MAP_SYNC is accepted (the mapping is VM_SYNC: "sf"
 *    in smaps), also read-only on an O_RDONLY descriptor; stores reach the
 *    file; on oxdax a store that allocates counts in fault_sync, an
 *    overwrite of an allocated block does not;
 *  - MAP_SHARED_VALIDATE with an unknown flag bit fails with EOPNOTSUPP
 *    (LTP mmap20), while plain MAP_SHARED ignores the same bit;
 *  - MAP_SYNC with plain MAP_SHARED or with MAP_PRIVATE is not refused
 *    (legacy behaviour) and the mappings work;
 *  - MAP_PRIVATE: loads show the file (and later writes of pages not yet
 *    copied), stores go to anonymous memory and never reach the file: not
 *    through read(2), not through a MAP_SHARED mapping, not after msync,
 *    fsync, munmap, close, remount; a private store to a hole allocates
 *    nothing; past EOF a private mapping raises SIGBUS.
 *
 * OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h); the counter
 * assertions are oxdax's only (tests/lib/oxdax_mmap.h).
 */
#include "kselftest_harness.h"
#include "oxdax_mmap.h"

/* The VmFlags line of the mapping holding @addr, from /proc/self/smaps. */
static const char *vmflags_of(const void *addr)
{
	static char line[512];
	char want[32];
	bool in = false;
	FILE *f = fopen("/proc/self/smaps", "r");

	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	line[0] = '\0';
	if (!f)
		return line;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, want, strlen(want)))
			in = true;
		else if (in && !strncmp(line, "VmFlags:", 8))
			break;
		line[0] = '\0';
	}
	fclose(f);
	line[strcspn(line, "\n")] = '\0';
	return line;
}

static bool has_vmflag(const void *addr, const char *flag)
{
	const char *flags = vmflags_of(addr);
	char word[8];

	snprintf(word, sizeof(word), " %s", flag);
	for (const char *p = flags; (p = strstr(p, word)); p++)
		if (p[strlen(word)] == ' ' || p[strlen(word)] == '\0')
			return true;
	return false;
}

MM_FIXTURE(mm);

TEST_F(mm, sync_validate_accepted)
{
	const size_t size = 2 * MIB;
	struct mm_snap a, b;
	unsigned char *p, buf[64];
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);

	ASSERT_LE(0, fd);
	/* First MiB written, second MiB a hole. */
	ASSERT_EQ(MIB, fs_write_pattern(fd, 0, MIB, 1));
	ASSERT_EQ(0, ftruncate(fd, size));
	ASSERT_EQ(0, fsync(fd));

	p = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_TRUE(has_vmflag(p, "sf")) TH_LOG("VmFlags of a MAP_SYNC mapping: %s", vmflags_of(p));
	EXPECT_EQ(-1, fs_check_fill(p, MIB, 0, 1));
	EXPECT_TRUE(fs_all_zero(p + MIB, MIB));

	/* An overwrite of an allocated block changes no mapping. */
	mm_snap(&a);
	memset(p + 4 * KIB + 100, 0xa1, 64);
	mm_snap(&b);
	TH_LOG("overwrite: %s", mm_describe(&a, &b));
	if (mm_counted()) {
		ASSERT_TRUE(a.have) TH_LOG("no counters in %s", mm_counter_dir());
		EXPECT_EQ(0, mm_delta(&a, &b, MM_FAULT_SYNC));
	}

	/* A store to a hole allocates: a synchronous fault. */
	mm_snap(&a);
	memset(p + MIB + 8 * KIB + 7, 0xb2, 64);
	mm_snap(&b);
	TH_LOG("store to a hole: %s", mm_describe(&a, &b));
	if (mm_counted())
		EXPECT_LT(0, mm_delta(&a, &b, MM_FAULT_SYNC));

	ASSERT_EQ(64, pread(fd, buf, 64, 4 * KIB + 100));
	for (int i = 0; i < 64; i++)
		EXPECT_EQ(0xa1, buf[i]);
	ASSERT_EQ(64, pread(fd, buf, 64, MIB + 8 * KIB + 7));
	for (int i = 0; i < 64; i++)
		EXPECT_EQ(0xb2, buf[i]);

	/* No msync: MAP_SYNC promises the metadata is durable already. */
	ASSERT_EQ(0, mm_unmap(p, size));
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	ASSERT_EQ(64, pread(fd, buf, 64, MIB + 8 * KIB + 7));
	for (int i = 0; i < 64; i++)
		EXPECT_EQ(0xb2, buf[i]);
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, 4 * KIB + 100, 1));
	EXPECT_EQ(-1, fs_check_pattern(fd, 4 * KIB + 164, MIB - 4 * KIB - 164, 1));
	close(fd);
}

TEST_F(mm, sync_validate_readonly_descriptor)
{
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	unsigned char *p;

	ASSERT_LE(0, fd);
	ASSERT_EQ(64 * KIB, fs_write_pattern(fd, 0, 64 * KIB, 2));
	close(fd);
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);

	p = mm_map(NULL, 64 * KIB, PROT_READ, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(-1, fs_check_fill(p, 64 * KIB, 0, 2));
	EXPECT_EQ(SIGSEGV, mm_store_sig(p + 10, 1));
	ASSERT_EQ(0, mm_unmap(p, 64 * KIB));

	/* Writable shared mappings need a writable descriptor. */
	p = mmap(NULL, 64 * KIB, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
	EXPECT_EQ(MAP_FAILED, p);
	EXPECT_EQ(EACCES, errno);
	close(fd);
}

TEST_F(mm, validate_refuses_unknown_flags)
{
	/* Bits that no mmap flag of x86-64 uses. */
	static const unsigned long unknown[] = { 0x200, 0x400, 0x200000, 0x800000, 0x2000000 };
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	unsigned char *p, buf[16];

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, 64 * KIB));
	for (size_t i = 0; i < ARRAY_SIZE(unknown); i++) {
		errno = 0;
		p = mmap(NULL, 64 * KIB, PROT_READ | PROT_WRITE,
			 MAP_SHARED_VALIDATE | unknown[i], fd, 0);
		EXPECT_EQ(MAP_FAILED, p) TH_LOG("flag %#lx accepted", unknown[i]);
		EXPECT_EQ(EOPNOTSUPP, errno) TH_LOG("flag %#lx: %s", unknown[i], strerror(errno));
		if (p != MAP_FAILED)
			munmap(p, 64 * KIB);

		errno = 0;
		p = mmap(NULL, 64 * KIB, PROT_READ | PROT_WRITE,
			 MAP_SHARED_VALIDATE | MAP_SYNC | unknown[i], fd, 0);
		EXPECT_EQ(MAP_FAILED, p);
		EXPECT_EQ(EOPNOTSUPP, errno) TH_LOG("MAP_SYNC|%#lx: %s", unknown[i], strerror(errno));
		if (p != MAP_FAILED)
			munmap(p, 64 * KIB);

		/* Plain MAP_SHARED ignores what it does not know. */
		p = mm_map(NULL, 64 * KIB, PROT_READ | PROT_WRITE, MAP_SHARED | unknown[i], fd, 0);
		ASSERT_NE(MAP_FAILED, p) TH_LOG("MAP_SHARED|%#lx refused", unknown[i]);
		p[i * 4096 + 1] = 0x40 + i;
		ASSERT_EQ(0, mm_unmap(p, 64 * KIB));
		ASSERT_EQ(1, pread(fd, buf, 1, i * 4096 + 1));
		EXPECT_EQ(0x40 + i, buf[0]);
	}

	/* MAP_SHARED_VALIDATE alone is MAP_SHARED. */
	p = mm_map(NULL, 64 * KIB, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_FALSE(has_vmflag(p, "sf")) TH_LOG("VmFlags: %s", vmflags_of(p));
	memcpy(p + 40000, "validate", 8);
	ASSERT_EQ(8, pread(fd, buf, 8, 40000));
	EXPECT_EQ(0, memcmp(buf, "validate", 8));
	ASSERT_EQ(0, mm_unmap(p, 64 * KIB));
	close(fd);
}

TEST_F(mm, sync_without_validate_is_not_refused)
{
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	unsigned char *s, *p, buf[16];

	ASSERT_LE(0, fd);
	ASSERT_EQ(256 * KIB, fs_write_pattern(fd, 0, 256 * KIB, 3));
	ASSERT_EQ(0, ftruncate(fd, 512 * KIB));

	s = mm_map(NULL, 512 * KIB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_SYNC, fd, 0);
	ASSERT_NE(MAP_FAILED, s);
	p = mm_map(NULL, 512 * KIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_SYNC, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	/* 6.12 takes VM_SYNC from MAP_SYNC before it drops unvalidated flags. */
	TH_LOG("MAP_SHARED|MAP_SYNC: %s", vmflags_of(s));
	TH_LOG("MAP_PRIVATE|MAP_SYNC: %s", vmflags_of(p));
	EXPECT_EQ(-1, fs_check_fill(s, 256 * KIB, 0, 3));
	EXPECT_EQ(-1, fs_check_fill(p, 256 * KIB, 0, 3));

	/* Shared stores reach the file, to a block or to a hole. */
	memcpy(s + 1000, "shared-1", 8);
	memcpy(s + 300 * KIB, "shared-2", 8);
	/* Private stores do not. */
	memcpy(p + 2000, "private1", 8);
	memcpy(p + 400 * KIB, "private2", 8);

	ASSERT_EQ(8, pread(fd, buf, 8, 1000));
	EXPECT_EQ(0, memcmp(buf, "shared-1", 8));
	ASSERT_EQ(8, pread(fd, buf, 8, 300 * KIB));
	EXPECT_EQ(0, memcmp(buf, "shared-2", 8));
	ASSERT_EQ(8, pread(fd, buf, 8, 2000));
	EXPECT_EQ(-1, fs_check_fill(buf, 8, 2000, 3));
	ASSERT_EQ(8, pread(fd, buf, 8, 400 * KIB));
	EXPECT_TRUE(fs_all_zero(buf, 8));
	EXPECT_EQ(0, memcmp(p + 2000, "private1", 8));
	EXPECT_EQ(0, memcmp(p + 400 * KIB, "private2", 8));
	EXPECT_EQ(-1, fs_check_fill(s + 2000, 8, 2000, 3));
	EXPECT_TRUE(fs_all_zero(s + 400 * KIB, 8));
	close(fd);
}

TEST_F(mm, private_loads_show_the_file)
{
	const size_t size = 256 * KIB + 100;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	unsigned char *p, buf[4096];

	ASSERT_LE(0, fd);
	ASSERT_EQ(size, fs_write_pattern(fd, 0, size, 4));
	p = mm_map(NULL, 260 * KIB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(-1, fs_check_fill(p, size, 0, 4));
	/* The rest of the page holding EOF reads as zeros. */
	EXPECT_TRUE(fs_all_zero(p + size, 260 * KIB - size));

	/* A page not yet copied follows writes to the file. */
	fs_fill(buf, sizeof(buf), 40 * KIB, 5);
	ASSERT_EQ(4096, pwrite(fd, buf, 4096, 40 * KIB));
	EXPECT_EQ(-1, fs_check_fill(p + 40 * KIB, 4096, 40 * KIB, 5));
	EXPECT_EQ(-1, fs_check_fill(p + 44 * KIB, 4096, 44 * KIB, 4));

	/* A copied page does not. */
	p[80 * KIB] ^= 0xff;
	ASSERT_EQ(4096, pwrite(fd, buf, 4096, 80 * KIB));
	EXPECT_EQ((unsigned char)~fs_pattern_byte(80 * KIB, 4), p[80 * KIB]);
	EXPECT_EQ(-1, fs_check_fill(p + 80 * KIB + 1, 4095, 80 * KIB + 1, 4));

	/* A private mapping of a read-only descriptor may be written. */
	close(fd);
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	unsigned char *q = mm_map(NULL, 64 * KIB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);

	ASSERT_NE(MAP_FAILED, q);
	memset(q, 0x77, 64 * KIB);
	ASSERT_EQ(4096, pread(fd, buf, 4096, 0));
	EXPECT_EQ(-1, fs_check_fill(buf, 4096, 0, 4));
	close(fd);
}

TEST_F(mm, private_stores_stay_private)
{
	const size_t size = MIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	unsigned char *s, *p, buf[4096];

	ASSERT_LE(0, fd);
	ASSERT_EQ(size, fs_write_pattern(fd, 0, size, 6));
	ASSERT_EQ(0, fsync(fd));
	s = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, s);
	p = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ASSERT_NE(MAP_FAILED, p);

	/* Loaded first (the file's blocks mapped read-only), then stored to. */
	EXPECT_EQ(-1, fs_check_fill(p, size, 0, 6));
	fs_fill(p + 64 * KIB, 128 * KIB, 64 * KIB, 7);
	/* Stored to without a load first. */
	fs_fill(p + 512 * KIB + 10, 5000, 512 * KIB + 10, 7);
	p[size - 1] = ~fs_pattern_byte(size - 1, 6);

	/* The private view has its stores, the shared one and the file do not. */
	EXPECT_EQ(-1, fs_check_fill(p + 64 * KIB, 128 * KIB, 64 * KIB, 7));
	EXPECT_EQ(-1, fs_check_fill(p + 512 * KIB + 10, 5000, 512 * KIB + 10, 7));
	EXPECT_EQ((unsigned char)~fs_pattern_byte(size - 1, 6), p[size - 1]);
	EXPECT_EQ(-1, fs_check_fill(s, size, 0, 6));
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, size, 6));

	/* Syncing the private mapping or the file pushes nothing. */
	ASSERT_EQ(0, msync(p, size, MS_SYNC));
	ASSERT_EQ(0, fsync(fd));
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, size, 6));
	EXPECT_EQ(-1, fs_check_fill(s, size, 0, 6));

	/* A shared store to a copied page is not seen privately. */
	memset(s + 64 * KIB, 0x11, 4096);
	EXPECT_EQ(-1, fs_check_fill(p + 64 * KIB, 4096, 64 * KIB, 7));
	ASSERT_EQ(4096, pread(fd, buf, 4096, 64 * KIB));
	for (int i = 0; i < 4096; i++)
		ASSERT_EQ(0x11, buf[i]);

	ASSERT_EQ(0, mm_unmap(p, size));
	ASSERT_EQ(0, mm_unmap(s, size));
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, fs_check_pattern(fd, 0, 64 * KIB, 6));
	EXPECT_EQ(-1, fs_check_pattern(fd, 68 * KIB, size - 68 * KIB, 6));
	close(fd);
}

TEST_F(mm, private_store_to_hole_allocates_nothing)
{
	const size_t size = MIB;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	long long blocks;
	unsigned char *s, *p;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, size));
	ASSERT_EQ(0, fsync(fd));
	blocks = mm_blocks(fd);
	p = mm_map(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	s = mm_map(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, s);

	/* Loaded first (a zero page), then stored to; and stored to at once. */
	EXPECT_EQ(0, mm_read_pages(p, size));
	EXPECT_EQ(0, mm_read_pages(s, size));
	memset(p + 12 * KIB, 0x5a, 4096);
	memset(p + 700 * KIB + 1, 0xa5, 9000);
	EXPECT_EQ(0x5a, p[12 * KIB + 4095]);
	EXPECT_EQ(0xa5, p[700 * KIB + 9000]);

	EXPECT_EQ(blocks, mm_blocks(fd));
	EXPECT_TRUE(fs_all_zero(s, size));
	EXPECT_TRUE(mm_file_zero(fd, 0, size));
	ASSERT_EQ(0, msync(p, size, MS_SYNC));
	ASSERT_EQ(0, fsync(fd));
	EXPECT_EQ(blocks, mm_blocks(fd));

	ASSERT_EQ(0, mm_unmap(p, size));
	ASSERT_EQ(0, mm_unmap(s, size));
	close(fd);
	ASSERT_EQ(0, fs_remount());
	fd = open(fs_path("f"), O_RDONLY);
	ASSERT_LE(0, fd);
	EXPECT_EQ(blocks, mm_blocks(fd));
	EXPECT_TRUE(mm_file_zero(fd, 0, size));
	close(fd);
}

TEST_F(mm, private_past_eof_sigbus)
{
	const size_t size = 4 * KIB + 100;
	int fd = open(fs_path("f"), O_RDWR | O_CREAT, 0644);
	unsigned char *p, buf[200];

	ASSERT_LE(0, fd);
	ASSERT_EQ(size, fs_write_pattern(fd, 0, size, 8));
	p = mm_map(NULL, 16 * KIB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ASSERT_NE(MAP_FAILED, p);

	/* The page holding EOF: data, then zeros; stores there stay private. */
	EXPECT_EQ(0, mm_load_sig(p + size - 1));
	EXPECT_EQ(-1, fs_check_fill(p, size, 0, 8));
	EXPECT_TRUE(fs_all_zero(p + size, 8 * KIB - size));
	EXPECT_EQ(0, mm_store_sig(p + size + 50, 0xee));
	EXPECT_EQ(0xee, p[size + 50]);
	EXPECT_EQ((off_t)size, fs_size_of(fd));
	EXPECT_EQ(100, pread(fd, buf, 200, 4 * KIB));

	/* Whole pages past EOF: SIGBUS for loads and stores, at the address. */
	EXPECT_EQ(SIGBUS, mm_load_sig(p + 8 * KIB));
	EXPECT_EQ(p + 8 * KIB, mm_sig_addr);
	EXPECT_EQ(SIGBUS, mm_store_sig(p + 12 * KIB + 5, 1));
	EXPECT_EQ(p + 12 * KIB + 5, mm_sig_addr);
	EXPECT_EQ((off_t)size, fs_size_of(fd));
	close(fd);
}

TEST_HARNESS_MAIN
