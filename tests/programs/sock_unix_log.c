/* A unix datagram socket connected to a named socket of another process,
 * as a syslog client is to /dev/log. The other process (a grandchild left
 * to the harness, which is a subreaper, so not a descendant) binds
 * WORKDIR/log.sock and writes WORKDIR/log_got when it receives "after".
 * After restore the socket is connected to the same name again and its
 * datagram arrives. */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "common.h"

static void server(struct sockaddr_un *sun, socklen_t len, int ready)
{
	struct timeval tv = { .tv_sec = 30 };
	char buf[64];
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);

	if (s < 0 || bind(s, (struct sockaddr *)sun, len) != 0)
		_exit(1);
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write(ready, "r", 1) != 1)
		_exit(1);
	close(ready);
	for (;;) {
		ssize_t n = recv(s, buf, sizeof(buf) - 1, 0);
		if (n < 0)
			_exit(1);
		buf[n] = 0;
		if (strcmp(buf, "after") == 0) {
			write_file_atomic("log_got", buf);
			_exit(0);
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX }, peer;
	socklen_t len, plen = sizeof(peer);
	int p[2], c, i;
	char buf[64];
	pid_t child;

	setup(argc, argv);
	path_in(sun.sun_path, sizeof(sun.sun_path), "log.sock");
	len = offsetof(struct sockaddr_un, sun_path) + strlen(sun.sun_path) + 1;
	CHECK(pipe(p) == 0, "pipe");
	child = fork();
	CHECK(child >= 0, "fork: %s", strerror(errno));
	if (child == 0) {
		close(p[0]);
		if (fork() == 0)
			server(&sun, len, p[1]);
		_exit(0);
	}
	CHECK(waitpid(child, NULL, 0) == child, "waitpid");
	close(p[1]);
	CHECK(read(p[0], buf, 1) == 1, "the log server did not start");
	close(p[0]);
	c = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK(c >= 0, "socket: %s", strerror(errno));
	CHECK(connect(c, (struct sockaddr *)&sun, len) == 0, "connect: %s", strerror(errno));
	CHECK(send(c, "before", 6, 0) == 6, "send: %s", strerror(errno));

	signal_ready();
	wait_go();

	CHECK(getpeername(c, (struct sockaddr *)&peer, &plen) == 0, "getpeername: %s", strerror(errno));
	CHECK(plen == len && strcmp(peer.sun_path, sun.sun_path) == 0, "connected to %s, was %s", peer.sun_path, sun.sun_path);
	CHECK(send(c, "after", 5, 0) == 5, "send after restore: %s", strerror(errno));
	char got[16], path[4096];
	path_in(path, sizeof(path), "log_got");
	for (i = 0; i < 500 && read_file(path, got, sizeof(got)) < 0; i++)
		usleep(10000);
	CHECK(read_file(path, got, sizeof(got)) == 5 && strcmp(got, "after") == 0, "the log server did not get the datagram");
	pass();
}
