/* Duplicated fds share one open file description: fd 10 (opened, offset
 * 100), 11 = dup(10), 20 = dup2(10, 20), 30 = F_DUPFD_CLOEXEC, and fd 12
 * opened separately (own offset). FD_CLOEXEC is per fd: set on 10 and 30.
 * After restore reading through 10 moves the offset of 11, 20 and 30 but
 * not 12, and each fd's FD_CLOEXEC is as it was. */
#define _GNU_SOURCE
#include "common.h"

int main(int argc, char **argv)
{
	static unsigned char data[8192], buf[64];
	static const int fds[] = { 10, 11, 12, 20, 30 };
	static const int cloexec[] = { 1, 0, 0, 0, 1 };
	char path[4096];
	int fd, i;

	setup(argc, argv);
	fill_pattern(data, sizeof(data), 66);
	path_in(path, sizeof(path), "shared.bin");
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && write_all(fd, data, sizeof(data)) == 0, "writing %s", path);
	CHECK(dup2(fd, 10) == 10, "dup2");
	close(fd);
	CHECK_SYS(lseek(10, 100, SEEK_SET));
	CHECK(dup2(10, 11) == 11, "dup2 11");
	CHECK(dup2(10, 20) == 20, "dup2 20");
	CHECK(fcntl(10, F_DUPFD_CLOEXEC, 30) == 30, "F_DUPFD_CLOEXEC did not give 30");
	CHECK_SYS(fcntl(10, F_SETFD, FD_CLOEXEC));
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0 && dup2(fd, 12) == 12, "open 12");
	close(fd);
	CHECK_SYS(lseek(12, 7, SEEK_SET));

	signal_ready();
	wait_go();

	for (i = 0; i < 5; i++) {
		int f = fcntl(fds[i], F_GETFD);
		CHECK(f >= 0, "fd %d not open after restore", fds[i]);
		CHECK(!!(f & FD_CLOEXEC) == cloexec[i], "fd %d FD_CLOEXEC is %d, want %d", fds[i], !!(f & FD_CLOEXEC),
		      cloexec[i]);
	}
	for (i = 0; i < 5; i++) {
		off_t want = fds[i] == 12 ? 7 : 100;
		CHECK(lseek(fds[i], 0, SEEK_CUR) == want, "fd %d offset %lld, want %lld", fds[i],
		      (long long)lseek(fds[i], 0, SEEK_CUR), (long long)want);
	}
	CHECK(read(10, buf, 50) == 50 && memcmp(buf, data + 100, 50) == 0, "read fd 10");
	for (i = 0; i < 5; i++) {
		off_t want = fds[i] == 12 ? 7 : 150;
		CHECK(lseek(fds[i], 0, SEEK_CUR) == want,
		      "after reading 50 bytes through fd 10, fd %d offset is %lld, want %lld (shared description "
		      "lost?)",
		      fds[i], (long long)lseek(fds[i], 0, SEEK_CUR), (long long)want);
	}
	CHECK(read(30, buf, 10) == 10 && memcmp(buf, data + 150, 10) == 0, "read fd 30");
	CHECK(lseek(11, 0, SEEK_CUR) == 160, "fd 11 did not follow a read through fd 30");
	CHECK(read(12, buf, 10) == 10 && memcmp(buf, data + 7, 10) == 0, "read fd 12");
	CHECK(lseek(10, 0, SEEK_CUR) == 160, "fd 10 moved by a read through fd 12");
	pass();
}
