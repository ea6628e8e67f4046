/*
 * dmaq-soak: 4 publishers x 4 subscribers on one channel of each kind at
 * full speed for a bounded time, as threads of one process (the ThreadSanitizer
 * suite runs this) or as separate processes (--procs).
 *
 *   dmaq-soak [--procs] [--seconds S] [--kind queue|block|overwrite]
 *
 * S defaults to $DMAQ_SOAK_SECONDS, else 10, per kind; for a long manual
 * soak, say --seconds 3600 (a publisher stops after 2^32 - 1 messages).
 * Every message carries its publisher, its index and a checksum. Checked at
 * the end, per kind:
 *   - broadcast/block: every subscriber got every message once, in each
 *     publisher's order;
 *   - broadcast/overwrite: received + reported lost = published for every
 *     subscriber, each publisher's messages in order;
 *   - queue: every message delivered exactly once overall (duplicates are
 *     looked for among each publisher's first 2^26), each publisher's
 *     messages in order at every subscriber;
 *   - no corrupt payload, and memory flat: each worker's private resident
 *     memory (RssAnon) grows by less than 1 MiB from the end of the first
 *     second to the end.
 * Exits 0 when everything holds, 1 with a report otherwise.
 */
#include <dmaq/dmaq.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "payload.h"

#define PUBS 4
#define SUBS 4
#define HEAD PAYLOAD_HEAD
#define MAX_INDEX (1u << 26) /* per publisher: indexes the queue's duplicate check covers */
#define DRAIN_IDLE_NS 5000000000ull
/* Sanitizers keep shadow memory for every byte touched, the shared tables
 * included, so private memory grows with the traffic: memory flatness is
 * judged in the plain build only. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define CHECK_RSS false
#else
#define CHECK_RSS true
#endif

struct shared {
    _Atomic int ready, stop;
    _Atomic uint32_t pubs_done;
    _Atomic uint64_t sent[PUBS];
    _Atomic uint64_t queue_received;
    struct {
        _Atomic uint64_t received, lost, bad, misorder, duplicate, rss_growth_kb;
        uint64_t next[PUBS]; /* the index it expects next from each publisher */
    } sub[SUBS];
    _Atomic uint64_t pub_rss_growth_kb[PUBS];
    _Atomic uint64_t delivered[PUBS][MAX_INDEX / 64]; /* queue: which indexes arrived */
};

static struct shared *S;
static const char *uri;
static dmaq_options opts;
static double seconds;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Private anonymous memory (heap, stacks): what a leak grows. The ring and
 * the shared result tables are shared memory and do not count. */
static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* How much the resident set grew since `before` (0: not measured). Read
 * once: with the workers as threads of one process, the set can shrink
 * between two reads, and the difference of two went negative. */
static uint64_t rss_growth_kb(long before)
{
    long now = rss_kb();
    return before && now > before ? (uint64_t)(now - before) : 0;
}

static void fill(unsigned char *p, size_t len, uint32_t pub, uint32_t index)
{
    for (size_t i = HEAD; i < len; i++)
        p[i] = (unsigned char)(index * 7 + i);
    payload_seal(p, len, pub, index);
}

static bool intact(const unsigned char *p, size_t len, uint32_t *pub, uint32_t *index)
{
    return payload_intact(p, len, pub, index) && *pub < PUBS;
}

static void wait_ready(void)
{
    while (atomic_load(&S->ready) < PUBS + SUBS + 1)
        usleep(100);
}

static void *publisher(void *arg)
{
    uint32_t me = (uint32_t)(uintptr_t)arg;
    dmaq_pub *pub;
    if (dmaq_pub_open(uri, &opts, &pub) < 0) {
        fprintf(stderr, "publisher %u: %s\n", me, dmaq_last_error());
        exit(1);
    }
    atomic_fetch_add(&S->ready, 1);
    wait_ready();
    uint64_t start = now_ns();
    long rss_at_1s = 0;
    uint32_t i = 0;
    for (; i < UINT32_MAX && !atomic_load_explicit(&S->stop, memory_order_relaxed); i++) {
        size_t len = HEAD + (i * 2654435761u >> 24) % 240;
        if (i & 1) {
            unsigned char buf[HEAD + 256];
            fill(buf, len, me, i);
            while (dmaq_pub_send(pub, buf, len, 100000000) == DMAQ_ETIMEDOUT)
                if (atomic_load(&S->stop))
                    goto out; /* block policy, a subscriber gone: never here in this test */
        } else {
            dmaq_lease w;
            int rc;
            while ((rc = dmaq_pub_reserve(pub, len, &w, 100000000)) == DMAQ_ETIMEDOUT)
                if (atomic_load(&S->stop))
                    goto out;
            if (rc < 0) {
                fprintf(stderr, "publisher %u: %s\n", me, dmaq_last_error());
                exit(1);
            }
            fill(w.data, len, me, i);
            dmaq_pub_commit(pub, &w, len);
        }
        if (!rss_at_1s && (i & 4095) == 0 && now_ns() - start > 1000000000u)
            rss_at_1s = rss_kb();
    }
out:
    atomic_store(&S->sent[me], i);
    atomic_store(&S->pub_rss_growth_kb[me], rss_growth_kb(rss_at_1s));
    atomic_fetch_add(&S->pubs_done, 1);
    dmaq_pub_close(pub);
    return NULL;
}

