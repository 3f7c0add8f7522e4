/* The blocked-signal mask: sigprocmask blocks a set of signals (standard
 * and real-time). After restore the mask is the same, /proc/self/status
 * SigBlk is the same, and a blocked signal raised stays pending. */
#define _GNU_SOURCE
#include <signal.h>

#include "common.h"

int main(int argc, char **argv)
{
	sigset_t set, now, pend;
	char blk0[64], blk1[64];
	int s;

	setup(argc, argv);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGWINCH);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGRTMIN + 5);
	sigaddset(&set, SIGRTMAX);
	CHECK_SYS(sigprocmask(SIG_SETMASK, &set, NULL));
	CHECK(status_field("SigBlk", blk0, sizeof(blk0)) == 0, "no SigBlk");

	signal_ready();
	wait_go();

	CHECK_SYS(sigprocmask(SIG_SETMASK, NULL, &now));
	for (s = 1; s <= 64; s++)
		CHECK(sigismember(&now, s) == sigismember(&set, s), "signal %d is %s after restore", s,
		      sigismember(&now, s) ? "blocked" : "not blocked");
	CHECK(status_field("SigBlk", blk1, sizeof(blk1)) == 0, "no SigBlk");
	CHECK(strcmp(blk0, blk1) == 0, "SigBlk %s after restore, was %s", blk1, blk0);
	CHECK_SYS(sigpending(&pend));
	for (s = 1; s <= 64; s++)
		CHECK(!sigismember(&pend, s), "signal %d pending after restore", s);
	CHECK_SYS(raise(SIGTERM));
	CHECK_SYS(sigpending(&pend));
	CHECK(sigismember(&pend, SIGTERM), "a blocked SIGTERM is not pending");
	pass();
}
