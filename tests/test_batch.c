/* dmaq_pub_send_many and dmaq_sub_recv_many: batches across processes lose,
 * reorder and corrupt nothing, and every edge (too big, timeouts, lapped
 * subscribers, bad arguments) ends as documented; and a publisher killed
 * inside a claim, batch or single, wedges and damages nothing. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../core/shm/layout.h"
#include "harness.h"
#include "payload.h"

#define BATCH_MAX 64
#define MESSAGES 20000

static dmaq_options opts(uint32_t kind, uint32_t policy, uint64_t capacity, uint64_t max_message)
{
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.kind = kind;
    o.policy = policy;
    o.capacity = capacity;
    o.max_message = max_message;
    return o;
}

/* A fresh channel with a subscriber, opened first so that a broadcast
 * shows it everything, and a publisher. */
struct pair {
    char uri[96];
    dmaq_sub *sub;
    dmaq_pub *pub;
};

static struct pair pair_open(const char *what, const dmaq_options *o)
{
    struct pair c;
    unique_uri(c.uri, sizeof c.uri, what);
    cr_assert_eq(dmaq_sub_open(c.uri, o, &c.sub), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_pub_open(c.uri, o, &c.pub), 0, "%s", dmaq_last_error());
    return c;
}

static void pair_close(struct pair *c)
{
    dmaq_pub_close(c->pub);
    dmaq_sub_close(c->sub);
    dmaq_channel_unlink(c->uri);
}

/* The last subscriber sub_on_new_channel opened. Children forked after it
 * inherit it and exit without closing it (that would free the parent's slot
 * in the channel); this pointer keeps valgrind from calling it lost. */
static dmaq_sub *inherited_sub;

/* A fresh channel and a subscriber on it, opened before any publisher so
 * that a broadcast shows it everything. */
static dmaq_sub *sub_on_new_channel(char *uri, size_t cap, const char *what, const dmaq_options *o)
{
    unique_uri(uri, cap, what);
    cr_assert_eq(dmaq_sub_open(uri, o, &inherited_sub), 0, "%s", dmaq_last_error());
    return inherited_sub;
}

/* In a forked child: a publisher, or the child exits with status 2. */
static dmaq_pub *child_pub(const char *uri, const dmaq_options *o)
{
    dmaq_pub *pub;
    if (dmaq_pub_open(uri, o, &pub) < 0)
        _exit(2);
    return pub;
}

/* The child publishes MESSAGES checksummed messages of 16..400 bytes in
 * batches of 1..BATCH_MAX; the parent takes them in batches and checks each. */
static void batches_across_processes(uint32_t kind)
{
    char uri[96];
    dmaq_options o = opts(kind, DMAQ_POLICY_BLOCK, 1 << 16, 1024);
    dmaq_sub *sub = sub_on_new_channel(uri, sizeof uri, "batch", &o);
    pid_t child = fork();
    if (child == 0) {
        dmaq_pub *pub = child_pub(uri, &o);
        static unsigned char data[BATCH_MAX * 400];
        size_t lens[BATCH_MAX];
        uint64_t rng = 7;
        for (uint32_t i = 0; i < MESSAGES;) {
            size_t n = 1 + rng_next(&rng) % BATCH_MAX, used = 0;
            if (n > MESSAGES - i)
                n = MESSAGES - i;
            for (size_t k = 0; k < n; k++) {
                lens[k] = PAYLOAD_HEAD + rng_next(&rng) % (400 - PAYLOAD_HEAD + 1);
                payload_fill(data + used, lens[k], 1, i + (uint32_t)k, &rng);
                used += lens[k];
            }
            size_t sent = 0;
            if (dmaq_pub_send_many(pub, data, lens, n, &sent, -1) < 0 || sent != n)
                _exit(3);
            i += (uint32_t)n;
        }
        dmaq_pub_close(pub);
        _exit(0);
    }
    static unsigned char buf[16384];
    size_t lens[BATCH_MAX], count, batches = 0;
    uint32_t expect = 0;
    while (expect < MESSAGES) {
        int rc = dmaq_sub_recv_many(sub, buf, sizeof buf, lens, BATCH_MAX, &count, 10LL * 1000000000);
        cr_assert_eq(rc, 0, "recv_many after %u: %s", expect, dmaq_last_error());
        cr_assert(count >= 1 && count <= BATCH_MAX, "count %zu", count);
        size_t off = 0;
        for (size_t k = 0; k < count; k++) {
            uint32_t key, index;
            cr_assert(payload_intact(buf + off, lens[k], &key, &index), "message %u is corrupt", expect);
            cr_assert_eq(index, expect, "got message %u, expected %u", index, expect);
            off += lens[k];
            expect++;
        }
        batches++;
    }
    int status;
    waitpid(child, &status, 0);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "publisher status 0x%x", status);
    cr_expect_lt(batches, MESSAGES, "messages came in batches (%zu calls for %d)", batches, MESSAGES);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
}

Test(batch, queue_across_processes) { batches_across_processes(DMAQ_KIND_QUEUE); }
Test(batch, broadcast_across_processes) { batches_across_processes(DMAQ_KIND_BROADCAST); }

/* Four publishers race batches (and single sends) through a 4 KiB ring, so
 * that a batch takes several claims and waits for room between them; the
 * subscriber sees every message once, each publisher's in order, and
 * sequence numbers without a gap. */
#define RACERS 4
#define RACE_MESSAGES 5000

