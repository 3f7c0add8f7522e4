/* A thread blocked in pause(). The harness checkpoints it there, restores,
 * waits until it is in pause() again and sends SIGUSR1. pause() must return
 * -1/EINTR only after the handler ran (a restore that made pause() return
 * early, or lost the handler, fails). */
#define _GNU_SOURCE
#include <signal.h>

#include "common.h"

static volatile sig_atomic_t got;

static void on_usr1(int sig)
{
	(void)sig;
	got++;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	int r, e;

	setup(argc, argv);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
	signal_ready();

	r = pause();
	e = errno;
	CHECK(r == -1 && e == EINTR, "pause returned %d errno %d (%s), want -1 EINTR", r, e, strerror(e));
	CHECK(got == 1, "pause returned but the SIGUSR1 handler ran %d times", (int)got);
	pass();
}
