/*
 * dmaq-bench: dmaq against this machine's own limits and against the usual
 * alternatives, measured in one run so that every figure can be quoted as a
 * ratio that holds on a noisy machine.
 *
 *   dmaq-bench [--quick | --smoke] [--targets] [--md FILE] [--json FILE]
 *              [--plot-data DIR] [--command TEXT]
 *
 * Sections: the floors (floors.c); wake-up cost, busy-polling against
 * asleep; every dmaq channel kind x message size x 1x1/1x4/4x1 x copying
 * and zero-copy (harness.c); the alternatives 1x1 at every size they carry
 * (transports.c); the CPU an idle subscriber burns; the targets of issue 3
 * (alone with --targets, for quick before/after comparisons).
 * Markdown goes to stdout (or --md), a progress bar to a terminal's stderr.
 * Exit status: 0, 1 if a cell failed (its row says why), 2 on bad usage.
 */
#define _GNU_SOURCE
#include "bench.h"
#include "floors.h"

#include <dmaq/dmaq.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static const size_t sizes[] = {8, 64, 1024, 65536, 1u << 20};
#define N_SIZES (sizeof sizes / sizeof *sizes)
static const int topologies[][2] = {{1, 1}, {1, 4}, {4, 1}};
#define N_TOPOS (sizeof topologies / sizeof *topologies)
#define WAKE_GAP_NS 50000.0 /* long enough for a reader to be asleep */

/* How long each part runs. */
struct mode {
    const char *name;
    size_t samples, sample_bytes; /* latency messages per cell, at most sample_bytes of them */
    double stream_s;              /* streaming time per cell */
    int reps;                     /* streaming runs per cell; the best counts */
    size_t floor_samples;
    double floor_s, idle_s;
};

static const struct mode modes[] = {
    {"full", 50000, 4ull << 30, 0.3, 3, 1000000, 0.3, 5},
    {"quick", 2000, 256u << 20, 0.05, 1, 50000, 0.05, 5},
    /* For the test suite: every cell runs and nothing hangs; the figures
     * mean nothing. */
    {"smoke", 200, 16u << 20, 0.01, 1, 2000, 0.01, 0.5},
};

static const struct mode *mode = &modes[0];

struct row {
    const struct transport *t;
    int pubs, subs;
    size_t size;
    struct cell_result lat, tput;
};

static struct row *rows;
static size_t n_rows, failures;

static struct {
    struct pct spin, futex;
    double memcpy_gbps[N_SIZES], bare[N_SIZES];
} floors;

enum { WAKE_BUSY, WAKE_BUSY_PLAIN, WAKE_DEFAULT, WAKE_ASLEEP, WAKE_CROWD_DEFAULT, WAKE_CROWD_NO_SPIN, N_WAKE };
static struct row wake[N_WAKE];
/* The targets of issue 3, each a ratio of a dmaq figure to the floor
 * measured beside it (alternating with it), in TARGET_ROUNDS rounds: this
 * machine's floors move by 3x within seconds (where the host puts its two
 * CPUs), and a ratio of figures taken apart would measure that.
 * T_FLOOR999 and T_WALK999 are no targets: the tails of the floor and of
 * a handoff walking a ring's memory, beside the p99.9 rows. */
enum {
    T_BUSY50,
    T_BUSY999,
    T_BUSY50_PLAIN,
    T_BUSY999_PLAIN,
    T_FLOOR999,
    T_WALK999,
    T_SPSC64,
    T_SPSC64K,
    T_ASLEEP,
    N_TARGETS
};
#define TARGET_ROUNDS 3
static double target_ratio[N_TARGETS][TARGET_ROUNDS];
static int target_rounds;
static const struct transport **idle_ts;
static double *idle_cpu;
static size_t n_idle;

/* ---- progress -------------------------------------------------------------- */

static size_t steps_done, steps_total;
static int progress_on;

static void progress(const char *what)
{
    steps_done++;
    if (!progress_on) { /* a log: a line per tenth */
        static size_t tenths;
        if (steps_done * 10 / (steps_total ? steps_total : 1) > tenths) {
            tenths = steps_done * 10 / (steps_total ? steps_total : 1);
            fprintf(stderr, "dmaq-bench: %zu%% (%s)\n", tenths * 10, what);
        }
        return;
    }
    int width = 30, filled = (int)(width * steps_done / (steps_total ? steps_total : 1));
    fprintf(stderr, "\r[%.*s%*s] %3zu%% %-48.48s", filled, "##############################", width - filled, "",
            100 * steps_done / (steps_total ? steps_total : 1), what);
    fflush(stderr);
}

/* ---- measuring ------------------------------------------------------------- */

/* Rotating static buffers, so that a few can appear in one printf. */
static char *scratch(void)
{
    static char buf[8][32];
    static unsigned i;
    return buf[i++ % 8];
}

