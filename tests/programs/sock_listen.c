/* Listening TCP sockets: one on 127.0.0.1 (SO_REUSEADDR, TCP_NODELAY,
 * close-on-exec, backlog 16) and one non-blocking on [::1] (IPV6_V6ONLY,
 * backlog 5), each on a port the kernel picked. After restore both are
 * bound to the same address with the same options, flags and backlog, and
 * accept a connection made to them. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "common.h"

static int opt(int fd, int level, int name)
{
	int v = 0;
	socklen_t len = sizeof(v);

	CHECK(getsockopt(fd, level, name, &v, &len) == 0, "getsockopt: %s", strerror(errno));
	return v;
}

/* The backlog of a listening socket: TCP_INFO reports it in tcpi_sacked. */
static int backlog_of(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	CHECK(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0, "TCP_INFO: %s", strerror(errno));
	return ti.tcpi_sacked;
}

static int port_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	CHECK(getsockname(fd, (struct sockaddr *)&ss, &len) == 0, "getsockname: %s", strerror(errno));
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Connects to the listener at fd's address and accepts the connection. */
static void connect_accept(int lfd, int family)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int c, a, i;

	CHECK(getsockname(lfd, (struct sockaddr *)&ss, &len) == 0, "getsockname: %s", strerror(errno));
	c = socket(family, SOCK_STREAM, 0);
	CHECK(c >= 0, "socket: %s", strerror(errno));
	CHECK(connect(c, (struct sockaddr *)&ss, len) == 0, "connect to the restored listener: %s", strerror(errno));
	CHECK(write(c, "x", 1) == 1, "write");
	for (i = 0; i < 200; i++) {
		a = accept(lfd, NULL, NULL);
		if (a >= 0 || errno != EAGAIN)
			break;
		usleep(5000);
	}
	CHECK(a >= 0, "accept on the restored listener: %s", strerror(errno));
	char b = 0;
	CHECK(read(a, &b, 1) == 1 && b == 'x', "read from the accepted connection");
	close(a);
	close(c);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int one = 1, s4, s6, p4, p6, fl4, fl6, fd4, fd6;

	setup(argc, argv);
	s4 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(s4 >= 0, "socket: %s", strerror(errno));
	CHECK(setsockopt(s4, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0, "SO_REUSEADDR");
	CHECK(setsockopt(s4, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0, "TCP_NODELAY");
	CHECK(bind(s4, (struct sockaddr *)&sin, sizeof(sin)) == 0, "bind: %s", strerror(errno));
	CHECK(listen(s4, 16) == 0, "listen: %s", strerror(errno));
	s6 = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0);
	CHECK(s6 >= 0, "socket6: %s", strerror(errno));
	CHECK(setsockopt(s6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0, "IPV6_V6ONLY");
	CHECK(bind(s6, (struct sockaddr *)&sin6, sizeof(sin6)) == 0, "bind6: %s", strerror(errno));
	CHECK(listen(s6, 5) == 0, "listen6: %s", strerror(errno));
	p4 = port_of(s4);
	p6 = port_of(s6);
	fl4 = fcntl(s4, F_GETFL);
	fl6 = fcntl(s6, F_GETFL);
	fd4 = fcntl(s4, F_GETFD);
	fd6 = fcntl(s6, F_GETFD);

	signal_ready();
	wait_go();

	CHECK(port_of(s4) == p4, "IPv4 port %d, was %d", port_of(s4), p4);
	CHECK(port_of(s6) == p6, "IPv6 port %d, was %d", port_of(s6), p6);
	CHECK(opt(s4, SOL_SOCKET, SO_ACCEPTCONN), "IPv4 socket is not listening");
	CHECK(opt(s6, SOL_SOCKET, SO_ACCEPTCONN), "IPv6 socket is not listening");
	CHECK(backlog_of(s4) == 16, "IPv4 backlog %d, was 16", backlog_of(s4));
	CHECK(backlog_of(s6) == 5, "IPv6 backlog %d, was 5", backlog_of(s6));
	CHECK(opt(s4, SOL_SOCKET, SO_REUSEADDR), "SO_REUSEADDR lost");
	CHECK(opt(s4, IPPROTO_TCP, TCP_NODELAY), "TCP_NODELAY lost");
	CHECK(!opt(s4, SOL_SOCKET, SO_REUSEPORT), "SO_REUSEPORT appeared");
	CHECK(opt(s6, IPPROTO_IPV6, IPV6_V6ONLY), "IPV6_V6ONLY lost");
	CHECK(fcntl(s4, F_GETFL) == fl4, "IPv4 F_GETFL %o, was %o", fcntl(s4, F_GETFL), fl4);
	CHECK(fcntl(s6, F_GETFL) == fl6, "IPv6 F_GETFL %o, was %o", fcntl(s6, F_GETFL), fl6);
	CHECK(fcntl(s4, F_GETFD) == fd4, "IPv4 FD_CLOEXEC changed");
	CHECK(fcntl(s6, F_GETFD) == fd6, "IPv6 FD_CLOEXEC changed");
	connect_accept(s4, AF_INET);
	connect_accept(s6, AF_INET6);
	pass();
}
