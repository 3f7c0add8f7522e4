/* A process tree: the root (a session leader) with
 *   - child A (same session and group), which has a grandchild G that is
 *     the leader of its own process group;
 *   - child B, the leader of its own session;
 *   - child Z, which exited with code 7 and is not reaped yet (a zombie);
 * pipes between the root and A (one each way, a token sent after restore
 * must come back transformed), a unix socketpair between the root and B
 * with bytes queued each way at the checkpoint, shared anonymous memory (MAP_SHARED before
 * fork: a value written by one must be seen by the other), and a file
 * description shared by inheritance (its offset moves for both).
 * After restore every process checks its parent, group and session; the
 * root reaps Z (exit code 7) and its children (each exits 0 when its own
 * checks passed). */
#define _GNU_SOURCE
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "common.h"

static int p2c[2], c2p[2], sv[2];
static volatile uint64_t *shm;
static int shared_fd;
static pid_t root_pid, root_sid;

/* Child exit codes: 0 ok; 10+ a failed check (logged). */
#define BAD(code, ...)                                                         \
	do {                                                                   \
		logmsg(__VA_ARGS__);                                           \
		_exit(code);                                                   \
	} while (0)

static void grandchild(pid_t parent)
{
	wait_go();
	if (getppid() != parent)
		BAD(11, "G: parent %d, want %d", getppid(), parent);
	if (getpgid(0) != getpid())
		BAD(12, "G: pgid %d, want its own %d", getpgid(0), getpid());
	if (getsid(0) != root_sid)
		BAD(13, "G: sid %d, want %d", getsid(0), root_sid);
	_exit(0);
}

static void child_a(void)
{
	pid_t g, me = getpid();
	char tok[16];
	int st;

	g = fork();
	if (g == 0) {
		setpgid(0, 0);
		grandchild(me);
	}
	setpgid(g, g);
	close(p2c[1]);
	close(c2p[0]);
	wait_go();
	if (getppid() != root_pid)
		BAD(21, "A: parent %d, want %d", getppid(), root_pid);
	if (getpgid(0) != root_pid || getsid(0) != root_sid)
		BAD(22, "A: pgid %d sid %d, want %d %d", getpgid(0), getsid(0), root_pid, root_sid);
	if (read_full(p2c[0], tok, 8) != 8)
		BAD(23, "A: reading the token: %s", strerror(errno));
	tok[8] = 0;
	/* Echo it back reversed. */
	for (int i = 0; i < 4; i++) {
		char t = tok[i];
		tok[i] = tok[7 - i];
		tok[7 - i] = t;
	}
	if (write_all(c2p[1], tok, 8) < 0)
		BAD(24, "A: writing the reply: %s", strerror(errno));
	/* Shared memory: the root wrote 0xabc; answer with 0xdef. */
	while (shm[0] != 0xabc)
		usleep(1000);
	shm[1] = 0xdef;
	/* The shared description: 10 bytes move the offset for the root too. */
	if (write_all(shared_fd, "0123456789", 10) < 0)
		BAD(25, "A: write to the shared fd: %s", strerror(errno));
	if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		BAD(26, "A: grandchild ended with status %#x", st);
	_exit(0);
}

static void child_b(void)
{
	char buf[16];

	setsid();
	close(sv[0]);
	if (write_all(sv[1], "from-b", 6) < 0)
		BAD(33, "B: write to the socketpair: %s", strerror(errno));
	wait_go();
	if (read_full(sv[1], buf, 9) != 9 || memcmp(buf, "from-root", 9) != 0)
		BAD(34, "B: read %.9s from the socketpair, want from-root", buf);
	/* The connection still joins the two after restore. */
	if (write_all(sv[1], "again-b", 7) < 0)
		BAD(35, "B: write after restore: %s", strerror(errno));
	if (read_full(sv[1], buf, 7) != 7 || memcmp(buf, "again-r", 7) != 0)
		BAD(36, "B: read %.7s after restore, want again-r", buf);
	if (getsid(0) != getpid() || getpgid(0) != getpid())
		BAD(31, "B: sid %d pgid %d, want its own %d", getsid(0), getpgid(0), getpid());
	if (getppid() != root_pid)
		BAD(32, "B: parent %d, want %d", getppid(), root_pid);
	_exit(0);
}

static void wait_child(pid_t pid, const char *name, int want_code)
{
	int st;

	CHECK(waitpid(pid, &st, 0) == pid, "waitpid %s (%d): %s", name, pid, strerror(errno));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == want_code, "%s (%d) ended with status %#x, want exit %d",
	      name, pid, st, want_code);
}

int main(int argc, char **argv)
{
	pid_t a, b, z;
	char path[4096], reply[16];
	off_t before;

	setup(argc, argv);
	setsid();
	root_pid = getpid();
	root_sid = getsid(0);
	CHECK_SYS(pipe(p2c));
	CHECK_SYS(pipe(c2p));
	CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	shm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(shm != MAP_FAILED, "mmap: %s", strerror(errno));
	path_in(path, sizeof(path), "shared.txt");
	shared_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK_SYS(shared_fd);
	CHECK_SYS(write_all(shared_fd, "root", 4));

	a = fork();
	if (a == 0)
		child_a();
	b = fork();
	if (b == 0)
		child_b();
	z = fork();
	if (z == 0)
		_exit(7);
	close(p2c[0]);
	close(c2p[1]);
	close(sv[1]);
	CHECK_SYS(write_all(sv[0], "from-root", 9));
	/* Everyone set up: B in its session with its bytes sent, G in its
	 * group, Z dead. */
	for (int i = 0; i < 1000; i++) {
		char st[64];
		int queued = 0;
		snprintf(path, sizeof(path), "/proc/%d/stat", z);
		ioctl(sv[0], FIONREAD, &queued);
		if (getsid(b) == b && queued == 6 && read_file(path, st, sizeof(st)) > 0 && strstr(st, ") Z"))
			break;
		usleep(2000);
	}
	CHECK(getsid(b) == b, "B did not start its session");

	signal_ready();
	wait_go();

	CHECK_SYS(write_all(p2c[1], "abcdefgh", 8));
	CHECK(read_full(c2p[0], reply, 8) == 8, "reading A's reply: %s", strerror(errno));
	CHECK(memcmp(reply, "hgfedcba", 8) == 0, "A replied %.8s", reply);
	before = lseek(shared_fd, 0, SEEK_CUR);
	CHECK(before == 4, "shared fd offset %ld, want 4", (long)before);
	shm[0] = 0xabc;
	wait_child(a, "A", 0);
	CHECK(shm[1] == 0xdef, "shared memory: A wrote %#lx, seen %#lx here", 0xdefUL, (unsigned long)shm[1]);
	CHECK(lseek(shared_fd, 0, SEEK_CUR) == 14, "shared fd offset %ld after A wrote 10 bytes, want 14",
	      (long)lseek(shared_fd, 0, SEEK_CUR));
	CHECK(read_full(sv[0], reply, 6) == 6 && memcmp(reply, "from-b", 6) == 0,
	      "read %.6s from the socketpair, want from-b", reply);
	CHECK(read_full(sv[0], reply, 7) == 7 && memcmp(reply, "again-b", 7) == 0,
	      "read %.7s from the socketpair after restore, want again-b", reply);
	CHECK_SYS(write_all(sv[0], "again-r", 7));
	wait_child(b, "B", 0);
	wait_child(z, "Z (the zombie)", 7);
	pass();
}