static const char *size_name(size_t size)
{
    char *b = scratch();
    if (size >= (1u << 20))
        snprintf(b, 32, "%zu MiB", size >> 20);
    else if (size >= 1024)
        snprintf(b, 32, "%zu KiB", size >> 10);
    else
        snprintf(b, 32, "%zu B", size);
    return b;
}

static const char *rate_name(double per_s)
{
    char *b = scratch();
    if (per_s >= 1e6)
        snprintf(b, 32, "%.2f M", per_s / 1e6);
    else if (per_s >= 1e3)
        snprintf(b, 32, "%.1f k", per_s / 1e3);
    else
        snprintf(b, 32, "%.0f", per_s);
    return b;
}

static size_t size_index(size_t size)
{
    for (size_t i = 0; i < N_SIZES; i++)
        if (sizes[i] == size)
            return i;
    return 0;
}

static void note_failure(const struct row *r, const struct cell_result *c, const char *what)
{
    if (c->ok)
        return;
    failures++;
    if (progress_on)
        fputc('\n', stderr);
    fprintf(stderr, "dmaq-bench: %s %dx%d %s %s failed: %s\n", r->t->key, r->pubs, r->subs, size_name(r->size), what,
            c->error);
}

static const char *path_name(const struct transport *t)
{
    return t->batch ? "batches of 64" : t->zero_copy ? "zero-copy" : "copy";
}

/* One run of a row's cell. A comparison library's cell that fails gets a
 * second try, logged (NNG's 1 MiB ipc stream once hung for the whole
 * deadline in a CI run): a library that fails twice still fails the run,
 * and dmaq's own cells get no second try. */
static void run_row_cell(const struct row *r, const struct cell_spec *spec, struct cell_result *out, const char *what)
{
    run_cell(r->t, spec, out);
    if (out->ok || strncmp(r->t->key, "dmaq", 4) == 0)
        return;
    if (progress_on)
        fputc('\n', stderr);
    fprintf(stderr, "dmaq-bench: %s %dx%d %s %s failed (%s): once more\n", r->t->key, r->pubs, r->subs,
            size_name(r->size), what, out->error);
    run_cell(r->t, spec, out);
}

/* Latency (but not of batches: paced messages go out one at a time, as on
 * the copying path), then (unless latency_only) streaming throughput, of
 * one row. */
static void measure(struct row *r, double gap_ns, int latency_only)
{
    char what[160];
    snprintf(what, sizeof what, "%s %dx%d %s %s", r->t->name, r->pubs, r->subs, size_name(r->size), path_name(r->t));
    size_t samples = mode->samples;
    if (samples * r->size > mode->sample_bytes)
        samples = mode->sample_bytes / r->size;
    struct cell_spec lat = {r->pubs, r->subs, r->size, 1, samples < 100 ? 100 : samples, 0, gap_ns, NULL};
    if (!r->t->batch) {
        run_row_cell(r, &lat, &r->lat, "latency");
        note_failure(r, &r->lat, "latency");
    }
    progress(what);
    if (latency_only)
        return;
    struct cell_spec stream = {r->pubs, r->subs, r->size, 0, 0, mode->stream_s, 0, NULL};
    for (int rep = 0; rep < mode->reps; rep++) {
        struct cell_result c;
        run_row_cell(r, &stream, &c, "streaming");
        note_failure(r, &c, "streaming");
        if (c.ok && (!r->tput.ok || c.msgs_per_s > r->tput.msgs_per_s))
            r->tput = c;
        else if (!r->tput.ok && rep == 0)
            r->tput = c;
        progress(what);
    }
}

static void plan(void)
{
    for (size_t k = 0; k < bench_transport_count; k++) {
        const struct transport *t = bench_transports[k];
        for (size_t s = 0; s < N_SIZES; s++)
            for (size_t p = 0; p < (t->fan && !t->batch ? N_TOPOS : 1); p++)
                if (sizes[s] <= t->max_size)
                    rows[n_rows++] = (struct row){t, topologies[p][0], topologies[p][1], sizes[s], {0}, {0}};
    }
    target_rounds = mode == &modes[2] ? 1 : TARGET_ROUNDS;
    steps_total = 2 + 2 * N_SIZES + N_WAKE + n_rows * (size_t)(1 + mode->reps) + 1 + (size_t)target_rounds;
}

static void measure_floors(void)
{
    floors.spin = floor_handoff(mode->floor_samples, 0, 0, NULL);
    progress("floor: cache-line handoff");
    floors.futex = floor_handoff(mode->floor_samples / 10, 1, WAKE_GAP_NS, NULL);
    progress("floor: futex wake-up");
    for (size_t s = 0; s < N_SIZES; s++) {
        floors.memcpy_gbps[s] = floor_memcpy_gbps(sizes[s], mode->floor_s);
        progress("floor: memcpy");
        for (int rep = 0; rep < mode->reps; rep++) {
            double r = floor_bare_ring(sizes[s], mode->floor_s);
            if (r > floors.bare[s])
                floors.bare[s] = r;
        }
        progress("floor: bare ring");
    }
}

