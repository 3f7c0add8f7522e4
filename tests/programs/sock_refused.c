/* A socket that checkpoint must refuse, at fd 42. `sock_refused WORKDIR KIND`:
 *   udp_queued  a UDP socket on 127.0.0.1 with a datagram waiting
 *   netlink     a NETLINK_ROUTE socket
 *   packet      an AF_PACKET socket
 *   raw         an IPv4 raw ICMP socket
 *   scm_rights  a unix socketpair with an fd in flight (SCM_RIGHTS)
 *   unix_outside  a unix stream socket whose peer is held by another
 *               process, not a descendant (a grandchild left to the
 *               harness, which is a subreaper); it exits at EOF
 *   unix_outside_listener  a unix stream socket connected to a listener
 *               (WORKDIR/out.sock) of such another process
 * After go (the checkpoint having failed), the socket must be as it was:
 * the queued datagram or passed fd is still there. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "common.h"

static int at42(int s)
{
	CHECK(s >= 0, "socket: %s", strerror(errno));
	CHECK(dup2(s, 42) == 42, "dup2: %s", strerror(errno));
	close(s);
	return 42;
}

int main(int argc, char **argv)
{
	const char *kind;
	int other = -1;

	setup(argc, argv);
	CHECK(argc >= 3, "usage: sock_refused WORKDIR KIND");
	kind = argv[2];
	if (strcmp(kind, "udp_queued") == 0) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(sin);
		int s = at42(socket(AF_INET, SOCK_DGRAM, 0));
		CHECK(bind(s, (struct sockaddr *)&sin, sizeof(sin)) == 0, "bind: %s", strerror(errno));
		CHECK(getsockname(s, (struct sockaddr *)&sin, &len) == 0, "getsockname");
		other = socket(AF_INET, SOCK_DGRAM, 0);
		CHECK(sendto(other, "hello", 5, 0, (struct sockaddr *)&sin, sizeof(sin)) == 5, "sendto: %s", strerror(errno));
	} else if (strcmp(kind, "netlink") == 0) {
		at42(socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
	} else if (strcmp(kind, "packet") == 0) {
		at42(socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
	} else if (strcmp(kind, "raw") == 0) {
		at42(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
	} else if (strcmp(kind, "scm_rights") == 0) {
		int sv[2];
		char c = 'x';
		struct iovec iov = { .iov_base = &c, .iov_len = 1 };
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int))];
		} u;
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		int passed = 1; /* stdout */

		CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
		at42(sv[0]);
		other = sv[1];
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &passed, sizeof(int));
		CHECK(sendmsg(other, &m, 0) == 1, "sendmsg: %s", strerror(errno));
	} else if (strcmp(kind, "unix_outside") == 0) {
		int sv[2];
		pid_t child;

		CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
		child = fork();
		CHECK(child >= 0, "fork: %s", strerror(errno));
		if (child == 0) {
			if (fork() == 0) {
				char c;
				close(sv[0]);
				/* Until the peer is closed (or 60 s). */
				alarm(60);
				while (read(sv[1], &c, 1) > 0)
					;
				_exit(0);
			}
			_exit(0);
		}
		CHECK(waitpid(child, NULL, 0) == child, "waitpid");
		close(sv[1]);
		at42(sv[0]);
	} else if (strcmp(kind, "unix_outside_listener") == 0) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		socklen_t len;
		int p[2];
		pid_t child;
		char c;

		path_in(sun.sun_path, sizeof(sun.sun_path), "out.sock");
		len = offsetof(struct sockaddr_un, sun_path) + strlen(sun.sun_path) + 1;
		CHECK(pipe(p) == 0, "pipe");
		child = fork();
		CHECK(child >= 0, "fork: %s", strerror(errno));
		if (child == 0) {
			if (fork() == 0) {
				int l = socket(AF_UNIX, SOCK_STREAM, 0), a;
				close(p[0]);
				alarm(60);
				if (l < 0 || bind(l, (struct sockaddr *)&sun, len) != 0 || listen(l, 1) != 0)
					_exit(1);
				if (write(p[1], "r", 1) != 1)
					_exit(1);
				close(p[1]);
				a = accept(l, NULL, NULL);
				while (a >= 0 && read(a, &c, 1) > 0)
					;
				_exit(0);
			}
			_exit(0);
		}
		CHECK(waitpid(child, NULL, 0) == child, "waitpid");
		close(p[1]);
		CHECK(read(p[0], &c, 1) == 1, "the listener did not start");
		close(p[0]);
		int s = at42(socket(AF_UNIX, SOCK_STREAM, 0));
		CHECK(connect(s, (struct sockaddr *)&sun, len) == 0, "connect: %s", strerror(errno));
	} else {
		fail("unknown kind %s", kind);
	}

	signal_ready();
	wait_go();

	if (strcmp(kind, "udp_queued") == 0) {
		char buf[16];
		CHECK(recv(42, buf, sizeof(buf), MSG_DONTWAIT) == 5 && memcmp(buf, "hello", 5) == 0, "the queued datagram is gone");
	} else if (strcmp(kind, "scm_rights") == 0) {
		char c = 0;
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int))];
		} u;
		struct iovec iov = { .iov_base = &c, .iov_len = 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
		CHECK(recvmsg(42, &m, MSG_DONTWAIT) == 1 && c == 'x', "the message is gone: %s", strerror(errno));
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		CHECK(cm && cm->cmsg_type == SCM_RIGHTS, "the passed fd is gone");
	}
	pass();
}
