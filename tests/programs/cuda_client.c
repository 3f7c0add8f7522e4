/* A stand-in for a CUDA process on machines without a GPU:
 * `cuda_client WORKDIR LIBCUDA [netlink]` dlopens LIBCUDA (a fake driver
 * library named libcuda.so.1, cuda-ckpt/tests/fake_libcuda/), calls its
 * cuInit and cuDriverGetVersion as a CUDA program would, and holds 4 MiB
 * of pattern. snaprun sees a process that maps libcuda. With `netlink` it
 * also holds a netlink socket at fd 42, which checkpoint refuses after the
 * GPU checkpoint. On go it checks the pattern and that the library still
 * answers. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/netlink.h>

#include "common.h"

#define SIZE (4UL << 20)

typedef int (*init_fn)(unsigned int);
typedef int (*version_fn)(int *);

int main(int argc, char **argv)
{
	unsigned char *m;
	void *lib;
	init_fn init;
	version_fn version;
	int v = 0;
	long off;

	setup(argc, argv);
	CHECK(argc >= 3, "usage: cuda_client WORKDIR LIBCUDA [netlink]");
	lib = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
	CHECK(lib != NULL, "dlopen %s: %s", argv[2], dlerror());
	init = (init_fn)dlsym(lib, "cuInit");
	version = (version_fn)dlsym(lib, "cuDriverGetVersion");
	CHECK(init && version, "the library lacks cuInit or cuDriverGetVersion");
	CHECK(init(0) == 0, "cuInit failed");
	CHECK(version(&v) == 0 && v > 0, "cuDriverGetVersion failed");
	if (argc >= 4 && strcmp(argv[3], "netlink") == 0) {
		int s = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
		CHECK_SYS(s);
		CHECK(dup2(s, 42) == 42, "dup2");
		close(s);
	}
	m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
	fill_pattern(m, SIZE, 808);

	signal_ready();
	wait_go();

	off = check_pattern(m, SIZE, 808);
	CHECK(off < 0, "memory byte %ld differs", off);
	int v2 = 0;
	CHECK(version(&v2) == 0 && v2 == v, "cuDriverGetVersion after restore: %d, was %d", v2, v);
	pass();
}
