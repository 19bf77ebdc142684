// SPDX-License-Identifier: GPL-2.0
/*
 * Every way a file gets blocks ends in 2 MiB-mappable extents (issue 16),
 * on a fresh and on an aged filesystem.
 *
 * For each way (fallocate; sequential write(2) appends of 4 KiB, 64 KiB
 * and 1 MiB; random pwrite into a sparse file until it is whole; store
 * faults through a 2 MiB-aligned mapping of an empty file, and through a
 * mapping 4 KiB off that alignment so that PTE faults allocate, measured
 * after a remount since the file's 4 KiB mapping entries keep any
 * filesystem from PMDs until then; copy_file_range of a written file;
 * FICLONE then write(2) over the clone, and FICLONE then stores through a
 * mapping, copy-on-write by faults; ftruncate up then write(2)) a file
 * of OXDAX_HUGE_FILE_MIB (32) MiB is made, closed, reopened and mapped
 * MAP_SHARED at a 2 MiB-aligned address; one store goes to every 4 KiB
 * page: first to the first page of each 2 MiB region, then to the other
 * 511. The fraction of the regions mapped by a PMD is counted twice:
 * oxdax's fault_pmd counter over the regions, and by page faults
 * (getrusage): the second pass costs a PMD-mapped region no fault and a
 * PTE-mapped one 511. On oxdax (its own fault engine) both must be at
 * least 99 % (on the aged filesystem, of a clone's copies, of as many
 * regions as chunks are left free whole; a file grown by 4 KiB appends
 * packs its first 64 KiB with small files, and compaction places that
 * region whole after the close: each file is closed, reopened and synced
 * before it is measured); on
 * ext4 and xfs they are printed ("# placement: ..." lines), not asserted.
 * The data must read back right.
 *
 * Small files must not keep 2 MiB: a 4 KiB and a 100 KiB file, and 32
 * files grown by interleaved 4 KiB appends, once closed, have st_blocks of
 * at most their size rounded up to 4 KiB plus 16 KiB, use at most that
 * (plus 1 MiB for metadata) of statvfs's free space, and give it back when
 * unlinked.
 *
 * Variants: "fresh" (a new filesystem of OXDAX_HUGE_FS_MIB, 384 MiB, on the
 * test disk) and "aged": the same after tests/lib/oxdax_age.h's ager
 * (seed OXDAX_HUGE_AGE_SEED, 1: churn at 85 % full until 3 times the size
 * was written, then thinned to 60 %). The aged image is made once per run
 * and copied back to the disk for each aged test, so that every way is
 * measured on the same aged filesystem. fsck after every test (fs_end).
 *
 * oxdax's chunk counters (chunks_free/partial/full) and per-reason PMD
 * fallback counters (every fallback_* file) are printed where the module
 * has them; the chunks must add up to the same number throughout a test,
 * the fallbacks' growth to fault_fallback's, and the reasons these
 * mappings exclude (misaligned, private write, outside the VMA, past EOF)
 * must not occur.
 *
 * OXDAX_FS chooses the filesystem (tests/lib/oxdax_fs.h); ext4 and xfs are
 * made for 2 MiB (ext4 -E stride=512,stripe_width=512, xfs -d
 * su=2m,sw=1,agcount=2 -l size=64m) unless OXDAX_FS_MKFS_OPTS says
 * otherwise. ext4 cannot clone: those two ways are skipped there.
 */
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <dirent.h>
#include <sys/statvfs.h>

#include "kselftest_harness.h"
#include "oxdax_mmap.h"
#include "oxdax_age.h"

#define REGION_PAGES (MM_PMD / MM_PAGE)

static size_t file_size(void)
{
	return fs_env_ulong("OXDAX_HUGE_FILE_MIB", 32) * MIB;
}

static uint64_t fs_bytes(void)
{
	return fs_env_ulong("OXDAX_HUGE_FS_MIB", 384) * MIB;
}

