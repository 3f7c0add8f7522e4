/* fork after a lazy restore: 32 MiB of a pattern, still missing when the
 * process forks (the test holds the pager's streaming back). The child
 * verifies every byte, overwrites its copy and forks a grandchild that
 * verifies the second half as the child left it; the parent then checks
 * that its own memory is the pattern still (copy on write), with the
 * child's and grandchild's exit codes. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/wait.h>

#include "common.h"

#define SIZE (32UL << 20)

static int wait_ok(pid_t pid, const char *who)
{
	int st;

	if (waitpid(pid, &st, 0) != pid) {
		logmsg("waitpid %s: %s", who, strerror(errno));
		return 0;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		logmsg("%s ended with status 0x%x", who, st);
		return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	unsigned char *m;
	pid_t child;
	long bad;

	setup(argc, argv);
	m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
	fill_pattern(m, SIZE, 21);

	signal_ready();
	wait_go();

	/* Nothing of m touched since the restore: every page is missing. */
	child = fork();
	CHECK_SYS(child);
	if (child == 0) {
		pid_t grandchild;

		bad = check_pattern(m, SIZE, 21);
		if (bad >= 0) {
			logmsg("child: byte %ld differs", bad);
			_exit(2);
		}
		fill_pattern(m + SIZE / 2, SIZE / 2, 22);
		grandchild = fork();
		if (grandchild < 0)
			_exit(3);
		if (grandchild == 0) {
			bad = check_pattern(m + SIZE / 2, SIZE / 2, 22);
			if (bad >= 0) {
				logmsg("grandchild: byte %ld differs", bad);
				_exit(4);
			}
			_exit(0);
		}
		_exit(wait_ok(grandchild, "grandchild") ? 0 : 5);
	}
	CHECK(wait_ok(child, "child"), "the child failed (see out.log)");
	bad = check_pattern(m, SIZE, 21);
	CHECK(bad < 0, "parent: byte %ld differs after the fork", bad);
	pass();
}
