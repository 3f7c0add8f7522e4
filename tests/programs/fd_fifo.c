/* A named FIFO (WORKDIR/fifo) holding 100 KiB of unread data in a 256 KiB
 * buffer, open three times: fd 60 read-only non-blocking, fd 61 write-only,
 * fd 62 read-write. After restore: the 100 KiB come out of fd 60 exactly
 * once (not once per description), the capacity and flags are as set, and
 * the FIFO still carries bytes from fd 61 to fd 60.
 * With the argument "shared", a child process holds the FIFO open too:
 * checkpoint must refuse it (the bytes would be both in the snapshot and
 * still in the kernel); on go the program checks the data is untouched. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/wait.h>

#include "common.h"

#define KB 1024

int main(int argc, char **argv)
{
	static char data[100 * KB], buf[200 * KB];
	size_t got;
	char path[4096];
	pid_t child = 0;
	ssize_t n;
	int fd;

	setup(argc, argv);
	path_in(path, sizeof(path), "fifo");
	CHECK_SYS(mkfifo(path, 0600));
	fd = open(path, O_RDONLY | O_NONBLOCK);
	CHECK(fd >= 0 && dup2(fd, 60) == 60, "open fifo for reading: %s", strerror(errno));
	close(fd);
	fd = open(path, O_WRONLY);
	CHECK(fd >= 0 && dup2(fd, 61) == 61, "open fifo for writing: %s", strerror(errno));
	close(fd);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0 && dup2(fd, 62) == 62, "open fifo read-write: %s", strerror(errno));
	close(fd);
	CHECK(fcntl(61, F_SETPIPE_SZ, 256 * KB) == 256 * KB, "F_SETPIPE_SZ: %s", strerror(errno));
	fill_pattern(data, sizeof(data), 7);
	CHECK(write(61, data, sizeof(data)) == sizeof(data), "write fifo: %s", strerror(errno));
	if (argc > 2 && strcmp(argv[2], "shared") == 0) {
		child = fork();
		CHECK(child >= 0, "fork: %s", strerror(errno));
		if (child == 0) {
			for (;;)
				pause();
		}
	}

	signal_ready();
	wait_go();

	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	CHECK(fcntl(60, F_GETPIPE_SZ) == 256 * KB, "capacity %d", fcntl(60, F_GETPIPE_SZ));
	CHECK(fcntl(60, F_GETFL) & O_NONBLOCK, "fd 60 lost O_NONBLOCK");
	CHECK((fcntl(61, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == O_WRONLY, "fd 61 flags %o", fcntl(61, F_GETFL));
	CHECK((fcntl(62, F_GETFL) & O_ACCMODE) == O_RDWR, "fd 62 not read-write");
	/* Drain fd 60 (non-blocking): exactly the 100 KiB, once. */
	got = 0;
	while ((n = read(60, buf + got, sizeof(buf) - got)) > 0)
		got += n;
	CHECK(n < 0 && errno == EAGAIN, "draining fd 60 ended with %zd (%s)", n, strerror(errno));
	CHECK(got == sizeof(data), "fd 60 gave %zu bytes, want %zu", got, sizeof(data));
	CHECK(memcmp(buf, data, sizeof(data)) == 0, "fifo data differs");
	CHECK(write(61, "ping", 4) == 4, "write fd 61: %s", strerror(errno));
	CHECK(read(60, buf, sizeof(buf)) == 4 && memcmp(buf, "ping", 4) == 0, "fd 61 -> fd 60 does not carry bytes");
	pass();
}
