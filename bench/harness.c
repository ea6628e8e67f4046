/*
 * One cell of the benchmark: P publisher and S subscriber processes over one
 * transport, forked fresh for every cell so no state carries over.
 *
 * Latency: each publisher sends one message at a time, stamped with the TSC
 * just before it is committed (zero-copy) or sent (copying), and waits until
 * every subscriber that gets it has acknowledged it through shared memory.
 * A subscriber reads the TSC as soon as the message is in its hands, so the
 * figure is one-way time, commit to peek, across processes. The low bits of
 * the stamp carry the publisher's index and whether it is a warm-up message.
 *
 * Streaming: publishers publish as fast as they can for spec->seconds, then
 * the last one to finish sends end marks (1-byte messages). Subscribers
 * touch one word per cache line of every message, as a reader would.
 * Batched transports stream a batch per call on both sides, the harness
 * looping over each batch's messages in place, as a program using
 * dmaq_pub_send_many and dmaq_sub_peek_many would.
 *
 * Nothing here can hang the run: subscribers wait with a timeout and look at
 * the shared `failed` flag, and the parent kills a cell that overruns.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define STAMP_FLAGS 7u
#define STAMP_WARMUP 4u /* bits 0-1: publisher index */
#define RECV_TIMEOUT_MS 100
#define CELL_DEADLINE_S 120

struct shared {
    _Atomic int ready, go, failed, pubs_done;
    char error[256];
    struct {
        _Alignas(64) _Atomic uint64_t n;
    } acks[BENCH_MAX_PUBS];
    struct {
        _Alignas(64) uint64_t received, lost, t_first, t_last;
        size_t samples;
    } subs[BENCH_MAX_SUBS];
    double lat[]; /* BENCH_MAX_SUBS x spec.samples */
};

static struct shared *sh;
static volatile uint64_t bench_sink;

_Noreturn void bench_fail(const char *fmt, ...)
{
    int expected = 0;
    if (sh && atomic_compare_exchange_strong(&sh->failed, &expected, 1)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sh->error, sizeof sh->error, fmt, ap);
        va_end(ap);
    }
    _exit(1);
}

static void check_failed(void)
{
    if (atomic_load_explicit(&sh->failed, memory_order_relaxed))
        _exit(1);
}

static int is_broadcast(const struct transport *t) { return t->kind != 1u /* DMAQ_KIND_QUEUE */; }

/* How many acknowledgements one message collects: one per subscriber it
 * reaches. */
static uint64_t acks_per_message(const struct cell *c) { return is_broadcast(c->t) ? (uint64_t)c->spec.subs : 1; }

static void wait_acks(int index, uint64_t want)
{
    for (unsigned spins = 0; atomic_load_explicit(&sh->acks[index].n, memory_order_acquire) < want; spins++) {
        if (spins > 2000) /* more processes than CPUs: let the others run */
            sched_yield();
        else
            cpu_relax();
        if ((spins & 1023) == 0)
            check_failed();
    }
}

static void send_end_marks(const struct cell *c, endpoint *e)
{
    /* A queue hands each mark to one subscriber; a broadcast shows one to all. */
    int marks = is_broadcast(c->t) ? 1 : c->spec.subs;
    for (int i = 0; i < marks; i++) {
        unsigned char *p = c->t->begin(e, BENCH_END_MARK_LEN);
        p[0] = 0xee;
        c->t->finish(e, BENCH_END_MARK_LEN);
    }
    if (c->t->flush)
        c->t->flush(e);
}

