/*
 * Every channel kind with 1x1, 1x4, 4x1 and 4x4 publishers x subscribers in
 * separate processes: 1,000,000 messages of random sizes (0 to the maximum)
 * per topology, checksummed. Proves no loss, no duplication, per-publisher
 * order and intact payloads; under overwrite, received + lost == published.
 * Built a second time as test_stress_tcp: the same matrix over
 * tcp://127.0.0.1, with this process binding the channel and a quarter of
 * the messages.
 */
#include <criterion/criterion.h>

#include "harness.h"

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

static void run(uint32_t kind, uint32_t policy, int pubs, int subs)
{
    char uri[128];
    channel_uri(uri, sizeof uri);
    long total = MESSAGES;
    long per_pub = total / pubs;
    total = per_pub * pubs;

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
