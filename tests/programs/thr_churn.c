/* Threads created and ended all the time: two spawner threads each create
 * a worker, join it and create the next, so a checkpoint finds threads
 * being born and dying. Freezing must catch every thread that exists; after
 * restore the churn goes on (the worker count keeps rising), every thread
 * is joined, and the process ends with one thread. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/syscall.h>

#include "common.h"

#define SPAWNERS 2

static volatile int stop;
static uint64_t workers_done;
static char failure[256];

static void *worker(void *arg)
{
	(void)arg;
	__atomic_add_fetch(&workers_done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *spawner(void *arg)
{
	(void)arg;
	while (!stop) {
		pthread_t t;
		int r = pthread_create(&t, NULL, worker, NULL);
		if (r != 0) {
			snprintf(failure, sizeof(failure), "pthread_create: %s", strerror(r));
			return NULL;
		}
		r = pthread_join(t, NULL);
		if (r != 0) {
			snprintf(failure, sizeof(failure), "pthread_join: %s", strerror(r));
			return NULL;
		}
	}
	return NULL;
}

static uint64_t done(void)
{
	return __atomic_load_n(&workers_done, __ATOMIC_SEQ_CST);
}

int main(int argc, char **argv)
{
	pthread_t s[SPAWNERS];
	struct timespec deadline;
	char threads[32];
	uint64_t before;
	int i, r;

	setup(argc, argv);
	for (i = 0; i < SPAWNERS; i++) {
		r = pthread_create(&s[i], NULL, spawner, NULL);
		CHECK(r == 0, "pthread_create: %s", strerror(r));
	}
	while (done() < 1000) {
		struct timespec ts = { 0, 1000 * 1000 };
		nanosleep(&ts, NULL);
	}

	signal_ready();
	wait_go();

	before = done();
	{
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	CHECK(done() > before + 10, "workers done went from %lu to %lu in 100 ms after restore",
	      (unsigned long)before, (unsigned long)done());
	stop = 1;
	for (i = 0; i < SPAWNERS; i++) {
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += 5;
		r = pthread_timedjoin_np(s[i], NULL, &deadline);
		CHECK(r == 0, "joining spawner %d: %s", i, strerror(r));
	}
	CHECK(failure[0] == 0, "%s", failure);
	CHECK(status_field("Threads", threads, sizeof(threads)) == 0 && atoi(threads) == 1,
	      "%s threads left after joining all", threads);
	pass();
}
