/* What a process does to its memory while a lazy restore still has pages
 * to bring (the test holds the pager's streaming back): 8 MiB of a
 * pattern, then after go, before reading any of it:
 *   A  madvise(MADV_DONTNEED) of [1 MiB + 64 KiB, 2 MiB + 64 KiB), half of
 *      it read first: zeros after;
 *   B  mremap of [3 MiB, 5 MiB) to another address: the pattern there;
 *   C  munmap of [6 MiB, 7 MiB) and a new anonymous mapping in its place:
 *      zeros;
 *   the rest: the pattern.
 * And the kernel's own accesses to missing pages (they must fault to the
 * pager too, not fail): write(2) of 64 KiB of a second region K to a pipe
 * (the kernel reads it), read(2) of /dev/zero into 64 KiB of K (the kernel
 * writes it). */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "common.h"

#define MIB (1UL << 20)
#define SIZE (8 * MIB)

static void expect_zero(const unsigned char *p, size_t len, const char *what)
{
	long bad = check_zero(p, len);

	CHECK(bad < 0, "%s: byte %ld is not zero", what, bad);
}

/* The pattern of the whole region, checked over [off, off + len) of it. */
static void expect_pattern(const unsigned char *p, size_t off, size_t len, const char *what)
{
	static unsigned char *want;
	size_t i;

	if (!want) {
		want = malloc(SIZE);
		CHECK(want, "malloc");
		fill_pattern(want, SIZE, 31);
	}
	for (i = 0; i < len; i++)
		CHECK(p[i] == want[off + i], "%s: byte %zu (offset %#zx) differs", what, i, off + i);
}

/* K: 1 MiB of another pattern; the kernel reads [0, 64 KiB) and writes
 * zeros over [128 KiB, 192 KiB). */
static void kernel_accesses(unsigned char *k)
{
	static unsigned char got[64 * 1024], want[1 << 20];
	int p[2], z;

	fill_pattern(want, sizeof(want), 32);
	CHECK_SYS(pipe(p));
	CHECK_SYS(fcntl(p[1], F_SETPIPE_SZ, sizeof(got)));
	CHECK(write(p[1], k, sizeof(got)) == (ssize_t)sizeof(got), "write(pipe, K): %s", strerror(errno));
	CHECK(read_full(p[0], got, sizeof(got)) == (ssize_t)sizeof(got), "read(pipe): %s", strerror(errno));
	CHECK(memcmp(got, want, sizeof(got)) == 0, "what the kernel read from K differs");
	z = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	CHECK_SYS(z);
	CHECK(read(z, k + 128 * 1024, 64 * 1024) == 64 * 1024, "read(/dev/zero, K): %s", strerror(errno));
	close(z);
	close(p[0]);
	close(p[1]);
	expect_zero(k + 128 * 1024, 64 * 1024, "K after read(/dev/zero)");
	CHECK(memcmp(k, want, 128 * 1024) == 0, "K before the zeros differs");
	CHECK(memcmp(k + 192 * 1024, want + 192 * 1024, sizeof(want) - 192 * 1024) == 0, "K after the zeros differs");
}

int main(int argc, char **argv)
{
	unsigned char *m, *b, *c, *spot, *k;
	size_t a_off = MIB + 64 * 1024, a_len = MIB;
	volatile unsigned char sink = 0;
	size_t i;

	setup(argc, argv);
	m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
	fill_pattern(m, SIZE, 31);
	k = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(k != MAP_FAILED, "mmap K: %s", strerror(errno));
	fill_pattern(k, MIB, 32);

	signal_ready();
	wait_go();

	kernel_accesses(k);

	/* A: read the first half (those pages come in), then drop it all. */
	for (i = 0; i < a_len / 2; i += 4096)
		sink += m[a_off + i];
	CHECK_SYS(madvise(m + a_off, a_len, MADV_DONTNEED));

	/* B: move 2 MiB to a free place (reserved, then replaced). */
	spot = mmap(NULL, 2 * MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(spot != MAP_FAILED, "mmap spot: %s", strerror(errno));
	b = mremap(m + 3 * MIB, 2 * MIB, 2 * MIB, MREMAP_MAYMOVE | MREMAP_FIXED, spot);
	CHECK(b == spot, "mremap: %s", strerror(errno));

	/* C: unmap 1 MiB and map fresh memory there. */
	CHECK_SYS(munmap(m + 6 * MIB, MIB));
	c = mmap(m + 6 * MIB, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	CHECK(c == m + 6 * MIB, "mmap over C: %s", strerror(errno));

	expect_zero(m + a_off, a_len, "A after MADV_DONTNEED");
	expect_zero(m + a_off, a_len, "A read again");
	expect_pattern(b, 3 * MIB, 2 * MIB, "B moved");
	expect_zero(c, MIB, "C mapped anew");
	expect_pattern(m, 0, a_off, "before A");
	expect_pattern(m + a_off + a_len, a_off + a_len, 3 * MIB - a_off - a_len, "between A and B");
	expect_pattern(m + 5 * MIB, 5 * MIB, MIB, "between B and C");
	expect_pattern(m + 7 * MIB, 7 * MIB, MIB, "after C");
	(void)sink;
	pass();
}
