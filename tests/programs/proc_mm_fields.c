/* mm fields: /proc/self/cmdline, /proc/self/environ and /proc/self/auxv
 * byte-identical to before the checkpoint (argv[2] is rewritten in place
 * first, as setproctitle does, so cmdline must come from memory at the
 * recorded arg_start/arg_end), and the code/data/brk/arg/env addresses of
 * /proc/self/stat (fields 26-28, 45-51) unchanged. The harness passes
 * extra arguments and SNAPTEST_* environment variables. */
#define _GNU_SOURCE
#include "common.h"

static ssize_t read_bin(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	n = read_full(fd, buf, cap);
	close(fd);
	CHECK(n >= 0, "read %s", path);
	return n;
}

/* fields 26..28 and 45..51 of /proc/self/stat */
static void stat_fields(unsigned long long *out)
{
	static char st[4096];
	char *p, *save = NULL;
	int field = 3, k = 0;

	CHECK(read_file("/proc/self/stat", st, sizeof(st)) > 0, "read stat");
	p = strrchr(st, ')') + 2; /* field 3 starts here */
	for (p = strtok_r(p, " ", &save); p; p = strtok_r(NULL, " ", &save), field++)
		if ((field >= 26 && field <= 28) || (field >= 45 && field <= 51))
			out[k++] = strtoull(p, NULL, 10);
	CHECK(k == 10, "parsed %d stat fields", k);
}

static void compare(const char *path, const char *a, ssize_t na, const char *b, ssize_t nb)
{
	ssize_t i;

	CHECK(na == nb, "%s is %zd bytes after restore, was %zd", path, nb, na);
	for (i = 0; i < na; i++)
		CHECK(a[i] == b[i], "%s byte %zd is 0x%02x after restore, was 0x%02x", path, i, (unsigned char)b[i],
		      (unsigned char)a[i]);
}

int main(int argc, char **argv)
{
	static char cmd0[65536], cmd1[65536], env0[65536], env1[65536], aux0[4096], aux1[4096];
	static const int field_no[10] = { 26, 27, 28, 45, 46, 47, 48, 49, 50, 51 };
	unsigned long long f0[10], f1[10];
	ssize_t nc0, nc1, ne0, ne1, na0, na1;
	int i;

	setup(argc, argv);
	CHECK(argc >= 4, "want extra arguments");
	CHECK(getenv("SNAPTEST_MARK"), "want SNAPTEST_MARK in the environment");
	for (i = 0; argv[2][i]; i++) /* rewrite in place */
		argv[2][i] = argv[2][i] == ' ' ? '_' : (argv[2][i] >= 'a' && argv[2][i] <= 'z' ? argv[2][i] - 32 : argv[2][i]);
	nc0 = read_bin("/proc/self/cmdline", cmd0, sizeof(cmd0));
	ne0 = read_bin("/proc/self/environ", env0, sizeof(env0));
	na0 = read_bin("/proc/self/auxv", aux0, sizeof(aux0));
	stat_fields(f0);
	CHECK(memmem(cmd0, nc0, argv[2], strlen(argv[2])), "cmdline does not show the rewritten argv[2]");

	signal_ready();
	wait_go();

	nc1 = read_bin("/proc/self/cmdline", cmd1, sizeof(cmd1));
	ne1 = read_bin("/proc/self/environ", env1, sizeof(env1));
	na1 = read_bin("/proc/self/auxv", aux1, sizeof(aux1));
	stat_fields(f1);
	compare("/proc/self/cmdline", cmd0, nc0, cmd1, nc1);
	compare("/proc/self/environ", env0, ne0, env1, ne1);
	compare("/proc/self/auxv", aux0, na0, aux1, na1);
	for (i = 0; i < 10; i++)
		CHECK(f0[i] == f1[i], "/proc/self/stat field %d is 0x%llx after restore, was 0x%llx", field_no[i],
		      f1[i], f0[i]);
	CHECK(strcmp(getenv("SNAPTEST_MARK"), argv[3]) == 0, "SNAPTEST_MARK is not argv[3]");
	pass();
}
