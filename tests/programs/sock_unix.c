/* Unix sockets, all within the process:
 *   s0/s1  stream socketpair, 5000 bytes queued to s1, 100 to s0;
 *          SO_PASSCRED on s0, s1 non-blocking
 *   d0/d1  datagram socketpair, 3 datagrams (one empty) queued to d1, 1 to d0
 *   q0/q1  seqpacket socketpair, 2 messages queued to q1, q1 shut for
 *          writing (so q0 reads EOF)
 *   l      listener on WORKDIR/srv.sock (mode 0640, close-on-exec);
 *          cl connected to it, ac accepted; "req" queued to ac, "resp" to cl
 *   la     listener on an abstract name; ca connected, aa accepted; "abs"
 *          queued to aa
 *   o0     a stream socket whose peer was closed after writing "last words"
 *   ds     datagram socket bound to WORKDIR/dgram.sock; dc connected to it
 * After restore no other fd is open, every queue holds the same bytes with the same message
 * boundaries, names, peers, modes, options and flags are the same, and
 * everything still works. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <stddef.h>
#include <sys/un.h>

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

	CHECK(getsockopt(fd, level, name, &v, &len) == 0, "getsockopt: %s", strerror(errno));
	return v;
}

struct name {
	struct sockaddr_un sun;
	socklen_t len;
};

static struct name name_of(int fd, int peer)
{
	struct name n = { .len = sizeof(n.sun) };
	int r = peer ? getpeername(fd, (struct sockaddr *)&n.sun, &n.len) : getsockname(fd, (struct sockaddr *)&n.sun, &n.len);

	CHECK(r == 0, "get%sname: %s", peer ? "peer" : "sock", strerror(errno));
	return n;
}

static int same(struct name a, struct name b)
{
	return a.len == b.len && memcmp(&a.sun, &b.sun, a.len) == 0;
}

static struct name path_name(const char *file)
{
	struct name n = { .sun = { .sun_family = AF_UNIX } };

	path_in(n.sun.sun_path, sizeof(n.sun.sun_path), file);
	n.len = offsetof(struct sockaddr_un, sun_path) + strlen(n.sun.sun_path) + 1;
	return n;
}

static int listen_on(struct name n, int backlog)
{
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECK(l >= 0, "socket: %s", strerror(errno));
	CHECK(bind(l, (struct sockaddr *)&n.sun, n.len) == 0, "bind: %s", strerror(errno));
	CHECK(listen(l, backlog) == 0, "listen: %s", strerror(errno));
	return l;
}

static int connect_to(struct name n, int type)
{
	int c = socket(AF_UNIX, type, 0);

	CHECK(c >= 0, "socket: %s", strerror(errno));
	CHECK(connect(c, (struct sockaddr *)&n.sun, n.len) == 0, "connect: %s", strerror(errno));
	return c;
}

static void send_msg(int fd, const char *data, size_t len)
{
	CHECK(send(fd, data, len, 0) == (ssize_t)len, "send: %s", strerror(errno));
}

/* Reads one message (or up to cap bytes) without waiting. */
static ssize_t take(int fd, char *buf, size_t cap)
{
	return recv(fd, buf, cap, MSG_DONTWAIT);
}

static void expect_msg(int fd, const char *want, size_t len, const char *what)
{
	char buf[8192];
	ssize_t n = take(fd, buf, sizeof(buf));

	CHECK(n == (ssize_t)len && memcmp(buf, want, len) == 0, "%s: got %zd bytes (%s), want %zu", what, n, n < 0 ? strerror(errno) : "data", len);
}

static void expect_empty(int fd, const char *what)
{
	char c;
	ssize_t n = take(fd, &c, 1);

	CHECK(n == -1 && errno == EAGAIN, "%s: more queued (%zd, %s)", what, n, n < 0 ? strerror(errno) : "data");
}