static void racing_batches(uint32_t kind)
{
    char uri[96];
    dmaq_options o = opts(kind, DMAQ_POLICY_BLOCK, 4096, 200);
    dmaq_sub *sub = sub_on_new_channel(uri, sizeof uri, "race", &o);
    pid_t pids[RACERS];
    for (uint32_t key = 0; key < RACERS; key++) {
        pids[key] = fork();
        if (pids[key] != 0)
            continue;
        dmaq_pub *pub = child_pub(uri, &o);
        static unsigned char data[BATCH_MAX * 200];
        size_t lens[BATCH_MAX];
        uint64_t rng = 11 + key;
        for (uint32_t i = 0; i < RACE_MESSAGES;) {
            size_t n = 1 + rng_next(&rng) % BATCH_MAX, used = 0;
            if (n > RACE_MESSAGES - i)
                n = RACE_MESSAGES - i;
            for (size_t k = 0; k < n; k++) {
                lens[k] = PAYLOAD_HEAD + rng_next(&rng) % (200 - PAYLOAD_HEAD + 1);
                payload_fill(data + used, lens[k], key, i + (uint32_t)k, &rng);
                used += lens[k];
            }
            size_t sent = 0;
            if (n == 1 ? dmaq_pub_send(pub, data, lens[0], -1) < 0
                       : dmaq_pub_send_many(pub, data, lens, n, &sent, -1) < 0 || sent != n)
                _exit(3);
            i += (uint32_t)n;
        }
        dmaq_pub_close(pub);
        _exit(0);
    }
    uint32_t next[RACERS] = {0};
    uint64_t last_seq = 0;
    for (uint32_t got = 0; got < RACERS * RACE_MESSAGES; got++) {
        dmaq_lease r;
        cr_assert_eq(dmaq_sub_peek(sub, &r, 30LL * 1000000000), 0, "message %u: %s", got, dmaq_last_error());
        uint32_t key, index;
        cr_assert(payload_intact(r.data, r.len, &key, &index) && key < RACERS, "message %u is corrupt", got);
        cr_assert_eq(index, next[key], "publisher %u: got %u, expected %u", key, index, next[key]);
        next[key]++;
        cr_assert(got == 0 || r.seq == last_seq + 1, "sequence %llu after %llu", (unsigned long long)r.seq,
                  (unsigned long long)last_seq);
        last_seq = r.seq;
        cr_assert_eq(dmaq_sub_release(sub, &r), 0);
    }
    cr_expect(wait_all(pids, RACERS, 30), "a publisher failed");
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
}

Test(batch, queue_publishers_race_batches) { racing_batches(DMAQ_KIND_QUEUE); }
Test(batch, broadcast_publishers_race_batches) { racing_batches(DMAQ_KIND_BROADCAST); }

Test(batch, a_message_that_does_not_fit)
{
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 1 << 16, 1024);
    struct pair c = pair_open("batch-fit", &o);
    dmaq_sub *sub = c.sub;
    dmaq_pub *pub = c.pub;
    unsigned char data[300] = {0};
    size_t lens[3] = {100, 100, 100}, sent, count, got[4];
    cr_assert_eq(dmaq_pub_send_many(pub, data, lens, 3, &sent, 0), 0);
    unsigned char buf[250];
    /* Two fit; the third waits for the next call, which says how big it is. */
    cr_expect_eq(dmaq_sub_recv_many(sub, buf, sizeof buf, got, 4, &count, 0), 0);
    cr_expect_eq(count, 2);
    cr_expect_eq(dmaq_sub_recv_many(sub, buf, 50, got, 4, &count, 0), DMAQ_EMSGSIZE);
    cr_expect_eq(count, 0);
    cr_expect_eq(got[0], 100, "lens[0] holds the length needed");
    cr_expect_eq(dmaq_sub_recv_many(sub, buf, sizeof buf, got, 4, &count, 0), 0, "it was left unread");
    cr_expect_eq(count, 1);
    cr_expect_eq(dmaq_sub_recv_many(sub, buf, sizeof buf, got, 4, &count, 0), DMAQ_EAGAIN);
    cr_expect_eq(count, 0);
    uint64_t t0 = mono_ns();
    cr_expect_eq(dmaq_sub_recv_many(sub, buf, sizeof buf, got, 4, &count, 20000000), DMAQ_ETIMEDOUT);
    cr_expect_geq(mono_ns() - t0, 20000000u, "it waited its timeout");
    /* A message bigger than the channel's maximum ends send_many there. */
    size_t big[3] = {10, 2000, 10};
    unsigned char src[2020] = {0};
    expect_error(dmaq_pub_send_many(pub, src, big, 3, &sent, 0), DMAQ_EMSGSIZE, "");
    cr_expect_eq(sent, 1, "the message before it was published");
    pair_close(&c);
}

Test(batch, send_many_times_out_on_a_full_ring)
{
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 4096, 0);
    struct pair c = pair_open("batch-full", &o);
    dmaq_sub *sub = c.sub;
    dmaq_pub *pub = c.pub;
    size_t lens[100];
    for (int i = 0; i < 100; i++)
        lens[i] = 100;
    static unsigned char data[100 * 100];
    size_t sent;
    uint64_t t0 = mono_ns();
    cr_expect_eq(dmaq_pub_send_many(pub, data, lens, 100, &sent, 30000000), DMAQ_ETIMEDOUT);
    uint64_t waited = mono_ns() - t0;
    cr_expect(sent > 0 && sent < 100, "sent %zu of 100 into a 4 KiB ring", sent);
    cr_expect_geq(waited, 30000000u, "it waited its timeout");
    cr_expect_lt(waited, 5000000000u, "the timeout covers the whole batch, not each message");
    size_t got[128], count, total = 0;
    unsigned char buf[8192];
    while (dmaq_sub_recv_many(sub, buf, sizeof buf, got, 128, &count, 0) == 0)
        total += count;
    cr_expect_eq(total, sent, "every message it said it sent arrives");
    pair_close(&c);
}

