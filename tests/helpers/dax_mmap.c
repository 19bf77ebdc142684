// SPDX-License-Identifier: GPL-2.0
/*
 * dax_mmap: file access through shared mappings, for the shell tests.
 *
 *   dax_mmap write  FILE SIZE SEED [sync]   fill FILE through a mapping
 *                                           (MAP_SHARED_VALIDATE|MAP_SYNC
 *                                           with "sync"), msync, unmap
 *   dax_mmap verify FILE SIZE SEED          check the pattern through a mapping
 *   dax_mmap flags  FILE                    MAP_SYNC accepted with
 *                                           MAP_SHARED_VALIDATE, unknown flags
 *                                           refused with EOPNOTSUPP
 *   dax_mmap nosync FILE                    on a DAX device that is not
 *                                           synchronous: MAP_SYNC refused
 *                                           with EOPNOTSUPP, MAP_SHARED works
 *   dax_mmap poison FILE                    madvise(MADV_HWPOISON) on a mapped
 *                                           page must raise SIGBUS BUS_MCEERR_AR
 *                                           at that page
 *   dax_mmap pfn    FILE                    print the page frame number of
 *                                           FILE's first page (for
 *                                           /sys/kernel/debug/hwpoison)
 *   dax_mmap hold   FILE SIZE               map FILE (created SIZE long),
 *                                           store to every page, print "ready",
 *                                           then keep loading from the mapping
 *                                           until a signal ends the process
 *
 * Exit status 0 when everything is as expected; messages on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oxdax_test.h"

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif

static int die(const char *what)
{
	fprintf(stderr, "dax_mmap: %s: %s\n", what, strerror(errno));
	return 1;
}

static int do_write(const char *path, size_t size, uint64_t seed, int sync)
{
	int flags = sync ? MAP_SHARED_VALIDATE | MAP_SYNC : MAP_SHARED;
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	uint64_t *map;

	if (fd < 0)
		return die("open");
	if (ftruncate(fd, size))
		return die("ftruncate");
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (map == MAP_FAILED)
		return die("mmap");
	for (size_t i = 0; i < size / 8; i++)
		map[i] = oxdax_pattern(i * 8, seed);
	if (msync(map, size, MS_SYNC))
		return die("msync");
	munmap(map, size);
	close(fd);
	return 0;
}

static int do_verify(const char *path, size_t size, uint64_t seed)
{
	int fd = open(path, O_RDONLY);
	uint64_t *map;

	if (fd < 0)
		return die("open");
	map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return die("mmap");
	for (size_t i = 0; i < size / 8; i++) {
		if (map[i] != oxdax_pattern(i * 8, seed)) {
			fprintf(stderr, "dax_mmap: %s: mismatch at byte %zu\n", path, i * 8);
			return 1;
		}
	}
	munmap(map, size);
	close(fd);
	return 0;
}

static int do_flags(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	void *map;

	if (fd < 0)
		return die("open");
	if (ftruncate(fd, 4096))
		return die("ftruncate");
	map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
	if (map == MAP_FAILED)
		return die("mmap MAP_SHARED_VALIDATE|MAP_SYNC");
	munmap(map, 4096);
	/* An unknown flag: bit 0x800000 is not a valid mmap flag. */
	map = mmap(NULL, 4096, PROT_READ, MAP_SHARED_VALIDATE | 0x800000, fd, 0);
	if (map != MAP_FAILED || errno != EOPNOTSUPP) {
		fprintf(stderr, "dax_mmap: unknown flag: got %s, want EOPNOTSUPP\n",
			map == MAP_FAILED ? strerror(errno) : "success");
		return 1;
	}
	close(fd);
	return 0;
}

static int do_nosync(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	char back[8] = "";
	char *map;

	if (fd < 0)
		return die("open");
	if (ftruncate(fd, 4096))
		return die("ftruncate");
	map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
	if (map != MAP_FAILED || errno != EOPNOTSUPP) {
		fprintf(stderr, "dax_mmap: MAP_SYNC on a device that is not synchronous: got %s, want EOPNOTSUPP\n",
			map == MAP_FAILED ? strerror(errno) : "success");
		return 1;
	}
	map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return die("mmap MAP_SHARED");
	memcpy(map + 100, "nosync", 7);
	if (msync(map, 4096, MS_SYNC))
		return die("msync");
	if (pread(fd, back, 7, 100) != 7 || strcmp(back, "nosync")) {
		fprintf(stderr, "dax_mmap: a store through MAP_SHARED is not in the file\n");
		return 1;
	}
	munmap(map, 4096);
	close(fd);
	return 0;
}

