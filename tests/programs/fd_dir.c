/* A directory fd (O_DIRECTORY) as fd 10. After restore it is the same
 * inode, openat through it finds the marker file, and fchdir works. */
#define _GNU_SOURCE
#include <dirent.h>

#include "common.h"

int main(int argc, char **argv)
{
	char path[4096], cwd[4096], buf[64];
	struct stat st0, st;
	int fd;

	setup(argc, argv);
	path_in(path, sizeof(path), "d1");
	CHECK_SYS(mkdir(path, 0755));
	fd = open(path, O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	CHECK(dup2(fd, 10) == 10, "dup2");
	close(fd);
	fd = openat(10, "marker", O_WRONLY | O_CREAT, 0644);
	CHECK(fd >= 0 && write_all(fd, "marker-content", 14) == 0, "writing marker");
	close(fd);
	CHECK_SYS(fstat(10, &st0));

	signal_ready();
	wait_go();

	CHECK_SYS(fstat(10, &st));
	CHECK(S_ISDIR(st.st_mode), "fd 10 is not a directory after restore (mode 0%o)", st.st_mode);
	CHECK(st.st_ino == st0.st_ino && st.st_dev == st0.st_dev, "fd 10 is inode %lu, want %lu",
	      (unsigned long)st.st_ino, (unsigned long)st0.st_ino);
	CHECK((fcntl(10, F_GETFL) & O_DIRECTORY) != 0, "fd 10 lost O_DIRECTORY");
	fd = openat(10, "marker", O_RDONLY);
	CHECK(fd >= 0, "openat(10, marker): %s", strerror(errno));
	memset(buf, 0, sizeof(buf));
	CHECK(read(fd, buf, sizeof(buf) - 1) == 14 && strcmp(buf, "marker-content") == 0, "marker reads '%s'",
	      buf);
	close(fd);
	CHECK_SYS(fchdir(10));
	CHECK(getcwd(cwd, sizeof(cwd)) != NULL, "getcwd: %s", strerror(errno));
	{
		char real[4096];
		CHECK(realpath(path, real) != NULL, "realpath");
		CHECK(strcmp(cwd, real) == 0, "cwd after fchdir is %s, want %s", cwd, real);
	}
	pass();
}
