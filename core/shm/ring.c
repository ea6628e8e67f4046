/*
 * The shm ring: publishers claim space with a 16-byte compare-and-swap on
 * (write position, sequence), or one alone on the channel with a plain
 * 16-byte store, fill the record and commit it by storing its tag last.
 * Subscribers poll the tag at their own position, so in the steady
 * state they never read a line that publishers write besides the records
 * themselves, and publishers read subscriber positions only when their
 * cached limit runs out (see DESIGN.md §8).
 */
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../transport/registry.h"
#include "../util/barrier.h"
#include "../util/clock.h"
#include "../util/counter.h"
#include "../util/error.h"
#include "../util/futex.h"
#include "../util/proc.h"
#include "../util/stamp.h"
#include "dmaq/transport.h"
#include "shm.h"

/* A wait that lasts this long looks for dead peers (a live one is seldom
 * that slow), then again every REAP_EVERY_NS, which also bounds each sleep:
 * nobody wakes a sleeper for a peer that died. */
#define REAP_AFTER_NS 10000000
#define REAP_EVERY_NS 50000000
/* How long after a process without membarrier flags fence_required a waker
 * may still not have seen the flag (its stores drain in microseconds). */
#define FENCE_GRACE_NS 10000000

struct shm_pub {
    struct shm_chan ch;
    struct shm_slot *slot;
    uint64_t limit; /* records may end at or before this position */
    int64_t spin_ns;
    uint32_t id;
    uint32_t solo_tag; /* slot index + 1 while this may be the solo publisher, else 0 */
    /* the outstanding reservation; token 0 = none */
    uint64_t token, lease_pos;
    struct dmaq__stamp clock;
    bool stamps; /* not opened with DMAQ_OPEN_NO_TIMESTAMPS */
};

struct shm_sub {
    struct shm_chan ch;
    struct shm_slot *slot;
    uint32_t slot_index;
    int64_t spin_ns;
    uint64_t pos;      /* broadcast: next position to read */
    uint64_t next_seq; /* broadcast: sequence expected next */
    /* Broadcast, inside the packed record at pos: the next entry, as
     * pack_cursor() makes it (0 at a record's start). */
    uint64_t pack;
    /* Records below this position are checked against the write position
     * after reading, as under the overwrite policy: a block-policy
     * subscriber that started at the oldest record has no gate protecting
     * them. UINT64_MAX under the overwrite policy. */
    uint64_t validate_below;
    /* the outstanding lease's or batch's token (0 = none), and the last one
     * handed out: never handed out twice, so that a lease of a batch that
     * ended fails lease_check without being marked */
    uint64_t token, last_token, lease_pos;
    uint32_t lease_size;
    uint64_t lease_next; /* the entry after the lease's message (struct rec_view) */
    /* The outstanding batch of dmaq_sub_peek_many (0 = none): where each of
     * its records is, so that release and close can end every one. */
    uint32_t batch;
    /* its last message: its number, its record's size, and the entry after
     * it (struct rec_view) */
    uint64_t batch_last_seq;
    uint32_t batch_last_size;
    uint64_t batch_next;
    /* Queue: records released since this subscriber last moved the tail. */
    uint32_t unadvanced;
    uint32_t solo_tag; /* queue: slot index + 1 while this may be the solo subscriber, else 0 */
    uint64_t batch_pos[DMAQ_BATCH_MAX];
};

/* ---- Waiting ------------------------------------------------------------ */

/* One wait for a condition another process makes true: spin for spin_ns,
 * then sleep on `futex` after counting ourselves in `sleepers`, so that the
 * other side makes the wake-up system call only when someone sleeps. The
 * caller re-checks its condition after every return. Returns 0 to retry or
 * DMAQ_ETIMEDOUT/DMAQ_EAGAIN. */
struct waiter {
    uint64_t deadline; /* 0 = not started */
    uint64_t spin_until;
    uint64_t next_reap; /* when to look for dead peers next */
    uint64_t now;       /* the clock when wait_spin last read it */
    int64_t timeout_ns;
    int64_t spin_ns;
    uint32_t spins;
    bool spinning; /* wait_spin has not yet seen the spin phase end */
    bool last_look; /* the spin phase just ended: one more look, then sleep */
    bool settled; /* a publisher that takes any room from now on (wait_for_room) */
};

static int wait_begin(struct waiter *w, int64_t timeout_ns, int64_t spin_ns)
{
    if (timeout_ns == 0)
        return dmaq__error_const(DMAQ_EAGAIN, "nothing available and the timeout is 0");
    uint64_t now = dmaq__mono_ns();
    w->timeout_ns = timeout_ns;
    w->deadline = timeout_ns < 0 ? UINT64_MAX : now + (uint64_t)timeout_ns;
    w->spin_until = now + (uint64_t)spin_ns;
    w->next_reap = now + REAP_AFTER_NS;
    w->spin_ns = spin_ns;
    w->spins = 0;
    w->now = now;
    w->spinning = spin_ns != 0;
    w->last_look = false;
    w->settled = false;
    return 0;
}

/* Spin a little; returns 1 while still in the spinning phase. */
static int wait_spin(struct waiter *w)
{
    if (w->spin_ns == 0)
        return 0; /* sleep at once: even one round of pauses costs microseconds */
    if (w->last_look) {
        w->last_look = false;
        return 0;
    }
    /* One pause per look: on some CPUs a pause takes ~100 cycles, and every
     * one between the data's arrival and our next look is added latency. */
    dmaq__cpu_relax();
    /* Read the clock only every 256 looks: it costs more than a look (45 ns
     * of kvm-clock here, against a 55 ns cache-line handoff). */
    if ((++w->spins & 255) != 0)
        return 1;
    w->now = dmaq__mono_ns();
    bool was_spinning = w->spinning;
    w->spinning = w->now < w->spin_until;
    /* The spin phase's end: one more look, its deadline checked with this
     * reading, so that a spin that outlasted the wait's timeout ends in the
     * timeout, not in a sleep that a publisher would then wake (as the
     * forwarder threads of rdma:// hosts did in an emulated guest, where
     * 256 looks outlast their whole spin). */
    w->last_look = was_spinning && !w->spinning;
    return w->spinning || w->last_look;
}

static int wait_timed_out(struct waiter *w, uint64_t *remaining)
{
    if (w->deadline == UINT64_MAX) {
        *remaining = UINT64_MAX;
        return 0;
    }
    /* While spinning, the deadline is checked at the clock reads of
     * wait_spin: a spinning wait overshoots it by at most 256 looks. */
    uint64_t now = w->spinning || w->last_look ? w->now : dmaq__mono_ns();
    if (now >= w->deadline)
        return dmaq_error_set(DMAQ_ETIMEDOUT, "timed out after %lld ns", (long long)w->timeout_ns);
    *remaining = w->deadline - now;
    return 0;
}


/* Look for dead peers if this wait is due to; returns true if any were
 * reaped (the caller's condition may have changed). */
static bool reap_if_due(struct shm_chan *ch, struct waiter *w)
{
    uint64_t now = dmaq__mono_ns();
    if (now < w->next_reap)
        return false;
    w->next_reap = now + REAP_EVERY_NS;
    return shm_reap(ch) > 0;
}

/* This process cannot issue heavy barriers: make every waker on the
 * channel fence, and nap briefly while one may not have seen that yet. */
static void fall_back_to_fences(struct shm_chan *ch)
{
    ch->fence = true;
    atomic_store(&ch->hdr->fence_required, 1);
    ch->grace_until = dmaq__mono_ns() + FENCE_GRACE_NS;
}

/* Join the channel's barrier scheme (util/barrier.h) before taking a slot:
 * heavy barriers where this process can issue them and was not asked to
 * fence instead (DMAQ_OPEN_FENCED). */
static void barrier_join(struct shm_chan *ch, const dmaq_options *opts)
{
    if ((opts->flags & DMAQ_OPEN_FENCED) || !dmaq__barrier_register())
        fall_back_to_fences(ch);
}

/* Count ourselves among `sleepers` (and, for the reaper, in our slot's
 * `sleeping` bits) before the last check of the condition. The heavy
 * barrier pairs with the light one in wake_if_sleeping: after it, either we
 * see what a waker stored or the waker sees our count. */
static void sleep_announce(struct shm_chan *ch, _Atomic uint32_t *sleepers, struct shm_slot *slot, uint32_t bit)
{
    atomic_fetch_add(sleepers, 1);
    atomic_store_explicit(&slot->sleeping, atomic_load_explicit(&slot->sleeping, memory_order_relaxed) | bit,
                          memory_order_relaxed);
    if (!ch->fence && !dmaq__barrier_heavy())
        fall_back_to_fences(ch); /* membarrier failed after registering: for good */
}

static void sleep_withdraw(_Atomic uint32_t *sleepers, struct shm_slot *slot, uint32_t bit)
{
    atomic_store_explicit(&slot->sleeping, atomic_load_explicit(&slot->sleeping, memory_order_relaxed) & ~bit,
                          memory_order_relaxed);
    atomic_fetch_sub(sleepers, 1);
}

/* Sleep while *futex == v, at most `remaining` ns; when what we wait for may
 * be a peer that died (`stuck`), never past the next reap, since nobody
 * wakes a sleeper for a dead peer. An idle waiter that is not stuck sleeps
 * undisturbed: whatever changes that will wake it. */
static void nap(struct shm_chan *ch, _Atomic uint32_t *futex, uint32_t v, struct waiter *w, uint64_t remaining,
                bool stuck)
{
    if (ch->fence) {
        /* A waker may not have seen fence_required yet: look again soon. */
        uint64_t now = dmaq__mono_ns();
        if (now < ch->grace_until && ch->grace_until - now < remaining)
            remaining = ch->grace_until - now;
    }
    if (!stuck) {
        dmaq__futex_wait((uint32_t *)futex, v, (int64_t)remaining);
        return;
    }
    uint64_t now = dmaq__mono_ns();
    if (w->next_reap <= now) /* due, but there was nothing to look for */
        w->next_reap = now + REAP_EVERY_NS;
    uint64_t until_reap = w->next_reap - now;
    dmaq__futex_wait((uint32_t *)futex, v, (int64_t)(remaining < until_reap ? remaining : until_reap));
}

/* After storing what a sleeper may wait for: wake it if it counted itself
 * in. Only a compiler barrier orders the store before the count's load;
 * the sleeper's heavy barrier does the rest (util/barrier.h). */
