/* This machine's own limits (floors.c). */
#ifndef DMAQ_BENCH_FLOORS_H
#define DMAQ_BENCH_FLOORS_H

#include "bench.h"

/* One-way handoff between two processes pinned to CPUs 0 and 1: the reader
 * spins (sleep = 0) or sleeps on a futex (sleep = 1); the writer idles
 * gap_ns before each handoff so that a sleeping reader is asleep. If `keep`
 * is not NULL it receives the samples (sorted), `samples` of them. */
struct pct floor_handoff(size_t samples, int sleep, double gap_ns, double *keep);
/* memcpy of `size`-byte messages out of a ring-sized buffer, GB/s. */
double floor_memcpy_gbps(size_t size, double seconds);
/* A textbook SPSC ring between two processes, messages/s. */
double floor_bare_ring(size_t size, double seconds);

#endif
