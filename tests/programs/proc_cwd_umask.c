/* cwd and umask: chdir into WORKDIR/sub and umask 027. After restore
 * getcwd is the same, umask is 027 (and /proc/self/status says so), and a
 * file created with mode 0777 gets 0750. */
#define _GNU_SOURCE
#include "common.h"

int main(int argc, char **argv)
{
	char sub[4096], cwd0[4096], cwd1[4096], um[32];
	struct stat st0, st1, fst;
	mode_t old;
	int fd;

	setup(argc, argv);
	path_in(sub, sizeof(sub), "sub");
	CHECK_SYS(mkdir(sub, 0755));
	CHECK_SYS(chdir(sub));
	CHECK(getcwd(cwd0, sizeof(cwd0)), "getcwd");
	CHECK_SYS(stat(".", &st0));
	umask(027);

	signal_ready();
	wait_go();

	CHECK(getcwd(cwd1, sizeof(cwd1)), "getcwd after restore: %s", strerror(errno));
	CHECK(strcmp(cwd0, cwd1) == 0, "cwd is %s after restore, want %s", cwd1, cwd0);
	CHECK_SYS(stat(".", &st1));
	CHECK(st0.st_ino == st1.st_ino && st0.st_dev == st1.st_dev, "cwd is another inode");
	CHECK(status_field("Umask", um, sizeof(um)) == 0 && strcmp(um, "0027") == 0,
	      "/proc/self/status Umask %s, want 0027", um);
	old = umask(027);
	CHECK(old == 027, "umask was 0%o after restore, want 027", (unsigned)old);
	fd = open("created", O_WRONLY | O_CREAT | O_EXCL, 0777);
	CHECK(fd >= 0, "create in cwd: %s", strerror(errno));
	CHECK_SYS(fstat(fd, &fst));
	close(fd);
	CHECK((fst.st_mode & 0777) == 0750, "created file mode 0%o, want 0750", fst.st_mode & 0777);
	{
		char p[4200];
		snprintf(p, sizeof(p), "%s/created", sub);
		CHECK(access(p, F_OK) == 0, "the file was not created in %s", sub);
	}
	pass();
}
