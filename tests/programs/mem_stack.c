/* Stack: a deep recursion, each frame holding a 512-byte pattern, waits for
 * go at the deepest frame. After restore every frame is verified while the
 * recursion unwinds (return addresses and saved registers too, implicitly),
 * then a recursion deeper than before checks that the stack still grows. */
#define _GNU_SOURCE
#include <sys/resource.h>

#include "common.h"

#define FRAME 512
#define DEPTH 2000

static size_t deeper_depth;
static void (*volatile at_bottom)(void);

static void __attribute__((noinline)) recurse(size_t depth, size_t max, uint64_t seed_base)
{
	volatile unsigned char buf[FRAME];
	size_t i;
	uint64_t seed = seed_base + depth;

	for (i = 0; i < FRAME; i++)
		buf[i] = (unsigned char)mix64(seed * 131 + i);
	if (depth + 1 < max)
		recurse(depth + 1, max, seed_base);
	else if (at_bottom)
		at_bottom();
	for (i = 0; i < FRAME; i++)
		CHECK(buf[i] == (unsigned char)mix64(seed * 131 + i),
		      "stack frame at depth %zu (of %zu) byte %zu differs: 0x%02x", depth, max, i, buf[i]);
}

static void wait_at_bottom(void)
{
	char line[512];
	volatile int here;

	CHECK(maps_line_for((void *)&here, line, sizeof(line)) == 0, "stack not in maps");
	logmsg("deepest frame at %p: %s", (void *)&here, line);
	signal_ready();
	wait_go();
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	size_t limit;

	setup(argc, argv);
	CHECK_SYS(getrlimit(RLIMIT_STACK, &rl));
	limit = rl.rlim_cur == RLIM_INFINITY ? (8u << 20) : rl.rlim_cur;
	if (limit > (8u << 20))
		limit = 8u << 20;
	/* each frame takes FRAME bytes plus some; stay well inside the limit */
	deeper_depth = (limit * 3 / 4) / (FRAME + 128);
	CHECK(deeper_depth > DEPTH * 2, "stack limit %zu too small for the test", limit);

	at_bottom = wait_at_bottom;
	recurse(0, DEPTH, 11);
	logmsg("unwound %d frames after restore; recursing %zu deep", DEPTH, deeper_depth);
	at_bottom = NULL;
	recurse(0, deeper_depth, 12);
	pass();
}
