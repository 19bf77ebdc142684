/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by oxdax's guest tests (used with kselftest_harness.h).
 * Header-only so each test stays one static binary.
 */
#ifndef OXDAX_TEST_H
#define OXDAX_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OXDAX_KO "/oxdax/oxdax.ko"
#define OXDAX_SYSFS "/sys/module/oxdax"

/* Loads oxdax.ko with @params; returns 0 or -errno. */
static inline int oxdax_load(const char *params)
{
	int fd = open(OXDAX_KO, O_RDONLY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, params, 0) ? -errno : 0;
	close(fd);
	return ret;
}

/* Unloads oxdax; returns 0 or -errno. */
static inline int oxdax_unload(void)
{
	return syscall(SYS_delete_module, "oxdax", O_NONBLOCK) ? -errno : 0;
}

static inline bool oxdax_loaded(void)
{
	return access(OXDAX_SYSFS "/initstate", F_OK) == 0;
}

/* Reads a small text file into @buf (NUL-terminated); returns 0 or -errno. */
static inline int read_text(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

/* Writes @text to a (sysfs) file; returns 0 or -errno. */
static inline int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, text, strlen(text));
	close(fd);
	return n < 0 ? -errno : 0;
}

/* The test pattern: the 64-bit word at byte @offset under @seed. */
static inline uint64_t oxdax_pattern(uint64_t offset, uint64_t seed)
{
	return (offset * 0x9E3779B97F4A7C15ull) ^ seed;
}

/*
 * Watches the kernel log from "now": kmsg_watch_start() skips what is
 * already there, kmsg_collect() gathers the messages logged since, one per
 * line, without the "level,seq,time,flags;" prefix.
 */
struct kmsg_watch {
	int fd;
	char text[65536];
	size_t len;
};

static inline int kmsg_watch_start(struct kmsg_watch *w)
{
	w->len = 0;
	w->text[0] = '\0';
	w->fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (w->fd < 0)
		return -errno;
	if (lseek(w->fd, 0, SEEK_END) < 0)
		return -errno;
	return 0;
}

static inline const char *kmsg_collect(struct kmsg_watch *w)
{
	char rec[8192];
	ssize_t n;

	for (;;) {
		n = read(w->fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;	/* overwritten records: keep going */
		if (n <= 0)
			break;
		rec[n] = '\0';
		char *msg = strchr(rec, ';');
		msg = msg ? msg + 1 : rec;
		/* Continuation lines ("\n KEY=value") are dictionary data. */
		char *end = strchr(msg, '\n');
		size_t len = end ? (size_t)(end - msg) : strlen(msg);
		if (w->len + len + 2 > sizeof(w->text))
			break;
		memcpy(w->text + w->len, msg, len);
		w->len += len;
		w->text[w->len++] = '\n';
		w->text[w->len] = '\0';
	}
	return w->text;
}

/* Number of collected lines containing @needle. */
static inline int kmsg_count(struct kmsg_watch *w, const char *needle)
{
	int count = 0;
	const char *line = kmsg_collect(w);

	while (*line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		if (memmem(line, len, needle, strlen(needle)))
			count++;
		line += len + (end ? 1 : 0);
	}
	return count;
}

static inline void kmsg_watch_stop(struct kmsg_watch *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
}

#endif /* OXDAX_TEST_H */
