/* A thread inside a 3 s nanosleep, retried on EINTR with the remaining time
 * as libraries do. Checkpointed inside the sleep; after restore the sleep
 * must complete and the total elapsed CLOCK_MONOTONIC time be >= 3 s. No
 * trigger: the result is written when the sleep is over. */
#define _GNU_SOURCE
#include "common.h"

int main(int argc, char **argv)
{
	struct timespec ts = { 3, 0 };
	double t0, t1;
	int eintr = 0;

	setup(argc, argv);
	t0 = now_mono();
	signal_ready();
	while (nanosleep(&ts, &ts) == -1) {
		CHECK(errno == EINTR, "nanosleep: %s", strerror(errno));
		CHECK(ts.tv_sec >= 0 && ts.tv_sec <= 3 && ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L,
		      "nanosleep left a bad remaining time %ld.%09ld", (long)ts.tv_sec, ts.tv_nsec);
		eintr++;
	}
	t1 = now_mono();
	logmsg("slept %.3f s, %d EINTR", t1 - t0, eintr);
	CHECK(t1 - t0 >= 3.0, "slept only %.3f s of 3 s", t1 - t0);
	pass();
}
