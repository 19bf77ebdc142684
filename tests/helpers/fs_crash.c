// SPDX-License-Identifier: GPL-2.0
/*
 * fs_crash: the guest side of the crash campaign (scripts/crash-campaign).
 *
 *   fs_crash run    DIR SEED          run the workload in DIR forever,
 *                                     printing "ACK N" once operation N
 *                                     returned and was fsynced
 *   fs_crash verify DIR SEED ACKED    after a crash: DIR must look exactly
 *                                     as after ACKED, ACKED + 1 or
 *                                     ACKED + 2 operations (the host may
 *                                     kill the guest between an operation
 *                                     and its ACK reaching it)
 *
 * The workload is a deterministic function of SEED: verify replays it on
 * a tmpfs directory (the model) and compares listings — every path, its
 * type, size, link count and a hash of its contents. Operation errors
 * (ENOENT, EEXIST, ...) are part of the workload: they happen alike on
 * the model.
 *
 * Exit status 0 when the state matches; messages on stderr.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define NAMES 12
#define DIRS 3
#define MAX_LISTING (1 << 20)

static uint64_t rng_state;

static uint32_t next_random(void)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return rng_state >> 33;
}

/* A path inside ROOT: the root itself or one of DIRS subdirectories. */
static void pick_path(char *out, size_t len, const char *root, const char *prefix)
{
	unsigned int dir = next_random() % (DIRS + 1);
	unsigned int name = next_random() % NAMES;

	if (dir == DIRS)
		snprintf(out, len, "%s/%s%u", root, prefix, name);
	else
		snprintf(out, len, "%s/d%u/%s%u", root, dir, prefix, name);
}

static void sync_parent(const char *path)
{
	char parent[512];
	char *slash;
	int fd;

	snprintf(parent, sizeof(parent), "%s", path);
	slash = strrchr(parent, '/');
	if (!slash)
		return;
	*slash = 0;
	fd = open(parent, O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

static void write_pattern(int fd, off_t at, size_t len, uint32_t seed)
{
	static char buf[65536];
	size_t i;

	if (len > sizeof(buf))
		len = sizeof(buf);
	for (i = 0; i < len; i++)
		buf[i] = (char)(seed + i * 131 + (i >> 7));
	if (pwrite(fd, buf, len, at) < 0)
		return;
}

/* Operation N of the workload on ROOT (random state advanced alike). */
static void operation(const char *root)
{
	char a[512], b[512];
	unsigned int kind = next_random() % 11;
	uint32_t value = next_random();
	int fd, fd2;

	pick_path(a, sizeof(a), root, "f");
	pick_path(b, sizeof(b), root, "f");
	switch (kind) {
	case 0: case 1: /* create or replace, with data */
		fd = open(a, O_CREAT | O_TRUNC | O_WRONLY, 0644);
		if (fd < 0)
			break;
		write_pattern(fd, 0, value % 40000, value);
		fsync(fd);
		close(fd);
		sync_parent(a);
		break;
	case 2: /* write somewhere, maybe extending */
		fd = open(a, O_WRONLY);
		if (fd < 0)
			break;
		write_pattern(fd, value % 100000, 1 + value % 9000, value);
		fsync(fd);
		close(fd);
		break;
	case 3: /* truncate */
		fd = open(a, O_WRONLY);
		if (fd < 0)
			break;
		if (ftruncate(fd, value % 80000) == 0)
			fsync(fd);
		close(fd);
		break;
	case 4: /* rename, possibly over another file, possibly across dirs */
		if (rename(a, b) == 0) {
			sync_parent(a);
			sync_parent(b);
		}
		break;
	case 5: /* unlink */
		if (unlink(a) == 0)
			sync_parent(a);
		break;
	case 6: /* hard link */
		if (link(a, b) == 0)
			sync_parent(b);
		break;
	case 7: /* punch a hole */
		fd = open(a, O_WRONLY);
		if (fd < 0)
			break;
		if (fallocate(fd, 3 /* PUNCH_HOLE | KEEP_SIZE */, value % 60000,
			      1 + value % 20000) == 0)
			fsync(fd);
		close(fd);
		break;
	case 8: /* preallocate past the end, size kept */
		fd = open(a, O_WRONLY);
		if (fd < 0)
			break;
		if (fallocate(fd, 1 /* KEEP_SIZE */, value % 60000, 8192) == 0)
			fsync(fd);
		close(fd);
		break;
	case 9: /* copy (a clone on oxdax) */
		fd = open(a, O_RDONLY);
		fd2 = open(b, O_CREAT | O_TRUNC | O_WRONLY, 0644);
		if (fd >= 0 && fd2 >= 0) {
			struct stat st;

			if (fstat(fd, &st) == 0 && st.st_size > 0) {
				loff_t in = 0, out = 0;

				copy_file_range(fd, &in, fd2, &out, st.st_size, 0);
			}
			fsync(fd2);
			sync_parent(b);
		}
		if (fd >= 0)
			close(fd);
		if (fd2 >= 0)
			close(fd2);
		break;
	default: { /* empty a directory's worth: rmdir then mkdir */
		char dir[512];

		snprintf(dir, sizeof(dir), "%s/d%u", root, value % DIRS);
		if (rmdir(dir) == 0 || errno == ENOENT) {
			mkdir(dir, 0755);
			sync_parent(dir);
		}
		break;
	}
	}
}

static uint64_t hash_bytes(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len--)
		h = (h ^ *p++) * 0x100000001b3ULL;
	return h;
}

static uint64_t hash_file(const char *path)
{
	static char buf[65536];
	uint64_t h = 0xcbf29ce484222325ULL;
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		h = hash_bytes(h, buf, n);
	close(fd);
	return n < 0 ? 1 : h;
}

/* Appends "relpath type size nlink hash" lines for TREE under REL. */
static void list(const char *tree, const char *rel, char *out, size_t *used)
{
	char path[1024];
	struct dirent *entry;
	char *names[256];
	int count = 0, i;
	DIR *dir;

	snprintf(path, sizeof(path), "%s%s", tree, rel);
	dir = opendir(path);
	if (!dir)
		return;
	while ((entry = readdir(dir)) && count < 256) {
		if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..") ||
		    !strcmp(entry->d_name, "lost+found"))
			continue;
		names[count++] = strdup(entry->d_name);
	}
	closedir(dir);
	/* Sorted, so listings compare whatever the readdir order. */
	for (i = 1; i < count; i++)
		for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			char *t = names[j];

			names[j] = names[j - 1];
			names[j - 1] = t;
		}
	for (i = 0; i < count; i++) {
		char child[1024], full[2048];
		struct stat st;

		snprintf(child, sizeof(child), "%s/%s", rel, names[i]);
		snprintf(full, sizeof(full), "%s%s", tree, child);
		if (lstat(full, &st) == 0) {
			int dir_entry = S_ISDIR(st.st_mode);

			*used += snprintf(out + *used, MAX_LISTING - *used, "%s %c %lld %lu %016llx\n",
					  child, dir_entry ? 'd' : 'f',
					  dir_entry ? 0LL : (long long)st.st_size,
					  (unsigned long)st.st_nlink,
					  dir_entry ? 0ULL : (unsigned long long)hash_file(full));
			if (dir_entry)
				list(tree, child, out, used);
		}
		free(names[i]);
	}
}

