/* The life of a channel file: creation killed half way, the directory that
 * holds channels, garbage collection of stale ones, permissions, and a
 * hostile process scribbling over a channel in use. */
#define _GNU_SOURCE /* unshare */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "../core/shm/layout.h"
#include "harness.h"

/* Send one message and read it back: the two handles share one channel. */
static void round_trip(dmaq_pub *pub, dmaq_sub *sub)
{
    cr_assert_eq(dmaq_pub_send(pub, "ping", 4, -1), 0, "%s", dmaq_last_error());
    char buf[8];
    size_t len;
    cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &len, 1000000000), 0, "%s", dmaq_last_error());
    cr_assert_eq(len, 4);
}

/* Field 22 of /proc/self/stat: which process this is, with the pid. */
static unsigned long long own_start_time(void)
{
    FILE *f = fopen("/proc/self/stat", "r");
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    for (int field = 2; field < 22; field++)
        p = strchr(p + 1, ' ');
    return strtoull(p + 1, NULL, 10);
}

/* Which PID namespace we are in, as dmaq names it in temporary files. */
static unsigned long long own_pid_ns(void)
{
    struct stat st;
    cr_assert_eq(stat("/proc/self/ns/pid", &st), 0);
    return (unsigned long long)st.st_ino;
}

/* A creator SIGKILLed at a random moment of creating a big channel never
 * leaves something later opens reject: the next open that may create finds
 * either the finished channel or nothing, and no half-made file survives.
 * Creating 8 MiB takes about 13 ms here (allocating, mapping and touching
 * every page), so kills up to 40 ms in land inside creation and after it. */
#define BIG_CHANNEL (8u << 20)
Test(lifecycle, creator_killed_while_creating)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    unsigned seed = (unsigned)getpid();
    for (int round = 0; round < 30; round++) {
        pid_t child = fork();
        if (child == 0) {
            dmaq_options o = in_dir(dir, BIG_CHANNEL);
            dmaq_pub *pub;
            if (dmaq_pub_open("shm://big", &o, &pub) < 0)
                _exit(3);
            pause();
        }
        struct timespec ts = {0, (long)(rand_r(&seed) % 40000) * 1000};
        nanosleep(&ts, NULL);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);

        dmaq_options o = in_dir(dir, BIG_CHANNEL);
        o.flags = DMAQ_OPEN_NO_CREATE;
        dmaq_sub *sub;
        int rc = dmaq_sub_open("shm://big", &o, &sub);
        cr_assert(rc == 0 || rc == DMAQ_ENOENT, "round %d: open of what a killed creator left: %s", round,
                  dmaq_last_error());
        if (rc == 0)
            dmaq_sub_close(sub);
        o.flags = 0;
        dmaq_pub *pub;
        cr_assert_eq(dmaq_pub_open("shm://big", &o, &pub), 0, "round %d: %s", round, dmaq_last_error());
        cr_assert_eq(dmaq_sub_open("shm://big", &o, &sub), 0, "round %d: %s", round, dmaq_last_error());
        round_trip(pub, sub);
        cr_expect_eq(count_files(dir, ".dmaq-tmp."), 0, "round %d: a dead creator's file is left", round);
        dmaq_sub_close(sub);
        dmaq_pub_close(pub);
        cr_assert_eq(dmaq_channel_gc(dir), 1, "round %d: %s", round, dmaq_last_error());
    }
    cr_expect_eq(count_files(dir, ""), 2, "only . and .. are left");
    remove_dir(dir);
}

/* A file at the channel's name that a dead process left half written (an
 * older library created in place; a hostile process may do the same): an
 * open that may create replaces it at once, one that may not says why. */
