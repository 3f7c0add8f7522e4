/* A bigger process: 256 MiB (or argv[2] MiB) of private anonymous memory
 * filled with an xorshift64 stream; after restore every byte is verified.
 * scripts/bench-engine.sh runs it at 1 GiB. */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "common.h"

#define SIZE (256UL << 20)

static uint64_t next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

int main(int argc, char **argv)
{
	uint64_t *m, s;
	size_t size = argc > 2 ? strtoul(argv[2], NULL, 10) << 20 : SIZE;
	size_t i, n = size / 8;

	setup(argc, argv);
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
	s = 0x2545f4914f6cdd1dULL;
	for (i = 0; i < n; i++)
		m[i] = next(&s);

	signal_ready();
	wait_go();

	s = 0x2545f4914f6cdd1dULL;
	for (i = 0; i < n; i++) {
		uint64_t want = next(&s);
		CHECK(m[i] == want, "word %zu (offset 0x%zx, page %zu) is 0x%016llx, want 0x%016llx", i, i * 8,
		      i * 8 / 4096, (unsigned long long)m[i], (unsigned long long)want);
	}
	pass();
}
