/* fs and gs bases: a __thread array with a pattern (reached through fs),
 * ARCH_GET_FS unchanged, %fs:0 still the TCB self-pointer; gs base set with
 * ARCH_SET_GS to a buffer, read back with ARCH_GET_GS and through %gs:. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <sys/syscall.h>

#include "common.h"

static __thread uint64_t tls_arr[64];
static uint64_t gs_buf[16];

static unsigned long arch_get(int code)
{
	unsigned long v = 0;

	CHECK(syscall(SYS_arch_prctl, code, &v) == 0, "arch_prctl(0x%x): %s", code, strerror(errno));
	return v;
}

static uint64_t read_gs(unsigned long off)
{
	uint64_t v;

	__asm__ volatile("mov %%gs:(%1), %0" : "=r"(v) : "r"(off) : "memory");
	return v;
}

static uint64_t read_fs0(void)
{
	uint64_t v;

	__asm__ volatile("mov %%fs:0, %0" : "=r"(v) : : "memory");
	return v;
}

static void verify(unsigned long fs0, const char *when)
{
	unsigned long fs = arch_get(ARCH_GET_FS), gs = arch_get(ARCH_GET_GS);
	long off;
	int i;

	CHECK(fs == fs0, "%s: fs base 0x%lx, want 0x%lx", when, fs, fs0);
	CHECK(read_fs0() == fs0, "%s: %%fs:0 is 0x%llx, want 0x%lx", when, (unsigned long long)read_fs0(), fs0);
	off = check_pattern(tls_arr, sizeof(tls_arr), 606);
	CHECK(off < 0, "%s: __thread array byte %ld differs", when, off);
	CHECK((unsigned long)&tls_arr[0] > fs0 - (1 << 20) && (unsigned long)&tls_arr[0] < fs0 + (1 << 20),
	      "%s: __thread array at %p is not near fs base 0x%lx", when, (void *)&tls_arr[0], fs0);
	CHECK(gs == (unsigned long)gs_buf, "%s: gs base 0x%lx, want %p", when, gs, (void *)gs_buf);
	for (i = 0; i < 16; i++)
		CHECK(read_gs(i * 8) == gs_buf[i], "%s: %%gs:%d is 0x%llx, want 0x%llx", when, i * 8,
		      (unsigned long long)read_gs(i * 8), (unsigned long long)gs_buf[i]);
}

int main(int argc, char **argv)
{
	unsigned long fs0;

	setup(argc, argv);
	fill_pattern(tls_arr, sizeof(tls_arr), 606);
	fill_pattern(gs_buf, sizeof(gs_buf), 607);
	fs0 = arch_get(ARCH_GET_FS);
	CHECK(syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)gs_buf) == 0, "ARCH_SET_GS: %s", strerror(errno));
	verify(fs0, "before checkpoint");

	signal_ready();
	wait_go();

	verify(fs0, "after restore");
	pass();
}
