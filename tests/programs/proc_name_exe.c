/* Process name and exe: prctl(PR_SET_NAME, "snaptest-x"). After restore
 * PR_GET_NAME, /proc/self/comm and the comm in /proc/self/stat say
 * snaptest-x, and readlink /proc/self/exe is what it was. */
#define _GNU_SOURCE
#include <sys/prctl.h>

#include "common.h"

int main(int argc, char **argv)
{
	char exe0[4096], exe1[4096], name[32], comm[64], stat[1024];
	ssize_t n;

	setup(argc, argv);
	CHECK_SYS(prctl(PR_SET_NAME, "snaptest-x", 0, 0, 0));
	n = readlink("/proc/self/exe", exe0, sizeof(exe0) - 1);
	CHECK(n > 0, "readlink exe");
	exe0[n] = 0;

	signal_ready();
	wait_go();

	memset(name, 0, sizeof(name));
	CHECK_SYS(prctl(PR_GET_NAME, name, 0, 0, 0));
	CHECK(strcmp(name, "snaptest-x") == 0, "PR_GET_NAME says '%s'", name);
	CHECK(read_file("/proc/self/comm", comm, sizeof(comm)) > 0 && strcmp(comm, "snaptest-x\n") == 0,
	      "/proc/self/comm says '%s'", comm);
	CHECK(read_file("/proc/self/stat", stat, sizeof(stat)) > 0 && strstr(stat, "(snaptest-x)"),
	      "/proc/self/stat says '%.60s'", stat);
	n = readlink("/proc/self/exe", exe1, sizeof(exe1) - 1);
	CHECK(n > 0, "readlink /proc/self/exe after restore: %s", strerror(errno));
	exe1[n] = 0;
	CHECK(strcmp(exe0, exe1) == 0, "/proc/self/exe is %s after restore, want %s", exe1, exe0);
	pass();
}