Test(lifecycle, half_written_file_of_a_dead_creator)
{
    char dir[64], path[128];
    make_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/dmaq.half", dir);
    pid_t child = fork();
    if (child == 0) {
        struct shm_header h = {0};
        h.meta.magic = SHM_MAGIC;
        h.meta.layout_version = SHM_LAYOUT_VERSION;
        h.meta.creator_pid = getpid();
        h.meta.creator_start = own_start_time();
        h.state = SHM_CREATING;
        int fd = open(path, O_CREAT | O_RDWR, 0600);
        _exit(pwrite(fd, &h, sizeof h, 0) == (ssize_t)sizeof h ? 0 : 1);
    }
    int status;
    waitpid(child, &status, 0);
    cr_assert_eq(status, 0);

    dmaq_options o = in_dir(dir, 1 << 16);
    o.flags = DMAQ_OPEN_NO_CREATE;
    dmaq_sub *sub;
    expect_error(dmaq_sub_open("shm://half", &o, &sub), DMAQ_ECORRUPT, "its creator is gone");
    o.flags = 0;
    dmaq_pub *pub;
    cr_assert_eq(dmaq_pub_open("shm://half", &o, &pub), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_sub_open("shm://half", &o, &sub), 0, "%s", dmaq_last_error());
    round_trip(pub, sub);
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);

    /* No creator recorded at all (an empty file): replaced after the grace
     * period a live creator would have had. */
    dmaq_channel_unlink("shm://half");
    dmaq_channel_gc(dir);
    close(open(path, O_CREAT | O_RDWR, 0600));
    char uri[160];
    snprintf(uri, sizeof uri, "shm://%s/half", dir);
    cr_assert_eq(dmaq_pub_open(uri, NULL, &pub), 0, "%s", dmaq_last_error());
    dmaq_pub_close(pub);
    remove_dir(dir);
}

/* Where channels live: the option, then $DMAQ_SHM_DIR, then /dev/shm; an
 * absolute URI names its own directory, for every call. */
Test(lifecycle, channel_directory)
{
    char env_dir[64], opt_dir[64], path[160], uri[160];
    make_dir(env_dir, sizeof env_dir);
    make_dir(opt_dir, sizeof opt_dir);
    setenv("DMAQ_SHM_DIR", env_dir, 1);
    dmaq_pub *pub, *pub2;
    cr_assert_eq(dmaq_pub_open("shm://here", NULL, &pub), 0, "%s", dmaq_last_error());
    snprintf(path, sizeof path, "%s/dmaq.here", env_dir);
    cr_expect_eq(access(path, F_OK), 0, "no %s", path);
    dmaq_stat st = {.size = sizeof st};
    cr_expect_eq(dmaq_channel_stat("shm://here", &st, NULL, 0), 0, "%s", dmaq_last_error());

    dmaq_options o = in_dir(opt_dir, 0);
    cr_assert_eq(dmaq_pub_open("shm://there", &o, &pub2), 0, "%s", dmaq_last_error());
    snprintf(path, sizeof path, "%s/dmaq.there", opt_dir);
    cr_expect_eq(access(path, F_OK), 0, "the option wins over the environment: no %s", path);
    snprintf(uri, sizeof uri, "shm://%s/there", opt_dir);
    cr_expect_eq(dmaq_channel_stat(uri, &st, NULL, 0), 0, "%s", dmaq_last_error());
    cr_expect_eq(st.publishers, 1);
    cr_expect_eq(dmaq_channel_unlink(uri), 0, "%s", dmaq_last_error());
    cr_expect_neq(access(path, F_OK), 0, "unlink through an absolute URI");
    dmaq_pub_close(pub2);
    dmaq_pub_close(pub);
    cr_expect_eq(dmaq_channel_unlink("shm://here"), 0);

    o.shm_dir = "relative/dir";
    expect_error(dmaq_pub_open("shm://x", &o, &pub), DMAQ_EINVAL, "not an absolute path");
    o.shm_dir = "/nonexistent/dmaq-dir";
    expect_error(dmaq_pub_open("shm://x", &o, &pub), DMAQ_ENOENT, "does not exist");
    expect_error(dmaq_channel_gc("/nonexistent/dmaq-dir"), DMAQ_ENOENT, "does not exist");

    /* A symbolic link planted at a channel's name is never followed. */
    snprintf(path, sizeof path, "%s/dmaq.link", env_dir);
    cr_assert_eq(symlink("/etc/passwd", path), 0);
    expect_error(dmaq_pub_open("shm://link", NULL, &pub), DMAQ_ENOTCHAN, "symbolic link");
    unsetenv("DMAQ_SHM_DIR");
    remove_dir(env_dir);
    remove_dir(opt_dir);
}

/* A channel that does not fit in the directory's file system fails at open
 * with the size asked and the space free; here a 1 MiB tmpfs mounted in a
 * private mount namespace and chosen with the option. */
