// SPDX-License-Identifier: GPL-2.0
/*
 * blkbench: sequential O_DIRECT throughput of a block device.
 *
 *   blkbench DEVICE read|write BLOCK_SIZE TOTAL_BYTES
 *
 * Prints "MB/s" (decimal megabytes per second) on one line.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct timespec start, end;
	size_t bs, total;
	int fd, write_mode;
	char *buf;

	if (argc != 5) {
		fprintf(stderr, "usage: blkbench DEVICE read|write BLOCK_SIZE TOTAL_BYTES\n");
		return 2;
	}
	write_mode = !strcmp(argv[2], "write");
	bs = strtoull(argv[3], NULL, 0);
	total = strtoull(argv[4], NULL, 0);
	fd = open(argv[1], (write_mode ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0 || bs == 0 || total < bs || posix_memalign((void **)&buf, 4096, bs)) {
		perror("blkbench");
		return 1;
	}
	memset(buf, 0x3c, bs);
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (size_t off = 0; off + bs <= total; off += bs) {
		ssize_t n = write_mode ? pwrite(fd, buf, bs, off) : pread(fd, buf, bs, off);

		if (n != (ssize_t)bs) {
			perror("blkbench: transfer");
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	double seconds = (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
	printf("%.1f\n", total / seconds / 1e6);
	close(fd);
	return 0;
}
