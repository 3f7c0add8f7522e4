/* Shared helpers for the engine test programs (see docs/test-protocol.md).
 *
 * A program is started as `PROG WORKDIR [ARGS...]`. It sets up its state,
 * writes its pid to WORKDIR/ready, waits (by default for WORKDIR/go, polling
 * with a 10 ms nanosleep), verifies its state and writes WORKDIR/result:
 * `PASS` or `FAIL: <reason>`. Every file is written to a .tmp and renamed.
 *
 * Programs are single-threaded but the thr_* ones. Diagnostics go to stderr, which the harness
 * points at WORKDIR/out.log. */
#ifndef SNAPTEST_COMMON_H
#define SNAPTEST_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static const char *workdir;

static inline void path_in(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", workdir, name);
}

static inline void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void logmsg(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* One write(2) per line: stderr is O_APPEND on out.log. */
	if (write(STDERR_FILENO, buf, n) < 0) {
		/* nothing to do */
	}
}

static inline int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

/* Reads exactly len bytes unless EOF comes first; returns bytes read or -1. */
static inline ssize_t read_full(int fd, void *data, size_t len)
{
	char *p = data;
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += n;
	}
	return got;
}

/* Writes WORKDIR/name atomically (name.tmp, then rename). */
static inline int write_file_atomic(const char *name, const char *data)
{
	char path[4096], tmp[4200];
	int fd;

	path_in(path, sizeof(path), name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (write_all(fd, data, strlen(data)) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	return rename(tmp, path);
}

/* Reads a whole file (at most cap-1 bytes), NUL-terminated; returns length or -1. */
static inline ssize_t read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read_full(fd, buf, cap - 1);
	close(fd);
	if (n >= 0)
		buf[n] = 0;
	return n;
}

static inline void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void fail(const char *fmt, ...)
{
	char msg[2048], line[2100];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(line, sizeof(line), "FAIL: %s\n", msg);
	logmsg("%s", line);
	write_file_atomic("result", line);
	exit(0);
}

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			fail(__VA_ARGS__);                                     \
	} while (0)

/* Fails unless a syscall-style return value is not -1. */
#define CHECK_SYS(expr)                                                        \
	do {                                                                   \
		if ((long)(expr) == -1)                                        \
			fail("%s:%d: %s: %s", __FILE__, __LINE__, #expr,       \
			     strerror(errno));                                 \
	} while (0)

static inline void pass(void) __attribute__((noreturn));
static inline void pass(void)
{
	logmsg("PASS");
	write_file_atomic("result", "PASS\n");
	exit(0);
}

static inline void setup(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s WORKDIR [ARGS...]\n", argv[0]);
		exit(2);
	}
	workdir = argv[1];
}

static inline void signal_ready(void)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	CHECK(write_file_atomic("ready", buf) == 0, "writing ready: %s", strerror(errno));
	logmsg("ready pid %d", (int)getpid());
}

static inline int go_exists(void)
{
	char path[4096];

	path_in(path, sizeof(path), "go");
	return access(path, F_OK) == 0;
}

/* The default wait: poll for WORKDIR/go with a 10 ms nanosleep. */
static inline void wait_go(void)
{
	while (!go_exists()) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	logmsg("go");
}

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* A deterministic, position-dependent pattern. */
static inline void fill_pattern(void *buf, size_t len, uint64_t seed)
{
	uint64_t *w = buf;
	size_t i;

	for (i = 0; i < len / 8; i++)
		w[i] = mix64(seed * 0x9e3779b97f4a7c15ULL + i);
	for (i = len & ~(size_t)7; i < len; i++)
		((unsigned char *)buf)[i] = (unsigned char)mix64(seed + i);
}

/* Returns the offset of the first byte that differs from the pattern, or -1. */
static inline long check_pattern(const void *buf, size_t len, uint64_t seed)
{
	const uint64_t *w = buf;
	size_t i;

	for (i = 0; i < len / 8; i++)
		if (w[i] != mix64(seed * 0x9e3779b97f4a7c15ULL + i)) {
			size_t b;
			uint64_t want = mix64(seed * 0x9e3779b97f4a7c15ULL + i);
			for (b = 0; b < 8; b++)
				if (((const unsigned char *)&w[i])[b] != ((unsigned char *)&want)[b])
					return i * 8 + b;
		}
	for (i = len & ~(size_t)7; i < len; i++)
		if (((const unsigned char *)buf)[i] != (unsigned char)mix64(seed + i))
			return i;
	return -1;
}

/* Returns the offset of the first non-zero byte, or -1. */
static inline long check_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i])
			return i;
	return -1;
}

/* Finds the /proc/self/maps line of the mapping that contains addr. */
static inline int maps_line_for(const void *addr, char *out, size_t cap)
{
	static char maps[1 << 20];
	char *line, *save = NULL;
	uintptr_t a = (uintptr_t)addr;

	if (read_file("/proc/self/maps", maps, sizeof(maps)) < 0)
		return -1;
	for (line = strtok_r(maps, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && a >= lo && a < hi) {
			snprintf(out, cap, "%s", line);
			return 0;
		}
	}
	return -1;
}

/* Fetches one "Key:\tvalue" line of /proc/self/status (value only). */
static inline int status_field(const char *key, char *out, size_t cap)
{
	static char st[16384];
	char *line, *save = NULL;
	size_t kl = strlen(key);

	if (read_file("/proc/self/status", st, sizeof(st)) < 0)
		return -1;
	for (line = strtok_r(st, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			const char *v = line + kl + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			snprintf(out, cap, "%s", v);
			return 0;
		}
	}
	return -1;
}

static inline double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif
