/* epoll instances across checkpoint/restore. The program waits in
 * epoll_wait on epoll 35, which watches epoll 34, until SIGUSR1 (no
 * SA_RESTART) interrupts it. Epoll 34 watches:
 *   fd 30 (pipe read end)   EPOLLIN             data 0x1111
 *   fd 32 (eventfd)         EPOLLIN|EPOLLET     data 0x2222
 *   fd 33 (timerfd)         EPOLLIN|EPOLLONESHOT data 0x3333
 *   fd 40 (an eventfd, closed after registration; fd 41 still holds it)
 *                           EPOLLIN             data 0x6666
 *   fd 42 (an eventfd, now held only by fd 43; fd 42 is /dev/null now)
 *                           EPOLLIN             data 0x7777
 * Epoll 36 watches fd 32 with EPOLLEXCLUSIVE (0x8888), a pipe read end
 * (fd 37, holding data) with EPOLLONESHOT that already fired (0x9999), and
 * that pipe's write end (fd 38) for EPOLLOUT (0xaaaa).
 * After restore: nothing is ready in 34; 36 reports only 0xaaaa; then the
 * program makes every source of 34 ready and checks that each registration
 * reports with its data once, and that level, edge and one-shot behave as
 * such; the registration of closed fd 40 still shows under number 40.
 * With the argument "orphan", epoll 34 also watches an eventfd registered
 * as fd 44 that only a child process still holds: checkpoint must refuse
 * it; the program then runs its checks as the source. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

#include "common.h"

static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1 = 1;
}

static void add(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };

	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll_ctl(%d, ADD, %d): %s", ep, fd, strerror(errno));
}

static void at(int fd, int want)
{
	CHECK(fd >= 0, "creating fd %d: %s", want, strerror(errno));
	if (fd != want) {
		int cloexec = fcntl(fd, F_GETFD) & FD_CLOEXEC ? O_CLOEXEC : 0;
		CHECK(dup3(fd, want, cloexec) == want, "dup3 %d", want);
		close(fd);
	}
}

/* Waits up to ms for events on ep; returns a bit per data value seen
 * (bit n for data 0x1111 * n). */
static unsigned collect(int ep, int ms)
{
	struct epoll_event ev[16];
	unsigned seen = 0;
	int n, i;

	n = epoll_wait(ep, ev, 16, ms);
	CHECK(n >= 0, "epoll_wait(%d): %s", ep, strerror(errno));
	for (i = 0; i < n; i++) {
		uint64_t d = ev[i].data.u64;
		CHECK(d % 0x1111 == 0 && d / 0x1111 >= 1 && d / 0x1111 <= 10, "epoll %d: unknown data %llx", ep,
		      (unsigned long long)d);
		seen |= 1u << (d / 0x1111);
	}
	return seen;
}

#define BIT(n) (1u << (n))