Test(batch, a_lapped_subscriber_learns_how_many_it_lost)
{
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_OVERWRITE, 4096, 0);
    struct pair c = pair_open("batch-lost", &o);
    dmaq_sub *sub = c.sub;
    dmaq_pub *pub = c.pub;
    size_t lens[200];
    for (int i = 0; i < 200; i++)
        lens[i] = 64;
    static unsigned char data[200 * 64];
    size_t sent, got[256], count;
    cr_assert_eq(dmaq_pub_send_many(pub, data, lens, 200, &sent, 0), 0, "overwrite never waits");
    unsigned char buf[16384];
    cr_expect_eq(dmaq_sub_recv_many(sub, buf, sizeof buf, got, 256, &count, 0), DMAQ_ELOST);
    cr_expect_eq(count, 0);
    uint64_t lost = got[0], received = 0;
    cr_expect_gt(lost, 0);
    while (dmaq_sub_recv_many(sub, buf, sizeof buf, got, 256, &count, 0) == 0)
        received += count;
    cr_expect_eq(lost + received, 200, "lost %llu + received %llu account for every message",
                 (unsigned long long)lost, (unsigned long long)received);
    pair_close(&c);
}

Test(batch, bad_arguments)
{
    struct pair c = pair_open("batch-args", NULL);
    dmaq_sub *sub = c.sub;
    dmaq_pub *pub = c.pub;
    size_t lens[2] = {1, 1}, count = 9, sent = 9;
    unsigned char buf[8];
    expect_error(dmaq_pub_send_many(NULL, buf, lens, 2, &sent, 0), DMAQ_EINVAL, "pub is NULL");
    cr_expect_eq(sent, 0, "*sent is set even on failure");
    expect_error(dmaq_pub_send_many(pub, buf, NULL, 2, &sent, 0), DMAQ_EINVAL, "lens is NULL");
    expect_error(dmaq_pub_send_many(pub, NULL, lens, 2, &sent, 0), DMAQ_EINVAL, "data is NULL");
    cr_expect_eq(dmaq_pub_send_many(pub, NULL, NULL, 0, NULL, 0), 0, "an empty batch is fine");
    expect_error(dmaq_sub_recv_many(NULL, buf, 8, lens, 2, &count, 0), DMAQ_EINVAL, "sub is NULL");
    cr_expect_eq(count, 0);
    expect_error(dmaq_sub_recv_many(sub, buf, 8, NULL, 2, &count, 0), DMAQ_EINVAL, "lens is NULL");
    expect_error(dmaq_sub_recv_many(sub, buf, 8, lens, 2, NULL, 0), DMAQ_EINVAL, "count is NULL");
    expect_error(dmaq_sub_recv_many(sub, NULL, 8, lens, 2, &count, 0), DMAQ_EINVAL, "buf is NULL");
    expect_error(dmaq_sub_recv_many(sub, buf, 8, lens, 0, &count, 0), DMAQ_EINVAL, "max_count is 0");
    pair_close(&c);
}

/* ---- zero-copy batches: dmaq_sub_peek_many / dmaq_sub_release_many ---- */

static void publish_numbers(dmaq_pub *pub, uint32_t first, uint32_t n)
{
    for (uint32_t i = first; i < first + n; i++)
        cr_assert_eq(dmaq_pub_send(pub, &i, sizeof i, 0), 0, "%s", dmaq_last_error());
}

static uint32_t number_in(const dmaq_lease *l)
{
    uint32_t v;
    memcpy(&v, l->data, sizeof v);
    return v;
}

