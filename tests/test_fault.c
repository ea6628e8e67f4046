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
#include <criterion/criterion.h>
#include <fcntl.h>

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

static void run_trial(int trial, uint64_t seed)
{
    struct trial t = {.rng = seed * 0x9e3779b97f4a7c15ull + 7};
    snprintf(t.log_path, sizeof t.log_path, "/tmp/dmaq-fault-%d-%d.log", (int)getpid(), trial);
    unlink(t.log_path);
    t.log = fault_log_map(t.log_path);
    cr_assert_not_null(t.log);
    unique_uri(t.uri, sizeof t.uri, "fault");

    static const uint32_t kinds[][2] = {{DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK},
                                        {DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK},
                                        {DMAQ_KIND_BROADCAST, DMAQ_POLICY_OVERWRITE}};
    t.opts = (dmaq_options)DMAQ_OPTIONS_INIT;
    t.opts.kind = kinds[trial % 3][0];
    t.opts.policy = kinds[trial % 3][1];
    t.opts.capacity = 4096u << (rng_next(&t.rng) % 4); /* small: wraps and full rings */
    t.opts.max_message = 256 + rng_next(&t.rng) % 256;
    dmaq_pub *creator;
    cr_assert_eq(dmaq_pub_open(t.uri, &t.opts, &creator), 0, "%s", dmaq_last_error());
    dmaq_pub_close(creator);

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

    uint64_t deadline = mono_ns() + TRIAL_DEADLINE_S * 1000000000ull;
    cr_assert(all_exit(t.pubs, t.pub_keys, deadline), "trial %d (seed %llu): a publisher hung or failed", trial,
              (unsigned long long)seed);
    atomic_store(&t.log->stop, 1);
    cr_assert(all_exit(t.subs, t.sub_slots, deadline), "trial %d (seed %llu): a subscriber hung or failed", trial,
              (unsigned long long)seed);
    verify(&t, trial);
    munmap(t.log, sizeof *t.log);
    unlink(t.log_path);
    dmaq_channel_unlink(t.uri);
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
