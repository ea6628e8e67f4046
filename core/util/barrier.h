/*
 * Asymmetric memory barriers (membarrier(2), MEMBARRIER_CMD_GLOBAL_EXPEDITED).
 *
 * A waker stores (a committed record, a moved position) and then reads a
 * sleeper count; a sleeper increments the count and then re-reads what the
 * waker stored. Each side needs a full barrier between its store and its load
 * or a wake-up can be lost. A full barrier on the waker's side costs it every
 * message: it stalls until all its stores are visible, tens of nanoseconds
 * when the ring's lines sit in the reader's cache. So the waker only stops
 * the compiler from reordering, and the sleeper, which is about to enter the
 * kernel anyway, makes every running thread of every registered process pass
 * a full barrier. That pairs with the waker's program order exactly as a
 * fence would.
 *
 * Where membarrier is missing or forbidden (old kernels, seccomp), a process
 * cannot register: its wakers fence themselves, and its sleepers ask every
 * peer on the channel to fence (shm_header.fence_required).
 */
#ifndef DMAQ_UTIL_BARRIER_H
#define DMAQ_UTIL_BARRIER_H

#include <stdatomic.h>
#include <stdbool.h>

/* Register this process for heavy barriers (once per process; registration
 * survives fork and ends at exec, as the kernel's does). Returns true when
 * this process's threads are covered by dmaq__barrier_heavy() from anywhere.
 * Any thread; not on the hot path (it may sleep the first time). */
bool dmaq__barrier_register(void);

/* Make every running thread of every registered process pass a full memory
 * barrier. Returns false when membarrier is unavailable. Any thread. */
bool dmaq__barrier_heavy(void);

/* The waker's side: a full fence only where a peer cannot issue heavy
 * barriers (`fence` true), else a compiler barrier. */
static inline void dmaq__barrier_light(bool fence)
{
    if (fence)
        atomic_thread_fence(memory_order_seq_cst);
    else
        atomic_signal_fence(memory_order_seq_cst);
}

#endif
