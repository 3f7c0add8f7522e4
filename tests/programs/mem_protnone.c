/* PROT_NONE memory: a never-accessed guard region, a region that had content
 * before mprotect(PROT_NONE), and a PROT_NONE page splitting a RW region.
 * After restore: maps say ---p, access faults, and mprotect back to
 * readable shows the old content. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

#include "common.h"

#define PAGE 4096UL

static sigjmp_buf jb;
static void *volatile fault_addr;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	fault_addr = si->si_addr;
	siglongjmp(jb, 1);
}

static int read_faults(volatile unsigned char *p)
{
	struct sigaction sa, old;
	volatile unsigned char sink;
	int faulted = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, &old);
	fault_addr = NULL;
	if (sigsetjmp(jb, 1) == 0) {
		sink = *p;
		(void)sink;
	} else {
		faulted = 1;
	}
	sigaction(SIGSEGV, &old, NULL);
	if (faulted)
		CHECK(fault_addr == (void *)p, "fault at %p, want %p", fault_addr, (void *)p);
	return faulted;
}

static void check_perms(void *addr, const char *perms, const char *what)
{
	char line[512];

	CHECK(maps_line_for(addr, line, sizeof(line)) == 0, "%s: %p not in /proc/self/maps", what, addr);
	CHECK(strncmp(strchr(line, ' ') + 1, perms, 4) == 0, "%s: maps line '%s', want perms %s", what,
	      line, perms);
}

int main(int argc, char **argv)
{
	unsigned char *guard, *hidden, *split;
	long off;

	setup(argc, argv);
	guard = mmap(NULL, 16 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(guard != MAP_FAILED, "mmap: %s", strerror(errno));
	hidden = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(hidden != MAP_FAILED, "mmap: %s", strerror(errno));
	fill_pattern(hidden, 8 * PAGE, 77);
	CHECK_SYS(mprotect(hidden, 8 * PAGE, PROT_NONE));
	split = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(split != MAP_FAILED, "mmap: %s", strerror(errno));
	fill_pattern(split, 3 * PAGE, 78);
	CHECK_SYS(mprotect(split + PAGE, PAGE, PROT_NONE));

	signal_ready();
	wait_go();

	check_perms(guard, "---p", "guard region");
	check_perms(hidden, "---p", "hidden region");
	check_perms(split, "rw-p", "split region first page");
	check_perms(split + PAGE, "---p", "split region middle page");
	check_perms(split + 2 * PAGE, "rw-p", "split region last page");
	CHECK(read_faults(guard), "reading the PROT_NONE guard did not fault");
	CHECK(read_faults(guard + 15 * PAGE), "reading the end of the PROT_NONE guard did not fault");
	CHECK(read_faults(hidden + 3 * PAGE), "reading the hidden region did not fault");
	CHECK(read_faults(split + PAGE), "reading the split middle page did not fault");

	{
		static unsigned char want[3 * PAGE];
		fill_pattern(want, sizeof(want), 78);
		CHECK(memcmp(split, want, PAGE) == 0, "split first page differs");
		CHECK(memcmp(split + 2 * PAGE, want + 2 * PAGE, PAGE) == 0, "split last page differs");
		CHECK_SYS(mprotect(split + PAGE, PAGE, PROT_READ));
		CHECK(memcmp(split + PAGE, want + PAGE, PAGE) == 0,
		      "split middle page (PROT_NONE at checkpoint) differs after mprotect(PROT_READ)");
	}

	CHECK_SYS(mprotect(hidden, 8 * PAGE, PROT_READ));
	off = check_pattern(hidden, 8 * PAGE, 77);
	CHECK(off < 0, "hidden region (PROT_NONE at checkpoint) byte %ld differs after mprotect(PROT_READ)",
	      off);

	CHECK_SYS(mprotect(guard, 16 * PAGE, PROT_READ | PROT_WRITE));
	off = check_zero(guard, 16 * PAGE);
	CHECK(off < 0, "guard region byte %ld not zero", off);
	fill_pattern(guard, 16 * PAGE, 79);
	off = check_pattern(guard, 16 * PAGE, 79);
	CHECK(off < 0, "guard region not writable after mprotect (byte %ld)", off);
	pass();
}
