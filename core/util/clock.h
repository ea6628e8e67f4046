/* Clocks, CPU relaxation and deadlines shared by the transports. */
#ifndef DMAQ_UTIL_CLOCK_H
#define DMAQ_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t dmaq__now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t dmaq__mono_ns(void) { return dmaq__now_ns(CLOCK_MONOTONIC); }

/* CLOCK_MONOTONIC to a tick (a few ms), for peer timeouts and keep-alives
 * that count in seconds: it never leaves the vDSO, where the precise clock
 * can be a system call (an emulated guest's HPET: about 1 us a read, on
 * every message of a connection). */
static inline uint64_t dmaq__coarse_ns(void) { return dmaq__now_ns(CLOCK_MONOTONIC_COARSE); }

/* A count that grows at a constant rate, for comparing two spans of time
 * with each other: the time-stamp counter where there is one (cheap where
 * the clock is not: an emulated guest's HPET costs about 1 us a read), else
 * the clock. Not nanoseconds, and not comparable between CPUs of another
 * rate. */
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static inline uint64_t dmaq__ticks(void) { return __rdtsc(); }
#else
static inline uint64_t dmaq__ticks(void) { return dmaq__mono_ns(); }
#endif

/* Timeouts at least this long are timed with the coarse clock: a deadline
 * a second or more away needs no precision, and the precise clock can be a
 * system call (an emulated guest's HPET: 1-1.5 us a read, which a blocking
 * receive with a timeout paid on every message). */
#define DMAQ__COARSE_TIMEOUT_NS 1000000000LL
/* More than the coarse clock's tick (1-10 ms by CONFIG_HZ), added to such a
 * deadline: it lags the precise clock by up to a tick, and a deadline taken
 * from it must never come early. So such a timeout may end this much late. */
#define DMAQ__COARSE_SLACK_NS 10000000u

/* Absolute CLOCK_MONOTONIC deadline for a timeout; UINT64_MAX = never. */
static inline uint64_t dmaq__deadline(int64_t timeout_ns)
{
    if (timeout_ns < 0)
        return UINT64_MAX;
    if (timeout_ns >= DMAQ__COARSE_TIMEOUT_NS)
        return dmaq__coarse_ns() + (uint64_t)timeout_ns + DMAQ__COARSE_SLACK_NS;
    return dmaq__mono_ns() + (uint64_t)timeout_ns;
}

/* What is left of a timeout that began with `deadline`
 * (dmaq__deadline(timeout_ns)): a negative or zero timeout as it was. */
static inline int64_t dmaq__timeout_left(int64_t timeout_ns, uint64_t deadline)
{
    if (timeout_ns <= 0)
        return timeout_ns;
    uint64_t now = timeout_ns >= DMAQ__COARSE_TIMEOUT_NS ? dmaq__coarse_ns() : dmaq__mono_ns();
    return now >= deadline ? 0 : (int64_t)(deadline - now);
}

/* dmaq_options.spin_ns as a wait uses it: negative means the default, which
 * hides a wake-up while traffic is steady. */
static inline int64_t dmaq__spin_ns(int64_t spin_ns) { return spin_ns < 0 ? 50000 : spin_ns; }

static inline void dmaq__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