/* Everything published has been accounted for by this subscriber. */
static bool drained(unsigned me)
{
    if (atomic_load(&S->pubs_done) < PUBS)
        return false;
    uint64_t total = 0;
    for (int p = 0; p < PUBS; p++)
        total += atomic_load(&S->sent[p]);
    if (opts.kind == DMAQ_KIND_QUEUE)
        return atomic_load(&S->queue_received) >= total;
    return atomic_load(&S->sub[me].received) + atomic_load(&S->sub[me].lost) >= total;
}

static void account(unsigned me, const unsigned char *p, size_t len)
{
    uint32_t pub, index;
    if (!intact(p, len, &pub, &index)) {
        atomic_fetch_add(&S->sub[me].bad, 1);
        return;
    }
    uint64_t *next = &S->sub[me].next[pub];
    bool in_order = opts.kind == DMAQ_KIND_BROADCAST && opts.policy == DMAQ_POLICY_BLOCK ? index == *next
                                                                                           : index >= *next;
    if (!in_order)
        atomic_fetch_add(&S->sub[me].misorder, 1);
    *next = index + 1;
    if (opts.kind == DMAQ_KIND_QUEUE && index < MAX_INDEX) {
        uint64_t bit = 1ull << (index % 64);
        if (atomic_fetch_or(&S->delivered[pub][index / 64], bit) & bit)
            atomic_fetch_add(&S->sub[me].duplicate, 1);
        atomic_fetch_add(&S->queue_received, 1);
    }
    atomic_fetch_add(&S->sub[me].received, 1);
}

static void *subscriber(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    dmaq_sub *sub;
    if (dmaq_sub_open(uri, &opts, &sub) < 0) {
        fprintf(stderr, "subscriber %u: %s\n", me, dmaq_last_error());
        exit(1);
    }
    atomic_fetch_add(&S->ready, 1);
    wait_ready();
    uint64_t start = now_ns(), last_progress = start;
    long rss_at_1s = 0;
    unsigned char buf[HEAD + 256];
    for (uint64_t n = 0; !drained(me); n++) {
        int rc;
        size_t len;
        if (n & 1) {
            rc = dmaq_sub_recv(sub, buf, sizeof buf, &len, 10000000);
            if (rc == 0)
                account(me, buf, len);
            else if (rc == DMAQ_ELOST)
                atomic_fetch_add(&S->sub[me].lost, len);
        } else {
            dmaq_lease r;
            rc = dmaq_sub_peek(sub, &r, 10000000);
            if (rc == 0) {
                /* Judged only once the release says the bytes held. */
                len = r.len < sizeof buf ? r.len : sizeof buf;
                memcpy(buf, r.data, len);
                rc = dmaq_sub_release(sub, &r);
                if (rc == 0)
                    account(me, buf, len);
                else if (rc == DMAQ_EOVERWRITTEN)
                    atomic_fetch_add(&S->sub[me].lost, 1);
            } else if (rc == DMAQ_ELOST) {
                atomic_fetch_add(&S->sub[me].lost, r.lost);
            }
        }
        if (rc == 0 || rc == DMAQ_ELOST || rc == DMAQ_EOVERWRITTEN) {
            last_progress = now_ns();
        } else if (rc != DMAQ_ETIMEDOUT) {
            fprintf(stderr, "subscriber %u: %s\n", me, dmaq_last_error());
            exit(1);
        } else if (atomic_load(&S->pubs_done) == PUBS && now_ns() - last_progress > DRAIN_IDLE_NS) {
            fprintf(stderr, "subscriber %u: nothing arrives, yet not everything was accounted for\n", me);
            break;
        }
        if (!rss_at_1s && (n & 4095) == 0 && now_ns() - start > 1000000000u)
            rss_at_1s = rss_kb();
    }
    atomic_store(&S->sub[me].rss_growth_kb, rss_growth_kb(rss_at_1s));
    dmaq_sub_close(sub);
    return NULL;
}

/* Run `fn(i)` as a thread or, with `procs`, as a forked process. */
struct worker {
    pthread_t thread;
    pid_t pid;
};

static void start(struct worker *w, bool procs, void *(*fn)(void *), uintptr_t i)
{
    if (procs) {
        fflush(stdout); /* or the child may print our buffered lines again */
        w->pid = fork();
        if (w->pid == 0) {
            fn((void *)i);
            _exit(0);
        }
    } else if (pthread_create(&w->thread, NULL, fn, (void *)i) != 0) {
        perror("pthread_create");
        exit(1);
    }
}