/* How a subscriber waits, and what that costs: 64 B, broadcast/block,
 * zero-copy. The 1x4 rows show subscribers that outnumber the CPUs. */
static const struct {
    int64_t spin_ns;
    uint32_t flags;
    int subs;
    double gap_ns;
    const char *name, *key;
} wake_kinds[N_WAKE] = {
    [WAKE_BUSY] = {INT64_MAX, 0, 1, 0, "busy-polling (spin_ns = max), 1x1", "dmaq-busy"},
    [WAKE_BUSY_PLAIN] = {INT64_MAX, DMAQ_OPEN_NO_TIMESTAMPS, 1, 0,
                         "busy-polling, publisher without timestamps (DMAQ_OPEN_NO_TIMESTAMPS), 1x1",
                         "dmaq-busy-no-timestamps"},
    [WAKE_DEFAULT] = {-1, 0, 1, 0, "default (spins 50 us, then sleeps), 1x1", "dmaq-default"},
    [WAKE_ASLEEP] = {0, 0, 1, WAKE_GAP_NS, "asleep (spin_ns = 0, 50 us between messages), 1x1", "dmaq-asleep"},
    [WAKE_CROWD_DEFAULT] = {-1, 0, 4, 0, "default, 1x4", "dmaq-default-1x4"},
    [WAKE_CROWD_NO_SPIN] = {0, 0, 4, 0, "spin_ns = 0, 1x4", "dmaq-no-spin-1x4"},
};

static struct transport wake_transport(int kind)
{
    struct transport t = bench_dmaq_with_spin(wake_kinds[kind].spin_ns, wake_kinds[kind].name, wake_kinds[kind].key);
    t.open_flags = wake_kinds[kind].flags;
    return t;
}

static void measure_wakeup(void)
{
    static struct transport t[N_WAKE];
    for (int i = 0; i < N_WAKE; i++) {
        t[i] = wake_transport(i);
        wake[i] = (struct row){&t[i], 1, wake_kinds[i].subs, 64, {0}, {0}};
        measure(&wake[i], wake_kinds[i].gap_ns, 1);
    }
}

static const struct transport *transport_by_key(const char *key)
{
    for (size_t k = 0; k < bench_transport_count; k++)
        if (!strcmp(bench_transports[k]->key, key))
            return bench_transports[k];
    return NULL;
}

/* One run of a 1x1 cell of the targets, a failure reported as `what`. */
static struct cell_result run_target(const struct transport *t, const struct cell_spec *spec, const char *what)
{
    struct cell_result c;
    run_cell(t, spec, &c);
    struct row r = {t, 1, 1, spec->size, {0}, {0}};
    note_failure(&r, &c, what);
    return c;
}

/* Latency targets: 1x1 cells of `n` transports and the floor they are held
 * to (and, if `walk` is not NULL, the ring-walking handoff as dmaq's 64-byte
 * cells' ring would be walked), measured in TARGET_BLOCKS alternating blocks
 * (floors, cell, cell, floors, ...) whose samples are pooled. Where the host
 * puts the two vCPUs moves the floor by 3x within seconds here; alternating
 * in blocks of a fraction of a second lets every side sample the same
 * placements, so the ratio measures dmaq rather than when each side ran. */
#define TARGET_BLOCKS 10
static void target_latencies(const struct transport *const *ts, struct pct *cells, size_t n, int sleep, double gap_ns,
                             size_t floor_samples, struct pct *floor, struct pct *walk)
{
    size_t floor_block = floor_samples / TARGET_BLOCKS, block = mode->samples / TARGET_BLOCKS;
    double *floor_kept = malloc(floor_block * TARGET_BLOCKS * sizeof(double)), *kept[2];
    double *walk_kept = walk ? malloc(floor_block * TARGET_BLOCKS * sizeof(double)) : NULL;
    size_t floor_n = 0, kept_n[2] = {0};
    int ok[2]; /* n <= 2: the busy cells with and without timestamps */
    for (size_t k = 0; k < n; k++) {
        kept[k] = malloc(block * TARGET_BLOCKS * sizeof(double));
        ok[k] = 1;
    }
    for (int b = 0; b < TARGET_BLOCKS; b++) {
        floor_handoff(floor_block, sleep, gap_ns, floor_kept + floor_n);
        if (walk)
            floor_ring_walk(floor_block, bench_dmaq_capacity(64), walk_kept + floor_n);
        floor_n += floor_block;
        for (size_t k = 0; k < n; k++) {
            struct cell_spec spec = {1, 1, 64, 1, block, 0, gap_ns, kept[k] + kept_n[k]};
            struct cell_result c = run_target(ts[k], &spec, "target latency");
            ok[k] = ok[k] && c.ok;
            kept_n[k] += c.ok ? c.ns.n : 0;
        }
    }
    *floor = percentiles(floor_kept, floor_n);
    if (walk)
        *walk = percentiles(walk_kept, floor_n);
    free(walk_kept);
    for (size_t k = 0; k < n; k++) {
        cells[k] = ok[k] ? percentiles(kept[k], kept_n[k]) : (struct pct){0};
        free(kept[k]);
    }
    free(floor_kept);
}

