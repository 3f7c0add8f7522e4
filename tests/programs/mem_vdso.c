/* vDSO: glibc caches pointers into the vDSO, so after restore the vDSO must
 * be at the same address (AT_SYSINFO_EHDR still names the [vdso] mapping)
 * and its data page must be live: clock_gettime/gettimeofday through the
 * vDSO agree with the real syscalls and time has gone forward. */
#define _GNU_SOURCE
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include "common.h"

static double ts_sec(const struct timespec *ts)
{
	return ts->tv_sec + ts->tv_nsec / 1e9;
}

static void check_vdso_mapping(unsigned long ehdr, char *line, size_t cap, const char *when)
{
	CHECK(ehdr != 0, "%s: no AT_SYSINFO_EHDR", when);
	CHECK(maps_line_for((void *)ehdr, line, cap) == 0, "%s: AT_SYSINFO_EHDR 0x%lx is not mapped", when, ehdr);
	CHECK(strstr(line, "[vdso]"), "%s: AT_SYSINFO_EHDR 0x%lx is in '%s', not [vdso]", when, ehdr, line);
	CHECK(memcmp((void *)ehdr, "\177ELF", 4) == 0, "%s: no ELF header at the vDSO", when);
}

static void check_clocks(const char *when, const struct timespec *mono0, const struct timespec *real0)
{
	struct timespec mv, ms, rv, rs;
	struct timeval tv;
	int i;

	for (i = 0; i < 3; i++) {
		CHECK_SYS(clock_gettime(CLOCK_MONOTONIC, &mv));
		CHECK_SYS(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ms));
		CHECK(ts_sec(&ms) >= ts_sec(&mv) && ts_sec(&ms) - ts_sec(&mv) < 0.5,
		      "%s: vDSO CLOCK_MONOTONIC %.6f vs syscall %.6f", when, ts_sec(&mv), ts_sec(&ms));
		CHECK(ts_sec(&mv) >= ts_sec(mono0), "%s: CLOCK_MONOTONIC went back: %.6f < %.6f", when,
		      ts_sec(&mv), ts_sec(mono0));
		CHECK_SYS(clock_gettime(CLOCK_REALTIME, &rv));
		CHECK_SYS(syscall(SYS_clock_gettime, CLOCK_REALTIME, &rs));
		CHECK(ts_sec(&rs) - ts_sec(&rv) < 0.5 && ts_sec(&rv) - ts_sec(&rs) < 0.5,
		      "%s: vDSO CLOCK_REALTIME %.6f vs syscall %.6f", when, ts_sec(&rv), ts_sec(&rs));
		CHECK(ts_sec(&rv) + 1 >= ts_sec(real0), "%s: CLOCK_REALTIME went back", when);
		CHECK_SYS(gettimeofday(&tv, NULL));
		CHECK(tv.tv_sec + 1 >= rs.tv_sec && tv.tv_sec <= rs.tv_sec + 1,
		      "%s: gettimeofday %ld vs clock_gettime %ld", when, (long)tv.tv_sec, (long)rs.tv_sec);
		CHECK(time(NULL) + 1 >= rs.tv_sec, "%s: time() %ld vs %ld", when, (long)time(NULL), (long)rs.tv_sec);
	}
}

int main(int argc, char **argv)
{
	unsigned long ehdr0, ehdr1;
	char line0[512], line1[512];
	struct timespec mono0, real0, mono1;
	int i;

	setup(argc, argv);
	ehdr0 = getauxval(AT_SYSINFO_EHDR);
	check_vdso_mapping(ehdr0, line0, sizeof(line0), "before checkpoint");
	CHECK_SYS(clock_gettime(CLOCK_MONOTONIC, &mono0));
	CHECK_SYS(clock_gettime(CLOCK_REALTIME, &real0));
	check_clocks("before checkpoint", &mono0, &real0);

	signal_ready();
	wait_go();

	ehdr1 = getauxval(AT_SYSINFO_EHDR);
	CHECK(ehdr1 == ehdr0, "AT_SYSINFO_EHDR is 0x%lx after restore, was 0x%lx", ehdr1, ehdr0);
	check_vdso_mapping(ehdr1, line1, sizeof(line1), "after restore");
	CHECK(strcmp(line0, line1) == 0, "[vdso] mapping changed: '%s' -> '%s'", line0, line1);
	check_clocks("after restore", &mono0, &real0);
	/* monotonic time moves forward through the vDSO */
	CHECK_SYS(clock_gettime(CLOCK_MONOTONIC, &mono1));
	for (i = 0; i < 100; i++) {
		struct timespec t, d = { 0, 1000000 };
		nanosleep(&d, NULL);
		CHECK_SYS(clock_gettime(CLOCK_MONOTONIC, &t));
		CHECK(ts_sec(&t) >= ts_sec(&mono1), "CLOCK_MONOTONIC not monotonic after restore");
		mono1 = t;
	}
	CHECK(ts_sec(&mono1) - ts_sec(&mono0) > 0.09, "CLOCK_MONOTONIC did not advance");
	pass();
}
