/* Regular files with offsets and flags: fd 10 O_RDONLY at offset 1000,
 * fd 11 O_WRONLY|O_APPEND, fd 12 O_RDWR at offset 3000. After restore the
 * fd numbers, offsets, F_GETFL flags and inodes are the same, reading
 * continues from the offset, appending appends and writing writes there. */
#define _GNU_SOURCE
#include "common.h"

#define DATA_LEN 65536

struct fdstate {
	int fd;
	off_t off;
	int fl;
	dev_t dev;
	ino_t ino;
};

static void record(struct fdstate *s, int fd)
{
	struct stat st;

	s->fd = fd;
	s->off = lseek(fd, 0, SEEK_CUR);
	s->fl = fcntl(fd, F_GETFL);
	CHECK_SYS(fstat(fd, &st));
	s->dev = st.st_dev;
	s->ino = st.st_ino;
}

static void compare(const struct fdstate *want, const char *what)
{
	struct fdstate now;

	CHECK(fcntl(want->fd, F_GETFD) >= 0, "%s: fd %d is not open after restore", what, want->fd);
	record(&now, want->fd);
	CHECK(now.off == want->off, "%s: fd %d offset %lld, want %lld", what, want->fd, (long long)now.off,
	      (long long)want->off);
	CHECK(now.fl == want->fl, "%s: fd %d F_GETFL 0%o, want 0%o", what, want->fd, now.fl, want->fl);
	CHECK(now.dev == want->dev && now.ino == want->ino, "%s: fd %d is inode %lu, want %lu", what,
	      want->fd, (unsigned long)now.ino, (unsigned long)want->ino);
}

static int open_at(const char *name, int flags, int num)
{
	char path[4096];
	int fd;

	path_in(path, sizeof(path), name);
	fd = open(path, flags, 0644);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	CHECK(dup2(fd, num) == num, "dup2: %s", strerror(errno));
	close(fd);
	return num;
}

int main(int argc, char **argv)
{
	static unsigned char data[DATA_LEN], buf[DATA_LEN];
	struct fdstate r, a, rw;
	char path[4096];
	int fd;

	setup(argc, argv);
	fill_pattern(data, DATA_LEN, 1234);
	path_in(path, sizeof(path), "data.bin");
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && write_all(fd, data, DATA_LEN) == 0, "writing %s", path);
	close(fd);
	path_in(path, sizeof(path), "rw.bin");
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && write_all(fd, data, 8192) == 0, "writing %s", path);
	close(fd);

	open_at("data.bin", O_RDONLY, 10);
	CHECK_SYS(lseek(10, 1000, SEEK_SET));
	open_at("append.log", O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, 11);
	CHECK(write_all(11, "first\n", 6) == 0, "write");
	open_at("rw.bin", O_RDWR, 12);
	CHECK_SYS(lseek(12, 3000, SEEK_SET));
	record(&r, 10);
	record(&a, 11);
	record(&rw, 12);

	signal_ready();
	wait_go();

	compare(&r, "data.bin O_RDONLY");
	compare(&a, "append.log O_WRONLY|O_APPEND");
	compare(&rw, "rw.bin O_RDWR");
	CHECK((fcntl(10, F_GETFL) & O_ACCMODE) == O_RDONLY, "fd 10 is not O_RDONLY");
	CHECK((fcntl(11, F_GETFL) & (O_ACCMODE | O_APPEND)) == (O_WRONLY | O_APPEND), "fd 11 not WRONLY|APPEND");
	CHECK((fcntl(12, F_GETFL) & O_ACCMODE) == O_RDWR, "fd 12 is not O_RDWR");

	/* reading continues from offset 1000 */
	CHECK(read_full(10, buf, 5000) == 5000, "read fd 10: %s", strerror(errno));
	CHECK(memcmp(buf, data + 1000, 5000) == 0, "fd 10 read the wrong bytes after restore");
	CHECK(lseek(10, 0, SEEK_CUR) == 6000, "fd 10 offset after read %lld", (long long)lseek(10, 0, SEEK_CUR));
	CHECK(read_full(10, buf, DATA_LEN) == DATA_LEN - 6000, "fd 10 did not read to EOF");
	CHECK(memcmp(buf, data + 6000, DATA_LEN - 6000) == 0, "fd 10 tail differs");

	/* appending appends, even after moving the offset */
	CHECK_SYS(lseek(11, 0, SEEK_SET));
	CHECK(write_all(11, "second\n", 7) == 0, "write fd 11: %s", strerror(errno));
	path_in(path, sizeof(path), "append.log");
	CHECK(read_file(path, (char *)buf, sizeof(buf)) == 13, "append.log has %zd bytes", read_file(path, (char *)buf, sizeof(buf)));
	CHECK(strcmp((char *)buf, "first\nsecond\n") == 0, "append.log is '%s'", buf);

	/* writing at offset 3000 of rw.bin */
	CHECK(write_all(12, "WXYZ", 4) == 0, "write fd 12: %s", strerror(errno));
	CHECK(pread(12, buf, 8192, 0) == 8192, "pread fd 12");
	CHECK(memcmp(buf + 3000, "WXYZ", 4) == 0, "fd 12 did not write at offset 3000");
	CHECK(memcmp(buf, data, 3000) == 0 && memcmp(buf + 3004, data + 3004, 8192 - 3004) == 0,
	      "rw.bin other bytes changed");
	pass();
}
