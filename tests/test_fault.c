/*
 * The fault harness: randomized trials of publishers and subscribers in
 * separate processes, SIGKILLed at random moments and sometimes restarted.
 * Some subscribers are never killed ("survivors"); at the end they must
 * account for every message the publishers committed:
 *   broadcast/block  every committed message, in order, none twice;
 *   broadcast/overwrite  received + reported lost = committed, give or take
 *                    the aborted reservations a lap may have counted;
 *   queue            every committed message delivered, and delivered more
 *                    than once only as a redelivery after a holder died.
 * And nothing hangs: every trial ends within its deadline.
 *
 * DMAQ_FAULT_TRIALS sets the number of trials (default 200);
 * DMAQ_FAULT_SEED the first seed.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sys/mman.h>

#include "../core/shm/layout.h"

#include "fault_log.h"
#include "harness.h"

#define TRIAL_DEADLINE_S 20

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

struct trial {
    uint64_t rng;
    char uri[96], log_path[128];
    struct fault_log *log;
    dmaq_options opts;
    pid_t pubs[FAULT_MAX_KEYS];
    int pub_keys, pubs_killed;
    pid_t subs[FAULT_MAX_SUBS];
    bool survivor[FAULT_MAX_SUBS];
    int sub_slots;
};

static pid_t start_pub(struct trial *t)
{
    if (t->pub_keys >= FAULT_MAX_KEYS)
        return 0;
    char key[16], count[16], seed[32];
    snprintf(key, sizeof key, "%d", t->pub_keys);
    snprintf(count, sizeof count, "%d", 100 + (int)(rng_next(&t->rng) % (FAULT_MAX_MSGS - 100)));
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)rng_next(&t->rng));
    char *argv[] = {DMAQ_FAULT_PEER, "pub", t->uri, t->log_path, key, count, seed, NULL};
    pid_t pid = spawn(argv);
    cr_assert_gt(pid, 0, "spawn failed");
    t->pubs[t->pub_keys++] = pid;
    return pid;
}

static void start_sub(struct trial *t, bool survivor)
{
    if (t->sub_slots >= FAULT_MAX_SUBS)
        return;
    int slot = t->sub_slots++;
    t->log->sub[slot].late = t->pub_keys > 0;
    char s[16];
    snprintf(s, sizeof s, "%d", slot);
    char *argv[] = {DMAQ_FAULT_PEER, "sub", t->uri, t->log_path, s, NULL};
    t->subs[slot] = spawn(argv);
    cr_assert_gt(t->subs[slot], 0, "spawn failed");
    t->survivor[slot] = survivor;
    /* Broadcast subscribers start at the newest message: wait until joined. */
    uint64_t deadline = mono_ns() + 5000000000ull;
    while (!atomic_load(&t->log->sub[slot].ready)) {
        int status;
        cr_assert(waitpid(t->subs[slot], &status, WNOHANG) == 0, "subscriber %d died at start", slot);
        cr_assert(mono_ns() < deadline, "subscriber %d never joined", slot);
        sleep_ms(1);
    }
}

static bool running(pid_t pid)
{
    int status;
    return pid > 0 && waitpid(pid, &status, WNOHANG) == 0;
}

/* SIGKILL one random running victim; maybe start its replacement. */
static void kill_one(struct trial *t)
{
    bool publisher = rng_next(&t->rng) & 1;
    if (publisher) {
        int k = (int)(rng_next(&t->rng) % (uint64_t)t->pub_keys);
        if (k == 0 || !running(t->pubs[k]))
            return; /* key 0 is never killed, so every trial publishes */
        kill(t->pubs[k], SIGKILL);
        waitpid(t->pubs[k], NULL, 0);
        t->pubs[k] = 0;
        t->pubs_killed++;
        if (rng_next(&t->rng) & 1)
            start_pub(t);
    } else {
        int s = (int)(rng_next(&t->rng) % (uint64_t)t->sub_slots);
        if (t->survivor[s] || !running(t->subs[s]))
            return;
        kill(t->subs[s], SIGKILL);
        waitpid(t->subs[s], NULL, 0);
        t->subs[s] = 0;
        if (rng_next(&t->rng) & 1)
            start_sub(t, false);
    }
}

