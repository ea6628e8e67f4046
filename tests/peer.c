/*
 * dmaq-test-peer: one publisher or subscriber process for the cross-process
 * tests. Publishers send deterministic, checksummed messages; subscribers
 * verify every message they get and write a summary the test reads.
 *
 *   dmaq-test-peer pub URI COUNT PUBINDEX
 *   dmaq-test-peer sub URI EXPECT OUTFILE
 *   dmaq-test-peer hold URI     (peek one message, print "held", keep it
 *                                until killed)
 *
 * A message of len >= 16 bytes holds [u32 publisher index][u32 index]
 * [u64 XXH64(rest, publisher index << 32 | index)][rest]; a shorter one holds
 * the byte pattern (len * 31 + i). Sizes are mostly small, sometimes up to
 * the channel's maximum. Subscribers: EXPECT is the number of messages every
 * broadcast subscriber must account for (received + lost); for a queue it is
 * ignored and the subscriber stops at a STOP message, writing to
 * OUTFILE.keys one u64 key per identity it can prove: (1 << 63 | seq) for
 * messages read through a lease, (publisher index << 32 | index) for those
 * long enough to carry one. The test checks no key appears twice.
 */
#include <dmaq/dmaq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "payload.h"

#define STOP_MSG "DMAQSTOP"
#define MAX_PUB_IDS 4096

static size_t pick_len(uint64_t *rng, size_t max)
{
    uint64_t r = rng_next(rng) % 1000;
    size_t hi = r < 900 ? 64 : r < 990 ? 1024 : max;
    if (hi > max)
        hi = max;
    if (r == 999)
        return max; /* the maximum itself, now and then */
    return (size_t)(rng_next(rng) % (hi + 1));
}

#define HEAD PAYLOAD_HEAD
#define SHORT_MSG UINT64_MAX

static void fill(unsigned char *p, size_t len, uint32_t pub_index, uint32_t index, uint64_t *rng)
{
    if (len < HEAD) {
        for (size_t i = 0; i < len; i++)
            p[i] = (unsigned char)(len * 31 + i);
        return;
    }
    payload_fill(p, len, pub_index, index, rng);
}

/* True if the payload is intact; *key = publisher index << 32 | index, or
 * SHORT_MSG for a message too short to carry them. */
static bool check(const unsigned char *p, size_t len, uint64_t *key)
{
    if (len < HEAD) {
        for (size_t i = 0; i < len; i++)
            if (p[i] != (unsigned char)(len * 31 + i))
                return false;
        *key = SHORT_MSG;
        return true;
    }
    uint32_t pub_index, index;
    bool ok = payload_intact(p, len, &pub_index, &index);
    *key = (uint64_t)pub_index << 32 | index;
    return ok;
}

static int publisher(const char *uri, long count, uint32_t pub_index)
{
    dmaq_pub *pub;
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_NO_CREATE;
    if (dmaq_pub_open(uri, &o, &pub) < 0) {
        fprintf(stderr, "peer pub: %s\n", dmaq_last_error());
        return 2;
    }
    dmaq_stat st = {.size = sizeof st};
    dmaq_channel_stat(uri, &st, NULL, 0);
    bool can_abort = st.policy != DMAQ_POLICY_OVERWRITE; /* aborts blur exact lost counts */
    uint64_t rng = (uint64_t)pub_index * 0x9e3779b97f4a7c15ull + 1;
    unsigned char *buf = malloc(st.max_message + 1);
    for (long i = 0; i < count; i++) {
        size_t len = pick_len(&rng, st.max_message);
        int rc;
        uint64_t r = rng_next(&rng);
        if (can_abort && r % 100 == 0) { /* an abort that nobody may see */
            dmaq_lease lease;
            if ((rc = dmaq_pub_reserve(pub, len, &lease, -1)) == 0) {
                memset(lease.data, 0xEE, len);
                rc = dmaq_pub_abort(pub, &lease);
            }
            if (rc < 0)
                goto fail;
        }
        if (r & 2) {
            dmaq_lease lease;
            if ((rc = dmaq_pub_reserve(pub, len, &lease, -1)) < 0)
                goto fail;
            fill(lease.data, len, pub_index, (uint32_t)i, &rng);
            rc = dmaq_pub_commit(pub, &lease, len);
        } else {
            fill(buf, len, pub_index, (uint32_t)i, &rng);
            rc = dmaq_pub_send(pub, buf, len, -1);
        }
        if (rc < 0) {
        fail:
            fprintf(stderr, "peer pub: message %ld: %s\n", i, dmaq_last_error());
            return 3;
        }
    }
    free(buf);
    dmaq_pub_close(pub);
    return 0;
}

/* What one subscriber saw of one publisher. */
struct per_pub {
    uint64_t count;
    int64_t last_index;
};