static void wake_if_sleeping(struct shm_chan *ch, _Atomic uint32_t *sleepers, _Atomic uint32_t *futex)
{
    dmaq__barrier_light(ch->fence || atomic_load_explicit(&ch->hdr->fence_required, memory_order_relaxed));
    if (atomic_load_explicit(sleepers, memory_order_relaxed)) {
        atomic_fetch_add(futex, 1);
        dmaq__futex_wake_all((uint32_t *)futex);
    }
}

/* ---- Solo claiming --------------------------------------------------------
 *
 * Publishers claim space by moving the write pair, queue subscribers claim
 * messages by moving rd_claim, each with a compare-and-swap, whose locked
 * instruction was a fifth of an uncontended send + recv. One alone on its
 * side of the channel stores instead: the solo publisher, the solo queue
 * subscriber. A handle becomes solo at open when no other handle of its
 * side is there (solo_begin), and stays so until another opens: that one
 * ends it before its first claim (solo_end), for good. Each solo claim sets
 * the handle's solo_busy, then checks the side's solo word; solo_end marks
 * the word SOLO_ENDING, makes every thread pass a full barrier
 * (util/barrier.h) and waits for solo_busy to clear. After that, a claim of
 * the old solo handle either stored already or sees the mark and competes
 * with a compare-and-swap. Whoever finds the mark finishes the ending, so
 * one that dies halfway through it leaves nothing stuck; a solo handle that
 * dies is not waited for. The word holds the solo handle's slot index + 1:
 * a stale one is harmless, as a handle claims solo only after setting the
 * word itself, and every open ends what it finds.
 */

/* The slots of one side and its solo word. */
struct solo_side {
    _Atomic uint32_t *word;
    struct shm_slot *slots;
    _Atomic uint32_t *hwm;
    uint32_t n;
};

static struct solo_side publishers_side(struct shm_header *h)
{
    return (struct solo_side){&h->solo_pub, shm_pub_slots(h), &h->pub_hwm, DMAQ_MAX_PUBLISHERS};
}

static struct solo_side subscribers_side(struct shm_header *h)
{
    return (struct solo_side){&h->solo_sub, shm_sub_slots(h), &h->sub_hwm, DMAQ_MAX_SUBSCRIBERS};
}

/* Wait until the solo handle marked `tag` is not inside a claim, or is
 * gone. */
static void solo_wait_idle(struct shm_chan *ch, const struct solo_side *side, uint32_t tag)
{
    if (ch->fence || !dmaq__barrier_heavy()) {
        /* No heavy barrier: its solo_busy store drains in microseconds, so
         * after this a claim that read the word before the mark shows it. */
        struct timespec grace = {0, FENCE_GRACE_NS};
        nanosleep(&grace, NULL);
    }
    if (tag == 0 || tag > side->n)
        return; /* not a slot: scribbled over, and nobody claims solo by it */
    struct shm_slot *s = &side->slots[tag - 1];
    uint64_t own_ns = dmaq__pid_ns();
    while (atomic_load(&s->solo_busy) && atomic_load(&s->state) != SLOT_FREE && shm_slot_alive(s, own_ns))
        sched_yield(); /* a claim takes nanoseconds, unless its thread was preempted */
}

/* Make sure no handle of `side` claims solo from now on. */
static void solo_end(struct shm_chan *ch, const struct solo_side *side)
{
    for (uint32_t v = atomic_load(side->word); v != 0; v = atomic_load(side->word)) {
        if (!(v & SOLO_ENDING) && !atomic_compare_exchange_strong(side->word, &v, v | SOLO_ENDING))
            continue;
        v |= SOLO_ENDING;
        solo_wait_idle(ch, side, v & ~SOLO_ENDING);
        atomic_compare_exchange_strong(side->word, &v, 0);
    }
}

/* Is a slot of `side` other than `index` taken, being taken or recovered? */
static bool other_slot_taken(const struct solo_side *side, uint32_t index)
{
    uint32_t hwm = atomic_load(side->hwm);
    for (uint32_t i = 0; i < hwm && i < side->n; i++)
        if (i != index && atomic_load(&side->slots[i].state) != SLOT_FREE)
            return true;
    return false;
}

/* At open, with our slot `index` active: end the solo claiming of another
 * handle of our side, then become the solo handle if we are alone there.
 * Returns our tag if we did, else 0. A handle opening at the same time
 * either sees our mark (and ends it) or is seen by our scan: both sides
 * store, then load, with sequentially consistent atomics. A process that
 * fences instead of registering for heavy barriers is never solo: ending
 * it relies on them. */
static uint32_t solo_begin(struct shm_chan *ch, const struct solo_side *side, uint32_t index, bool supported)
{
    solo_end(ch, side);
    uint32_t tag = index + 1, none = 0;
    if (!supported || ch->fence || !atomic_compare_exchange_strong(side->word, &none, tag))
        return 0;
    /* A dead handle's slot counts until it is reaped: reap, so that one
     * restarted after a crash is solo again. */
    if (!other_slot_taken(side, index) || (shm_reap(ch) > 0 && !other_slot_taken(side, index)))
        return tag;
    atomic_compare_exchange_strong(side->word, &tag, 0);
    return 0;
}

/* At close: stop being the solo handle (ours is not inside a claim). */
static void solo_leave(const struct solo_side *side, uint32_t tag)
{
    if (tag)
        atomic_compare_exchange_strong(side->word, &tag, 0);
}

/* Enter a claim as the solo handle `tag` of the side whose word is `word`:
 * true if we still are (end it with solo_claim_exit), false if another
 * handle ended that. */
static inline bool solo_claim_enter(struct shm_slot *slot, _Atomic uint32_t *word, uint32_t tag)
{
    atomic_store_explicit(&slot->solo_busy, 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst); /* solo_wait_idle's heavy barrier does the rest */
    if (atomic_load_explicit(word, memory_order_relaxed) == tag)
        return true;
    atomic_store_explicit(&slot->solo_busy, 0, memory_order_release);
    return false;
}

static inline void solo_claim_exit(struct shm_slot *slot)
{
    atomic_store_explicit(&slot->solo_busy, 0, memory_order_release);
}

/* Move the write pair from *cur to `next`, making a claim. The solo
 * publisher stores it; others compare-and-swap, which fails (reloading
 * *cur) if another publisher moved it first. */
static bool claim_write(struct shm_pub *p, struct shm_write *cur, struct shm_write next)
{
    struct shm_header *h = p->ch.hdr;
    if (p->solo_tag) {
        if (solo_claim_enter(p->slot, &h->solo_pub, p->solo_tag)) {
            shm_write_store(h, next);
            solo_claim_exit(p->slot);
            return true;
        }
        p->solo_tag = 0; /* another publisher opened: compete from now on */
    }
    return shm_write_cas(h, cur, next);
}

/* ---- Publishers --------------------------------------------------------- */

static bool blocking_broadcast(const struct shm_chan *ch)
{
    return ch->kind == DMAQ_KIND_BROADCAST && ch->policy == DMAQ_POLICY_BLOCK;
}

/* Recompute how far publishers may write without overrunning a reader. */
static uint64_t compute_limit(struct shm_chan *ch, uint64_t write_pos)
{
    struct shm_header *h = ch->hdr;
    /* Our last claim's write position must be visible before the scan
     * below reads anyone's slot (see shm_sub_open): a compare-and-swap
     * ordered them, a solo publisher's plain store does not. */
    atomic_thread_fence(memory_order_seq_cst);
    /* Never a lap past a record another publisher is still writing (its
     * slot's pos is where it claims from), nor past one a dead publisher
     * left for the reaper to finish: on a queue, the tail may have passed
     * the padding such a claim wrote before its record, and the reaper
     * writes that padding again (reap.c). Then, on a queue, never a lap
     * past the tail; on a broadcast channel under the block policy, never
     * a lap past the slowest active subscriber. With none of these, the
     * limit is still one lap from here, so that a subscriber joining later
     * is seen before anyone writes over the position where it starts. */
    uint64_t min = ch->kind == DMAQ_KIND_QUEUE ? atomic_load(&h->tail) : write_pos;
    struct shm_slot *ps = shm_pub_slots(h);
    uint32_t hwm = atomic_load(&h->pub_hwm);
    for (uint32_t i = 0; i < hwm && i < DMAQ_MAX_PUBLISHERS; i++) {
        uint64_t p = atomic_load(&ps[i].pos);
        uint32_t st = atomic_load(&ps[i].state);
        if ((st == SLOT_ACTIVE || (st & SLOT_RECOVERING)) && p < min)
            min = p;
    }
    if (blocking_broadcast(ch)) {
        struct shm_slot *ss = shm_sub_slots(h);
        hwm = atomic_load(&h->sub_hwm);
        for (uint32_t i = 0; i < hwm && i < DMAQ_MAX_SUBSCRIBERS; i++) {
            if (atomic_load(&ss[i].state) == SLOT_FREE)
                continue;
            uint64_t p = atomic_load(&ss[i].pos);
            if (p < min)
                min = p;
        }
    }
    return min + ch->capacity;
}

/* The queue's tail moves over the contiguous prefix of released records.
 * Anyone may move it (releasers and blocked publishers); never past rd_claim,
 * since a record not yet handed out must not be overwritten. One
 * compare-and-swap for the whole prefix: records ahead of the tail stay as
 * they are until it passes them (publishers write at most a lap past it),
 * so if the tail has not moved meanwhile, what was walked is still there. */
static void queue_advance_tail(struct shm_chan *ch)
{
    struct shm_header *h = ch->hdr;
    uint64_t t = atomic_load(&h->tail);
    for (;;) {
        uint64_t claim = atomic_load(&h->rd_claim), next = t;
        while (next < claim) {
            uint64_t seg_end = shm_segment_end(ch, next);
            if (seg_end - next < DMAQ_RECORD_HEADER) {
                next = seg_end;
                continue;
            }
            struct shm_record *r = shm_rec(ch, next);
            if (atomic_load(&r->tag) != (next ^ ch->salt) || atomic_load(&r->state) != REC_RELEASED)
                break;
            uint32_t size = r->size;
            if (size < DMAQ_RECORD_HEADER || next + size > seg_end)
                break; /* corrupt: leave the tail there; readers report it */
            next += size;
        }
        if (next == t || atomic_compare_exchange_strong(&h->tail, &t, next))
            return;
        /* t now holds the tail someone else set: walk again from there */
    }
}