/* A streaming target: the 1x1 dmaq cell's best rate over the bare ring's
 * best, mode->reps runs of each, alternating, so that a slow spell of the
 * machine (its memory bandwidth moves by 3x within seconds) falls on both
 * sides rather than on one. 0 if the cell failed. */
static double stream_ratio(const struct transport *t, size_t size)
{
    struct cell_spec spec = {1, 1, size, 0, mode->samples, mode->stream_s, 0, NULL};
    double bare = 0, best = 0;
    for (int rep = 0; rep < mode->reps; rep++) {
        double b = floor_bare_ring(size, mode->floor_s);
        bare = b > bare ? b : bare;
        struct cell_result c = run_target(t, &spec, "target streaming");
        if (c.ok && c.msgs_per_s > best)
            best = c.msgs_per_s;
    }
    return bare > 0 ? best / bare : 0;
}

static void measure_targets(void)
{
    static struct transport busy, plain, asleep;
    busy = wake_transport(WAKE_BUSY);
    plain = wake_transport(WAKE_BUSY_PLAIN);
    asleep = wake_transport(WAKE_ASLEEP);
    const struct transport *batch = transport_by_key("dmaq-block-batch"), *zc = transport_by_key("dmaq-block-zc");
    for (int i = 0; i < target_rounds; i++) {
        const struct transport *spinning[] = {&busy, &plain}, *sleeping[] = {&asleep};
        struct pct spin, walk, futex, c[2];
        target_latencies(spinning, c, 2, 0, 0, mode->floor_samples, &spin, &walk);
        target_ratio[T_BUSY50][i] = c[0].p50 / spin.p50;
        target_ratio[T_BUSY999][i] = c[0].p999 / spin.p50;
        target_ratio[T_BUSY50_PLAIN][i] = c[1].p50 / spin.p50;
        target_ratio[T_BUSY999_PLAIN][i] = c[1].p999 / spin.p50;
        target_ratio[T_FLOOR999][i] = spin.p999 / spin.p50;
        target_ratio[T_WALK999][i] = walk.p999 / spin.p50;
        target_ratio[T_SPSC64][i] = stream_ratio(batch, 64);
        target_ratio[T_SPSC64K][i] = stream_ratio(zc, 65536);
        target_latencies(sleeping, c, 1, 1, WAKE_GAP_NS, mode->floor_samples / 10, &futex, NULL);
        target_ratio[T_ASLEEP][i] = c[0].p50 / futex.p50;
        progress("targets");
    }
}

static void measure_idle(void)
{
    static struct transport busy, spin;
    busy = bench_dmaq_with_spin(INT64_MAX, "dmaq busy-polling (spin_ns = max)", "dmaq-busy");
    spin = bench_dmaq_with_spin(-1, "dmaq (default options)", "dmaq");
    idle_ts = calloc(bench_transport_count + 2, sizeof *idle_ts);
    idle_ts[n_idle++] = &spin;
    idle_ts[n_idle++] = &busy;
    for (size_t k = 0; k < bench_transport_count; k++)
        if (!bench_transports[k]->fan)
            idle_ts[n_idle++] = bench_transports[k];
    idle_cpu = calloc(n_idle, sizeof *idle_cpu);
    if (progress_on)
        fprintf(stderr, "\r%-90s", "idle subscribers: waiting...");
    run_idle(idle_ts, n_idle, mode->idle_s, idle_cpu);
    progress("idle subscribers");
}

/* ---- reporting ------------------------------------------------------------- */

static const struct row *find(const char *key, int pubs, int subs, size_t size)
{
    for (size_t i = 0; i < n_rows; i++)
        if (!strcmp(rows[i].t->key, key) && rows[i].pubs == pubs && rows[i].subs == subs && rows[i].size == size)
            return &rows[i];
    return NULL;
}

static void cpu_model(char *out, size_t cap)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    snprintf(out, cap, "unknown CPU");
    int hypervisor = 0;
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && colon && !strcmp(out, "unknown CPU")) {
            snprintf(out, cap, "%s", colon + 2);
            out[strcspn(out, "\n")] = 0;
        }
        if (!strncmp(line, "flags", 5) && strstr(line, " hypervisor"))
            hypervisor = 1;
    }
    if (f)
        fclose(f);
    size_t len = strlen(out);
    snprintf(out + len, cap - len, ", %d CPUs%s", cpus_online(), hypervisor ? ", virtual machine" : "");
}

static const char *command_line = "build/bench/dmaq-bench";
static char date[64], cpu[256], kernel[160];