static void publisher(struct cell *c, int index, const unsigned char *src)
{
    const struct transport *t = c->t;
    const struct cell_spec *s = &c->spec;
    endpoint *e = t->open(c, 1, index);
    atomic_fetch_add(&sh->ready, 1);
    while (!atomic_load(&sh->go)) {
        usleep(100);
        check_failed();
    }
    if (s->latency) {
        size_t mine = s->samples / (size_t)s->pubs, warmup = mine / 10 < 1000 ? mine / 10 + 1 : 1000;
        uint64_t per = acks_per_message(c);
        for (size_t i = 0; i < warmup + mine; i++) {
            wait_acks(index, i * per);
            if (s->gap_ns > 0)
                spin_for_ns(s->gap_ns);
            unsigned char *p = t->begin(e, s->size);
            uint64_t stamp = (ticks() & ~(uint64_t)STAMP_FLAGS) | (uint64_t)index | (i < warmup ? STAMP_WARMUP : 0);
            memcpy(p, &stamp, sizeof stamp);
            t->finish(e, s->size);
        }
        wait_acks(index, (warmup + mine) * per);
    } else if (t->send_batch) {
        for (uint64_t end = ticks() + ns_to_ticks(s->seconds * 1e9); ticks() < end;)
            t->send_batch(e, s->size);
    } else {
        uint64_t end = ticks() + ns_to_ticks(s->seconds * 1e9);
        unsigned check_every = s->size >= 4096 ? 1 : 64;
        for (uint64_t i = 0;; i++) {
            if (i % check_every == 0 && ticks() >= end)
                break;
            void *p = t->begin(e, s->size);
            if (t->zero_copy) /* the application writes its message in place */
                memcpy(p, src, s->size);
            t->finish(e, s->size);
        }
    }
    if (t->flush)
        t->flush(e);
    if (atomic_fetch_add(&sh->pubs_done, 1) + 1 == s->pubs)
        send_end_marks(c, e);
    t->close(e);
}

static uint64_t touch(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t sum = 0, w;
    for (size_t off = 0; off + 8 <= len; off += 64) {
        memcpy(&w, p + off, 8);
        sum += w;
    }
    return sum;
}

/* A streaming subscriber of a batched transport: as subscriber() below,
 * a batch at a time. */
static void subscriber_batches(struct cell *c, endpoint *e, int index)
{
    const struct transport *t = c->t;
    const struct cell_spec *s = &c->spec;
    uint64_t received = 0, t_first = 0, t_last = 0, sink = 0;
    const void *data[BENCH_BATCH];
    size_t len[BENCH_BATCH], n;
    for (;;) {
        if (!t->recv_batch(e, data, len, &n, RECV_TIMEOUT_MS)) {
            check_failed();
            continue; /* block policy: the end mark comes */
        }
        size_t i = 0;
        for (; i < n && len[i] != BENCH_END_MARK_LEN; i++) {
            if (len[i] != s->size)
                bench_fail("subscriber got %zu bytes, expected %zu", len[i], s->size);
            sink += touch(data[i], len[i]);
        }
        /* The clock starts after the first batch: what it counts is what
         * came after. */
        if (t_first)
            received += i;
        else
            t_first = ticks();
        if (i < n) {
            t_last = ticks();
            break;
        }
    }
    sh->subs[index].received = received;
    sh->subs[index].t_first = t_first;
    sh->subs[index].t_last = t_last;
    bench_sink = sink;
    t->close(e);
}

static void subscriber(struct cell *c, int index)
{
    const struct transport *t = c->t;
    const struct cell_spec *s = &c->spec;
    endpoint *e = t->open(c, 0, index);
    atomic_fetch_add(&sh->ready, 1);
    if (t->recv_batch && !s->latency) {
        subscriber_batches(c, e, index);
        return;
    }
    double *lat = sh->lat + (size_t)index * s->samples;
    uint64_t received = 0, lost = 0, t_first = 0, t_last = 0, sink = 0;
    size_t samples = 0;
    for (;;) {
        const void *data;
        size_t len;
        if (!t->recv(e, &data, &len, &lost, RECV_TIMEOUT_MS)) {
            check_failed();
            /* All publishers are done and nothing came for a whole timeout:
             * the end mark was overwritten (overwrite policy). */
            if (atomic_load(&sh->pubs_done) == s->pubs) {
                t_last = ticks() - ns_to_ticks(RECV_TIMEOUT_MS * 1e6);
                break;
            }
            continue;
        }
        /* The clock only where a figure needs it: a stream reads it at its
         * first and last message. (Its lfence waits for every load before
         * it, which per message would cost a stream more than the bare
         * ring it is compared with pays.) */
        if (len == BENCH_END_MARK_LEN) {
            t_last = ticks();
            t->done(e);
            break;
        }
        if (len != s->size)
            bench_fail("subscriber got %zu bytes, expected %zu", len, s->size);
        if (s->latency) {
            uint64_t now = ticks(), stamp;
            memcpy(&stamp, data, sizeof stamp);
            if (t->done(e) || lost)
                bench_fail("a paced message was overwritten or lost");
            if (!(stamp & STAMP_WARMUP) && samples < s->samples)
                lat[samples++] = (double)(int64_t)(now - (stamp & ~(uint64_t)STAMP_FLAGS)) * ns_per_tick;
            atomic_fetch_add_explicit(&sh->acks[stamp & 3].n, 1, memory_order_release);
        } else {
            sink += touch(data, len);
            if (t->done(e)) {
                lost++;
                continue;
            }
            if (received == 0)
                t_first = ticks();
        }
        received++;
    }
    sh->subs[index].received = received;
    sh->subs[index].lost = lost;
    sh->subs[index].t_first = t_first;
    sh->subs[index].t_last = t_last;
    bench_sink = sink; /* keeps the reads */
    sh->subs[index].samples = samples;
    t->close(e);
}

