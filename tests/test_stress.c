/*
 * Every channel kind with 1x1, 1x4, 4x1 and 4x4 publishers x subscribers in
 * separate processes: 1,000,000 messages of random sizes (0 to the maximum)
 * per topology, checksummed. Proves no loss, no duplication, per-publisher
 * order and intact payloads; under overwrite, received + lost == published.
 * Built a second time as test_stress_tcp: the same matrix over
 * tcp://127.0.0.1, with this process binding the channel and a quarter of
 * the messages, plus this process's binding handle publishing paced bursts
 * to two subscribers of each kind, forwarded by its own thread and by
 * forwarder threads alone.
 */
#include <criterion/criterion.h>

#include "harness.h"
#include "payload.h"

#define PEER DMAQ_TEST_PEER
#define MAX_SUBS 4

struct summary {
    unsigned long long received, lost, bad, order;
};

static struct summary read_summary(const char *path)
{
    struct summary s = {0};
    FILE *f = fopen(path, "r");
    cr_assert(f, "subscriber wrote no summary at %s", path);
    cr_assert_eq(fscanf(f, "received=%llu lost=%llu bad=%llu order=%llu", &s.received, &s.lost, &s.bad, &s.order),
                 4, "malformed summary in %s", path);
    fclose(f);
    return s;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Queue: no identity may have been delivered twice, across subscribers. */
static void check_no_duplicates(char outs[][256], int subs)
{
    size_t n = 0, cap = 1 << 20;
    uint64_t *all = malloc(cap * sizeof *all);
    for (int i = 0; i < subs; i++) {
        char path[300];
        snprintf(path, sizeof path, "%.250s.keys", outs[i]);
        FILE *f = fopen(path, "rb");
        cr_assert(f, "no keys file %s", path);
        uint64_t k;
        while (fread(&k, 8, 1, f) == 1) {
            if (n == cap)
                all = realloc(all, (cap *= 2) * sizeof *all);
            all[n++] = k;
        }
        fclose(f);
        unlink(path);
    }
    qsort(all, n, sizeof *all, cmp_u64);
    size_t dups = 0;
    for (size_t i = 1; i < n; i++)
        dups += all[i] == all[i - 1];
    free(all);
    cr_expect_eq(dups, 0, "%zu messages were delivered more than once", dups);
}

#if defined(DMAQ_TEST_RDMA) || defined(DMAQ_TEST_TCP)
/* The same matrix over the network: this process binds (hosts) the channel,
 * every peer process connects. rdma:// runs on the Soft-RoCE device of the
 * VM that tests/rdma-vm.sh boots. */
#define CREATOR_FLAGS DMAQ_OPEN_BIND
#ifdef DMAQ_TEST_RDMA
#define NET_SCHEME "rdma"
#define NET_HOST rdma_test_host()
#define MESSAGES (test_messages() / 100) /* an emulated NIC in an emulated machine */
#else
#define NET_SCHEME "tcp"
#define NET_HOST "127.0.0.1"
#define MESSAGES (test_messages() / 4) /* loopback TCP is a few times slower: the suite's time stays in bounds */
#endif
static void channel_uri(char *buf, size_t cap)
{
    static unsigned counter;
    snprintf(buf, cap, NET_SCHEME "://%s:%d/stress-%u", NET_HOST, free_tcp_port(), counter++);
}
#else
#define CREATOR_FLAGS 0
#define MESSAGES test_messages()
static void channel_uri(char *buf, size_t cap) { unique_uri(buf, cap, "stress"); }
#endif

#if defined(DMAQ_TEST_RDMA) || defined(DMAQ_TEST_TCP)
/* The binding process publishing itself, as publisher index 0 of the peers'
 * format, in bursts of 1 to 32 messages with pauses of up to 300 us: the
 * host's forwarders go idle in the pauses, so this thread forwards the
 * burst's first messages itself (tcp_host_published) until a forwarder is
 * back at work. */
static void publish_paced(dmaq_pub *pub, long count, size_t max)
{
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    unsigned char *buf = malloc(max);
    long burst = 0;
    for (long i = 0; i < count; i++) {
        if (burst-- == 0) {
            usleep((useconds_t)(rng_next(&rng) % 300));
            burst = (long)(rng_next(&rng) % 32);
        }
        size_t len = PAYLOAD_HEAD + (size_t)(rng_next(&rng) % (rng_next(&rng) % 8 ? 64 : max - PAYLOAD_HEAD + 1));
        int rc;
        if (i & 1) {
            dmaq_lease lease;
            if ((rc = dmaq_pub_reserve(pub, len, &lease, -1)) == 0) {
                payload_fill(lease.data, len, 0, (uint32_t)i, &rng);
                rc = dmaq_pub_commit(pub, &lease, len);
            }
        } else {
            payload_fill(buf, len, 0, (uint32_t)i, &rng);
            rc = dmaq_pub_send(pub, buf, len, -1);
        }
        cr_assert_eq(rc, 0, "message %ld: %s", i, dmaq_last_error());
    }
    free(buf);
}
#endif

/* pubs publishers in peer processes, or (pubs == 0) this process's binding
 * handle publishing paced; subs subscribers in peer processes. */
static void run(uint32_t kind, uint32_t policy, int pubs, int subs)
{
    char uri[128];
    channel_uri(uri, sizeof uri);
    long per_pub = pubs ? MESSAGES / pubs : MESSAGES / 4;
    long total = pubs ? per_pub * pubs : per_pub;

    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.kind = kind;
    o.policy = policy;
    o.capacity = policy == DMAQ_POLICY_OVERWRITE ? 1 << 20 : 1 << 16;
    o.max_message = policy == DMAQ_POLICY_OVERWRITE ? 16384 : 4096;
    o.flags = CREATOR_FLAGS;
    dmaq_pub *creator;
    cr_assert_eq(dmaq_pub_open(uri, &o, &creator), 0, "%s", dmaq_last_error());

    pid_t pids[4 + MAX_SUBS];
    char outs[MAX_SUBS][256];
    char expect[32];
    snprintf(expect, sizeof expect, "%ld", total);
    for (int i = 0; i < subs; i++) {
        snprintf(outs[i], sizeof outs[i], "/tmp/dmaq-stress-%d-%d.out", (int)getpid(), i);
        unlink(outs[i]);
        char *argv[] = {PEER, "sub", uri, expect, outs[i], NULL};
        pids[i] = spawn(argv);
        cr_assert_gt(pids[i], 0);
    }
    cr_assert(wait_subscribers(uri, (unsigned)subs, 30), "subscribers did not attach");
    char count[32];
    snprintf(count, sizeof count, "%ld", per_pub);
    for (int i = 0; i < pubs; i++) {
        char index[16];
        snprintf(index, sizeof index, "%d", i);
        char *argv[] = {PEER, "pub", uri, count, index, NULL};
        pids[subs + i] = spawn(argv);
        cr_assert_gt(pids[subs + i], 0);
    }
#if defined(DMAQ_TEST_RDMA) || defined(DMAQ_TEST_TCP)
    if (!pubs)
        publish_paced(creator, total, o.max_message);
#endif
    if (kind == DMAQ_KIND_QUEUE) {
        /* Once the publishers are done, one STOP per subscriber. */
        cr_assert(wait_all(pids + subs, pubs, 300), "a publisher failed or hung");
        for (int i = 0; i < subs; i++)
            cr_assert_eq(dmaq_pub_send(creator, "DMAQSTOP", 8, 10LL * 1000000000), 0, "%s", dmaq_last_error());
        cr_assert(wait_all(pids, subs, 120), "a subscriber failed or hung");
    } else {
        cr_assert(wait_all(pids, subs + pubs, 300), "a peer failed or hung");
    }

    unsigned long long received = 0;
    for (int i = 0; i < subs; i++) {
        struct summary s = read_summary(outs[i]);
        cr_expect_eq(s.bad, 0, "subscriber %d got %llu corrupt payloads", i, s.bad);
        cr_expect_eq(s.order, 0, "subscriber %d saw %llu messages out of order", i, s.order);
        if (kind == DMAQ_KIND_BROADCAST && policy == DMAQ_POLICY_BLOCK) {
            cr_expect_eq(s.received, (unsigned long long)total, "subscriber %d got %llu of %ld", i, s.received,
                         total);
            cr_expect_eq(s.lost, 0);
        }
        if (policy == DMAQ_POLICY_OVERWRITE)
            cr_expect_eq(s.received + s.lost, (unsigned long long)total,
                         "subscriber %d: received %llu + lost %llu != published %ld", i, s.received, s.lost,
                         total);
        received += s.received;
        if (kind != DMAQ_KIND_QUEUE)
            unlink(outs[i]);
    }
    if (kind == DMAQ_KIND_QUEUE) {
        cr_expect_eq(received, (unsigned long long)total, "queue delivered %llu of %ld messages", received,
                     total);
        check_no_duplicates(outs, subs);
        for (int i = 0; i < subs; i++)
            unlink(outs[i]);
    }
    dmaq_stat st = {.size = sizeof st};
    cr_expect_geq(dmaq_channel_stat(uri, &st, NULL, 0), 0);
    cr_expect_eq(st.published, (uint64_t)total + (kind == DMAQ_KIND_QUEUE ? (uint64_t)subs : 0),
                 "stat says %llu published", (unsigned long long)st.published);
    dmaq_pub_close(creator);
    dmaq_channel_unlink(uri);
}

#define TOPOLOGIES(name, kind, policy)                                           \
    Test(name, p1x1, .timeout = 600) { run(kind, policy, 1, 1); }                \
    Test(name, p1x4, .timeout = 600) { run(kind, policy, 1, 4); }                \
    Test(name, p4x1, .timeout = 600) { run(kind, policy, 4, 1); }                \
    Test(name, p4x4, .timeout = 600) { run(kind, policy, 4, 4); }

TOPOLOGIES(queue, DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK)
TOPOLOGIES(broadcast_block, DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK)
TOPOLOGIES(broadcast_overwrite, DMAQ_KIND_BROADCAST, DMAQ_POLICY_OVERWRITE)

#if defined(DMAQ_TEST_RDMA) || defined(DMAQ_TEST_TCP)
/* The binding handle's messages to two subscribers (processes) of each
 * kind, forwarded both ways: by the publisher's thread when forwarders are
 * idle (the default over rdma://), and by forwarder threads alone (tcp://). */
/* Paced, with the forwarding that DMAQ_FORWARD_HERE chooses: "1", the
 * publisher's thread forwards for an idle forwarder; "0", forwarder threads
 * only (core/tcp/host.c). */
static void run_paced(uint32_t kind, uint32_t policy, const char *forward_here)
{
    setenv("DMAQ_FORWARD_HERE", forward_here, 1); /* read when the channel is hosted */
    run(kind, policy, 0, 2);
}

#define PACED(name, kind, policy)                                                                                   \
    Test(name, binding_publisher_forwards_paced_1x2, .timeout = 600) { run_paced(kind, policy, "1"); }           \
    Test(name, forwarder_threads_forward_paced_1x2, .timeout = 600) { run_paced(kind, policy, "0"); }
PACED(queue, DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK)
PACED(broadcast_block, DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK)
PACED(broadcast_overwrite, DMAQ_KIND_BROADCAST, DMAQ_POLICY_OVERWRITE)
#endif
