/*
 * dmaq-bench: dmaq against this machine's own floors, measured in one run so
 * every figure is a ratio that holds on a noisy machine.
 *
 *   floor    two processes pinned to different CPUs bounce a cache line
 *            (the least a head/tail handoff can cost one way);
 *   futex    the same ping-pong through FUTEX_WAIT/FUTEX_WAKE (the least a
 *            sleeping receiver can cost);
 *   bare     a textbook SPSC ring of fixed slots that publishes its head and
 *            reads its tail on every message (the streaming ceiling a plain
 *            ring reaches), copying in and out.
 *
 * Latency is one way = round trip / 2, per round trip, over two channels.
 * Throughput: the consumer times first to last message.
 *
 *   dmaq-bench [--quick]
 *
 * On a machine with fewer than three CPUs the 1x2 broadcast oversubscribes
 * them: its figure then measures scheduling more than dmaq.
 */
#define _GNU_SOURCE
#include <dmaq/dmaq.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

static int quick;
static double ns_per_tick;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void calibrate_tsc(void)
{
    uint64_t t0 = now_ns(), c0 = __rdtsc();
    while (now_ns() - t0 < 100000000)
        ;
    ns_per_tick = (double)(now_ns() - t0) / (double)(__rdtsc() - c0);
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % sysconf(_SC_NPROCESSORS_ONLN), &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void *shared_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    memset(p, 0, n);
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct pct {
    double p50, p99, p999, max;
};

static struct pct percentiles(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    struct pct p = {v[n / 2], v[n * 99 / 100], v[n * 999 / 1000], v[n - 1]};
    return p;
}

static void die(const char *what)
{
    fprintf(stderr, "dmaq-bench: %s: %s\n", what, dmaq_last_error());
    exit(1);
}

/* ---- Latency ------------------------------------------------------------ */

struct pingpong {
    _Alignas(128) _Atomic uint32_t ping;
    _Alignas(128) _Atomic uint32_t pong;
};

static void futex_wait(_Atomic uint32_t *w, uint32_t v)
{
    syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w) { syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0); }

/* Cache-line (or futex) ping-pong; one-way latencies in ns into out[n]. */
static void floor_latency(double *out, size_t n, int use_futex)
{
    struct pingpong *pp = shared_alloc(sizeof *pp);
    pid_t child = fork();
    if (child == 0) {
        pin(1);
        for (uint32_t i = 1; i <= n + 1000; i++) {
            while (atomic_load_explicit(&pp->ping, memory_order_acquire) != i)
                if (use_futex)
                    futex_wait(&pp->ping, i - 1);
            atomic_store_explicit(&pp->pong, i, memory_order_release);
            if (use_futex)
                futex_wake(&pp->pong);
        }
        _exit(0);
    }
    pin(0);
    for (uint32_t i = 1; i <= n + 1000; i++) {
        uint64_t t0 = __rdtsc();
        atomic_store_explicit(&pp->ping, i, memory_order_release);
        if (use_futex)
            futex_wake(&pp->ping);
        while (atomic_load_explicit(&pp->pong, memory_order_acquire) != i)
            if (use_futex)
                futex_wait(&pp->pong, i - 1);
        if (i > 1000)
            out[i - 1001] = (double)(__rdtsc() - t0) * ns_per_tick / 2;
    }
    waitpid(child, NULL, 0);
    munmap(pp, sizeof *pp);
}

/* dmaq ping-pong of 64-byte messages over two broadcast channels. */
static void dmaq_latency(double *out, size_t n, int64_t spin_ns)
{
    char a[64], b[64];
    snprintf(a, sizeof a, "shm://bench-lat-a-%d", getpid());
    snprintf(b, sizeof b, "shm://bench-lat-b-%d", getpid());
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.capacity = 1 << 16;
    o.spin_ns = spin_ns;
    dmaq_sub *sb;
    if (dmaq_sub_open(b, &o, &sb) < 0)
        die("open");
    _Atomic int *ready = shared_alloc(sizeof *ready);
    pid_t child = fork();
    if (child == 0) { /* echo a -> b */
        pin(1);
        dmaq_sub *sa;
        dmaq_pub *pb;
        if (dmaq_sub_open(a, &o, &sa) < 0 || dmaq_pub_open(b, &o, &pb) < 0)
            die("open");
        atomic_store(ready, 1);
        for (size_t i = 0; i < n + 1000; i++) {
            dmaq_lease r, w;
            if (dmaq_sub_peek(sa, &r, -1) < 0 || dmaq_pub_reserve(pb, 64, &w, -1) < 0)
                die("echo");
            memcpy(w.data, r.data, 64);
            dmaq_sub_release(sa, &r);
            dmaq_pub_commit(pb, &w, 64);
        }
        _exit(0);
    }
    pin(0);
    dmaq_pub *pa;
    if (dmaq_pub_open(a, &o, &pa) < 0)
        die("open");
    while (!atomic_load(ready))
        usleep(1000);
    char msg[64] = {0};
    for (size_t i = 0; i < n + 1000; i++) {
        uint64_t t0 = __rdtsc();
        dmaq_lease w, r;
        if (dmaq_pub_reserve(pa, 64, &w, -1) < 0)
            die("reserve");
        memcpy(w.data, msg, 64);
        dmaq_pub_commit(pa, &w, 64);
        if (dmaq_sub_peek(sb, &r, -1) < 0)
            die("peek");
        dmaq_sub_release(sb, &r);
        if (i >= 1000)
            out[i - 1000] = (double)(__rdtsc() - t0) * ns_per_tick / 2;
    }
    waitpid(child, NULL, 0);
    dmaq_pub_close(pa);
    dmaq_sub_close(sb);
    munmap(ready, sizeof *ready);
    dmaq_channel_unlink(a);
    dmaq_channel_unlink(b);
}

