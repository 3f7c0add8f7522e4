/* Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS): 1 MiB with a pattern
 * and some never-touched pages. After restore the content is exact and the
 * mapping is still shared ("s" in /proc/self/maps). */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "common.h"

#define PAGE 4096UL
#define NP 256

static int touched(size_t i)
{
	return i % 5 != 2;
}

static void verify(unsigned char *m, const char *when)
{
	size_t i;
	long off;
	char line[512];

	for (i = 0; i < NP; i++) {
		if (touched(i))
			off = check_pattern(m + i * PAGE, PAGE, 300 + i);
		else
			off = check_zero(m + i * PAGE, PAGE);
		CHECK(off < 0, "%s: page %zu (%s) byte %ld differs", when, i, touched(i) ? "pattern" : "hole",
		      off);
	}
	CHECK(maps_line_for(m, line, sizeof(line)) == 0, "%s: mapping not in maps", when);
	CHECK(strncmp(strchr(line, ' ') + 1, "rw-s", 4) == 0, "%s: maps line '%s' is not rw-s", when, line);
	CHECK(strstr(line, "/dev/zero") || strstr(line, "SYSV"), "%s: maps line '%s' is not shmem", when,
	      line);
}

int main(int argc, char **argv)
{
	unsigned char *m;
	size_t i;

	setup(argc, argv);
	m = mmap(NULL, NP * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
	for (i = 0; i < NP; i++)
		if (touched(i))
			fill_pattern(m + i * PAGE, PAGE, 300 + i);
	verify(m, "before checkpoint");

	signal_ready();
	wait_go();

	verify(m, "after restore");
	fill_pattern(m, NP * PAGE, 301);
	CHECK(check_pattern(m, NP * PAGE, 301) < 0, "not writable after restore");
	pass();
}
