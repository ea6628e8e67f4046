/*
 * The publish timestamp: CLOCK_REALTIME in ns, read cheaply.
 *
 * clock_gettime costs 25-30 ns in the VMs we measure (kvm-clock through the
 * vDSO), as much as the rest of a commit. Between real reads of the clock,
 * at most STAMP_ANCHOR_NS apart, this interpolates with the CPU's
 * time-stamp counter (about 10 ns) at a rate measured against the clock
 * over the handle's life. The kernel's own clock is that counter scaled the
 * same way, so the error is the rate's error over one interval: tens of ns.
 * A counter that jumps (migration, a snapshot restored) or runs backwards
 * is caught at the next real read, which starts the measurement over.
 * One per publisher handle: no sharing, no thread-local storage.
 */
#ifndef DMAQ_UTIL_STAMP_H
#define DMAQ_UTIL_STAMP_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "clock.h"

#define STAMP_ANCHOR_NS 100000u     /* read the real clock at least this often */
#define STAMP_CALIBRATE_NS 1000000u /* measure the rate over at least this */
/* Counter ticks a real read of the clock may take (a few hundred ns at any
 * counter rate seen) before the pair is judged disturbed. */
#define STAMP_PAIR_TICKS 4000u

struct dmaq__stamp {
    uint64_t anchor_tsc, anchor_ns; /* the last real read */
    uint64_t base_tsc, base_ns;     /* where the rate is measured from */
    uint64_t span_ticks;            /* interpolate this far past the anchor */
    double ns_per_tick;             /* 0 until measured */
};

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>

/* A real read of the clock and the counter around it; false when the two
 * counter reads are too far apart (we were preempted or interrupted in
 * between, and cannot tell when the clock was read). */
static inline bool dmaq__stamp_pair(uint64_t *tsc, uint64_t *ns)
{
    for (int tries = 0; tries < 4; tries++) {
        uint64_t before = __rdtsc();
        *ns = dmaq__now_ns(CLOCK_REALTIME);
        uint64_t after = __rdtsc();
        if (after - before < STAMP_PAIR_TICKS) {
            *tsc = before + (after - before) / 2;
            return true;
        }
    }
    return false;
}

/* Read the clock for real, re-anchor and re-measure the rate. */
static inline uint64_t dmaq__stamp_anchor(struct dmaq__stamp *s)
{
    uint64_t tsc, ns;
    if (!dmaq__stamp_pair(&tsc, &ns))
        return ns; /* a good anchor next time */
    if (s->base_ns == 0 || tsc <= s->base_tsc || ns <= s->base_ns) {
        s->base_tsc = tsc;
        s->base_ns = ns;
        s->ns_per_tick = 0;
    } else if (ns - s->base_ns >= STAMP_CALIBRATE_NS) {
        double rate = (double)(ns - s->base_ns) / (double)(tsc - s->base_tsc);
        /* A rate off by more than 1% from the last: the counter jumped, or
         * the clock was set. Measure again from here. */
        if (s->ns_per_tick > 0 && (rate > s->ns_per_tick * 1.01 || rate < s->ns_per_tick * 0.99)) {
            s->base_tsc = tsc;
            s->base_ns = ns;
            s->ns_per_tick = 0;
        } else {
            s->ns_per_tick = rate;
            s->span_ticks = (uint64_t)(STAMP_ANCHOR_NS / rate);
        }
    }
    s->anchor_tsc = tsc;
    s->anchor_ns = ns;
    return ns;
}

static inline uint64_t dmaq__stamp_now(struct dmaq__stamp *s)
{
    uint64_t tsc = __rdtsc();
    uint64_t since = tsc - s->anchor_tsc; /* huge if the counter went back */
    if (s->ns_per_tick > 0 && since < s->span_ticks)
        return s->anchor_ns + (uint64_t)((double)since * s->ns_per_tick);
    return dmaq__stamp_anchor(s);
}
#else
static inline uint64_t dmaq__stamp_now(struct dmaq__stamp *s)
{
    (void)s;
    return dmaq__now_ns(CLOCK_REALTIME);
}
#endif

#endif
