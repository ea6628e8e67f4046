/*
 * dmaq-call-bench: what each hot call costs from C, in one process, for
 * 64-byte messages: the baseline bench/python_bench.py compares Python's
 * calls with, in the same run. Prints "name messages-per-second" lines;
 * "queue-send+recv" is send + recv pairs per second on a queue;
 * "queue-send+recv-no-timestamps" the same from a publisher opened with
 * DMAQ_OPEN_NO_TIMESTAMPS; "rdtsc" reads of the time-stamp counter per
 * second (x86-64), what the timestamp costs.
 *
 *   dmaq-call-bench [MESSAGES]
 *   dmaq-call-bench --stream MESSAGES   (a publisher process streaming to this
 *                                        one: a queue, then a broadcast channel,
 *                                        then a broadcast channel in batches of
 *                                        BATCH (send_many, peek_many); the two
 *                                        on CPUs 0 and 1)
 */
#define _GNU_SOURCE
#include "bench.h"

#include <dmaq/dmaq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUND 1000 /* messages per round: they fit the ring, so nothing waits */
#define SIZE 64
#define BATCH 64

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "dmaq-call-bench: %s: %s\n", what, dmaq_last_error());
        exit(1);
    }
}

/* Options for this bench's channels: a 1 MiB ring of `kind` (0: the
 * default, broadcast). */
static dmaq_options ring_options(uint32_t kind)
{
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.kind = kind;
    o.capacity = 1 << 20;
    return o;
}

/* Two processes: a child publishes n 64-byte messages on a channel of
 * `kind` as fast as it can, this process receives them; messages/s from
 * first to last. Batched: BATCH at a time, dmaq_pub_send_many and
 * dmaq_sub_peek_many, reading a word of each message. */
static void stream(long n, uint32_t kind, int batched)
{
    char uri[64];
    snprintf(uri, sizeof uri, "shm://call-bench-stream-%d", (int)getpid());
    dmaq_options o = ring_options(kind);
    dmaq_sub *sub;
    check(dmaq_sub_open(uri, &o, &sub), "open");
    pid_t child = fork();
    if (child == 0) {
        pin(0);
        dmaq_pub *pub;
        static unsigned char msg[BATCH * SIZE] = {1};
        size_t lens[BATCH];
        for (int k = 0; k < BATCH; k++)
            lens[k] = SIZE;
        check(dmaq_pub_open(uri, &o, &pub), "open");
        for (long i = 0; i < n; i += batched ? BATCH : 1)
            check(batched ? dmaq_pub_send_many(pub, msg, lens, BATCH, NULL, -1) : dmaq_pub_send(pub, msg, SIZE, -1),
                  "send");
        _exit(0);
    }
    /* The two processes on CPUs 0 and 1: left to the scheduler, they share
     * a CPU in some runs and not others, which moved the figure more than
     * any change measured with it. */
    pin(1);
    unsigned char buf[SIZE];
    volatile uint64_t sink = 0;
    long received = 0, first = 0;
    double t0 = 0;
    while (received < n) {
        size_t got = 1, len;
        if (batched) {
            static dmaq_lease leases[BATCH];
            check(dmaq_sub_peek_many(sub, leases, BATCH, &got, -1), "peek_many");
            for (size_t k = 0; k < got; k++)
                sink += *(const uint64_t *)leases[k].data;
            check(dmaq_sub_release_many(sub, leases, got), "release_many");
        } else {
            check(dmaq_sub_recv(sub, buf, sizeof buf, &len, -1), "recv");
        }
        received += (long)got;
        if (!t0) { /* from the first message (or batch) on */
            t0 = now_s();
            first = received;
        }
    }
    printf("%s %.0f\n",
           batched                   ? "broadcast-batch-stream"
           : kind == DMAQ_KIND_QUEUE ? "stream"
                                     : "broadcast-stream",
           (double)(received - first) / (now_s() - t0));
    waitpid(child, NULL, 0);
    unpin();
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
}

/* One thread sending and receiving in turn on a queue: pairs per second,
 * the shape of the .NET issue's Cloudtoid comparison. After three laps of
 * the ring, so that the first touch of its pages is not timed. */
