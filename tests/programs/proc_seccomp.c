/* A process with a seccomp filter (one that allows everything): checkpoint
 * must refuse it, naming the seccomp filter, and leave it running; the
 * program then checks that the filter is still there. */
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>

#include "common.h"

int main(int argc, char **argv)
{
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = { 1, &allow };
	char mode[16];

	setup(argc, argv);
	CHECK_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
	CHECK_SYS(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0));

	signal_ready();
	wait_go();

	CHECK(status_field("Seccomp", mode, sizeof(mode)) == 0 && strcmp(mode, "2") == 0,
	      "Seccomp is %s, want 2 (filter)", mode);
	pass();
}