Test(batch, leases_in_a_batch)
{
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 1 << 16, 0);
    struct pair c = pair_open("peek-many", &o);
    dmaq_sub *sub = c.sub;
    dmaq_pub *pub = c.pub;
    publish_numbers(pub, 0, 100);
    static dmaq_lease leases[DMAQ_BATCH_MAX];
    size_t n;
    cr_assert_eq(dmaq_sub_peek_many(sub, leases, 64, &n, 0), 0, "%s", dmaq_last_error());
    cr_expect_eq(n, 64);
    for (size_t i = 0; i < n; i++) {
        cr_expect_eq(number_in(&leases[i]), i, "in order");
        cr_expect_eq(leases[i].len, 4);
        if (i)
            cr_expect_eq(leases[i].seq, leases[i - 1].seq + 1);
    }
    dmaq_lease one;
    size_t len;
    char buf[8];
    expect_error(dmaq_sub_peek(sub, &one, 0), DMAQ_EBUSY, "release it first");
    expect_error(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), DMAQ_EBUSY, "release it before recv");
    expect_error(dmaq_sub_peek_many(sub, leases, 4, &n, 0), DMAQ_EBUSY, "release it first");
    cr_expect_eq(n, 0);
    expect_error(dmaq_sub_release(sub, &leases[0]), DMAQ_ELEASE, "dmaq_sub_release_many");
    expect_error(dmaq_sub_release_many(sub, leases, 63), DMAQ_ELEASE, "64 leases");
    static dmaq_lease ended[DMAQ_BATCH_MAX];
    memcpy(ended, leases, sizeof ended);
    cr_expect_eq(dmaq_sub_release_many(sub, leases, 64), 0, "%s", dmaq_last_error());
    expect_error(dmaq_sub_release_many(sub, leases, 64), DMAQ_ELEASE, "no batch");
    cr_assert_eq(dmaq_sub_peek_many(sub, leases, DMAQ_BATCH_MAX, &n, 0), 0);
    cr_expect_eq(n, 36, "the rest");
    cr_expect_eq(number_in(&leases[0]), 64);
    /* the ended batch's leases, however many, are not the new batch's */
    expect_error(dmaq_sub_release_many(sub, ended, n), DMAQ_ELEASE, "not outstanding");
    expect_error(dmaq_sub_release(sub, &ended[0]), DMAQ_ELEASE, "not outstanding");
    cr_expect_eq(dmaq_sub_release_many(sub, leases, n), 0);
    cr_expect_eq(dmaq_sub_peek_many(sub, leases, 8, &n, 10000000), DMAQ_ETIMEDOUT);
    expect_error(dmaq_sub_peek_many(sub, leases, 0, &n, 0), DMAQ_EINVAL, "1 to 256");
    expect_error(dmaq_sub_peek_many(sub, leases, DMAQ_BATCH_MAX + 1, &n, 0), DMAQ_EINVAL, "1 to 256");
    expect_error(dmaq_sub_peek_many(sub, NULL, 8, &n, 0), DMAQ_EINVAL, "leases is NULL");
    expect_error(dmaq_sub_release_many(sub, NULL, 8), DMAQ_EINVAL, "leases is NULL");
    /* Single leases still work after batches, and the publisher was never held up. */
    publish_numbers(pub, 100, 1);
    cr_assert_eq(dmaq_sub_peek(sub, &one, 0), 0);
    cr_expect_eq(number_in(&one), 100);
    dmaq_sub_release(sub, &one);
    pair_close(&c);
}

Test(batch, queue_batches_across_processes)
{
    char uri[96];
    dmaq_options o = opts(DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK, 1 << 14, 512);
    dmaq_sub *sub = sub_on_new_channel(uri, sizeof uri, "peek-many-q", &o);
    pid_t child = fork();
    if (child == 0) {
        dmaq_pub *pub = child_pub(uri, &o);
        unsigned char msg[400];
        uint64_t rng = 3;
        for (uint32_t i = 0; i < MESSAGES; i++) {
            size_t len = PAYLOAD_HEAD + rng_next(&rng) % (sizeof msg - PAYLOAD_HEAD);
            payload_fill(msg, len, 2, i, &rng);
            if (dmaq_pub_send(pub, msg, len, -1) < 0)
                _exit(3);
        }
        dmaq_pub_close(pub);
        _exit(0);
    }
    static dmaq_lease leases[DMAQ_BATCH_MAX];
    uint32_t expect = 0;
    size_t calls = 0;
    while (expect < MESSAGES) {
        size_t n;
        cr_assert_eq(dmaq_sub_peek_many(sub, leases, DMAQ_BATCH_MAX, &n, 10LL * 1000000000), 0, "%s",
                     dmaq_last_error());
        for (size_t i = 0; i < n; i++) {
            uint32_t key, index;
            cr_assert(payload_intact(leases[i].data, leases[i].len, &key, &index), "message %u is corrupt", expect);
            cr_assert_eq(index, expect);
            expect++;
        }
        cr_assert_eq(dmaq_sub_release_many(sub, leases, n), 0);
        calls++;
    }
    int status;
    waitpid(child, &status, 0);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_expect_lt(calls, MESSAGES);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
}

Test(batch, a_killed_holder_of_a_queue_batch_loses_nothing)
{
    char uri[96];
    unique_uri(uri, sizeof uri, "peek-many-kill");
    dmaq_options o = opts(DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK, 1 << 16, 0);
    dmaq_pub *pub;
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0);
    publish_numbers(pub, 0, 100);
    pid_t child = fork();
    if (child == 0) { /* takes a batch and dies holding it */
        dmaq_sub *sub;
        static dmaq_lease leases[50];
        size_t n;
        if (dmaq_sub_open(uri, &o, &sub) < 0 || dmaq_sub_peek_many(sub, leases, 50, &n, 0) < 0 || n != 50)
            _exit(2);
        raise(SIGKILL);
    }
    int status;
    waitpid(child, &status, 0);
    cr_assert(WIFSIGNALED(status), "the holder died: status 0x%x", status);
    dmaq_sub *sub;
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0);
    bool seen[100] = {false};
    unsigned redelivered = 0;
    for (int got = 0; got < 100;) {
        static dmaq_lease leases[DMAQ_BATCH_MAX];
        size_t n;
        cr_assert_eq(dmaq_sub_peek_many(sub, leases, DMAQ_BATCH_MAX, &n, 10LL * 1000000000), 0,
                     "after %d of 100: %s", got, dmaq_last_error());
        for (size_t i = 0; i < n; i++) {
            uint32_t v = number_in(&leases[i]);
            cr_assert(v < 100 && !seen[v], "message %u once", v);
            seen[v] = true;
            redelivered += (leases[i].flags & DMAQ_LEASE_REDELIVERED) != 0;
        }
        got += (int)n;
        cr_assert_eq(dmaq_sub_release_many(sub, leases, n), 0);
    }
    cr_expect_eq(redelivered, 50, "the dead holder's 50 came back, marked");
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

