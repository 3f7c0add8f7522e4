/* A file that is open but deleted (a temp file): fd 10 on WORKDIR/gone.bin,
 * 20 KiB of pattern, offset 5000, then unlinked. After restore the fd
 * still reads the content from the offset and fstat says st_nlink 0. */
#define _GNU_SOURCE
#include "common.h"

int main(int argc, char **argv)
{
	static unsigned char data[20480], buf[20480];
	char path[4096];
	struct stat st;
	int fd;

	setup(argc, argv);
	fill_pattern(data, sizeof(data), 55);
	path_in(path, sizeof(path), "gone.bin");
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && write_all(fd, data, sizeof(data)) == 0, "writing %s", path);
	CHECK(dup2(fd, 10) == 10, "dup2");
	close(fd);
	CHECK_SYS(lseek(10, 5000, SEEK_SET));
	CHECK_SYS(unlink(path));

	signal_ready();
	wait_go();

	CHECK_SYS(fstat(10, &st));
	CHECK(st.st_nlink == 0, "the deleted file has st_nlink %lu after restore", (unsigned long)st.st_nlink);
	CHECK(st.st_size == (off_t)sizeof(data), "the deleted file has size %lld", (long long)st.st_size);
	CHECK(lseek(10, 0, SEEK_CUR) == 5000, "offset %lld, want 5000", (long long)lseek(10, 0, SEEK_CUR));
	CHECK(read_full(10, buf, sizeof(buf)) == (ssize_t)sizeof(data) - 5000, "short read");
	CHECK(memcmp(buf, data + 5000, sizeof(data) - 5000) == 0, "content differs");
	CHECK(access(path, F_OK) != 0, "%s exists again after restore", path);
	pass();
}
