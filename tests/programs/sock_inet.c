/* TCP and UDP sockets that are not listening:
 *   tb4  TCP bound to 127.0.0.1 (SO_REUSEADDR, SO_KEEPALIVE, TCP_NODELAY,
 *        TCP_KEEPIDLE, SO_RCVBUF/SO_SNDBUF set, close-on-exec)
 *   tb6  TCP bound to [::] (IPV6_V6ONLY, SO_REUSEPORT, non-blocking)
 *   tu   TCP never bound
 *   ub4  UDP bound to 0.0.0.0 (SO_BROADCAST, non-blocking)
 *   ub6  UDP bound to [::1]
 *   uc   UDP connect()ed to ub6's address (so bound by the kernel)
 *   uu   UDP never bound
 * After restore each has the same address, peer, options and flags, and
 * works: tb4 can listen and accept, tu can connect, ub4 receives on its
 * port, uc and ub6 exchange datagrams with the right source addresses. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

static int opt(int fd, int level, int name)
{
	int v = 0;
	socklen_t len = sizeof(v);

	CHECK(getsockopt(fd, level, name, &v, &len) == 0, "getsockopt(%d, %d): %s", level, name, strerror(errno));
	return v;
}

static void set(int fd, int level, int name, int v)
{
	CHECK(setsockopt(fd, level, name, &v, sizeof(v)) == 0, "setsockopt(%d, %d): %s", level, name, strerror(errno));
}

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

static struct addr name_of(int fd, int peer)
{
	struct addr a = { .len = sizeof(a.ss) };
	int r = peer ? getpeername(fd, (struct sockaddr *)&a.ss, &a.len) : getsockname(fd, (struct sockaddr *)&a.ss, &a.len);

	if (r != 0)
		a.len = 0;
	return a;
}

static int same(struct addr a, struct addr b)
{
	return a.len == b.len && memcmp(&a.ss, &b.ss, a.len) == 0;
}

static int port(struct addr a)
{
	if (a.ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&a.ss)->sin6_port);
}

static int sock(int family, int type)
{
	int s = socket(family, type, 0);

	CHECK(s >= 0, "socket: %s", strerror(errno));
	return s;
}

static void bind_to(int s, int family, const char *ip)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;

	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		inet_pton(AF_INET, ip, &sin->sin_addr);
		len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, ip, &sin6->sin6_addr);
		len = sizeof(*sin6);
	}
	CHECK(bind(s, (struct sockaddr *)&ss, len) == 0, "bind %s: %s", ip, strerror(errno));
}

/* Waits (2 s at most) for a datagram on s; returns its length. */
static ssize_t recv_wait(int s, char *buf, size_t cap, struct addr *from)
{
	int i;

	for (i = 0; i < 400; i++) {
		from->len = sizeof(from->ss);
		ssize_t n = recvfrom(s, buf, cap, MSG_DONTWAIT, (struct sockaddr *)&from->ss, &from->len);
		if (n >= 0 || errno != EAGAIN)
			return n;
		usleep(5000);
	}
	return -1;
}

