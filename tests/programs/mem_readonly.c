/* Read-only memory: a mapping filled and then mprotect(PROT_READ), and one
 * mapped PROT_READ from the start. After restore the content is exact,
 * /proc/self/maps says r--p, and a write faults with SEGV_ACCERR. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

#include "common.h"

#define PAGE 4096UL
#define NP 6

static sigjmp_buf jb;
static void *volatile fault_addr;
static volatile int fault_code;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	fault_addr = si->si_addr;
	fault_code = si->si_code;
	siglongjmp(jb, 1);
}

/* Returns 1 if writing *p faulted with SEGV_ACCERR at p, 0 if the write went through. */
static int write_faults(volatile unsigned char *p)
{
	struct sigaction sa, old;
	int faulted = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, &old);
	fault_addr = NULL;
	fault_code = 0;
	if (sigsetjmp(jb, 1) == 0)
		*p = 0xee;
	else
		faulted = 1;
	sigaction(SIGSEGV, &old, NULL);
	if (faulted) {
		CHECK(fault_addr == (void *)p, "fault at %p, want %p", fault_addr, (void *)p);
		CHECK(fault_code == SEGV_ACCERR, "fault si_code %d, want SEGV_ACCERR", fault_code);
	}
	return faulted;
}

static void check_maps(void *addr, const char *perms, const char *when)
{
	char line[512];

	CHECK(maps_line_for(addr, line, sizeof(line)) == 0, "%s: %p not in /proc/self/maps", when, addr);
	CHECK(strncmp(strchr(line, ' ') + 1, perms, 4) == 0, "%s: maps line '%s', want perms %s", when,
	      line, perms);
}

static void verify(unsigned char *ro, unsigned char *ro0, const char *when)
{
	long off = check_pattern(ro, NP * PAGE, 42);

	CHECK(off < 0, "%s: read-only mapping byte %ld differs", when, off);
	off = check_zero(ro0, 2 * PAGE);
	CHECK(off < 0, "%s: never-written PROT_READ mapping byte %ld not zero", when, off);
	check_maps(ro, "r--p", when);
	check_maps(ro0, "r--p", when);
	CHECK(write_faults(ro), "%s: writing the first read-only page did not fault", when);
	CHECK(write_faults(ro + (NP - 1) * PAGE + 100), "%s: writing the last read-only page did not fault",
	      when);
	CHECK(write_faults(ro0 + PAGE), "%s: writing the PROT_READ mapping did not fault", when);
	off = check_pattern(ro, NP * PAGE, 42);
	CHECK(off < 0, "%s: read-only mapping byte %ld changed by a faulting write", when, off);
}

int main(int argc, char **argv)
{
	unsigned char *ro, *ro0;
	volatile unsigned char sink;

	setup(argc, argv);
	ro = mmap(NULL, NP * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ro != MAP_FAILED, "mmap: %s", strerror(errno));
	fill_pattern(ro, NP * PAGE, 42);
	CHECK_SYS(mprotect(ro, NP * PAGE, PROT_READ));
	ro0 = mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ro0 != MAP_FAILED, "mmap: %s", strerror(errno));
	sink = ro0[0]; /* one page read (zero page), one never touched */
	(void)sink;
	verify(ro, ro0, "before checkpoint");

	signal_ready();
	wait_go();

	verify(ro, ro0, "after restore");
	pass();
}
