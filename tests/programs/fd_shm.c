/* A POSIX shared memory object (/dev/shm, tmpfs): open by fd and mapped
 * MAP_SHARED. After restore the fd is the same inode at the same offset,
 * the mapping holds the pattern, and the fd and the mapping are one object
 * (a write through one is seen through the other). */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "common.h"

#define SHM_SIZE (1 << 20)

int main(int argc, char **argv)
{
	char name[64], path[128];
	struct stat before, after;
	unsigned char *map, b;
	int fd;
	long bad;

	setup(argc, argv);
	snprintf(name, sizeof(name), "/snaprun-test-%d", (int)getpid());
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK_SYS(fd);
	CHECK_SYS(ftruncate(fd, SHM_SIZE));
	map = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(map != MAP_FAILED, "mmap: %s", strerror(errno));
	fill_pattern(map, SHM_SIZE, 17);
	CHECK_SYS(lseek(fd, 4096, SEEK_SET));
	CHECK_SYS(fstat(fd, &before));

	signal_ready();
	wait_go();

	CHECK_SYS(fstat(fd, &after));
	CHECK(after.st_ino == before.st_ino && after.st_dev == before.st_dev,
	      "fd is inode %lu, want %lu (%s)", (unsigned long)after.st_ino, (unsigned long)before.st_ino, path);
	CHECK(lseek(fd, 0, SEEK_CUR) == 4096, "offset %ld, want 4096", (long)lseek(fd, 0, SEEK_CUR));
	bad = check_pattern(map, SHM_SIZE, 17);
	CHECK(bad < 0, "mapping differs from the pattern at byte %ld", bad);
	/* One object: a write through the fd shows in the mapping. */
	b = (unsigned char)(map[4096] ^ 0xff);
	CHECK(write(fd, &b, 1) == 1, "write: %s", strerror(errno));
	CHECK(map[4096] == b, "a write through the fd is not seen in the mapping");
	shm_unlink(name);
	pass();
}
