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
    uint64_t took = mono_ns() - t0;
    cr_expect_geq(took, 50 * 1000000ull, "returned early, after %llu ns", (unsigned long long)took);
    cr_expect_lt(took, 5 * 1000000000ull, "returned late, after %llu ns", (unsigned long long)took);
    cr_assert_eq(dmaq_sub_peek(sub, &r, 0), DMAQ_EAGAIN);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(uri);
}

Test(wait, blocked_publisher_woken_by_subscriber_in_other_process)
{
    char uri[128];
    unique_uri(uri, sizeof uri, "full");
    dmaq_options o = opts(DMAQ_KIND_BROADCAST);
    o.capacity = 4096;
    dmaq_sub *sub;
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0);
    dmaq_pub *pub;
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0);
    char buf[256] = {0};
    int sent = 0;
    while (dmaq_pub_send(pub, buf, 200, 0) == 0)
        sent++;
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