static void setup(const char *root)
{
	char dir[512];

	for (int i = 0; i < DIRS; i++) {
		snprintf(dir, sizeof(dir), "%s/d%d", root, i);
		mkdir(dir, 0755);
	}
}

int main(int argc, char **argv)
{
	static char actual[MAX_LISTING], model[MAX_LISTING];
	size_t actual_len = 0, model_len;
	const char *root, *model_root = "/tmp/fs_crash_model";
	long acked, op;

	if (argc < 4 || (strcmp(argv[1], "run") && strcmp(argv[1], "verify")) ||
	    (!strcmp(argv[1], "verify") && argc != 5)) {
		fprintf(stderr, "usage: fs_crash run DIR SEED | fs_crash verify DIR SEED ACKED\n");
		return 2;
	}
	root = argv[2];
	rng_state = strtoull(argv[3], NULL, 0);
	if (!strcmp(argv[1], "run")) {
		setup(root);
		sync_parent(root);
		printf("READY\n");
		fflush(stdout);
		for (op = 0;; op++) {
			operation(root);
			printf("ACK %ld\n", op);
			fflush(stdout);
		}
	}
	acked = strtol(argv[4], NULL, 0);
	list(root, "", actual, &actual_len);
	if (system("rm -rf /tmp/fs_crash_model") != 0 || mkdir(model_root, 0755)) {
		perror("model directory");
		return 1;
	}
	setup(model_root);
	/* "ACK N" printed means operations 0..N are done: N + 1 of them. */
	for (op = 0; op <= acked + 3; op++) {
		if (op >= acked + 1) {
			model_len = 0;
			list(model_root, "", model, &model_len);
			if (model_len == actual_len && !memcmp(model, actual, actual_len)) {
				printf("state after %ld operations (%ld acknowledged)\n", op,
				       acked + 1);
				return 0;
			}
		}
		operation(model_root);
	}
	fprintf(stderr, "fs_crash: the filesystem matches no state from %ld to %ld operations\n",
		acked + 1, acked + 3);
	fprintf(stderr, "--- filesystem:\n%s--- model after %ld operations:\n", actual, acked + 1);
	rng_state = strtoull(argv[3], NULL, 0);
	system("rm -rf /tmp/fs_crash_model");
	mkdir(model_root, 0755);
	setup(model_root);
	for (op = 0; op < acked + 1; op++)
		operation(model_root);
	model_len = 0;
	list(model_root, "", model, &model_len);
	fprintf(stderr, "%s", model);
	return 1;
}