/* Wait for every listed process to exit 0 within the deadline. */
static bool all_exit(pid_t *pids, int n, uint64_t deadline)
{
    bool ok = true;
    for (int i = 0; i < n; i++) {
        if (pids[i] <= 0)
            continue;
        int status = 0;
        pid_t r;
        while ((r = waitpid(pids[i], &status, WNOHANG)) == 0 && mono_ns() < deadline)
            sleep_ms(2);
        if (r == 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            fprintf(stderr, "process %d hung\n", (int)pids[i]);
            ok = false;
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "process %d failed: status 0x%x\n", (int)pids[i], status);
            ok = false;
        }
        pids[i] = 0;
    }
    return ok;
}

/* How many of publisher k's messages may have been committed: one more than
 * it logged (a kill between commit and log), or a whole batch it began. */
static uint32_t most_sent(struct fault_log *log, int k)
{
    uint32_t one_more = atomic_load(&log->committed[k]) + 1, batch = atomic_load(&log->attempted[k]);
    return batch > one_more ? batch : one_more;
}

static void verify(struct trial *t, int trial)
{
    struct fault_log *log = t->log;
    uint64_t committed = 0;
    for (int k = 0; k < t->pub_keys; k++)
        committed += atomic_load(&log->committed[k]);
    for (int s = 0; s < t->sub_slots; s++) {
        struct fault_sub *me = &log->sub[s];
        cr_expect_eq(atomic_load(&me->bad), 0, "trial %d: subscriber %d got damaged messages", trial, s);
        cr_expect_eq(atomic_load(&me->misorder), 0, "trial %d: subscriber %d saw messages out of order", trial, s);
        if (!t->survivor[s] || t->opts.kind == DMAQ_KIND_QUEUE)
            continue;
        if (t->opts.policy == DMAQ_POLICY_BLOCK) {
            for (int k = 0; k < t->pub_keys; k++) {
                uint32_t got = atomic_load(&me->next[k]), sent = atomic_load(&log->committed[k]);
                cr_expect(got >= sent && got <= most_sent(log, k),
                          "trial %d: subscriber %d has %u of publisher %d's %u committed messages", trial, s, got, k,
                          sent);
            }
        } else {
            /* A kill between commit and log leaves `committed` short by one,
             * or by a batch, per killed publisher; a lap may count the
             * aborted reservations, and the aborted rest of a batch. */
            uint64_t accounted = atomic_load(&me->received) + atomic_load(&me->lost);
            uint64_t slack = (uint64_t)t->pubs_killed * (1 + FAULT_MAX_BATCH) + atomic_load(&log->aborts);
            cr_expect(accounted >= committed && accounted <= committed + slack,
                      "trial %d: subscriber %d: received %llu + lost %llu, committed %llu (slack %llu)", trial, s,
                      (unsigned long long)atomic_load(&me->received), (unsigned long long)atomic_load(&me->lost),
                      (unsigned long long)committed, (unsigned long long)slack);
        }
    }
    if (t->opts.kind != DMAQ_KIND_QUEUE)
        return;
    for (int k = 0; k < t->pub_keys; k++) {
        uint32_t sent = atomic_load(&log->committed[k]);
        for (uint32_t i = 0; i < FAULT_MAX_MSGS; i++) {
            unsigned seen = atomic_load(&log->seen[k][i]), again = atomic_load(&log->redelivered[k][i]);
            if (i < sent)
                cr_expect(seen >= 1, "trial %d: queue message %d/%u was never delivered", trial, k, i);
            if (i >= most_sent(log, k))
                cr_expect(seen == 0, "trial %d: queue message %d/%u delivered but never committed", trial, k, i);
            cr_expect(seen <= 1 + again, "trial %d: queue message %d/%u delivered %u times, %u redelivered", trial,
                      k, i, seen, again);
        }
    }
}

