/* dmaq_pub_send_many and dmaq_sub_recv_many: batches across processes lose,
 * reorder and corrupt nothing, and every edge (too big, timeouts, lapped
 * subscribers, bad arguments) ends as documented. */
#include <criterion/criterion.h>

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

/* The child publishes MESSAGES checksummed messages of 16..400 bytes in
 * batches of 1..BATCH_MAX; the parent takes them in batches and checks each. */
static void batches_across_processes(uint32_t kind)
{
    char uri[96];
    unique_uri(uri, sizeof uri, "batch");
    dmaq_options o = opts(kind, DMAQ_POLICY_BLOCK, 1 << 16, 1024);
    dmaq_sub *sub;
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0, "%s", dmaq_last_error());
    pid_t child = fork();
    if (child == 0) {
        dmaq_pub *pub;
        if (dmaq_pub_open(uri, &o, &pub) < 0)
            _exit(2);
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

Test(batch, a_message_that_does_not_fit)
{
    char uri[96];
    unique_uri(uri, sizeof uri, "batch-fit");
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 1 << 16, 1024);
    dmaq_sub *sub;
    dmaq_pub *pub;
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0);
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0);
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
    dmaq_pub_close(pub);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
}

Test(batch, send_many_times_out_on_a_full_ring)
{
    char uri[96];
    unique_uri(uri, sizeof uri, "batch-full");
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 4096, 0);
    dmaq_sub *sub;
    dmaq_pub *pub;
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0);
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0);
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
    dmaq_pub_close(pub);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
}

Test(batch, a_lapped_subscriber_learns_how_many_it_lost)
{
    char uri[96];
    unique_uri(uri, sizeof uri, "batch-lost");
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_OVERWRITE, 4096, 0);
    dmaq_sub *sub;
    dmaq_pub *pub;
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0);
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0);
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
    dmaq_pub_close(pub);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
}

Test(batch, bad_arguments)
{
    char uri[96];
    unique_uri(uri, sizeof uri, "batch-args");
    dmaq_sub *sub;
    dmaq_pub *pub;
    cr_assert_eq(dmaq_sub_open(uri, NULL, &sub), 0);
    cr_assert_eq(dmaq_pub_open(uri, NULL, &pub), 0);
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
    dmaq_pub_close(pub);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
}
