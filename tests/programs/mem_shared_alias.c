/* One shared anonymous object mapped twice (mremap with old_size 0 makes a
 * second mapping of the same pages). After restore both mappings show the
 * content and a write through one is seen through the other: the object
 * must be restored once and mapped twice, not copied. */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "common.h"

#define PAGE 4096UL
#define NP 64

int main(int argc, char **argv)
{
	unsigned char *a, *b;
	long off;

	setup(argc, argv);
	a = mmap(NULL, NP * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(a != MAP_FAILED, "mmap: %s", strerror(errno));
	b = mremap(a, 0, NP * PAGE, MREMAP_MAYMOVE);
	CHECK(b != MAP_FAILED, "mremap alias: %s", strerror(errno));
	fill_pattern(a, NP * PAGE, 31);
	CHECK(check_pattern(b, NP * PAGE, 31) < 0, "alias does not show the content before checkpoint");

	signal_ready();
	wait_go();

	off = check_pattern(a, NP * PAGE, 31);
	CHECK(off < 0, "first mapping byte %ld differs", off);
	off = check_pattern(b, NP * PAGE, 31);
	CHECK(off < 0, "second mapping byte %ld differs", off);
	fill_pattern(a + 10 * PAGE, PAGE, 32);
	off = check_pattern(b + 10 * PAGE, PAGE, 32);
	CHECK(off < 0, "a write through the first mapping is not seen through the second (byte %ld)", off);
	fill_pattern(b + 20 * PAGE, PAGE, 33);
	off = check_pattern(a + 20 * PAGE, PAGE, 33);
	CHECK(off < 0, "a write through the second mapping is not seen through the first (byte %ld)", off);
	pass();
}
