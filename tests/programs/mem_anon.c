/* Private anonymous memory: a 64 MiB region with a pattern, never-touched
 * holes (must read as zero), pages written with zeros, pages only read (the
 * shared zero page), plus .data and .bss. After restore every byte is
 * compared, then every page must still be writable. */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "common.h"

#define PAGE 4096UL
#define REGION (64UL << 20)
#define NPAGES (REGION / PAGE)

static uint64_t data_arr[512] = { 1, 2, 3, 4, 5 };
static uint64_t bss_arr[8192];

enum kind { HOLE, ZEROED, READ_ONLY, PATTERN };

static enum kind page_kind(size_t i)
{
	if (i % 7 == 3 || (i >= 1000 && i < 1300)) /* scattered holes and a 1.2 MiB gap */
		return HOLE;
	if (i % 11 == 5)
		return ZEROED;
	if (i % 13 == 0)
		return READ_ONLY;
	return PATTERN;
}

static void verify(unsigned char *region, const char *when)
{
	size_t i;
	long off;

	for (i = 0; i < NPAGES; i++) {
		unsigned char *p = region + i * PAGE;
		switch (page_kind(i)) {
		case HOLE:
		case ZEROED:
		case READ_ONLY:
			off = check_zero(p, PAGE);
			CHECK(off < 0, "%s: page %zu (kind %d) byte %ld is 0x%02x, want 0", when, i,
			      page_kind(i), off, off < 0 ? 0 : p[off]);
			break;
		case PATTERN:
			off = check_pattern(p, PAGE, 1000 + i);
			CHECK(off < 0, "%s: page %zu byte %ld differs from the pattern", when, i, off);
			break;
		}
	}
	off = check_pattern(data_arr, sizeof(data_arr), 7);
	CHECK(off < 0, "%s: .data array byte %ld differs", when, off);
	off = check_pattern(bss_arr, sizeof(bss_arr), 8);
	CHECK(off < 0, "%s: .bss array byte %ld differs", when, off);
}

int main(int argc, char **argv)
{
	unsigned char *region;
	volatile unsigned char sink = 0;
	size_t i;

	setup(argc, argv);
	region = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(region != MAP_FAILED, "mmap: %s", strerror(errno));
	for (i = 0; i < NPAGES; i++) {
		unsigned char *p = region + i * PAGE;
		switch (page_kind(i)) {
		case HOLE:
			break;
		case ZEROED:
			memset(p, 0, PAGE);
			break;
		case READ_ONLY:
			sink += p[i % PAGE];
			break;
		case PATTERN:
			fill_pattern(p, PAGE, 1000 + i);
			break;
		}
	}
	fill_pattern(data_arr, sizeof(data_arr), 7);
	fill_pattern(bss_arr, sizeof(bss_arr), 8);
	verify(region, "before checkpoint");

	signal_ready();
	wait_go();

	verify(region, "after restore");
	/* Every page, holes included, is still private and writable. */
	for (i = 0; i < NPAGES; i++)
		fill_pattern(region + i * PAGE, 64, 5000 + i);
	for (i = 0; i < NPAGES; i++) {
		long off = check_pattern(region + i * PAGE, 64, 5000 + i);
		CHECK(off < 0, "page %zu not writable after restore (byte %ld)", i, off);
	}
	pass();
}
