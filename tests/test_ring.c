/*
 * One process, one publisher, one subscriber: record placement at every
 * ring offset (records that would straddle a segment end are padded), zero
 * and maximum lengths, both the zero-copy and the copying paths, for every
 * kind. Cross-process behaviour is in test_stress.c and test_wait.c.
 */
#include <criterion/criterion.h>

#include "harness.h"

#define CAPACITY 4096u
#define MAX_MSG (CAPACITY / 2 - DMAQ_RECORD_HEADER)

static void fill(unsigned char *p, size_t len, uint64_t n)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(n * 131 + i * 7);
}

static bool same(const unsigned char *p, size_t len, uint64_t n)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (unsigned char)(n * 131 + i * 7))
            return false;
    return true;
}

static void open_pair(uint32_t kind, uint32_t policy, dmaq_pub **pub, dmaq_sub **sub, char *uri, size_t cap)
{
    unique_uri(uri, cap, "ring");
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.kind = kind;
    o.policy = policy;
    o.capacity = CAPACITY;
    o.max_message = MAX_MSG;
    cr_assert_eq(dmaq_pub_open(uri, &o, pub), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_sub_open(uri, &o, sub), 0, "%s", dmaq_last_error());
}

static void wraparound(uint32_t kind, uint32_t policy)
{
    char uri[128];
    dmaq_pub *pub;
    dmaq_sub *sub;
    open_pair(kind, policy, &pub, &sub, uri, sizeof uri);
    /* Which offsets of the ring a record started at, learnt from the
     * payload address (the ring is page-aligned in a page-aligned map). */
    bool seen[CAPACITY / DMAQ_RECORD_ALIGN] = {false};
    unsigned char buf[MAX_MSG];
    uint64_t rng = 7;
    for (uint64_t n = 0; n < 100000; n++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t len = (rng >> 33) % (n & 4 ? 64 : 600);
        if (n % 97 == 0)
            len = MAX_MSG;
        if (n % 89 == 0)
            len = 0;
        dmaq_lease w;
        if (n & 1) {
            cr_assert_eq(dmaq_pub_reserve(pub, len, &w, 0), 0, "message %llu: %s", (unsigned long long)n,
                         dmaq_last_error());
            cr_assert_eq(w.len, len);
            fill(w.data, len, n);
            cr_assert_eq(dmaq_pub_commit(pub, &w, len), 0);
        } else {
            fill(buf, len, n);
            cr_assert_eq(dmaq_pub_send(pub, buf, len, 0), 0, "message %llu: %s", (unsigned long long)n,
                         dmaq_last_error());
        }
        if (n % 4) {
            dmaq_lease r;
            cr_assert_eq(dmaq_sub_peek(sub, &r, 0), 0, "message %llu: %s", (unsigned long long)n,
                         dmaq_last_error());
            cr_assert_eq(r.len, len);
            cr_assert(same(r.data, len, n), "payload %llu damaged", (unsigned long long)n);
            cr_assert_eq(r.seq, n, "message %llu has sequence %llu", (unsigned long long)n,
                         (unsigned long long)r.seq);
            cr_assert_eq(r.publisher_id, dmaq_pub_id(pub));
            cr_assert_neq(r.timestamp_ns, 0);
            seen[(((uintptr_t)r.data - DMAQ_RECORD_HEADER) & (CAPACITY - 1)) / DMAQ_RECORD_ALIGN] = true;
            cr_assert_eq(dmaq_sub_release(sub, &r), 0);
        } else {
            size_t got = 12345;
            cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &got, 0), 0, "message %llu: %s",
                         (unsigned long long)n, dmaq_last_error());
            cr_assert_eq(got, len);
            cr_assert(same(buf, len, n), "payload %llu damaged", (unsigned long long)n);
        }
        size_t nothing;
        cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &nothing, 0), DMAQ_EAGAIN, "a message appeared twice");
    }
    /* Records start at every multiple of DMAQ_RECORD_ALIGN: a record that
     * does not fit before a segment end leaves padding there, at least one
     * alignment unit, which is a record too. */
    for (unsigned i = 0; i < CAPACITY / DMAQ_RECORD_ALIGN; i++)
        cr_expect(seen[i], "no record ever started at offset %u", i * DMAQ_RECORD_ALIGN);
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

