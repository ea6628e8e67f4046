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
 * Where the clock itself is slow (an emulated HPET: 1-1.5 us a read, a
 * system call each), the real reads come further apart, so that they stay
 * a thousandth of the time, and a read is judged by the narrowest seen.
 * One per publisher handle: no sharing, no thread-local storage.
 */
#ifndef DMAQ_UTIL_STAMP_H
#define DMAQ_UTIL_STAMP_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "clock.h"

#define STAMP_ANCHOR_NS 100000u     /* read the real clock at least this often (see STAMP_READS_PER_SPAN) */
#define STAMP_CALIBRATE_NS 1000000u /* measure the rate over at least this */
/* Counter ticks a real read of the clock may take (a few hundred ns at any
 * counter rate seen) before the pair is judged disturbed, unless the
 * narrowest pair seen was wider: then up to twice that. */
#define STAMP_PAIR_TICKS 4000u
#define STAMP_READS_PER_SPAN 1000u /* real reads at most one in this many ticks of their own cost */

struct dmaq__stamp {
    uint64_t anchor_tsc, anchor_ns; /* the last real read */
    uint64_t base_tsc, base_ns;     /* where the rate is measured from */
    uint64_t span_ticks;            /* interpolate this far past the anchor */
    uint64_t narrowest;             /* the narrowest pair seen, in ticks (0: none yet) */
    double ns_per_tick;             /* 0 until measured */
};

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>

/* A real read of the clock and the counter around it: the narrowest of up
 * to four tries, stopping at one that is narrow enough (a few hundred ns,
 * or within twice the narrowest seen). A wide pair was preempted or
 * interrupted between its counter reads, and cannot tell when the clock was
 * read; four in a row are rare, unless the clock itself is that slow. */
static inline void dmaq__stamp_pair(struct dmaq__stamp *s, uint64_t *tsc, uint64_t *ns)
{
    uint64_t best = UINT64_MAX;
    *tsc = *ns = 0;
    for (int tries = 0; tries < 4; tries++) {
        uint64_t before = __rdtsc();
        uint64_t now = dmaq__now_ns(CLOCK_REALTIME);
        uint64_t width = __rdtsc() - before;
        if (width < best) {
            best = width;
            *tsc = before + width / 2;
            *ns = now;
        }
        if (!s->narrowest || width < s->narrowest)
            s->narrowest = width;
        if (width < STAMP_PAIR_TICKS || width <= 2 * s->narrowest)
            return;
    }
}

/* Read the clock for real, re-anchor and re-measure the rate. */
static inline uint64_t dmaq__stamp_anchor(struct dmaq__stamp *s)
{
    uint64_t tsc, ns;
    dmaq__stamp_pair(s, &tsc, &ns);
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
            if (s->span_ticks < STAMP_READS_PER_SPAN * s->narrowest)
                s->span_ticks = STAMP_READS_PER_SPAN * s->narrowest;
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
