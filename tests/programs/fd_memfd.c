/* memfds across checkpoint/restore.
 *  A "snaprun test A": MFD_ALLOW_SEALING|MFD_CLOEXEC at fd 50, 1.5 MiB of
 *    pattern then a 0.5 MiB hole (size 2 MiB), seals SHRINK|GROW, offset
 *    12345, mapped MAP_SHARED; fd 51 is a second open of it (through
 *    /proc/self/fd/50, read-only) at offset 7.
 *  B "plain": no sealing allowed (so sealed with F_SEAL_SEAL), fd 52,
 *    "hello", offset 5, mode 0640.
 *  C "mapped-only": 64 KiB of pattern, mapped shared and private (one
 *    private page written), its fd closed.
 *  D "frozen": sealed against writes, mapped shared read-only, no fd.
 * After restore each is one object: the mapping and the fds of A see the
 * same bytes; names, sizes, seals, modes, offsets and flags are as set. */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "common.h"

#define KB 1024

static void link_is(int fd, const char *want)
{
	char path[64], buf[512];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, sizeof(buf) - 1);
	CHECK(n > 0, "readlink %s", path);
	buf[n] = 0;
	CHECK(strcmp(buf, want) == 0, "fd %d is %s, want %s", fd, buf, want);
}

static void map_is(void *addr, const char *want)
{
	char line[1024];

	CHECK(maps_line_for(addr, line, sizeof(line)) == 0, "no mapping at %p", addr);
	CHECK(strstr(line, want) != NULL, "mapping at %p is \"%s\", want %s", addr, line, want);
}

