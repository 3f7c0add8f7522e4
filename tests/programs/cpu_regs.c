/* CPU state of a thread running in user space (not in a syscall) at
 * checkpoint: an assembly loop holds known values in the vector registers
 * (xmm0-15 / ymm0-15 / zmm0-31 + k0-7, by mode), in the general registers
 * (rax rbx rcx rbp rdi r8-r15), in MXCSR, in the x87 control word and two
 * x87 stack registers, and sets the direction flag, then spins until a
 * SIGUSR1 handler sets a flag (the kernel saves and restores the whole
 * register state around the handler). Then every register is compared.
 *
 * Usage: cpu_regs WORKDIR MODE, MODE one of sse, avx, avx512. The harness
 * waits for /proc/PID/syscall to say "running" before it checkpoints. */
#define _GNU_SOURCE
#include <signal.h>
#include <stddef.h>

#include "common.h"

struct regs {
	unsigned char vec[32][64]; /* 0 */
	uint16_t k[8];             /* 2048 */
	uint64_t gpr[14];          /* 2064: rax rbx rcx rbp rdi r8..r15 rflags */
	uint32_t mxcsr;            /* 2176 */
	uint16_t fcw;              /* 2180 */
	uint16_t saved_fcw;        /* 2182 */
	uint32_t saved_mxcsr;      /* 2184 */
	uint32_t pad;              /* 2188 */
	unsigned char x87[2][16];  /* 2192 */
};
_Static_assert(offsetof(struct regs, k) == 2048, "k");
_Static_assert(offsetof(struct regs, gpr) == 2064, "gpr");
_Static_assert(offsetof(struct regs, mxcsr) == 2176, "mxcsr");
_Static_assert(offsetof(struct regs, fcw) == 2180, "fcw");
_Static_assert(offsetof(struct regs, saved_fcw) == 2182, "saved_fcw");
_Static_assert(offsetof(struct regs, saved_mxcsr) == 2184, "saved_mxcsr");
_Static_assert(offsetof(struct regs, x87) == 2192, "x87");

/* void spin_MODE(const struct regs *in, struct regs *out, volatile int *flag) */
#define PROLOGUE(name)                                                                  \
	".text\n.globl " name "\n.type " name ",@function\n" name ":\n"                \
	"push %rbx\npush %rbp\npush %r12\npush %r13\npush %r14\npush %r15\n"            \
	"push %rdi\n"                                                                   \
	"stmxcsr 2184(%rsi)\nfnstcw 2182(%rsi)\n"                                       \
	"ldmxcsr 2176(%rdi)\nfldcw 2180(%rdi)\n"                                        \
	"fldt 2192(%rdi)\nfldt 2208(%rdi)\n"
#define LOAD_GPRS                                                                       \
	"mov 2064(%rdi), %rax\nmov 2072(%rdi), %rbx\nmov 2080(%rdi), %rcx\n"            \
	"mov 2088(%rdi), %rbp\nmov 2104(%rdi), %r8\nmov 2112(%rdi), %r9\n"              \
	"mov 2120(%rdi), %r10\nmov 2128(%rdi), %r11\nmov 2136(%rdi), %r12\n"            \
	"mov 2144(%rdi), %r13\nmov 2152(%rdi), %r14\nmov 2160(%rdi), %r15\n"            \
	"mov 2096(%rdi), %rdi\n"                                                        \
	"std\n"                                                                         \
	"1:\npause\ncmpl $0, (%rdx)\nje 1b\n"                                           \
	"pushf\npop 2168(%rsi)\ncld\n"                                                  \
	"mov %rax, 2064(%rsi)\nmov %rbx, 2072(%rsi)\nmov %rcx, 2080(%rsi)\n"            \
	"mov %rbp, 2088(%rsi)\nmov %rdi, 2096(%rsi)\nmov %r8, 2104(%rsi)\n"             \
	"mov %r9, 2112(%rsi)\nmov %r10, 2120(%rsi)\nmov %r11, 2128(%rsi)\n"             \
	"mov %r12, 2136(%rsi)\nmov %r13, 2144(%rsi)\nmov %r14, 2152(%rsi)\n"            \
	"mov %r15, 2160(%rsi)\n"                                                        \
	"pop %rdi\n"
#define EPILOGUE                                                                        \
	"stmxcsr 2176(%rsi)\nfnstcw 2180(%rsi)\n"                                       \
	"fstpt 2208(%rsi)\nfstpt 2192(%rsi)\n"                                          \
	"ldmxcsr 2184(%rsi)\nfldcw 2182(%rsi)\n"                                        \
	"pop %r15\npop %r14\npop %r13\npop %r12\npop %rbp\npop %rbx\nret\n"