static int shm_pub_open(void *state, const char *address, const dmaq_options *opts)
{
    struct shm_pub *p = state;
    int rc = shm_chan_open(&p->ch, address, opts);
    if (rc < 0)
        return rc;
    struct shm_header *h = p->ch.hdr;
    barrier_join(&p->ch, opts);
    rc = shm_slot_claim(shm_pub_slots(h), DMAQ_MAX_PUBLISHERS, &h->pub_hwm, "publishers", p->ch.name);
    if (rc < 0) {
        shm_chan_close(&p->ch);
        return rc;
    }
    p->slot = &shm_pub_slots(h)[rc];
    p->id = atomic_fetch_add(&h->next_pub_id, 1);
    p->slot->id = p->id;
    atomic_store(&p->slot->pos, UINT64_MAX); /* not writing */
    atomic_store(&p->slot->solo_busy, 0);
    atomic_store(&p->slot->state, SLOT_ACTIVE);
    struct solo_side side = publishers_side(h);
    p->solo_tag = solo_begin(&p->ch, &side, (uint32_t)rc, shm_solo_supported());
    p->spin_ns = dmaq__spin_ns(opts->spin_ns);
    p->stamps = !(opts->flags & DMAQ_OPEN_NO_TIMESTAMPS);
    p->limit = 0; /* computed at the first reservation */
    return 0;
}

static uint32_t shm_pub_id(const void *state) { return ((const struct shm_pub *)state)->id; }

static int lease_check(const dmaq_lease *lease, const void *owner, uint64_t token, const char *what)
{
    if (token == 0 || lease->opaque_[0] != (uint64_t)(uintptr_t)owner || lease->opaque_[1] != token)
        return dmaq_error_set(DMAQ_ELEASE,
                              "%s: this lease is not outstanding on this handle (already ended, or from "
                              "another handle)",
                              what);
    return 0;
}

/* Ask for the line at `pos` in exclusive state: a store to a line another
 * CPU holds waits for it, and stores drain one at a time. */
static inline void prefetch_line_for_write(const struct shm_chan *ch, uint64_t pos)
{
#if defined(__x86_64__)
    __asm__ __volatile__("prefetchw %0" : : "m"(ch->ring[pos & ch->mask]));
#else
    __builtin_prefetch(ch->ring + (pos & ch->mask), 1);
#endif
}

/* Ask for the lines a few records past `pos` in exclusive state, so that
 * the next claim's compare-and-swap need not wait for our stores to
 * invalidate the subscribers' copies, one round trip per message (it
 * doubled 64 B streams here). Only below `limit`: there every subscriber is
 * done with what the lines held, while nearer it one may be reading them
 * now. (On a queue it made streams slower until subscribers stopped moving
 * the shared tail on every release; see queue_release.) */
#define PREFETCH_AHEAD 256
static inline void prefetch_for_write(const struct shm_chan *ch, uint64_t pos, uint64_t limit)
{
    if (pos + PREFETCH_AHEAD + 128 > limit)
        return;
    prefetch_line_for_write(ch, pos + PREFETCH_AHEAD);
    prefetch_line_for_write(ch, pos + PREFETCH_AHEAD + 64);
}

/* Space claimed in the ring: `count` records from `start` to `end`,
 * numbered from `seq`, after padding from `from` when the first record did
 * not fit before the segment end. */
struct claim {
    uint64_t from, start, end, seq;
    uint32_t count;
};

/* How many of the records for lens[0..n) fit from `start` before the
 * segment end and `limit`; *end is where they end. *limited is set when the
 * limit, not the segment, stopped it short. */
static uint32_t fit_records(const struct shm_chan *ch, uint64_t start, uint64_t limit, const size_t *lens,
                            uint32_t n, uint64_t *end, bool *limited)
{
    uint64_t seg_end = shm_segment_end(ch, start), e = start;
    uint32_t k = 0;
    *limited = false;
    for (; k < n; k++) {
        uint64_t next = e + shm_record_size(lens[k]);
        if (next > seg_end)
            break;
        if (next > limit) {
            *limited = true;
            break;
        }
        e = next;
    }
    *end = e;
    return k;
}

/* A publisher that found a block-policy broadcast ring full waits for this
 * fraction of it to be free (or for its message, if larger), and readers
 * wake it only when they cross a multiple of it: one wake-up per eighth of
 * the ring, not one per message read, when a publisher outpaces its
 * readers. */
#define SPACE_WAKE_SHIFT 3

/* Where a record of `size` bytes claimed at `pos` starts: records do not
 * cross a segment's end, so one that would starts at the next segment. */
static uint64_t claim_start(const struct shm_chan *ch, uint64_t pos, uint64_t size)
{
    uint64_t seg_end = shm_segment_end(ch, pos);
    return pos + size > seg_end ? seg_end : pos;
}

/* Wait until the ring may have room for a record of `first` bytes at the
 * write position, which is reloaded into *cur: spin for spin_ns, then sleep
 * until a reader makes room. A publisher that sleeps on a channel that
 * wakes in steps sleeps until a step's room is free, unless the readers
 * stop short of it. Returns 0 to look again, or DMAQ_EAGAIN/DMAQ_ETIMEDOUT. */
static int wait_for_room(struct shm_pub *p, struct waiter *w, struct shm_write *cur, uint64_t first, int64_t timeout_ns)
{
    struct shm_chan *ch = &p->ch;
    struct shm_header *h = ch->hdr;
    if (!w->deadline && wait_begin(w, timeout_ns, p->spin_ns) < 0)
        return dmaq_error_set(DMAQ_EAGAIN, "channel '%s' is full", ch->name);
    uint64_t want = first;
    for (;;) {
        uint64_t remaining = 0;
        if (wait_timed_out(w, &remaining) < 0) {
            if (want > first && claim_start(ch, cur->pos, first) + first <= compute_limit(ch, cur->pos))
                return 0; /* out of time, but the message fits */
            return dmaq_error_set(DMAQ_ETIMEDOUT, "channel '%s' stayed full for %lld ns", ch->name,
                                  (long long)timeout_ns);
        }
        if (wait_spin(w) || reap_if_due(ch, w)) {
            cur->pos = __atomic_load_n(&h->write.pos, __ATOMIC_RELAXED);
            cur->seq = __atomic_load_n(&h->write.seq, __ATOMIC_RELAXED);
            return 0;
        }
        if (!w->settled && blocking_broadcast(ch) && (ch->capacity >> SPACE_WAKE_SHIFT) > want)
            want = ch->capacity >> SPACE_WAKE_SHIFT;
        sleep_announce(ch, &h->space_sleepers, p->slot, SLEEP_SPACE);
        uint32_t v = atomic_load(&h->space_futex);
        if (ch->kind == DMAQ_KIND_QUEUE)
            queue_advance_tail(ch);
        bool short_of_room = claim_start(ch, cur->pos, first) + want > compute_limit(ch, cur->pos);
        if (short_of_room) {
            nap(ch, &h->space_futex, v, w, remaining, true);
            if (atomic_load(&h->space_futex) == v) {
                /* Nobody woke us: the readers stopped short of the next
                 * step. Take whatever room there is from now on. */
                w->settled = true;
                want = first;
            }
        }
        sleep_withdraw(&h->space_sleepers, p->slot, SLEEP_SPACE);
        cur->pos = __atomic_load_n(&h->write.pos, __ATOMIC_RELAXED);
        cur->seq = __atomic_load_n(&h->write.seq, __ATOMIC_RELAXED);
        if (!short_of_room || want == first ||
            claim_start(ch, cur->pos, first) + want <= compute_limit(ch, cur->pos))
            return 0;
    }
}

/* Claim space for up to n records (all n fit one segment's worth of the
 * ring only if they are small; the caller loops), waiting up to timeout_ns
 * for room for the first. lens[] are the records' payload lengths: a
 * message's, at most max_message, or a packed record's; msgs[] (NULL: one
 * each) how many messages, so sequence numbers, each holds. */
static inline __attribute__((always_inline)) int claim_space(struct shm_pub *p, const size_t *lens, uint32_t n,
                                                             const uint32_t *msgs, int64_t timeout_ns, struct claim *c)
{
    struct shm_chan *ch = &p->ch;
    struct shm_header *h = ch->hdr;
    struct waiter w = {0};
    struct shm_write cur = {__atomic_load_n(&h->write.pos, __ATOMIC_RELAXED),
                            __atomic_load_n(&h->write.seq, __ATOMIC_RELAXED)};
    const uint64_t first = shm_record_size(lens[0]);
    for (;;) {
        uint64_t start = claim_start(ch, cur.pos, first), end;
        bool limited;
        uint32_t k = fit_records(ch, start, p->limit, lens, n, &end, &limited);
        if (limited) {
            /* Withdraw an announcement left by a failed claim: we are not
             * writing, and must not gate anyone (ourselves included). */
            atomic_store_explicit(&p->slot->pos, UINT64_MAX, memory_order_release);
            if (ch->kind == DMAQ_KIND_QUEUE)
                queue_advance_tail(ch);
            p->limit = compute_limit(ch, cur.pos);
            k = fit_records(ch, start, p->limit, lens, n, &end, &limited);
        }
        if (k == 0) {
            int rc = wait_for_room(p, &w, &cur, first, timeout_ns);
            if (rc < 0)
                return rc;
            continue;
        }
        /* Announce the claim before making it. The CAS is a full barrier,
         * so a publisher whose limit scan missed this store read the write
         * position before our claim, and its limit stays at most a lap past
         * our records (a solo publisher has no such peer); and if we die
         * holding the claim, the reaper knows what to finish (reap.c). */
        struct shm_slot *slot = p->slot;
        atomic_store_explicit(&slot->claim_owned, 0, memory_order_relaxed);
        atomic_store_explicit(&slot->pos, cur.pos, memory_order_relaxed);
        atomic_store_explicit(&slot->claim_start, start, memory_order_relaxed);
        atomic_store_explicit(&slot->claim_end, end, memory_order_relaxed);
        atomic_store_explicit(&slot->claim_seq, cur.seq, memory_order_relaxed);
        atomic_store_explicit(&slot->claim_count, k, memory_order_relaxed);
        uint32_t seqs = k;
        if (msgs)
            for (uint32_t i = 0; i < k; i++)
                seqs += msgs[i] - 1;
        atomic_store_explicit(&slot->claim_seqs, seqs, memory_order_relaxed);
        struct shm_write next = {end, cur.seq + seqs};
        if (claim_write(p, &cur, next)) {
            atomic_store_explicit(&slot->claim_owned, 1, memory_order_relaxed);
            if (start != cur.pos)
                shm_write_pad(ch, cur.pos, start - cur.pos, 0, REC_PAD, 0);
            prefetch_for_write(ch, end, p->limit);
            *c = (struct claim){cur.pos, start, end, cur.seq, k};
            return 0;
        }
    }
}