/* ---- Throughput --------------------------------------------------------- */

struct result {
    _Alignas(64) double seconds[4];
    _Atomic int ready; /* subscribers that have joined */
};

/* The textbook SPSC ring: head and tail on their own lines, read and written
 * on every message. */
static double bare_ring(size_t size, size_t count)
{
    size_t slots = (1u << 20) / size < 16 ? 16 : (1u << 20) / size;
    struct {
        _Alignas(128) _Atomic uint64_t head;
        _Alignas(128) _Atomic uint64_t tail;
    } *idx = shared_alloc(sizeof *idx);
    unsigned char *ring = shared_alloc(slots * size);
    struct result *res = shared_alloc(sizeof *res);
    pid_t child = fork();
    if (child == 0) {
        pin(1);
        unsigned char *dst = malloc(size);
        uint64_t t0 = 0;
        for (uint64_t i = 0; i < count; i++) {
            while (atomic_load_explicit(&idx->head, memory_order_acquire) == i)
                ;
            if (i == 0)
                t0 = now_ns();
            memcpy(dst, ring + (i % slots) * size, size);
            atomic_store_explicit(&idx->tail, i + 1, memory_order_release);
        }
        res->seconds[0] = (double)(now_ns() - t0) / 1e9;
        _exit(dst[0] == 0x5a ? 0 : 0);
    }
    pin(0);
    unsigned char *src = malloc(size);
    memset(src, 0x5a, size);
    for (uint64_t i = 0; i < count; i++) {
        while (i - atomic_load_explicit(&idx->tail, memory_order_acquire) >= slots)
            ;
        memcpy(ring + (i % slots) * size, src, size);
        atomic_store_explicit(&idx->head, i + 1, memory_order_release);
    }
    waitpid(child, NULL, 0);
    double s = res->seconds[0];
    free(src);
    munmap(ring, slots * size);
    munmap(idx, sizeof *idx);
    munmap(res, sizeof *res);
    return (double)(count - 1) / s;
}

/* One publisher, `subs` subscribers; zero_copy: reserve/commit with the
 * payload written in place, peek/release reading a word per cache line in
 * place; else send/recv copying. Returns messages/s of the slowest. */
static double dmaq_throughput(uint32_t kind, int subs, size_t size, size_t count, int zero_copy)
{
    char uri[64];
    snprintf(uri, sizeof uri, "shm://bench-tput-%d", getpid());
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.kind = kind;
    o.capacity = size >= 65536 ? 1u << 22 : 1u << 20;
    o.max_message = size > o.capacity / 4 ? o.capacity / 2 - DMAQ_RECORD_HEADER : 0;
    struct result *res = shared_alloc(sizeof *res);
    dmaq_channel_unlink(uri);
    dmaq_pub *pub;
    if (dmaq_pub_open(uri, &o, &pub) < 0)
        die("open");
    pid_t kids[4];
    size_t per_sub = kind == DMAQ_KIND_QUEUE ? count / subs : count;
    for (int s = 0; s < subs; s++) {
        if ((kids[s] = fork()) == 0) {
            /* Handles belong to the process that opened them: open here. */
            dmaq_sub *sub;
            if (dmaq_sub_open(uri, &o, &sub) < 0)
                die("open");
            atomic_fetch_add(&res->ready, 1);
            if (subs == 1)
                pin(1);
            unsigned char *dst = malloc(size);
            uint64_t t0 = 0, sink = 0;
            for (size_t i = 0; i < per_sub; i++) {
                if (zero_copy) {
                    dmaq_lease r;
                    if (dmaq_sub_peek(sub, &r, -1) < 0)
                        die("peek");
                    const unsigned char *p = r.data;
                    for (size_t off = 0; off + 8 <= r.len; off += 64)
                        sink += *(const uint64_t *)(p + off);
                    dmaq_sub_release(sub, &r);
                } else {
                    size_t len;
                    if (dmaq_sub_recv(sub, dst, size, &len, -1) < 0)
                        die("recv");
                }
                if (i == 0)
                    t0 = now_ns();
            }
            res->seconds[s] = (double)(now_ns() - t0) / 1e9 + (double)(sink & 0);
            _exit(0);
        }
    }
    while (atomic_load(&res->ready) < subs) /* broadcast starts at the newest */
        usleep(1000);
    if (subs == 1)
        pin(0);
    unsigned char *src = malloc(size);
    memset(src, 0x5a, size);
    for (size_t i = 0; i < count; i++) {
        if (zero_copy) {
            dmaq_lease w;
            if (dmaq_pub_reserve(pub, size, &w, -1) < 0)
                die("reserve");
            memcpy(w.data, src, size);
            dmaq_pub_commit(pub, &w, size);
        } else if (dmaq_pub_send(pub, src, size, -1) < 0) {
            die("send");
        }
    }
    double worst = 0;
    for (int s = 0; s < subs; s++) {
        waitpid(kids[s], NULL, 0);
        if (res->seconds[s] > worst)
            worst = res->seconds[s];
    }
    free(src);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
    munmap(res, sizeof *res);
    return (double)(per_sub - 1) / worst;
}

