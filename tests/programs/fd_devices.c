/* Character devices and the standard fds: /dev/null (fd 10, O_RDWR),
 * /dev/zero (fd 11), /dev/urandom (fd 12); stdin /dev/null, stdout and
 * stderr WORKDIR/out.log with O_APPEND. After restore each is the same
 * device/inode with the same flags and behaves as such. */
#define _GNU_SOURCE
#include <sys/sysmacros.h>

#include "common.h"

static void want_rdev(int fd, const char *dev)
{
	struct stat a, b;

	CHECK(fstat(fd, &a) == 0, "fstat fd %d: %s", fd, strerror(errno));
	CHECK_SYS(stat(dev, &b));
	CHECK(S_ISCHR(a.st_mode) && a.st_rdev == b.st_rdev, "fd %d is dev %u:%u, want %s (%u:%u)", fd,
	      major(a.st_rdev), minor(a.st_rdev), dev, major(b.st_rdev), minor(b.st_rdev));
}

static void open_at(const char *dev, int flags, int num)
{
	int fd = open(dev, flags);

	CHECK(fd >= 0 && dup2(fd, num) == num, "open %s: %s", dev, strerror(errno));
	close(fd);
}

int main(int argc, char **argv)
{
	static unsigned char buf[4096], buf2[64];
	char log[4096];
	int fl[13], i;
	struct stat lst, st;

	setup(argc, argv);
	open_at("/dev/null", O_RDWR, 10);
	open_at("/dev/zero", O_RDONLY, 11);
	open_at("/dev/urandom", O_RDONLY | O_NONBLOCK, 12);
	for (i = 0; i < 13; i++)
		fl[i] = fcntl(i, F_GETFL);

	signal_ready();
	wait_go();

	for (i = 0; i < 13; i++)
		if (i <= 2 || i >= 10)
			CHECK(fcntl(i, F_GETFL) == fl[i], "fd %d F_GETFL 0%o, want 0%o", i, fcntl(i, F_GETFL), fl[i]);
	want_rdev(0, "/dev/null");
	want_rdev(10, "/dev/null");
	want_rdev(11, "/dev/zero");
	want_rdev(12, "/dev/urandom");
	CHECK(write(10, buf, sizeof(buf)) == (ssize_t)sizeof(buf), "write /dev/null");
	CHECK(read(10, buf, sizeof(buf)) == 0, "read /dev/null is not EOF");
	CHECK(read(0, buf, sizeof(buf)) == 0, "read stdin is not EOF");
	memset(buf, 0xff, sizeof(buf));
	CHECK(read(11, buf, sizeof(buf)) == (ssize_t)sizeof(buf), "read /dev/zero");
	CHECK(check_zero(buf, sizeof(buf)) < 0, "/dev/zero gave non-zero bytes");
	CHECK(read(12, buf, 64) == 64 && read(12, buf2, 64) == 64, "read /dev/urandom");
	CHECK(memcmp(buf, buf2, 64) != 0 && check_zero(buf, 64) >= 0, "/dev/urandom gave the same/zero bytes");

	path_in(log, sizeof(log), "out.log");
	CHECK_SYS(stat(log, &lst));
	for (i = 1; i <= 2; i++) {
		CHECK_SYS(fstat(i, &st));
		CHECK(st.st_ino == lst.st_ino && st.st_dev == lst.st_dev, "fd %d is not %s after restore", i, log);
		CHECK(fcntl(i, F_GETFL) & O_APPEND, "fd %d lost O_APPEND", i);
	}
	{
		off_t before = lst.st_size;
		CHECK_SYS(lseek(1, 0, SEEK_SET));
		CHECK(write(1, "stdout-line\n", 12) == 12, "write stdout");
		CHECK_SYS(stat(log, &lst));
		CHECK(lst.st_size == before + 12, "stdout did not append (size %lld -> %lld)", (long long)before,
		      (long long)lst.st_size);
	}
	pass();
}
