/* The alternate signal stack: sigaltstack set; after restore it is the
 * same, and an SA_ONSTACK handler runs on it (a local's address lies in it,
 * and sigaltstack says SS_ONSTACK inside the handler). */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/mman.h>

#include "common.h"

#define ALT_SIZE (64 * 1024)

static volatile uintptr_t local_addr;
static volatile int in_flags = -1;

static void on_usr2(int sig)
{
	volatile int here = sig;
	stack_t cur;

	local_addr = (uintptr_t)&here;
	if (sigaltstack(NULL, &cur) == 0)
		in_flags = cur.ss_flags;
}

static void check_handler(const stack_t *ss, const char *when)
{
	local_addr = 0;
	in_flags = -1;
	CHECK_SYS(raise(SIGUSR2));
	CHECK(local_addr >= (uintptr_t)ss->ss_sp && local_addr < (uintptr_t)ss->ss_sp + ss->ss_size,
	      "%s: the SA_ONSTACK handler ran at %p, not on the alternate stack %p+%zu", when,
	      (void *)local_addr, ss->ss_sp, ss->ss_size);
	CHECK(in_flags == SS_ONSTACK, "%s: sigaltstack in the handler says flags %d, want SS_ONSTACK", when,
	      in_flags);
}

int main(int argc, char **argv)
{
	stack_t ss, now;
	struct sigaction sa;

	setup(argc, argv);
	ss.ss_sp = mmap(NULL, ALT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ss.ss_sp != MAP_FAILED, "mmap: %s", strerror(errno));
	ss.ss_size = ALT_SIZE;
	ss.ss_flags = 0;
	CHECK_SYS(sigaltstack(&ss, NULL));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2;
	sa.sa_flags = SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(SIGUSR2, &sa, NULL));
	check_handler(&ss, "before checkpoint");

	signal_ready();
	wait_go();

	CHECK_SYS(sigaltstack(NULL, &now));
	CHECK(now.ss_sp == ss.ss_sp && now.ss_size == ss.ss_size && now.ss_flags == 0,
	      "sigaltstack after restore: sp %p size %zu flags %d, want sp %p size %zu flags 0", now.ss_sp,
	      now.ss_size, now.ss_flags, ss.ss_sp, ss.ss_size);
	check_handler(&ss, "after restore");
	pass();
}
