/* This machine's own limits (floors.c). */
#ifndef DMAQ_BENCH_FLOORS_H
#define DMAQ_BENCH_FLOORS_H

#include "bench.h"

/* One-way handoff between two processes pinned to CPUs 0 and 1: the reader
 * spins (sleep = 0) or sleeps on a futex (sleep = 1); the writer idles
 * gap_ns before each handoff so that a sleeping reader is asleep. If `keep`
 * is not NULL it receives the samples (sorted), `samples` of them. */
struct pct floor_handoff(size_t samples, int sleep, double gap_ns, double *keep);
/* The spinning handoff (its reader pausing between looks, as dmaq's do),
 * each in the next 128-byte record of a ring of ring_bytes: what walking a
 * ring's memory adds (on this VM, mostly to the tail). */
struct pct floor_ring_walk(size_t samples, size_t ring_bytes, double *keep);
/* memcpy of `size`-byte messages out of a ring-sized buffer, GB/s. */
double floor_memcpy_gbps(size_t size, double seconds);
/* A textbook SPSC ring between two processes, messages/s. */
double floor_bare_ring(size_t size, double seconds);

#endif
