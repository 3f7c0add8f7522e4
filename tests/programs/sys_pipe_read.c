/* A thread blocked in read() on a pipe whose both ends it holds. After
 * restore the harness waits until it is in read() again and sends SIGUSR1;
 * the handler (SA_RESTART) writes one byte into the write end, and the
 * restarted read must return exactly that byte. */
#define _GNU_SOURCE
#include <signal.h>

#include "common.h"

static int pfd[2];
static volatile sig_atomic_t got;

static void on_usr1(int sig)
{
	unsigned char b = 0x5a;

	(void)sig;
	got++;
	if (write(pfd[1], &b, 1) != 1)
		got += 100;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	unsigned char buf[16];
	ssize_t n;

	setup(argc, argv);
	CHECK_SYS(pipe(pfd));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
	signal_ready();

	memset(buf, 0, sizeof(buf));
	n = read(pfd[0], buf, sizeof(buf));
	CHECK(n == 1, "read returned %zd (%s), want 1 byte", n, n < 0 ? strerror(errno) : "");
	CHECK(buf[0] == 0x5a, "read byte 0x%02x, want 0x5a", buf[0]);
	CHECK(got == 1, "handler ran %d times (or its write failed)", (int)got);
	pass();
}
