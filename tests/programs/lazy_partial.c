/* A process that needs part of its memory for its "first request": 64 MiB
 * (argv[2] MiB) of private anonymous memory with a pattern, of which only
 * the first 8 MiB (argv[3] MiB) are read and verified after go. A lazy
 * restore records those pages as the snapshot's working set, and the next
 * one pushes them before the process resumes (runtime/tests/lazy_workingset.rs). */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "common.h"

int main(int argc, char **argv)
{
	size_t size = (argc > 2 ? strtoul(argv[2], NULL, 10) : 64) << 20;
	size_t used = (argc > 3 ? strtoul(argv[3], NULL, 10) : 8) << 20;
	unsigned char *m;
	long bad;

	setup(argc, argv);
	CHECK(used <= size, "used %zu > size %zu", used, size);
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
	fill_pattern(m, size, 11);

	signal_ready();
	wait_go();

	bad = check_pattern(m, used, 11);
	CHECK(bad < 0, "byte %ld of the used part differs", bad);
	pass();
}