int main(int argc, char **argv)
{
	int tb4, tb6, tu, ub4, ub6, uc, uu;
	int rcv, snd, fl[8], fdf[8], i;
	struct addr a_tb4, a_tb6, a_ub4, a_ub6, a_uc, p_uc;

	setup(argc, argv);
	tb4 = sock(AF_INET, SOCK_STREAM | SOCK_CLOEXEC);
	set(tb4, SOL_SOCKET, SO_REUSEADDR, 1);
	set(tb4, SOL_SOCKET, SO_KEEPALIVE, 1);
	set(tb4, IPPROTO_TCP, TCP_NODELAY, 1);
	set(tb4, IPPROTO_TCP, TCP_KEEPIDLE, 77);
	set(tb4, SOL_SOCKET, SO_RCVBUF, 50000);
	set(tb4, SOL_SOCKET, SO_SNDBUF, 60000);
	bind_to(tb4, AF_INET, "127.0.0.1");
	rcv = opt(tb4, SOL_SOCKET, SO_RCVBUF);
	snd = opt(tb4, SOL_SOCKET, SO_SNDBUF);

	tb6 = sock(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK);
	set(tb6, IPPROTO_IPV6, IPV6_V6ONLY, 1);
	set(tb6, SOL_SOCKET, SO_REUSEPORT, 1);
	bind_to(tb6, AF_INET6, "::");

	tu = sock(AF_INET, SOCK_STREAM);

	ub4 = sock(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK);
	set(ub4, SOL_SOCKET, SO_BROADCAST, 1);
	bind_to(ub4, AF_INET, "0.0.0.0");

	ub6 = sock(AF_INET6, SOCK_DGRAM);
	bind_to(ub6, AF_INET6, "::1");
	a_ub6 = name_of(ub6, 0);

	uc = sock(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC);
	CHECK(connect(uc, (struct sockaddr *)&a_ub6.ss, a_ub6.len) == 0, "connect udp: %s", strerror(errno));

	uu = sock(AF_INET6, SOCK_DGRAM);

	a_tb4 = name_of(tb4, 0);
	a_tb6 = name_of(tb6, 0);
	a_ub4 = name_of(ub4, 0);
	a_uc = name_of(uc, 0);
	p_uc = name_of(uc, 1);
	int all[7] = { tb4, tb6, tu, ub4, ub6, uc, uu };
	for (i = 0; i < 7; i++) {
		fl[i] = fcntl(all[i], F_GETFL);
		fdf[i] = fcntl(all[i], F_GETFD);
	}

	int nfds = count_fds();

	signal_ready();
	wait_go();

	CHECK(count_fds() == nfds, "%d fds open, there were %d", count_fds(), nfds);

	for (i = 0; i < 7; i++) {
		CHECK(fcntl(all[i], F_GETFL) == fl[i], "socket %d: F_GETFL %o, was %o", i, fcntl(all[i], F_GETFL), fl[i]);
		CHECK(fcntl(all[i], F_GETFD) == fdf[i], "socket %d: FD_CLOEXEC changed", i);
	}
	CHECK(same(name_of(tb4, 0), a_tb4), "tcp 127.0.0.1 socket lost its address (port %d, was %d)", port(name_of(tb4, 0)), port(a_tb4));
	CHECK(same(name_of(tb6, 0), a_tb6), "tcp [::] socket lost its address");
	CHECK(same(name_of(ub4, 0), a_ub4), "udp 0.0.0.0 socket lost its address");
	CHECK(same(name_of(ub6, 0), a_ub6), "udp [::1] socket lost its address");
	CHECK(same(name_of(uc, 0), a_uc), "connected udp socket lost its address");
	CHECK(same(name_of(uc, 1), p_uc), "connected udp socket lost its peer");
	CHECK(port(name_of(tu, 0)) == 0, "the unbound tcp socket is bound");
	CHECK(port(name_of(uu, 0)) == 0, "the unbound udp socket is bound");
	CHECK(name_of(uu, 1).len == 0, "the unbound udp socket is connected");
	CHECK(opt(tb4, SOL_SOCKET, SO_ACCEPTCONN) == 0, "tcp bound socket is listening");

	CHECK(opt(tb4, SOL_SOCKET, SO_REUSEADDR), "SO_REUSEADDR lost");
	CHECK(opt(tb4, SOL_SOCKET, SO_KEEPALIVE), "SO_KEEPALIVE lost");
	CHECK(opt(tb4, IPPROTO_TCP, TCP_NODELAY), "TCP_NODELAY lost");
	CHECK(opt(tb4, IPPROTO_TCP, TCP_KEEPIDLE) == 77, "TCP_KEEPIDLE %d, want 77", opt(tb4, IPPROTO_TCP, TCP_KEEPIDLE));
	CHECK(opt(tb4, SOL_SOCKET, SO_RCVBUF) == rcv, "SO_RCVBUF %d, was %d", opt(tb4, SOL_SOCKET, SO_RCVBUF), rcv);
	CHECK(opt(tb4, SOL_SOCKET, SO_SNDBUF) == snd, "SO_SNDBUF %d, was %d", opt(tb4, SOL_SOCKET, SO_SNDBUF), snd);
	CHECK(!opt(tb4, SOL_SOCKET, SO_REUSEPORT), "SO_REUSEPORT appeared");
	CHECK(opt(tb6, IPPROTO_IPV6, IPV6_V6ONLY), "IPV6_V6ONLY lost");
	CHECK(opt(tb6, SOL_SOCKET, SO_REUSEPORT), "SO_REUSEPORT lost");
	CHECK(!opt(tb6, SOL_SOCKET, SO_KEEPALIVE), "SO_KEEPALIVE appeared");
	CHECK(opt(ub4, SOL_SOCKET, SO_BROADCAST), "SO_BROADCAST lost");
	CHECK(!opt(uu, SOL_SOCKET, SO_BROADCAST), "SO_BROADCAST appeared");

	/* The bound TCP socket still works: listen, connect, accept. */
	CHECK(listen(tb4, 4) == 0, "listen on the restored bound socket: %s", strerror(errno));
	CHECK(connect(tu, (struct sockaddr *)&a_tb4.ss, a_tb4.len) == 0, "connect from the restored unbound socket: %s", strerror(errno));
	int a = accept(tb4, NULL, NULL);
	CHECK(a >= 0, "accept: %s", strerror(errno));
	CHECK(write(tu, "t", 1) == 1, "write tcp");
	char b = 0;
	CHECK(read(a, &b, 1) == 1 && b == 't', "read tcp");

	/* UDP: the wildcard-bound socket gets a datagram sent to loopback. */
	char buf[64];
	struct addr from;
	struct sockaddr_in to4 = { .sin_family = AF_INET, .sin_port = htons(port(a_ub4)), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int tmp = sock(AF_INET, SOCK_DGRAM);
	CHECK(sendto(tmp, "4", 1, 0, (struct sockaddr *)&to4, sizeof(to4)) == 1, "sendto: %s", strerror(errno));
	CHECK(recv_wait(ub4, buf, sizeof(buf), &from) == 1 && buf[0] == '4', "udp 0.0.0.0 socket did not receive: %s", strerror(errno));

	/* The connected socket sends to its peer, which sees it as the
	 * sender, and gets the answer. */
	CHECK(send(uc, "c", 1, 0) == 1, "send on connected udp: %s", strerror(errno));
	CHECK(recv_wait(ub6, buf, sizeof(buf), &from) == 1 && buf[0] == 'c', "udp peer did not receive");
	CHECK(same(from, a_uc), "datagram from the connected socket came from another address");
	CHECK(sendto(ub6, "r", 1, 0, (struct sockaddr *)&from.ss, from.len) == 1, "sendto back: %s", strerror(errno));
	CHECK(recv_wait(uc, buf, sizeof(buf), &from) == 1 && buf[0] == 'r', "connected udp socket did not receive the answer");
	pass();
}
