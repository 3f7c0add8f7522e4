/* Threads: five threads, each in its own kind of wait or work, with its
 * own thread id, name, __thread data, signal mask, alternate stack, rseq
 * registration and (one) a robust mutex. After restore every thread checks
 * that its id, name, TLS, mask and altstack are unchanged and that rseq is
 * still registered; a thread-directed signal left pending reaches its
 * thread; the robust mutex's owner exits and the next locker sees
 * EOWNERDEAD (the robust list survived); every thread is joined (the
 * clear-tid address survived, or join would hang). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/rseq.h>

#include "common.h"

#define NTHREADS 5
#define ALT_SIZE (64 * 1024)
#define RSEQ_SIG_X86 0x53053053

enum { SPIN, CONDWAIT, SLEEPER, SIGNALLED, ROBUST };

static const char *const names[NTHREADS] = { "snap-spin", "snap-cond", "snap-sleep", "snap-sig",
					     "snap-robust" };
static __thread int tls_value;
static pid_t tids[NTHREADS];
static pthread_t handles[NTHREADS];
static volatile int started;
static volatile int go_flag;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int cond_ready;
static pthread_mutex_t robust;
static volatile pid_t handler_tid;
static volatile uint64_t spin_progress;
static char results[NTHREADS][256];

static pid_t my_tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static void on_usr1(int sig)
{
	(void)sig;
	handler_tid = my_tid();
}

/* Whether this thread's rseq area is registered with the kernel: asking to
 * register it again answers EBUSY if so. */
static const char *rseq_state(void)
{
	struct rseq *area;
	long r;

	if (__rseq_size == 0)
		return "ok";
	area = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	r = syscall(SYS_rseq, area, 32, 0, RSEQ_SIG_X86);
	if (r < 0 && errno == EINVAL)
		r = syscall(SYS_rseq, area, __rseq_size, 0, RSEQ_SIG_X86);
	if (r == 0)
		return "rseq was not registered";
	if (errno != EBUSY)
		return "rseq re-registration gave an unexpected error";
	return "ok";
}

/* Common checks, run by each thread after restore; "" on success. */
static void check_self(int i, const stack_t *alt, int usr1_blocked)
{
	char name[32];
	sigset_t mask;
	stack_t now;
	const char *r;

	if (my_tid() != tids[i]) {
		snprintf(results[i], sizeof(results[i]), "thread %d: tid %d, was %d", i, my_tid(), tids[i]);
		return;
	}
	if (tls_value != i * 1000 + 7) {
		snprintf(results[i], sizeof(results[i]), "thread %d: __thread value %d", i, tls_value);
		return;
	}
	if (pthread_getname_np(pthread_self(), name, sizeof(name)) != 0 || strcmp(name, names[i]) != 0) {
		snprintf(results[i], sizeof(results[i]), "thread %d: name '%s', want '%s'", i, name, names[i]);
		return;
	}
	pthread_sigmask(SIG_BLOCK, NULL, &mask);
	if (sigismember(&mask, SIGUSR1) != usr1_blocked) {
		snprintf(results[i], sizeof(results[i]), "thread %d: SIGUSR1 blocked=%d, want %d", i,
			 sigismember(&mask, SIGUSR1), usr1_blocked);
		return;
	}
	sigaltstack(NULL, &now);
	if (alt ? (now.ss_sp != alt->ss_sp || now.ss_size != alt->ss_size || now.ss_flags != 0)
		: !(now.ss_flags & SS_DISABLE)) {
		snprintf(results[i], sizeof(results[i]), "thread %d: altstack sp %p size %zu flags %d", i,
			 now.ss_sp, now.ss_size, now.ss_flags);
		return;
	}
	r = rseq_state();
	if (strcmp(r, "ok") != 0) {
		snprintf(results[i], sizeof(results[i]), "thread %d: %s", i, r);
		return;
	}
	results[i][0] = 0;
}

static void begin(int i)
{
	tids[i] = my_tid();
	tls_value = i * 1000 + 7;
	pthread_setname_np(pthread_self(), names[i]);
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
}