/* Wait for every child; on a failure or the deadline, stop the rest. Returns
 * 0 if all exited cleanly. */
static int reap(pid_t *kids, int n, struct cell_result *out)
{
    uint64_t deadline = now_ns() + (uint64_t)CELL_DEADLINE_S * 1000000000u;
    int left = n, bad = 0;
    while (left > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            for (int i = 0; i < n; i++)
                if (kids[i] == pid) {
                    kids[i] = 0;
                    left--;
                    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        if (!bad && !sh->error[0])
                            snprintf(out->error, sizeof out->error, "a child %s %d",
                                     WIFSIGNALED(status) ? "was killed by signal" : "exited with",
                                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                        bad = 1;
                        atomic_store(&sh->failed, 1);
                    }
                }
            continue;
        }
        if (pid < 0 && errno != EINTR)
            break;
        if (now_ns() > deadline) {
            snprintf(out->error, sizeof out->error, "timed out after %d s", CELL_DEADLINE_S);
            for (int i = 0; i < n; i++)
                if (kids[i] > 0)
                    kill(kids[i], SIGKILL);
            bad = 1;
            deadline = UINT64_MAX;
        }
        usleep(2000);
    }
    if (sh->error[0])
        snprintf(out->error, sizeof out->error, "%s", sh->error);
    return bad;
}