Test(batch, a_batch_overwritten_while_held)
{
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_OVERWRITE, 4096, 0);
    struct pair c = pair_open("peek-many-ow", &o);
    dmaq_sub *sub = c.sub;
    dmaq_pub *pub = c.pub;
    publish_numbers(pub, 0, 10);
    static dmaq_lease leases[DMAQ_BATCH_MAX];
    size_t n;
    cr_assert_eq(dmaq_sub_peek_many(sub, leases, 10, &n, 0), 0);
    cr_assert_eq(n, 10);
    publish_numbers(pub, 10, 200); /* laps the ring under the held batch */
    expect_error(dmaq_sub_release_many(sub, leases, n), DMAQ_EOVERWRITTEN, "were overwritten");
    size_t flagged = 0;
    for (size_t i = 0; i < n; i++)
        flagged += (leases[i].flags & DMAQ_LEASE_OVERWRITTEN) != 0;
    cr_expect_eq(flagged, 10);
    dmaq_lease l;
    cr_expect_eq(dmaq_sub_peek(sub, &l, 0), DMAQ_ELOST, "then the lap itself is reported");
    cr_expect_gt(l.lost, 0);
    pair_close(&c);
}

Test(batch, closing_with_a_batch_frees_its_space)
{
    char uri[96];
    unique_uri(uri, sizeof uri, "peek-many-close");
    dmaq_options o = opts(DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK, 4096, 0);
    dmaq_pub *pub;
    dmaq_sub *sub;
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0);
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0);
    uint32_t sent = 0;
    while (dmaq_pub_send(pub, &sent, sizeof sent, 0) == 0)
        sent++; /* fill the ring */
    static dmaq_lease leases[DMAQ_BATCH_MAX];
    size_t n;
    cr_assert_eq(dmaq_sub_peek_many(sub, leases, DMAQ_BATCH_MAX, &n, 0), 0);
    cr_expect_eq(n, sent);
    dmaq_sub_close(sub);
    cr_expect_eq(dmaq_pub_send(pub, &sent, sizeof sent, 0), 0, "closing ended the batch and freed the ring");
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

/* A publisher that dies inside dmaq_pub_send_many leaves one claim of many
 * records with only a prefix committed. It dies at a known record here: its
 * batch runs into a page it may not read, so the copy of message K faults
 * after messages 0..K-1 of the claim were committed. The subscriber waiting
 * behind the claim reaps it: the prefix is delivered, the other records
 * become aborted padding, one sequence number each, and a new publisher's
 * message follows. On a broadcast channel the small messages went into one
 * packed record, committed whole or not at all: nothing of it is delivered,
 * and its padding takes all its sequence numbers. */
#define DEATH_BATCH 40
#define DEATH_AT 25
#define DIED_IN_BATCH 42
/* What valgrind's --error-exitcode makes of DIED_IN_BATCH: memcheck counts
 * the faulting read as an error. */
#define DIED_IN_BATCH_UNDER_VALGRIND 99

/* Our own handler, so that sanitizers, which would report the fault, let
 * the process end the way the test expects. */
static void died_in_batch(int sig)
{
    (void)sig;
    _exit(DIED_IN_BATCH);
}

static void killed_inside_a_batch(uint32_t kind)
{
    char uri[96];
    dmaq_options o = opts(kind, DMAQ_POLICY_BLOCK, 1 << 20, 64); /* the batch fits one packed record */
    dmaq_sub *sub = sub_on_new_channel(uri, sizeof uri, "batch-death", &o);
    pid_t child = fork();
    if (child == 0) {
        dmaq_pub *pub = child_pub(uri, &o);
        struct sigaction sa = {.sa_handler = died_in_batch};
        sigaction(SIGSEGV, &sa, NULL);
        long page = sysconf(_SC_PAGESIZE);
        unsigned char *map = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (map == MAP_FAILED || mprotect(map + page, (size_t)page, PROT_NONE) < 0)
            _exit(3);
        /* 16-byte messages ending at the guard page after DEATH_AT of them. */
        unsigned char *data = map + page - DEATH_AT * 16;
        size_t lens[DEATH_BATCH];
        for (uint32_t k = 0; k < DEATH_BATCH; k++) {
            lens[k] = 16;
            if (k < DEATH_AT)
                memcpy(data + k * 16, &k, sizeof k);
        }
        dmaq_pub_send_many(pub, data, lens, DEATH_BATCH, NULL, -1);
        _exit(4); /* not reached: the copy of message DEATH_AT faults */
    }
    int status;
    waitpid(child, &status, 0);
    cr_assert(WIFEXITED(status) &&
                  (WEXITSTATUS(status) == DIED_IN_BATCH || WEXITSTATUS(status) == DIED_IN_BATCH_UNDER_VALGRIND),
              "the publisher was to die inside its batch (status 0x%x)", status);
    uint64_t first_seq = 0; /* a new channel numbers from 0 */
    uint32_t prefix = kind == DMAQ_KIND_QUEUE ? DEATH_AT : 0;
    for (uint32_t k = 0; k < prefix; k++) {
        dmaq_lease r;
        cr_assert_eq(dmaq_sub_peek(sub, &r, 0), 0, "message %u of the committed prefix: %s", k, dmaq_last_error());
        uint32_t index;
        memcpy(&index, r.data, sizeof index);
        cr_assert_eq(index, k);
        cr_assert_eq(r.seq, first_seq + k);
        cr_assert_eq(dmaq_sub_release(sub, &r), 0);
    }
    dmaq_lease r;
    cr_assert_eq(dmaq_sub_peek(sub, &r, 200000000), DMAQ_ETIMEDOUT, "the rest was never committed");
    dmaq_pub *pub;
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_pub_send(pub, "end", 3, 10LL * 1000000000), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_sub_peek(sub, &r, 10LL * 1000000000), 0, "the marker: %s", dmaq_last_error());
    cr_expect_eq(r.len, 3);
    cr_expect_eq(r.seq, first_seq + DEATH_BATCH, "its claim kept its sequence numbers (got %llu)",
                 (unsigned long long)r.seq);
    cr_assert_eq(dmaq_sub_release(sub, &r), 0);
    dmaq_stat st = {.size = sizeof st};
    cr_assert_geq(dmaq_channel_stat(uri, &st, NULL, 0), 0);
    cr_expect_eq(st.publishers, 1, "the dead publisher's slot was freed");
    cr_expect_eq(st.published, prefix + 1, "what was never committed is not counted as published");
    dmaq_pub_close(pub);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
}

