/* Pending signals: SIGUSR1 (thread-directed, raise), SIGUSR2 (process-
 * directed, kill) and a real-time signal queued twice with sigqueue values,
 * all blocked. After restore sigpending shows exactly them (SigPnd/ShdPnd as
 * before) and sigwaitinfo returns them with their siginfo (RT values in
 * order). */
#define _GNU_SOURCE
#include <signal.h>

#include "common.h"

static int wait_one(const sigset_t *set, siginfo_t *si)
{
	struct timespec ts = { 0, 0 };

	memset(si, 0, sizeof(*si));
	return sigtimedwait(set, si, &ts);
}

int main(int argc, char **argv)
{
	sigset_t set, pend;
	siginfo_t si;
	union sigval v;
	char sigpnd0[64], shdpnd0[64], sigpnd1[64], shdpnd1[64];
	int rt = SIGRTMIN + 2, s, r, raise_code;
	pid_t me;
	sigset_t probe;

	setup(argc, argv);
	me = getpid();
	/* learn the si_code this kernel gives raise() (SI_TKILL, or SI_USER on some) */
	sigemptyset(&probe);
	sigaddset(&probe, SIGWINCH);
	CHECK_SYS(sigprocmask(SIG_BLOCK, &probe, NULL));
	CHECK_SYS(raise(SIGWINCH));
	CHECK(wait_one(&probe, &si) == SIGWINCH, "probe raise(SIGWINCH) not pending");
	raise_code = si.si_code;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, rt);
	CHECK_SYS(sigprocmask(SIG_BLOCK, &set, NULL));
	CHECK_SYS(raise(SIGUSR1));
	CHECK_SYS(kill(me, SIGUSR2));
	v.sival_int = 111;
	CHECK_SYS(sigqueue(me, rt, v));
	v.sival_int = 222;
	CHECK_SYS(sigqueue(me, rt, v));
	CHECK(status_field("SigPnd", sigpnd0, sizeof(sigpnd0)) == 0, "no SigPnd");
	CHECK(status_field("ShdPnd", shdpnd0, sizeof(shdpnd0)) == 0, "no ShdPnd");
	logmsg("SigPnd %s ShdPnd %s", sigpnd0, shdpnd0);

	signal_ready();
	wait_go();

	CHECK(status_field("SigPnd", sigpnd1, sizeof(sigpnd1)) == 0, "no SigPnd");
	CHECK(status_field("ShdPnd", shdpnd1, sizeof(shdpnd1)) == 0, "no ShdPnd");
	CHECK(strcmp(sigpnd0, sigpnd1) == 0, "SigPnd (thread) %s after restore, was %s", sigpnd1, sigpnd0);
	CHECK(strcmp(shdpnd0, shdpnd1) == 0, "ShdPnd (process) %s after restore, was %s", shdpnd1, shdpnd0);
	CHECK_SYS(sigpending(&pend));
	for (s = 1; s <= 64; s++)
		CHECK(sigismember(&pend, s) == sigismember(&set, s), "signal %d is %s after restore", s,
		      sigismember(&pend, s) ? "pending" : "not pending");

	r = wait_one(&set, &si);
	CHECK(r == SIGUSR1, "first sigtimedwait returned %d (%s), want SIGUSR1", r, r < 0 ? strerror(errno) : "");
	CHECK(si.si_code == raise_code && si.si_pid == me, "SIGUSR1 si_code %d si_pid %d, want %d from %d",
	      si.si_code, si.si_pid, raise_code, me);
	r = wait_one(&set, &si);
	CHECK(r == SIGUSR2, "second sigtimedwait returned %d, want SIGUSR2", r);
	CHECK(si.si_code == SI_USER && si.si_pid == me, "SIGUSR2 si_code %d si_pid %d, want SI_USER from %d",
	      si.si_code, si.si_pid, me);
	r = wait_one(&set, &si);
	CHECK(r == rt, "third sigtimedwait returned %d, want SIGRTMIN+2 (%d)", r, rt);
	CHECK(si.si_code == SI_QUEUE && si.si_value.sival_int == 111 && si.si_pid == me,
	      "first RT signal si_code %d value %d pid %d, want SI_QUEUE 111 %d", si.si_code,
	      si.si_value.sival_int, si.si_pid, me);
	r = wait_one(&set, &si);
	CHECK(r == rt, "fourth sigtimedwait returned %d, want SIGRTMIN+2 (%d)", r, rt);
	CHECK(si.si_code == SI_QUEUE && si.si_value.sival_int == 222, "second RT signal si_code %d value %d",
	      si.si_code, si.si_value.sival_int);
	r = wait_one(&set, &si);
	CHECK(r == -1 && errno == EAGAIN, "a fifth signal %d was pending", r);
	pass();
}
