/* timerfds on three clocks:
 *  fd 10: CLOCK_MONOTONIC, every 10 ms, non-blocking, close-on-exec; read
 *         once, then left unread for 150 ms, so ~15 periods are owed;
 *  fd 11: CLOCK_BOOTTIME, one-shot, 30 s from now (relative);
 *  fd 12: CLOCK_REALTIME, absolute (TFD_TIMER_ABSTIME|CANCEL_ON_SET),
 *         60 s from now;
 *  fd 13: CLOCK_MONOTONIC, one-shot of 1 ms that expired unread.
 * After restore: the periodic timer gives at least the 15 owed ticks and
 * keeps ticking; the relative one has at most its 30 s left and more than
 * 27 (the 4 s between checkpoint and restore do not count); the absolute
 * one expires at the same wall-clock time; the expired
 * one gives exactly one tick; clocks and settime flags show in fdinfo. */
#define _GNU_SOURCE
#include <poll.h>
#include <stdint.h>
#include <sys/timerfd.h>

#include "common.h"

static void fdinfo_has(int fd, const char *want)
{
	char path[64], buf[4096];

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	CHECK(read_file(path, buf, sizeof(buf)) > 0, "read %s", path);
	CHECK(strstr(buf, want) != NULL, "fd %d: fdinfo lacks \"%s\":\n%s", fd, want, buf);
}

static double secs(struct timespec t)
{
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int make(int clock, int flags, int fd)
{
	int t = timerfd_create(clock, flags);

	CHECK(t >= 0, "timerfd_create(%d): %s", clock, strerror(errno));
	CHECK(dup3(t, fd, flags & TFD_CLOEXEC) == fd, "dup3 %d", fd);
	close(t);
	return fd;
}

int main(int argc, char **argv)
{
	struct itimerspec its = { { 0, 10000000 }, { 0, 10000000 } }, cur;
	struct timespec now, sl = { 0, 150000000 };
	struct pollfd pfd;
	uint64_t ticks;
	double deadline, left;

	setup(argc, argv);
	make(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC, 10);
	CHECK_SYS(timerfd_settime(10, 0, &its, NULL));
	pfd.fd = 10;
	pfd.events = POLLIN;
	CHECK(poll(&pfd, 1, 1000) == 1, "periodic timer did not fire");
	CHECK(read(10, &ticks, 8) == 8, "read periodic");

	make(CLOCK_BOOTTIME, 0, 11);
	its = (struct itimerspec){ { 0, 0 }, { 30, 0 } };
	CHECK_SYS(timerfd_settime(11, 0, &its, NULL));

	make(CLOCK_REALTIME, 0, 12);
	clock_gettime(CLOCK_REALTIME, &now);
	its = (struct itimerspec){ { 0, 0 }, { now.tv_sec + 60, now.tv_nsec } };
	deadline = secs(its.it_value);
	CHECK_SYS(timerfd_settime(12, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL));

	make(CLOCK_MONOTONIC, TFD_NONBLOCK, 13);
	its = (struct itimerspec){ { 0, 0 }, { 0, 1000000 } };
	CHECK_SYS(timerfd_settime(13, 0, &its, NULL));

	nanosleep(&sl, NULL);
	signal_ready();
	wait_go();

	/* The periodic timer: the periods owed, then more. */
	CHECK(fcntl(10, F_GETFL) & O_NONBLOCK, "fd 10 lost O_NONBLOCK");
	CHECK(fcntl(10, F_GETFD) == FD_CLOEXEC, "fd 10 lost FD_CLOEXEC");
	CHECK(fcntl(11, F_GETFD) == 0, "fd 11 gained FD_CLOEXEC");
	CHECK_SYS(timerfd_gettime(10, &cur));
	CHECK(cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 10000000,
	      "periodic interval %ld.%09ld", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
	CHECK(read(10, &ticks, 8) == 8, "read periodic after restore: %s", strerror(errno));
	CHECK(ticks >= 15, "periodic timer owed >= 15 ticks, read %llu", (unsigned long long)ticks);
	CHECK(poll(&pfd, 1, 1000) == 1, "periodic timer stopped ticking after restore");
	CHECK(read(10, &ticks, 8) == 8 && ticks >= 1, "read periodic tick");
	fdinfo_has(10, "clockid: 1\n");

	/* The relative one-shot on CLOCK_BOOTTIME. */
	CHECK_SYS(timerfd_gettime(11, &cur));
	left = secs(cur.it_value);
	CHECK(left > 27 && left <= 30, "boottime timer has %.3f s left", left);
	CHECK(cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 0, "boottime timer became periodic");
	fdinfo_has(11, "clockid: 7\n");

	/* The absolute one keeps its wall-clock deadline. */
	CHECK_SYS(timerfd_gettime(12, &cur));
	clock_gettime(CLOCK_REALTIME, &now);
	left = secs(cur.it_value);
	CHECK(left > 0 && left - (deadline - secs(now)) < 0.5 && left - (deadline - secs(now)) > -0.5,
	      "absolute timer has %.3f s left, want %.3f", left, deadline - secs(now));
	fdinfo_has(12, "clockid: 0\n");
	fdinfo_has(12, "settime flags: 03\n");

	/* The expired one-shot: one tick, then nothing. */
	CHECK(read(13, &ticks, 8) == 8 && ticks == 1, "expired one-shot gave %llu ticks (%s)",
	      (unsigned long long)ticks, strerror(errno));
	CHECK(read(13, &ticks, 8) < 0 && errno == EAGAIN, "expired one-shot ticked again");
	pass();
}