/* A trial's channel (kind by trial number) and log. */
static void trial_begin(struct trial *t, int trial, uint64_t seed, const char *what)
{
    *t = (struct trial){.rng = seed * 0x9e3779b97f4a7c15ull + 7};
    snprintf(t->log_path, sizeof t->log_path, "/tmp/dmaq-%s-%d-%d.log", what, (int)getpid(), trial);
    unlink(t->log_path);
    t->log = fault_log_map(t->log_path);
    cr_assert_not_null(t->log);
    unique_uri(t->uri, sizeof t->uri, what);

    static const uint32_t kinds[][2] = {{DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK},
                                        {DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK},
                                        {DMAQ_KIND_BROADCAST, DMAQ_POLICY_OVERWRITE}};
    t->opts = (dmaq_options)DMAQ_OPTIONS_INIT;
    t->opts.kind = kinds[trial % 3][0];
    t->opts.policy = kinds[trial % 3][1];
    t->opts.capacity = 4096u << (rng_next(&t->rng) % 4); /* small: wraps and full rings */
    t->opts.max_message = 256 + rng_next(&t->rng) % 256;
    dmaq_pub *creator;
    cr_assert_eq(dmaq_pub_open(t->uri, &t->opts, &creator), 0, "%s", dmaq_last_error());
    dmaq_pub_close(creator);
}

/* Let the publishers finish, stop the subscribers, check what they saw. */
static void trial_end(struct trial *t, int trial, uint64_t seed)
{
    uint64_t deadline = mono_ns() + TRIAL_DEADLINE_S * 1000000000ull;
    cr_assert(all_exit(t->pubs, t->pub_keys, deadline), "trial %d (seed %llu): a publisher hung or failed", trial,
              (unsigned long long)seed);
    atomic_store(&t->log->stop, 1);
    cr_assert(all_exit(t->subs, t->sub_slots, deadline), "trial %d (seed %llu): a subscriber hung or failed", trial,
              (unsigned long long)seed);
    verify(t, trial);
    munmap(t->log, sizeof *t->log);
    unlink(t->log_path);
    dmaq_channel_unlink(t->uri);
}

static void run_trial(int trial, uint64_t seed)
{
    struct trial t;
    trial_begin(&t, trial, seed, "fault");
    int survivors = 1 + (int)(rng_next(&t.rng) % 2), victims = (int)(rng_next(&t.rng) % 3);
    for (int i = 0; i < survivors + victims; i++)
        start_sub(&t, i < survivors);
    int pubs = 1 + (int)(rng_next(&t.rng) % 3);
    for (int i = 0; i < pubs; i++)
        start_pub(&t);
    int kills = (int)(rng_next(&t.rng) % 4);
    for (int i = 0; i < kills; i++) {
        sleep_ms((long)(rng_next(&t.rng) % 40));
        kill_one(&t);
    }
    trial_end(&t, trial, seed);
}

static void kill_pub(struct trial *t, int key)
{
    if (running(t->pubs[key])) {
        kill(t->pubs[key], SIGKILL);
        t->pubs_killed++;
    }
    waitpid(t->pubs[key], NULL, 0);
    t->pubs[key] = 0;
}

/* Solo claiming (core/shm/ring.c): a publisher, or a queue subscriber, alone
 * on its side of the channel claims with plain stores until another opens.
 * Here the first publisher opens alone and is SIGKILLed at a random moment,
 * perhaps inside a solo claim; the next opens after that, alone once the
 * dead one is reaped, and a third opens while it streams, ending its solo
 * claiming mid-stream. On a queue the first subscriber, alone and so solo,
 * is killed too and replaced. No open may wait for a dead solo handle, and
 * the survivors account for every message as in the random trials. */
static void run_solo_trial(int trial, uint64_t seed)
{
    struct trial t;
    trial_begin(&t, trial, seed, "solo");
    bool queue = t.opts.kind == DMAQ_KIND_QUEUE;
    start_sub(&t, !queue);
    start_pub(&t);
    sleep_ms((long)(rng_next(&t.rng) % 20));
    kill_pub(&t, 0);
    start_pub(&t);
    sleep_ms((long)(rng_next(&t.rng) % 20));
    start_pub(&t);
    if (queue) {
        sleep_ms((long)(rng_next(&t.rng) % 20));
        kill(t.subs[0], SIGKILL);
        waitpid(t.subs[0], NULL, 0);
        t.subs[0] = 0;
        start_sub(&t, true);
    }
    trial_end(&t, trial, seed);
}