static void describe_machine(void)
{
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    cpu_model(cpu, sizeof cpu);
    struct utsname u;
    uname(&u);
    snprintf(kernel, sizeof kernel, "%s %s", u.sysname, u.release);
}

/* What a message's one-way latency cannot beat on this machine: the
 * cache-line handoff, plus on a copying path the copy in and the copy out at
 * this run's memcpy speed. */
static double latency_floor(const struct row *r)
{
    double copies = r->t->zero_copy ? 0 : 2 * (double)r->size / floors.memcpy_gbps[size_index(r->size)];
    return floors.spin.p50 + copies;
}

static void md_lat_cells(FILE *md, const struct cell_result *c, double floor_p50)
{
    if (!c->ok && !c->error[0])
        fprintf(md, "| — | | | | | |"); /* not measured */
    else if (!c->ok)
        fprintf(md, "| failed | | | | | |");
    else
        fprintf(md, "| %.0f | %.0f | %.0f | %.0f | %.0f | %.2fx |", c->ns.p50, c->ns.p90, c->ns.p99, c->ns.p999,
                c->ns.max, c->ns.p50 / floor_p50);
}

static void write_targets(FILE *md);

static void write_markdown(FILE *md)
{
    fprintf(md, "# dmaq-bench results\n\n");
    fprintf(md, "Run %s, %s mode, on %s; %s; dmaq %s.\n\n", date, mode->name, cpu, kernel, dmaq_version());
    fprintf(md, "Command (from the repository root):\n\n    %s\n\n", command_line);
    fprintf(md, "Every figure below was measured in this one run. Latency is one way, from the\n"
                "moment a message is committed (zero-copy) or handed to send (copying) to the\n"
                "moment the subscriber holds it, across processes, in ns; messages are paced\n"
                "one at a time. Throughput is of the slowest subscriber (broadcast) or of all\n"
                "subscribers together (queue), streaming for %.2f s, best of %d.\n"
                "The latency floor is the cache-line handoff below, plus on a copying path the\n"
                "copy in and the copy out at this run's memcpy speed for that size.\n"
                "1x1 cells pin the publisher and the subscriber to CPUs 0 and 1; others let the\n"
                "scheduler place them%s.\n",
            mode->stream_s, mode->reps,
            cpus_online() < 5 ? ", and on this machine 5 processes share fewer CPUs, so 1x4 and 4x1 "
                                "measure the scheduler as much as dmaq"
                              : "");

    fprintf(md, "\n## This machine's floors\n\n");
    fprintf(md, "| floor | p50 ns | p90 ns | p99 ns | p99.9 ns | max ns |\n|---|---|---|---|---|---|\n");
    fprintf(md, "| cache-line handoff, reader spinning | %.0f | %.0f | %.0f | %.0f | %.0f |\n", floors.spin.p50,
            floors.spin.p90, floors.spin.p99, floors.spin.p999, floors.spin.max);
    fprintf(md, "| futex wake-up, reader asleep | %.0f | %.0f | %.0f | %.0f | %.0f |\n", floors.futex.p50,
            floors.futex.p90, floors.futex.p99, floors.futex.p999, floors.futex.max);
    fprintf(md, "\n| message size | memcpy GB/s | bare SPSC ring msg/s | bare ring GB/s |\n|---|---|---|---|\n");
    for (size_t s = 0; s < N_SIZES; s++)
        fprintf(md, "| %s | %.2f | %s | %.2f |\n", size_name(sizes[s]), floors.memcpy_gbps[s], rate_name(floors.bare[s]),
                floors.bare[s] * (double)sizes[s] / 1e9);

    fprintf(md, "\n## Wake-up cost: 64 B, broadcast/block, zero-copy\n\n"
                "| subscriber | p50 | p90 | p99 | p99.9 | max | p50 / its floor | floor |\n"
                "|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < N_WAKE; i++) {
        fprintf(md, "| %s ", wake[i].t->name);
        md_lat_cells(md, &wake[i].lat, i == WAKE_ASLEEP ? floors.futex.p50 : floors.spin.p50);
        fprintf(md, " %s |\n", i == WAKE_ASLEEP ? "futex wake-up" : "cache-line handoff");
    }

    const char *kinds[] = {"dmaq queue", "dmaq broadcast/block", "dmaq broadcast/overwrite"};
    for (int k = 0; k < 3; k++) {
        fprintf(md, "\n## %s\n\n"
                    "| size | PxS | path | p50 ns | p90 | p99 | p99.9 | max | p50 / floor | msg/s | GB/s | "
                    "GB/s / memcpy | lost |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
                kinds[k]);
        for (size_t s = 0; s < N_SIZES; s++)
            for (size_t p = 0; p < N_TOPOS; p++)
                for (size_t i = 0; i < n_rows; i++) {
                    const struct row *r = &rows[i];
                    if (strcmp(r->t->name, kinds[k]) || r->size != sizes[s] || r->pubs != topologies[p][0] ||
                        r->subs != topologies[p][1])
                        continue;
                    fprintf(md, "| %s | %dx%d | %s ", size_name(r->size), r->pubs, r->subs,
                            path_name(r->t));
                    md_lat_cells(md, &r->lat, latency_floor(r));
                    if (!r->tput.ok)
                        fprintf(md, " failed | | | |\n");
                    else
                        fprintf(md, " %s | %.2f | %.2f | %.1f%% |\n", rate_name(r->tput.msgs_per_s), r->tput.gb_per_s,
                                r->tput.gb_per_s / floors.memcpy_gbps[s],
                                r->tput.lost ? 100.0 * (double)r->tput.lost / (double)(r->tput.lost + r->tput.received)
                                             : 0.0);
                }
    }

    const struct row *ref64 = find("dmaq-block-copy", 1, 1, 64);
    fprintf(md, "\n## Against the alternatives: 1x1, 64 B latency\n\n"
                "dmaq's rows use default options (a subscriber spins 50 us before it sleeps);\n"
                "the others block in the kernel. Ratios are to dmaq broadcast/block, copying.\n\n"
                "| transport | path | p50 ns | p90 | p99 | p99.9 | max | p50 / floor | p50 / dmaq |\n"
                "|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < n_rows; i++) {
        const struct row *r = &rows[i];
        if (r->size != 64 || r->pubs != 1 || r->subs != 1 || r->t->batch)
            continue;
        fprintf(md, "| %s | %s ", r->t->name, path_name(r->t));
        md_lat_cells(md, &r->lat, latency_floor(r));
        if (r->lat.ok && ref64 && ref64->lat.ok)
            fprintf(md, " %.2fx |\n", r->lat.ns.p50 / ref64->lat.ns.p50);
        else
            fprintf(md, " |\n");
    }

    fprintf(md, "\n## Against the alternatives: 1x1 throughput, msg/s (ratio to dmaq broadcast/block, copying)\n\n"
                "| transport | path |");
    for (size_t s = 0; s < N_SIZES; s++)
        fprintf(md, " %s |", size_name(sizes[s]));
    fprintf(md, "\n|---|---|");
    for (size_t s = 0; s < N_SIZES; s++)
        fprintf(md, "---|");
    fprintf(md, "\n");
    for (size_t i = 0; i < n_rows; i++) {
        const struct row *r = &rows[i];
        if (r->size != 8 || r->pubs != 1 || r->subs != 1)
            continue;
        fprintf(md, "| %s | %s |", r->t->name, path_name(r->t));
        for (size_t s = 0; s < N_SIZES; s++) {
            const struct row *c = find(r->t->key, 1, 1, sizes[s]), *ref = find("dmaq-block-copy", 1, 1, sizes[s]);
            if (!c)
                fprintf(md, " — (max %s) |", size_name(r->t->max_size));
            else if (!c->tput.ok)
                fprintf(md, " failed |");
            else
                fprintf(md, " %s (%.2fx) |", rate_name(c->tput.msgs_per_s),
                        ref && ref->tput.ok ? c->tput.msgs_per_s / ref->tput.msgs_per_s : 0);
        }
        fprintf(md, "\n");
    }

    fprintf(md, "\n## CPU burned by a subscriber waiting %.1f s with no traffic\n\n"
                "| subscriber | CPU |\n|---|---|\n",
            mode->idle_s);
    for (size_t i = 0; i < n_idle; i++)
        if (idle_cpu[i] < 0)
            fprintf(md, "| %s | not measured |\n", idle_ts[i]->name);
        else
            fprintf(md, "| %s | %.1f%% |\n", idle_ts[i]->name, idle_cpu[i]);
    write_targets(md);
    if (failures)
        fprintf(md, "\n**%zu cells failed in this run**; their rows say \"failed\" and stderr said why.\n", failures);
}

