/* A process holding file locks: an flock on fd 42 and a POSIX (fcntl)
 * record lock on fd 43, both on files in the work dir. snaprun cannot
 * restore locks yet, so checkpoint must refuse, naming the fd and "file
 * lock", and leave the process running; on go it checks that both locks
 * are still held (another open file description cannot take them). */
#define _GNU_SOURCE
#include <sys/file.h>

#include "common.h"

static int open_in(const char *name)
{
	char path[4096];
	int fd;

	path_in(path, sizeof(path), name);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	return fd;
}

int main(int argc, char **argv)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100 };
	pid_t child;
	int fd, status;

	setup(argc, argv);
	fd = open_in("flocked");
	CHECK(dup2(fd, 42) == 42, "dup2 42");
	close(fd);
	CHECK_SYS(flock(42, LOCK_EX));
	fd = open_in("posix-locked");
	CHECK(dup2(fd, 43) == 43, "dup2 43");
	close(fd);
	CHECK_SYS(fcntl(43, F_SETLK, &fl));

	signal_ready();
	wait_go();

	/* The flock: a second open file description must not get it. */
	fd = open_in("flocked");
	CHECK(flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK, "the flock on fd 42 is gone");
	close(fd);
	/* The POSIX lock belongs to this process: a child must see it. */
	child = fork();
	CHECK_SYS(child);
	if (child == 0) {
		struct flock probe = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100 };

		fd = open_in("posix-locked");
		_exit(fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type == F_WRLCK && probe.l_pid == getppid() ? 0 : 1);
	}
	CHECK_SYS(waitpid(child, &status, 0));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the POSIX lock on fd 43 is gone");
	pass();
}