int main(int argc, char **argv)
{
	int s[2], d[2], q[2], o[2], one = 1, fl1, fd_l;
	static char big[5000], small[100];
	struct name srv, abs, dgn;
	struct stat st;

	setup(argc, argv);
	fill_pattern(big, sizeof(big), 1);
	fill_pattern(small, sizeof(small), 2);

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0, "socketpair: %s", strerror(errno));
	CHECK(setsockopt(s[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) == 0, "SO_PASSCRED");
	CHECK(fcntl(s[1], F_SETFL, O_NONBLOCK) == 0, "F_SETFL");
	CHECK(write_all(s[0], big, sizeof(big)) == 0, "write stream");
	CHECK(write_all(s[1], small, sizeof(small)) == 0, "write stream back");
	fl1 = fcntl(s[1], F_GETFL);

	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, d) == 0, "socketpair dgram: %s", strerror(errno));
	send_msg(d[0], "one", 3);
	send_msg(d[0], "", 0);
	send_msg(d[0], "three33", 7);
	send_msg(d[1], "back", 4);

	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, q) == 0, "socketpair seqpacket: %s", strerror(errno));
	send_msg(q[0], "aa", 2);
	send_msg(q[0], "bbbb", 4);
	CHECK(shutdown(q[1], SHUT_WR) == 0, "shutdown: %s", strerror(errno));

	srv = path_name("srv.sock");
	int l = listen_on(srv, 7);
	CHECK(chmod(srv.sun.sun_path, 0640) == 0, "chmod: %s", strerror(errno));
	int cl = connect_to(srv, SOCK_STREAM);
	int ac = accept(l, NULL, NULL);
	CHECK(ac >= 0, "accept: %s", strerror(errno));
	send_msg(cl, "req", 3);
	send_msg(ac, "resp", 4);
	fd_l = fcntl(l, F_GETFD);

	memset(&abs, 0, sizeof(abs));
	abs.sun.sun_family = AF_UNIX;
	int alen = snprintf(abs.sun.sun_path + 1, sizeof(abs.sun.sun_path) - 1, "snaprun-test-%d", (int)getpid());
	abs.len = offsetof(struct sockaddr_un, sun_path) + 1 + alen;
	int la = listen_on(abs, 3);
	int ca = connect_to(abs, SOCK_STREAM);
	int aa = accept(la, NULL, NULL);
	CHECK(aa >= 0, "accept abstract: %s", strerror(errno));
	send_msg(ca, "abs", 3);

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, o) == 0, "socketpair: %s", strerror(errno));
	send_msg(o[1], "last words", 10);
	close(o[1]);

	dgn = path_name("dgram.sock");
	int ds = socket(AF_UNIX, SOCK_DGRAM, 0);
	CHECK(ds >= 0 && bind(ds, (struct sockaddr *)&dgn.sun, dgn.len) == 0, "bind dgram: %s", strerror(errno));
	int dc = connect_to(dgn, SOCK_DGRAM);

	int nfds = count_fds();

	signal_ready();
	wait_go();

	CHECK(count_fds() == nfds, "%d fds open, there were %d", count_fds(), nfds);

	/* Socketpairs: queues, options, flags. */
	expect_msg(s[1], big, sizeof(big), "stream queue to s1");
	expect_empty(s[1], "stream queue to s1");
	expect_msg(s[0], small, sizeof(small), "stream queue to s0");
	expect_empty(s[0], "stream queue to s0");
	CHECK(opt(s[0], SOL_SOCKET, SO_PASSCRED) == 1, "SO_PASSCRED lost");
	CHECK(opt(s[1], SOL_SOCKET, SO_PASSCRED) == 0, "SO_PASSCRED appeared");
	CHECK(fcntl(s[1], F_GETFL) == fl1, "s1 F_GETFL %o, was %o", fcntl(s[1], F_GETFL), fl1);
	send_msg(s[1], "ping", 4);
	expect_msg(s[0], "ping", 4, "stream after restore");

	expect_msg(d[1], "one", 3, "datagram 1");
	expect_msg(d[1], "", 0, "datagram 2 (empty)");
	expect_msg(d[1], "three33", 7, "datagram 3");
	expect_empty(d[1], "datagrams to d1");
	expect_msg(d[0], "back", 4, "datagram to d0");
	expect_empty(d[0], "datagrams to d0");
	send_msg(d[1], "new", 3);
	expect_msg(d[0], "new", 3, "datagram after restore");

	expect_msg(q[1], "aa", 2, "seqpacket 1");
	expect_msg(q[1], "bbbb", 4, "seqpacket 2");
	expect_empty(q[1], "seqpackets to q1");
	CHECK(take(q[0], small, 1) == 0, "q0 should read EOF: its peer shut down writing");
	CHECK(send(q[1], "x", 1, MSG_NOSIGNAL) == -1 && errno == EPIPE, "q1 can send after shutdown");

	/* The path listener: name, socket file, mode; its connection. */
	CHECK(opt(l, SOL_SOCKET, SO_ACCEPTCONN), "l is not listening");
	CHECK(same(name_of(l, 0), srv), "l lost its name");
	CHECK(stat(srv.sun.sun_path, &st) == 0 && S_ISSOCK(st.st_mode), "no socket file at %s", srv.sun.sun_path);
	CHECK((st.st_mode & 07777) == 0640, "socket file mode %o, was 0640", st.st_mode & 07777);
	CHECK(fcntl(l, F_GETFD) == fd_l, "l FD_CLOEXEC changed");
	CHECK(same(name_of(ac, 0), srv), "the accepted socket lost its name");
	CHECK(same(name_of(cl, 1), srv), "the client lost its peer name");
	expect_msg(ac, "req", 3, "queue to the accepted socket");
	expect_msg(cl, "resp", 4, "queue to the client");
	send_msg(cl, "more", 4);
	expect_msg(ac, "more", 4, "accepted connection after restore");
	int c2 = connect_to(srv, SOCK_STREAM);
	int a2 = accept(l, NULL, NULL);
	CHECK(a2 >= 0, "accept after restore: %s", strerror(errno));
	send_msg(c2, "hi", 2);
	expect_msg(a2, "hi", 2, "new connection");

	/* The abstract listener. */
	CHECK(same(name_of(la, 0), abs), "la lost its abstract name");
	CHECK(same(name_of(aa, 0), abs), "aa lost its abstract name");
	CHECK(same(name_of(ca, 1), abs), "ca lost its peer's abstract name");
	expect_msg(aa, "abs", 3, "queue to aa");
	int c3 = connect_to(abs, SOCK_STREAM);
	CHECK(accept(la, NULL, NULL) >= 0, "accept abstract after restore: %s", strerror(errno));
	close(c3);

	/* The orphan: its data, then EOF. */
	expect_msg(o[0], "last words", 10, "orphan's queue");
	CHECK(take(o[0], small, 1) == 0, "the orphan does not read EOF");

	/* Datagram socket connected one way. */
	CHECK(same(name_of(ds, 0), dgn), "ds lost its name");
	CHECK(same(name_of(dc, 1), dgn), "dc lost its peer");
	send_msg(dc, "dg", 2);
	expect_msg(ds, "dg", 2, "datagram to ds");
	pass();
}