/* Fill a claimed record's header, all but its tag and timestamp. */
static struct shm_record *init_record(struct shm_pub *p, uint64_t pos, uint64_t seq, size_t len)
{
    struct shm_record *r = shm_rec(&p->ch, pos);
    r->seq = seq;
    r->size = (uint32_t)shm_record_size(len);
    r->len = (uint32_t)len;
    r->pub_id = p->id;
    r->flags = 0;
    r->count = 0;
    atomic_store_explicit(&r->state, REC_UNCLAIMED, memory_order_relaxed);
    return r;
}

static void commit_record(struct shm_chan *ch, struct shm_record *r, uint64_t pos)
{
    atomic_store_explicit(&r->tag, pos ^ ch->salt, memory_order_release);
}

/* After the claim's records are committed: wake sleeping readers and stop
 * gating other publishers. */
static void end_claim(struct shm_pub *p, uint32_t messages)
{
    struct shm_chan *ch = &p->ch;
    struct shm_header *h = ch->hdr;
    dmaq__bump(&p->slot->count, messages);
    wake_if_sleeping(ch, &h->data_sleepers, &h->data_futex);
    atomic_store_explicit(&p->slot->claim_owned, 0, memory_order_relaxed);
    atomic_store_explicit(&p->slot->pos, UINT64_MAX, memory_order_release);
    wake_if_sleeping(ch, &h->space_sleepers, &h->space_futex); /* publishers our claim gated */
}

static int too_long(const struct shm_chan *ch, size_t len)
{
    return dmaq_error_set(DMAQ_EMSGSIZE, "message of %zu bytes exceeds channel '%s' max_message %llu", len,
                          ch->name, (unsigned long long)ch->max_message);
}

/* Claim a record for one message of `len` bytes and make it the
 * outstanding reservation. */
static int reserve_record(struct shm_pub *p, size_t len, int64_t timeout_ns, struct shm_record **out)
{
    struct shm_chan *ch = &p->ch;
    if (p->token)
        return dmaq_error_set(DMAQ_EBUSY, "publisher on '%s' already holds a reservation; commit or abort it",
                              ch->name);
    if (len > ch->max_message)
        return too_long(ch, len);
    struct claim c = {0};
    int rc = claim_space(p, &len, 1, NULL, timeout_ns, &c);
    if (rc < 0)
        return rc;
    *out = init_record(p, c.start, c.seq, len);
    p->token++;
    if (p->token == 0)
        p->token = 1;
    p->lease_pos = c.start;
    return 0;
}

static int shm_pub_reserve(void *state, size_t len, dmaq_lease *lease, int64_t timeout_ns)
{
    struct shm_pub *p = state;
    struct shm_record *r = NULL;
    int rc = reserve_record(p, len, timeout_ns, &r);
    if (rc < 0)
        return rc;
    lease->data = r + 1;
    lease->len = len;
    lease->seq = r->seq;
    lease->timestamp_ns = 0;
    lease->publisher_id = p->id;
    lease->flags = 0;
    lease->lost = 0;
    lease->opaque_[0] = (uint64_t)(uintptr_t)p;
    lease->opaque_[1] = p->token;
    return 0;
}

/* memcpy for a payload: inline for small ones (two overlapping moves of a
 * fixed size), where the call to the C library's copy cost as much as the
 * copy. */
static inline void copy_payload(unsigned char *dst, const unsigned char *src, size_t len)
{
    if (len > 64) {
        memcpy(dst, src, len);
    } else if (len > 32) {
        memcpy(dst, src, 32);
        memcpy(dst + len - 32, src + len - 32, 32);
    } else if (len > 16) {
        memcpy(dst, src, 16);
        memcpy(dst + len - 16, src + len - 16, 16);
    } else if (len >= 8) {
        memcpy(dst, src, 8);
        memcpy(dst + len - 8, src + len - 8, 8);
    } else {
        for (size_t i = 0; i < len; i++)
            dst[i] = src[i];
    }
}

/* Publish the record at the reservation. */
static void publish_reserved(struct shm_pub *p, struct shm_record *r, bool is_message)
{
    commit_record(&p->ch, r, p->lease_pos);
    p->token = 0;
    end_claim(p, is_message);
}

/* The timestamp of what p commits now. */
static inline uint64_t publish_time(struct shm_pub *p) { return p->stamps ? dmaq__stamp_now(&p->clock) : 0; }

static int shm_pub_commit(void *state, dmaq_lease *lease, size_t used_len)
{
    struct shm_pub *p = state;
    int rc = lease_check(lease, p, p->token, "commit");
    if (rc < 0)
        return rc;
    if (used_len > lease->len)
        return dmaq_error_set(DMAQ_EMSGSIZE, "commit of %zu bytes exceeds the %llu reserved", used_len,
                              (unsigned long long)lease->len);
    struct shm_record *r = shm_rec(&p->ch, p->lease_pos);
    uint64_t ts = publish_time(p);
    r->len = (uint32_t)used_len;
    r->timestamp_ns = ts;
    publish_reserved(p, r, true);
    lease->timestamp_ns = ts;
    lease->len = used_len;
    lease->opaque_[1] = 0;
    return 0;
}

static void abort_reservation(struct shm_pub *p)
{
    struct shm_record *r = shm_rec(&p->ch, p->lease_pos);
    r->len = 0;
    r->flags = REC_PAD | REC_ABORTED;
    atomic_store_explicit(&r->state, REC_RELEASED, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->ch.hdr->aborted, 1, memory_order_relaxed);
    publish_reserved(p, r, false);
}

static int shm_pub_abort(void *state, dmaq_lease *lease)
{
    struct shm_pub *p = state;
    int rc = lease_check(lease, p, p->token, "abort");
    if (rc < 0)
        return rc;
    abort_reservation(p);
    lease->opaque_[1] = 0;
    lease->data = NULL;
    return 0;
}

static int shm_pub_send(void *state, const void *data, size_t len, int64_t timeout_ns)
{
    struct shm_pub *p = state;
    struct shm_record *r = NULL;
    int rc = reserve_record(p, len, timeout_ns, &r);
    if (rc < 0)
        return rc;
    copy_payload((unsigned char *)(r + 1), data, len);
    r->timestamp_ns = publish_time(p);
    publish_reserved(p, r, true);
    return 0;
}

#define WRITE_AHEAD 2048 /* bytes of a claim asked for ahead of the writes */

/* Ask for the lines of claim `c` up to WRITE_AHEAD bytes past `pos` (from
 * *fetched, which moves there) ahead of the writes. On a broadcast channel each store to a line a reader
 * last held waits for it, one line at a time, unless asked for early: this
 * made 64 B batch streams 1.5x faster. (A queue's streams are bound by their
 * readers here: no gain measured.) */
static inline void prefetch_claim(const struct shm_chan *ch, const struct claim *c, uint64_t *fetched, uint64_t pos)
{
    if (ch->kind != DMAQ_KIND_BROADCAST)
        return;
    uint64_t to = pos + WRITE_AHEAD < c->end ? pos + WRITE_AHEAD : c->end;
    for (; *fetched < to; *fetched += DMAQ_RECORD_ALIGN)
        prefetch_line_for_write(ch, *fetched);
}

/* Broadcast: how many of the n messages of lens[] (each at most
 * SHM_PACK_MESSAGE_MAX bytes) pack into one record of at most pack_bytes;
 * *payload is that record's len. */
static uint32_t pack_run(const struct shm_chan *ch, const size_t *lens, size_t n, size_t *payload)
{
    uint64_t off = SHM_PACK_FIRST, end = DMAQ_RECORD_HEADER;
    /* A record ending at or before `limit` takes at most pack_bytes (records are
     * DMAQ_RECORD_ALIGN-aligned). */
    const uint64_t limit = ch->pack_bytes & ~(uint64_t)(DMAQ_RECORD_ALIGN - 1);
    uint32_t k = 0;
    if (ch->kind != DMAQ_KIND_BROADCAST)
        return 0;
    for (; k < n && lens[k] <= SHM_PACK_MESSAGE_MAX; k++) {
        uint64_t payload_end = off + sizeof(struct shm_entry) + lens[k];
        if (payload_end > limit)
            break;
        end = payload_end;
        off = shm_pack_next(off, lens[k]);
    }
    *payload = end - DMAQ_RECORD_HEADER;
    return k;
}

/* The records of a claim of send_many: PLAN_MAX at most, each packed or
 * one message. */
#define PLAN_MAX 64
struct plan {
    uint32_t n;
    size_t len[PLAN_MAX];    /* payload: the message's, or the packed record's */
    uint32_t msgs[PLAN_MAX]; /* messages in it: 1, or >= 2 packed */
};

/* Plan records for the n messages of lens[]: on a broadcast channel a run
 * of small ones goes into one packed record, anything else into its own. */
static void plan_records(const struct shm_chan *ch, const size_t *lens, size_t n, struct plan *pl)
{
    size_t m = 0;
    for (pl->n = 0; m < n && pl->n < PLAN_MAX; pl->n++) {
        size_t payload;
        uint32_t packed = pack_run(ch, lens + m, n - m, &payload);
        pl->len[pl->n] = packed >= 2 ? payload : lens[m];
        pl->msgs[pl->n] = packed >= 2 ? packed : 1;
        m += pl->msgs[pl->n];
    }
}

/* Write a packed record of `count` messages at `pos` (layout.h) in the
 * claim `c`, asking for its lines ahead (prefetch_claim, from *fetched);
 * returns the source past them. */
static const unsigned char *write_packed(struct shm_pub *p, const struct claim *c, uint64_t *fetched, uint64_t pos,
                                         uint64_t seq, uint64_t ts, const size_t *lens, uint32_t count, size_t payload,
                                         const unsigned char *src)
{
    struct shm_record *r = init_record(p, pos, seq, payload);
    r->timestamp_ns = ts;
    r->flags = REC_PACKED;
    r->count = count;
    uint64_t off = SHM_PACK_FIRST;
    for (uint32_t i = 0; i < count; i++) {
        if (i % 4 == 0) /* a look-ahead of WRITE_AHEAD bytes needs no closer steps */
            prefetch_claim(&p->ch, c, fetched, pos + off);
        struct shm_entry *e = (struct shm_entry *)((unsigned char *)r + off);
        e->len = (uint32_t)lens[i];
        e->index = i;
        copy_payload((unsigned char *)(e + 1), src, lens[i]);
        src += lens[i];
        off = shm_pack_next(off, lens[i]);
    }
    commit_record(&p->ch, r, pos);
    return src;
}