/*
 * The aged image, shared by every test process (the harness forks each
 * test from the process that mapped it): made by the first aged test,
 * copied back to the disk by the others.
 */
struct aged_image {
	bool valid;
	bool failed;
	uint64_t bytes;
	struct age_stats st;
	char data[] __attribute__((aligned(4096)));
};

static struct aged_image *aged;

static void __attribute__((constructor)) map_aged_image(void)
{
	void *p = mmap(NULL, sizeof(*aged) + fs_bytes(), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	aged = p == MAP_FAILED ? NULL : p;
}

/* Copies the first @bytes of the test disk to (@save) or from the image,
 * bypassing the block device's page cache; returns 0 or -errno. */
static int copy_disk(bool save, uint64_t bytes)
{
	int fd = open(fs_disk(), (save ? O_RDONLY : O_WRONLY) | O_DIRECT);
	int ret = 0;

	if (fd < 0)
		return -errno;
	for (uint64_t off = 0; off < bytes && !ret; off += MIB) {
		size_t n = bytes - off < MIB ? bytes - off : MIB;
		ssize_t got = save ? pread(fd, aged->data + off, n, off) :
				     pwrite(fd, aged->data + off, n, off);

		if (got != (ssize_t)n)
			ret = got < 0 ? -errno : -EIO;
	}
	if (!ret && !save && (fsync(fd) || ioctl(fd, BLKFLSBUF, 0)))
		ret = -errno;
	close(fd);
	return ret;
}

/* A new filesystem of fs_bytes() on the test disk, aged if @age (the
 * image, or the ager the first time); returns 0 or -1 after saying why. */
static int begin(bool age)
{
	struct age_params p = AGE_DEFAULTS;
	int ret;

	if (!getenv("OXDAX_FS_MKFS_OPTS")) {
		if (fs_is("ext4"))
			setenv("OXDAX_FS_MKFS_OPTS", "-E stride=512,stripe_width=512", 1);
		else if (fs_is("xfs"))
			/* A stripe unit makes xfs want a 64 MiB log, which
			 * needs bigger allocation groups than a small
			 * filesystem gets by default. */
			setenv("OXDAX_FS_MKFS_OPTS", "-d su=2m,sw=1,agcount=2 -l size=64m", 1);
	}
	if (fs_begin_size(fs_bytes()))
		return -1;
	if (!age)
		return 0;
	if (!aged) {
		fprintf(stderr, "# no memory for the aged image\n");
		return -1;
	}
	if (aged->failed) {
		fprintf(stderr, "# aging failed in an earlier test\n");
		return -1;
	}
	if (aged->valid) {
		if (fs_umount() || (ret = copy_disk(false, aged->bytes)) || fs_mount()) {
			fprintf(stderr, "# copying the aged image back failed\n");
			return -1;
		}
		return 0;
	}

	aged->failed = true;
	p.seed = fs_env_ulong("OXDAX_HUGE_AGE_SEED", 1);
	p.verbose = true;
	ret = age_fs(FS_MNT, &p, &aged->st);
	if (ret) {
		fprintf(stderr, "# aging %s: %s\n", fs_type(), strerror(-ret));
		return -1;
	}
	if (fs_umount() || (ret = copy_disk(true, fs_bytes())) || fs_mount()) {
		fprintf(stderr, "# saving the aged image failed\n");
		return -1;
	}
	aged->bytes = fs_bytes();
	aged->valid = true;
	aged->failed = false;
	return 0;
}

FIXTURE(huge) {
	bool aged;
	long long chunks;	/* chunks free + partial + full, -1: no counters */
	long may_miss;		/* regions allowed not to be PMD-mapped */
};

FIXTURE_VARIANT(huge) {
	bool aged;
};

FIXTURE_VARIANT_ADD(huge, fresh) {
	.aged = false,
};

FIXTURE_VARIANT_ADD(huge, aged) {
	.aged = true,
};

static long long print_chunks(const char *when);

FIXTURE_SETUP(huge)
{
	self->aged = variant->aged;
	self->may_miss = 0;
	ASSERT_EQ(0, begin(variant->aged));
	if (variant->aged)
		TH_LOG("%s aged: %llu MiB written on %llu MiB, %u%% full at most, %u%% now, %lu files",
		       fs_type(), (unsigned long long)(aged->st.written >> 20),
		       (unsigned long long)(aged->st.fs_bytes >> 20), aged->st.used_pct_max,
		       aged->st.used_pct, aged->st.live);
	self->chunks = print_chunks(variant->aged ? "aged" : "fresh");
}

FIXTURE_TEARDOWN(huge)
{
	mm_unmap_all();
	EXPECT_EQ(0, fs_end());
}

/* The oxdax counters issue 16 adds; -1 where the module has none. */
static const char *const chunk_names[] = { "chunks_free", "chunks_partial", "chunks_full" };
/* The reasons a 2 MiB-aligned MAP_SHARED mapping of a whole file whose
 * size is a multiple of 2 MiB, stored to, cannot have. */
static const char *const excluded_fallbacks[] = {
	"fallback_misaligned", "fallback_private_write", "fallback_outside_vma",
	"fallback_past_eof",
};
#define MAX_FALLBACKS 16

/* The per-reason fallback counters the module has: fallback_* in the
 * counter directory (sorted, so that two calls agree); their number. */
static int fallback_counters(char names[MAX_FALLBACKS][64])
{
	struct dirent **list;
	int n = scandir(mm_counter_dir(), &list, NULL, alphasort), found = 0;

	for (int i = 0; i < n; i++) {
		if (!strncmp(list[i]->d_name, "fallback_", 9) && found < MAX_FALLBACKS &&
		    strlen(list[i]->d_name) < 64)
			strcpy(names[found++], list[i]->d_name);
		free(list[i]);
	}
	if (n >= 0)
		free(list);
	return found;
}

/* Prints oxdax's chunk counters; returns their sum (the data area's
 * chunks), -1 without them. */
static long long print_chunks(const char *when)
{
	struct statvfs v = { 0 };
	long long c[3];

	for (int i = 0; i < 3; i++)
		c[i] = mm_counter(chunk_names[i]);
	if (c[0] < 0 || c[1] < 0 || c[2] < 0)
		return -1;
	statvfs(FS_MNT, &v);
	fprintf(stderr, "# %s %s: 2 MiB chunks free %lld, partial %lld, full %lld; %llu MiB free\n",
		fs_type(), when, c[0], c[1], c[2],
		(unsigned long long)v.f_bfree * v.f_frsize >> 20);
	return c[0] + c[1] + c[2];
}

/* What one measuring pass found. */
struct placed {
	long regions;
	struct mm_snap a, mid, b;
	long long pmd;			/* fault_pmd growth, -1 without counters */
	long pass2;			/* faults of the stores to the other 511 pages */
	double by_faults;		/* fraction of regions PMD-mapped by fault count */
	int fallbacks;			/* per-reason counters, 0: none */
	char fallback_name[MAX_FALLBACKS][64];
	long long fallback[MAX_FALLBACKS];
};

/*
 * Stores the pattern word under @seed to every page of [0, @size) of @fd
 * through a 2 MiB-aligned MAP_SHARED mapping: the first page of each 2 MiB
 * region, then the others, counting. Returns 0 or -errno (mmap).
 */
static int store_pass(int fd, size_t size, uint64_t seed, struct placed *m)
{
	char *p = mm_map_aligned(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		return -errno;
	memset(m, 0, sizeof(*m));
	m->regions = size / MM_PMD;
	m->fallbacks = fallback_counters(m->fallback_name);
	for (int i = 0; i < m->fallbacks; i++)
		m->fallback[i] = mm_counter(m->fallback_name[i]);
	mm_snap(&m->a);
	for (size_t off = 0; off < size; off += MM_PMD)
		*(volatile uint64_t *)(p + off) = oxdax_pattern(off, seed);
	mm_snap_end(&m->mid);
	for (size_t off = 0; off < size; off += MM_PAGE)
		if (off % MM_PMD)
			*(volatile uint64_t *)(p + off) = oxdax_pattern(off, seed);
	mm_snap_end(&m->b);
	for (int i = 0; i < m->fallbacks; i++)
		m->fallback[i] = mm_counter(m->fallback_name[i]) - m->fallback[i];
	m->pmd = mm_delta(&m->a, &m->b, MM_FAULT_PMD);
	m->pass2 = mm_faults(&m->mid, &m->b);
	m->by_faults = 1.0 - (double)m->pass2 / ((REGION_PAGES - 1) * m->regions);
	if (m->by_faults < 0)
		m->by_faults = 0;
	mm_unmap(p, size);
	return 0;
}

/* Prints what @m found ("# placement: FS VARIANT WAY: ..."). */
static void report(const char *variant, const char *way, int fd, size_t size,
		   const struct placed *m)
{
	char fallbacks[256] = "";
	int n = 0;

	for (int i = 0; i < m->fallbacks; i++)
		n += snprintf(fallbacks + n, sizeof(fallbacks) - n, " %s +%lld",
			      m->fallback_name[i], m->fallback[i]);
	fprintf(stderr, "# placement: %s %s %s: PMD %.1f%% by faults (%ld faults after the first "
		"store of each of %ld regions), fault_pmd %+lld; %s\n", fs_type(), variant, way,
		100 * m->by_faults, m->pass2, m->regions, m->pmd, mm_pmd_able(fd, size));
	fprintf(stderr, "#   %s%s%s\n", mm_describe(&m->a, &m->b), m->fallbacks ? ";" : "",
		fallbacks);
}

/*
 * First offset of [0, @size) of @fd that is not: at the start of each page
 * the pattern word under @words, elsewhere the pattern under @base (zeros
 * when @base is 0); -1 if none.
 */
static long long check_content(int fd, size_t size, uint64_t base, uint64_t words)
{
	static unsigned char buf[1 << 20];

	for (size_t done = 0; done < size; done += sizeof(buf)) {
		size_t n = size - done < sizeof(buf) ? size - done : sizeof(buf);

		if (pread(fd, buf, n, done) != (ssize_t)n)
			return done;
		for (size_t i = 0; i < n; i += MM_PAGE) {
			uint64_t word;

			memcpy(&word, buf + i, 8);
			if (word != oxdax_pattern(done + i, words))
				return done + i;
			if (base ? fs_check_fill(buf + i + 8, MM_PAGE - 8, done + i + 8, base) >= 0 :
				   !fs_all_zero(buf + i + 8, MM_PAGE - 8))
				return done + i;
		}
	}
	return -1;
}

/*
 * The common end of every way: @fd (the file @name, @size bytes, holding
 * the pattern under @base, or zeros if 0) is closed and reopened, measured
 * by a store pass of the words under @words, and checked.
 */
static void measure_file(struct __test_metadata *_metadata, FIXTURE_DATA(huge) *self, int fd,
			 const char *name, const char *way, size_t size, uint64_t base,
			 uint64_t words)
{
	const char *variant = self->aged ? "aged" : "fresh";
	struct placed m;

	ASSERT_EQ(0, close(fd));
	fd = open(fs_path("%s", name), O_RDWR);
	ASSERT_LE(0, fd);
	/* Background work the close queued is done (oxdax places a region
	 * begun packed whole; xfs frees speculative preallocation). */
	ASSERT_EQ(0, syncfs(fd));
	ASSERT_EQ((off_t)size, fs_size_of(fd));
	ASSERT_EQ(0, store_pass(fd, size, words, &m));
	report(variant, way, fd, size, &m);
	if (mm_counted()) {
		ASSERT_TRUE(m.a.have) TH_LOG("no counters in %s", mm_counter_dir());
		long want = m.regions - self->may_miss;

		EXPECT_LE(99 * want, 100 * m.pmd)
			TH_LOG("%s %s: %lld of %ld regions PMD-mapped (%ld may miss)", variant,
			       way, m.pmd, m.regions, self->may_miss);
		EXPECT_LE(99.0 * want / m.regions, 100 * m.by_faults)
			TH_LOG("%s %s: %ld faults in the second pass", variant, way, m.pass2);
		if (m.fallbacks) {
			long long sum = 0;

			for (int i = 0; i < m.fallbacks; i++) {
				sum += m.fallback[i];
				for (size_t x = 0; x < sizeof(excluded_fallbacks) /
							sizeof(excluded_fallbacks[0]); x++) {
					if (!strcmp(m.fallback_name[i], excluded_fallbacks[x])) {
						EXPECT_EQ(0, m.fallback[i])
							TH_LOG("%s", m.fallback_name[i]);
					}
				}
			}
			EXPECT_EQ(mm_delta(&m.a, &m.b, MM_FAULT_FALLBACK), sum);
		}
	}
	EXPECT_EQ(-1, check_content(fd, size, base, words));
	close(fd);
	if (self->chunks >= 0) {
		EXPECT_EQ(self->chunks, print_chunks("after"));
	}
}

static int create(const char *name)
{
	return open(fs_path("%s", name), O_RDWR | O_CREAT | O_TRUNC, 0644);
}

/* Appends [@from, @to) of the pattern under @seed to @fd by write(2) calls
 * of @chunk bytes; returns 0 or -1. */
static int append(int fd, size_t from, size_t to, size_t chunk, uint64_t seed)
{
	static unsigned char buf[1 << 20];

	for (size_t off = from; off < to; off += chunk) {
		size_t n = to - off < chunk ? to - off : chunk;

		fs_fill(buf, n, off, seed);
		if (write(fd, buf, n) != (ssize_t)n)
			return -1;
	}
	return 0;
}

#define HUGE_TEST(name) TEST_F_TIMEOUT(huge, name, 900)

HUGE_TEST(fallocate)
{
	const size_t size = file_size();
	int fd = create("f");

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fallocate(fd, 0, 0, size));
	measure_file(_metadata, self, fd, "f", "fallocate", size, 0, 11);
}

static void appends(struct __test_metadata *_metadata, FIXTURE_DATA(huge) *self, size_t chunk,
		    const char *way)
{
	const size_t size = file_size();
	int fd = create("f");

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, append(fd, 0, size, chunk, 12));
	measure_file(_metadata, self, fd, "f", way, size, 12, 12);
}

