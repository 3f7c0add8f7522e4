/* A TCP server with open connections, for `checkpoint --tcp-close`:
 *   fd 40  listener on 127.0.0.1 (non-blocking)
 *   fd 42  an accepted connection (non-blocking), fd 43 its client end
 *   fd 44  a client whose connection waits in fd 40's accept queue
 *   fd 45  listener on [::1], fd 46 an accepted connection, fd 47 its client
 *   fd 48  a client whose connection was reset before the checkpoint (its
 *          server end closed with SO_LINGER 0), the reset not yet read
 * `sock_tcp_close WORKDIR` checks, after restore, that every connection
 * looks reset by its peer (first read ECONNRESET, then EOF; send EPIPE;
 * getpeername ENOTCONN), that the accept queue is empty, and that the
 * listeners serve new connections. `sock_tcp_close WORKDIR alive [noqueue]`
 * checks instead that the connections still work (the source after a
 * refused checkpoint, or without snaprun); with `noqueue` there is no
 * fd 44. fd 48 reads as reset in both modes. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "common.h"

/* The number of open fds (restore must not leave extra ones behind). */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	CHECK(d != NULL, "opendir: %s", strerror(errno));
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static int to(int s, int fd)
{
	CHECK(s >= 0, "socket: %s", strerror(errno));
	CHECK(dup2(s, fd) == fd, "dup2: %s", strerror(errno));
	close(s);
	return fd;
}

static int listener(int family, int fd)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int one = 1;
	int l = to(socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0), fd);

	CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0, "SO_REUSEADDR");
	if (family == AF_INET)
		CHECK(bind(l, (struct sockaddr *)&sin, sizeof(sin)) == 0, "bind: %s", strerror(errno));
	else
		CHECK(bind(l, (struct sockaddr *)&sin6, sizeof(sin6)) == 0, "bind6: %s", strerror(errno));
	CHECK(listen(l, 8) == 0, "listen: %s", strerror(errno));
	return l;
}

static int connect_to(int l, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int c;

	CHECK(getsockname(l, (struct sockaddr *)&ss, &len) == 0, "getsockname: %s", strerror(errno));
	c = to(socket(ss.ss_family, SOCK_STREAM, 0), fd);
	CHECK(connect(c, (struct sockaddr *)&ss, len) == 0, "connect: %s", strerror(errno));
	return c;
}

/* accept4 on a non-blocking listener, waiting 2 s at most. */
static int accept_wait(int l, int flags)
{
	struct pollfd p = { .fd = l, .events = POLLIN };

	CHECK(poll(&p, 1, 2000) == 1, "no connection to accept");
	return accept4(l, NULL, NULL, flags);
}

static void exchange(int a, int b)
{
	char c = 0;
	struct pollfd p = { .fd = b, .events = POLLIN };

	CHECK(write(a, "z", 1) == 1, "write: %s", strerror(errno));
	CHECK(poll(&p, 1, 2000) == 1, "nothing arrived");
	CHECK(read(b, &c, 1) == 1 && c == 'z', "read: %s", strerror(errno));
}

/* A connection reset by its peer: ECONNRESET once, then EOF; send fails
 * with EPIPE; no peer. */
static void check_reset(int s, const char *what)
{
	char c;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	ssize_t n;

	n = read(s, &c, 1);
	CHECK(n == -1 && errno == ECONNRESET, "%s: first read gave %zd (%s), want ECONNRESET", what, n, n < 0 ? strerror(errno) : "data");
	n = read(s, &c, 1);
	CHECK(n == 0, "%s: second read gave %zd (%s), want EOF", what, n, n < 0 ? strerror(errno) : "data");
	n = send(s, "x", 1, MSG_NOSIGNAL);
	CHECK(n == -1 && errno == EPIPE, "%s: send gave %zd (%s), want EPIPE", what, n, n < 0 ? strerror(errno) : "sent");
	CHECK(getpeername(s, (struct sockaddr *)&ss, &len) == -1 && errno == ENOTCONN, "%s: still has a peer", what);
}

static int port_of(int fd)
{
	struct sockaddr_in6 ss;
	socklen_t len = sizeof(ss);

	CHECK(getsockname(fd, (struct sockaddr *)&ss, &len) == 0, "getsockname");
	return ntohs(ss.sin6_port); /* same offset in sockaddr_in */
}

int main(int argc, char **argv)
{
	int alive, noqueue, l4, a4, c4, q4, l6, a6, c6, p4, p6, fl;

	setup(argc, argv);
	alive = argc >= 3 && strcmp(argv[2], "alive") == 0;
	noqueue = argc >= 4 && strcmp(argv[3], "noqueue") == 0;
	l4 = listener(AF_INET, 40);
	c4 = connect_to(l4, 43);
	a4 = to(accept_wait(l4, SOCK_NONBLOCK), 42);
	exchange(c4, a4);
	int r4 = connect_to(l4, 48);
	int ra = accept_wait(l4, 0);
	struct linger lg = { 1, 0 };
	CHECK(ra >= 0 && setsockopt(ra, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0, "SO_LINGER: %s", strerror(errno));
	close(ra);
	struct pollfd rp = { .fd = r4, .events = POLLIN };
	CHECK(poll(&rp, 1, 2000) == 1, "the reset did not arrive");
	q4 = noqueue ? -1 : connect_to(l4, 44);
	l6 = listener(AF_INET6, 45);
	c6 = connect_to(l6, 47);
	a6 = to(accept_wait(l6, 0), 46);
	exchange(a6, c6);
	p4 = port_of(l4);
	p6 = port_of(l6);
	fl = fcntl(a4, F_GETFL);

	int nfds = count_fds();

	signal_ready();
	wait_go();

	CHECK(count_fds() == nfds, "%d fds open, there were %d", count_fds(), nfds);

	CHECK(fcntl(a4, F_GETFL) == fl, "accepted socket F_GETFL %o, was %o", fcntl(a4, F_GETFL), fl);
	CHECK(port_of(l4) == p4 && port_of(l6) == p6, "a listener moved");
	check_reset(r4, "connection reset before the checkpoint");
	if (alive) {
		exchange(a4, c4);
		exchange(c6, a6);
		if (!noqueue) {
			int q = accept_wait(l4, 0);
			CHECK(q >= 0, "the queued connection is gone: %s", strerror(errno));
			exchange(q, q4);
		}
		pass();
	}
	check_reset(a4, "accepted IPv4 connection");
	check_reset(c4, "client IPv4 connection");
	check_reset(q4, "client in the accept queue");
	check_reset(a6, "accepted IPv6 connection");
	check_reset(c6, "client IPv6 connection");
	CHECK(accept(l4, NULL, NULL) == -1 && errno == EAGAIN, "the accept queue is not empty");
	/* The server goes on serving. */
	for (int i = 0; i < 3; i++) {
		int c = connect_to(l4, 50);
		int a = accept_wait(l4, 0);
		CHECK(a >= 0, "accept after restore: %s", strerror(errno));
		exchange(c, a);
		exchange(a, c);
		close(a);
		close(c);
	}
	int c = connect_to(l6, 50);
	int a = accept_wait(l6, 0);
	CHECK(a >= 0, "accept6 after restore: %s", strerror(errno));
	exchange(a, c);
	pass();
}
