/* eventfds: a non-blocking semaphore one with count 3, and a plain one whose
 * counter (0x100000005) does not fit eventfd's 32-bit initial value. After
 * restore the counters, the semaphore mode and the flags are the same. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/eventfd.h>

#include "common.h"

int main(int argc, char **argv)
{
	int sem, big, fl_sem, fl_big, i;
	uint64_t v = 0x100000005ULL;

	setup(argc, argv);
	sem = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC);
	CHECK(sem >= 0, "eventfd: %s", strerror(errno));
	big = eventfd(0, 0);
	CHECK(big >= 0, "eventfd: %s", strerror(errno));
	CHECK(write(big, &v, 8) == 8, "write counter: %s", strerror(errno));
	fl_sem = fcntl(sem, F_GETFL);
	fl_big = fcntl(big, F_GETFL);

	signal_ready();
	wait_go();

	CHECK(fcntl(sem, F_GETFL) == fl_sem, "semaphore eventfd F_GETFL %o, was %o", fcntl(sem, F_GETFL), fl_sem);
	CHECK(fcntl(big, F_GETFL) == fl_big, "plain eventfd F_GETFL %o, was %o", fcntl(big, F_GETFL), fl_big);
	CHECK(fcntl(sem, F_GETFD) == FD_CLOEXEC, "semaphore eventfd lost FD_CLOEXEC");
	for (i = 0; i < 3; i++) {
		v = 0;
		CHECK(read(sem, &v, 8) == 8 && v == 1, "semaphore read %d gave %llu", i, (unsigned long long)v);
	}
	CHECK(read(sem, &v, 8) < 0 && errno == EAGAIN, "semaphore not empty after 3 reads (or blocking)");
	v = 0;
	CHECK(read(big, &v, 8) == 8 && v == 0x100000005ULL, "plain eventfd counter %llx", (unsigned long long)v);
	pass();
}