HUGE_TEST(write_append_4k)
{
	/*
	 * Appends under 64 KiB pack a file's first 64 KiB with small files;
	 * after the close, compaction places that region whole
	 * (Documentation/oxdax/allocator.rst).
	 */
	appends(_metadata, self, 4 * KIB, "write(2) 4 KiB appends");
}

HUGE_TEST(write_append_64k)
{
	appends(_metadata, self, 64 * KIB, "write(2) 64 KiB appends");
}

HUGE_TEST(write_append_1m)
{
	appends(_metadata, self, MIB, "write(2) 1 MiB appends");
}

/* Random pwrite of pieces of 4 KiB to 256 KiB, in a seeded random order,
 * into an ftruncated file until all of it is written. */
HUGE_TEST(pwrite_random_sparse)
{
	const size_t size = file_size();
	static unsigned char buf[256 * KIB];
	size_t pieces = 0, *start = calloc(size / MM_PAGE + 1, sizeof(*start)), *order;
	uint64_t rng = 13;
	int fd = create("f");

	ASSERT_NE(NULL, start);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, size));
	for (size_t off = 0; off < size; off += (1 + age_rand(&rng) % 64) * MM_PAGE)
		start[pieces++] = off;
	start[pieces] = size;
	order = calloc(pieces, sizeof(*order));
	ASSERT_NE(NULL, order);
	/* Fisher-Yates over the piece numbers. */
	for (size_t i = 0; i < pieces; i++)
		order[i] = i;
	for (size_t i = pieces - 1; i > 0; i--) {
		size_t j = age_rand(&rng) % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (size_t i = 0; i < pieces; i++) {
		size_t off = start[order[i]], n = start[order[i] + 1] - off;

		if (n > size - off)
			n = size - off;
		fs_fill(buf, n, off, 13);
		ASSERT_EQ((ssize_t)n, pwrite(fd, buf, n, off)) TH_LOG("piece at %zu", off);
	}
	free(order);
	free(start);
	TH_LOG("%zu pieces written in random order", pieces);
	measure_file(_metadata, self, fd, "f", "random pwrite into a sparse file", size, 13, 13);
}

