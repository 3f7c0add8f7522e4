/* Unix sockets of a process in its own network namespace (as in a
 * container): a stream socketpair with bytes queued both ways. The
 * checkpoint must read them through that namespace (sock_diag is per
 * namespace); after restore the bytes are there and the pair still joins
 * its two ends. */
#define _GNU_SOURCE
#include <sched.h>
#include <sys/socket.h>

#include "common.h"

int main(int argc, char **argv)
{
	int sv[2];
	char buf[16];

	setup(argc, argv);
	CHECK_SYS(unshare(CLONE_NEWNET));
	CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	CHECK_SYS(write_all(sv[0], "to-one", 6));
	CHECK_SYS(write_all(sv[1], "to-zero", 7));

	signal_ready();
	wait_go();

	CHECK(read_full(sv[1], buf, 6) == 6 && memcmp(buf, "to-one", 6) == 0, "sv[1] read %.6s", buf);
	CHECK(read_full(sv[0], buf, 7) == 7 && memcmp(buf, "to-zero", 7) == 0, "sv[0] read %.7s", buf);
	CHECK_SYS(write_all(sv[0], "again", 5));
	CHECK(read_full(sv[1], buf, 5) == 5 && memcmp(buf, "again", 5) == 0, "after restore: %.5s", buf);
	pass();
}