Test(wraparound, queue) { wraparound(DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK); }
Test(wraparound, broadcast_block) { wraparound(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK); }
Test(wraparound, broadcast_overwrite) { wraparound(DMAQ_KIND_BROADCAST, DMAQ_POLICY_OVERWRITE); }

Test(ring, full_ring_blocks_and_aborts_are_invisible)
{
    char uri[128];
    dmaq_pub *pub;
    dmaq_sub *sub;
    open_pair(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, &pub, &sub, uri, sizeof uri);
    unsigned char buf[MAX_MSG] = {0};
    int sent = 0;
    while (dmaq_pub_send(pub, buf, 100, 0) == 0)
        sent++;
    cr_assert_eq(dmaq_pub_send(pub, buf, 100, 0), DMAQ_EAGAIN);
    cr_assert_eq(dmaq_pub_send(pub, buf, 100, 1000000), DMAQ_ETIMEDOUT);
    /* Two segments of whole records (a record that does not fit a
     * segment's end leaves padding there). */
    const int record = (DMAQ_RECORD_HEADER + 100 + DMAQ_RECORD_ALIGN - 1) / DMAQ_RECORD_ALIGN * DMAQ_RECORD_ALIGN;
    cr_assert_eq(sent, (int)(CAPACITY / 2 / record) * 2);
    size_t len;
    cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), 0);
    dmaq_lease w;
    cr_assert_eq(dmaq_pub_reserve(pub, 50, &w, 0), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_pub_abort(pub, &w), 0);
    for (int i = 1; i < sent; i++)
        cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), 0);
    cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), DMAQ_EAGAIN, "the aborted message was delivered");
    dmaq_stat st = {.size = sizeof st};
    cr_assert_eq(dmaq_channel_stat(uri, &st, NULL, 0), 1);
    cr_assert_eq(st.published, (uint64_t)sent);
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

Test(ring, overwrite_reports_exact_losses_and_overwritten_leases)
{
    char uri[128];
    dmaq_pub *pub;
    dmaq_sub *sub;
    open_pair(DMAQ_KIND_BROADCAST, DMAQ_POLICY_OVERWRITE, &pub, &sub, uri, sizeof uri);
    unsigned char buf[64] = {0};
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(dmaq_pub_send(pub, buf, 64, 0), 0, "the overwrite policy never waits");
    dmaq_lease r;
    cr_assert_eq(dmaq_sub_peek(sub, &r, 0), DMAQ_ELOST);
    cr_assert_eq(r.lost, 1000, "lost %llu", (unsigned long long)r.lost);
    cr_assert_eq(dmaq_sub_peek(sub, &r, 0), DMAQ_EAGAIN, "resumes at the newest");
    /* A lease held while the ring laps it is reported at release. */
    cr_assert_eq(dmaq_pub_send(pub, "x", 1, 0), 0);
    cr_assert_eq(dmaq_sub_peek(sub, &r, 0), 0);
    for (int i = 0; i < 100; i++)
        dmaq_pub_send(pub, buf, 64, 0);
    cr_assert_eq(dmaq_sub_release(sub, &r), DMAQ_EOVERWRITTEN);
    size_t len;
    cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), DMAQ_ELOST);
    cr_assert_eq(len, 100, "lost %zu", len);
    dmaq_sub_stat ss;
    dmaq_stat st = {.size = sizeof st};
    cr_assert_eq(dmaq_channel_stat(uri, &st, &ss, 1), 1);
    cr_assert_eq(ss.lost, 1101);
    cr_assert_eq(ss.received, 0);
    cr_assert_eq(st.published, 1101);
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