/* The targets of issue 3: what measure_targets found. */
static void write_targets(FILE *md)
{
    static const struct {
        const char *what;
        double limit;
        int at_most; /* the ratio must stay at or below the limit, else reach it */
    } targets[N_TARGETS] = {
        [T_BUSY50] = {"busy-polling p50 <= 1.3x the cache-line floor", 1.3, 1},
        [T_BUSY999] = {"busy-polling p99.9 <= 5x the floor's p50", 5, 1},
        [T_BUSY50_PLAIN] = {"the same p50, publisher without timestamps", 1.3, 1},
        [T_BUSY999_PLAIN] = {"the same p99.9, publisher without timestamps", 5, 1},
        [T_FLOOR999] = {"(the floor's own p99.9 over its p50: this machine's tail, for reference)", 0, 1},
        [T_WALK999] = {"(the same handoff walking the cells' ring, 128-byte records: its p99.9 over the floor's p50)",
                       0, 1},
        [T_SPSC64] = {"64 B SPSC (broadcast/block, batches of 64) >= 1.3x the bare ring", 1.3, 0},
        [T_SPSC64K] = {"64 KiB SPSC zero-copy (broadcast/block) >= the bare ring", 1, 0},
        [T_ASLEEP] = {"asleep wake-up p50 <= 1.1x a raw futex", 1.1, 1},
    };
    fprintf(md,
            "\n## The core's targets (issue 3), from this run\n\n"
            "Each round measures the floor and the dmaq cells, 1x1, CPUs pinned: the latencies in %d alternating "
            "blocks (floor, cells, floor, ...) whose samples are pooled, the streams as the best of %d runs of "
            "each, alternating; the verdict is on the median of %d rounds.\n\n| target | rounds | median | "
            "verdict |\n|---|---|---|---|\n",
            TARGET_BLOCKS, mode->reps, target_rounds);
    for (int t = 0; t < N_TARGETS; t++) {
        double sorted[TARGET_ROUNDS];
        memcpy(sorted, target_ratio[t], sizeof sorted);
        for (int i = 1; i < target_rounds; i++)
            for (int j = i; j > 0 && sorted[j] < sorted[j - 1]; j--) {
                double x = sorted[j];
                sorted[j] = sorted[j - 1];
                sorted[j - 1] = x;
            }
        double median = sorted[target_rounds / 2];
        fprintf(md, "| %s |", targets[t].what);
        for (int i = 0; i < target_rounds; i++)
            fprintf(md, "%s %.2fx", i ? "," : "", target_ratio[t][i]);
        bool met = targets[t].at_most ? median > 0 && median <= targets[t].limit : median >= targets[t].limit;
        fprintf(md, " | %.2fx | %s |\n", median, !targets[t].limit ? "—" : met ? "met" : "**missed**");
    }
}

