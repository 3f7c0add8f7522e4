/* Capabilities and no_new_privs, per thread. As root the program drops
 * CAP_NET_RAW from its bounding set, keeps capabilities across a change to
 * uid/gid 1000, narrows them to permitted {CHOWN, NET_BIND_SERVICE},
 * effective and inheritable {NET_BIND_SERVICE}, raises NET_BIND_SERVICE in
 * the ambient set, sets no_new_privs, then starts a second thread (which
 * inherits all that). After restore both threads must show the same
 * Cap*, NoNewPrivs and Uid lines in /proc/thread-self/status as before
 * (not root's full sets), and the uid must still be 1000. */
#define _GNU_SOURCE
#include <linux/capability.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "common.h"

static char before_main[512], before_thread[512], after_thread[512];
static volatile int thread_ready, go_flag;

/* The lines of /proc/thread-self/status that hold credentials. */
static void creds_of_this_thread(char *out, size_t cap)
{
	static const char *const keys[] = { "Uid:", "Gid:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:",
					    "NoNewPrivs:" };
	char st[8192], *line, *save = NULL;
	size_t n = 0;

	out[0] = 0;
	if (read_file("/proc/thread-self/status", st, sizeof(st)) < 0)
		return;
	for (line = strtok_r(st, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (strncmp(line, keys[i], strlen(keys[i])) == 0)
				n += snprintf(out + n, cap - n, "%s\n", line);
}

static void *thread_main(void *arg)
{
	(void)arg;
	creds_of_this_thread(before_thread, sizeof(before_thread));
	thread_ready = 1;
	while (!go_flag) {
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	creds_of_this_thread(after_thread, sizeof(after_thread));
	return NULL;
}

int main(int argc, char **argv)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	uint32_t bind = 1u << CAP_NET_BIND_SERVICE, chown_ = 1u << CAP_CHOWN;
	char now[512];
	pthread_t t;

	setup(argc, argv);
	/* The files of the protocol are written as uid 1000 from here on. */
	CHECK_SYS(chmod(workdir, 0777));
	CHECK_SYS(prctl(PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0));
	CHECK_SYS(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
	CHECK_SYS(syscall(SYS_setresgid, 1000, 1000, 1000));
	CHECK_SYS(syscall(SYS_setresuid, 1000, 1000, 1000));
	memset(data, 0, sizeof(data));
	data[0].permitted = bind | chown_;
	data[0].effective = bind;
	data[0].inheritable = bind;
	CHECK_SYS(syscall(SYS_capset, &hdr, data));
	CHECK_SYS(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0));
	CHECK_SYS(prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0));
	CHECK_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
	creds_of_this_thread(before_main, sizeof(before_main));
	CHECK(strstr(before_main, "CapEff:\t0000000000000400") != NULL, "setup: %s", before_main);
	CHECK(pthread_create(&t, NULL, thread_main, NULL) == 0, "pthread_create");
	while (!thread_ready) {
		struct timespec ts = { 0, 1000 * 1000 };
		nanosleep(&ts, NULL);
	}

	signal_ready();
	wait_go();

	go_flag = 1;
	CHECK(pthread_join(t, NULL) == 0, "pthread_join");
	creds_of_this_thread(now, sizeof(now));
	CHECK(strcmp(now, before_main) == 0, "main thread credentials after restore:\n%s\nbefore:\n%s", now,
	      before_main);
	CHECK(strcmp(after_thread, before_thread) == 0, "second thread credentials after restore:\n%s\nbefore:\n%s",
	      after_thread, before_thread);
	CHECK(getuid() == 1000 && geteuid() == 1000, "uid %d euid %d", (int)getuid(), (int)geteuid());
	CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs lost");
	pass();
}