Test(batch, a_publisher_dead_inside_a_broadcast_batch_wedges_nothing) { killed_inside_a_batch(DMAQ_KIND_BROADCAST); }
Test(batch, a_publisher_dead_inside_a_queue_batch_wedges_nothing) { killed_inside_a_batch(DMAQ_KIND_QUEUE); }

/* A queue publisher killed holding a reservation that starts a segment: it
 * wrote the padding before the segment's end and nothing more. The
 * subscriber reads up to that padding, so the tail passes it; another
 * publisher then fills the ring. The dead claim must pin the padding's
 * bytes for the reaper, which writes that padding again: were the tail
 * alone the limit, the other publisher would have written a lap over it
 * (the padding sits 128 bytes into one of its records here) and the reaper
 * would write a record header into that message. Every message of the
 * other publisher arrives intact, after the aborted one's sequence number. */
Test(reap, a_dead_queue_claim_pins_its_padding_until_reaped)
{
    enum { CAPACITY = 1 << 16, BEFORE = 42, BEFORE_LEN = 100, AFTER_LEN = 150, DEAD_LEN = 900 };
    char uri[96];
    dmaq_options o = opts(DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK, CAPACITY, 1000);
    dmaq_sub *sub = sub_on_new_channel(uri, sizeof uri, "reap-pad", &o);
    pid_t child = fork();
    if (child == 0) {
        dmaq_pub *pub = child_pub(uri, &o);
        /* 42 records of 192 bytes end 128 bytes before the first segment's
         * end (8 KiB segments), too little for the 960-byte record next. */
        static unsigned char msg[BEFORE_LEN];
        for (uint32_t i = 0; i < BEFORE; i++)
            if (dmaq_pub_send(pub, msg, sizeof msg, 0) < 0)
                _exit(2);
        dmaq_lease w;
        if (dmaq_pub_reserve(pub, DEAD_LEN, &w, 0) < 0)
            _exit(3);
        raise(SIGKILL);
    }
    int status;
    waitpid(child, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the publisher was to die reserving (0x%x)",
              status);
    dmaq_lease r;
    uint64_t dead_seq = 0;
    for (uint32_t i = 0; i < BEFORE; i++) {
        cr_assert_eq(dmaq_sub_peek(sub, &r, 0), 0, "message %u before the dead claim: %s", i, dmaq_last_error());
        dead_seq = r.seq + 1;
        cr_assert_eq(dmaq_sub_release(sub, &r), 0);
    }
    cr_assert_eq(dmaq_sub_peek(sub, &r, 0), DMAQ_EAGAIN, "the dead claim was never committed");

    dmaq_pub *pub;
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0, "%s", dmaq_last_error());
    static unsigned char msg[AFTER_LEN];
    uint64_t rng = 1;
    uint32_t sent = 0;
    for (;;) { /* without waiting, so nobody reaps before the ring is full */
        payload_fill(msg, sizeof msg, 1, sent, &rng);
        if (dmaq_pub_send(pub, msg, sizeof msg, 0) < 0)
            break;
        sent++;
    }
    cr_assert_gt(sent, 200, "the ring took %u messages", sent);
    for (uint32_t i = 0; i < sent; i++) {
        cr_assert_eq(dmaq_sub_peek(sub, &r, 10LL * 1000000000), 0, "message %u of %u: %s", i, sent,
                     dmaq_last_error());
        uint32_t key, index;
        cr_expect(r.len == AFTER_LEN && payload_intact(r.data, r.len, &key, &index) && index == i,
                  "message %u of %u (%zu bytes) is damaged", i, sent, r.len);
        cr_expect_eq(r.seq, dead_seq + 1 + i, "message %u: the aborted claim kept its sequence number", i);
        cr_assert_eq(dmaq_sub_release(sub, &r), 0);
    }
    cr_expect_eq(dmaq_pub_send(pub, msg, sizeof msg, 0), 0, "the reaper freed the dead claim's room: %s",
                 dmaq_last_error());
    dmaq_pub_close(pub);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
}

/* ---- packed records: small messages of one send_many on a broadcast
 * channel share records (core/shm/layout.h) ---- */

#define PACKED_N 120
static const size_t packed_sizes[] = {0, 16, 17, 31, 64, 100, 1000, 3000, 5000, 64, 16};
#define PACKED_SIZES (sizeof packed_sizes / sizeof packed_sizes[0])

