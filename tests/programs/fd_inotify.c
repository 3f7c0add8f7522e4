/* A process holding an inotify fd (fd 42) watching WORKDIR. Checkpoint
 * must refuse it naming "fd 42" and "inotify" and leave the process
 * running; on go it checks the inotify fd still delivers events. */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/inotify.h>

#include "common.h"

int main(int argc, char **argv)
{
	char buf[4096] __attribute__((aligned(8)));
	char probe[4096];
	struct pollfd p;
	int fd, fdp;
	ssize_t n;

	setup(argc, argv);
	fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	CHECK(fd >= 0, "inotify_init1: %s", strerror(errno));
	CHECK(dup2(fd, 42) == 42, "dup2");
	close(fd);
	CHECK(inotify_add_watch(42, workdir, IN_CREATE) >= 0, "inotify_add_watch: %s", strerror(errno));

	signal_ready();
	wait_go();

	while (read(42, buf, sizeof(buf)) > 0) /* drain ready/go events */
		;
	path_in(probe, sizeof(probe), "probe");
	fdp = open(probe, O_WRONLY | O_CREAT, 0644);
	CHECK(fdp >= 0, "create probe");
	close(fdp);
	p.fd = 42;
	p.events = POLLIN;
	CHECK(poll(&p, 1, 2000) == 1, "no inotify event for WORKDIR/probe");
	n = read(42, buf, sizeof(buf));
	CHECK(n >= (ssize_t)sizeof(struct inotify_event), "read inotify: %zd", n);
	{
		char *q = buf;
		int found = 0;
		while (q < buf + n) {
			struct inotify_event *ev = (struct inotify_event *)q;
			if (ev->len && strcmp(ev->name, "probe") == 0)
				found = 1;
			q += sizeof(*ev) + ev->len;
		}
		CHECK(found, "no IN_CREATE event named probe");
	}
	pass();
}
