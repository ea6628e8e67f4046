#include "barrier.h"

#include <linux/membarrier.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* 0 = not tried, 1 = registered, -1 = unavailable. Fork keeps the kernel's
 * registration and this copy alike; exec resets both. */
static _Atomic int registered;

static long membarrier(int cmd) { return syscall(__NR_membarrier, cmd, 0, 0); }

bool dmaq__barrier_register(void)
{
    int state = atomic_load_explicit(&registered, memory_order_acquire);
    if (state == 0) {
        /* DMAQ_NO_MEMBARRIER=1 behaves as where membarrier is forbidden:
         * for tests of that path, and a way out should a kernel's be slow. */
        const char *off = getenv("DMAQ_NO_MEMBARRIER");
        long supported = off && *off && *off != '0' ? -1 : membarrier(MEMBARRIER_CMD_QUERY);
        state = supported >= 0 && (supported & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
                        membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0
                    ? 1
                    : -1;
        atomic_store_explicit(&registered, state, memory_order_release);
    }
    return state == 1;
}

bool dmaq__barrier_heavy(void)
{
    return dmaq__barrier_register() && membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
}
