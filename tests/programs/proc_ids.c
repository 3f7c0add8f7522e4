/* Session, process group and credentials: setsid() (the process is a
 * session and group leader), setresgid(0, 4321, 0) and supplementary
 * groups {4321, 4322, 4323}. After restore getsid/getpgid are its pid
 * and the ids and groups are the same. */
#define _GNU_SOURCE
#include <grp.h>

#include "common.h"

int main(int argc, char **argv)
{
	gid_t groups[] = { 4321, 4322, 4323 }, now[64];
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	pid_t me;
	int n, i;

	setup(argc, argv);
	me = getpid();
	CHECK(setsid() == me, "setsid: %s", strerror(errno));
	CHECK_SYS(setgroups(3, groups));
	CHECK_SYS(setresgid(0, 4321, 0));

	signal_ready();
	wait_go();

	CHECK(getsid(0) == me, "getsid is %d after restore, want %d", (int)getsid(0), (int)me);
	CHECK(getpgid(0) == me, "getpgid is %d after restore, want %d", (int)getpgid(0), (int)me);
	CHECK_SYS(getresuid(&ru, &eu, &su));
	CHECK(ru == 0 && eu == 0 && su == 0, "uids %u %u %u", ru, eu, su);
	CHECK_SYS(getresgid(&rg, &eg, &sg));
	CHECK(rg == 0 && eg == 4321 && sg == 0, "gids %u %u %u, want 0 4321 0", rg, eg, sg);
	n = getgroups(64, now);
	CHECK(n == 3, "%d supplementary groups, want 3", n);
	for (i = 0; i < 3; i++)
		CHECK(now[i] == groups[i], "group %d is %u, want %u", i, now[i], groups[i]);
	pass();
}