Test(lifecycle, small_directory_gives_enospc)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", dir, "tmpfs", 0, "size=1m") < 0) {
        rmdir(dir);
        cr_skip_test("needs CAP_SYS_ADMIN to mount a small tmpfs: %s", strerror(errno));
    }
    dmaq_options o = in_dir(dir, 2u << 20);
    dmaq_pub *pub;
    expect_error(dmaq_pub_open("shm://too-big", &o, &pub), DMAQ_ENOSPC, "has 1048576 bytes free");
    cr_expect(strstr(dmaq_last_error(), "needs 2117632"), "%s", dmaq_last_error());
    cr_expect_eq(count_files(dir, ""), 2, "a failed creation left a file");
    o.capacity = 1u << 19;
    cr_assert_eq(dmaq_pub_open("shm://fits", &o, &pub), 0, "%s", dmaq_last_error());
    dmaq_pub_close(pub);
    umount(dir);
    rmdir(dir);
}

static void take_signal(int sig) { (void)sig; }

/* A process that takes signals while it creates channels (a profiler's
 * interval timer, a handler installed without SA_RESTART, a job-control
 * stop and continue) still creates them whole. On Debian 12's kernel a
 * signal fails tmpfs's fallocate with EINTR and undoes it: in the Soft-RoCE
 * VM, every 64 MiB creation failed that way with a 200 us timer, and a
 * subscriber stopped while opening its rdma:// ring failed to open. */
Test(lifecycle, channels_are_created_whole_while_signals_arrive, .timeout = 120)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    enum { CHANNELS = 8 };
    pid_t creator = fork_bound();
    cr_assert_geq(creator, 0);
    if (creator == 0) {
        struct sigaction sa = {.sa_handler = take_signal}; /* no SA_RESTART */
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval every = {{0, 200}, {0, 200}};
        setitimer(ITIMER_REAL, &every, NULL);
        int failed = 0;
        for (int i = 0; i < CHANNELS; i++) {
            char uri[128];
            snprintf(uri, sizeof uri, "shm://%s/signalled-%d", dir, i);
            dmaq_options o = DMAQ_OPTIONS_INIT;
            o.capacity = 32u << 20;
            dmaq_pub *pub;
            dmaq_sub *sub;
            if (dmaq_pub_open(uri, &o, &pub) < 0 || dmaq_sub_open(uri, &o, &sub) < 0) {
                fprintf(stderr, "channel %d: %s\n", i, dmaq_last_error());
                failed++;
                continue;
            }
            dmaq_sub_close(sub);
            dmaq_pub_close(pub);
            dmaq_channel_unlink(uri);
        }
        _exit(failed);
    }
    /* ...while this process stops and continues it, as a shell's job control would. */
    int status;
    while (waitpid(creator, &status, WNOHANG) == 0) {
        kill(creator, SIGSTOP);
        sleep_ms(1);
        kill(creator, SIGCONT);
        sleep_ms(2);
    }
    cr_assert(WIFEXITED(status), "the creator ended with status 0x%x", status);
    cr_expect_eq(WEXITSTATUS(status), 0, "%d of %d creations failed (see above)", WEXITSTATUS(status), CHANNELS);
    cr_expect_eq(count_files(dir, ""), 2, "a creation left a file behind");
    remove_dir(dir);
}

/* gc removes channels no process is attached to, and the half-made files
 * of dead creators; it keeps channels in use and files that are not dmaq's. */
