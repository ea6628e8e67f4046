/*
 * dmaq-fault-peer: a publisher or subscriber for the fault harness
 * (test_fault.c), which SIGKILLs them at random moments. Everything they
 * must report survives their death because it is written, as it happens,
 * to a log file the test maps (struct fault_log).
 *
 *   dmaq-fault-peer pub URI LOG KEY COUNT SEED
 *   dmaq-fault-peer sub URI LOG SLOT
 *
 * A message is [u32 key][u32 index][u64 XXH64(rest, key << 32 | index)]
 * [rest], at least 16 bytes. A publisher records index + 1 in
 * committed[KEY] after each commit, so the test knows a lower bound of
 * what it committed (a kill between the two leaves it one short).
 */
#include <dmaq/dmaq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault_log.h"
#include "payload.h"

#define HEAD PAYLOAD_HEAD

static bool intact(const unsigned char *p, size_t len, uint32_t *key, uint32_t *index)
{
    return payload_intact(p, len, key, index) && *key < FAULT_MAX_KEYS && *index < FAULT_MAX_MSGS;
}

static void pause_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static int publisher(const char *uri, struct fault_log *log, uint32_t key, uint32_t count, uint64_t seed)
{
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_NO_CREATE;
    dmaq_pub *pub;
    if (dmaq_pub_open(uri, &o, &pub) < 0) {
        fprintf(stderr, "fault pub: %s\n", dmaq_last_error());
        return 2;
    }
    dmaq_stat st = {.size = sizeof st};
    if (dmaq_channel_stat(uri, &st, NULL, 0) < 0)
        return 2;
    uint64_t rng = seed | 1;
    size_t max = st.max_message;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t r = rng_next(&rng);
        size_t len = HEAD + (size_t)(rng_next(&rng) % (r % 8 == 0 ? max - HEAD + 1 : 64));
        int rc;
        if (r % 5 == 2) { /* a batch, under as few claims as fit */
            static unsigned char data[FAULT_MAX_BATCH * 1024];
            size_t lens[FAULT_MAX_BATCH], used = 0, n = 2 + r / 5 % (FAULT_MAX_BATCH - 1), sent;
            if (n > count - i)
                n = count - i;
            for (size_t k = 0; k < n; k++) {
                lens[k] = HEAD + (size_t)(rng_next(&rng) % (max - HEAD + 1 < 128 ? max - HEAD + 1 : 128));
                payload_fill(data + used, lens[k], key, i + (uint32_t)k, &rng);
                used += lens[k];
            }
            atomic_store(&log->attempted[key], i + (uint32_t)n);
            if ((rc = dmaq_pub_send_many(pub, data, lens, n, &sent, -1)) < 0)
                goto fail;
            i += (uint32_t)n - 1;
            atomic_store(&log->committed[key], i + 1);
            continue;
        }
        dmaq_lease lease;
        rc = dmaq_pub_reserve(pub, len, &lease, -1);
        if (rc < 0)
            goto fail;
        if (r % 50 == 1) { /* an abort; the next index goes out instead */
            atomic_fetch_add(&log->aborts, 1);
            if ((rc = dmaq_pub_abort(pub, &lease)) < 0)
                goto fail;
            if ((rc = dmaq_pub_reserve(pub, len, &lease, -1)) < 0)
                goto fail;
        }
        payload_fill(lease.data, len, key, i, &rng);
        if (r % 40 == 3)
            pause_us(200); /* hold the reservation: a kill may land here */
        if ((rc = dmaq_pub_commit(pub, &lease, len)) < 0)
            goto fail;
        atomic_store(&log->committed[key], i + 1);
        if (r % 16 == 5)
            pause_us(50);
        continue;
    fail:
        fprintf(stderr, "fault pub %u: message %u: %s\n", key, i, dmaq_last_error());
        return 3;
    }
    dmaq_pub_close(pub);
    return 0;
}

static void damaged(struct fault_sub *me, const dmaq_lease *m)
{
    atomic_fetch_add(&me->bad, 1);
    fprintf(stderr, "fault sub: damaged message of %zu bytes, seq %llu\n", m->len, (unsigned long long)m->seq);
}

