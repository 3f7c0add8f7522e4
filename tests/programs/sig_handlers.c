/* Signal dispositions: handlers with various sa_flags and sa_mask sets, some
 * SIG_IGN, the rest default. After restore sigaction(sig, NULL, &old)
 * returns the same handler, flags (SA_RESTORER masked out) and mask for
 * every signal 1..64, and the handlers run with their masks and flags. */
#define _GNU_SOURCE
#include <signal.h>

#include "common.h"

#define NSIG_CHECK 64
#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

static volatile sig_atomic_t h1_count, h2_count, h3_count;
static volatile int h1_signo, h1_code, h1_mask_ok;

static void h1(int sig, siginfo_t *si, void *uc)
{
	sigset_t cur;

	(void)uc;
	h1_count++;
	h1_signo = si->si_signo;
	h1_code = si->si_code;
	sigprocmask(SIG_SETMASK, NULL, &cur);
	h1_mask_ok = sigismember(&cur, SIGUSR2) && sigismember(&cur, SIGTERM) && sigismember(&cur, sig);
}

static void h2(int sig)
{
	(void)sig;
	h2_count++;
}

static void h3(int sig)
{
	(void)sig;
	h3_count++;
}

static struct sigaction saved[NSIG_CHECK + 1];
static int saved_rc[NSIG_CHECK + 1];

static void set(int sig, void *handler, int flags, const int *mask_sigs, int full_mask)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	if (flags & SA_SIGINFO)
		sa.sa_sigaction = handler;
	else
		sa.sa_handler = handler;
	sa.sa_flags = flags;
	if (full_mask)
		sigfillset(&sa.sa_mask);
	else
		sigemptyset(&sa.sa_mask);
	for (; mask_sigs && *mask_sigs; mask_sigs++)
		sigaddset(&sa.sa_mask, *mask_sigs);
	CHECK(sigaction(sig, &sa, NULL) == 0, "sigaction(%d): %s", sig, strerror(errno));
}

static void snapshot_all(struct sigaction *out, int *rc)
{
	int s;

	for (s = 1; s <= NSIG_CHECK; s++) {
		memset(&out[s], 0, sizeof(out[s]));
		rc[s] = sigaction(s, NULL, &out[s]);
	}
}

static void compare_all(const char *when)
{
	static struct sigaction now[NSIG_CHECK + 1];
	static int now_rc[NSIG_CHECK + 1];
	int s, m;

	snapshot_all(now, now_rc);
	for (s = 1; s <= NSIG_CHECK; s++) {
		CHECK(now_rc[s] == saved_rc[s], "%s: sigaction(%d) returned %d, was %d", when, s, now_rc[s],
		      saved_rc[s]);
		if (now_rc[s] != 0)
			continue;
		CHECK(now[s].sa_handler == saved[s].sa_handler, "%s: signal %d handler %p, want %p", when, s,
		      (void *)now[s].sa_handler, (void *)saved[s].sa_handler);
		CHECK((now[s].sa_flags & ~SA_RESTORER) == (saved[s].sa_flags & ~SA_RESTORER),
		      "%s: signal %d flags 0x%x, want 0x%x", when, s, now[s].sa_flags & ~SA_RESTORER,
		      saved[s].sa_flags & ~SA_RESTORER);
		for (m = 1; m <= NSIG_CHECK; m++)
			CHECK(sigismember(&now[s].sa_mask, m) == sigismember(&saved[s].sa_mask, m),
			      "%s: signal %d mask: signal %d is %s, was %s", when, s, m,
			      sigismember(&now[s].sa_mask, m) ? "in" : "out",
			      sigismember(&saved[s].sa_mask, m) ? "in" : "out");
	}
}

int main(int argc, char **argv)
{
	static const int m_usr1[] = { SIGUSR2, SIGTERM, 0 };
	static const int m_usr2[] = { SIGHUP, 0 };
	int m_rt[] = { SIGRTMIN, SIGRTMAX, SIGQUIT, 0 };
	struct sigaction cur;
	stack_t ss;

	setup(argc, argv);
	/* an alternate stack so SA_ONSTACK handlers have one */
	ss.ss_sp = malloc(65536);
	ss.ss_size = 65536;
	ss.ss_flags = 0;
	CHECK_SYS(sigaltstack(&ss, NULL));

	set(SIGUSR1, h1, SA_RESTART | SA_SIGINFO, m_usr1, 0);
	set(SIGUSR2, h2, SA_ONSTACK | SA_NODEFER, m_usr2, 0);
	set(SIGHUP, h3, SA_RESETHAND, NULL, 0);
	set(SIGALRM, h3, 0, NULL, 1);
	set(SIGCHLD, h2, SA_NOCLDSTOP | SA_RESTART, NULL, 0);
	set(SIGRTMIN + 3, h1, SA_SIGINFO | SA_ONSTACK, m_rt, 0);
	set(SIGRTMAX - 1, h2, SA_NODEFER | SA_RESETHAND | SA_RESTART, NULL, 0);
	set(SIGWINCH, h3, SA_ONSTACK | SA_RESTART | SA_NODEFER, m_usr1, 0);
	set(SIGPIPE, SIG_IGN, 0, NULL, 0);
	set(SIGINT, SIG_IGN, 0, NULL, 0);
	set(SIGRTMIN + 7, SIG_IGN, 0, NULL, 0);
	set(SIGTSTP, SIG_DFL, SA_RESTART, m_usr2, 0);
	snapshot_all(saved, saved_rc);

	signal_ready();
	wait_go();

	compare_all("after restore");
	/* the handlers run, with their masks and flags */
	CHECK_SYS(raise(SIGUSR1));
	CHECK(h1_count == 1, "SIGUSR1 handler ran %d times", (int)h1_count);
	CHECK(h1_signo == SIGUSR1 && h1_code <= 0, "SIGUSR1 siginfo signo %d code %d", h1_signo, h1_code);
	CHECK(h1_mask_ok, "SIGUSR1 handler ran without its sa_mask (SIGUSR2, SIGTERM, SIGUSR1) blocked");
	CHECK_SYS(raise(SIGUSR2));
	CHECK(h2_count == 1, "SIGUSR2 handler ran %d times", (int)h2_count);
	CHECK_SYS(raise(SIGPIPE));
	CHECK_SYS(raise(SIGHUP));
	CHECK(h3_count == 1, "SIGHUP handler ran %d times", (int)h3_count);
	CHECK_SYS(sigaction(SIGHUP, NULL, &cur));
	CHECK(cur.sa_handler == SIG_DFL, "SA_RESETHAND did not reset SIGHUP");
	pass();
}
