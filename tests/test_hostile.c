/* A hostile or broken process writes garbage into a channel's mapping
 * while a publisher and a subscriber use it. Every call must return (a
 * message, or an error such as DMAQ_ECORRUPT), never crash, never read
 * outside the mapping, never hang. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "harness.h"

#define RUN_NS 1500000000ull
#define CALL_TIMEOUT_NS 5000000

static bool known_code(int rc)
{
    if (rc >= 0)
        return true;
    return strcmp(dmaq_strerror(rc), dmaq_strerror(-9999)) != 0; /* a DMAQ_E* code, not "unknown" */
}

/* Tells the parent this child has its handle open, so the scribbler starts
 * only then: opening a header already scribbled on fails, rightly, and the
 * child would test nothing (valgrind makes the opens slow enough). */
static void opened(int ready_fd)
{
    if (write(ready_fd, "o", 1) != 1)
        _exit(4);
    close(ready_fd);
}

static void publisher(const char *uri, int ready_fd)
{
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_NO_CREATE;
    dmaq_pub *pub;
    if (dmaq_pub_open(uri, &o, &pub) < 0)
        _exit(3);
    opened(ready_fd);
    unsigned char msg[700];
    memset(msg, 0x5a, sizeof msg);
    uint64_t end = mono_ns() + RUN_NS;
    for (unsigned i = 0; mono_ns() < end; i++) {
        int rc;
        if (i % 4 == 3) {
            size_t lens[4] = {i % 50, 16, i % 300, 8}, sent; /* packed on a broadcast channel */
            rc = dmaq_pub_send_many(pub, msg, lens, 4, &sent, CALL_TIMEOUT_NS);
        } else if (i & 1) {
            rc = dmaq_pub_send(pub, msg, i % sizeof msg, CALL_TIMEOUT_NS);
        } else {
            dmaq_lease w;
            rc = dmaq_pub_reserve(pub, i % sizeof msg + 1, &w, CALL_TIMEOUT_NS);
            if (rc == 0) {
                memset(w.data, 0xa5, w.len); /* all of it must be writable */
                rc = (i & 2) ? dmaq_pub_commit(pub, &w, w.len) : dmaq_pub_abort(pub, &w);
            }
        }
        if (!known_code(rc))
            _exit(5);
    }
    dmaq_pub_close(pub);
    _exit(0);
}

static void subscriber(const char *uri, int ready_fd)
{
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_NO_CREATE;
    dmaq_sub *sub;
    if (dmaq_sub_open(uri, &o, &sub) < 0)
        _exit(3);
    opened(ready_fd);
    static unsigned char buf[1 << 16];
    uint64_t end = mono_ns() + RUN_NS, sum = 0;
    for (unsigned i = 0; mono_ns() < end; i++) {
        int rc;
        if (i & 1) {
            size_t len;
            rc = dmaq_sub_recv(sub, buf, sizeof buf, &len, CALL_TIMEOUT_NS);
            if (rc == 0 && len > sizeof buf)
                _exit(6);
        } else {
            dmaq_lease r;
            rc = dmaq_sub_peek(sub, &r, CALL_TIMEOUT_NS);
            if (rc == 0) {
                if (r.len > sizeof buf)
                    _exit(6); /* longer than the channel's max_message */
                for (uint64_t k = 0; k < r.len; k++) /* every byte must be readable */
                    sum += ((volatile unsigned char *)r.data)[k];
                rc = dmaq_sub_release(sub, &r);
            }
        }
        if (!known_code(rc))
            _exit(5);
    }
    dmaq_sub_close(sub);
    _exit(sum == 1 ? 7 : 0); /* (uses sum, so the reads are not optimised away) */
}

/* Write random bytes at random places of the file: header, slots and ring;
 * sometimes a whole record header's worth, sometimes one plausible small
 * number where counters live. */
static void scribbler(const char *path, unsigned seed)
{
    int fd = open(path, O_RDWR);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        _exit(3);
    unsigned char *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        _exit(3);
    uint64_t end = mono_ns() + RUN_NS;
    while (mono_ns() < end) {
        size_t at = (size_t)rand_r(&seed) % ((size_t)st.st_size - 16) & ~(size_t)7;
        uint64_t v = (uint64_t)rand_r(&seed) << 32 | (uint64_t)rand_r(&seed);
        switch (rand_r(&seed) % 4) {
        case 0: v &= 0xffff; break;          /* a small size or index */
        case 1: v = ~0ull - (v & 0xff); break; /* near the top */
        default: break;
        }
        memcpy(p + at, &v, 8);
        if (rand_r(&seed) % 8 == 0)
            memcpy(p + at + 8, &v, 8);
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
    }
    _exit(0);
}

static void survive_garbage(uint32_t kind, uint32_t policy)
{
    char uri[128], path[256];
    for (int round = 0; round < 4; round++) {
        unique_uri(uri, sizeof uri, "hostile");
        shm_file(uri, path, sizeof path);
        dmaq_options o = DMAQ_OPTIONS_INIT;
        o.kind = kind;
        o.policy = policy;
        o.capacity = 1 << 16;
        o.max_message = 1024;
        dmaq_pub *keeper; /* keeps the channel alive between the children's opens */
        cr_assert_eq(dmaq_pub_open(uri, &o, &keeper), 0, "%s", dmaq_last_error());
        pid_t kids[3];
        int ready[2];
        cr_assert_eq(pipe(ready), 0);
        if ((kids[0] = fork()) == 0)
            subscriber(uri, ready[1]);
        if ((kids[1] = fork()) == 0)
            publisher(uri, ready[1]);
        close(ready[1]);
        char c;
        for (int opens = 0; opens < 2 && read(ready[0], &c, 1) == 1; opens++)
            ; /* ends early if a child died before opening: wait_all reports that */
        close(ready[0]);
        if ((kids[2] = fork()) == 0)
            scribbler(path, (unsigned)getpid() * 2654435761u + (unsigned)round);
        const char *what[] = {"subscriber", "publisher", "scribbler"};
        pid_t copy[3] = {kids[0], kids[1], kids[2]};
        bool ok = wait_all(copy, 3, 60);
        cr_expect(ok, "round %d (%s): a child crashed, failed a check or hung; children: %s %d, %s %d, %s %d",
                  round, uri, what[0], kids[0], what[1], kids[1], what[2], kids[2]);
        dmaq_pub_close(keeper);
        dmaq_channel_unlink(uri);
    }
}

Test(hostile, garbage_in_a_queue) { survive_garbage(DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK); }
Test(hostile, garbage_in_a_blocking_broadcast) { survive_garbage(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK); }
Test(hostile, garbage_in_an_overwriting_broadcast) { survive_garbage(DMAQ_KIND_BROADCAST, DMAQ_POLICY_OVERWRITE); }