#define V16(op, r, w, base)                                                             \
	op " " #w "*0(" base "), %" r "0\n" op " " #w "*1(" base "), %" r "1\n"         \
	op " " #w "*2(" base "), %" r "2\n" op " " #w "*3(" base "), %" r "3\n"         \
	op " " #w "*4(" base "), %" r "4\n" op " " #w "*5(" base "), %" r "5\n"         \
	op " " #w "*6(" base "), %" r "6\n" op " " #w "*7(" base "), %" r "7\n"         \
	op " " #w "*8(" base "), %" r "8\n" op " " #w "*9(" base "), %" r "9\n"         \
	op " " #w "*10(" base "), %" r "10\n" op " " #w "*11(" base "), %" r "11\n"     \
	op " " #w "*12(" base "), %" r "12\n" op " " #w "*13(" base "), %" r "13\n"     \
	op " " #w "*14(" base "), %" r "14\n" op " " #w "*15(" base "), %" r "15\n"
#define S16(op, r, w, base)                                                             \
	op " %" r "0, " #w "*0(" base ")\n" op " %" r "1, " #w "*1(" base ")\n"         \
	op " %" r "2, " #w "*2(" base ")\n" op " %" r "3, " #w "*3(" base ")\n"         \
	op " %" r "4, " #w "*4(" base ")\n" op " %" r "5, " #w "*5(" base ")\n"         \
	op " %" r "6, " #w "*6(" base ")\n" op " %" r "7, " #w "*7(" base ")\n"         \
	op " %" r "8, " #w "*8(" base ")\n" op " %" r "9, " #w "*9(" base ")\n"         \
	op " %" r "10, " #w "*10(" base ")\n" op " %" r "11, " #w "*11(" base ")\n"     \
	op " %" r "12, " #w "*12(" base ")\n" op " %" r "13, " #w "*13(" base ")\n"     \
	op " %" r "14, " #w "*14(" base ")\n" op " %" r "15, " #w "*15(" base ")\n"
#define V16HI(op, r, w, base)                                                           \
	op " " #w "*16(" base "), %" r "16\n" op " " #w "*17(" base "), %" r "17\n"     \
	op " " #w "*18(" base "), %" r "18\n" op " " #w "*19(" base "), %" r "19\n"     \
	op " " #w "*20(" base "), %" r "20\n" op " " #w "*21(" base "), %" r "21\n"     \
	op " " #w "*22(" base "), %" r "22\n" op " " #w "*23(" base "), %" r "23\n"     \
	op " " #w "*24(" base "), %" r "24\n" op " " #w "*25(" base "), %" r "25\n"     \
	op " " #w "*26(" base "), %" r "26\n" op " " #w "*27(" base "), %" r "27\n"     \
	op " " #w "*28(" base "), %" r "28\n" op " " #w "*29(" base "), %" r "29\n"     \
	op " " #w "*30(" base "), %" r "30\n" op " " #w "*31(" base "), %" r "31\n"
#define S16HI(op, r, w, base)                                                           \
	op " %" r "16, " #w "*16(" base ")\n" op " %" r "17, " #w "*17(" base ")\n"     \
	op " %" r "18, " #w "*18(" base ")\n" op " %" r "19, " #w "*19(" base ")\n"     \
	op " %" r "20, " #w "*20(" base ")\n" op " %" r "21, " #w "*21(" base ")\n"     \
	op " %" r "22, " #w "*22(" base ")\n" op " %" r "23, " #w "*23(" base ")\n"     \
	op " %" r "24, " #w "*24(" base ")\n" op " %" r "25, " #w "*25(" base ")\n"     \
	op " %" r "26, " #w "*26(" base ")\n" op " %" r "27, " #w "*27(" base ")\n"     \
	op " %" r "28, " #w "*28(" base ")\n" op " %" r "29, " #w "*29(" base ")\n"     \
	op " %" r "30, " #w "*30(" base ")\n" op " %" r "31, " #w "*31(" base ")\n"
#define K8(op)                                                                          \
	op "2048(%rdi), %k0\n" op "2050(%rdi), %k1\n" op "2052(%rdi), %k2\n"            \
	op "2054(%rdi), %k3\n" op "2056(%rdi), %k4\n" op "2058(%rdi), %k5\n"            \
	op "2060(%rdi), %k6\n" op "2062(%rdi), %k7\n"
#define SK8(op)                                                                         \
	op "%k0, 2048(%rsi)\n" op "%k1, 2050(%rsi)\n" op "%k2, 2052(%rsi)\n"            \
	op "%k3, 2054(%rsi)\n" op "%k4, 2056(%rsi)\n" op "%k5, 2058(%rsi)\n"            \
	op "%k6, 2060(%rsi)\n" op "%k7, 2062(%rsi)\n"

