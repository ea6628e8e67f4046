/*
 * Dead peers. A process killed at any moment leaves its slots ACTIVE, and
 * possibly a claimed record that will never be committed or a queue message
 * it leased and will never release. Whoever waits on such a thing (a
 * subscriber stuck at an uncommitted record, a publisher gated by a slot)
 * calls shm_reap, which finds slots whose process is gone (pid plus start
 * time, so a recycled pid is not mistaken for the dead process), finishes
 * what they left and frees them.
 *
 * Nothing here takes a lock: a slot is taken over with one compare-and-swap
 * to SLOT_RECOVERING | pid, and a recoverer that dies in turn is recognised
 * by that pid and replaced. Every repair writes the same bytes whoever
 * makes it, and positions being repaired are pinned: a dead publisher's
 * announced claim gates every publisher until its slot is freed, and a queue
 * record that is not released stops the tail.
 */
#include <stdio.h>
#include <unistd.h>

#include "../util/futex.h"
#include "../util/proc.h"
#include "shm.h"

static bool committed(const struct shm_chan *ch, uint64_t pos)
{
    return atomic_load_explicit(&shm_rec(ch, pos)->tag, memory_order_acquire) == (pos ^ ch->salt);
}

bool shm_slot_alive(const struct shm_slot *s, uint64_t own_ns)
{
    return s->pid_ns != own_ns || dmaq__proc_alive(s->pid, s->start_time);
}

/* Take slot `s` over if the process holding it (or recovering it) is gone.
 * Slots still being claimed are left alone: their pid may be a previous
 * owner's for a few instructions. Slots of another PID namespace are never
 * judged; a recoverer is always of the slot's namespace. */
static bool take_over(struct shm_slot *s, uint64_t own_ns)
{
    uint32_t st = atomic_load(&s->state);
    if (s->pid_ns != own_ns)
        return false;
    if (st & SLOT_RECOVERING) {
        if (dmaq__proc_alive((pid_t)(st & ~SLOT_RECOVERING), 0))
            return false;
    } else if (st != SLOT_ACTIVE || shm_slot_alive(s, own_ns)) {
        return false;
    }
    return atomic_compare_exchange_strong(&s->state, &st, SLOT_RECOVERING | (uint32_t)getpid());
}

/* Give a recovered slot back, taking its sleeper counts out of the header
 * (a process killed while asleep would otherwise make every publisher pay a
 * wake-up system call forever). */
static void free_slot(struct shm_header *h, struct shm_slot *s)
{
    uint32_t sleeping = atomic_exchange(&s->sleeping, 0);
    if (sleeping & SLEEP_DATA)
        atomic_fetch_sub(&h->data_sleepers, 1);
    if (sleeping & SLEEP_SPACE)
        atomic_fetch_sub(&h->space_sleepers, 1);
    atomic_store(&s->claim_owned, 0);
    atomic_store(&s->pos, UINT64_MAX);
    atomic_store(&s->state, SLOT_FREE);
}

/* Does a live publisher (other than slot `self`) claim from `from`? */
static bool other_claims_from(struct shm_header *h, unsigned self, uint64_t from, uint64_t own_ns)
{
    struct shm_slot *ps = shm_pub_slots(h);
    uint32_t hwm = atomic_load(&h->pub_hwm);
    for (unsigned j = 0; j < hwm && j < DMAQ_MAX_PUBLISHERS; j++) {
        if (j == self || atomic_load(&ps[j].pos) != from)
            continue;
        uint32_t st = atomic_load(&ps[j].state);
        if (st == SLOT_ACTIVE && (atomic_load(&ps[j].claim_owned) || shm_slot_alive(&ps[j], own_ns)))
            return true;
    }
    return false;
}

/* Finish the claim a dead publisher announced in slot `idx`: if it owns
 * records it never committed, turn them (and the padding before them) into
 * aborted padding records, which every reader skips and which keep their
 * sequence numbers accounted for (claim_seqs of them: a packed record takes
 * one per message). A batch claim is committed in order, so its committed
 * records are a prefix; the rest is cut into as many padding records as it
 * had records, by a rule that gives the same cut to a second recoverer
 * starting where a first one died. */