int main(int argc, char **argv)
{
	struct sigaction sa;
	struct itimerspec its = { { 0, 0 }, { 0, 20000000 } };
	struct epoll_event ev;
	uint64_t one = 1;
	int p[2], q[2], fd, n;
	unsigned seen, all;
	char buf[8192];
	double t0;
	pid_t child = 0;

	setup(argc, argv);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));

	CHECK_SYS(pipe(p));
	at(p[0], 30);
	at(p[1], 31);
	at(eventfd(0, EFD_NONBLOCK), 32);
	at(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), 33);
	at(epoll_create1(0), 34);
	at(epoll_create1(EPOLL_CLOEXEC), 35);
	at(epoll_create1(0), 36);
	CHECK_SYS(pipe(q));
	at(q[0], 37);
	at(q[1], 38);
	at(eventfd(0, EFD_NONBLOCK), 40);
	CHECK(dup2(40, 41) == 41, "dup2 41");
	at(eventfd(0, EFD_NONBLOCK), 42);
	CHECK(dup2(42, 43) == 43, "dup2 43");

	add(34, 30, EPOLLIN, 0x1111);
	add(34, 32, EPOLLIN | EPOLLET, 0x2222);
	add(34, 33, EPOLLIN | EPOLLONESHOT, 0x3333);
	add(34, 40, EPOLLIN, 0x6666);
	add(34, 42, EPOLLIN, 0x7777);
	add(35, 34, EPOLLIN, 0x5555);
	add(36, 32, EPOLLIN | EPOLLEXCLUSIVE, 0x8888);
	add(36, 37, EPOLLIN | EPOLLONESHOT, 0x9999);
	add(36, 38, EPOLLOUT, 0xaaaa);
	if (argc > 2 && strcmp(argv[2], "orphan") == 0) {
		at(eventfd(0, 0), 44);
		child = fork();
		CHECK(child >= 0, "fork: %s", strerror(errno));
		if (child == 0) {
			for (;;)
				pause();
		}
		add(34, 44, EPOLLIN, 0x4444);
		close(44);
	}
	close(40);
	fd = open("/dev/null", O_RDONLY);
	at(fd, 42);
	/* Fire the one-shot on 37 so that it is disarmed. */
	CHECK(write(38, "q", 1) == 1, "write 38");
	seen = collect(36, 1000);
	CHECK(seen == (BIT(9) | BIT(10)), "epoll 36 before checkpoint: %x", seen);

	signal_ready();
	while (!got_usr1) {
		n = epoll_wait(35, &ev, 1, -1);
		CHECK(n < 0 && errno == EINTR, "epoll_wait(35) returned %d (%s) before SIGUSR1", n, strerror(errno));
	}
	logmsg("SIGUSR1");
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}

	CHECK(fcntl(35, F_GETFD) == FD_CLOEXEC && fcntl(34, F_GETFD) == 0, "epoll FD_CLOEXEC not per fd");
	CHECK(read_file("/proc/self/fdinfo/34", buf, sizeof(buf)) > 0, "fdinfo 34");
	CHECK(strstr(buf, "tfd:       40 events:       19 data:             6666"),
	      "closed fd 40's registration lost its number:\n%s", buf);
	CHECK(read_file("/proc/self/fdinfo/36", buf, sizeof(buf)) > 0, "fdinfo 36");
	CHECK(strstr(buf, "tfd:       32 events: 10000019 data:             8888"), "EPOLLEXCLUSIVE lost:\n%s", buf);
	seen = collect(34, 0);
	CHECK(seen == 0, "epoll 34 reports %x with nothing ready", seen);
	seen = collect(35, 0);
	CHECK(seen == 0, "epoll 35 reports %x with nothing ready", seen);
	seen = collect(36, 0);
	CHECK(seen == BIT(10), "epoll 36 reports %x, want only 0xaaaa (the one-shot fired already)", seen);

	/* Make every source of 34 ready. */
	CHECK(write(31, "x", 1) == 1, "write pipe");
	CHECK(write(32, &one, 8) == 8, "write eventfd 32");
	CHECK(write(41, &one, 8) == 8, "write eventfd 41");
	CHECK(write(43, &one, 8) == 8, "write eventfd 43");
	CHECK_SYS(timerfd_settime(33, 0, &its, NULL));
	seen = collect(35, 1000);
	CHECK(seen == BIT(5), "epoll 35 reports %x, want 0x5555", seen);
	all = BIT(1) | BIT(2) | BIT(3) | BIT(6) | BIT(7);
	seen = 0;
	for (t0 = now_mono(); now_mono() - t0 < 2 && (seen & all) != all;) {
		struct timespec ts = { 0, 2000000 };
		unsigned now = collect(34, 50);
		CHECK(!(now & seen & (BIT(2) | BIT(3))), "edge/one-shot registration reported twice (%x)", now);
		seen |= now;
		nanosleep(&ts, NULL);
	}
	CHECK(seen == all, "epoll 34 reported %x, want %x", seen, all);
	seen = collect(34, 50);
	CHECK(seen == (BIT(1) | BIT(6) | BIT(7)), "epoll 34 then reports %x, want the level-triggered 0x1111, 0x6666, 0x7777", seen);
	seen = collect(36, 0);
	CHECK(seen == (BIT(8) | BIT(10)), "epoll 36 reports %x, want 0x8888 and 0xaaaa", seen);
	pass();
}