/* Message i of a packed test batch: its length, and (from 16 bytes on) a
 * sealed payload naming i. */
static size_t packed_len(uint32_t i) { return packed_sizes[i % PACKED_SIZES]; }

static void packed_check(uint32_t i, const void *data, size_t len)
{
    cr_assert_eq(len, packed_len(i), "message %u: %zu bytes, sent %zu", i, len, packed_len(i));
    uint32_t key, index;
    if (len >= PAYLOAD_HEAD) {
        cr_assert(payload_intact(data, len, &key, &index), "message %u is corrupt", i);
        cr_assert_eq(index, i, "got message %u, expected %u", index, i);
    }
}

static void packed_check_lease(uint32_t i, const dmaq_lease *l, uint32_t pub_id)
{
    packed_check(i, l->data, l->len);
    cr_assert_eq(l->seq, i, "message %u numbered %llu", i, (unsigned long long)l->seq);
    cr_assert_eq(l->publisher_id, pub_id);
    cr_assert_gt(l->timestamp_ns, 0);
    cr_assert_eq((uintptr_t)l->data % 16, 0, "payloads stay 16-byte aligned");
}

/* Every way of reading takes packed messages, starting and stopping inside
 * packed records: peek, recv, peek_many and recv_many of 1..7, in turn. */
Test(batch, packed_messages_read_every_way)
{
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 1 << 20, 8192);
    struct pair c = pair_open("packed-ways", &o);
    static unsigned char data[PACKED_N * 5000];
    size_t lens[PACKED_N], used = 0, sent;
    uint64_t rng = 11;
    for (uint32_t i = 0; i < PACKED_N; i++) {
        lens[i] = packed_len(i);
        if (lens[i] >= PAYLOAD_HEAD)
            payload_fill(data + used, lens[i], 1, i, &rng);
        used += lens[i];
    }
    cr_assert_eq(dmaq_pub_send_many(c.pub, data, lens, PACKED_N, &sent, 0), 0, "%s", dmaq_last_error());
    cr_assert_eq(sent, PACKED_N);
    uint32_t pub_id = dmaq_pub_id(c.pub), next = 0;
    static unsigned char buf[8 * 8192];
    static dmaq_lease leases[8];
    size_t got[8], count;
    for (unsigned step = 0; next < PACKED_N; step++) {
        size_t most = 1 + step % 7;
        switch (step % 4) {
        case 0:
            cr_assert_eq(dmaq_sub_peek(c.sub, &leases[0], 0), 0, "%s", dmaq_last_error());
            packed_check_lease(next++, &leases[0], pub_id);
            cr_assert_eq(dmaq_sub_release(c.sub, &leases[0]), 0, "%s", dmaq_last_error());
            break;
        case 1:
            cr_assert_eq(dmaq_sub_recv(c.sub, buf, sizeof buf, &got[0], 0), 0, "%s", dmaq_last_error());
            packed_check(next++, buf, got[0]);
            break;
        case 2:
            cr_assert_eq(dmaq_sub_peek_many(c.sub, leases, most, &count, 0), 0, "%s", dmaq_last_error());
            cr_assert(count >= 1 && count <= most);
            for (size_t k = 0; k < count; k++)
                packed_check_lease(next++, &leases[k], pub_id);
            cr_assert_eq(dmaq_sub_release_many(c.sub, leases, count), 0, "%s", dmaq_last_error());
            break;
        default: {
            cr_assert_eq(dmaq_sub_recv_many(c.sub, buf, sizeof buf, got, most, &count, 0), 0, "%s", dmaq_last_error());
            size_t off = 0;
            for (size_t k = 0; k < count; k++) {
                packed_check(next++, buf + off, got[k]);
                off += got[k];
            }
        }
        }
    }
    cr_expect_eq(dmaq_sub_peek(c.sub, &leases[0], 0), DMAQ_EAGAIN, "nothing more");
    dmaq_stat st = {.size = sizeof st};
    cr_assert_geq(dmaq_channel_stat(c.uri, &st, NULL, 0), 0);
    cr_expect_eq(st.published, PACKED_N, "each packed message counts as published");
    pair_close(&c);
}

/* A small buffer refuses a packed message without moving past it. */
Test(batch, a_packed_message_too_long_for_the_buffer_stays)
{
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 1 << 16, 1024);
    struct pair c = pair_open("packed-small-buf", &o);
    unsigned char data[3 * 100] = {1, 2, 3};
    size_t lens[3] = {10, 100, 10}, sent, len;
    cr_assert_eq(dmaq_pub_send_many(c.pub, data, lens, 3, &sent, 0), 0);
    unsigned char buf[50];
    cr_assert_eq(dmaq_sub_recv(c.sub, buf, sizeof buf, &len, 0), 0);
    cr_expect_eq(len, 10);
    cr_expect_eq(dmaq_sub_recv(c.sub, buf, sizeof buf, &len, 0), DMAQ_EMSGSIZE);
    cr_expect_eq(len, 100, "the size it needs");
    dmaq_lease l;
    cr_assert_eq(dmaq_sub_peek(c.sub, &l, 0), 0);
    cr_expect_eq(l.len, 100, "still there");
    cr_expect_eq(l.seq, 1);
    cr_assert_eq(dmaq_sub_release(c.sub, &l), 0);
    cr_assert_eq(dmaq_sub_recv(c.sub, buf, sizeof buf, &len, 0), 0);
    cr_expect_eq(len, 10);
    pair_close(&c);
}