Test(fault, random_kills_lose_nothing_and_hang_nothing, .timeout = 1200)
{
    const char *e = getenv("DMAQ_FAULT_TRIALS");
    int trials = e && atoi(e) > 0 ? atoi(e) : 200;
    e = getenv("DMAQ_FAULT_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 10) : 1;
    for (int i = 0; i < trials; i++)
        run_trial(i, seed + (uint64_t)i);
}

Test(fault, solo_handles_killed_and_joined, .timeout = 600)
{
    const char *e = getenv("DMAQ_FAULT_TRIALS");
    int trials = e && atoi(e) > 0 ? atoi(e) / 10 + 3 : 20;
    for (int i = 0; i < trials; i++)
        run_solo_trial(i, 1000 + (uint64_t)i);
}

/* A child that opens a publisher on `uri`, says so on `ready`, and waits to
 * be killed; or, with `then_send`, sends one message and exits. */
static pid_t publisher_child(const char *uri, int ready, bool then_send)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    dmaq_pub *pub;
    if (dmaq_pub_open(uri, NULL, &pub) < 0)
        _exit(2);
    char c = 1;
    if (write(ready, &c, 1) != 1)
        _exit(3);
    if (then_send)
        _exit(dmaq_pub_send(pub, "x", 1, -1) < 0 ? 4 : 0);
    pause();
    _exit(0);
}

static struct shm_header *map_header(const char *uri)
{
    char path[300];
    int fd = open(shm_file(uri, path, sizeof path), O_RDWR);
    cr_assert_geq(fd, 0);
    void *p = mmap(NULL, SHM_RING_OFFSET, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    cr_assert_neq(p, MAP_FAILED);
    return p;
}

static bool readable_within(int fd, int ms)
{
    struct timespec ts = {0, 1000000};
    for (int i = 0; i < ms; i++) {
        char c;
        if (read(fd, &c, 1) == 1)
            return true;
        nanosleep(&ts, NULL);
    }
    return false;
}

/* A solo publisher caught inside a claim (its solo_busy set, as a killed or
 * preempted one leaves it): a publisher that opens meanwhile goes ahead at
 * once if the holder is dead, and waits for the claim to end while the
 * holder lives; the channel works afterwards. */
Test(fault, solo_publisher_inside_a_claim_is_waited_for_only_while_alive, .timeout = 60)
{
#ifdef __SANITIZE_THREAD__
    cr_skip_test("publishers never claim solo in ThreadSanitizer builds (core/shm/shm.h)");
#endif
    if (!__builtin_cpu_supports("avx"))
        cr_skip_test("no AVX: publishers never claim solo here");
    char uri[96];
    unique_uri(uri, sizeof uri, "solo");
    dmaq_sub *sub;
    cr_assert_eq(dmaq_sub_open(uri, NULL, &sub), 0, "%s", dmaq_last_error());
    struct shm_header *h = map_header(uri);
    struct shm_slot *slots = (struct shm_slot *)((char *)h + SHM_HEADER_BYTES);
    int holder_ready[2], opener_ready[2], status;
    cr_assert_eq(pipe2(holder_ready, O_NONBLOCK), 0);
    cr_assert_eq(pipe2(opener_ready, O_NONBLOCK), 0);

    for (int alive = 0; alive < 2; alive++) {
        pid_t holder = publisher_child(uri, holder_ready[1], false);
        cr_assert(readable_within(holder_ready[0], 5000), "the first publisher never opened");
        cr_assert_eq(atomic_load(&h->solo_pub), 1, "a publisher alone on the channel is not solo");
        atomic_store(&slots[0].solo_busy, 1);
        if (!alive) {
            kill(holder, SIGKILL);
            waitpid(holder, NULL, 0);
        }
        pid_t opener = publisher_child(uri, opener_ready[1], true);
        if (alive) {
            cr_expect(!readable_within(opener_ready[0], 300),
                      "a publisher opened while the solo one was inside a claim");
            atomic_store(&slots[0].solo_busy, 0);
        }
        cr_assert(readable_within(opener_ready[0], 5000), "the second publisher never opened (holder %s)",
                  alive ? "alive" : "dead");
        cr_assert_eq(waitpid(opener, &status, 0), opener);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the second publisher failed: 0x%x", status);
        if (alive) {
            cr_expect_eq(atomic_load(&h->solo_pub), 0, "the first publisher is still solo");
            kill(holder, SIGKILL);
            waitpid(holder, NULL, 0);
        }
        char buf[8];
        size_t len;
        cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &len, 5000000000), 0, "%s", dmaq_last_error());
        cr_expect(len == 1 && buf[0] == 'x');
    }
    dmaq_sub_close(sub);
    munmap(h, SHM_RING_OFFSET);
    dmaq_channel_unlink(uri);
}
