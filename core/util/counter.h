/* Counters in shared memory with one writer at a time. */
#ifndef DMAQ_UTIL_COUNTER_H
#define DMAQ_UTIL_COUNTER_H

#include <stdatomic.h>
#include <stdint.h>

/* Add `by` to a counter only one thread (or process) writes at a time,
 * which others read: no locked read-modify-write instruction. */
static inline void dmaq__bump(_Atomic uint64_t *counter, uint64_t by)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + by, memory_order_relaxed);
}

#endif