/* Write the records of a claim, as planned (NULL: one message each);
 * returns the source past them and the messages in *messages. */
static const unsigned char *write_claim(struct shm_pub *p, const struct claim *c, const size_t *lens,
                                        const struct plan *pl, const unsigned char *src, uint32_t *messages)
{
    struct shm_chan *ch = &p->ch;
    uint64_t ts = publish_time(p), pos = c->start, fetched = c->start, seq = c->seq;
    uint32_t m = 0;
    for (uint32_t i = 0; i < c->count; i++) {
        prefetch_claim(ch, c, &fetched, pos);
        uint32_t k = pl ? pl->msgs[i] : 1;
        struct shm_record *r = shm_rec(ch, pos);
        if (k > 1) {
            src = write_packed(p, c, &fetched, pos, seq, ts, lens + m, k, pl->len[i], src);
        } else {
            r = init_record(p, pos, seq, lens[m]);
            r->timestamp_ns = ts;
            copy_payload((unsigned char *)(r + 1), src, lens[m]);
            src += lens[m];
            commit_record(ch, r, pos);
        }
        pos += r->size;
        seq += k;
        m += k;
    }
    *messages = m;
    return src;
}

/* Many messages, as few claims as the ring allows: one compare-and-swap,
 * one clock read and one wake-up check per claim instead of per message.
 * The messages of one claim share a timestamp. On a broadcast channel,
 * runs of small messages go into packed records (layout.h). */
static int shm_pub_send_many(void *state, const void *data, const size_t *lens, size_t count, size_t *sent,
                             int64_t timeout_ns)
{
    struct shm_pub *p = state;
    struct shm_chan *ch = &p->ch;
    if (p->token)
        return dmaq_error_set(DMAQ_EBUSY, "publisher on '%s' holds a reservation; commit or abort it first",
                              ch->name);
    size_t n = 0; /* the messages before the first that is too long go out */
    while (n < count && lens[n] <= ch->max_message)
        n++;
    uint64_t deadline = dmaq__deadline(timeout_ns);
    const unsigned char *src = data;
    struct plan plan, *pl = ch->kind == DMAQ_KIND_BROADCAST ? &plan : NULL;
    for (size_t done = 0; done < n;) {
        struct claim c = {0};
        uint32_t records = n - done > UINT32_MAX ? UINT32_MAX : (uint32_t)(n - done), messages;
        if (pl) {
            plan_records(ch, lens + done, n - done, pl);
            records = pl->n;
        }
        int rc = claim_space(p, pl ? pl->len : lens + done, records, pl ? pl->msgs : NULL,
                             dmaq__timeout_left(timeout_ns, deadline), &c);
        if (rc < 0)
            return rc;
        src = write_claim(p, &c, lens + done, pl, src, &messages);
        end_claim(p, messages);
        done += messages;
        if (sent)
            *sent = done;
    }
    return n < count ? too_long(ch, lens[n]) : 0;
}

static void shm_pub_close(void *state)
{
    struct shm_pub *p = state;
    if (!p->ch.hdr)
        return;
    if (p->token)
        abort_reservation(p);
    struct solo_side side = publishers_side(p->ch.hdr);
    solo_leave(&side, p->solo_tag);
    atomic_store(&p->slot->state, SLOT_FREE);
    shm_chan_close(&p->ch);
}

/* ---- Subscribers -------------------------------------------------------- */

static int shm_sub_open(void *state, const char *address, const dmaq_options *opts)
{
    struct shm_sub *s = state;
    int rc = shm_chan_open(&s->ch, address, opts);
    if (rc < 0)
        return rc;
    struct shm_chan *ch = &s->ch;
    struct shm_header *h = ch->hdr;
    barrier_join(ch, opts);
    rc = shm_slot_claim(shm_sub_slots(h), DMAQ_MAX_SUBSCRIBERS, &h->sub_hwm, "subscribers", ch->name);
    if (rc < 0) {
        shm_chan_close(ch);
        return rc;
    }
    s->slot_index = (uint32_t)rc;
    s->slot = &shm_sub_slots(h)[rc];
    s->spin_ns = dmaq__spin_ns(opts->spin_ns);
    s->validate_below = ch->policy == DMAQ_POLICY_OVERWRITE ? UINT64_MAX : 0;

    /* Join: become visible to publishers at a position no later than any
     * they may write up to, then move to the write position read after
     * that. A publisher that computed its limit before seeing us computed it
     * from positions at or before this one, so it cannot overrun us. */
    struct shm_write w = shm_write_load(h);
    atomic_store(&s->slot->pos, w.pos);
    atomic_store(&s->slot->next_seq, w.seq);
    atomic_store(&s->slot->solo_busy, 0);
    atomic_store(&s->slot->state, SLOT_ACTIVE);
    if (ch->kind == DMAQ_KIND_QUEUE) {
        struct solo_side side = subscribers_side(h);
        s->solo_tag = solo_begin(ch, &side, s->slot_index, true);
    }
    w = shm_write_load(h);
    s->pos = w.pos;
    s->next_seq = w.seq;
    if (ch->kind == DMAQ_KIND_BROADCAST && opts->start == DMAQ_START_OLDEST) {
        /* The oldest segment start that is still within one lap: a record
         * starts there. Its records have no gate protecting them, so they
         * are validated after reading (validate_below). */
        uint64_t oldest = w.pos > ch->capacity ? w.pos - ch->capacity : 0;
        oldest = (oldest + ch->segment - 1) & ~(ch->segment - 1);
        if (oldest < w.pos) {
            s->pos = oldest;
            if (s->validate_below != UINT64_MAX)
                s->validate_below = w.pos;
        }
    }
    atomic_store(&s->slot->pos, s->pos);
    return 0;
}

void dmaq__shm_sub_memory(const void *state, const void **base, size_t *len)
{
    const struct shm_sub *s = state;
    *base = s->ch.hdr;
    *len = s->ch.map_len;
}

/* Under the overwrite policy (and below validate_below): were the bytes at
 * `pos` still intact when we finished reading them? Nobody may have claimed
 * space that reaches them. The fence orders our reads before the check. */
static bool intact(struct shm_sub *s, uint64_t pos)
{
    atomic_thread_fence(memory_order_acquire);
    return shm_write_pos(s->ch.hdr) <= pos + s->ch.capacity;
}

/* The ring lapped this subscriber: account for what it lost and resume at
 * the newest message. Returns DMAQ_ELOST with the count in *lost, or 0 when
 * nothing counted was lost (the skipped records predate its join). */
static int resume_after_lap(struct shm_sub *s, uint64_t *lost)
{
    struct shm_write w = shm_write_load(s->ch.hdr);
    bool below_join = s->pos < s->validate_below && s->validate_below != UINT64_MAX;
    uint64_t n = w.seq > s->next_seq ? w.seq - s->next_seq : 0;
    s->pack = 0;
    if (below_join) {
        /* Only records from before the join were overrun: skip to it. */
        s->pos = s->validate_below;
        atomic_store(&s->slot->pos, s->pos);
        return 0;
    }
    s->pos = w.pos;
    s->next_seq = w.seq;
    atomic_store(&s->slot->pos, s->pos);
    atomic_store(&s->slot->next_seq, s->next_seq);
    if (n == 0)
        return 0;
    dmaq__bump(&s->slot->lost, n);
    *lost = n;
    return dmaq_error_set(DMAQ_ELOST, "subscriber on '%s' was overrun and lost %llu messages", s->ch.name,
                          (unsigned long long)n);
}

static int corrupt_record(struct shm_chan *ch, uint64_t pos, const char *why)
{
    return dmaq_error_set(DMAQ_ECORRUPT, "channel '%s' is corrupt: record at position %llu %s", ch->name,
                          (unsigned long long)pos, why);
}

/* Check a committed record's header against the channel's bounds. A
 * packed record's `len` covers all its messages (REC_PACKED in `flags`, only
 * where broadcast readers pass it on). */
static const char *bad_record(const struct shm_chan *ch, uint64_t pos, uint32_t size, uint32_t len, uint32_t flags)
{
    if (shm_bad_size(size) || size > ch->max_record)
        return "has an impossible size";
    if (pos + size > shm_segment_end(ch, pos))
        return "runs past its segment";
    if (len > size - DMAQ_RECORD_HEADER || (len > ch->max_message && !(flags & REC_PACKED)))
        return "has a length beyond its record";
    return NULL;
}

/* Outcome of looking for the next record. */
enum { FOUND = 0, EMPTY = 1 };

/* A record header as read once, before validation: under the overwrite
 * policy the live header may change after the intact check. */
struct rec_view {
    struct shm_record *rec;
    unsigned char *data; /* the message's payload */
    uint64_t seq, timestamp_ns;
    uint32_t size, len, pub_id, flags;
    bool redelivered; /* queue: taken back from a subscriber that died */
    uint32_t count;   /* the record's (struct shm_record) */
    /* A packed record (view_pack): its first number, where its messages
     * end, and the entry after the viewed message (pack_cursor; 0: that
     * was the last, or the record is not packed). `next` is one word,
     * written and read whole: copied as two halves written apart, it
     * stalled every read on store forwarding. */
    uint64_t rec_seq;
    uint32_t pack_end;
    uint64_t next;
};

static void view_record(struct shm_record *r, struct rec_view *v)
{
    v->rec = r;
    v->data = (unsigned char *)(r + 1);
    v->seq = r->seq;
    v->timestamp_ns = r->timestamp_ns;
    v->size = r->size;
    v->len = r->len;
    v->pub_id = r->pub_id;
    v->flags = r->flags;
    v->count = r->count;
    v->next = 0;
    v->redelivered = false;
}

/* Where a reader is inside a packed record: the entry at offset `off`,
 * numbered `idx`. */
static inline uint64_t pack_cursor(uint64_t off, uint32_t idx) { return (uint64_t)idx << 32 | (uint32_t)off; }

/* Point a view of a packed record (view_pack, which notes its header) at
 * the message at `cursor` (0: the first). Returns what is wrong, or NULL. */