/*
 * An empty file given its blocks by store faults through a mapping
 * @misalign bytes off 2 MiB alignment (0: PMD-eligible). After PTE faults
 * the file's 4 KiB mapping entries outlive the mapping (on ext4 and xfs
 * too) and keep a new one from PMDs: that is measured and printed, then
 * the filesystem is mounted again (no entries) and the blocks measured.
 */
static void faults(struct __test_metadata *_metadata, FIXTURE_DATA(huge) *self,
		   size_t misalign, const char *way)
{
	const size_t size = file_size();
	int fd = create("f");
	struct placed m;
	char *p;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, size));
	p = mm_mmap_aligned(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0, misalign);
	ASSERT_NE(MAP_FAILED, p);
	mm_remember(p, size);
	mm_write_words(p, size, 0, 14);
	ASSERT_EQ(0, mm_unmap(p, size));
	if (misalign) {
		ASSERT_EQ(0, store_pass(fd, size, 14, &m));
		report(self->aged ? "aged" : "fresh", "store faults, mapping 4 KiB off, "
		       "mapped again aligned (its 4 KiB entries still there)", fd, size, &m);
		ASSERT_EQ(0, close(fd));
		ASSERT_EQ(0, fs_remount());
		fd = open(fs_path("f"), O_RDWR);
		ASSERT_LE(0, fd);
	}
	measure_file(_metadata, self, fd, "f", way, size, 0, 14);
}