static int subscriber(const char *uri, uint64_t expect, const char *out)
{
    dmaq_sub *sub;
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_NO_CREATE;
    if (dmaq_sub_open(uri, &o, &sub) < 0) {
        fprintf(stderr, "peer sub: %s\n", dmaq_last_error());
        return 2;
    }
    dmaq_stat st = {.size = sizeof st};
    if (dmaq_channel_stat(uri, &st, NULL, 0) < 0) {
        fprintf(stderr, "peer sub: stat: %s\n", dmaq_last_error());
        return 2;
    }
    bool queue = st.kind == DMAQ_KIND_QUEUE;
    char path[512];
    snprintf(path, sizeof path, "%s.keys", out);
    FILE *keys = queue ? fopen(path, "wb") : NULL;
    static struct per_pub pubs[MAX_PUB_IDS];
    for (unsigned i = 0; i < MAX_PUB_IDS; i++)
        pubs[i].last_index = -1;
    uint64_t last_seq = 0;
    bool any = false;
    uint64_t received = 0, lost = 0, bad = 0, order = 0, rng = 42;
    unsigned char *buf = malloc(st.max_message + 1);
    for (;;) {
        if (!queue && received + lost >= expect)
            break;
        dmaq_lease lease = {0};
        const unsigned char *data;
        size_t len;
        bool leased = rng_next(&rng) & 1;
        int rc;
        if (leased) {
            rc = dmaq_sub_peek(sub, &lease, 60LL * 1000000000);
            len = lease.len;
            data = lease.data;
        } else {
            rc = dmaq_sub_recv(sub, buf, st.max_message, &len, 60LL * 1000000000);
            data = buf;
        }
        if (rc == DMAQ_ELOST) {
            lost += leased ? lease.lost : len;
            continue;
        }
        if (rc < 0) {
            fprintf(stderr, "peer sub: after %llu: %s: %s\n", (unsigned long long)received, dmaq_strerror(rc),
                    dmaq_last_error());
            break;
        }
        if (queue && len == 8 && memcmp(data, STOP_MSG, 8) == 0) {
            if (leased)
                dmaq_sub_release(sub, &lease);
            break;
        }
        uint64_t key = 0;
        bool ok = check(data, len, &key);
        uint64_t seq = lease.seq;
        if (leased && (rc = dmaq_sub_release(sub, &lease)) == DMAQ_EOVERWRITTEN) {
            lost++; /* what we read may be torn: it counts as lost */
            continue;
        }
        received++;
        if (!ok) {
            bad++;
            continue;
        }
        if (leased) {
            /* Sequence numbers are channel-wide, in commit-claim order: a
             * subscriber sees them rise (a queue's subscriber too). */
            if (any && seq <= last_seq) {
                order++;
                fprintf(stderr, "peer sub: sequence %llu after %llu (len %zu)\n", (unsigned long long)seq,
                        (unsigned long long)last_seq, len);
            }
            last_seq = seq;
            any = true;
            if (keys)
                fwrite(&(uint64_t){1ull << 63 | seq}, 8, 1, keys);
        }
        if (key == SHORT_MSG)
            continue;
        if (keys)
            fwrite(&key, 8, 1, keys);
        uint32_t pi = (uint32_t)(key >> 32);
        if (pi >= MAX_PUB_IDS) {
            bad++;
            continue;
        }
        if ((int64_t)(uint32_t)key <= pubs[pi].last_index)
            order++; /* per-publisher order broken */
        pubs[pi].last_index = (uint32_t)key;
        pubs[pi].count++;
    }
    FILE *f = fopen(out, "w");
    fprintf(f, "received=%llu lost=%llu bad=%llu order=%llu\n", (unsigned long long)received,
            (unsigned long long)lost, (unsigned long long)bad, (unsigned long long)order);
    fclose(f);
    if (keys)
        fclose(keys);
    free(buf);
    dmaq_sub_close(sub);
    return 0;
}

/* A subscriber that takes one message and then hangs on to it: for the
 * tests that kill a subscriber holding messages. */
static int holder(const char *uri)
{
    dmaq_sub *sub;
    dmaq_lease lease;
    if (dmaq_sub_open(uri, NULL, &sub) < 0 || dmaq_sub_peek(sub, &lease, 60LL * 1000000000) < 0) {
        fprintf(stderr, "peer hold: %s\n", dmaq_last_error());
        return 2;
    }
    printf("held\n");
    fflush(stdout);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "hold") == 0)
        return holder(argv[2]);
    if (argc == 5 && strcmp(argv[1], "pub") == 0)
        return publisher(argv[2], atol(argv[3]), (uint32_t)strtoul(argv[4], NULL, 10));
    if (argc == 5 && strcmp(argv[1], "sub") == 0)
        return subscriber(argv[2], strtoull(argv[3], NULL, 10), argv[4]);
    fprintf(stderr, "usage: %s pub URI COUNT PUBINDEX | sub URI EXPECT OUTFILE\n", argv[0]);
    return 64;
}