static void finish_dead_claim(struct shm_chan *ch, unsigned idx, uint64_t own_ns)
{
    struct shm_header *h = ch->hdr;
    struct shm_slot *s = &shm_pub_slots(h)[idx];
    uint64_t from = atomic_load(&s->pos);
    uint64_t start = atomic_load(&s->claim_start), end = atomic_load(&s->claim_end);
    uint64_t seq = atomic_load(&s->claim_seq);
    uint32_t count = atomic_load(&s->claim_count), seqs = atomic_load(&s->claim_seqs);
    if (from == UINT64_MAX)
        return; /* it was not writing */
    /* The announcement is read from shared memory: check its shape. */
    if (!(start == from || start == shm_segment_end(ch, from)) || end <= start || count == 0 || seqs < count ||
        end - start < (uint64_t)count * DMAQ_RECORD_ALIGN || end - start > (uint64_t)count * ch->max_record ||
        end > shm_segment_end(ch, start))
        return;
    if (shm_write_pos(h) < end)
        return; /* its claim never happened */
    /* Skip the committed prefix. A publisher marks its claim its own
     * right after the compare-and-swap, before it writes anything: with
     * the mark not set, a message there is another publisher's (this one's
     * compare-and-swap failed, and it died before announcing again), and
     * the uncommitted record after it may be a live publisher's, which
     * must not be padded over. Only a recoverer's aborted padding can be
     * there for a claim never owned. */
    bool owned = atomic_load(&s->claim_owned);
    uint64_t pos = start;
    uint32_t done = 0, done_seqs = 0;
    while (pos < end && committed(ch, pos)) {
        const struct shm_record *r = shm_rec(ch, pos);
        uint32_t size = r->size, taken = (r->flags & (REC_PACKED | REC_ABORTED)) && r->count ? r->count : 1;
        if (shm_bad_size(size) || size > end - pos || ++done > count || taken > seqs - done_seqs)
            return; /* not what this claim wrote: leave it to the readers' checks */
        done_seqs += taken;
        if (!owned && !(r->flags & REC_ABORTED))
            return; /* another publisher's message: this claim never happened */
        pos += size;
    }
    if (pos >= end)
        return; /* complete */
    if (!owned) {
        /* It died between its compare-and-swap and marking the claim its
         * own, or its compare-and-swap failed. It owns the record only if
         * nobody alive claims from the same place and what lies at `from`
         * is at most its own padding. */
        if (other_claims_from(h, idx, from, own_ns))
            return;
        if (start != from && committed(ch, from)) {
            struct shm_record *pad = shm_rec(ch, from);
            if (!(pad->flags & REC_PAD) || pad->size != start - from)
                return;
        }
    }
    uint32_t missing = count - done, missing_seqs = seqs - done_seqs;
    if (end - pos < (uint64_t)missing * DMAQ_RECORD_ALIGN || end - pos > (uint64_t)missing * ch->max_record ||
        missing_seqs < missing)
        return;
    if (start != from)
        shm_write_pad(ch, from, start - from, 0, REC_PAD, 0);
    for (uint32_t i = 0; i < missing; i++) {
        /* As large as the maximum record allows while each one after it
         * can still be the smallest record: a function of what is left. */
        uint64_t left = end - pos, after = (uint64_t)(missing - i - 1) * DMAQ_RECORD_ALIGN;
        uint64_t size = left - after < ch->max_record ? left - after : ch->max_record;
        /* The last takes what is left of the claim's sequence numbers (a
         * packed record's claim is a single record holding several). */
        uint32_t taken = i + 1 < missing ? 1 : missing_seqs - i;
        shm_write_pad(ch, pos, size, seq + done_seqs + i, REC_PAD | REC_ABORTED, taken);
        pos += size;
    }
    atomic_fetch_add(&h->aborted, missing_seqs);
}

/* Queue: the end of the range a subscriber announced claiming: claim_end
 * after a run of records (dmaq_sub_peek_many), else the one record at pos.
 * A claim_end left from an earlier run lies at or below pos, since the claim
 * point only moves forward. */
