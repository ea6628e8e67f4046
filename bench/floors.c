/*
 * This machine's own limits, measured in the same run as dmaq so that every
 * dmaq figure is a ratio to one of them:
 *   cache line  one process stamps a line, another on another CPU spins
 *               until it sees it: the least a one-way handoff can cost;
 *   ring walk   the same, each stamp in the next 128-byte record of a
 *               ring (a 64-byte message's, in dmaq's ring), as a ring's
 *               reader and writer walk memory: what that walk costs the
 *               machine (TLB and cache misses, on a VM its memory's own);
 *   futex       the same, the reader asleep in FUTEX_WAIT and woken by the
 *               writer: the least a sleeping reader can cost;
 *   memcpy      one CPU copying messages out of a ring-sized buffer into
 *               page-aligned memory;
 *   bare ring   a textbook SPSC ring of fixed slots between two processes,
 *               copying in and out, publishing its head and reading its tail
 *               on every message: the streaming ceiling of a plain ring.
 */
#define _GNU_SOURCE
#include "floors.h"

#include <dmaq/dmaq.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct slot {
    _Atomic uint32_t seq;
    uint64_t stamp;
};

struct handoff {
    _Alignas(64) struct slot line;
    _Alignas(64) _Atomic uint32_t ack;
    double lat[];
};

/* A 64-byte message's record in dmaq's ring: 128 bytes. */
#define WALK_RECORD ((DMAQ_RECORD_HEADER + 64 + DMAQ_RECORD_ALIGN - 1) & ~(DMAQ_RECORD_ALIGN - 1))

/* Map the ring's pages in this process before the clock runs, as dmaq maps
 * its rings (MAP_POPULATE): a forked process shares the pages but takes a
 * fault on its first touch of each. */
static void map_ring(unsigned char *ring, size_t walk)
{
#ifdef MADV_POPULATE_WRITE
    if (madvise(ring, walk, MADV_POPULATE_WRITE) == 0)
        return;
#endif
    for (size_t off = 0; off < walk; off += 4096)
        (void)*(volatile unsigned char *)(ring + off);
}

/* Where handoff i goes: the one line, or the ring's next record. */
static struct slot *slot_for(struct handoff *h, unsigned char *ring, size_t walk, uint32_t i)
{
    return walk ? (struct slot *)(ring + (size_t)i * WALK_RECORD % walk) : &h->line;
}

static void futex_wait(_Atomic uint32_t *w, uint32_t v) { syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0); }
static void futex_wake(_Atomic uint32_t *w) { syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0); }

/* One handoff measurement; `relax` makes the spinning reader pause between
 * looks, as dmaq's subscribers do; `walk` (bytes, 0: none) makes each
 * handoff use the next record of a ring that big. */
static struct pct handoff(size_t samples, int sleep, double gap_ns, int relax, size_t walk, double *keep)
{
    size_t warmup = samples / 10 + 1, size = sizeof(struct handoff) + samples * sizeof(double);
    struct handoff *h = shared_alloc(size);
    unsigned char *ring = walk ? shared_alloc(walk) : NULL;
    pid_t reader = fork();
    if (reader == 0) {
        pin(1);
        if (ring)
            map_ring(ring, walk);
        for (uint32_t i = 1; i <= warmup + samples; i++) {
            struct slot *s = slot_for(h, ring, walk, i);
            while (atomic_load_explicit(&s->seq, memory_order_acquire) != i)
                if (sleep)
                    futex_wait(&s->seq, i - 1);
                else if (relax)
                    cpu_relax();
            uint64_t now = ticks();
            if (i > warmup)
                h->lat[i - warmup - 1] = (double)(int64_t)(now - s->stamp) * ns_per_tick;
            atomic_store_explicit(&h->ack, i, memory_order_release);
        }
        _exit(0);
    }
    pid_t writer = fork();
    if (writer == 0) {
        pin(0);
        if (ring)
            map_ring(ring, walk);
        for (uint32_t i = 1; i <= warmup + samples; i++) {
            while (atomic_load_explicit(&h->ack, memory_order_acquire) != i - 1)
                cpu_relax();
            if (gap_ns > 0)
                spin_for_ns(gap_ns);
            struct slot *s = slot_for(h, ring, walk, i);
            s->stamp = ticks();
            atomic_store_explicit(&s->seq, i, memory_order_release);
            if (sleep)
                futex_wake(&s->seq);
        }
        _exit(0);
    }
    waitpid(reader, NULL, 0);
    waitpid(writer, NULL, 0);
    struct pct p = percentiles(h->lat, samples);
    if (keep)
        memcpy(keep, h->lat, samples * sizeof *keep);
    shared_free(h, size);
    if (ring)
        shared_free(ring, walk);
    return p;
}

