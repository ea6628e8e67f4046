/* Helpers for tests that run real processes. */
#ifndef DMAQ_TEST_HARNESS_H
#define DMAQ_TEST_HARNESS_H

#include <dirent.h>
#include <dmaq/dmaq.h>
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* In Criterion tests: `call` returns `code` and dmaq_last_error() says
 * `text`. */
#define expect_error(call, code, text)                                                                       \
    do {                                                                                                     \
        int rc_ = (call);                                                                                    \
        cr_expect_eq(rc_, (code), "%s returned %d (%s), expected %s", #call, rc_, dmaq_strerror(rc_), #code); \
        cr_expect(strstr(dmaq_last_error(), (text)) != NULL, "%s: message '%s' lacks '%s'", #call,           \
                  dmaq_last_error(), (text));                                                                \
    } while (0)

/* A channel name unique to this process and call. */
static inline const char *unique_uri(char *buf, size_t cap, const char *what)
{
    static unsigned counter;
    snprintf(buf, cap, "shm://test-%s-%d-%u", what, (int)getpid(), counter++);
    return buf;
}

/* A TCP port on 127.0.0.1 nothing listens on right now. */
#include <netinet/in.h>
#include <sys/socket.h>
/* The file in /dev/shm that holds the channel at shm://NAME `uri`. */
static inline const char *shm_file(const char *uri, char *buf, size_t cap)
{
    snprintf(buf, cap, "/dev/shm/dmaq.%s", uri + strlen("shm://"));
    return buf;
}

static inline int free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        return -1;
    close(fd);
    return ntohs(sa.sin_port);
}

static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* fork(), the child dying with the test (SIGKILL when its parent ends): a
 * test that fails before it reaps its children must not leave one blocked
 * or spinning forever, holding the runner's output open. */
static inline pid_t fork_bound(void)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0 && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent))
        _exit(127); /* the parent is already gone */
    return pid;
}

/* Start argv[0] (a path) with argv, in a child bound to the test. */
static inline pid_t spawn(char *const argv[])
{
    pid_t pid = fork_bound();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Wait for all `n` children until `deadline_s` seconds from now; kill the
 * rest with SIGKILL after that. Returns true if all exited 0 in time. */
static inline bool wait_all(pid_t *pids, int n, int deadline_s)
{
    uint64_t deadline = mono_ns() + (uint64_t)deadline_s * 1000000000u;
    int left = n;
    bool ok = true;
    while (left > 0) {
        for (int i = 0; i < n; i++) {
            int status;
            if (pids[i] <= 0)
                continue;
            if (waitpid(pids[i], &status, WNOHANG) == pids[i]) {
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                    fprintf(stderr, "child %d ended with status 0x%x\n", (int)pids[i], status);
                    ok = false;
                }
                pids[i] = 0;
                left--;
            }
        }
        if (left && mono_ns() > deadline) {
            fprintf(stderr, "%d children still running at the deadline: killing them\n", left);
            for (int i = 0; i < n; i++)
                if (pids[i] > 0) {
                    kill(pids[i], SIGKILL);
                    waitpid(pids[i], NULL, 0);
                }
            return false;
        }
        if (left)
            sleep_ms(5);
    }
    return ok;
}

/* Wait until the channel has `n` subscribers attached. */
static inline bool wait_subscribers(const char *uri, unsigned n, int deadline_s)
{
    uint64_t deadline = mono_ns() + (uint64_t)deadline_s * 1000000000u;
    dmaq_stat st = {.size = sizeof st};
    while (mono_ns() < deadline) {
        if (dmaq_channel_stat(uri, &st, NULL, 0) >= 0 && st.subscribers >= n)
            return true;
        sleep_ms(2);
    }
    return false;
}

/* Messages per topology in the stress tests: DMAQ_TEST_MESSAGES or 1e6. */
/* The RDMA device's address inside the Soft-RoCE VM (tests/rdma-vm.sh). */
static inline const char *rdma_test_host(void)
{
    const char *ip = getenv("RDMA_VM_IP");
    return ip ? ip : "198.18.0.1";
}

static inline long test_messages(void)
{
    const char *e = getenv("DMAQ_TEST_MESSAGES");
    return e && atol(e) > 0 ? atol(e) : 1000000;
}

/* ---- Helpers for the Criterion tests about channel files ---- */
#ifdef cr_assert
/* A fresh directory for channels, on tmpfs like /dev/shm. */
static inline void make_dir(char *dir, size_t cap)
{
    snprintf(dir, cap, "/dev/shm/dmaq-test-dir-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

static inline void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        unlinkat(dirfd(d), e->d_name, 0);
    if (d)
        closedir(d);
    rmdir(dir);
}

/* Files in `dir` whose name starts with `prefix`. */
static inline int count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static inline dmaq_options in_dir(const char *dir, uint64_t capacity)
{
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.capacity = capacity;
    o.shm_dir = dir;
    return o;
}

/* Open a publisher and a subscriber on `name` in `dir`, then wait to die. */
static inline pid_t attached_child(const char *dir, const char *name)
{
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
        char uri[160];
        snprintf(uri, sizeof uri, "shm://%s", name);
        dmaq_options o = in_dir(dir, 1 << 16);
        dmaq_pub *pub;
        dmaq_sub *sub;
        if (dmaq_pub_open(uri, &o, &pub) < 0 || dmaq_sub_open(uri, &o, &sub) < 0)
            _exit(3);
        if (write(ready[1], "r", 1) != 1)
            _exit(4);
        pause();
    }
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1, "child could not open %s", name);
    close(ready[0]);
    close(ready[1]);
    return pid;
}

#endif

#endif