static uint64_t claim_end_of(struct shm_slot *s)
{
    uint64_t pos = atomic_load(&s->pos), end = atomic_load(&s->claim_end);
    return end > pos ? end : pos + 1;
}

/* Queue: put back the messages a dead subscriber (slot `idx`) claimed and
 * never released, for another subscriber to take with the redelivered flag.
 * Returns how many. */
static unsigned requeue_dead_leases(struct shm_chan *ch, unsigned idx)
{
    struct shm_header *h = ch->hdr;
    struct shm_slot *ss = shm_sub_slots(h);
    uint64_t announced = atomic_load(&ss[idx].pos), announced_end = claim_end_of(&ss[idx]);
    uint64_t claim = atomic_load(&h->rd_claim);
    unsigned n = 0;
    /* Records in [tail, rd_claim) were all handed out. */
    uint32_t size;
    struct shm_record *r;
    for (uint64_t t = atomic_load(&h->tail); (r = shm_handed_out_at(ch, &t, claim, &size)); t += size) {
        uint32_t state = atomic_load(&r->state);
        bool mine = state == 1 + idx;
        /* Killed between claiming the record and marking it: the record is
         * still unclaimed below rd_claim, where it announced its claim. */
        if (state == REC_UNCLAIMED && t >= announced && t < announced_end && !(r->flags & REC_PAD)) {
            mine = true;
            for (unsigned j = 0; j < DMAQ_MAX_SUBSCRIBERS; j++) {
                uint64_t from = atomic_load(&ss[j].pos);
                if (j != idx && atomic_load(&ss[j].state) == SLOT_ACTIVE && t >= from && t < claim_end_of(&ss[j]))
                    mine = false; /* another subscriber may be about to mark it */
            }
        }
        if (mine && atomic_compare_exchange_strong(&r->state, &state, REC_REDELIVER))
            n++;
    }
    if (n)
        atomic_fetch_add(&h->redeliver, n);
    return n;
}

int shm_reap(struct shm_chan *ch)
{
    struct shm_header *h = ch->hdr;
    int reaped = 0;
    uint64_t own_ns = dmaq__pid_ns();
    struct shm_slot *ps = shm_pub_slots(h), *ss = shm_sub_slots(h);
    uint32_t hwm = atomic_load(&h->pub_hwm);
    for (unsigned i = 0; i < hwm && i < DMAQ_MAX_PUBLISHERS; i++) {
        if (!take_over(&ps[i], own_ns))
            continue;
        finish_dead_claim(ch, i, own_ns);
        free_slot(h, &ps[i]);
        reaped++;
    }
    hwm = atomic_load(&h->sub_hwm);
    for (unsigned i = 0; i < hwm && i < DMAQ_MAX_SUBSCRIBERS; i++) {
        if (!take_over(&ss[i], own_ns))
            continue;
        if (ch->kind == DMAQ_KIND_QUEUE)
            requeue_dead_leases(ch, i);
        free_slot(h, &ss[i]);
        reaped++;
    }
    if (reaped) {
        /* Gates moved and records appeared: everyone asleep looks again. */
        atomic_fetch_add(&h->data_futex, 1);
        dmaq__futex_wake_all((uint32_t *)&h->data_futex);
        atomic_fetch_add(&h->space_futex, 1);
        dmaq__futex_wake_all((uint32_t *)&h->space_futex);
    }
    return reaped;
}

bool shm_has_live_peer(struct shm_chan *ch)
{
    uint64_t own_ns = dmaq__pid_ns();
    struct shm_slot *slots = shm_pub_slots(ch->hdr); /* publishers, then subscribers */
    for (unsigned i = 0; i < DMAQ_MAX_PUBLISHERS + DMAQ_MAX_SUBSCRIBERS; i++) {
        uint32_t st = atomic_load(&slots[i].state);
        if (st == SLOT_FREE)
            continue;
        if (st & SLOT_RECOVERING ? slots[i].pid_ns != own_ns ||
                                       dmaq__proc_alive((pid_t)(st & ~SLOT_RECOVERING), 0)
                                 : shm_slot_alive(&slots[i], own_ns))
            return true;
    }
    return false;
}
