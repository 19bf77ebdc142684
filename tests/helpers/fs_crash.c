// SPDX-License-Identifier: GPL-2.0
/*
 * fs_crash: the guest side of the crash campaign (scripts/crash-campaign).
 *
 *   fs_crash run    DIR SEED          run the workload in DIR forever,
 *                                     printing "ACK N" once operation N
 *                                     returned and was fsynced
 *   fs_crash verify DIR SEED ACKED    after a crash: DIR must look as the
 *                                     workload left it after some system
 *                                     call at or after operation ACKED's
 *                                     end and before operation ACKED +
 *                                     IN_FLIGHT + 1 (the host may kill the
 *                                     guest between an operation and its
 *                                     ACK reaching it)
 *
 * The workload is a deterministic function of SEED: verify replays it on
 * a tmpfs directory (the model) and compares listings — every path, its
 * type, size, link count and a hash of its contents — after every system
 * call of the operations in that window, since each system call is atomic
 * on oxdax but an operation (open with O_TRUNC then write; rmdir then
 * mkdir) is several. Within the window, the files an operation touches are
 * compared by existence and type only: a write(2) that a crash interrupts
 * may have stored part of its data (as on any filesystem). Operation
 * errors (ENOENT, EEXIST, ...) are part of the workload: they happen alike
 * on the model.
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
/*
 * Operations that may have run after the last "ACK" the host saw: the
 * serial console delivers the lines late, and an operation that fails at
 * once (ENOENT) takes no time. Seen: a kill during operation ACKED + 3,
 * after a copy and a no-op fallocate whose ACKs never reached the host.
 */
#define IN_FLIGHT 4

static uint64_t rng_state;

/* Verification: the filesystem's listing, the window of operations, the
 * operation being replayed, the paths it touches (relative to the root),
 * and whether some state matched. */
static struct {
	int active;
	const char *root;
	char *actual;
	long first, last, current;
	char touched[3][512];
	int matched;
} verify;

