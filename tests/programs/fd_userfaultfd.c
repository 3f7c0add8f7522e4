/* A process holding a userfaultfd (fd 42), which snaprun cannot restore.
 * Checkpoint must refuse it naming "fd 42" and "userfaultfd" and leave the
 * process running; on go it checks the fd is still its userfaultfd. */
#define _GNU_SOURCE
#include <sys/syscall.h>

#include "common.h"

int main(int argc, char **argv)
{
	char link[256];
	ssize_t n;
	int fd;

	setup(argc, argv);
	fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	CHECK(fd >= 0, "userfaultfd: %s", strerror(errno));
	CHECK(dup2(fd, 42) == 42, "dup2");
	close(fd);

	signal_ready();
	wait_go();

	n = readlink("/proc/self/fd/42", link, sizeof(link) - 1);
	CHECK(n > 0, "fd 42 is gone");
	link[n] = 0;
	CHECK(strcmp(link, "anon_inode:[userfaultfd]") == 0, "fd 42 is %s", link);
	pass();
}