static sigjmp_buf poison_jump;
static volatile siginfo_t poison_info;

static void on_sigbus(int sig, siginfo_t *info, void *ucontext)
{
	(void)sig;
	(void)ucontext;
	poison_info.si_code = info->si_code;
	poison_info.si_addr = info->si_addr;
	poison_info.si_addr_lsb = info->si_addr_lsb;
	siglongjmp(poison_jump, 1);
}

static int do_poison(const char *path)
{
	long page = sysconf(_SC_PAGESIZE);
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	char *map, *target;

	if (fd < 0)
		return die("open");
	if (ftruncate(fd, 4 * page))
		return die("ftruncate");
	map = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE,
		   MAP_SHARED_VALIDATE | MAP_SYNC | MAP_POPULATE, fd, 0);
	if (map == MAP_FAILED)
		return die("mmap");
	memset(map, 0x5a, 4 * page);
	target = map + page;
	sigaction(SIGBUS, &sa, NULL);
	if (sigsetjmp(poison_jump, 1) == 0) {
		if (madvise(target, page, MADV_HWPOISON))
			return die("madvise(MADV_HWPOISON)");
		/* The poison is consumed at once; reaching here means no signal. */
		fprintf(stderr, "dax_mmap: no SIGBUS after MADV_HWPOISON\n");
		return 1;
	}
	if (poison_info.si_code != BUS_MCEERR_AR) {
		fprintf(stderr, "dax_mmap: si_code %d, want BUS_MCEERR_AR (%d)\n",
			poison_info.si_code, BUS_MCEERR_AR);
		return 1;
	}
	if (poison_info.si_addr != target) {
		fprintf(stderr, "dax_mmap: si_addr %p, want %p\n", poison_info.si_addr, target);
		return 1;
	}
	printf("SIGBUS BUS_MCEERR_AR at the poisoned page, si_addr_lsb %d\n",
	       poison_info.si_addr_lsb);
	return 0;
}

static int do_hold(const char *path, size_t size)
{
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	volatile unsigned char *map;
	unsigned long sum = 0;

	if (fd < 0)
		return die("open");
	if (ftruncate(fd, size))
		return die("ftruncate");
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return die("mmap");
	for (size_t i = 0; i < size; i += 4096)
		map[i] = 0x5a;
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		for (size_t i = 0; i < size; i += 4096)
			sum += map[i];
		usleep(10000);
	}
	return sum == 0;
}

static int do_pfn(const char *path)
{
	int fd = open(path, O_RDONLY), pagemap = open("/proc/self/pagemap", O_RDONLY);
	volatile unsigned char *map;
	uint64_t entry;

	if (fd < 0 || pagemap < 0)
		return die("open");
	map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return die("mmap");
	(void)map[0];
	if (pread(pagemap, &entry, sizeof(entry), (uintptr_t)map / 4096 * sizeof(entry)) !=
	    sizeof(entry))
		return die("pagemap");
	/* Bit 63: present; bits 0-54: the frame (root sees it). */
	if (!(entry >> 63) || !(entry & ((1ull << 55) - 1))) {
		fprintf(stderr, "dax_mmap: %s: page not present in pagemap\n", path);
		return 1;
	}
	printf("%#llx\n", (unsigned long long)(entry & ((1ull << 55) - 1)));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && !strcmp(argv[1], "write"))
		return do_write(argv[2], strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0),
				argc > 5 && !strcmp(argv[5], "sync"));
	if (argc == 5 && !strcmp(argv[1], "verify"))
		return do_verify(argv[2], strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0));
	if (argc == 3 && !strcmp(argv[1], "flags"))
		return do_flags(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "nosync"))
		return do_nosync(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "poison"))
		return do_poison(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "pfn"))
		return do_pfn(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "hold"))
		return do_hold(argv[2], strtoull(argv[3], NULL, 0));
	fprintf(stderr, "usage: dax_mmap write|verify|flags|nosync|poison|pfn|hold FILE [SIZE [SEED [sync]]]\n");
	return 2;
}
