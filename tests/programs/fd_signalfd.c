/* signalfds: fd 20 accepts SIGUSR1 and SIGRTMIN+3 (non-blocking), fd 21
 * accepts SIGUSR2 (blocking, close-on-exec). The signals are blocked, and
 * SIGUSR1 (with a value sent by sigqueue) and SIGUSR2 are pending at
 * checkpoint. After restore: the masks show in fdinfo, SIGUSR1 is read from
 * fd 20 with its value, SIGUSR2 from fd 21, and fd 20 is empty after. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/signalfd.h>

#include "common.h"

int main(int argc, char **argv)
{
	struct signalfd_siginfo si;
	sigset_t m1, m2, all;
	union sigval val = { .sival_int = 4242 };
	char buf[4096];
	int fd;

	setup(argc, argv);
	sigemptyset(&m1);
	sigaddset(&m1, SIGUSR1);
	sigaddset(&m1, SIGRTMIN + 3);
	sigemptyset(&m2);
	sigaddset(&m2, SIGUSR2);
	sigemptyset(&all);
	sigaddset(&all, SIGUSR1);
	sigaddset(&all, SIGUSR2);
	sigaddset(&all, SIGRTMIN + 3);
	CHECK_SYS(sigprocmask(SIG_BLOCK, &all, NULL));
	fd = signalfd(-1, &m1, SFD_NONBLOCK);
	CHECK(fd >= 0 && dup2(fd, 20) == 20, "signalfd 20: %s", strerror(errno));
	close(fd);
	fd = signalfd(-1, &m2, SFD_CLOEXEC);
	CHECK(fd >= 0 && dup3(fd, 21, O_CLOEXEC) == 21, "signalfd 21: %s", strerror(errno));
	close(fd);
	CHECK_SYS(sigqueue(getpid(), SIGUSR1, val));
	CHECK_SYS(kill(getpid(), SIGUSR2));

	signal_ready();
	wait_go();

	CHECK(read_file("/proc/self/fdinfo/20", buf, sizeof(buf)) > 0 && strstr(buf, "sigmask:\t0000001000000200"),
	      "fd 20 mask in fdinfo:\n%s", buf);
	CHECK(read_file("/proc/self/fdinfo/21", buf, sizeof(buf)) > 0 && strstr(buf, "sigmask:\t0000000000000800"),
	      "fd 21 mask in fdinfo:\n%s", buf);
	CHECK(fcntl(20, F_GETFL) & O_NONBLOCK, "fd 20 lost O_NONBLOCK");
	CHECK(!(fcntl(21, F_GETFL) & O_NONBLOCK), "fd 21 gained O_NONBLOCK");
	CHECK(fcntl(21, F_GETFD) == FD_CLOEXEC && fcntl(20, F_GETFD) == 0, "FD_CLOEXEC not per fd");
	CHECK(read(20, &si, sizeof(si)) == sizeof(si), "read fd 20: %s", strerror(errno));
	CHECK(si.ssi_signo == SIGUSR1 && si.ssi_int == 4242 && si.ssi_pid == (uint32_t)getpid(),
	      "fd 20 gave signal %u value %d from %u", si.ssi_signo, si.ssi_int, si.ssi_pid);
	CHECK(read(20, &si, sizeof(si)) < 0 && errno == EAGAIN, "fd 20 has more than SIGUSR1");
	CHECK(read(21, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGUSR2, "fd 21 gave signal %u", si.ssi_signo);
	pass();
}
