/* Pipes with unread data, both ends held by the process: pipe A (default
 * size, read end O_NONBLOCK) holds 10 KiB, pipe B (F_SETPIPE_SZ 256 KiB)
 * holds 100 KiB, more than a default pipe can. After restore the data
 * reads back exactly, then A's read end says EAGAIN, the pipe sizes are
 * the same, and the write ends still feed the read ends. */
#define _GNU_SOURCE
#include "common.h"

#define A_LEN (10 * 1024)
#define B_LEN (100 * 1024)

int main(int argc, char **argv)
{
	static unsigned char a_data[A_LEN], b_data[B_LEN], buf[B_LEN + 1];
	int a[2], b[2], a_sz, b_sz, fl;
	ssize_t n;

	setup(argc, argv);
	fill_pattern(a_data, A_LEN, 10);
	fill_pattern(b_data, B_LEN, 11);
	CHECK_SYS(pipe(a));
	CHECK_SYS(pipe(b));
	CHECK_SYS(fcntl(a[0], F_SETFL, O_NONBLOCK));
	CHECK(fcntl(b[0], F_SETPIPE_SZ, 256 * 1024) >= 256 * 1024, "F_SETPIPE_SZ: %s", strerror(errno));
	CHECK(write_all(a[1], a_data, A_LEN) == 0, "write pipe A");
	CHECK(write_all(b[1], b_data, B_LEN) == 0, "write pipe B");
	a_sz = fcntl(a[0], F_GETPIPE_SZ);
	b_sz = fcntl(b[0], F_GETPIPE_SZ);
	logmsg("pipe A fds %d,%d size %d; pipe B fds %d,%d size %d", a[0], a[1], a_sz, b[0], b[1], b_sz);

	signal_ready();
	wait_go();

	CHECK(fcntl(a[0], F_GETPIPE_SZ) == a_sz, "pipe A size %d, want %d", fcntl(a[0], F_GETPIPE_SZ), a_sz);
	CHECK(fcntl(b[0], F_GETPIPE_SZ) == b_sz, "pipe B size %d, want %d", fcntl(b[0], F_GETPIPE_SZ), b_sz);
	fl = fcntl(a[0], F_GETFL);
	CHECK((fl & O_NONBLOCK) && (fl & O_ACCMODE) == O_RDONLY, "pipe A read end flags 0%o", fl);
	CHECK((fcntl(a[1], F_GETFL) & O_ACCMODE) == O_WRONLY, "pipe A write end is not O_WRONLY");
	CHECK(!(fcntl(b[0], F_GETFL) & O_NONBLOCK), "pipe B read end became O_NONBLOCK");
	n = read_full(a[0], buf, A_LEN);
	CHECK(n == A_LEN, "pipe A gave %zd bytes, want %d", n, A_LEN);
	CHECK(memcmp(buf, a_data, A_LEN) == 0, "pipe A data differs");
	n = read(a[0], buf, 1);
	CHECK(n == -1 && errno == EAGAIN, "pipe A has more data, or is not non-blocking (read %zd)", n);
	n = read_full(b[0], buf, B_LEN);
	CHECK(n == B_LEN, "pipe B gave %zd bytes, want %d", n, B_LEN);
	CHECK(memcmp(buf, b_data, B_LEN) == 0, "pipe B data differs");
	CHECK(write(a[1], "x", 1) == 1 && read(a[0], buf, 2) == 1 && buf[0] == 'x', "pipe A no longer connected");
	CHECK(write(b[1], "yz", 2) == 2 && read(b[0], buf, 3) == 2 && buf[1] == 'z', "pipe B no longer connected");
	pass();
}