/* Under the overwrite policy, a subscriber lapped while it is inside a
 * packed record learns exactly how many it lost. */
Test(batch, lapped_inside_a_packed_record)
{
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_OVERWRITE, 4096, 0);
    struct pair c = pair_open("packed-lapped", &o);
    static unsigned char data[300 * 64];
    size_t lens[300], sent, got[256], count, len;
    for (int i = 0; i < 300; i++)
        lens[i] = 64;
    cr_assert_eq(dmaq_pub_send_many(c.pub, data, lens, 10, &sent, 0), 0);
    unsigned char buf[16384];
    dmaq_lease l;
    cr_assert_eq(dmaq_sub_peek(c.sub, &l, 0), 0);
    cr_assert_eq(dmaq_sub_release(c.sub, &l), 0);
    cr_assert_eq(dmaq_sub_recv(c.sub, buf, sizeof buf, &len, 0), 0);
    uint64_t received = 2, lost = 0;
    cr_assert_eq(dmaq_pub_send_many(c.pub, data, lens, 300, &sent, 0), 0, "laps the ring");
    int rc;
    while ((rc = dmaq_sub_recv_many(c.sub, buf, sizeof buf, got, 256, &count, 0)) != DMAQ_EAGAIN) {
        if (rc == DMAQ_ELOST) {
            lost += got[0];
            continue;
        }
        cr_assert_eq(rc, 0, "%s", dmaq_last_error());
        received += count;
    }
    cr_expect_gt(lost, 0);
    cr_expect_eq(lost + received, 310, "lost %llu + received %llu account for every message", (unsigned long long)lost,
                 (unsigned long long)received);
    pair_close(&c);
}

/* A packed record whose entries were scribbled over is reported as
 * corrupt at the bad entry; the messages before it arrive. */
static void scribbled_pack(int how, bool many)
{
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 1 << 16, 1024);
    struct pair c = pair_open("packed-scribbled", &o);
    unsigned char data[10 * 32] = {0};
    size_t lens[10], sent;
    for (int i = 0; i < 10; i++)
        lens[i] = 32;
    cr_assert_eq(dmaq_pub_send_many(c.pub, data, lens, 10, &sent, 0), 0);
    char path[256];
    int fd = open(shm_file(c.uri, path, sizeof path), O_RDWR);
    cr_assert_geq(fd, 0);
    unsigned char *map = mmap(NULL, SHM_RING_OFFSET + 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(map, MAP_FAILED);
    struct shm_record *r = (struct shm_record *)(map + SHM_RING_OFFSET); /* the first record */
    cr_assert(r->flags & REC_PACKED, "ten small messages were packed");
    cr_assert_eq(r->count, 10);
    uint64_t off = SHM_PACK_FIRST;
    for (int i = 0; i < 3; i++)
        off = shm_pack_next(off, 32);
    struct shm_entry *e = (struct shm_entry *)((unsigned char *)r + off); /* the fourth */
    int good = 3;
    const char *says = "out of place";
    switch (how) {
    case 0:
        e->index = 7;
        break;
    case 1:
        e->len = 1u << 30;
        break;
    case 2:
        r->len = (uint32_t)(off - DMAQ_RECORD_HEADER); /* ends before the fourth, but counts ten */
        says = "past its end";
        break;
    default:
        r->count = 1;
        good = 0;
        says = "fewer packed messages";
    }
    munmap(map, SHM_RING_OFFSET + 4096);
    close(fd);
    dmaq_lease l, batch[16];
    size_t n;
    if (many && good) { /* the batch stops before the bad entry; the next call reports it */
        cr_assert_eq(dmaq_sub_peek_many(c.sub, batch, 16, &n, 0), 0, "%s", dmaq_last_error());
        cr_assert_eq(n, (size_t)good);
        for (int i = 0; i < good; i++)
            cr_assert_eq(batch[i].seq, batch[0].seq + (uint64_t)i);
        cr_assert_eq(dmaq_sub_release_many(c.sub, batch, n), 0);
    }
    for (int i = 0; i < good && !many; i++) {
        cr_assert_eq(dmaq_sub_peek(c.sub, &l, 0), 0, "message %d: %s", i, dmaq_last_error());
        cr_assert_eq(dmaq_sub_release(c.sub, &l), 0);
    }
    if (many)
        expect_error(dmaq_sub_peek_many(c.sub, batch, 16, &n, 0), DMAQ_ECORRUPT, says);
    else
        expect_error(dmaq_sub_peek(c.sub, &l, 0), DMAQ_ECORRUPT, says);
    pair_close(&c);
}

Test(batch, a_scribbled_packed_index_is_corrupt) { scribbled_pack(0, false); }
Test(batch, a_scribbled_packed_length_is_corrupt) { scribbled_pack(1, false); }
Test(batch, a_packed_record_shorter_than_its_count_is_corrupt) { scribbled_pack(2, false); }
Test(batch, a_packed_record_of_one_is_corrupt) { scribbled_pack(3, false); }
Test(batch, a_scribbled_packed_index_ends_a_batch) { scribbled_pack(0, true); }
Test(batch, a_scribbled_packed_length_ends_a_batch) { scribbled_pack(1, true); }
Test(batch, a_packed_record_shorter_than_its_count_ends_a_batch) { scribbled_pack(2, true); }
Test(batch, a_packed_record_of_one_is_corrupt_to_a_batch) { scribbled_pack(3, true); }
