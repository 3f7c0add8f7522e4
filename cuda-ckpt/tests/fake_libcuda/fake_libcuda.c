/*
 * A fake CUDA driver library for tests on machines without a GPU: it
 * exports cuInit, cuDriverGetVersion, cuGetErrorName and the six
 * cuCheckpointProcess* functions with cuda.h's signatures, and keeps the
 * checkpoint state of each pid in files, so that a checkpoint in one
 * snaprun process and a restore in another see the same driver.
 *
 * It checks what a real driver requires of its callers (argument structs of
 * 64 bytes whose reserved fields are zero, legal state transitions) and
 * logs every call with the target's TracerPid at that moment, so a test can
 * tell whether snaprun called it before the freeze or after the resume.
 *
 * Build: cc -shared -fPIC -o DIR/libcuda.so.1 fake_libcuda.c
 *   -DFAKE_VERSION=N      what cuDriverGetVersion reports (default 13000)
 *   -DFAKE_NO_CHECKPOINT  leave out the cuCheckpointProcess* symbols
 *   -DFAKE_DIR="path"     the state directory (else $FAKE_CUDA_DIR)
 *
 * In the state directory:
 *   state.PID   the pid's CUprocessState (absent: running, if the pid exists)
 *   fail.OP     OP in lock|checkpoint|restore|unlock: the next such call
 *               fails with the CUresult written in the file (read once)
 *   log         one line per call: "OP pid=P tracer=T state=S [args] -> R"
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FAKE_VERSION
#define FAKE_VERSION 13000
#endif

enum { RUNNING, LOCKED, CHECKPOINTED, FAILED };
enum { SUCCESS = 0, INVALID_VALUE = 1, NOT_INITIALIZED = 3, ILLEGAL_STATE = 401 };

struct lock_args { unsigned int timeout_ms; unsigned int reserved0; uint64_t reserved1[7]; };
struct plain_args { uint64_t reserved[8]; };
struct uuid { unsigned char bytes[16]; };
struct gpu_pair { struct uuid old_uuid, new_uuid; };
struct restore_args { struct gpu_pair *pairs; unsigned int count; char reserved[44]; uint64_t reserved1; };

_Static_assert(sizeof(struct lock_args) == 64, "lock args");
_Static_assert(sizeof(struct plain_args) == 64, "plain args");
_Static_assert(sizeof(struct restore_args) == 64, "restore args");

static int initialized;

static const char *dir(void)
{
#ifdef FAKE_DIR
	return FAKE_DIR;
#else
	const char *d = getenv("FAKE_CUDA_DIR");
	return d ? d : "/nonexistent-fake-cuda-dir";
#endif
}

static void path(char *buf, size_t n, const char *name, int pid)
{
	if (pid >= 0)
		snprintf(buf, n, "%s/%s.%d", dir(), name, pid);
	else
		snprintf(buf, n, "%s/%s", dir(), name);
}

static int read_int(const char *p, int *v)
{
	FILE *f = fopen(p, "r");
	if (!f)
		return -1;
	int ok = fscanf(f, "%d", v) == 1;
	fclose(f);
	return ok ? 0 : -1;
}

static int tracer_of(int pid)
{
	char p[64], line[256];
	snprintf(p, sizeof p, "/proc/%d/status", pid);
	FILE *f = fopen(p, "r");
	if (!f)
		return -1;
	int t = -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "TracerPid: %d", &t) == 1)
			break;
	fclose(f);
	return t;
}

static int get_state(int pid, int *s)
{
	char p[512];
	path(p, sizeof p, "state", pid);
	if (read_int(p, s) == 0)
		return 0;
	char proc[64];
	snprintf(proc, sizeof proc, "/proc/%d", pid);
	if (access(proc, F_OK) != 0)
		return -1;
	*s = RUNNING;
	return 0;
}

static void set_state(int pid, int s)
{
	char p[512];
	path(p, sizeof p, "state", pid);
	FILE *f = fopen(p, "w");
	if (f) {
		fprintf(f, "%d\n", s);
		fclose(f);
	}
}

static void log_call(const char *op, int pid, int state, const char *extra, int r)
{
	char p[512], line[1024];
	path(p, sizeof p, "log", -1);
	int fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0)
		return;
	int n = snprintf(line, sizeof line, "%s pid=%d tracer=%d state=%d%s%s -> %d\n", op, pid,
			 tracer_of(pid), state, extra[0] ? " " : "", extra, r);
	if (write(fd, line, (size_t)n) < 0) {
		/* nothing to do: the log is for the test */
	}
	close(fd);
}