static inline __attribute__((always_inline)) const char *view_entry(const struct shm_chan *ch, struct rec_view *v,
                                                                    uint64_t cursor)
{
    uint32_t off = (uint32_t)cursor, idx = (uint32_t)(cursor >> 32);
    if (off == 0)
        off = SHM_PACK_FIRST;
    if (v->count < 2 || idx >= v->count)
        return "holds fewer packed messages than it says";
    if ((uint64_t)off + sizeof(struct shm_entry) > v->pack_end)
        return "has a packed message past its end";
    const struct shm_entry *e = (const struct shm_entry *)((unsigned char *)v->rec + off);
    uint32_t len = e->len, index = e->index;
    if (index != idx || len > ch->max_message || (uint64_t)off + sizeof *e + len > v->pack_end)
        return "has a packed message out of place";
    v->data = (unsigned char *)(e + 1);
    v->len = len;
    v->seq = v->rec_seq + idx;
    bool last = idx + 1 == v->count;
    v->next = last ? 0 : pack_cursor(shm_pack_next(off, len), idx + 1);
    return NULL;
}

/* A view (fresh from view_record, checked by bad_record) of a packed record
 * and not padding? */
static inline bool viewing_packed(const struct rec_view *v)
{
    return (v->flags & (REC_PACKED | REC_PAD)) == REC_PACKED;
}

/* Point a fresh view of a packed record (viewing_packed) at the message at
 * `cursor`: note what view_entry needs of its header, and ask for its
 * lines. (Each entry's place depends on the one before: without asking for
 * the committed record's lines at once, a reader waits for them one at a
 * time, a transfer from the publisher's CPU each.) Returns what is wrong,
 * or NULL. */
static inline const char *view_pack(const struct shm_chan *ch, struct rec_view *v, uint64_t cursor)
{
    v->rec_seq = v->seq;
    v->pack_end = DMAQ_RECORD_HEADER + v->len;
    for (uint32_t line = DMAQ_RECORD_ALIGN; line < v->pack_end; line += DMAQ_RECORD_ALIGN)
        __builtin_prefetch((unsigned char *)v->rec + line, 0);
    return view_entry(ch, v, cursor);
}

/* Read the header of a record this subscriber claimed, and check it again:
 * it was checked before the claim, but a process scribbling over the ring
 * may have changed it since. Returns what is wrong with it, or NULL. */
static const char *view_claimed(const struct shm_chan *ch, struct shm_record *r, uint64_t pos, struct rec_view *v)
{
    view_record(r, v);
    return bad_record(ch, pos, v->size, v->len, 0);
}

/* Broadcast: find the next message at s->pos without consuming it. Skips
 * padding. Returns FOUND with *rec set, EMPTY, or a DMAQ_E* code. */
static int broadcast_next(struct shm_sub *s, struct rec_view *v, uint64_t *lost)
{
    struct shm_chan *ch = &s->ch;
    /* One lap holds at most capacity / DMAQ_RECORD_HEADER records, and
     * being lapped again and again within one call does not happen: more
     * steps than that mean positions in the header were scribbled over
     * (say, a write position so near 2^64 that every check overflows). */
    for (uint64_t steps = 0;; steps++) {
        uint64_t pos = s->pos;
        if (steps > ch->capacity / DMAQ_RECORD_HEADER + 64)
            return corrupt_record(ch, pos, "is in a chain of records that never ends");
        uint64_t seg_end = shm_segment_end(ch, pos);
        if (seg_end - pos < DMAQ_RECORD_HEADER) {
            s->pos = seg_end;
            continue;
        }
        struct shm_record *r = shm_rec(ch, pos);
        bool validate = pos < s->validate_below;
        if (atomic_load_explicit(&r->tag, memory_order_acquire) != (pos ^ ch->salt)) {
            if (validate && !intact(s, pos)) {
                int rc = resume_after_lap(s, lost);
                if (rc < 0)
                    return rc;
                continue;
            }
            return EMPTY;
        }
        view_record(r, v);
        const char *bad = bad_record(ch, pos, v->size, v->len, v->flags);
        if (!bad && viewing_packed(v))
            bad = view_pack(ch, v, s->pack);
        else if (!bad && s->pack)
            bad = "changed while it was read";
        if (validate && !intact(s, pos)) {
            int rc = resume_after_lap(s, lost);
            if (rc < 0)
                return rc;
            continue;
        }
        if (bad)
            return corrupt_record(ch, pos, bad);
        if (v->flags & REC_PAD) {
            uint64_t taken = (v->flags & REC_ABORTED) && v->count ? v->count : 1;
            if ((v->flags & REC_ABORTED) && v->seq + taken > s->next_seq)
                s->next_seq = v->seq + taken;
            s->pos = pos + v->size;
            continue;
        }
        return FOUND;
    }
}

/* Queue: move rd_claim from *from to `to`, claiming what lies between. The
 * solo subscriber stores it; others compare-and-swap, which fails
 * (reloading *from) if another subscriber moved it first. */
static bool queue_claim(struct shm_sub *s, uint64_t *from, uint64_t to)
{
    struct shm_header *h = s->ch.hdr;
    if (s->solo_tag) {
        if (solo_claim_enter(s->slot, &h->solo_sub, s->solo_tag)) {
            atomic_store_explicit(&h->rd_claim, to, memory_order_release);
            solo_claim_exit(s->slot);
            return true;
        }
        s->solo_tag = 0; /* another subscriber opened: compete from now on */
    }
    return atomic_compare_exchange_strong(&h->rd_claim, from, to);
}

/* Queue: take a message that a dead subscriber had claimed (see reap.c),
 * before anything new. */
static int queue_take_redelivery(struct shm_sub *s, struct rec_view *v, uint64_t *pos_out, size_t fit)
{
    struct shm_chan *ch = &s->ch;
    struct shm_header *h = ch->hdr;
    if (atomic_load_explicit(&h->redeliver, memory_order_relaxed) == 0)
        return EMPTY;
    uint64_t claim = atomic_load(&h->rd_claim);
    uint32_t size;
    struct shm_record *r = NULL;
    for (uint64_t t = atomic_load(&h->tail); (r = shm_handed_out_at(ch, &t, claim, &size)); t += size) {
        uint32_t state = REC_REDELIVER;
        if (atomic_load(&r->state) == REC_REDELIVER && (!fit || r->len <= fit - 1) &&
            atomic_compare_exchange_strong(&r->state, &state, 1 + s->slot_index)) {
            atomic_fetch_sub(&h->redeliver, 1);
            const char *bad = view_claimed(ch, r, t, v);
            if (bad)
                return corrupt_record(ch, t, bad);
            v->redelivered = true;
            *pos_out = t;
            return FOUND;
        }
    }
    return EMPTY;
}

/* Queue: claim the next message for this subscriber. Returns FOUND with *rec
 * and *pos set, EMPTY, or a DMAQ_E* code. With `fit` non-zero, a message
 * longer than `fit - 1` bytes is left unclaimed and reported as
 * DMAQ_EMSGSIZE with its length in *too_long. */
static int queue_next(struct shm_sub *s, struct rec_view *v, uint64_t *pos_out, size_t fit, size_t *too_long)
{
    struct shm_chan *ch = &s->ch;
    struct shm_header *h = ch->hdr;
    if (queue_take_redelivery(s, v, pos_out, fit) == FOUND)
        return FOUND;
    uint64_t pos = atomic_load(&h->rd_claim);
    for (;;) {
        uint64_t seg_end = shm_segment_end(ch, pos);
        uint64_t next;
        struct shm_record *r = NULL;
        /* Read before the claim: a padding record is born released, so once
         * our CAS passes it the tail may pass it too and a publisher may
         * rewrite it; after the CAS only a real message is still ours. */
        bool is_message = false;
        if (seg_end - pos < DMAQ_RECORD_HEADER) {
            next = seg_end;
        } else {
            r = shm_rec(ch, pos);
            if (atomic_load_explicit(&r->tag, memory_order_acquire) != (pos ^ ch->salt))
                return EMPTY;
            uint32_t size = r->size, len = r->len;
            is_message = !(r->flags & REC_PAD);
            const char *bad = bad_record(ch, pos, size, len, 0);
            if (bad) {
                /* A record another subscriber claimed may be rewritten under
                 * us: only a record still at the claim point is corrupt. */
                uint64_t now = atomic_load(&h->rd_claim);
                if (now != pos) {
                    pos = now;
                    continue;
                }
                return corrupt_record(ch, pos, bad);
            }
            if (fit && is_message && len > fit - 1) {
                if (atomic_load(&h->rd_claim) != pos) {
                    pos = atomic_load(&h->rd_claim);
                    continue;
                }
                *too_long = len;
                return dmaq_error_set(DMAQ_EMSGSIZE, "message of %u bytes does not fit a %zu-byte buffer", len,
                                      fit - 1);
            }
            next = pos + size;
        }
        /* Announce the claim first: if we die between the CAS and marking
         * the record ours, the reaper finds it by this (reap.c). */
        atomic_store_explicit(&s->slot->pos, pos, memory_order_relaxed);
        if (!queue_claim(s, &pos, next))
            continue; /* pos now holds the current claim point */
        if (is_message) {
            atomic_store_explicit(&r->state, 1 + s->slot_index, memory_order_relaxed);
            const char *bad = view_claimed(ch, r, pos, v); /* ours now: only a scribbler rewrites it */
            if (bad)
                return corrupt_record(ch, pos, bad);
            *pos_out = pos;
            return FOUND;
        }
        queue_advance_tail(ch); /* we passed padding: it may free space */
        pos = next;
    }
}

/* Could a dead peer be what we wait for? Broadcast: a record was claimed at
 * our position but is not committed. Queue: the same at the claim point, or
 * messages handed out and not released (their holder may have died). */
static bool stuck_behind_peer(struct shm_sub *s)
{
    struct shm_header *h = s->ch.hdr;
    uint64_t written = shm_write_pos(h);
    if (s->ch.kind == DMAQ_KIND_BROADCAST)
        return written > s->pos;
    uint64_t claim = atomic_load(&h->rd_claim);
    return written > claim || atomic_load(&h->tail) < claim;
}

/* Queue: move the tail over the records this subscriber released since it
 * last did (queue_release). */
static void queue_give_back(struct shm_sub *s)
{
    if (s->unadvanced) {
        s->unadvanced = 0;
        queue_advance_tail(&s->ch);
    }
}

/* Find (broadcast) or claim (queue) the next message, waiting up to
 * timeout_ns. `fit` as for queue_next. */