HUGE_TEST(fault_aligned)
{
	faults(_metadata, self, 0, "store faults, 2 MiB-aligned mapping");
}

HUGE_TEST(fault_unaligned_pte)
{
	faults(_metadata, self, MM_PAGE, "store faults, mapping 4 KiB off (PTE faults), remounted");
}

HUGE_TEST(copy_file_range)
{
	const size_t size = file_size();
	int src = create("src"), dst = create("f");
	loff_t in = 0, out = 0;

	ASSERT_LE(0, src);
	ASSERT_LE(0, dst);
	ASSERT_EQ(0, append(src, 0, size, MIB, 15));
	ASSERT_EQ(0, fsync(src));
	while (in < (loff_t)size) {
		ssize_t n = copy_file_range(src, &in, dst, &out, size - in, 0);

		ASSERT_LT(0, n) TH_LOG("copy_file_range at %lld: %s", (long long)in,
				      strerror(errno));
	}
	/* The copy alone: whatever it shared with the source is its own now. */
	close(src);
	ASSERT_EQ(0, unlink(fs_path("src")));
	measure_file(_metadata, self, dst, "f", "copy_file_range of a written file", size, 15,
		     15);
}

/* A fallocated and written source, FICLONEd to "f"; returns "f" open, or
 * -1 with errno (EOPNOTSUPP, EINVAL: no reflink). */
