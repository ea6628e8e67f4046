/*
 * dmaq-bench internals: one harness drives every transport (dmaq's channel
 * kinds on the copying and the zero-copy path, and the usual alternatives)
 * through the same few calls, so every figure comes from the same code and
 * can be quoted as a ratio to another measured in the same run.
 */
#ifndef DMAQ_BENCH_H
#define DMAQ_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BENCH_MAX_PUBS 4
#define BENCH_MAX_SUBS 4
#define BENCH_MAX_SIZE (1u << 20)
#define BENCH_END_MARK_LEN 1 /* a 1-byte message ends a stream; data is >= 8 bytes */

/* ---- time and processes (util.c) ---------------------------------------- */

/* The TSC: constant and synchronized across CPUs on the x86-64 machines we
 * measure on (constant_tsc, nonstop_tsc), so a stamp written by one process
 * and read by another gives a one-way time. The lfence keeps rdtsc from
 * running ahead of the loads before it (that had a reader's clock read
 * before it saw the message, so a few samples came out negative). */
static inline uint64_t ticks(void)
{
#if defined(__x86_64__)
    uint32_t lo, hi;
    __asm__ __volatile__("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return (uint64_t)hi << 32 | lo;
#else
    extern uint64_t now_ns(void);
    return now_ns();
#endif
}

extern double ns_per_tick;
uint64_t now_ns(void);
void calibrate_ticks(void);
uint64_t ns_to_ticks(double ns);
void spin_for_ns(double ns);
void pin(int cpu);      /* this process to one CPU (modulo the CPUs online) */
void unpin(void);       /* this process to every CPU */
void *shared_alloc(size_t n); /* zeroed, shared with children forked later */
void shared_free(void *p, size_t n);
int cpus_online(void);
void cpu_relax(void);

struct pct {
    double p50, p90, p99, p999, max;
    size_t n;
};
struct pct percentiles(double *v, size_t n); /* sorts v */

/* ---- transports (transports.c) ------------------------------------------ */

#define BENCH_BATCH 64 /* messages per batch of the batched transports */
/* The ring bytes dmaq's cells of `size`-byte messages use. */
size_t bench_dmaq_capacity(size_t size);

typedef struct endpoint endpoint;
struct cell;

struct transport {
    const char *name;     /* for tables: "dmaq queue", "pipe" */
    const char *key;      /* for JSON and plots: "dmaq-queue-zc" */
    size_t max_size;      /* the largest message it carries as one */
    int fan;              /* carries 1x4 and 4x1, not only 1x1 */
    int zero_copy;        /* begin() points into the channel, recv() too */
    uint32_t kind, policy; /* dmaq only */
    int64_t spin_ns;      /* dmaq only: dmaq_options.spin_ns */
    uint32_t open_flags;  /* dmaq only: added to dmaq_options.flags */
    /* In the parent, before the cell's processes are forked: create the
     * channel, the pipe, the queue name. Returns 0 or -1 with cell->error. */
    int (*setup)(struct cell *c);
    /* In a child: a publisher (pub=1) or subscriber endpoint. Exits the
     * child through bench_fail() when it cannot. */
    endpoint *(*open)(struct cell *c, int pub, int index);
    /* Publisher: a buffer for the next message of len bytes, then send it. */
    void *(*begin)(endpoint *e, size_t len);
    void (*finish)(endpoint *e, size_t len);
    /* Subscriber: wait up to timeout_ms (-1: forever) for the next message.
     * Returns 1 with *data and *len set (valid until done()), 0 if none
     * came; adds to *lost what an overwriting channel skipped. */
    int (*recv)(endpoint *e, const void **data, size_t *len, uint64_t *lost, int timeout_ms);
    /* Subscriber: finished with the message; returns 1 if it was overwritten
     * while read (so what was read must be discarded). */
    int (*done)(endpoint *e);
    void (*close)(endpoint *e);
    void (*teardown)(struct cell *c); /* parent, after the children are gone */
    /* Publisher, may be NULL: send what finish() has kept back. */
    void (*flush)(endpoint *e);
    int batch; /* dmaq only: BENCH_BATCH, messages per send_many and peek_many; 1x1 streaming only */
    /* Batched transports, streaming: publish `batch` messages of len bytes
     * in one call; take up to `batch` messages in one call, as recv does,
     * into data[] and len[] (*n of them, valid until the next call or
     * close). A program using the batch calls loops over arrays, not over
     * a call per message; so does the harness with these. */
    void (*send_batch)(endpoint *e, size_t len);
    int (*recv_batch)(endpoint *e, const void **data, size_t *len, size_t *n, int timeout_ms);
};

/* Every transport this build has, dmaq's first. */
extern const struct transport *const bench_transports[];
extern const size_t bench_transport_count;
/* dmaq broadcast/block with a given spin_ns, for the wake-up section. */
struct transport bench_dmaq_with_spin(int64_t spin_ns, const char *name, const char *key);

/* ---- the harness (harness.c) -------------------------------------------- */

struct cell_spec {
    int pubs, subs;
    size_t size;       /* payload bytes */
    int latency;       /* 1: paced messages, one-way time; 0: streaming */
    size_t samples;    /* latency: messages recorded (after a warm-up) */
    double seconds;    /* streaming: how long publishers publish */
    double gap_ns;     /* latency: publisher idles this long before each message */
    double *keep;      /* latency: if not NULL, receives the samples (sorted), ns.n of them */
};

struct cell_result {
    int ok;
    char error[256];
    struct pct ns;     /* latency: one-way ns, commit to peek (or send to recv) */
    double msgs_per_s; /* streaming: of the slowest subscriber (broadcast) or all (queue) */
    double gb_per_s;
    uint64_t received, lost;
};

/* Shared by the parent and the cell's children; `error` is where a failing
 * child explains itself. */
struct cell {
    const struct transport *t;
    struct cell_spec spec;
    char name[96]; /* channel, socket or queue name */
    int fds[2];
    char error[256];
};

void run_cell(const struct transport *t, const struct cell_spec *spec, struct cell_result *out);
/* Each transport's subscriber waits `seconds` for a message that never
 * comes, all at once; cpu_percent[i] gets the CPU it burned (100 = a whole
 * CPU), or -1 if it could not be measured. */
void run_idle(const struct transport *const *ts, size_t n, double seconds, double *cpu_percent);
/* In a cell's child: record why and exit. */
_Noreturn void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