static int injected(const char *op)
{
	char p[512], name[64];
	snprintf(name, sizeof name, "fail.%s", op);
	path(p, sizeof p, name, -1);
	int code;
	if (read_int(p, &code) != 0)
		return 0;
	unlink(p);
	return code;
}

static int zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

/* One transition: from -> to, unless injected or illegal. */
static int step(const char *op, int pid, int from, int to, int args_ok, const char *extra)
{
	int s = -1, r;
	if (!initialized)
		r = NOT_INITIALIZED;
	else if (!args_ok)
		r = INVALID_VALUE;
	else if (get_state(pid, &s) != 0)
		r = INVALID_VALUE;
	else if ((r = injected(op)) != 0)
		;
	else if (s != from)
		r = ILLEGAL_STATE;
	else
		set_state(pid, to);
	log_call(op, pid, s, extra, r);
	return r;
}

int cuInit(unsigned int flags)
{
	if (flags)
		return INVALID_VALUE;
	initialized = 1;
	return SUCCESS;
}

int cuDriverGetVersion(int *v)
{
	if (!v)
		return INVALID_VALUE;
	*v = FAKE_VERSION;
	return SUCCESS;
}

int cuGetErrorName(int code, const char **name)
{
	switch (code) {
	case SUCCESS: *name = "CUDA_SUCCESS"; return SUCCESS;
	case INVALID_VALUE: *name = "CUDA_ERROR_INVALID_VALUE"; return SUCCESS;
	case NOT_INITIALIZED: *name = "CUDA_ERROR_NOT_INITIALIZED"; return SUCCESS;
	case ILLEGAL_STATE: *name = "CUDA_ERROR_ILLEGAL_STATE"; return SUCCESS;
	case 2: *name = "CUDA_ERROR_OUT_OF_MEMORY"; return SUCCESS;
	case 909: *name = "CUDA_ERROR_TIMEOUT"; return SUCCESS;
	default: return INVALID_VALUE;
	}
}

#ifndef FAKE_NO_CHECKPOINT
int cuCheckpointProcessGetState(int pid, int *state)
{
	int s = -1;
	int r = !initialized ? NOT_INITIALIZED : get_state(pid, &s) ? INVALID_VALUE : SUCCESS;
	if (r == SUCCESS)
		*state = s;
	log_call("get-state", pid, s, "", r);
	return r;
}

int cuCheckpointProcessLock(int pid, struct lock_args *a)
{
	char extra[64];
	snprintf(extra, sizeof extra, "timeout=%u", a ? a->timeout_ms : 0);
	int ok = !a || (a->reserved0 == 0 && zero(a->reserved1, sizeof a->reserved1));
	return step("lock", pid, RUNNING, LOCKED, ok, extra);
}

int cuCheckpointProcessCheckpoint(int pid, struct plain_args *a)
{
	return step("checkpoint", pid, LOCKED, CHECKPOINTED, !a || zero(a, sizeof *a), "");
}

int cuCheckpointProcessRestore(int pid, struct restore_args *a)
{
	char extra[512] = "pairs=";
	size_t at = strlen(extra);
	unsigned int count = a ? a->count : 0;
	for (unsigned int i = 0; a && a->pairs && i < count && at + 70 < sizeof extra; i++) {
		for (int k = 0; k < 2; k++) {
			const struct uuid *u = k ? &a->pairs[i].new_uuid : &a->pairs[i].old_uuid;
			for (int j = 0; j < 16; j++)
				at += (size_t)snprintf(extra + at, sizeof extra - at, "%02x", u->bytes[j]);
			extra[at++] = k ? ',' : '>';
		}
	}
	extra[at] = 0;
	int ok = !a || (zero(a->reserved, sizeof a->reserved) && a->reserved1 == 0 &&
			(count == 0) == (a->pairs == NULL));
	return step("restore", pid, CHECKPOINTED, LOCKED, ok, extra);
}

int cuCheckpointProcessUnlock(int pid, struct plain_args *a)
{
	return step("unlock", pid, LOCKED, RUNNING, !a || zero(a, sizeof *a), "");
}

int cuCheckpointProcessGetRestoreThreadId(int pid, int *tid)
{
	int s;
	if (!initialized)
		return NOT_INITIALIZED;
	if (get_state(pid, &s) != 0)
		return INVALID_VALUE;
	*tid = pid;
	return SUCCESS;
}
#endif