static void *spin_main(void *arg)
{
	/* Floating point and integer state live in registers across the
	 * checkpoint: the loop's invariant must hold every iteration. */
	double a = 1.0, b = 0.0;
	uint64_t n = 0;

	(void)arg;
	begin(SPIN);
	while (!go_flag) {
		a += 2.0;
		b += 1.0;
		n++;
		if (a != 2.0 * b + 1.0 || (double)n != b) {
			snprintf(results[SPIN], sizeof(results[SPIN]), "spin invariant broken: a %f b %f n %lu",
				 a, b, (unsigned long)n);
			return NULL;
		}
		if ((n & 0xffff) == 0)
			spin_progress = n;
	}
	check_self(SPIN, NULL, 0);
	return NULL;
}

static void *cond_main(void *arg)
{
	(void)arg;
	begin(CONDWAIT);
	pthread_mutex_lock(&mu);
	while (!cond_ready)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	check_self(CONDWAIT, NULL, 0);
	return NULL;
}

static void *sleep_main(void *arg)
{
	(void)arg;
	begin(SLEEPER);
	while (!go_flag) {
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	check_self(SLEEPER, NULL, 0);
	return NULL;
}

static void *sig_main(void *arg)
{
	static stack_t ss;
	sigset_t usr1;

	(void)arg;
	ss.ss_sp = mmap(NULL, ALT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ss.ss_size = ALT_SIZE;
	ss.ss_flags = 0;
	sigaltstack(&ss, NULL);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	begin(SIGNALLED);
	while (!go_flag) {
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	check_self(SIGNALLED, &ss, 1);
	if (results[SIGNALLED][0])
		return NULL;
	/* The SIGUSR1 sent to this thread before the checkpoint is pending
	 * for it alone. */
	{
		sigset_t pend;
		sigpending(&pend);
		if (!sigismember(&pend, SIGUSR1)) {
			snprintf(results[SIGNALLED], sizeof(results[SIGNALLED]),
				 "SIGUSR1 sent to the thread is no longer pending");
			return NULL;
		}
	}
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	if (handler_tid != tids[SIGNALLED])
		snprintf(results[SIGNALLED], sizeof(results[SIGNALLED]),
			 "SIGUSR1 handler ran in tid %d, want %d", handler_tid, tids[SIGNALLED]);
	return NULL;
}

static void *robust_main(void *arg)
{
	(void)arg;
	begin(ROBUST);
	pthread_mutex_lock(&robust);
	while (!go_flag) {
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	check_self(ROBUST, NULL, 0);
	/* Exits holding the mutex: the kernel walks the robust list. */
	return NULL;
}

int main(int argc, char **argv)
{
	void *(*mains[NTHREADS])(void *) = { spin_main, cond_main, sleep_main, sig_main, robust_main };
	struct sigaction sa;
	pthread_mutexattr_t ma;
	struct timespec deadline;
	uint64_t before;
	int i, r;

	setup(argc, argv);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&robust, &ma);
	for (i = 0; i < NTHREADS; i++) {
		r = pthread_create(&handles[i], NULL, mains[i], NULL);
		CHECK(r == 0, "pthread_create %d: %s", i, strerror(r));
	}
	/* The main thread (after creating the others, which start unblocked) keeps SIGUSR1 blocked so that only the signalled
	 * thread's own pending signal is in play. */
	{
		sigset_t usr1;
		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	}
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < NTHREADS) {
		struct timespec ts = { 0, 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	CHECK(pthread_kill(handles[SIGNALLED], SIGUSR1) == 0, "pthread_kill");
	while (spin_progress == 0) {
		struct timespec ts = { 0, 1000 * 1000 };
		nanosleep(&ts, NULL);
	}

	signal_ready();
	wait_go();

	before = spin_progress;
	{
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	CHECK(spin_progress > before, "the spinning thread made no progress after restore");
	go_flag = 1;
	pthread_mutex_lock(&mu);
	cond_ready = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	for (i = 0; i < NTHREADS; i++) {
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += 5;
		r = pthread_timedjoin_np(handles[i], NULL, &deadline);
		CHECK(r == 0, "joining thread %d (tid %d): %s (clear-tid address lost?)", i, tids[i],
		      strerror(r));
		CHECK(results[i][0] == 0, "%s", results[i]);
	}
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 2;
	r = pthread_mutex_timedlock(&robust, &deadline);
	CHECK(r == EOWNERDEAD, "locking the robust mutex whose owner exited: %s, want EOWNERDEAD",
	      strerror(r));
	pass();
}