static void json_pct(FILE *j, const struct pct *p)
{
    fprintf(j, "{\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f, \"samples\": %zu}", p->p50,
            p->p90, p->p99, p->p999, p->max, p->n);
}

static void json_row(FILE *j, const struct row *r)
{
    fprintf(j, "{\"transport\": \"%s\", \"name\": \"%s\", \"path\": \"%s\", \"size\": %zu, \"pubs\": %d, \"subs\": %d, "
               "\"latency_ns\": ",
            r->t->key, r->t->name, path_name(r->t), r->size, r->pubs, r->subs);
    if (r->lat.ok)
        json_pct(j, &r->lat.ns);
    else
        fprintf(j, "null");
    if (r->tput.ok)
        fprintf(j, ", \"msgs_per_s\": %.0f, \"gb_per_s\": %.4f, \"received\": %llu, \"lost\": %llu}", r->tput.msgs_per_s,
                r->tput.gb_per_s, (unsigned long long)r->tput.received, (unsigned long long)r->tput.lost);
    else
        fprintf(j, ", \"msgs_per_s\": null}");
}

static void write_json(FILE *j)
{
    fprintf(j, "{\n  \"date\": \"%s\", \"mode\": \"%s\", \"cpu\": \"%s\", \"kernel\": \"%s\", \"dmaq\": \"%s\",\n",
            date, mode->name, cpu, kernel, dmaq_version());
    fprintf(j, "  \"command\": \"%s\", \"failures\": %zu,\n  \"floors\": {\"handoff_ns\": ", command_line, failures);
    json_pct(j, &floors.spin);
    fprintf(j, ", \"futex_ns\": ");
    json_pct(j, &floors.futex);
    fprintf(j, ",\n    \"by_size\": [");
    for (size_t s = 0; s < N_SIZES; s++)
        fprintf(j, "%s{\"size\": %zu, \"memcpy_gb_per_s\": %.3f, \"bare_ring_msgs_per_s\": %.0f}", s ? ", " : "",
                sizes[s], floors.memcpy_gbps[s], floors.bare[s]);
    fprintf(j, "]},\n  \"wakeup\": [");
    for (int i = 0; i < N_WAKE; i++) {
        fprintf(j, "%s\n    ", i ? "," : "");
        json_row(j, &wake[i]);
    }
    fprintf(j, "],\n  \"idle_cpu_percent\": {");
    for (size_t i = 0; i < n_idle; i++)
        fprintf(j, "%s\"%s\": %.2f", i ? ", " : "", idle_ts[i]->key, idle_cpu[i]);
    fprintf(j, "},\n  \"cells\": [");
    for (size_t i = 0; i < n_rows; i++) {
        fprintf(j, "%s\n    ", i ? "," : "");
        json_row(j, &rows[i]);
    }
    fprintf(j, "\n  ]\n}\n");
}

/* What tells dmaq's paths apart in a plot's legend. */
static const char *plot_suffix(const struct transport *t)
{
    return !t->fan ? "" : t->batch ? " batch" : t->zero_copy ? " zc" : " copy";
}

