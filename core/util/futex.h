/* futex(2) on words in shared memory (not FUTEX_PRIVATE: waiters and wakers
 * are different processes). */
#ifndef DMAQ_UTIL_FUTEX_H
#define DMAQ_UTIL_FUTEX_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Sleep while *word == expected, at most timeout_ns (negative = forever).
 * Spurious and early returns are fine: callers re-check their condition. */
static inline void dmaq__futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, NULL, 0);
}

static inline void dmaq__futex_wake_all(uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

#endif