static double queue_pairs(long n, uint32_t pub_flags)
{
    char uri[64];
    snprintf(uri, sizeof uri, "shm://call-bench-pairs-%d", (int)getpid());
    dmaq_options o = ring_options(DMAQ_KIND_QUEUE);
    dmaq_pub *pub;
    dmaq_sub *sub;
    check(dmaq_sub_open(uri, &o, &sub), "open");
    o.flags |= pub_flags;
    check(dmaq_pub_open(uri, &o, &pub), "open");
    unsigned char msg[SIZE] = {1}, buf[SIZE];
    size_t len;
    double t0 = 0;
    for (long i = -40000; i < n; i++) {
        if (i == 0)
            t0 = now_s();
        check(dmaq_pub_send(pub, msg, SIZE, 0), "send");
        check(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), "recv");
    }
    double rate = (double)n / (now_s() - t0);
    dmaq_pub_close(pub);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
    return rate;
}

#if defined(__x86_64__)
#include <x86intrin.h>

/* Reads of the CPU's time-stamp counter per second: what a publish
 * timestamp costs (core/util/stamp.h), the difference between the two
 * queue pairs above, which differs several-fold between hypervisors. */
static double tsc_reads(long n)
{
    volatile uint64_t sink = 0;
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        sink += __rdtsc();
    return (double)n / (now_s() - t0);
}
#endif

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--stream") == 0) {
        stream(atol(argv[2]), DMAQ_KIND_QUEUE, 0);
        stream(atol(argv[2]), DMAQ_KIND_BROADCAST, 0);
        stream(atol(argv[2]), DMAQ_KIND_BROADCAST, 1);
        return 0;
    }
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    char uri[64];
    snprintf(uri, sizeof uri, "shm://call-bench-%d", (int)getpid());
    dmaq_options o = ring_options(0);
    dmaq_pub *pub;
    dmaq_sub *sub;
    check(dmaq_pub_open(uri, &o, &pub), "open");
    check(dmaq_sub_open(uri, &o, &sub), "open");
    unsigned char msg[SIZE] = {1}, buf[SIZE];
    double t_send = 0, t_recv = 0, t_reserve = 0, t_peek = 0;
    volatile unsigned sink = 0;
    for (long done = 0; done < n; done += ROUND) {
        double t0 = now_s();
        for (int i = 0; i < ROUND; i++)
            check(dmaq_pub_send(pub, msg, SIZE, -1), "send");
        double t1 = now_s();
        for (int i = 0; i < ROUND; i++) {
            size_t len;
            check(dmaq_sub_recv(sub, buf, sizeof buf, &len, -1), "recv");
        }
        double t2 = now_s();
        for (int i = 0; i < ROUND; i++) {
            dmaq_lease w;
            check(dmaq_pub_reserve(pub, SIZE, &w, -1), "reserve");
            memcpy(w.data, msg, SIZE);
            check(dmaq_pub_commit(pub, &w, SIZE), "commit");
        }
        double t3 = now_s();
        for (int i = 0; i < ROUND; i++) {
            dmaq_lease r;
            check(dmaq_sub_peek(sub, &r, -1), "peek");
            sink += ((const unsigned char *)r.data)[0];
            check(dmaq_sub_release(sub, &r), "release");
        }
        double t4 = now_s();
        t_send += t1 - t0;
        t_recv += t2 - t1;
        t_reserve += t3 - t2;
        t_peek += t4 - t3;
    }
    printf("send %.0f\nrecv %.0f\nreserve+commit %.0f\npeek+release %.0f\n", n / t_send, n / t_recv, n / t_reserve,
           n / t_peek);
#if defined(__x86_64__)
    printf("rdtsc %.0f\n", tsc_reads(n));
#endif
    printf("queue-send+recv %.0f\n", queue_pairs(n, 0));
    printf("queue-send+recv-no-timestamps %.0f\n", queue_pairs(n, DMAQ_OPEN_NO_TIMESTAMPS));
    dmaq_pub_close(pub);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
    return 0;
}