void run_cell(const struct transport *t, const struct cell_spec *spec, struct cell_result *out)
{
    memset(out, 0, sizeof *out);
    static struct cell c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.spec = *spec;
    if (!spec->latency)
        c.spec.samples = 0;
    size_t sh_size = sizeof *sh + BENCH_MAX_SUBS * c.spec.samples * sizeof(double);
    sh = shared_alloc(sh_size);
    if (t->setup(&c) < 0) {
        snprintf(out->error, sizeof out->error, "%s", c.error);
        shared_free(sh, sh_size);
        sh = NULL;
        return;
    }
    unsigned char *src = malloc(spec->size);
    memset(src, 0x5a, spec->size);
    int n = spec->pubs + spec->subs, one_to_one = spec->pubs == 1 && spec->subs == 1;
    pid_t kids[BENCH_MAX_PUBS + BENCH_MAX_SUBS];
    fflush(NULL);
    for (int i = 0; i < n; i++) {
        int is_pub = i < spec->pubs, index = is_pub ? i : i - spec->pubs;
        if ((kids[i] = fork()) == 0) {
            signal(SIGPIPE, SIG_IGN);
            /* One to one: each on its own CPU, as a latency-minded user pins;
             * otherwise the scheduler places them. */
            if (one_to_one)
                pin(is_pub ? 0 : 1);
            if (is_pub)
                publisher(&c, index, src);
            else
                subscriber(&c, index);
            _exit(0);
        }
        if (kids[i] < 0) {
            atomic_store(&sh->failed, 1);
            snprintf(sh->error, sizeof sh->error, "fork: %s", strerror(errno));
            n = i;
            break;
        }
    }
    /* Broadcast subscribers see what is published after they join: start
     * everybody together. */
    uint64_t deadline = now_ns() + 30000000000u;
    while (atomic_load(&sh->ready) < n && !atomic_load(&sh->failed) && now_ns() < deadline)
        usleep(200);
    if (atomic_load(&sh->ready) < n && !atomic_load(&sh->failed)) {
        atomic_store(&sh->failed, 1);
        snprintf(sh->error, sizeof sh->error, "the cell's processes did not start within 30 s");
    }
    atomic_store(&sh->go, 1);
    int bad = reap(kids, n, out);
    t->teardown(&c);
    free(src);
    if (!bad) {
        out->ok = 1;
        size_t total = 0;
        for (int s = 0; s < spec->subs; s++) {
            if (total != (size_t)s * c.spec.samples) /* make the samples contiguous */
                memmove(sh->lat + total, sh->lat + (size_t)s * c.spec.samples, sh->subs[s].samples * sizeof(double));
            total += sh->subs[s].samples;
            out->received += sh->subs[s].received;
            out->lost += sh->subs[s].lost;
        }
        if (spec->latency) {
            out->ns = percentiles(sh->lat, total);
            if (spec->keep)
                memcpy(spec->keep, sh->lat, total * sizeof *spec->keep);
        } else if (is_broadcast(t)) { /* every subscriber gets everything: the slowest sets the pace */
            double slowest = 0;
            for (int s = 0; s < spec->subs; s++) {
                double secs = (double)(sh->subs[s].t_last - sh->subs[s].t_first) * ns_per_tick / 1e9;
                double rate = secs > 0 ? (double)sh->subs[s].received / secs : 0;
                if (s == 0 || rate < slowest)
                    slowest = rate;
            }
            out->msgs_per_s = slowest;
        } else { /* a queue shares the messages out: what all of them move together */
            uint64_t first = UINT64_MAX, last = 0;
            for (int s = 0; s < spec->subs; s++) {
                if (sh->subs[s].received && sh->subs[s].t_first < first)
                    first = sh->subs[s].t_first;
                if (sh->subs[s].t_last > last)
                    last = sh->subs[s].t_last;
            }
            double secs = last > first ? (double)(last - first) * ns_per_tick / 1e9 : 0;
            out->msgs_per_s = secs > 0 ? (double)out->received / secs : 0;
        }
        out->gb_per_s = out->msgs_per_s * (double)spec->size / 1e9;
    }
    shared_free(sh, sh_size);
    sh = NULL;
}

/* CPU time (user + system) a process has used, in seconds, from /proc. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long utime, stime;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void stop(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

void run_idle(const struct transport *const *ts, size_t n, double seconds, double *cpu_percent)
{
    struct cell *cells = calloc(n, sizeof *cells);
    pid_t *pubs = calloc(n, sizeof *pubs), *subs = calloc(n, sizeof *subs);
    for (size_t i = 0; i < n; i++) {
        cpu_percent[i] = -1;
        cells[i].t = ts[i];
        cells[i].spec = (struct cell_spec){.pubs = 1, .subs = 1, .size = 64};
        if (ts[i]->setup(&cells[i]) < 0)
            continue;
        /* A publisher that stays attached and silent, and a subscriber
         * waiting for its first message with no timeout. */
        fflush(NULL);
        if ((pubs[i] = fork()) == 0) {
            endpoint *e = ts[i]->open(&cells[i], 1, 0);
            (void)e;
            for (;;)
                pause();
        }
        if ((subs[i] = fork()) == 0) {
            endpoint *e = ts[i]->open(&cells[i], 0, 0);
            const void *data;
            size_t len;
            uint64_t lost = 0;
            for (;;)
                ts[i]->recv(e, &data, &len, &lost, -1);
        }
    }
    usleep(300000); /* let them connect and settle into their wait */
    double *before = calloc(n, sizeof *before);
    for (size_t i = 0; i < n; i++)
        before[i] = subs[i] > 0 ? cpu_seconds(subs[i]) : -1;
    uint64_t t0 = now_ns();
    usleep((useconds_t)(seconds * 1e6));
    double elapsed = (double)(now_ns() - t0) / 1e9;
    for (size_t i = 0; i < n; i++) {
        double after = subs[i] > 0 ? cpu_seconds(subs[i]) : -1;
        if (before[i] >= 0 && after >= 0)
            cpu_percent[i] = 100 * (after - before[i]) / elapsed;
        stop(subs[i]);
        stop(pubs[i]);
        if (pubs[i] || subs[i])
            ts[i]->teardown(&cells[i]);
    }
    free(before);
    free(pubs);
    free(subs);
    free(cells);
}