Test(ring, broadcast_late_subscriber_oldest_and_newest)
{
    char uri[128];
    dmaq_pub *pub;
    dmaq_sub *first;
    open_pair(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, &pub, &first, uri, sizeof uri);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(dmaq_pub_send(pub, &i, sizeof i, 0), 0);
    dmaq_options o = DMAQ_OPTIONS_INIT;
    dmaq_sub *newest, *oldest;
    cr_assert_eq(dmaq_sub_open(uri, &o, &newest), 0);
    o.start = DMAQ_START_OLDEST;
    cr_assert_eq(dmaq_sub_open(uri, &o, &oldest), 0);
    int v = 99;
    size_t len;
    cr_assert_eq(dmaq_pub_send(pub, &v, sizeof v, 0), 0);
    cr_assert_eq(dmaq_sub_recv(newest, &v, sizeof v, &len, 0), 0);
    cr_assert_eq(v, 99, "a newest-start subscriber sees only what follows its join");
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(dmaq_sub_recv(oldest, &v, sizeof v, &len, 0), 0);
        cr_assert_eq(v, i, "an oldest-start subscriber sees the retained history");
    }
    cr_assert_eq(dmaq_sub_recv(oldest, &v, sizeof v, &len, 0), 0);
    cr_assert_eq(v, 99);
    dmaq_sub_close(oldest);
    dmaq_sub_close(newest);
    dmaq_sub_close(first);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

/* After many laps, an oldest-start subscriber gets the retained history
 * back to within one segment (a sixteenth of this ring) of a whole ring:
 * consecutive messages ending at the newest. (With the ring cut in halves,
 * as before, it lost up to half.) */
Test(ring, broadcast_oldest_start_after_laps)
{
    char uri[128];
    unique_uri(uri, sizeof uri, "oldest");
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.policy = DMAQ_POLICY_OVERWRITE;
    o.capacity = 1 << 16;
    o.max_message = 64;
    dmaq_pub *pub;
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0, "%s", dmaq_last_error());
    const uint32_t per_lap = (1 << 16) / (uint32_t)((DMAQ_RECORD_HEADER + sizeof(uint32_t) + DMAQ_RECORD_ALIGN - 1) &
                                                    ~(DMAQ_RECORD_ALIGN - 1));
    const uint32_t published = 10 * per_lap + 123;
    for (uint32_t i = 0; i < published; i++)
        cr_assert_eq(dmaq_pub_send(pub, &i, sizeof i, 0), 0);
    o.start = DMAQ_START_OLDEST;
    dmaq_sub *sub;
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0, "%s", dmaq_last_error());
    uint32_t v, first = 0, got = 0;
    size_t len;
    while (dmaq_sub_recv(sub, &v, sizeof v, &len, 0) == 0) {
        if (got == 0)
            first = v;
        cr_assert_eq(v, first + got, "message %u after %u in order", v, first + got - 1);
        got++;
    }
    cr_assert_eq(first + got, published, "the history ends at the newest message");
    /* a segment skipped, and the ends of segments too short for a record */
    cr_expect_geq(got, per_lap - per_lap / 8, "%u of the ring's %u messages retained", got, per_lap);
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