Test(lifecycle, gc_removes_only_stale_channels)
{
    char dir[64], path[160], uri[160];
    make_dir(dir, sizeof dir);
    dmaq_options o = in_dir(dir, 1 << 16);
    dmaq_pub *live_pub, *closed_pub;
    dmaq_sub *live_sub;
    cr_assert_eq(dmaq_pub_open("shm://live", &o, &live_pub), 0);
    cr_assert_eq(dmaq_sub_open("shm://live", &o, &live_sub), 0);
    cr_assert_eq(dmaq_pub_open("shm://closed", &o, &closed_pub), 0);
    dmaq_pub_close(closed_pub);
    pid_t dead = attached_child(dir, "dead");
    pid_t alive = attached_child(dir, "child-live");
    kill(dead, SIGKILL);
    waitpid(dead, NULL, 0);

    snprintf(path, sizeof path, "%s/dmaq.junk", dir);
    FILE *f = fopen(path, "w");
    fputs("not a channel at all", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/.dmaq-tmp.%llu.%d.12345.0.gone", dir, own_pid_ns(), (int)dead);
    close(open(path, O_CREAT | O_RDWR, 0600));
    /* Our pid, but a start time that is not ours: a recycled pid. */
    snprintf(path, sizeof path, "%s/.dmaq-tmp.%llu.%d.1.0.recycled", dir, own_pid_ns(), (int)getpid());
    close(open(path, O_CREAT | O_RDWR, 0600));
    /* A creator in another PID namespace (a container sharing the
     * directory): its pid means nothing here, so it is left alone. */
    char other_ns[160];
    snprintf(other_ns, sizeof other_ns, "%s/.dmaq-tmp.%llu.%d.1.0.elsewhere", dir, own_pid_ns() + 1, (int)dead);
    close(open(other_ns, O_CREAT | O_RDWR, 0600));
    snprintf(path, sizeof path, "%s/.dmaq-tmp.%llu.%d.%llu.0.in-progress", dir, own_pid_ns(), (int)getpid(),
             own_start_time());
    close(open(path, O_CREAT | O_RDWR, 0600));

    dmaq_stat st = {.size = sizeof st};
    snprintf(uri, sizeof uri, "shm://%s/dead", dir);
    cr_assert_eq(dmaq_channel_stat(uri, &st, NULL, 0), 1, "%s", dmaq_last_error());
    cr_expect(st.flags & DMAQ_STAT_STALE, "a channel whose only peer died is stale");
    snprintf(uri, sizeof uri, "shm://%s/child-live", dir);
    cr_assert_eq(dmaq_channel_stat(uri, &st, NULL, 0), 1);
    cr_expect_eq(st.flags & DMAQ_STAT_STALE, 0, "a channel with a live peer is not stale");

    int removed = dmaq_channel_gc(dir);
    cr_expect_eq(removed, 4, "dead, closed and two dead creators' files: got %d (%s)", removed,
                 removed < 0 ? dmaq_last_error() : "");
    cr_expect_eq(count_files(dir, "dmaq."), 3, "live, child-live and junk are kept");
    cr_expect_eq(count_files(dir, ".dmaq-tmp."), 2, "a live creator's file and another namespace's are kept");
    unlink(path);
    unlink(other_ns);
    round_trip(live_pub, live_sub);
    kill(alive, SIGKILL);
    waitpid(alive, NULL, 0);
    dmaq_sub_close(live_sub);
    dmaq_pub_close(live_pub);
    cr_expect_eq(dmaq_channel_gc(dir), 2, "live and child-live once their handles are gone");
    remove_dir(dir);
}

/* A peer whose slot says it lives in another PID namespace cannot be judged
 * from here: it counts as alive, never as stale, and is never reaped. */
Test(lifecycle, peers_of_another_pid_namespace_are_not_judged)
{
    char dir[64], uri[160];
    make_dir(dir, sizeof dir);
    pid_t dead = attached_child(dir, "foreign");
    kill(dead, SIGKILL);
    waitpid(dead, NULL, 0);
    snprintf(uri, sizeof uri, "shm://%s/foreign", dir);
    dmaq_stat st = {.size = sizeof st};
    dmaq_sub_stat sub;
    cr_assert_eq(dmaq_channel_stat(uri, &st, &sub, 1), 1);
    cr_expect_eq(sub.alive, 0, "in our namespace the dead subscriber is seen dead");

    /* Move both its slots to another namespace. */
    char path[160];
    snprintf(path, sizeof path, "%s/dmaq.foreign", dir);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    unsigned char *map = mmap(NULL, SHM_RING_OFFSET, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(map, MAP_FAILED);
    struct shm_slot *slots = (struct shm_slot *)(map + SHM_HEADER_BYTES);
    for (unsigned i = 0; i < DMAQ_MAX_PUBLISHERS + DMAQ_MAX_SUBSCRIBERS; i++)
        if (atomic_load(&slots[i].state) == SLOT_ACTIVE)
            slots[i].pid_ns = own_pid_ns() + 1;
    cr_assert_eq(dmaq_channel_stat(uri, &st, &sub, 1), 1);
    cr_expect_eq(sub.alive, 1, "a peer of another namespace counts as alive");
    cr_expect_eq(st.flags & DMAQ_STAT_STALE, 0);

    /* A publisher here, gated by the foreign subscriber, waits and reaps
     * (a subscriber of our own namespace would be freed): it must keep
     * waiting until its timeout, and both foreign slots stay taken. */
    dmaq_options o = in_dir(dir, 0);
    dmaq_pub *mine;
    cr_assert_eq(dmaq_pub_open(uri, &o, &mine), 0, "%s", dmaq_last_error());
    static unsigned char block[1024];
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++)
        rc = dmaq_pub_send(mine, block, sizeof block, 300000000);
    cr_expect_eq(rc, DMAQ_ETIMEDOUT, "the ring never filled: %s", dmaq_last_error());
    cr_assert_eq(dmaq_channel_stat(uri, &st, NULL, 0), 1, "the foreign subscriber was reaped");
    cr_expect_eq(st.publishers, 2, "the foreign publisher was reaped");
    dmaq_pub_close(mine);
    munmap(map, SHM_RING_OFFSET);
    close(fd);
    remove_dir(dir);
}

/* gc racing processes that open a channel nobody else holds: every open
 * pair must land on one channel, never one on a file gc just removed. */
Test(lifecycle, gc_racing_opens)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            dmaq_options o = in_dir(dir, 1 << 16);
            for (int i = 0; i < 300; i++) {
                dmaq_sub *sub;
                dmaq_pub *pub;
                if (dmaq_sub_open("shm://raced", &o, &sub) < 0 || dmaq_pub_open("shm://raced", &o, &pub) < 0) {
                    fprintf(stderr, "open: %s\n", dmaq_last_error());
                    _exit(3);
                }
                char buf[8];
                size_t len;
                if (dmaq_pub_send(pub, "x", 1, -1) < 0 || dmaq_sub_recv(sub, buf, sizeof buf, &len, 2000000000) < 0) {
                    fprintf(stderr, "round %d: %s\n", i, dmaq_last_error());
                    _exit(4);
                }
                dmaq_pub_close(pub);
                dmaq_sub_close(sub);
            }
            _exit(0);
        }
    }
    int running = 2;
    while (running) {
        cr_assert_geq(dmaq_channel_gc(dir), 0, "%s", dmaq_last_error());
        for (int k = 0; k < 2; k++) {
            int status;
            if (kids[k] > 0 && waitpid(kids[k], &status, WNOHANG) == kids[k]) {
                cr_expect_eq(status, 0, "child %d: status 0x%x", k, status);
                kids[k] = 0;
                running--;
            }
        }
    }
    remove_dir(dir);
}