int main(int argc, char **argv)
{
	static char buf[2048 * KB], big[1536 * KB];
	unsigned char *ma, *mc, *mcp, *md;
	struct stat st, st2;
	int fd, c, d;
	char path[64];

	setup(argc, argv);
	fill_pattern(big, sizeof(big), 1);

	fd = memfd_create("snaprun test A", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	CHECK(fd >= 0 && dup3(fd, 50, O_CLOEXEC) == 50, "memfd A: %s", strerror(errno));
	close(fd);
	CHECK(write(50, big, sizeof(big)) == sizeof(big), "write A");
	CHECK_SYS(ftruncate(50, 2048 * KB));
	CHECK_SYS(fcntl(50, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW));
	CHECK(lseek(50, 12345, SEEK_SET) == 12345, "lseek A");
	ma = mmap(NULL, 2048 * KB, PROT_READ | PROT_WRITE, MAP_SHARED, 50, 0);
	CHECK(ma != MAP_FAILED, "mmap A: %s", strerror(errno));
	fd = open("/proc/self/fd/50", O_RDONLY);
	CHECK(fd >= 0 && dup2(fd, 51) == 51, "reopen A: %s", strerror(errno));
	close(fd);
	CHECK(lseek(51, 7, SEEK_SET) == 7, "lseek 51");

	fd = memfd_create("plain", 0);
	CHECK(fd >= 0 && dup2(fd, 52) == 52, "memfd B: %s", strerror(errno));
	close(fd);
	CHECK(write(52, "hello", 5) == 5, "write B");
	CHECK_SYS(fchmod(52, 0640));

	c = memfd_create("mapped-only", 0);
	CHECK(c >= 0, "memfd C: %s", strerror(errno));
	CHECK_SYS(ftruncate(c, 64 * KB));
	mc = mmap(NULL, 64 * KB, PROT_READ | PROT_WRITE, MAP_SHARED, c, 0);
	mcp = mmap(NULL, 64 * KB, PROT_READ | PROT_WRITE, MAP_PRIVATE, c, 0);
	CHECK(mc != MAP_FAILED && mcp != MAP_FAILED, "mmap C: %s", strerror(errno));
	fill_pattern(mc, 64 * KB, 3);
	mcp[4096] ^= 0xff; /* page 1 of the private view is now its own */
	close(c);

	d = memfd_create("frozen", MFD_ALLOW_SEALING);
	CHECK(d >= 0, "memfd D: %s", strerror(errno));
	CHECK(write(d, "frozen", 6) == 6, "write D");
	CHECK_SYS(fcntl(d, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW));
	md = mmap(NULL, 4096, PROT_READ, MAP_SHARED, d, 0);
	CHECK(md != MAP_FAILED, "mmap D: %s", strerror(errno));
	close(d);

	signal_ready();
	wait_go();

	/* A: one object behind fd 50, fd 51 and the mapping. */
	link_is(50, "/memfd:snaprun test A (deleted)");
	map_is(ma, "/memfd:snaprun test A (deleted)");
	CHECK_SYS(fstat(50, &st));
	CHECK_SYS(fstat(51, &st2));
	CHECK(st.st_size == 2048 * KB, "A size %lld", (long long)st.st_size);
	CHECK(st.st_ino == st2.st_ino, "fds 50 and 51 are two files");
	CHECK((st.st_mode & 07777) == 0777, "A mode %o", st.st_mode & 07777);
	CHECK(fcntl(50, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW), "A seals %x", fcntl(50, F_GET_SEALS));
	CHECK(lseek(50, 0, SEEK_CUR) == 12345, "fd 50 offset %lld", (long long)lseek(50, 0, SEEK_CUR));
	CHECK(lseek(51, 0, SEEK_CUR) == 7, "fd 51 offset %lld", (long long)lseek(51, 0, SEEK_CUR));
	CHECK((fcntl(51, F_GETFL) & O_ACCMODE) == O_RDONLY, "fd 51 not read-only");
	CHECK((fcntl(50, F_GETFL) & O_ACCMODE) == O_RDWR, "fd 50 not read-write");
	CHECK(fcntl(50, F_GETFD) == FD_CLOEXEC && fcntl(51, F_GETFD) == 0, "FD_CLOEXEC not per fd");
	CHECK(pread(50, buf, sizeof(buf), 0) == 2048 * KB, "pread A");
	CHECK(check_pattern(buf, 1536 * KB, 1) < 0, "A content differs at %ld", check_pattern(buf, 1536 * KB, 1));
	CHECK(check_zero(buf + 1536 * KB, 512 * KB) < 0, "A hole not zero");
	CHECK(memcmp(ma, buf, 2048 * KB) == 0, "A mapping differs from its fd");
	ma[1800 * KB] = 'm';
	CHECK(pread(51, buf, 1, 1800 * KB) == 1 && buf[0] == 'm', "a write to A's mapping is not seen by fd 51");
	CHECK(pwrite(50, "f", 1, 10) == 1, "pwrite A");
	CHECK(ma[10] == 'f', "a write to fd 50 is not seen by A's mapping");

	/* B. */
	link_is(52, "/memfd:plain (deleted)");
	CHECK(fcntl(52, F_GET_SEALS) == F_SEAL_SEAL, "B seals %x", fcntl(52, F_GET_SEALS));
	CHECK(fcntl(52, F_ADD_SEALS, F_SEAL_WRITE) < 0, "B accepts seals");
	CHECK_SYS(fstat(52, &st));
	CHECK((st.st_mode & 07777) == 0640 && st.st_size == 5, "B mode %o size %lld", st.st_mode & 07777,
	      (long long)st.st_size);
	CHECK(lseek(52, 0, SEEK_CUR) == 5, "B offset");
	CHECK(pread(52, buf, 5, 0) == 5 && memcmp(buf, "hello", 5) == 0, "B content");
	CHECK(fcntl(52, F_GETFD) == 0, "B gained FD_CLOEXEC");

	/* C: the shared and the private views map one memfd. */
	map_is(mc, "/memfd:mapped-only (deleted)");
	map_is(mcp, "/memfd:mapped-only (deleted)");
	memcpy(buf, mc, 64 * KB);
	CHECK(check_pattern(buf, 64 * KB, 3) < 0, "C shared content differs at %ld", check_pattern(buf, 64 * KB, 3));
	buf[4096] ^= 0xff;
	CHECK(memcmp(mcp, buf, 64 * KB) == 0, "C private view differs");
	mc[0] = ~mc[0];
	CHECK(mcp[0] == mc[0], "C private view does not see the shared view's write (not one memfd)");
	CHECK(mcp[4096] != mc[4096], "C private copy-on-write page lost");

	/* D: write-sealed, mapped read-only. */
	map_is(md, "/memfd:frozen (deleted)");
	CHECK(memcmp(md, "frozen", 6) == 0, "D content");
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)md, (unsigned long)md + 4096);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	CHECK(fcntl(fd, F_GET_SEALS) == (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW), "D seals %x",
	      fcntl(fd, F_GET_SEALS));
	CHECK(pwrite(fd, "x", 1, 0) < 0 && errno == EPERM, "D accepts writes");
	pass();
}