static int clone_of_source(size_t size, uint64_t seed)
{
	int src = create("src"), dst = create("f");

	if (src < 0 || dst < 0 || fallocate(src, 0, 0, size) ||
	    fs_write_pattern(src, 0, size, seed) != size || fsync(src))
		return -1;
	if (ioctl(dst, FICLONE, src)) {
		int err = errno;

		close(src);
		close(dst);
		errno = err;
		return -1;
	}
	close(src);
	return dst;
}

/*
 * On an aged oxdax the copies of a clone's regions need whole free chunks
 * besides those the source took: as many regions as there are chunks left
 * free whole must map by PMD, the others may miss (how many chunks aging
 * leaves whole is make bench's aging section's to measure).
 */
static void copies_may_miss(FIXTURE_DATA(huge) *self, size_t size)
{
	long regions = size / MM_PMD;
	long long free_whole = mm_counter("chunks_free");

	if (self->aged && free_whole >= 0 && free_whole < regions)
		self->may_miss = regions - free_whole;
}

#define CLONE_OR_SKIP(fd) do { \
	if ((fd) < 0 && (errno == EOPNOTSUPP || errno == EINVAL || errno == EXDEV)) \
		SKIP(return, "%s has no reflink", fs_type()); \
	ASSERT_LE(0, (fd)) TH_LOG("clone: %s", strerror(errno)); \
} while (0)