static void checkpoint(void);

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
	if (verify.active) {
		size_t skip = strlen(root);

		snprintf(verify.touched[0], sizeof(verify.touched[0]), "%s", a + skip);
		snprintf(verify.touched[1], sizeof(verify.touched[1]), "%s", b + skip);
		snprintf(verify.touched[2], sizeof(verify.touched[2]), "/d%u", value % DIRS);
	}
	switch (kind) {
	case 0: case 1: /* create or replace, with data */
		fd = open(a, O_CREAT | O_TRUNC | O_WRONLY, 0644);
		checkpoint();
		if (fd < 0)
			break;
		write_pattern(fd, 0, value % 40000, value);
		checkpoint();
		fsync(fd);
		close(fd);
		sync_parent(a);
		break;
	case 2: /* write somewhere, maybe extending */
		fd = open(a, O_WRONLY);
		if (fd < 0)
			break;
		write_pattern(fd, value % 100000, 1 + value % 9000, value);
		checkpoint();
		fsync(fd);
		close(fd);
		break;
	case 3: /* truncate */
		fd = open(a, O_WRONLY);
		if (fd < 0)
			break;
		if (ftruncate(fd, value % 80000) == 0)
			fsync(fd);
		checkpoint();
		close(fd);
		break;
	case 4: /* rename, possibly over another file, possibly across dirs */
		if (rename(a, b) == 0) {
			checkpoint();
			sync_parent(a);
			sync_parent(b);
		}
		break;
	case 5: /* unlink */
		if (unlink(a) == 0)
			sync_parent(a);
		checkpoint();
		break;
	case 6: /* hard link */
		if (link(a, b) == 0 && (checkpoint(), 1))
			sync_parent(b);
		break;
	case 7: /* punch a hole */
		fd = open(a, O_WRONLY);
		if (fd < 0)
			break;
		if (fallocate(fd, 3 /* PUNCH_HOLE | KEEP_SIZE */, value % 60000,
			      1 + value % 20000) == 0)
			fsync(fd);
		checkpoint();
		close(fd);
		break;
	case 8: /* preallocate past the end, size kept */
		fd = open(a, O_WRONLY);
		if (fd < 0)
			break;
		if (fallocate(fd, 1 /* KEEP_SIZE */, value % 60000, 8192) == 0)
			fsync(fd);
		checkpoint();
		close(fd);
		break;
	case 9: /* copy (a clone on oxdax) */
		fd = open(a, O_RDONLY);
		fd2 = open(b, O_CREAT | O_TRUNC | O_WRONLY, 0644);
		checkpoint();
		if (fd >= 0 && fd2 >= 0) {
			struct stat st;

			if (fstat(fd, &st) == 0 && st.st_size > 0) {
				loff_t in = 0, out = 0;

				copy_file_range(fd, &in, fd2, &out, st.st_size, 0);
				checkpoint();
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
			checkpoint();
			mkdir(dir, 0755);
			checkpoint();
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

/* Whether listing line LINE's path is one the current operation touches
 * (or lies under one). */
static int touched(const char *line, size_t len)
{
	for (int i = 0; i < 3; i++) {
		size_t n = strlen(verify.touched[i]);

		if (n && len > n && !strncmp(line, verify.touched[i], n) &&
		    (line[n] == ' ' || line[n] == '/'))
			return 1;
	}
	return 0;
}

/* Listings equal, except that touched paths need only agree on type. */
static int same_state(const char *model, const char *actual)
{
	while (*model && *actual) {
		const char *m_end = strchr(model, '\n'), *a_end = strchr(actual, '\n');
		const char *m_sp, *a_sp;

		if (!m_end || !a_end)
			return 0;
		m_sp = strchr(model, ' ');
		a_sp = strchr(actual, ' ');
		if (m_sp - model != a_sp - actual || strncmp(model, actual, m_sp - model) ||
		    m_sp[1] != a_sp[1])
			return 0;
		if (!touched(model, m_end - model) &&
		    (m_end - model != a_end - actual || strncmp(model, actual, m_end - model)))
			return 0;
		model = m_end + 1;
		actual = a_end + 1;
	}
	return !*model && !*actual;
}

static void list(const char *tree, const char *rel, char *out, size_t *used);

/* In verify mode: compares the model now with the filesystem. */
static void checkpoint(void)
{
	static char model[MAX_LISTING];
	size_t len = 0;

	if (!verify.active || verify.matched || verify.current < verify.first ||
	    verify.current > verify.last)
		return;
	list(verify.root, "", model, &len);
	if (same_state(model, verify.actual))
		verify.matched = 1;
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
	/* "ACK N" printed means operations 0..N are done. The state must be
	 * the one after operation N or after a system call of N + 1 to
	 * N + IN_FLIGHT. */
	verify.active = 1;
	verify.root = model_root;
	verify.actual = actual;
	verify.first = acked + 1;
	verify.last = acked + IN_FLIGHT;
	for (op = 0; op <= acked + IN_FLIGHT && !verify.matched; op++) {
		verify.current = op;
		if (op == acked + 1) {
			/* Between operations: nothing in flight. */
			memset(verify.touched, 0, sizeof(verify.touched));
			checkpoint();
		}
		operation(model_root);
	}
	if (verify.matched) {
		printf("state after a system call of operations %ld to %ld (%ld acknowledged)\n",
		       acked + 1, acked + IN_FLIGHT + 1, acked + 1);
		return 0;
	}
	fprintf(stderr, "fs_crash: the filesystem matches no state after operation %ld\n", acked + 1);
	fprintf(stderr, "--- filesystem:\n%s", actual);
	rng_state = strtoull(argv[3], NULL, 0);
	verify.active = 0;
	if (system("rm -rf /tmp/fs_crash_model") != 0)
		return 1;
	mkdir(model_root, 0755);
	setup(model_root);
	for (op = 0; op < acked + 1; op++)
		operation(model_root);
	model_len = 0;
	list(model_root, "", model, &model_len);
	fprintf(stderr, "--- model after %ld operations:\n%s", acked + 1, model);
	return 1;
}
