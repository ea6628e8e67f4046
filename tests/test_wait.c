/* Waiting across processes: sleepers are woken by another process, timeouts
 * end waits, and a waiting process sleeps in the kernel instead of spinning. */
#include <criterion/criterion.h>
#include <sys/resource.h>

#include "harness.h"

static dmaq_options opts(uint32_t kind)
{
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.kind = kind;
    o.capacity = 1 << 16;
    return o;
}

/* The state letter and CPU ticks (user + system) of a process. */
static char proc_state(pid_t pid, unsigned long *ticks)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    char state = p ? p[2] : '?';
    unsigned long utime = 0, stime = 0;
    if (p && ticks) {
        /* fields 14 and 15 after the name; p+2 is field 3 */
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime);
        *ticks = utime + stime;
    }
    return state;
}

static bool wait_asleep(pid_t pid)
{
    for (int i = 0; i < 500; i++) {
        char path[64], wchan[64] = "";
        snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(wchan, sizeof wchan, f))
                wchan[0] = 0;
            fclose(f);
        }
        if (proc_state(pid, NULL) == 'S' && strstr(wchan, "futex"))
            return true;
        sleep_ms(10);
    }
    return false;
}

static void sleeper_woken(uint32_t kind)
{
    char uri[128];
    unique_uri(uri, sizeof uri, "wake");
    dmaq_options o = opts(kind);
    dmaq_pub *pub;
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0);
    dmaq_sub *sub;
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0, "%s", dmaq_last_error());
    pid_t child = fork();
    if (child == 0) {
        dmaq_lease r;
        int rc = dmaq_sub_peek(sub, &r, -1); /* forever */
        _exit(rc == 0 && r.len == 4 && memcmp(r.data, "wake", 4) == 0 ? 0 : 1);
    }
    cr_assert(wait_asleep(child), "the subscriber never went to sleep on its futex");
    unsigned long before, after;
    proc_state(child, &before);
    sleep_ms(1000);
    cr_expect_eq(proc_state(child, &after), 'S');
    cr_expect_leq(after - before, 2, "an idle subscriber used %lu ticks of CPU in 1 s", after - before);
    cr_assert_eq(dmaq_pub_send(pub, "wake", 4, 0), 0);
    pid_t pids[] = {child};
    cr_expect(wait_all(pids, 1, 10), "the sleeping subscriber was not woken by the publisher");
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

Test(wait, queue_sleeper_woken_by_other_process) { sleeper_woken(DMAQ_KIND_QUEUE); }
Test(wait, broadcast_sleeper_woken_by_other_process) { sleeper_woken(DMAQ_KIND_BROADCAST); }

/* A wait that began at t0 with a timeout of timeout_ns ended neither early
 * nor late. */
static void expect_waited(uint64_t t0, uint64_t timeout_ns, const char *what)
{
    uint64_t took = mono_ns() - t0;
    cr_expect_geq(took, timeout_ns, "%s returned early, after %llu ns", what, (unsigned long long)took);
    cr_expect_lt(took, 5 * 1000000000ull, "%s returned late, after %llu ns", what, (unsigned long long)took);
}

Test(wait, timeouts_end_waits)
{
    char uri[128];
    unique_uri(uri, sizeof uri, "timeout");
    dmaq_options o = opts(DMAQ_KIND_BROADCAST);
    dmaq_sub *sub;
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0);
    dmaq_lease r;
    uint64_t t0 = mono_ns();
    cr_assert_eq(dmaq_sub_peek(sub, &r, 50 * 1000000LL), DMAQ_ETIMEDOUT);
    expect_waited(t0, 50 * 1000000ull, "peek");
    cr_assert_eq(dmaq_sub_peek(sub, &r, 0), DMAQ_EAGAIN);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
}

/* A wait that busy-polls for ever (spin_ns = INT64_MAX) still ends at its
 * timeout: while spinning it reads the clock only every 256 looks. */
Test(wait, timeouts_end_busy_polled_waits)
{
    char uri[128];
    unique_uri(uri, sizeof uri, "timeout-busy");
    dmaq_options o = opts(DMAQ_KIND_BROADCAST);
    o.capacity = 4096;
    o.max_message = 1024;
    o.spin_ns = INT64_MAX;
    dmaq_sub *sub;
    dmaq_pub *pub;
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0, "%s", dmaq_last_error());
    dmaq_lease r;
    uint64_t t0 = mono_ns();
    cr_assert_eq(dmaq_sub_peek(sub, &r, 20 * 1000000LL), DMAQ_ETIMEDOUT);
    expect_waited(t0, 20 * 1000000ull, "peek");
    char msg[1000] = {0};
    while (dmaq_pub_send(pub, msg, sizeof msg, 0) == 0)
        ;
    t0 = mono_ns();
    cr_assert_eq(dmaq_pub_send(pub, msg, sizeof msg, 20 * 1000000LL), DMAQ_ETIMEDOUT, "%s", dmaq_last_error());
    expect_waited(t0, 20 * 1000000ull, "send");
    dmaq_pub_close(pub);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
}