struct pct floor_handoff(size_t samples, int sleep, double gap_ns, double *keep)
{
    if (sleep)
        return handoff(samples, 1, gap_ns, 0, 0, keep);
    /* A reader spinning flat out or pausing between looks: which hands off
     * faster depends on where the host put the two CPUs (by 3x on this VM,
     * either way), and the floor is the faster. */
    double *paused_kept = keep ? malloc(samples * sizeof *keep) : NULL;
    struct pct tight = handoff(samples, 0, gap_ns, 0, 0, keep), paused = handoff(samples, 0, gap_ns, 1, 0, paused_kept);
    if (paused.p50 < tight.p50 && keep)
        memcpy(keep, paused_kept, samples * sizeof *keep);
    free(paused_kept);
    return paused.p50 < tight.p50 ? paused : tight;
}

struct pct floor_ring_walk(size_t samples, size_t ring_bytes, double *keep)
{
    return handoff(samples, 0, 0, 1, ring_bytes, keep);
}

double floor_memcpy_gbps(size_t size, double seconds)
{
    size_t region = 8u << 20;
    while (region < 8 * size)
        region <<= 1;
    /* Both page-aligned: this machine's best case. (With the destination a
     * few bytes past the source modulo 4096, as two malloc'd blocks often
     * are, the AMD EPYC we measure on copies 4 KiB-512 KiB blocks more than
     * ten times slower through glibc's rep movsb.) */
    unsigned char *src = aligned_alloc(4096, region), *dst = aligned_alloc(4096, (size + 4095) & ~(size_t)4095);
    memset(src, 0x5a, region);
    memset(dst, 0, size);
    uint64_t bytes = 0, t0 = now_ns(), end = t0 + (uint64_t)(seconds * 1e9);
    size_t off = 0;
    do {
        for (int i = 0; i < 64; i++) {
            memcpy(dst, src + off, size);
            __asm__ __volatile__("" : : "r"(dst) : "memory"); /* the copy must happen */
            off = off + size * 2 > region ? 0 : off + size;
            bytes += size;
        }
    } while (now_ns() < end);
    double gbps = (double)bytes / (double)(now_ns() - t0);
    free(src);
    free(dst);
    return gbps;
}

double floor_bare_ring(size_t size, double seconds)
{
    size_t slots = (8u << 20) / size < 16 ? 16 : (8u << 20) / size;
    struct ring {
        _Alignas(64) _Atomic uint64_t head;
        _Atomic int done;
        _Alignas(64) _Atomic uint64_t tail;
        _Alignas(64) double seconds;
        uint64_t count;
    } *r = shared_alloc(sizeof *r);
    unsigned char *slot = shared_alloc(slots * size);
    pid_t consumer = fork();
    if (consumer == 0) {
        pin(1);
        unsigned char *dst = malloc(size);
        uint64_t i = 0, t0 = 0;
        for (;;) {
            uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
            if (head == i) {
                if (atomic_load(&r->done) && atomic_load(&r->head) == i)
                    break;
                cpu_relax();
                continue;
            }
            if (i == 0)
                t0 = now_ns();
            memcpy(dst, slot + (i % slots) * size, size);
            atomic_store_explicit(&r->tail, ++i, memory_order_release);
        }
        r->seconds = (double)(now_ns() - t0) / 1e9;
        r->count = i;
        _exit(0);
    }
    pin(0);
    unsigned char *src = malloc(size);
    memset(src, 0x5a, size);
    uint64_t end = ticks() + ns_to_ticks(seconds * 1e9);
    for (uint64_t i = 0;; i++) {
        if (i % 64 == 0 && ticks() >= end)
            break;
        while (i - atomic_load_explicit(&r->tail, memory_order_acquire) >= slots)
            cpu_relax();
        memcpy(slot + (i % slots) * size, src, size);
        atomic_store_explicit(&r->head, i + 1, memory_order_release);
    }
    atomic_store(&r->done, 1);
    waitpid(consumer, NULL, 0);
    unpin();
    double rate = r->seconds > 0 ? (double)r->count / r->seconds : 0;
    free(src);
    shared_free(slot, slots * size);
    shared_free(r, sizeof *r);
    return rate;
}