/* Best of `reps` runs: this machine's noise only ever slows a run down. */
#define BEST_OF(reps, expr)                                                                                  \
    ({                                                                                                       \
        double best_ = 0;                                                                                    \
        for (int r_ = 0; r_ < (reps); r_++) {                                                                \
            double v_ = (expr);                                                                              \
            if (v_ > best_)                                                                                  \
                best_ = v_;                                                                                  \
        }                                                                                                    \
        best_;                                                                                               \
    })

static size_t count_for(size_t size)
{
    size_t bytes = quick ? (256u << 20) : (2048u << 20);
    size_t n = bytes / size;
    size_t cap = quick ? 2000000 : 10000000;
    return n > cap ? cap : n;
}

int main(int argc, char **argv)
{
    quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    calibrate_tsc();
    size_t n = quick ? 100000 : 1000000;
    double *v = malloc(n * sizeof *v);

    printf("## Latency, one way (round trip / 2), 64-byte messages, %zu round trips\n\n", n);
    printf("| path | p50 ns | p99 ns | p99.9 ns | max ns | p50 / floor | p99.9 / floor |\n");
    printf("|---|---|---|---|---|---|---|\n");
    floor_latency(v, n, 0);
    struct pct floor = percentiles(v, n);
    floor_latency(v, n / 10, 1);
    struct pct fut = percentiles(v, n / 10);
    dmaq_latency(v, n, 1000000000); /* spins up to 1 s: busy-polling */
    struct pct spin = percentiles(v, n);
    dmaq_latency(v, n / 10, 0); /* sleeps at once: every message wakes a sleeper */
    struct pct block = percentiles(v, n / 10);
    struct {
        const char *name;
        struct pct p, base;
        const char *vs;
    } rows[] = {
        {"floor: cache-line ping-pong", floor, floor, "floor"},
        {"dmaq busy-polling (peek spins)", spin, floor, "floor"},
        {"floor: raw futex wake ping-pong", fut, floor, "floor"},
        {"dmaq blocking (spin_ns = 0)", block, fut, "futex"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        printf("| %s | %.0f | %.0f | %.0f | %.0f | %.2fx %s | %.2fx %s |\n", rows[i].name, rows[i].p.p50,
               rows[i].p.p99, rows[i].p.p999, rows[i].p.max, rows[i].p.p50 / rows[i].base.p50, rows[i].vs,
               rows[i].p.p999 / rows[i].base.p50, rows[i].vs);

    int reps = quick ? 1 : 3;
    printf("\n## Throughput (messages/s of the slowest subscriber, best of %d runs), against the bare ring\n\n",
           reps);
    printf("| size | bare ring | path | queue 1x1 | broadcast 1x1 | broadcast 1x2 | best 1x1 / bare | GB/s best 1x1 |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    size_t sizes[] = {64, 1024, 65536};
    for (size_t i = 0; i < 3; i++) {
        size_t sz = sizes[i], c = count_for(sz);
        double bare = BEST_OF(reps, bare_ring(sz, c));
        for (int zc = 0; zc < 2; zc++) {
            double q = BEST_OF(reps, dmaq_throughput(DMAQ_KIND_QUEUE, 1, sz, c, zc));
            double b1 = BEST_OF(reps, dmaq_throughput(DMAQ_KIND_BROADCAST, 1, sz, c, zc));
            double b2 = BEST_OF(reps, dmaq_throughput(DMAQ_KIND_BROADCAST, 2, sz, c, zc));
            double best = q > b1 ? q : b1;
            printf("| %zu B | %.2f M | %s | %.2f M | %.2f M | %.2f M | %.2fx | %.2f |\n", sz, bare / 1e6,
                   zc ? "zero-copy" : "copy", q / 1e6, b1 / 1e6, b2 / 1e6, best / bare, best * (double)sz / 1e9);
            fflush(stdout);
        }
    }
    free(v);
    return 0;
}
