/* A small process for the lifecycle tests (restore twice, leave-running,
 * inspect, corrupt images): 8 MiB of pattern, a counter, a file fd with an
 * offset. On go it verifies them. */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "common.h"

#define SIZE (8UL << 20)

static volatile uint64_t counter;

int main(int argc, char **argv)
{
	static unsigned char data[4096], buf[100];
	unsigned char *m;
	char path[4096];
	long off;
	int fd;

	setup(argc, argv);
	m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
	fill_pattern(m, SIZE, 2024);
	fill_pattern(data, sizeof(data), 2025);
	path_in(path, sizeof(path), "life.bin");
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && write_all(fd, data, sizeof(data)) == 0, "writing %s", path);
	CHECK(dup2(fd, 10) == 10, "dup2");
	close(fd);
	CHECK_SYS(lseek(10, 1234, SEEK_SET));
	counter = 41;

	signal_ready();
	wait_go();

	counter++;
	CHECK(counter == 42, "counter is %llu", (unsigned long long)counter);
	off = check_pattern(m, SIZE, 2024);
	CHECK(off < 0, "memory byte %ld differs", off);
	CHECK(lseek(10, 0, SEEK_CUR) == 1234, "fd 10 offset %lld", (long long)lseek(10, 0, SEEK_CUR));
	CHECK(read(10, buf, 100) == 100 && memcmp(buf, data + 1234, 100) == 0, "fd 10 read");
	pass();
}