HUGE_TEST(reflink_write_cow)
{
	const size_t size = file_size();
	int fd = clone_of_source(size, 16), src;

	CLONE_OR_SKIP(fd);
	copies_may_miss(self, size);
	/* Copy-on-write by write(2): 64 KiB at a time over all of it. */
	ASSERT_EQ(0, append(fd, 0, size, 64 * KIB, 17));
	src = open(fs_path("src"), O_RDONLY);
	ASSERT_LE(0, src);
	EXPECT_EQ(-1, fs_check_pattern(src, 0, size, 16));
	close(src);
	measure_file(_metadata, self, fd, "f", "FICLONE then write(2) over it", size, 17, 17);
}

HUGE_TEST(reflink_fault_cow)
{
	const char *state = self->aged ? "aged" : "fresh";
	const size_t size = file_size();
	int fd = clone_of_source(size, 18), src;
	struct placed m;

	CLONE_OR_SKIP(fd);
	copies_may_miss(self, size);
	/* Copy-on-write by store faults: the first pass is measured too. */
	ASSERT_EQ(0, store_pass(fd, size, 19, &m));
	report(state, "FICLONE then stores (the copy-on-write faults)", fd, size, &m);
	if (mm_counted()) {
		EXPECT_LE(99.0 * (m.regions - self->may_miss) / m.regions, 100 * m.by_faults)
			TH_LOG("%ld faults in the second pass", m.pass2);
		EXPECT_LE(m.regions, mm_delta(&m.a, &m.b, MM_FAULT_COW));
	}
	src = open(fs_path("src"), O_RDONLY);
	ASSERT_LE(0, src);
	EXPECT_EQ(-1, fs_check_pattern(src, 0, size, 18));
	close(src);
	measure_file(_metadata, self, fd, "f", "FICLONE then stores, mapped again", size, 18, 19);
}

HUGE_TEST(truncate_up_write)
{
	const size_t size = file_size(), head = 100 * KIB;
	int fd = create("f");

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, append(fd, 0, head, head, 20));
	ASSERT_EQ(0, ftruncate(fd, size));
	ASSERT_EQ(0, append(fd, head, size, 64 * KIB, 20));
	measure_file(_metadata, self, fd, "f", "100 KiB, ftruncate up, write(2) the rest", size,
		     20, 20);
}

static uint64_t free_bytes(uint64_t want)
{
	struct statvfs v;
	uint64_t got = 0;

	for (int i = 0; i < 50; i++) {
		sync();
		if (statvfs(FS_MNT, &v))
			return 0;
		got = (uint64_t)v.f_bfree * v.f_frsize;
		if (got >= want)
			break;
		usleep(100000);
	}
	return got;
}

#define SMALL_FILES 32
#define BLOCKS_ALLOWANCE (16 * KIB)
#define META_ALLOWANCE MIB

static size_t round_page(size_t n)
{
	return (n + MM_PAGE - 1) / MM_PAGE * MM_PAGE;
}

/* st_blocks of the closed file @name in bytes, -1 on error. */
static long long disk_bytes(const char *name)
{
	struct stat st;

	return stat(fs_path("%s", name), &st) ? -1 : (long long)st.st_blocks * 512;
}