/* A broadcast channel of `capacity` bytes with a subscriber and a publisher,
 * filled with 200-byte messages; returns how many. */
static int open_full(const char *uri, uint64_t capacity, dmaq_sub **sub, dmaq_pub **pub)
{
    dmaq_options o = opts(DMAQ_KIND_BROADCAST);
    o.capacity = capacity;
    cr_assert_eq(dmaq_sub_open(uri, &o, sub), 0);
    cr_assert_eq(dmaq_pub_open(uri, &o, pub), 0);
    char msg[200] = {0};
    int sent = 0;
    while (dmaq_pub_send(*pub, msg, sizeof msg, 0) == 0)
        sent++;
    return sent;
}

Test(wait, blocked_publisher_woken_by_subscriber_in_other_process)
{
    char uri[128];
    unique_uri(uri, sizeof uri, "full");
    dmaq_sub *sub;
    dmaq_pub *pub;
    int sent = open_full(uri, 4096, &sub, &pub);
    char buf[256];
    char last[200] = "last-message";
    pid_t child = fork();
    if (child == 0) /* blocks until the parent's subscriber makes room */
        _exit(dmaq_pub_send(pub, last, sizeof last, -1) == 0 ? 0 : 1);
    cr_assert(wait_asleep(child), "the publisher never went to sleep on its futex");
    size_t len;
    for (int i = 0; i < sent; i++)
        cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), 0);
    pid_t pids[] = {child};
    cr_assert(wait_all(pids, 1, 10), "the blocked publisher was not woken");
    cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &len, 1000000000), 0);
    cr_expect_eq(memcmp(buf, "last-message", 12), 0);
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

/* A publisher that found the ring full waits for an eighth of it to be free,
 * so that it is not woken for every message read; but a subscriber that
 * reads a little and stops must still let it through: it takes the room
 * there is once nobody wakes it, and its message arrives. */
Test(wait, blocked_publisher_takes_the_room_a_paused_subscriber_left)
{
    char uri[128];
    unique_uri(uri, sizeof uri, "paused");
    dmaq_sub *sub;
    dmaq_pub *pub;
    int sent = open_full(uri, 1 << 16, &sub, &pub);
    cr_assert_gt(sent, 16);
    char buf[256];
    pid_t child = fork();
    if (child == 0) {
        dmaq_options so = opts(DMAQ_KIND_BROADCAST);
        so.spin_ns = 0;
        dmaq_pub *sleepy_pub;
        if (dmaq_pub_open(uri, &so, &sleepy_pub) < 0)
            _exit(2);
        _exit(dmaq_pub_send(sleepy_pub, "after-the-pause", 15, 20 * 1000000000LL) == 0 ? 0 : 1);
    }
    cr_assert(wait_asleep(child), "the publisher never went to sleep on its futex");
    size_t len;
    for (int i = 0; i < 2; i++) /* room for one more message, far less than an eighth of the ring */
        cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), 0);
    pid_t pids[] = {child};
    cr_assert(wait_all(pids, 1, 15), "the publisher waited on with room for its message");
    for (int i = 2; i < sent; i++)
        cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), 0);
    cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), 0, "%s", dmaq_last_error());
    cr_expect(len == 15 && memcmp(buf, "after-the-pause", 15) == 0);
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

/* ---- Waking without fences ---------------------------------------------
 * Wakers do not fence; sleepers pair with them through membarrier, or, in a
 * process that cannot use it (DMAQ_NO_MEMBARRIER here), make every waker on
 * the channel fence. Two processes bounce messages with spin_ns = 0 and
 * timeouts of forever, so that every wait sleeps at once, in each of the
 * three combinations; every message must arrive, in order, well before the
 * deadline. (The store-load window a missing barrier opens is nanoseconds
 * wide, and a subscriber behind a visible claim naps at most until its next
 * look for dead peers, so this cannot prove the pairing; it proves each
 * combination works.) Each child sets its environment before its first
 * dmaq call, which is when a process decides. A fourth run has one side
 * open its handles with DMAQ_OPEN_FENCED, the per-channel way to the same. */

#define BOUNCE_DEADLINE_S 120

static long bounce_rounds(void) { return test_messages() / 10 < 5000 ? test_messages() / 10 : 5000; }

static bool open_fenced; /* this child opens with DMAQ_OPEN_FENCED */

