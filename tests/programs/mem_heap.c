/* Heap: many malloc'd blocks (brk-backed) and a large one (mmap-backed by
 * malloc) with patterns; sbrk(0) recorded. After restore: sbrk(0) is the
 * same, the [heap] mapping starts where it did, every block is intact,
 * malloc/free still work, and brk can still grow (sbrk(1 MiB) is usable). */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "common.h"

#define NBLK 2000

static unsigned char *blk[NBLK];
static size_t blk_len[NBLK];

static unsigned long heap_start(void)
{
	static char maps[1 << 20];
	char *l;
	unsigned long lo = 0;

	if (read_file("/proc/self/maps", maps, sizeof(maps)) < 0)
		return 0;
	l = strstr(maps, "[heap]");
	if (!l)
		return 0;
	while (l > maps && l[-1] != '\n')
		l--;
	sscanf(l, "%lx", &lo);
	return lo;
}

int main(int argc, char **argv)
{
	void *brk0, *brk1, *grown;
	unsigned char *big;
	unsigned long hs;
	size_t i;
	long off;

	setup(argc, argv);
	for (i = 0; i < NBLK; i++) {
		blk_len[i] = 1 + mix64(i) % 5000;
		blk[i] = malloc(blk_len[i]);
		CHECK(blk[i], "malloc");
		fill_pattern(blk[i], blk_len[i], 2000 + i);
	}
	for (i = 0; i < NBLK; i += 3) { /* holes in the heap */
		free(blk[i]);
		blk[i] = NULL;
	}
	big = malloc(3 << 20);
	CHECK(big, "malloc big");
	fill_pattern(big, 3 << 20, 99);
	brk0 = sbrk(0);
	hs = heap_start();
	CHECK(hs != 0, "no [heap] in /proc/self/maps");

	signal_ready();
	wait_go();

	brk1 = sbrk(0);
	CHECK(brk1 == brk0, "sbrk(0) is %p after restore, was %p", brk1, brk0);
	CHECK(heap_start() == hs, "[heap] starts at 0x%lx after restore, was 0x%lx", heap_start(), hs);
	for (i = 0; i < NBLK; i++) {
		if (!blk[i])
			continue;
		off = check_pattern(blk[i], blk_len[i], 2000 + i);
		CHECK(off < 0, "heap block %zu (%zu bytes at %p) byte %ld differs", i, blk_len[i], blk[i], off);
	}
	off = check_pattern(big, 3 << 20, 99);
	CHECK(off < 0, "big block byte %ld differs", off);

	grown = sbrk(1 << 20);
	CHECK(grown != (void *)-1, "sbrk(1 MiB) after restore: %s", strerror(errno));
	CHECK(grown == brk0, "sbrk(1 MiB) returned %p, want the old break %p", grown, brk0);
	CHECK(sbrk(0) == (char *)brk0 + (1 << 20), "sbrk(0) after growing is %p", sbrk(0));
	fill_pattern(grown, 1 << 20, 123);
	off = check_pattern(grown, 1 << 20, 123);
	CHECK(off < 0, "grown brk area byte %ld differs", off);
	for (i = 0; i < NBLK; i++) {
		free(blk[i]);
		blk[i] = malloc(100 + i);
		CHECK(blk[i], "malloc after restore");
		fill_pattern(blk[i], 100 + i, 7000 + i);
	}
	for (i = 0; i < NBLK; i++)
		CHECK(check_pattern(blk[i], 100 + i, 7000 + i) < 0, "new block %zu differs", i);
	free(big);
	pass();
}
