/* Resource limits: several changed (soft and hard). After restore every
 * getrlimit value and the whole /proc/self/limits text are the same.
 * Hard limits are only lowered: raising one needs CAP_SYS_RESOURCE. */
#define _GNU_SOURCE
#include <sys/resource.h>

#include "common.h"

static const char *names[RLIM_NLIMITS] = { "CPU",     "FSIZE",  "DATA",   "STACK",      "CORE",
					   "RSS",     "NPROC",  "NOFILE", "MEMLOCK",    "AS",
					   "LOCKS",   "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO",
					   "RTTIME" };

static void set(int res, rlim_t soft, rlim_t hard)
{
	struct rlimit rl = { soft, hard };

	CHECK(setrlimit(res, &rl) == 0, "setrlimit(%s): %s", names[res], strerror(errno));
}

int main(int argc, char **argv)
{
	struct rlimit before[RLIM_NLIMITS], now;
	static char lim0[8192], lim1[8192];
	int i;

	setup(argc, argv);
	set(RLIMIT_NOFILE, 200, 4096);
	set(RLIMIT_CORE, 0, 1 << 20);
	set(RLIMIT_CPU, 100000, RLIM_INFINITY);
	set(RLIMIT_FSIZE, 1UL << 30, RLIM_INFINITY);
	set(RLIMIT_MEMLOCK, 1 << 16, 1 << 22);
	set(RLIMIT_MSGQUEUE, 12345, 123456);
	set(RLIMIT_SIGPENDING, 777, 888);
	for (i = 0; i < RLIM_NLIMITS; i++)
		CHECK_SYS(getrlimit(i, &before[i]));
	CHECK(read_file("/proc/self/limits", lim0, sizeof(lim0)) > 0, "read limits");

	signal_ready();
	wait_go();

	for (i = 0; i < RLIM_NLIMITS; i++) {
		CHECK_SYS(getrlimit(i, &now));
		CHECK(now.rlim_cur == before[i].rlim_cur && now.rlim_max == before[i].rlim_max,
		      "RLIMIT_%s is %llu/%llu after restore, want %llu/%llu", names[i],
		      (unsigned long long)now.rlim_cur, (unsigned long long)now.rlim_max,
		      (unsigned long long)before[i].rlim_cur, (unsigned long long)before[i].rlim_max);
	}
	CHECK(read_file("/proc/self/limits", lim1, sizeof(lim1)) > 0, "read limits");
	CHECK(strcmp(lim0, lim1) == 0, "/proc/self/limits differs:\n%s\nwas:\n%s", lim1, lim0);
	pass();
}