Test(ring, queue_delivers_each_message_once)
{
    char uri[128];
    dmaq_pub *pub;
    dmaq_sub *a;
    open_pair(DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK, &pub, &a, uri, sizeof uri);
    dmaq_sub *b;
    cr_assert_eq(dmaq_sub_open(uri, NULL, &b), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(dmaq_pub_send(pub, &i, sizeof i, 0), 0);
    int seen = 0, v;
    size_t len;
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(dmaq_sub_recv(i & 1 ? a : b, &v, sizeof v, &len, 0), 0);
        cr_assert_eq(v, i);
        seen++;
    }
    cr_assert_eq(dmaq_sub_recv(a, &v, sizeof v, &len, 0), DMAQ_EAGAIN);
    cr_assert_eq(dmaq_sub_recv(b, &v, sizeof v, &len, 0), DMAQ_EAGAIN);
    dmaq_sub_close(a);
    dmaq_sub_close(b);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The publish timestamp is interpolated between real reads of the clock
 * (core/util/stamp.h): over 30 ms of publishing, through the rate's
 * calibration and hundreds of re-anchorings, every stamp stays within 20 us
 * of CLOCK_REALTIME read around the commit. */
Test(timestamp, tracks_realtime)
{
    char uri[128];
    dmaq_pub *pub;
    dmaq_sub *sub;
    open_pair(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, &pub, &sub, uri, sizeof uri);
    const uint64_t slack = 20000;
    uint64_t start = realtime_ns(), last = 0;
    for (uint64_t n = 0; realtime_ns() - start < 30000000; n++) {
        dmaq_lease w, r;
        uint64_t before = realtime_ns();
        cr_assert_eq(dmaq_pub_reserve(pub, 8, &w, 0), 0, "%s", dmaq_last_error());
        cr_assert_eq(dmaq_pub_commit(pub, &w, 8), 0, "%s", dmaq_last_error());
        uint64_t after = realtime_ns();
        cr_assert(w.timestamp_ns + slack >= before && w.timestamp_ns <= after + slack,
                  "message %llu stamped %lld ns from the clock read around its commit", (unsigned long long)n,
                  (long long)(w.timestamp_ns < before ? w.timestamp_ns - before : w.timestamp_ns - after));
        cr_assert_eq(dmaq_sub_peek(sub, &r, 0), 0, "%s", dmaq_last_error());
        cr_assert_eq(r.timestamp_ns, w.timestamp_ns);
        cr_assert_eq(dmaq_sub_release(sub, &r), 0);
        last = w.timestamp_ns;
    }
    cr_assert_gt(last, start);
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

/* A publisher opened with DMAQ_OPEN_NO_TIMESTAMPS stamps nothing on any
 * path (send, commit, packed and unpacked batches), while another
 * publisher on the same channel still stamps its own. */
Test(timestamp, publisher_without_timestamps)
{
    char uri[128];
    dmaq_pub *stamped, *plain;
    dmaq_sub *sub;
    open_pair(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, &stamped, &sub, uri, sizeof uri);
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_NO_TIMESTAMPS;
    cr_assert_eq(dmaq_pub_open(uri, &o, &plain), 0, "%s", dmaq_last_error());
    static unsigned char data[4 * 1024];
    const size_t lens[] = {8, 64, 0, 1024, 16};
    dmaq_lease w;
    size_t sent, expect = 0;
    for (int round = 0; round < 2; round++) {
        dmaq_pub *p = round ? stamped : plain;
        cr_assert_eq(dmaq_pub_send(p, data, 32, 0), 0, "%s", dmaq_last_error());
        cr_assert_eq(dmaq_pub_reserve(p, 32, &w, 0), 0, "%s", dmaq_last_error());
        cr_assert_eq(dmaq_pub_commit(p, &w, 32), 0, "%s", dmaq_last_error());
        cr_assert_eq(w.timestamp_ns == 0, p == plain, "commit's stamp %llu", (unsigned long long)w.timestamp_ns);
        cr_assert_eq(dmaq_pub_send_many(p, data, lens, 5, &sent, 0), 0, "%s", dmaq_last_error());
        cr_assert_eq(sent, 5);
        expect += 7;
    }
    uint32_t plain_id = dmaq_pub_id(plain), stamped_id = dmaq_pub_id(stamped);
    size_t seen = 0;
    dmaq_lease r;
    while (dmaq_sub_peek(sub, &r, 0) == 0) {
        cr_assert(r.publisher_id == plain_id || r.publisher_id == stamped_id);
        if (r.publisher_id == plain_id)
            cr_assert_eq(r.timestamp_ns, 0, "message %llu of the publisher without timestamps is stamped %llu",
                         (unsigned long long)r.seq, (unsigned long long)r.timestamp_ns);
        else
            cr_assert_gt(r.timestamp_ns, 0, "message %llu of the stamping publisher", (unsigned long long)r.seq);
        cr_assert_eq(dmaq_sub_release(sub, &r), 0);
        seen++;
    }
    cr_assert_eq(seen, expect);
    dmaq_sub_close(sub);
    dmaq_pub_close(plain);
    dmaq_pub_close(stamped);
    dmaq_channel_unlink(uri);
}
