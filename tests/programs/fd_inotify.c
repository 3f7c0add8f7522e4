/* An inotify fd (fd 42, non-blocking, close-on-exec) with watches on
 * WORKDIR (IN_CREATE) and WORKDIR/sub (IN_CREATE|IN_DELETE|IN_EXCL_UNLINK),
 * whose watch descriptors have a gap: a watch on WORKDIR/gap was removed
 * in between. After restore (on go) the watch descriptors are the same,
 * no IN_IGNORED event is queued, and creating WORKDIR/probe and
 * WORKDIR/sub/x delivers events under the right descriptors. */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/inotify.h>

#include "common.h"

/* Reads the events queued on fd 42 (waiting up to ms for the first);
 * returns 1 if one for wd with name was seen; fails on IN_IGNORED unless
 * allowed. */
static int read_events(int wd, const char *name, int ms, int allow_ignored)
{
	char buf[8192] __attribute__((aligned(8)));
	struct pollfd p = { .fd = 42, .events = POLLIN };
	int found = 0;
	ssize_t n;

	if (poll(&p, 1, ms) != 1)
		return 0;
	while ((n = read(42, buf, sizeof(buf))) > 0) {
		char *q = buf;
		while (q < buf + n) {
			struct inotify_event *ev = (struct inotify_event *)q;
			CHECK(allow_ignored || !(ev->mask & IN_IGNORED), "IN_IGNORED for wd %d queued", ev->wd);
			if (ev->wd == wd && ev->len && name && strcmp(ev->name, name) == 0)
				found = 1;
			q += sizeof(*ev) + ev->len;
		}
	}
	return found;
}

int main(int argc, char **argv)
{
	char sub[4096], gap[4096], probe[4096], x[4096], buf[4096];
	int fd, wgap, wdir, wsub, f;

	setup(argc, argv);
	path_in(sub, sizeof(sub), "sub");
	path_in(gap, sizeof(gap), "gap");
	CHECK_SYS(mkdir(sub, 0755));
	CHECK_SYS(mkdir(gap, 0755));
	fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	CHECK(fd >= 0, "inotify_init1: %s", strerror(errno));
	CHECK(dup3(fd, 42, O_CLOEXEC) == 42, "dup3");
	close(fd);
	wgap = inotify_add_watch(42, gap, IN_CREATE);
	wdir = inotify_add_watch(42, workdir, IN_CREATE);
	CHECK(wgap >= 0 && wdir >= 0, "inotify_add_watch: %s", strerror(errno));
	CHECK_SYS(inotify_rm_watch(42, wgap));
	wsub = inotify_add_watch(42, sub, IN_CREATE | IN_DELETE | IN_EXCL_UNLINK);
	CHECK(wsub >= 0, "inotify_add_watch sub: %s", strerror(errno));
	/* The IN_IGNORED of the removed watch. */
	read_events(-1, NULL, 100, 1);
	logmsg("watch descriptors: gap %d dir %d sub %d", wgap, wdir, wsub);

	signal_ready();
	wait_go();

	CHECK(fcntl(42, F_GETFD) == FD_CLOEXEC, "fd 42 lost FD_CLOEXEC");
	CHECK(fcntl(42, F_GETFL) & O_NONBLOCK, "fd 42 lost O_NONBLOCK");
	CHECK(read_file("/proc/self/fdinfo/42", buf, sizeof(buf)) > 0, "fdinfo 42");
	CHECK(strstr(buf, "mask:4000300") != NULL, "sub's mask lost:\n%s", buf);
	read_events(-1, NULL, 0, 0); /* drain ready/go events */
	path_in(probe, sizeof(probe), "probe");
	f = open(probe, O_WRONLY | O_CREAT, 0644);
	CHECK(f >= 0, "create probe");
	close(f);
	CHECK(read_events(wdir, "probe", 2000, 0), "no IN_CREATE for probe under wd %d", wdir);
	snprintf(x, sizeof(x), "%s/x", sub);
	f = open(x, O_WRONLY | O_CREAT, 0644);
	CHECK(f >= 0, "create sub/x");
	close(f);
	CHECK(read_events(wsub, "x", 2000, 0), "no IN_CREATE for sub/x under wd %d", wsub);
	pass();
}