static dmaq_options sleepy(uint32_t kind, uint64_t capacity)
{
    dmaq_options o = opts(kind);
    o.capacity = capacity;
    o.spin_ns = 0;
    if (open_fenced)
        o.flags |= DMAQ_OPEN_FENCED;
    return o;
}

static void set_fencing(bool no_membarrier)
{
    if (no_membarrier)
        setenv("DMAQ_NO_MEMBARRIER", "1", 1);
    else
        unsetenv("DMAQ_NO_MEMBARRIER");
}

/* Ping-pong over two queues: data wake-ups. */
static int ping(const char *ping_uri, const char *pong_uri, bool initiator)
{
    dmaq_options o = sleepy(DMAQ_KIND_QUEUE, 1 << 16);
    dmaq_pub *pub;
    dmaq_sub *sub;
    if (dmaq_pub_open(initiator ? ping_uri : pong_uri, &o, &pub) < 0 ||
        dmaq_sub_open(initiator ? pong_uri : ping_uri, &o, &sub) < 0)
        return 1;
    for (long i = 0; i < bounce_rounds(); i++) {
        long got = -1;
        size_t len;
        if (initiator && dmaq_pub_send(pub, &i, sizeof i, -1) < 0)
            return 2;
        if (dmaq_sub_recv(sub, &got, sizeof got, &len, -1) < 0 || len != sizeof got || got != i)
            return 3;
        if (!initiator && dmaq_pub_send(pub, &i, sizeof i, -1) < 0)
            return 4;
    }
    dmaq_pub_close(pub);
    dmaq_sub_close(sub);
    return 0;
}

/* A stream through the smallest ring (4 KiB): the publisher sleeps on space as often
 * as the subscriber sleeps on data. */
static int squeeze(const char *uri, bool publisher)
{
    dmaq_options o = sleepy(DMAQ_KIND_BROADCAST, 4096);
    long n = bounce_rounds() * 4;
    if (publisher) {
        dmaq_pub *pub;
        if (dmaq_pub_open(uri, &o, &pub) < 0 || !wait_subscribers(uri, 1, 30))
            return 1;
        char buf[200] = {0};
        for (long i = 0; i < n; i++) {
            memcpy(buf, &i, sizeof i);
            if (dmaq_pub_send(pub, buf, sizeof i + (size_t)(i * 37 % 190), -1) < 0)
                return 2;
        }
        dmaq_pub_close(pub);
        return 0;
    }
    dmaq_sub *sub;
    if (dmaq_sub_open(uri, &o, &sub) < 0)
        return 1;
    for (long i = 0; i < n; i++) {
        char buf[200];
        long got;
        size_t len;
        if (dmaq_sub_recv(sub, buf, sizeof buf, &len, -1) < 0 || len != sizeof i + (size_t)(i * 37 % 190))
            return 3;
        memcpy(&got, buf, sizeof got);
        if (got != i)
            return 4;
    }
    dmaq_sub_close(sub);
    return 0;
}

static void no_lost_wakeups(bool a_no_membarrier, bool b_no_membarrier, bool a_fenced)
{
    char ping_uri[128], pong_uri[128], squeeze_uri[128];
    unique_uri(ping_uri, sizeof ping_uri, "ping");
    unique_uri(pong_uri, sizeof pong_uri, "pong");
    unique_uri(squeeze_uri, sizeof squeeze_uri, "squeeze");
    pid_t pids[2];
    for (int side = 0; side < 2; side++) {
        pids[side] = fork();
        if (pids[side] == 0) {
            set_fencing(side == 0 ? a_no_membarrier : b_no_membarrier);
            open_fenced = side == 0 && a_fenced;
            int rc = ping(ping_uri, pong_uri, side == 0);
            if (!rc && (rc = squeeze(squeeze_uri, side == 0)) != 0)
                fprintf(stderr, "squeeze (side %d) failed at step %d: %s\n", side, rc, dmaq_last_error());
            _exit(rc);
        }
    }
    cr_expect(wait_all(pids, 2, BOUNCE_DEADLINE_S), "a wake-up was lost (or a peer failed)");
    dmaq_channel_unlink(ping_uri);
    dmaq_channel_unlink(pong_uri);
    dmaq_channel_unlink(squeeze_uri);
}

Test(wait, no_lost_wakeups_with_membarrier) { no_lost_wakeups(false, false, false); }
Test(wait, no_lost_wakeups_without_membarrier) { no_lost_wakeups(true, true, false); }
Test(wait, no_lost_wakeups_mixed) { no_lost_wakeups(false, true, false); }
Test(wait, no_lost_wakeups_fenced_by_option) { no_lost_wakeups(false, false, true); }
