/* Private file mappings: WORKDIR/mapped.dat (8 pages of known content)
 * mapped MAP_PRIVATE RW; some pages written (copy-on-write), some only read,
 * some never touched. A second PROT_READ mapping starts at file page 2.
 * After restore: written pages keep the written bytes, all others show the
 * file, the file itself is unchanged, and /proc/self/maps names the file. */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "common.h"

#define PAGE 4096UL
#define NP 8

static int written(size_t i)
{
	return i == 1 || i == 4 || i == 5;
}

static void check_maps_path(void *addr, const char *path, unsigned long pgoff, const char *what)
{
	char line[1024];
	unsigned long lo, hi, off;
	char perms[8];
	size_t pl = strlen(path), ll;

	CHECK(maps_line_for(addr, line, sizeof(line)) == 0, "%s: %p not in /proc/self/maps", what, addr);
	CHECK(sscanf(line, "%lx-%lx %7s %lx", &lo, &hi, perms, &off) == 4, "%s: bad maps line '%s'", what, line);
	ll = strlen(line);
	CHECK(ll >= pl && strcmp(line + ll - pl, path) == 0, "%s: maps line '%s' does not name %s", what,
	      line, path);
	CHECK(lo == (unsigned long)addr, "%s: maps line '%s' does not start at %p", what, line, addr);
	CHECK(off == pgoff, "%s: maps line '%s' has file offset 0x%lx, want 0x%lx", what, line, off, pgoff);
	CHECK(perms[3] == 'p', "%s: maps line '%s' is not private", what, line);
}

static void verify(unsigned char *rw, unsigned char *ro, const char *path, const char *when)
{
	size_t i;
	long off;
	static unsigned char file[NP * PAGE];
	int fd;

	for (i = 0; i < NP; i++) {
		off = check_pattern(rw + i * PAGE, PAGE, written(i) ? 500 + i : 100 + i);
		CHECK(off < 0, "%s: rw mapping page %zu (%s) byte %ld differs", when, i,
		      written(i) ? "written" : "file", off);
	}
	for (i = 0; i < NP - 2; i++) {
		off = check_pattern(ro + i * PAGE, PAGE, 100 + i + 2);
		CHECK(off < 0, "%s: ro mapping page %zu (file page %zu) byte %ld differs", when, i, i + 2, off);
	}
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0, "%s: open %s: %s", when, path, strerror(errno));
	CHECK(read_full(fd, file, sizeof(file)) == (ssize_t)sizeof(file), "%s: short read of %s", when, path);
	close(fd);
	for (i = 0; i < NP; i++) {
		off = check_pattern(file + i * PAGE, PAGE, 100 + i);
		CHECK(off < 0, "%s: the file itself changed: page %zu byte %ld", when, i, off);
	}
	check_maps_path(rw, path, 0, "rw mapping");
	check_maps_path(ro, path, 2 * PAGE, "ro mapping");
}

int main(int argc, char **argv)
{
	char path[4096];
	static unsigned char buf[NP * PAGE];
	unsigned char *rw, *ro;
	volatile unsigned char sink = 0;
	size_t i;
	int fd;

	setup(argc, argv);
	path_in(path, sizeof(path), "mapped.dat");
	for (i = 0; i < NP; i++)
		fill_pattern(buf + i * PAGE, PAGE, 100 + i);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	CHECK(write_all(fd, buf, sizeof(buf)) == 0, "write: %s", strerror(errno));
	CHECK_SYS(fsync(fd));
	rw = mmap(NULL, NP * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(rw != MAP_FAILED, "mmap rw: %s", strerror(errno));
	ro = mmap(NULL, (NP - 2) * PAGE, PROT_READ, MAP_PRIVATE, fd, 2 * PAGE);
	CHECK(ro != MAP_FAILED, "mmap ro: %s", strerror(errno));
	close(fd); /* only the mappings hold the file now */

	for (i = 0; i < NP; i++)
		if (written(i))
			fill_pattern(rw + i * PAGE, PAGE, 500 + i);
	sink += rw[0] + rw[2 * PAGE + 7] + ro[PAGE]; /* read pages 0 and 2 of rw, 3 of the file via ro */
	(void)sink;
	verify(rw, ro, path, "before checkpoint");

	signal_ready();
	wait_go();

	verify(rw, ro, path, "after restore");
	/* Copy-on-write still works on a page that was only read. */
	fill_pattern(rw + 2 * PAGE, PAGE, 900);
	CHECK(check_pattern(rw + 2 * PAGE, PAGE, 900) < 0, "page 2 not writable after restore");
	{
		static unsigned char pg[PAGE];
		int fd2 = open(path, O_RDONLY);
		CHECK(fd2 >= 0 && pread(fd2, pg, PAGE, 2 * PAGE) == (ssize_t)PAGE, "pread %s", path);
		close(fd2);
		CHECK(check_pattern(pg, PAGE, 102) < 0, "a private write reached the file");
		CHECK(check_pattern(ro, PAGE, 102) < 0, "a private write is seen through the other mapping");
	}
	pass();
}