static int next_message(struct shm_sub *s, struct rec_view *v, uint64_t *pos, int64_t timeout_ns,
                        uint64_t *lost, size_t fit, size_t *too_long)
{
    struct shm_chan *ch = &s->ch;
    struct shm_header *h = ch->hdr;
    struct waiter w = {0};
    for (;;) {
        int rc;
        if (ch->kind == DMAQ_KIND_QUEUE) {
            rc = queue_next(s, v, pos, fit, too_long);
        } else {
            rc = broadcast_next(s, v, lost);
            *pos = s->pos;
        }
        if (rc != EMPTY)
            return rc;
        if (!w.deadline && (rc = wait_begin(&w, timeout_ns, s->spin_ns)) < 0)
            return rc;
        uint64_t remaining = 0;
        if ((rc = wait_timed_out(&w, &remaining)) < 0)
            return rc;
        if (wait_spin(&w))
            continue;
        /* Before sleeping, give publishers what we released (and do not
         * take our own lag for a dead peer's, below). */
        queue_give_back(s);
        bool stuck = stuck_behind_peer(s);
        if (stuck && reap_if_due(ch, &w))
            continue;
        sleep_announce(ch, &h->data_sleepers, s->slot, SLEEP_DATA);
        uint32_t futex_val = atomic_load(&h->data_futex);
        /* Re-check after announcing ourselves: a publisher that committed
         * before our increment is seen here; one after it will wake us. */
        bool ready;
        uint64_t p = ch->kind == DMAQ_KIND_QUEUE ? atomic_load(&h->rd_claim) : s->pos;
        ready = (ch->kind == DMAQ_KIND_QUEUE && atomic_load(&h->redeliver) != 0) ||
                shm_segment_end(ch, p) - p < DMAQ_RECORD_HEADER ||
                atomic_load(&shm_rec(ch, p)->tag) == (p ^ ch->salt) ||
                (p < s->validate_below && shm_write_pos(h) > p + ch->capacity);
        if (!ready)
            nap(ch, &h->data_futex, futex_val, &w, remaining, stuck);
        sleep_withdraw(&h->data_sleepers, s->slot, SLEEP_DATA);
    }
}

/* Remember where the message `v` views at `pos` ends, for finish_read. */
static void hold(struct shm_sub *s, const struct rec_view *v, uint64_t pos)
{
    s->lease_pos = pos;
    s->lease_size = v->size;
    s->lease_next = v->next;
}

/* A new token for the lease or batch about to be handed out. */
static uint64_t next_token(struct shm_sub *s)
{
    s->token = ++s->last_token; /* 2^64 leases do not happen */
    return s->token;
}

static void lease_message(struct shm_sub *s, dmaq_lease *lease, const struct rec_view *v, uint64_t token)
{
    lease->data = v->data;
    lease->len = v->len;
    lease->seq = v->seq;
    lease->timestamp_ns = v->timestamp_ns;
    lease->publisher_id = v->pub_id;
    lease->flags = v->redelivered ? DMAQ_LEASE_REDELIVERED : 0;
    lease->lost = 0;
    lease->opaque_[0] = (uint64_t)(uintptr_t)s;
    lease->opaque_[1] = token;
}

static void fill_read_lease(struct shm_sub *s, dmaq_lease *lease, const struct rec_view *v, uint64_t pos)
{
    hold(s, v, pos);
    lease_message(s, lease, v, next_token(s));
}

/* The first (or only) message a peek leases: DMAQ_EBUSY while leases are
 * held; DMAQ_ELOST with the count in lease->lost. */
static int peek_first(struct shm_sub *s, struct rec_view *v, uint64_t *pos, dmaq_lease *lease, int64_t timeout_ns)
{
    if (s->token)
        return dmaq_error_set(DMAQ_EBUSY, "subscriber on '%s' already holds a lease; release it first",
                              s->ch.name);
    uint64_t lost = 0;
    size_t unused;
    int rc = next_message(s, v, pos, timeout_ns, &lost, 0, &unused);
    if (rc == DMAQ_ELOST)
        lease->lost = lost;
    return rc;
}

static int shm_sub_peek(void *state, dmaq_lease *lease, int64_t timeout_ns)
{
    struct shm_sub *s = state;
    struct rec_view v;
    uint64_t pos;
    int rc = peek_first(s, &v, &pos, lease, timeout_ns);
    if (rc < 0)
        return rc;
    fill_read_lease(s, lease, &v, pos);
    return 0;
}

/* Queue: the records at pos[0..n) are done with: release their space.
 * The tail moves over them every TAIL_EVERY records, not every record: its
 * compare-and-swap cost as much as the rest of a release. Space is never
 * lost by waiting: a publisher short of room moves the tail itself, and so
 * does a subscriber before it sleeps or closes. */
#define TAIL_EVERY 32
static void queue_release(struct shm_sub *s, const uint64_t *pos, uint32_t n)
{
    struct shm_chan *ch = &s->ch;
    for (uint32_t i = 0; i < n; i++)
        atomic_store_explicit(&shm_rec(ch, pos[i])->state, REC_RELEASED, memory_order_release);
    dmaq__bump(&s->slot->count, n);
    s->unadvanced += n;
    if (s->unadvanced >= TAIL_EVERY)
        queue_give_back(s);
    wake_if_sleeping(ch, &ch->hdr->space_sleepers, &ch->hdr->space_futex);
}

/* Broadcast: move past `n` messages, the last numbered `last_seq` in the
 * record of `size` bytes at `pos`, of which `overrun` were overwritten while
 * read. Unless the last is not the last of its packed record: then the next
 * message is at `next` (pack_cursor) in the same record. */
static void broadcast_move_past(struct shm_sub *s, uint64_t pos, uint32_t size, uint64_t next, uint64_t last_seq,
                                uint32_t n, uint32_t overrun)
{
    s->pos = next ? pos : pos + size;
    s->pack = next;
    if (last_seq >= s->next_seq)
        s->next_seq = last_seq + 1;
    atomic_store_explicit(&s->slot->next_seq, s->next_seq, memory_order_relaxed);
    dmaq__bump(&s->slot->lost, overrun);
    dmaq__bump(&s->slot->count, n - overrun);
    atomic_store_explicit(&s->slot->pos, s->pos, memory_order_release);
}

/* Under the block policy, after a broadcast reader moved from `from` to
 * `to`: wake publishers waiting for room when that crosses a step they wait
 * for (SPACE_WAKE_SHIFT). Reading a full ring to its end crosses one with
 * more than half the ring free behind it, more than any publisher waits
 * for. */
static void wake_writers_past(struct shm_chan *ch, uint64_t from, uint64_t to)
{
    unsigned step = (unsigned)__builtin_ctzll(ch->capacity) - SPACE_WAKE_SHIFT;
    if ((from >> step) != (to >> step))
        wake_if_sleeping(ch, &ch->hdr->space_sleepers, &ch->hdr->space_futex);
}

/* Finish the message numbered `seq` in the record of `size` bytes at `pos`
 * (`next` as in struct rec_view): broadcast moves past it, a
 * queue marks it released. Returns DMAQ_EOVERWRITTEN if, under validation,
 * it was overrun. */
static int finish_message(struct shm_sub *s, uint64_t pos, uint32_t size, uint64_t next, uint64_t seq)
{
    struct shm_chan *ch = &s->ch;
    s->token = 0;
    if (ch->kind == DMAQ_KIND_QUEUE) {
        queue_release(s, &pos, 1);
        return 0;
    }
    bool overrun = pos < s->validate_below && !intact(s, pos);
    uint64_t from = atomic_load_explicit(&s->slot->pos, memory_order_relaxed); /* what publishers saw */
    broadcast_move_past(s, pos, size, next, seq, 1, overrun);
    if (overrun)
        return dmaq_error_set(DMAQ_EOVERWRITTEN,
                              "message at position %llu on '%s' was overwritten while it was read",
                              (unsigned long long)pos, ch->name);
    if (ch->policy == DMAQ_POLICY_BLOCK)
        wake_writers_past(ch, from, s->pos);
    return 0;
}

/* Finish the message leased (hold) and numbered `seq`. */
static int finish_read(struct shm_sub *s, uint64_t seq)
{
    return finish_message(s, s->lease_pos, s->lease_size, s->lease_next, seq);
}

static int shm_sub_release(void *state, dmaq_lease *lease)
{
    struct shm_sub *s = state;
    int rc = lease_check(lease, s, s->token, "release");
    if (rc < 0)
        return rc;
    if (s->batch)
        return dmaq_error_set(DMAQ_ELEASE, "lease on '%s' came from dmaq_sub_peek_many: end the batch with "
                                           "dmaq_sub_release_many", s->ch.name);
    lease->opaque_[1] = 0;
    return finish_read(s, lease->seq);
}

static int shm_sub_recv(void *state, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    struct shm_sub *s = state;
    if (s->token)
        return dmaq_error_set(DMAQ_EBUSY, "subscriber on '%s' holds a lease; release it before recv",
                              s->ch.name);
    for (;;) {
        struct rec_view v;
        uint64_t pos, lost = 0;
        size_t too_long = 0;
        int rc = next_message(s, &v, &pos, timeout_ns, &lost, cap + 1, &too_long);
        if (rc == DMAQ_ELOST)
            *len = lost;
        if (rc == DMAQ_EMSGSIZE)
            *len = too_long;
        if (rc < 0)
            return rc;
        uint32_t n = v.len;
        if (n > cap) { /* broadcast: checked here, before anything moves */
            bool validate = pos < s->validate_below;
            if (!validate || intact(s, pos)) {
                *len = n;
                return dmaq_error_set(DMAQ_EMSGSIZE, "message of %u bytes does not fit a %zu-byte buffer", n,
                                      cap);
            }
            continue; /* overrun while we looked: broadcast_next reports the lap */
        }
        memcpy(buf, v.data, n);
        rc = finish_message(s, pos, v.size, v.next, v.seq);
        if (rc == DMAQ_EOVERWRITTEN) {
            /* The copy is garbage: report it as the one message lost. */
            *len = 1;
            return dmaq_error_set(DMAQ_ELOST, "subscriber on '%s' was overrun while copying; lost 1 message",
                                  s->ch.name);
        }
        *len = n;
        return rc;
    }
}

/* Broadcast: the message after the one `v` views at `pos`, without
 * waiting and without moving anything. EMPTY also when the ring lapped us
 * there or the record looks wrong: the next dmaq_sub_peek reports those. */