/* Tables gnuplot reads (bench/plot.gp): latency percentiles per transport
 * (64 B, 1x1) and throughput against message size (1x1). */
static int write_plot_data(const char *dir)
{
    char path[4096];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/latency.dat", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "transport p50 p90 p99 p99.9\n");
    for (size_t i = 0; i < n_rows; i++) {
        const struct row *r = &rows[i];
        if (r->size == 64 && r->pubs == 1 && r->subs == 1 && r->lat.ok)
            fprintf(f, "\"%s%s\" %.1f %.1f %.1f %.1f\n", r->t->name, plot_suffix(r->t),
                    r->lat.ns.p50, r->lat.ns.p90, r->lat.ns.p99, r->lat.ns.p999);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/throughput.dat", dir);
    if (!(f = fopen(path, "w")))
        return -1;
    fprintf(f, "size");
    for (size_t k = 0; k < bench_transport_count; k++)
        fprintf(f, " \"%s%s\"", bench_transports[k]->name,
                plot_suffix(bench_transports[k]));
    fprintf(f, "\n");
    for (size_t s = 0; s < N_SIZES; s++) {
        fprintf(f, "%zu", sizes[s]);
        for (size_t k = 0; k < bench_transport_count; k++) {
            const struct row *r = find(bench_transports[k]->key, 1, 1, sizes[s]);
            if (r && r->tput.ok)
                fprintf(f, " %.4f", r->tput.gb_per_s);
            else
                fprintf(f, " NaN");
        }
        fprintf(f, "\n");
    }
    fclose(f);
    return 0;
}

static int usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "dmaq-bench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nusage: dmaq-bench [--quick | --smoke] [--targets] [--md FILE] [--json FILE] [--plot-data DIR] "
                    "[--command TEXT]\n");
    return 2;
}

static FILE *open_out(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        fprintf(stderr, "dmaq-bench: %s: %s\n", path, strerror(errno));
    return f;
}

int main(int argc, char **argv)
{
    const char *md_path = NULL, *json_path = NULL, *plot_dir = NULL;
    int targets_only = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **value = !strcmp(a, "--md")          ? &md_path
                             : !strcmp(a, "--json")      ? &json_path
                             : !strcmp(a, "--plot-data") ? &plot_dir
                             : !strcmp(a, "--command")   ? &command_line
                                                         : NULL;
        if (value) {
            if (++i == argc)
                return usage("%s needs a value", a);
            *value = argv[i];
        } else if (!strcmp(a, "--quick")) {
            mode = &modes[1];
        } else if (!strcmp(a, "--smoke")) {
            mode = &modes[2];
        } else if (!strcmp(a, "--targets")) {
            targets_only = 1;
        } else if (!strcmp(a, "--full")) {
            mode = &modes[0];
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: dmaq-bench [--quick | --smoke] [--targets] [--md FILE] [--json FILE] [--plot-data DIR] "
                   "[--command TEXT]\n"
                   "  (default)         the full run, several minutes\n"
                   "  --quick           under a minute\n"
                   "  --smoke           seconds; checks every cell runs, the figures mean nothing\n"
                   "  --targets         only the targets of issue 3 (with --quick or --smoke: shorter)\n"
                   "  --md FILE         the Markdown report (default: stdout)\n"
                   "  --json FILE       every figure as JSON\n"
                   "  --plot-data DIR   latency.dat and throughput.dat for bench/plot.gp\n"
                   "  --command TEXT    the command to record in the report\n");
            return 0;
        } else {
            return usage("unknown argument '%s'", a);
        }
    }
    FILE *md = md_path ? open_out(md_path) : stdout, *json = json_path ? open_out(json_path) : NULL;
    if (!md || (json_path && !json))
        return 1;
    progress_on = isatty(2);
    describe_machine();
    calibrate_ticks();
    rows = calloc(bench_transport_count * N_SIZES * N_TOPOS, sizeof *rows);
    plan();
    if (targets_only) { /* the floors they need are measured beside each round */
        measure_targets();
        if (progress_on)
            fprintf(stderr, "\r%-90s\r", "");
        fprintf(md, "Run %s, %s mode, on %s; %s; dmaq %s.\n", date, mode->name, cpu, kernel, dmaq_version());
        write_targets(md);
        return failures ? 1 : 0;
    }

    measure_floors();
    measure_wakeup();
    for (size_t i = 0; i < n_rows; i++)
        measure(&rows[i], 0, 0);
    measure_idle();
    measure_targets();
    if (progress_on)
        fprintf(stderr, "\r%-90s\r", "");

    write_markdown(md);
    if (md != stdout)
        fclose(md);
    if (json) {
        write_json(json);
        fclose(json);
    }
    if (plot_dir && write_plot_data(plot_dir) < 0) {
        fprintf(stderr, "dmaq-bench: %s: %s\n", plot_dir, strerror(errno));
        return 1;
    }
    return failures ? 1 : 0;
}