/* Files are 0600 unless asked otherwise, whatever the umask; another user
 * cannot open a 0600 channel, and can open a 0666 one. */
Test(lifecycle, permissions)
{
    char dir[64], path[160];
    make_dir(dir, sizeof dir);
    chmod(dir, 01777);
    mode_t old = umask(0);
    dmaq_options o = in_dir(dir, 1 << 16);
    dmaq_pub *priv, *shared;
    cr_assert_eq(dmaq_pub_open("shm://private", &o, &priv), 0);
    o.mode = 0666;
    cr_assert_eq(dmaq_pub_open("shm://shared", &o, &shared), 0);
    umask(old);
    struct stat st;
    snprintf(path, sizeof path, "%s/dmaq.private", dir);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/dmaq.shared", dir);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0666);
    if (geteuid() != 0) {
        dmaq_pub_close(priv);
        dmaq_pub_close(shared);
        remove_dir(dir);
        cr_skip_test("needs root to drop to another user");
    }
    pid_t child = fork();
    if (child == 0) {
        if (setgid(65534) < 0 || setuid(65534) < 0)
            _exit(10);
        dmaq_options co = in_dir(dir, 0);
        co.flags = DMAQ_OPEN_NO_CREATE;
        dmaq_sub *sub;
        int rc = dmaq_sub_open("shm://private", &co, &sub);
        if (rc != DMAQ_EACCES || !strstr(dmaq_last_error(), "permission denied"))
            _exit(11);
        if (dmaq_sub_open("shm://shared", &co, &sub) != 0)
            _exit(12);
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child as nobody: status 0x%x", status);
    dmaq_pub_close(priv);
    dmaq_pub_close(shared);
    remove_dir(dir);
}

Test(lifecycle, names_cannot_escape_the_directory)
{
    dmaq_pub *pub;
    const char *bad[] = {"shm://../etc/x", "shm://..", "shm://a/../b", "shm://a\\b", "shm://a b", "shm://sub/x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = dmaq_pub_open(bad[i], NULL, &pub);
        cr_expect_eq(rc, DMAQ_EINVAL, "%s gave %d: %s", bad[i], rc, dmaq_last_error());
    }
    /* An absolute URI chooses a directory, but the file is still dmaq.NAME. */
    expect_error(dmaq_pub_open("shm:///etc/..", NULL, &pub), DMAQ_EINVAL, "may not start with '.'");
    expect_error(dmaq_pub_open("shm:///etc/", NULL, &pub), DMAQ_EINVAL, "empty");
}