/* Queue: log the delivery before releasing it; a kill after this
 * redelivers it, which the redelivered count explains. */
static void take_queued(struct fault_log *log, struct fault_sub *me, const dmaq_lease *m)
{
    uint32_t key, index;
    if (!intact(m->data, m->len, &key, &index)) {
        damaged(me, m);
        return;
    }
    atomic_fetch_add(&me->received, 1);
    atomic_fetch_add(&log->seen[key][index], 1);
    if (m->flags & DMAQ_LEASE_REDELIVERED)
        atomic_fetch_add(&log->redelivered[key][index], 1);
}

/* Broadcast: per publisher, indexes only ever grow (block: by one). */
static void take_broadcast(struct fault_sub *me, uint32_t key, uint32_t index)
{
    atomic_fetch_add(&me->received, 1);
    uint32_t expect = atomic_load(&me->next[key]);
    bool first_of_key = me->late && expect == 0;
    if (index < expect || (me->exact && index != expect && !first_of_key)) {
        atomic_fetch_add(&me->misorder, 1);
        fprintf(stderr, "fault sub: key %u index %u, expected %u\n", key, index, expect);
    }
    atomic_store(&me->next[key], index + 1);
}

static int subscriber(const char *uri, struct fault_log *log, unsigned slot)
{
    struct fault_sub *me = &log->sub[slot];
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_NO_CREATE;
    o.spin_ns = 20000;
    dmaq_sub *sub;
    if (dmaq_sub_open(uri, &o, &sub) < 0) {
        fprintf(stderr, "fault sub: %s\n", dmaq_last_error());
        return 2;
    }
    dmaq_stat st = {.size = sizeof st};
    if (dmaq_channel_stat(uri, &st, NULL, 0) < 0)
        return 2;
    me->exact = st.kind == DMAQ_KIND_BROADCAST && st.policy == DMAQ_POLICY_BLOCK;
    atomic_store(&me->ready, 1);
    for (;;) {
        bool stopping = atomic_load(&log->stop);
        dmaq_lease m;
        /* After the stop: drain until nothing comes for a while (long
         * enough for dead peers to be reaped). */
        int rc = dmaq_sub_peek(sub, &m, stopping ? 150000000 : 20000000);
        if (rc == DMAQ_ETIMEDOUT) {
            if (stopping)
                break;
            continue;
        }
        if (rc == DMAQ_ELOST) {
            atomic_fetch_add(&me->lost, m.lost);
            continue;
        }
        if (rc < 0) {
            fprintf(stderr, "fault sub: peek: %s\n", dmaq_last_error());
            return 3;
        }
        if (st.kind == DMAQ_KIND_QUEUE)
            take_queued(log, me, &m);
        /* Broadcast: check before release, judge after it: under the
         * overwrite policy the release says whether what we read was
         * overwritten while we held it. */
        uint32_t key = 0, index = 0;
        bool ok = st.kind == DMAQ_KIND_QUEUE || intact(m.data, m.len, &key, &index);
        dmaq_lease held = m;
        rc = dmaq_sub_release(sub, &m);
        if (rc == DMAQ_EOVERWRITTEN) {
            atomic_fetch_add(&me->lost, 1);
        } else if (rc < 0) {
            fprintf(stderr, "fault sub: release: %s\n", dmaq_last_error());
            return 3;
        } else if (!ok) {
            damaged(me, &held);
        } else if (st.kind != DMAQ_KIND_QUEUE) {
            take_broadcast(me, key, index);
        }
    }
    dmaq_sub_close(sub);
    atomic_store(&me->done, 1);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5)
        goto usage;
    struct fault_log *log = fault_log_map(argv[3]);
    if (!log)
        return 2;
    if (argc == 7 && strcmp(argv[1], "pub") == 0)
        return publisher(argv[2], log, (uint32_t)atoi(argv[4]), (uint32_t)atoi(argv[5]), strtoull(argv[6], NULL, 10));
    if (argc == 5 && strcmp(argv[1], "sub") == 0)
        return subscriber(argv[2], log, (unsigned)atoi(argv[4]));
usage:
    fprintf(stderr, "usage: %s pub URI LOG KEY COUNT SEED | sub URI LOG SLOT\n", argv[0]);
    return 2;
}