__asm__(PROLOGUE("spin_sse") V16("movdqu", "xmm", 64, "%rdi") LOAD_GPRS
	S16("movdqu", "xmm", 64, "%rsi") EPILOGUE);
__asm__(PROLOGUE("spin_avx") V16("vmovdqu", "ymm", 64, "%rdi") LOAD_GPRS
	S16("vmovdqu", "ymm", 64, "%rsi") "vzeroupper\n" EPILOGUE);
__asm__(PROLOGUE("spin_avx512") V16("vmovdqu64", "zmm", 64, "%rdi") V16HI("vmovdqu64", "zmm", 64, "%rdi")
	K8("kmovw ") LOAD_GPRS S16("vmovdqu64", "zmm", 64, "%rsi") S16HI("vmovdqu64", "zmm", 64, "%rsi")
	SK8("kmovw ") "vzeroupper\n" EPILOGUE);

void spin_sse(const struct regs *in, struct regs *out, volatile int *flag);
void spin_avx(const struct regs *in, struct regs *out, volatile int *flag);
void spin_avx512(const struct regs *in, struct regs *out, volatile int *flag);

static volatile int flag;

static void on_usr1(int sig)
{
	(void)sig;
	flag = 1;
}

static const char *gpr_name[14] = { "rax", "rbx", "rcx", "rbp", "rdi", "r8",  "r9",
				    "r10", "r11", "r12", "r13", "r14", "r15", "rflags" };

int main(int argc, char **argv)
{
	static struct regs in, out;
	struct sigaction sa;
	const char *mode;
	int nvec, width, i, j;

	setup(argc, argv);
	mode = argc > 2 ? argv[2] : "sse";
	__builtin_cpu_init();
	if (strcmp(mode, "avx512") == 0) {
		CHECK(__builtin_cpu_supports("avx512f"), "this CPU has no AVX-512F");
		nvec = 32;
		width = 64;
	} else if (strcmp(mode, "avx") == 0) {
		CHECK(__builtin_cpu_supports("avx"), "this CPU has no AVX");
		nvec = 16;
		width = 32;
	} else {
		CHECK(strcmp(mode, "sse") == 0, "unknown mode %s", mode);
		nvec = 16;
		width = 16;
	}
	logmsg("mode %s: %d registers of %d bytes; avx2 %d", mode, nvec, width,
	       __builtin_cpu_supports("avx2"));
	fill_pattern(&in, sizeof(in), 4242);
	for (i = 0; i < 13; i++)
		in.gpr[i] = mix64(0xabc0 + i);
	in.mxcsr = 0xffc0; /* FTZ, round toward zero, DAZ, all exceptions masked */
	in.fcw = 0x0f7f;   /* x87: round toward zero, extended precision */
	memset(in.x87, 0, sizeof(in.x87));
	{
		long double a = 3.14159265358979323846264L, b = -2.718281828459045235360287L / 3;
		memcpy(in.x87[0], &a, 10);
		memcpy(in.x87[1], &b, 10);
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
	signal_ready();

	memset(&out, 0, sizeof(out));
	if (nvec == 32)
		spin_avx512(&in, &out, &flag);
	else if (width == 32)
		spin_avx(&in, &out, &flag);
	else
		spin_sse(&in, &out, &flag);
	logmsg("spin loop left");

	for (i = 0; i < nvec; i++)
		for (j = 0; j < width; j++)
			CHECK(out.vec[i][j] == in.vec[i][j], "%s%d byte %d is 0x%02x, want 0x%02x",
			      width == 64 ? "zmm" : width == 32 ? "ymm" : "xmm", i, j, out.vec[i][j],
			      in.vec[i][j]);
	if (nvec == 32)
		for (i = 0; i < 8; i++)
			CHECK(out.k[i] == in.k[i], "k%d is 0x%04x, want 0x%04x", i, out.k[i], in.k[i]);
	for (i = 0; i < 13; i++)
		CHECK(out.gpr[i] == in.gpr[i], "%s is 0x%016llx, want 0x%016llx", gpr_name[i],
		      (unsigned long long)out.gpr[i], (unsigned long long)in.gpr[i]);
	CHECK(out.gpr[13] & 0x400, "direction flag lost: rflags 0x%llx", (unsigned long long)out.gpr[13]);
	CHECK(out.mxcsr == in.mxcsr, "mxcsr 0x%x, want 0x%x", out.mxcsr, in.mxcsr);
	CHECK(out.fcw == in.fcw, "x87 control word 0x%x, want 0x%x", out.fcw, in.fcw);
	CHECK(memcmp(out.x87[0], in.x87[0], 10) == 0, "x87 st(1) differs");
	CHECK(memcmp(out.x87[1], in.x87[1], 10) == 0, "x87 st(0) differs");
	pass();
}