static bool finish(struct worker *w, bool procs)
{
    if (!procs)
        return pthread_join(w->thread, NULL) == 0;
    int status;
    return waitpid(w->pid, &status, 0) == w->pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static const char *kind_names[] = {"queue", "block", "overwrite"};

static int soak(int kind, bool procs)
{
    char name[64];
    snprintf(name, sizeof name, "shm://soak-%s-%d", kind_names[kind], (int)getpid());
    uri = name;
    memset(S, 0, sizeof *S);
    opts = (dmaq_options)DMAQ_OPTIONS_INIT;
    opts.kind = kind == 0 ? DMAQ_KIND_QUEUE : DMAQ_KIND_BROADCAST;
    opts.policy = kind == 2 ? DMAQ_POLICY_OVERWRITE : DMAQ_POLICY_BLOCK;
    opts.capacity = 1 << 18;
    opts.max_message = 1024;
    dmaq_pub *keeper;
    if (dmaq_pub_open(uri, &opts, &keeper) < 0) {
        fprintf(stderr, "soak: %s\n", dmaq_last_error());
        return 1;
    }
    struct worker pubs[PUBS], subs[SUBS];
    for (uintptr_t i = 0; i < SUBS; i++)
        start(&subs[i], procs, subscriber, i);
    for (uintptr_t i = 0; i < PUBS; i++)
        start(&pubs[i], procs, publisher, i);
    atomic_fetch_add(&S->ready, 1);
    wait_ready();
    usleep((useconds_t)(seconds * 1e6));
    atomic_store(&S->stop, 1);
    bool ok = true;
    for (int i = 0; i < PUBS; i++)
        ok &= finish(&pubs[i], procs);
    for (int i = 0; i < SUBS; i++)
        ok &= finish(&subs[i], procs);
    dmaq_pub_close(keeper);
    dmaq_channel_unlink(uri);

    uint64_t total = 0, max_growth = 0;
    for (int p = 0; p < PUBS; p++) {
        total += S->sent[p];
        if (S->pub_rss_growth_kb[p] > max_growth)
            max_growth = S->pub_rss_growth_kb[p];
    }
    uint64_t received = 0;
    for (int i = 0; i < SUBS; i++) {
        __typeof__(S->sub[0]) *r = &S->sub[i];
        received += r->received;
        if (r->rss_growth_kb > max_growth)
            max_growth = r->rss_growth_kb;
        if (r->bad || r->misorder || r->duplicate) {
            fprintf(stderr, "%s: subscriber %d: %llu corrupt, %llu out of order, %llu duplicated\n",
                    kind_names[kind], i, (unsigned long long)r->bad, (unsigned long long)r->misorder,
                    (unsigned long long)r->duplicate);
            ok = false;
        }
        if (kind != 0 && r->received + r->lost != total) {
            fprintf(stderr, "%s: subscriber %d: received %llu + lost %llu != published %llu\n", kind_names[kind],
                    i, (unsigned long long)r->received, (unsigned long long)r->lost, (unsigned long long)total);
            ok = false;
        }
        if (kind == 1 && r->lost) {
            fprintf(stderr, "block: subscriber %d lost %llu\n", i, (unsigned long long)r->lost);
            ok = false;
        }
    }
    if (kind == 0 && received != total) {
        fprintf(stderr, "queue: delivered %llu of %llu\n", (unsigned long long)received, (unsigned long long)total);
        ok = false;
    }
    if (CHECK_RSS && max_growth >= 1024) {
        fprintf(stderr, "%s: resident memory of a worker grew by %llu KiB after the first second\n",
                kind_names[kind], (unsigned long long)max_growth);
        ok = false;
    }
    printf("%-9s %s: %llu messages published in %.0f s, %llu delivered, largest RSS growth %llu KiB: %s\n",
           kind_names[kind], procs ? "processes" : "threads", (unsigned long long)total, seconds,
           (unsigned long long)received, (unsigned long long)max_growth, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    bool procs = false;
    int only = -1;
    const char *env = getenv("DMAQ_SOAK_SECONDS");
    seconds = env && atof(env) > 0 ? atof(env) : 10;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--procs") == 0) {
            procs = true;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc && atof(argv[i + 1]) > 0) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--kind") == 0 && i + 1 < argc) {
            i++;
            for (int k = 0; k < 3; k++)
                if (strcmp(argv[i], kind_names[k]) == 0)
                    only = k;
            if (only < 0) {
                fprintf(stderr, "dmaq-soak: unknown kind '%s' (queue, block or overwrite)\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: dmaq-soak [--procs] [--seconds S] [--kind queue|block|overwrite]\n");
            return 2;
        }
    }
    S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (S == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    int failed = 0;
    for (int k = 0; k < 3; k++)
        if (only < 0 || only == k)
            failed |= soak(k, procs);
    return failed;
}