static int broadcast_probe(struct shm_sub *s, uint64_t pos, struct rec_view *v, uint64_t *at)
{
    struct shm_chan *ch = &s->ch;
    if (v->next) { /* the same packed record's next */
        if (view_entry(ch, v, v->next) || (pos < s->validate_below && !intact(s, pos)))
            return EMPTY;
        *at = pos;
        return FOUND;
    }
    pos += v->size;
    for (uint64_t steps = 0; steps <= ch->capacity / DMAQ_RECORD_HEADER; steps++) {
        struct shm_record *r = shm_committed_at(ch, &pos);
        if (!r)
            return EMPTY;
        view_record(r, v);
        if (bad_record(ch, pos, v->size, v->len, v->flags))
            return EMPTY;
        if (viewing_packed(v) && view_pack(ch, v, 0))
            return EMPTY;
        if (pos < s->validate_below && !intact(s, pos))
            return EMPTY;
        if (!(v->flags & REC_PAD)) {
            *at = pos;
            return FOUND;
        }
        pos += v->size;
    }
    return EMPTY;
}

/* Queue: claim the committed records at the claim point, up to `max`
 * messages (and the padding among them), with one compare-and-swap; their
 * positions go to pos[]. Returns how many messages. Stops short of anything
 * odd, which the next queue_next reports. The claim is announced as the
 * range [slot pos, slot claim_end), for the reaper (reap.c). */
static uint32_t queue_claim_run(struct shm_sub *s, uint64_t *pos, uint32_t max)
{
    struct shm_chan *ch = &s->ch;
    struct shm_header *h = ch->hdr;
    uint64_t from = atomic_load(&h->rd_claim);
    for (;;) {
        uint64_t at = from;
        uint32_t k = 0;
        bool padding = false;
        while (k < max) {
            struct shm_record *r = shm_committed_at(ch, &at);
            if (!r)
                break;
            uint32_t size = r->size;
            if (bad_record(ch, at, size, r->len, 0))
                break;
            if (r->flags & REC_PAD)
                padding = true;
            else
                pos[k++] = at;
            at += size;
        }
        if (k == 0)
            return 0; /* padding alone is left for queue_next to pass */
        atomic_store_explicit(&s->slot->pos, from, memory_order_relaxed);
        atomic_store_explicit(&s->slot->claim_end, at, memory_order_relaxed);
        if (!queue_claim(s, &from, at))
            continue; /* from now holds the current claim point */
        for (uint32_t i = 0; i < k; i++)
            atomic_store_explicit(&shm_rec(ch, pos[i])->state, 1 + s->slot_index, memory_order_relaxed);
        if (padding)
            queue_advance_tail(ch);
        return k;
    }
}

/* Broadcast, where no record needs checking after it is read (below
 * validate_below): lease the messages of the packed record `v` views that
 * follow the one it views, into leases[n..max). The same checks as
 * view_entry, in one loop, the lease filled from the entry. Leaves `v` at
 * the last message leased (seq, next: 0 past the record's last, else the
 * entry it stopped at). Returns the new n. */
static size_t lease_pack_rest(struct shm_sub *s, dmaq_lease *leases, size_t n, size_t max, struct rec_view *v,
                              uint64_t pos, uint64_t token)
{
    /* In locals: the stores to the leases may alias anything in memory. */
    const unsigned char *rec = (const unsigned char *)v->rec;
    const uint64_t pack_end = v->pack_end, max_len = s->ch.max_message, rec_seq = v->rec_seq, ts = v->timestamp_ns;
    const uint32_t count = v->count, pub_id = v->pub_id;
    uint64_t off = (uint32_t)v->next;
    uint32_t idx = (uint32_t)(v->next >> 32);
    bool more = true;
    for (; n < max; n++) {
        if (off + sizeof(struct shm_entry) > pack_end)
            break;
        const struct shm_entry *e = (const struct shm_entry *)(rec + off);
        uint32_t len = e->len;
        if (e->index != idx || len > max_len || off + sizeof *e + len > pack_end)
            break;
        dmaq_lease *l = &leases[n];
        l->data = (void *)(e + 1);
        l->len = len;
        l->seq = rec_seq + idx;
        l->timestamp_ns = ts;
        l->publisher_id = pub_id;
        l->flags = 0;
        l->lost = 0;
        l->opaque_[0] = (uint64_t)(uintptr_t)s;
        l->opaque_[1] = token;
        s->batch_pos[n] = pos;
        off = shm_pack_next(off, len);
        if (++idx == count) {
            more = false;
            n++;
            break;
        }
    }
    v->seq = rec_seq + idx - 1;
    v->next = more ? pack_cursor(off, idx) : 0;
    return n;
}

static int shm_sub_peek_many(void *state, dmaq_lease *leases, size_t max_count, size_t *count, int64_t timeout_ns)
{
    struct shm_sub *s = state;
    struct rec_view v;
    uint64_t pos;
    int rc = peek_first(s, &v, &pos, &leases[0], timeout_ns);
    if (rc < 0)
        return rc;
    uint64_t token = next_token(s);
    size_t n = 0;
    struct rec_view last;
    for (;;) {
        lease_message(s, &leases[n], &v, token);
        s->batch_pos[n++] = pos;
        bool rest = n < max_count && v.next && pos >= s->validate_below;
        if (rest)
            n = lease_pack_rest(s, leases, n, max_count, &v, pos, token);
        last = v;
        if (n == max_count || (rest && v.next))
            break; /* full, or at an entry that looks wrong, which the next peek reports */
        /* Only what is already there: a queue claims the rest at once, a
         * broadcast looks past the one before. */
        if (s->ch.kind == DMAQ_KIND_QUEUE) {
            uint32_t k = queue_claim_run(s, s->batch_pos + n, (uint32_t)(max_count - n));
            for (uint32_t i = 0; i < k; i++, n++) {
                /* Ours: only a scribbler changes them, and the batch ends there. */
                if (view_claimed(&s->ch, shm_rec(&s->ch, s->batch_pos[n]), s->batch_pos[n], &v))
                    break;
                lease_message(s, &leases[n], &v, token);
                last = v;
            }
            break;
        }
        if (broadcast_probe(s, pos, &v, &pos) != FOUND)
            break;
    }
    s->batch_last_seq = last.seq;
    s->batch_last_size = last.size;
    s->batch_next = last.next;
    s->batch = (uint32_t)n;
    *count = n;
    return 0;
}

/* End the outstanding batch; `leases` (may be NULL on close) get
 * DMAQ_LEASE_OVERWRITTEN where they were overrun. Returns how many were. */
static size_t finish_batch(struct shm_sub *s, dmaq_lease *leases)
{
    struct shm_chan *ch = &s->ch;
    uint32_t n = s->batch;
    s->batch = 0;
    s->token = 0;
    if (ch->kind == DMAQ_KIND_QUEUE) {
        queue_release(s, s->batch_pos, n);
        return 0;
    }
    uint32_t overrun = 0;
    /* positions only grow within a batch: none below validate_below, no checks */
    uint32_t checked = s->batch_pos[0] < s->validate_below ? n : 0;
    for (uint32_t i = 0; i < checked; i++)
        if (s->batch_pos[i] < s->validate_below && !intact(s, s->batch_pos[i])) {
            overrun++;
            if (leases)
                leases[i].flags |= DMAQ_LEASE_OVERWRITTEN;
        }
    uint64_t from = atomic_load_explicit(&s->slot->pos, memory_order_relaxed);
    broadcast_move_past(s, s->batch_pos[n - 1], s->batch_last_size, s->batch_next, s->batch_last_seq, n, overrun);
    if (ch->policy == DMAQ_POLICY_BLOCK)
        wake_writers_past(ch, from, s->pos);
    return overrun;
}

static int shm_sub_release_many(void *state, dmaq_lease *leases, size_t count)
{
    struct shm_sub *s = state;
    if (!s->batch || count != s->batch)
        return dmaq_error_set(DMAQ_ELEASE, "subscriber on '%s' holds %s; release_many takes the %u leases of the "
                                           "last dmaq_sub_peek_many", s->ch.name,
                              s->batch ? "a batch" : "no batch", s->batch);
    for (size_t i = 0; i < count; i++)
        if (leases[i].opaque_[0] != (uint64_t)(uintptr_t)s || leases[i].opaque_[1] != s->token)
            return lease_check(&leases[i], s, s->token, "release_many"); /* says what is wrong */
    /* The leases keep their token, which no later lease has (next_token). */
    size_t overrun = finish_batch(s, leases);
    if (overrun)
        return dmaq_error_set(DMAQ_EOVERWRITTEN, "%zu of the %zu messages leased on '%s' were overwritten while "
                                                 "held", overrun, count, s->ch.name);
    return 0;
}

static void shm_sub_close(void *state)
{
    struct shm_sub *s = state;
    if (!s->ch.hdr)
        return;
    if (s->batch)
        finish_batch(s, NULL);
    else if (s->token)
        finish_read(s, s->next_seq);
    queue_give_back(s);
    struct solo_side side = subscribers_side(s->ch.hdr);
    solo_leave(&side, s->solo_tag);
    atomic_store(&s->slot->state, SLOT_FREE);
    /* The gate may have moved: let blocked publishers look again. */
    wake_if_sleeping(&s->ch, &s->ch.hdr->space_sleepers, &s->ch.hdr->space_futex);
    shm_chan_close(&s->ch);
}

static int shm_available(void) { return 1; }

const dmaq_transport_ops dmaq__shm_transport = {
    .abi_version = DMAQ_TRANSPORT_ABI,
    .struct_size = sizeof(dmaq_transport_ops),
    .scheme = "shm",
    .pub_state_size = sizeof(struct shm_pub),
    .sub_state_size = sizeof(struct shm_sub),
    .available = shm_available,
    .pub_open = shm_pub_open,
    .pub_close = shm_pub_close,
    .pub_id = shm_pub_id,
    .pub_reserve = shm_pub_reserve,
    .pub_commit = shm_pub_commit,
    .pub_abort = shm_pub_abort,
    .pub_send = shm_pub_send,
    .pub_send_many = shm_pub_send_many,
    .sub_open = shm_sub_open,
    .sub_close = shm_sub_close,
    .sub_peek = shm_sub_peek,
    .sub_release = shm_sub_release,
    .sub_recv = shm_sub_recv,
    .channel_stat = shm_channel_stat,
    .channel_unlink = shm_channel_unlink,
    .sub_peek_many = shm_sub_peek_many,
    .sub_release_many = shm_sub_release_many,
};