HUGE_TEST(small_files_keep_small)
{
	const size_t sizes[2] = { 4 * KIB, 100 * KIB };
	const char *names[2] = { "small-4k", "small-100k" };
	int fds[SMALL_FILES];
	uint64_t before, after, back, data = 0;
	char name[32];

	before = free_bytes(0);
	/* A 4 KiB file by one write, a 100 KiB one by 4 KiB appends. */
	for (int i = 0; i < 2; i++) {
		int fd = create(names[i]);

		ASSERT_LE(0, fd);
		ASSERT_EQ(0, append(fd, 0, sizes[i], 4 * KIB, 21 + i));
		ASSERT_EQ(0, close(fd));
		data += round_page(sizes[i]);
	}
	/* 32 files grown side by side: 3 rounds of one 4 KiB append each. */
	for (int i = 0; i < SMALL_FILES; i++) {
		snprintf(name, sizeof(name), "small-%02d", i);
		fds[i] = create(name);
		ASSERT_LE(0, fds[i]);
	}
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < SMALL_FILES; i++)
			ASSERT_EQ(0, append(fds[i], round * 4 * KIB, (round + 1) * 4 * KIB, 4 * KIB,
					    30 + i));
	for (int i = 0; i < SMALL_FILES; i++)
		ASSERT_EQ(0, close(fds[i]));
	data += SMALL_FILES * 12 * KIB;

	for (int i = 0; i < 2; i++) {
		long long used = disk_bytes(names[i]);

		TH_LOG("%s: %s of %zu bytes has st_blocks for %lld bytes", fs_type(), names[i],
		       sizes[i], used);
		EXPECT_LE(used, (long long)(round_page(sizes[i]) + BLOCKS_ALLOWANCE));
	}
	for (int i = 0; i < SMALL_FILES; i++) {
		snprintf(name, sizeof(name), "small-%02d", i);
		EXPECT_LE(disk_bytes(name), (long long)(12 * KIB + BLOCKS_ALLOWANCE)) TH_LOG("%s", name);
	}
	after = free_bytes(0);
	TH_LOG("%s: %llu KiB of data in %d closed files took %lld KiB of free space", fs_type(),
	       (unsigned long long)data >> 10, 2 + SMALL_FILES,
	       ((long long)before - (long long)after) / 1024);
	EXPECT_LE((long long)before - (long long)after,
		  (long long)(data + (2 + SMALL_FILES) * BLOCKS_ALLOWANCE + META_ALLOWANCE));
	if (self->chunks >= 0) {
		EXPECT_EQ(self->chunks, print_chunks("small files"));
	}

	/* Their content, then gone: the space comes back. */
	for (int i = 0; i < 2; i++) {
		int fd = open(fs_path("%s", names[i]), O_RDONLY);

		ASSERT_LE(0, fd);
		EXPECT_EQ(-1, fs_check_pattern(fd, 0, sizes[i], 21 + i));
		close(fd);
		ASSERT_EQ(0, unlink(fs_path("%s", names[i])));
	}
	for (int i = 0; i < SMALL_FILES; i++) {
		int fd;

		snprintf(name, sizeof(name), "small-%02d", i);
		fd = open(fs_path("%s", name), O_RDONLY);
		ASSERT_LE(0, fd);
		EXPECT_EQ(-1, fs_check_pattern(fd, 0, 12 * KIB, 30 + i)) TH_LOG("%s", name);
		close(fd);
		ASSERT_EQ(0, unlink(fs_path("%s", name)));
	}
	back = free_bytes(before - META_ALLOWANCE);
	TH_LOG("%s: free space %llu KiB before, %llu KiB after unlinking", fs_type(),
	       (unsigned long long)before >> 10, (unsigned long long)back >> 10);
	EXPECT_LE((long long)before - (long long)back, (long long)META_ALLOWANCE);
}

TEST_HARNESS_MAIN
