/*
 * tcp:// beyond the stress matrix (test_stress_tcp): every error a user can
 * cause, keys, leases and their metadata, hostile peers, peers killed with
 * SIGKILL or stopped, and (in network namespaces joined by a veth pair, when
 * this process may create them) a subscriber on another "host" whose link is
 * cut while traffic flows.
 *
 * Built again as test_rdma (DMAQ_TEST_RDMA) for rdma://, which runs the same
 * channel code over RDMA: everything but what needs the kernel's TCP
 * (hostile peers speak raw TCP; network namespaces cut veth links), on the
 * Soft-RoCE device of the VM tests/rdma-vm.sh boots, at $RDMA_VM_IP, plus
 * what is RDMA's own: rings on huge pages, and a locked-memory limit.
 */
#define _GNU_SOURCE /* unshare */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "../core/tcp/frame.c" /* to speak the protocol, and break it, on purpose */
#include <dmaq/transport.h>

#include "harness.h"
#include "payload.h"

#define PEER DMAQ_TEST_PEER
#define SEC 1000000000LL

#ifdef DMAQ_TEST_RDMA
#define SCHEME "rdma"
#define HOST rdma_test_host()
#else
#define SCHEME "tcp"
#define HOST "127.0.0.1"
#endif

static void tcp_uri(char *buf, size_t cap, const char *host, int port, const char *name)
{
    snprintf(buf, cap, SCHEME "://%s:%d/%s", host, port, name);
}

static dmaq_options bind_opts(uint32_t kind, uint32_t policy)
{
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.kind = kind;
    o.policy = policy;
    o.capacity = 1 << 16;
    o.max_message = 1024;
    o.flags = DMAQ_OPEN_BIND;
    return o;
}

/* ---- errors ---- */

#ifdef DMAQ_TEST_RDMA
/* Inside the VM rdma:// is there; on a machine without an RDMA device (this
 * one: ctest runs this test here too) it says why and refuses to open. */
Test(rdma, availability)
{
    int available = dmaq_transport_available("rdma");
    if (getenv("RDMA_VM")) {
        cr_assert_eq(available, 1, "%s", dmaq_last_error());
        return;
    }
    cr_assert_eq(available, 0, "an RDMA device outside the VM?");
    cr_expect(strstr(dmaq_last_error(), "no usable RDMA device"), "%s", dmaq_last_error());
    dmaq_sub *s;
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_BIND;
    expect_error(dmaq_sub_open("rdma://127.0.0.1:7000/x", &o, &s), DMAQ_ESCHEME, "rdma:// is unavailable here");
    expect_error(dmaq_sub_open("rdma://127.0.0.1:7000/x", NULL, &s), DMAQ_ESCHEME, "rdma:// is unavailable here");
}

/* The number after "field:" in a /proc file such as /proc/meminfo. */
static long proc_field(const char *path, const char *field)
{
    FILE *f = fopen(path, "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

static long meminfo(const char *field) { return proc_field("/proc/meminfo", field); }

/* A broadcast channel `name` bound here, and a subscriber connected to it. */
static void bind_and_connect(char *uri, size_t cap, const char *name, dmaq_pub **pub, dmaq_sub **sub)
{
    tcp_uri(uri, cap, HOST, free_tcp_port(), name);
    dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
    cr_assert_eq(dmaq_pub_open(uri, &o, pub), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_sub_open(uri, NULL, sub), 0, "%s", dmaq_last_error());
}

/* Where the system has huge pages to give (tests/rdma-guest.sh reserves
 * some for this binary), each end of a connection registers its rings on
 * them; closing gives them back. */
Test(rdma, rings_are_on_huge_pages_when_the_system_has_some, .timeout = 60)
{
    if (!getenv("RDMA_VM"))
        cr_skip_test("rdma:// only runs in the VM");
    long total = meminfo("HugePages_Total");
    cr_assert_gt(total, 1, "no huge pages reserved (tests/rdma-guest.sh reserves them)");
    long before = meminfo("HugePages_Free") - meminfo("HugePages_Rsvd");
    char uri[128];
    dmaq_pub *pub;
    dmaq_sub *sub;
    bind_and_connect(uri, sizeof uri, "huge", &pub, &sub);
    cr_assert(wait_subscribers(uri, 1, 30), "the subscriber did not attach");
    long during = meminfo("HugePages_Free") - meminfo("HugePages_Rsvd");
    cr_expect_geq(before - during, 2, "huge pages free: %ld before the connection, %ld with it", before, during);
    cr_assert_eq(dmaq_pub_send(pub, "x", 1, 10 * SEC), 0, "%s", dmaq_last_error());
    dmaq_lease l;
    cr_assert_eq(dmaq_sub_peek(sub, &l, 10 * SEC), 0, "%s", dmaq_last_error());
    dmaq_sub_release(sub, &l);
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    long after = meminfo("HugePages_Free") - meminfo("HugePages_Rsvd");
    cr_expect_eq(after, before, "huge pages free: %ld before, %ld after closing", before, after);
}

/* Memory this process has registered (pinned) for RDMA, in KiB. */
static long pinned_kib(void) { return proc_field("/proc/self/status", "VmPin"); }

/* Limit locked memory to `kib` the way an unprivileged process has it:
 * root's CAP_IPC_LOCK (the VM runs the tests as root) ignores the limit. */
static void limit_locked_memory(long kib)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    cr_assert_eq(syscall(SYS_capget, &h, d), 0, "capget: %s", strerror(errno));
    for (int i = 0; i < 2; i++) {
        uint32_t bit = i == CAP_IPC_LOCK / 32 ? 1u << (CAP_IPC_LOCK % 32) : 0;
        d[i].effective &= ~bit;
        d[i].permitted &= ~bit;
        d[i].inheritable &= ~bit;
    }
    cr_assert_eq(syscall(SYS_capset, &h, d), 0, "capset: %s", strerror(errno));
    struct rlimit r = {(rlim_t)kib << 10, (rlim_t)kib << 10};
    cr_assert_eq(setrlimit(RLIMIT_MEMLOCK, &r), 0, "setrlimit: %s", strerror(errno));
}

/* Short of locked memory, a connection registers the smallest rings
 * (64 KiB each way) and works; shorter still, the end that cannot register
 * (this process's, or the host's, which says why in its refusal) makes the
 * open fail with DMAQ_ENOMEM and a message naming the limit. Binding and
 * connecting in this one process: both ends count against its limit. */
Test(rdma, short_locked_memory_means_small_rings_then_a_clear_error, .timeout = 60)
{
    if (!getenv("RDMA_VM"))
        cr_skip_test("rdma:// only runs in the VM");
    long base = pinned_kib();
    cr_assert_geq(base, 0, "no VmPin in /proc/self/status");
    /* Two ends of 2 x 64 KiB and a 4 KiB page each fit; 2 x 256 KiB do not. */
    limit_locked_memory(base + 400);
    char uri[128];
    dmaq_pub *pub;
    dmaq_sub *sub;
    /* (Attached once open returns; dmaq_channel_stat would need a
     * connection of its own.) */
    bind_and_connect(uri, sizeof uri, "memlock", &pub, &sub);
    long pinned = pinned_kib() - base;
    cr_expect(pinned >= 2 * 132 && pinned < 2 * 516, "%ld KiB registered for two ends of 64 KiB rings", pinned);
    char msg[1000];
    for (int i = 0; i < 300; i++) { /* several times around the small rings */
        memset(msg, i, sizeof msg);
        cr_assert_eq(dmaq_pub_send(pub, msg, sizeof msg, 10 * SEC), 0, "%s", dmaq_last_error());
        char got[1000];
        size_t len;
        cr_assert_eq(dmaq_sub_recv(sub, got, sizeof got, &len, 10 * SEC), 0, "%s", dmaq_last_error());
        cr_assert(len == sizeof msg && memcmp(got, msg, len) == 0, "message %d damaged", i);
    }
    dmaq_sub_close(sub);
    for (int i = 0; i < 1000 && pinned_kib() > base; i++)
        usleep(10000); /* the host's end goes with its connection thread */
    cr_assert_eq(pinned_kib(), base, "the closed connection's rings are still registered");
    /* One end's worth: the connecting end registers, the host cannot. */
    limit_locked_memory(base + 200);
    expect_error(dmaq_sub_open(uri, NULL, &sub), DMAQ_ENOMEM, "RLIMIT_MEMLOCK");
    /* Less than one end's worth: this process cannot register. */
    limit_locked_memory(base + 64);
    expect_error(dmaq_sub_open(uri, NULL, &sub), DMAQ_ENOMEM, "RLIMIT_MEMLOCK");
    dmaq_pub_close(pub);
}

/* Publish 1.25 MiB of 32 KiB messages through an rdma:// channel bound here
 * (DMAQ_FORWARD_HERE set to `forward_here` first), read by a local and a
 * connecting subscriber, from a connecting publisher, with DMAQ_RDMA_STATS
 * set and stderr caught in a file; returns how many connection ends said
 * at close that they sent at least half of it in place, and what they said
 * in `seen` (1024 bytes). */
static int ends_sending_in_place(const char *forward_here, char *seen)
{
    char uri[128], log[64];
    snprintf(log, sizeof log, "/tmp/dmaq-stats-%d.log", (int)getpid());
    setenv("DMAQ_RDMA_STATS", "1", 1);
    setenv("DMAQ_FORWARD_HERE", forward_here, 1);
    fflush(stderr);
    int saved_stderr = dup(2), fd = open(log, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    cr_assert(saved_stderr >= 0 && fd >= 0 && dup2(fd, 2) == 2);
    close(fd);

    tcp_uri(uri, sizeof uri, HOST, free_tcp_port(), "in-place");
    dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
    o.capacity = 1u << 20;
    o.max_message = 65536;
    dmaq_sub *local, *remote;
    dmaq_pub *pub;
    cr_assert_eq(dmaq_sub_open(uri, &o, &local), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_pub_open(uri, NULL, &pub), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_sub_open(uri, NULL, &remote), 0, "%s", dmaq_last_error());
    cr_assert(wait_subscribers(uri, 2, 30), "the remote subscriber did not attach");
    enum { COUNT = 40, SIZE = 32768 }; /* 1.25 MiB: around every ring at least once */
    static unsigned char msg[SIZE], got[SIZE];
    for (int i = 0; i < COUNT; i++) {
        memset(msg, i, sizeof msg);
        cr_assert_eq(dmaq_pub_send(pub, msg, sizeof msg, 10 * SEC), 0, "%s", dmaq_last_error());
        dmaq_sub *readers[] = {local, remote};
        for (int r = 0; r < 2; r++) {
            size_t len;
            cr_assert_eq(dmaq_sub_recv(readers[r], got, sizeof got, &len, 10 * SEC), 0, "%s", dmaq_last_error());
            cr_assert(len == SIZE && memcmp(got, msg, SIZE) == 0, "message %d damaged", i);
        }
    }
    dmaq_sub_close(remote);
    dmaq_pub_close(pub);
    dmaq_sub_close(local); /* after the host's connection threads: their ends have closed too */

    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    FILE *f = fopen(log, "r");
    cr_assert_not_null(f);
    char line[256];
    int ends = 0;
    seen[0] = 0;
    while (fgets(line, sizeof line, f)) {
        strncat(seen, line, 1023 - strlen(seen));
        unsigned long long sent, in_place;
        if (sscanf(line, "dmaq rdma: connection closed: %llu bytes sent, %llu of them in place", &sent, &in_place) ==
                2 &&
            in_place >= COUNT * SIZE / 2)
            ends++;
    }
    fclose(f);
    unlink(log);
    return ends;
}

/* A message of 4 KiB or more goes to the NIC from where it lies, not
 * copied into the connection's own send ring: from a connecting
 * publisher's ring (its write lease is a slot of a registered send ring)
 * and from the host's ring, whether a forwarder thread sends it
 * (DMAQ_FORWARD_HERE=0) or a publisher's thread does that for an idle one
 * (=1). In each case two ends say so: the publisher's end of its
 * connection, and the host's end of the subscriber's. */
Test(rdma, big_messages_go_in_place_from_registered_rings, .timeout = 60)
{
    if (!getenv("RDMA_VM"))
        cr_skip_test("rdma:// only runs in the VM");
    char seen[1024];
    int ends = ends_sending_in_place("0", seen);
    cr_expect_eq(ends, 2, "forwarder threads: %d connection ends sent big messages in place, not 2:\n%s", ends, seen);
    ends = ends_sending_in_place("1", seen);
    cr_expect_eq(ends, 2, "publishers forwarding: %d connection ends sent big messages in place, not 2:\n%s", ends,
                 seen);
}
#endif

Test(tcp_errors, malformed_addresses)
{
    dmaq_sub *s;
    expect_error(dmaq_sub_open(SCHEME "://127.0.0.1/x", NULL, &s), DMAQ_EINVAL, "has no port");
    expect_error(dmaq_sub_open(SCHEME "://127.0.0.1:70000/x", NULL, &s), DMAQ_EINVAL, "port must be a number");
    expect_error(dmaq_sub_open(SCHEME "://127.0.0.1:http/x", NULL, &s), DMAQ_EINVAL, "port must be a number");
    expect_error(dmaq_sub_open(SCHEME "://127.0.0.1:7000", NULL, &s), DMAQ_EINVAL, "has no channel name");
    expect_error(dmaq_sub_open(SCHEME "://127.0.0.1:7000/", NULL, &s), DMAQ_EINVAL, "channel name is empty");
    expect_error(dmaq_sub_open(SCHEME "://127.0.0.1:7000/a b", NULL, &s), DMAQ_EINVAL, "character 0x20");
    expect_error(dmaq_sub_open(SCHEME "://[::1/x", NULL, &s), DMAQ_EINVAL, "expected [IPV6]:PORT/NAME");
    expect_error(dmaq_sub_open(SCHEME "://no-such-host.invalid:7000/x", NULL, &s), DMAQ_EINVAL, "cannot resolve");
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = 0x80;
    expect_error(dmaq_sub_open(SCHEME "://127.0.0.1:7000/x", &o, &s), DMAQ_EINVAL, "unknown flags");
    o.flags = 0;
    o.peer_timeout_ns = 1000;
    expect_error(dmaq_sub_open(SCHEME "://127.0.0.1:7000/x", &o, &s), DMAQ_EINVAL, "below the minimum");
    o.peer_timeout_ns = 0;
    o.key = "";
    expect_error(dmaq_sub_open(SCHEME "://127.0.0.1:7000/x", &o, &s), DMAQ_EINVAL, "key must be");
    expect_error(dmaq_channel_unlink(SCHEME "://127.0.0.1:7000/x"), DMAQ_EINVAL, "ends when the last handle");
    dmaq_pub *p;
    o = (dmaq_options)DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_BIND;
    expect_error(dmaq_pub_open("shm://x", &o, &p), DMAQ_EINVAL, "unknown flags");
}

Test(tcp_errors, nothing_listens)
{
    char uri[128];
    tcp_uri(uri, sizeof uri, HOST, free_tcp_port(), "x");
    dmaq_sub *s;
    dmaq_pub *p;
    char why[64];
    snprintf(why, sizeof why, "nothing listens at %s", HOST);
    expect_error(dmaq_sub_open(uri, NULL, &s), DMAQ_ENOENT, why);
    expect_error(dmaq_pub_open(uri, NULL, &p), DMAQ_ENOENT, why);
    dmaq_stat st = {.size = sizeof st};
    expect_error(dmaq_channel_stat(uri, &st, NULL, 0), DMAQ_ENOENT, "nothing listens");
}

Test(tcp_errors, wrong_channel_kind_and_shape)
{
    int port = free_tcp_port();
    char uri[128], other[128];
    tcp_uri(uri, sizeof uri, HOST, port, "orders");
    tcp_uri(other, sizeof other, HOST, port, "quotes");
    dmaq_options o = bind_opts(DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK);
    dmaq_pub *host;
    cr_assert_eq(dmaq_pub_open(uri, &o, &host), 0, "%s", dmaq_last_error());
    dmaq_sub *s;
    expect_error(dmaq_sub_open(other, NULL, &s), DMAQ_ENOENT, "no channel 'quotes' is bound at");
    dmaq_options want = DMAQ_OPTIONS_INIT;
    want.kind = DMAQ_KIND_BROADCAST;
    expect_error(dmaq_sub_open(uri, &want, &s), DMAQ_EINCOMPAT, "is a queue, opened as broadcast");
    want.kind = 0;
    want.capacity = 1 << 20;
    expect_error(dmaq_sub_open(uri, &want, &s), DMAQ_EINCOMPAT, "has capacity 65536");
    /* A second binding handle in this process joins the same channel... */
    dmaq_sub *local;
    o.flags = DMAQ_OPEN_BIND;
    cr_assert_eq(dmaq_sub_open(uri, &o, &local), 0, "%s", dmaq_last_error());
    /* ...but not with another shape. */
    o.kind = DMAQ_KIND_BROADCAST;
    expect_error(dmaq_sub_open(uri, &o, &s), DMAQ_EINCOMPAT, "created as queue");
    dmaq_sub_close(local);
    dmaq_pub_close(host);
    expect_error(dmaq_sub_open(uri, NULL, &s), DMAQ_ENOENT, "nothing listens");
}

/* A connecting handle keeps what it receives in a ring of its own, in
 * $DMAQ_SHM_DIR: when that has no room, the open says so (and not what
 * removing the half-made ring's name then found). The directory is a 1 MiB
 * tmpfs in a private mount namespace; the subscriber's ring needs 2 MiB. */
Test(tcp_errors, a_client_whose_ring_does_not_fit_says_so)
{
    char uri[128], dir[64];
    tcp_uri(uri, sizeof uri, HOST, free_tcp_port(), "wide");
    dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
    o.capacity = 1u << 20;
    dmaq_pub *host;
    cr_assert_eq(dmaq_pub_open(uri, &o, &host), 0, "%s", dmaq_last_error());
    make_dir(dir, sizeof dir);
    if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", dir, "tmpfs", 0, "size=1m") < 0) {
        rmdir(dir);
        cr_skip_test("needs CAP_SYS_ADMIN to mount a small tmpfs: %s", strerror(errno));
    }
    char cmd[512], out[1024] = "";
    snprintf(cmd, sizeof cmd, "DMAQ_SHM_DIR=%s %s sub %s 1 /dev/null 2>&1", dir, PEER, uri);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int status = pclose(p);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 2, "the subscriber did not fail to open: %s", out);
    cr_expect(strstr(out, "bytes free, the channel needs"), "not the reason: %s", out);
    umount(dir);
    rmdir(dir);
    dmaq_pub_close(host);
}

/* dmaq_sub_memory (transport.h) tells a transport where the leases of an
 * shm:// handle lie, for it to register them with a NIC once; a handle of
 * another transport, or a NULL, is refused. */
Test(tcp_errors, only_shm_handles_lend_their_memory)
{
    char shm[128], net[128];
    unique_uri(shm, sizeof shm, "memory");
    dmaq_sub *sub, *bound;
    dmaq_pub *pub;
    cr_assert_eq(dmaq_sub_open(shm, NULL, &sub), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_pub_open(shm, NULL, &pub), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_pub_send(pub, "lent", 4, 0), 0, "%s", dmaq_last_error());
    dmaq_lease l;
    cr_assert_eq(dmaq_sub_peek(sub, &l, 0), 0, "%s", dmaq_last_error());
    const void *base;
    size_t len;
    cr_assert_eq(dmaq_sub_memory(sub, &base, &len), 0, "%s", dmaq_last_error());
    const char *p = l.data, *b = base;
    cr_expect(p >= b && p + l.len <= b + len, "the lease is not inside the %zu bytes lent", len);
    dmaq_sub_release(sub, &l);
    expect_error(dmaq_sub_memory(NULL, &base, &len), DMAQ_EINVAL, "sub is NULL");
    expect_error(dmaq_sub_memory(sub, NULL, &len), DMAQ_EINVAL, "base is NULL");
    expect_error(dmaq_sub_memory(sub, &base, NULL), DMAQ_EINVAL, "len is NULL");
    tcp_uri(net, sizeof net, HOST, free_tcp_port(), "memory");
    dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
    cr_assert_eq(dmaq_sub_open(net, &o, &bound), 0, "%s", dmaq_last_error());
    expect_error(dmaq_sub_memory(bound, &base, &len), DMAQ_EINVAL, "not shm://");
    dmaq_sub_close(bound);
    dmaq_pub_close(pub);
    dmaq_sub_close(sub);
    dmaq_channel_unlink(shm);
}

Test(tcp_errors, wrong_key_refused)
{
    int port = free_tcp_port();
    char uri[128];
    tcp_uri(uri, sizeof uri, HOST, port, "secret");
    dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
    o.key = "correct horse";
    dmaq_pub *host;
    cr_assert_eq(dmaq_pub_open(uri, &o, &host), 0, "%s", dmaq_last_error());
    dmaq_options c = DMAQ_OPTIONS_INIT;
    dmaq_sub *s;
    expect_error(dmaq_sub_open(uri, &c, &s), DMAQ_EACCES, "wrong or missing key");
    c.key = "battery staple";
    expect_error(dmaq_sub_open(uri, &c, &s), DMAQ_EACCES, "wrong or missing key");
    dmaq_pub *p;
    expect_error(dmaq_pub_open(uri, &c, &p), DMAQ_EACCES, "wrong or missing key");
    c.key = "correct horse";
    cr_assert_eq(dmaq_sub_open(uri, &c, &s), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_pub_send(host, "sealed", 6, SEC), 0);
    char buf[16];
    size_t len;
    cr_assert_eq(dmaq_sub_recv(s, buf, sizeof buf, &len, 10 * SEC), 0, "%s", dmaq_last_error());
    cr_expect(len == 6 && memcmp(buf, "sealed", 6) == 0);
    dmaq_sub_close(s);
    dmaq_pub_close(host);

    /* A host without the key cannot prove it knows it. */
    o.key = NULL;
    cr_assert_eq(dmaq_pub_open(uri, &o, &host), 0, "%s", dmaq_last_error());
    expect_error(dmaq_sub_open(uri, &c, &s), DMAQ_EACCES, "could not prove it knows the channel's key");
    dmaq_pub_close(host);
}

/* ---- leases ---- */

Test(tcp, leases_carry_the_hosts_metadata)
{
    int port = free_tcp_port();
    char uri[128];
    tcp_uri(uri, sizeof uri, HOST, port, "meta");
    dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
    dmaq_sub *host;
    cr_assert_eq(dmaq_sub_open(uri, &o, &host), 0, "%s", dmaq_last_error());
    dmaq_sub *remote;
    cr_assert_eq(dmaq_sub_open(uri, NULL, &remote), 0, "%s", dmaq_last_error());
    dmaq_pub *pub;
    cr_assert_eq(dmaq_pub_open(uri, NULL, &pub), 0, "%s", dmaq_last_error());
    dmaq_lease w;
    cr_assert_eq(dmaq_pub_reserve(pub, 100, &w, SEC), 0, "%s", dmaq_last_error());
    memset(w.data, 'z', 100);
    cr_assert_eq(dmaq_pub_commit(pub, &w, 100), 0);
    cr_assert_eq(dmaq_pub_send(pub, "second", 6, SEC), 0);

    dmaq_lease a, b;
    cr_assert_eq(dmaq_sub_peek(host, &a, 10 * SEC), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_sub_peek(remote, &b, 10 * SEC), 0, "%s", dmaq_last_error());
    cr_expect_eq(b.len, 100);
    cr_expect_eq(((char *)b.data)[99], 'z');
    cr_expect_eq(b.seq, a.seq, "the remote subscriber sees the host's sequence number");
    cr_expect_eq(b.timestamp_ns, a.timestamp_ns);
    cr_expect_eq(b.publisher_id, a.publisher_id);
    cr_expect_eq(b.publisher_id, dmaq_pub_id(pub));
    expect_error(dmaq_sub_peek(remote, &b, 0), DMAQ_EBUSY, "");
    cr_expect_eq(dmaq_sub_release(remote, &b), 0);
    expect_error(dmaq_sub_release(remote, &b), DMAQ_ELEASE, "");
    cr_expect_eq(dmaq_sub_release(host, &a), 0);

    /* A message too big for the buffer stays unread. */
    char small[4];
    size_t len = 0;
    expect_error(dmaq_sub_recv(remote, small, sizeof small, &len, 10 * SEC), DMAQ_EMSGSIZE, "does not fit");
    cr_expect_eq(len, 6);
    char big[16];
    cr_assert_eq(dmaq_sub_recv(remote, big, sizeof big, &len, SEC), 0, "%s", dmaq_last_error());
    cr_expect(len == 6 && memcmp(big, "second", 6) == 0);
    expect_error(dmaq_sub_recv(remote, big, sizeof big, &len, 50000000), DMAQ_ETIMEDOUT, "");

    dmaq_stat st = {.size = sizeof st};
    dmaq_sub_stat subs[4];
    cr_expect_eq(dmaq_channel_stat(uri, &st, subs, 4), 2, "%s", dmaq_last_error());
    cr_expect_eq(st.published, 2);
    cr_expect_eq(st.kind, DMAQ_KIND_BROADCAST);
    cr_expect_eq(st.capacity, 1 << 16);
    dmaq_pub_close(pub);
    dmaq_sub_close(remote);
    dmaq_sub_close(host);
}

/* ---- encodings ---- */

static void round_trip(uint32_t flags)
{
    int port = free_tcp_port();
    char uri[128];
    tcp_uri(uri, sizeof uri, HOST, port, "sealed");
    dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
    o.max_message = 8192;
    o.flags |= flags;
    o.key = "k3y";
    dmaq_sub *host;
    cr_assert_eq(dmaq_sub_open(uri, &o, &host), 0, "%s", dmaq_last_error());
    dmaq_options c = DMAQ_OPTIONS_INIT;
    c.key = "k3y";
    c.flags = flags & DMAQ_OPEN_ENCRYPT; /* a peer may insist on encryption */
    dmaq_sub *remote;
    dmaq_pub *pub;
    cr_assert_eq(dmaq_sub_open(uri, &c, &remote), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_pub_open(uri, &c, &pub), 0, "%s", dmaq_last_error());
    /* empty, small, compressible, incompressible and maximal messages */
    static unsigned char msgs[5][8192];
    size_t lens[5] = {0, 10, 600, 1000, 8192};
    uint64_t rng = 99;
    for (int i = 0; i < 5; i++)
        for (size_t j = 0; j < lens[i]; j++)
            msgs[i][j] = i == 3 ? (unsigned char)rng_next(&rng) : (unsigned char)(j / 100);
    dmaq_sub *readers[2] = {host, remote};
    for (int round = 0; round < 20; round++) { /* a round at a time: the ring holds less than all */
        for (int i = 0; i < 5; i++)
            cr_assert_eq(dmaq_pub_send(pub, msgs[i], lens[i], 10 * SEC), 0, "%s", dmaq_last_error());
        for (int r = 0; r < 2; r++)
            for (int i = 0; i < 5; i++) {
                dmaq_lease l;
                cr_assert_eq(dmaq_sub_peek(readers[r], &l, 10 * SEC), 0, "%s", dmaq_last_error());
                cr_assert_eq(l.len, lens[i], "reader %d, message %d: %llu bytes", r, i, (unsigned long long)l.len);
                cr_assert(memcmp(l.data, msgs[i], lens[i]) == 0, "reader %d, message %d differs", r, i);
                dmaq_sub_release(readers[r], &l);
            }
    }
    dmaq_pub_close(pub);
    dmaq_sub_close(remote);
    dmaq_sub_close(host);
}

Test(tcp, encrypted_channels_round_trip) { round_trip(DMAQ_OPEN_ENCRYPT); }
Test(tcp, compressed_channels_round_trip) { round_trip(DMAQ_OPEN_COMPRESS); }
Test(tcp, encrypted_and_compressed_channels_round_trip) { round_trip(DMAQ_OPEN_ENCRYPT | DMAQ_OPEN_COMPRESS); }

Test(tcp_errors, encryption_needs_a_key_and_can_be_insisted_on)
{
    int port = free_tcp_port();
    char uri[128];
    tcp_uri(uri, sizeof uri, HOST, port, "clear");
    dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
    o.flags |= DMAQ_OPEN_ENCRYPT;
    dmaq_pub *host;
    expect_error(dmaq_pub_open(uri, &o, &host), DMAQ_EINVAL, "DMAQ_OPEN_ENCRYPT needs a key");
    o.flags &= ~DMAQ_OPEN_ENCRYPT;
    o.key = "k";
    cr_assert_eq(dmaq_pub_open(uri, &o, &host), 0, "%s", dmaq_last_error());
    dmaq_options c = DMAQ_OPTIONS_INIT;
    c.key = "k";
    c.flags = DMAQ_OPEN_ENCRYPT;
    dmaq_sub *s;
    expect_error(dmaq_sub_open(uri, &c, &s), DMAQ_EINCOMPAT, "is not encrypted, which the peer requires");
    dmaq_pub_close(host);
}

/* ---- hostile peers ---- */

#ifndef DMAQ_TEST_RDMA /* hostile peers speak raw TCP */
static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* True if the host closes fd within `seconds` (reading and dropping what it
 * sends until then). */
static bool closed_by_host(int fd, int seconds)
{
    uint64_t deadline = mono_ns() + (uint64_t)seconds * SEC;
    char buf[4096];
    while (mono_ns() < deadline) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) == 1) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n <= 0)
                return true;
        }
    }
    return false;
}

static void send_hello(int fd, uint32_t role, const char *name)
{
    struct tcp_hello h = {.version = TCP_VERSION, .role = role, .name_len = (uint16_t)strlen(name), .name = name};
    uint8_t frame[512];
    size_t n = tcp_put_hello(frame, &h);
    cr_assert_eq(send(fd, frame, n, MSG_NOSIGNAL), (ssize_t)n);
}

Test(tcp, hostile_peers_are_cut_off_and_others_keep_their_service, .timeout = 120)
{
    int port = free_tcp_port();
    char uri[128];
    tcp_uri(uri, sizeof uri, HOST, port, "hostile");
    dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
    dmaq_pub *host;
    cr_assert_eq(dmaq_pub_open(uri, &o, &host), 0, "%s", dmaq_last_error());
    dmaq_sub *good;
    cr_assert_eq(dmaq_sub_open(uri, NULL, &good), 0, "%s", dmaq_last_error());

    uint64_t rng = 7;
    uint8_t junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)rng_next(&rng);
    int fds[7];
    fds[0] = raw_connect(port); /* random bytes instead of a HELLO */
    send(fds[0], junk, sizeof junk, MSG_NOSIGNAL);
    fds[1] = raw_connect(port); /* a HELLO claiming a 4 GB body */
    uint8_t huge[8];
    tcp_put_header(huge, TCP_HELLO, 0xffffffffu);
    send(fds[1], huge, sizeof huge, MSG_NOSIGNAL);
    fds[2] = raw_connect(port); /* a publisher sending a message over the maximum */
    send_hello(fds[2], TCP_ROLE_PUB, "hostile");
    uint8_t over[8 + 1025] = {0};
    tcp_put_header(over, TCP_MSG, 1025);
    send(fds[2], over, sizeof over, MSG_NOSIGNAL);
    fds[3] = raw_connect(port); /* a subscriber sending what only hosts send */
    send_hello(fds[3], TCP_ROLE_SUB, "hostile");
    uint8_t lost[16];
    tcp_put_count(lost, TCP_LOST, 5);
    send(fds[3], lost, sizeof lost, MSG_NOSIGNAL);
    fds[4] = raw_connect(port); /* a subscriber acknowledging what it never got */
    send_hello(fds[4], TCP_ROLE_SUB, "hostile");
    uint8_t ack[16];
    tcp_put_count(ack, TCP_ACK, 1000);
    send(fds[4], ack, sizeof ack, MSG_NOSIGNAL);
    fds[5] = raw_connect(port); /* a publisher that sends random bytes after its HELLO */
    send_hello(fds[5], TCP_ROLE_PUB, "hostile");
    send(fds[5], junk, sizeof junk, MSG_NOSIGNAL);
    fds[6] = raw_connect(port); /* a publisher announcing a message far over the maximum */
    send_hello(fds[6], TCP_ROLE_PUB, "hostile");
    tcp_put_header(over, TCP_MSG, 100000);
    send(fds[6], over, 8, MSG_NOSIGNAL);
    for (int i = 0; i < 7; i++) {
        cr_expect(closed_by_host(fds[i], 10), "hostile connection %d was not closed", i);
        close(fds[i]);
    }
    /* A peer that connects and says nothing is dropped when the handshake
     * times out; meanwhile the good subscriber is served. */
    for (uint32_t i = 0; i < 100; i++)
        cr_assert_eq(dmaq_pub_send(host, &i, sizeof i, 10 * SEC), 0, "%s", dmaq_last_error());
    for (uint32_t i = 0; i < 100; i++) {
        uint32_t v;
        size_t len;
        cr_assert_eq(dmaq_sub_recv(good, &v, sizeof v, &len, 10 * SEC), 0, "%s", dmaq_last_error());
        cr_expect_eq(v, i);
    }
    dmaq_sub_close(good);
    dmaq_pub_close(host);
}

#endif

/* ---- other processes' garbage collection ---- */

/* Every process that opens a tcp:// or rdma:// handle sweeps the directory
 * of such rings once (net.c), taking any ring no handle holds for garbage.
 * A hosted ring must be held from its creation to its last binding handle's
 * close, including while handles join and leave it. */
Test(tcp, a_hosted_ring_survives_other_processes_collecting_garbage, .timeout = 120)
{
    char dir[300];
    const char *base = getenv("DMAQ_SHM_DIR");
    snprintf(dir, sizeof dir, "%s/dmaq-" SCHEME "-%u", base && base[0] == '/' ? base : "/dev/shm", (unsigned)getuid());
    mkdir(dir, 0700);
    pid_t collector = fork_bound(); /* a failed assertion ends the test without killing it */
    cr_assert_geq(collector, 0);
    if (collector == 0)
        for (;;)
            dmaq_channel_gc(dir);

    enum { ROUNDS = 300 };
    for (int i = 0; i < ROUNDS; i++) {
        int port = free_tcp_port();
        char uri[128], name[32];
        snprintf(name, sizeof name, "gc-%d", i);
        tcp_uri(uri, sizeof uri, HOST, port, name);
        dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
        dmaq_sub *first, *second;
        dmaq_pub *pub;
        cr_assert_eq(dmaq_sub_open(uri, &o, &first), 0, "round %d: %s", i, dmaq_last_error());
        cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0, "round %d: %s", i, dmaq_last_error());
        dmaq_sub_close(first); /* the publisher alone holds the ring now */
        cr_assert_eq(dmaq_sub_open(uri, &o, &second), 0, "round %d: %s", i, dmaq_last_error());
        cr_assert_eq(dmaq_pub_send(pub, name, strlen(name), SEC), 0, "round %d: %s", i, dmaq_last_error());
        char got[32];
        size_t len;
        cr_assert_eq(dmaq_sub_recv(second, got, sizeof got, &len, 10 * SEC), 0, "round %d: %s", i, dmaq_last_error());
        cr_assert_eq(len, strlen(name));
        dmaq_pub_close(pub);
        dmaq_sub_close(second);
    }
    kill(collector, SIGKILL);
    waitpid(collector, NULL, 0);
}

/* ---- peers killed ---- */

Test(tcp, queue_messages_of_a_killed_subscriber_go_to_another, .timeout = 120)
{
    int port = free_tcp_port();
    char uri[128];
    tcp_uri(uri, sizeof uri, HOST, port, "work");
    dmaq_options o = bind_opts(DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK);
    o.capacity = 1 << 20; /* room for all: most go to the victim on credit */
    dmaq_pub *host;
    cr_assert_eq(dmaq_pub_open(uri, &o, &host), 0, "%s", dmaq_last_error());
    char *argv[] = {PEER, "hold", uri, NULL};
    pid_t victim = spawn(argv);
    cr_assert_gt(victim, 0);
    cr_assert(wait_subscribers(uri, 1, 30));
    enum { N = 2000 };
    uint64_t rng = 1;
    for (uint32_t i = 0; i < N; i++) {
        unsigned char m[64];
        payload_fill(m, sizeof m, 0, i, &rng);
        cr_assert_eq(dmaq_pub_send(host, m, sizeof m, 10 * SEC), 0, "%s", dmaq_last_error());
    }
    /* Wait until the victim's connection has taken messages, then kill it. */
    dmaq_sub_stat subs[2];
    dmaq_stat st = {.size = sizeof st};
    uint64_t deadline = mono_ns() + 30 * SEC;
    while (mono_ns() < deadline && !(dmaq_channel_stat(uri, &st, subs, 2) >= 1 && subs[0].received > 0))
        sleep_ms(5);
    cr_assert_gt(subs[0].received, 0, "the victim took nothing");
    sleep_ms(200);
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);

    dmaq_sub *survivor;
    cr_assert_eq(dmaq_sub_open(uri, NULL, &survivor), 0, "%s", dmaq_last_error());
    static bool seen[N];
    unsigned redelivered = 0;
    for (int k = 0; k < N; k++) {
        dmaq_lease l;
        cr_assert_eq(dmaq_sub_peek(survivor, &l, 30 * SEC), 0, "after %d: %s", k, dmaq_last_error());
        uint32_t key, index;
        cr_assert(payload_intact(l.data, l.len, &key, &index));
        cr_assert_lt(index, N);
        cr_expect(!seen[index], "message %u delivered twice", index);
        seen[index] = true;
        redelivered += (l.flags & DMAQ_LEASE_REDELIVERED) != 0;
        dmaq_sub_release(survivor, &l);
    }
    cr_expect_gt(redelivered, 0, "no message was marked redelivered");
    dmaq_lease l;
    expect_error(dmaq_sub_peek(survivor, &l, 100000000), DMAQ_ETIMEDOUT, "");
    dmaq_sub_close(survivor);
    dmaq_pub_close(host);
}

Test(tcp, a_killed_publisher_is_dropped_and_the_channel_goes_on, .timeout = 120)
{
    int port = free_tcp_port();
    char uri[128];
    tcp_uri(uri, sizeof uri, HOST, port, "fanin");
    dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
    dmaq_sub *host;
    cr_assert_eq(dmaq_sub_open(uri, &o, &host), 0, "%s", dmaq_last_error());
    char *argv[] = {PEER, "pub", uri, "100000000", "3", NULL};
    pid_t victim = spawn(argv);
    dmaq_lease l;
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(dmaq_sub_peek(host, &l, 30 * SEC), 0, "%s", dmaq_last_error());
        dmaq_sub_release(host, &l);
    }
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
    dmaq_stat st = {.size = sizeof st};
    uint64_t deadline = mono_ns() + 30 * SEC;
    while (mono_ns() < deadline && (dmaq_channel_stat(uri, &st, NULL, 0) < 0 || st.publishers > 0))
        sleep_ms(10);
    cr_expect_eq(st.publishers, 0, "the dead publisher is still attached");
    while (dmaq_sub_peek(host, &l, 0) == 0) /* drain what it sent before dying */
        dmaq_sub_release(host, &l);
    dmaq_pub *next;
    cr_assert_eq(dmaq_pub_open(uri, NULL, &next), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_pub_send(next, "after", 5, SEC), 0);
    cr_assert_eq(dmaq_sub_peek(host, &l, 10 * SEC), 0, "%s", dmaq_last_error());
    cr_expect(l.len == 5 && memcmp(l.data, "after", 5) == 0);
    dmaq_sub_release(host, &l);
    dmaq_pub_close(next);
    dmaq_sub_close(host);
}

/* A size for publish_sized: message i is mixed_size(i) bytes. Every third
 * is 16-56 KiB, big enough for a host's forwarder to write it from the ring
 * itself (host.c, DIRECT_MIN), the others small ones it batches. */
#define MIXED_SIZES 0
#define MIXED_MAX 65536
static size_t mixed_size(uint32_t i) { return i % 3 ? PAYLOAD_HEAD + i * 31 % 300 : 16384 + i * 7919 % 40000; }

/* Publish messages [from, to) of `size` bytes (at most MIXED_MAX), or of
 * mixed_size(i) bytes if `size` is MIXED_SIZES. */
static void publish_sized(dmaq_pub *pub, uint32_t from, uint32_t to, size_t size, uint64_t *rng)
{
    for (uint32_t i = from; i < to; i++) {
        static unsigned char m[MIXED_MAX];
        size_t len = size == MIXED_SIZES ? mixed_size(i) : size;
        payload_fill(m, len, 0, i, rng);
        cr_assert_eq(dmaq_pub_send(pub, m, len, 30 * SEC), 0, "%s", dmaq_last_error());
        if (i % 100 == 0)
            sleep_ms(1); /* a stream, not one burst */
    }
}

static void publish_range(dmaq_pub *pub, uint32_t from, uint32_t to, uint64_t *rng)
{
    publish_sized(pub, from, to, 64, rng);
}

/* spin_ns = INT64_MAX on both ends: every wait (the application's, the
 * pump's and the host's forwarder's; over rdma:// the completion queue's)
 * busy-polls instead of sleeping, and still delivers everything in order
 * and times out when nothing comes. */
Test(tcp, busy_polling_handles_deliver_in_order_and_time_out)
{
    char uri[128];
    tcp_uri(uri, sizeof uri, HOST, free_tcp_port(), "spinning");
    dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
    o.spin_ns = INT64_MAX;
    dmaq_pub *pub;
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0, "%s", dmaq_last_error());
    dmaq_options c = DMAQ_OPTIONS_INIT;
    c.spin_ns = INT64_MAX;
    dmaq_sub *sub;
    cr_assert_eq(dmaq_sub_open(uri, &c, &sub), 0, "%s", dmaq_last_error());
    cr_assert(wait_subscribers(uri, 1, 30), "the subscriber did not attach");
    uint64_t rng = 7;
    for (uint32_t round = 0; round < 20; round++) {
        publish_range(pub, round * 100, (round + 1) * 100, &rng);
        for (uint32_t i = round * 100; i < (round + 1) * 100; i++) {
            dmaq_lease l;
            cr_assert_eq(dmaq_sub_peek(sub, &l, 10 * SEC), 0, "message %u: %s", i, dmaq_last_error());
            uint32_t key, index;
            cr_assert(payload_intact(l.data, l.len, &key, &index), "message %u is corrupt", i);
            cr_assert_eq(index, i, "message %u arrived as %u", i, index);
            dmaq_sub_release(sub, &l);
        }
    }
    dmaq_lease l;
    expect_error(dmaq_sub_peek(sub, &l, 0), DMAQ_EAGAIN, "");
    expect_error(dmaq_sub_peek(sub, &l, SEC / 5), DMAQ_ETIMEDOUT, "within the timeout");
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
}

/* A process that binds a broadcast channel of `capacity` bytes at `uri`
 * (once it reads a byte from `go`, if that is not -1, and as soon as the
 * port is free), waits for a subscriber, publishes messages [from, to) of
 * `size` bytes and stays until killed. Forked before the test starts
 * threads: ThreadSanitizer cannot follow a fork after that. */
static pid_t start_host_sized(const char *uri, uint32_t from, uint32_t to, int go, size_t size, uint64_t capacity)
{
    pid_t pid = fork();
    if (pid == 0) {
        char byte;
        if (go >= 0 && read(go, &byte, 1) != 1)
            _exit(1);
        dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
        o.capacity = capacity;
        if (size == MIXED_SIZES)
            o.max_message = MIXED_MAX;
        dmaq_pub *pub;
        uint64_t deadline = mono_ns() + 60 * SEC;
        while (dmaq_pub_open(uri, &o, &pub) < 0)
            if (mono_ns() > deadline)
                _exit(1);
            else
                sleep_ms(10);
        if (!wait_subscribers(uri, 1, 30))
            _exit(1);
        uint64_t rng = from;
        publish_sized(pub, from, to, size, &rng);
        for (;;)
            pause();
    }
    cr_assert_gt(pid, 0);
    return pid;
}

static pid_t start_host(const char *uri, uint32_t from, uint32_t to, int go)
{
    return start_host_sized(uri, from, to, go, 64, 1 << 16);
}

/* A subscriber to `uri` once its host (another process) is up. */
static dmaq_sub *subscribe_when_up(const char *uri)
{
    dmaq_sub *sub = NULL;
    uint64_t deadline = mono_ns() + 30 * SEC;
    while (dmaq_sub_open(uri, NULL, &sub) < 0 && mono_ns() < deadline)
        sleep_ms(10);
    cr_assert(sub, "%s", dmaq_last_error());
    return sub;
}

/* Peek the next message (one publish_sized sent, of `size` bytes) and keep
 * a copy of its bytes in copy[size]. */
static void hold_next(dmaq_sub *sub, dmaq_lease *held, unsigned char *copy, size_t size)
{
    cr_assert_eq(dmaq_sub_peek(sub, held, 30 * SEC), 0, "%s", dmaq_last_error());
    cr_assert_eq(held->len, size);
    memcpy(copy, held->data, size);
}

/* The next message is message `index` (of `size` bytes, unless 0), whole. */
static void expect_sized(dmaq_sub *sub, uint32_t index, size_t size)
{
    dmaq_lease l;
    int rc;
    while ((rc = dmaq_sub_peek(sub, &l, 30 * SEC)) == DMAQ_ELOST)
        ; /* a reconnect may report what it missed first */
    cr_assert_eq(rc, 0, "message %u: %s", index, dmaq_last_error());
    uint32_t key, got;
    cr_assert(payload_intact(l.data, l.len, &key, &got), "message %u is corrupt", index);
    cr_assert_eq(got, index, "message %u arrived as %u", index, got);
    cr_assert(!size || l.len == size, "message %u has %zu bytes, not %zu", index, l.len, size);
    cr_assert_eq(dmaq_sub_release(sub, &l), 0, "%s", dmaq_last_error());
}

static void expect_message(dmaq_sub *sub, uint32_t index) { expect_sized(sub, index, 0); }

/* A subscriber that waits in peek leases each message where it lies in its
 * receive buffer. Held a while, such a lease keeps its bytes while the
 * stream goes on (the pump takes the connection over and nothing in the
 * buffer moves); it blocks peeks until released, and ends only once. */
Test(tcp, a_lease_held_while_the_stream_goes_on_keeps_its_bytes, .timeout = 120)
{
    char uri[128];
    tcp_uri(uri, sizeof uri, HOST, free_tcp_port(), "held");
    pid_t host = start_host(uri, 0, 3000, -1);
    dmaq_sub *sub = subscribe_when_up(uri);
    dmaq_lease first;
    unsigned char copy[64];
    hold_next(sub, &first, copy, sizeof copy);
    dmaq_lease other;
    expect_error(dmaq_sub_peek(sub, &other, 0), DMAQ_EBUSY, "already holds a lease");
    sleep_ms(500); /* the host goes on publishing meanwhile */
    cr_assert(memcmp(first.data, copy, sizeof copy) == 0, "the held lease's bytes changed");
    uint32_t key, index;
    cr_assert(payload_intact(first.data, first.len, &key, &index) && index == 0);
    dmaq_lease again = first;
    cr_assert_eq(dmaq_sub_release(sub, &first), 0, "%s", dmaq_last_error());
    expect_error(dmaq_sub_release(sub, &again), DMAQ_ELEASE, "not outstanding");
    for (uint32_t i = 1; i < 3000; i++)
        expect_message(sub, i);
    dmaq_sub_close(sub);
    kill(host, SIGKILL);
    waitpid(host, NULL, 0);
}

/* Messages of 1 KiB and more are leased where they lie even in a run of
 * them: over rdma:// in the registered receive ring, whose credit for them
 * the host gets only at the release. Held a while, such a lease keeps its
 * bytes while the host goes on writing (a window of 4 MiB, more than that
 * ring holds), and the stream then resumes whole and in order. */
Test(tcp, a_large_lease_held_while_the_stream_goes_on_keeps_its_bytes, .timeout = 120)
{
    char uri[128];
    tcp_uri(uri, sizeof uri, HOST, free_tcp_port(), "held-large");
    enum { SIZE = 1024, COUNT = 2500 }; /* 2.5 MiB: more than the largest receive ring (1 MiB) */
    pid_t host = start_host_sized(uri, 0, COUNT, -1, SIZE, 4u << 20);
    dmaq_sub *sub = subscribe_when_up(uri);
    dmaq_lease first;
    unsigned char copy[SIZE];
    hold_next(sub, &first, copy, sizeof copy);
    sleep_ms(1000); /* the host goes on publishing meanwhile */
    cr_assert(memcmp(first.data, copy, SIZE) == 0, "the held lease's bytes changed");
    uint32_t key, index;
    cr_assert(payload_intact(first.data, first.len, &key, &index) && index == 0);
    cr_assert_eq(dmaq_sub_release(sub, &first), 0, "%s", dmaq_last_error());
    for (uint32_t i = 1; i < COUNT; i++)
        expect_message(sub, i);
    dmaq_sub_close(sub);
    kill(host, SIGKILL);
    waitpid(host, NULL, 0);
}

/* Big messages, which a host's forwarder writes from the ring where they
 * lie, between small ones it batches in its own buffer: each arrives whole,
 * in order, and the host's credit accounting (a 1 MiB window, 3.6 MiB sent)
 * counts both kinds, or the stream would stall or the host drop us. */
Test(tcp, big_and_small_messages_interleaved_arrive_whole_and_in_order, .timeout = 120)
{
    char uri[128];
    tcp_uri(uri, sizeof uri, HOST, free_tcp_port(), "mixed");
    enum { COUNT = 300 };
    pid_t host = start_host_sized(uri, 0, COUNT, -1, MIXED_SIZES, 1u << 20);
    dmaq_sub *sub = subscribe_when_up(uri);
    for (uint32_t i = 0; i < COUNT; i++)
        expect_sized(sub, i, mixed_size(i));
    dmaq_sub_close(sub);
    kill(host, SIGKILL);
    waitpid(host, NULL, 0);
}

/* The host is killed and another binds the channel while the subscriber
 * holds a lease in its receive buffer: it reconnects into a new buffer, the
 * lease keeps its bytes until released, and the new host's messages come. */
Test(tcp, a_lease_held_across_a_reconnect_keeps_its_bytes, .timeout = 120)
{
    char uri[128];
    tcp_uri(uri, sizeof uri, HOST, free_tcp_port(), "rehosted");
    int go[2];
    cr_assert_eq(pipe(go), 0);
    pid_t host = start_host(uri, 0, 1, -1);
    pid_t next_host = start_host(uri, 1, 2, go[0]);
    dmaq_sub *sub = subscribe_when_up(uri);
    dmaq_lease held;
    unsigned char copy[64];
    hold_next(sub, &held, copy, sizeof copy);
    kill(host, SIGKILL);
    waitpid(host, NULL, 0);
    cr_assert_eq(write(go[1], "", 1), 1);
    close(go[0]);
    close(go[1]);
    host = next_host;
    cr_assert(wait_subscribers(uri, 1, 30), "the subscriber did not reconnect while it held a lease");
    cr_assert(memcmp(held.data, copy, sizeof copy) == 0, "the held lease's bytes changed in the reconnect");
    cr_assert_eq(dmaq_sub_release(sub, &held), 0, "%s", dmaq_last_error());
    expect_message(sub, 1);
    dmaq_sub_close(sub);
    kill(host, SIGKILL);
    waitpid(host, NULL, 0);
}

/* Bind a broadcast channel at `uri` as *pub and start (with `start`) a
 * subscriber peer expecting `total` messages, writing its result line to
 * `out` (128 bytes); returns the peer once attached. */
static pid_t start_feed(const char *uri, uint32_t policy, int64_t peer_timeout_ns, int total,
                        pid_t (*start)(char *const argv[]), dmaq_pub **pub, char *out)
{
    dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, policy);
    o.peer_timeout_ns = peer_timeout_ns;
    cr_assert_eq(dmaq_pub_open(uri, &o, pub), 0, "%s", dmaq_last_error());
    char expect[16];
    snprintf(expect, sizeof expect, "%d", total);
    snprintf(out, 128, "/tmp/dmaq-feed-%d.out", (int)getpid());
    char *argv[] = {PEER, "sub", (char *)uri, expect, out, NULL};
    pid_t sub = start(argv);
    cr_assert(wait_subscribers(uri, 1, 30), "the subscriber did not attach");
    return sub;
}

/* The result line a subscriber peer wrote to `out` (then removed). */
static void read_result(const char *out, unsigned long long *received, unsigned long long *lost)
{
    FILE *f = fopen(out, "r");
    cr_assert(f, "the subscriber wrote no result");
    unsigned long long bad, order;
    cr_assert_eq(fscanf(f, "received=%llu lost=%llu bad=%llu order=%llu", received, lost, &bad, &order), 4);
    fclose(f);
    unlink(out);
    cr_expect_eq(bad, 0, "corrupt messages");
    cr_expect_eq(order, 0, "messages out of order");
}

/* A subscriber process that stops reading (SIGSTOP) for longer than the
 * host's peer timeout. Under block, the publisher waits for it (its ring
 * fills) until the host gives up on it; under overwrite, it never waits.
 * When the subscriber continues it reconnects by itself, and what it
 * received plus what it was told it lost is exactly what was published. */
static void stopped_subscriber(uint32_t policy)
{
    char uri[128], out[128];
    tcp_uri(uri, sizeof uri, HOST, free_tcp_port(), "stall");
    enum { PART = 2000 };
    dmaq_pub *pub;
    pid_t sub = start_feed(uri, policy, 2 * SEC, 3 * PART, spawn, &pub, out);
    uint64_t rng = 7;
    publish_range(pub, 0, PART, &rng);
    kill(sub, SIGSTOP);
    uint32_t i = PART;
    unsigned char m[64];
    if (policy == DMAQ_POLICY_BLOCK) {
        /* Credit runs out: a send that may not wait is refused... */
        int rc = 0;
        for (; i < 2 * PART && rc == 0; i++) {
            payload_fill(m, sizeof m, 0, i, &rng);
            rc = dmaq_pub_send(pub, m, sizeof m, 0);
        }
        cr_assert_eq(rc, DMAQ_EAGAIN, "a stopped subscriber never held the publisher back");
        i--; /* ...and sent again below, once the host has given up on the subscriber */
    } else {
        for (; i < 2 * PART; i++) { /* overwrite: never waits */
            payload_fill(m, sizeof m, 0, i, &rng);
            cr_assert_eq(dmaq_pub_send(pub, m, sizeof m, 0), 0, "message %u: %s", i, dmaq_last_error());
        }
    }
    publish_range(pub, i, 2 * PART, &rng); /* under block, waits until the host drops the subscriber */
    dmaq_stat st = {.size = sizeof st};
    uint64_t deadline = mono_ns() + 30 * SEC;
    while (mono_ns() < deadline && (dmaq_channel_stat(uri, &st, NULL, 0) < 0 || st.subscribers > 0))
        sleep_ms(20);
    cr_assert_eq(st.subscribers, 0, "the host kept the stopped subscriber");
    kill(sub, SIGCONT);
    cr_assert(wait_subscribers(uri, 1, 30), "the subscriber did not reconnect");
    publish_range(pub, 2 * PART, 3 * PART, &rng);
    cr_assert(wait_all(&sub, 1, 90), "the subscriber failed or hung");
    unsigned long long received, lost;
    read_result(out, &received, &lost);
    cr_expect_eq(received + lost, 3 * PART, "received %llu + lost %llu != published %d", received, lost, 3 * PART);
    if (policy == DMAQ_POLICY_BLOCK) /* overwrite may lap a slow subscriber (valgrind) before and after the stop */
        cr_expect_gt(received, PART, "nothing arrived after the reconnect");
    else
        cr_expect_gt(received, 0, "nothing arrived");
    dmaq_pub_close(pub);
}

Test(tcp, a_stopped_subscriber_holds_a_block_publisher_until_dropped_then_reconnects, .timeout = 120)
{
    stopped_subscriber(DMAQ_POLICY_BLOCK);
}

Test(tcp, a_stopped_subscriber_never_holds_an_overwrite_publisher_and_reconnects, .timeout = 120)
{
    stopped_subscriber(DMAQ_POLICY_OVERWRITE);
}

#ifndef DMAQ_TEST_RDMA /* veth links carry TCP, not RoCE */
/* ---- another host: network namespaces ---- */

static char netns[32], veth[16];

static void remove_hosts(void);

static int sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* This process's namespace holds 10.77.N.1 on veth; namespace `netns` holds
 * 10.77.N.2 on its peer. */
static void make_hosts(void)
{
    int n = getpid() % 250;
    snprintf(netns, sizeof netns, "dmaq-test-%d", (int)getpid());
    snprintf(veth, sizeof veth, "dq%da", (int)getpid() % 100000);
    if (sh("ip netns add %s 2>/dev/null", netns) != 0)
        cr_skip_test("cannot create network namespaces here (needs root and iproute2)");
    atexit(remove_hosts); /* each test runs in a process of its own, passing or not */
    cr_assert_eq(sh("ip link add %s type veth peer name %.13sb && ip link set %.13sb netns %s && "
                    "ip addr add 10.77.%d.1/24 dev %s && ip link set %s up && "
                    "ip netns exec %s sh -c 'ip addr add 10.77.%d.2/24 dev %.13sb && ip link set %.13sb up && "
                    "ip link set lo up'",
                    veth, veth, veth, netns, n, veth, veth, netns, n, veth, veth),
                 0, "could not wire the namespaces");
}

static void remove_hosts(void)
{
    if (netns[0]) {
        sh("ip netns del %s 2>/dev/null", netns); /* takes the veth pair with it */
        sh("ip link del %s 2>/dev/null", veth);
    }
}

static pid_t spawn_in_netns(char *const peer_argv[])
{
    char *argv[16] = {"/usr/bin/env", "ip", "netns", "exec", netns};
    int k = 5;
    for (int i = 0; peer_argv[i] && k < 15; i++)
        argv[k++] = peer_argv[i];
    argv[k] = NULL;
    return spawn(argv);
}

/* Both sides use the same peer timeout (the subscriber peer's default,
 * 5 s) for the short cut, and the host a shorter one for the long cut. */
static void link_cut(int cut_ms, bool expect_reconnect)
{
    make_hosts();
    int n = getpid() % 250;
    char uri[128], host[32], out[128];
    snprintf(host, sizeof host, "10.77.%d.1", n);
    tcp_uri(uri, sizeof uri, host, free_tcp_port(), "feed");
    enum { PART = 3000 };
    dmaq_pub *pub;
    pid_t sub = start_feed(uri, DMAQ_POLICY_BLOCK, expect_reconnect ? 2 * SEC : 0, 3 * PART, spawn_in_netns, &pub,
                           out);
    uint64_t rng = 3;
    publish_range(pub, 0, PART, &rng);
    /* The link comes back by itself while we publish into the cut (block
     * policy: the publisher waits for the stalled subscriber until the link
     * returns or the host gives up on it). */
    cr_assert_eq(sh("ip link set %s down && (sleep %d.%03d; ip link set %s up) &", veth, cut_ms / 1000,
                    cut_ms % 1000, veth),
                 0);
    publish_range(pub, PART, 2 * PART, &rng);
    if (expect_reconnect) {
        dmaq_stat st = {.size = sizeof st};
        uint64_t deadline = mono_ns() + 30 * SEC;
        while (mono_ns() < deadline && (dmaq_channel_stat(uri, &st, NULL, 0) < 0 || st.subscribers < 1))
            sleep_ms(20);
        cr_assert_eq(st.subscribers, 1, "the subscriber did not reconnect");
    }
    publish_range(pub, 2 * PART, 3 * PART, &rng);
    cr_assert(wait_all(&sub, 1, 90), "the subscriber failed or hung");
    unsigned long long received, lost;
    read_result(out, &received, &lost);
    cr_expect_eq(received + lost, 3 * PART, "received %llu + lost %llu != published %d", received, lost, 3 * PART);
    if (!expect_reconnect)
        cr_expect_eq(lost, 0, "a short cut lost %llu messages", lost);
    else
        cr_expect_gt(received, PART, "nothing arrived after the reconnect");
    dmaq_pub_close(pub);
}

/* Shorter than the peer timeout: TCP retransmits, nothing is lost. */
Test(tcp_netns, short_link_cut_loses_nothing, .timeout = 180) { link_cut(1000, false); }

/* Longer: both sides give up on each other, the subscriber reconnects by
 * itself, and received + lost still equals published. */
Test(tcp_netns, long_link_cut_reconnects_with_exact_accounting, .timeout = 180) { link_cut(7000, true); }

/* A publisher on another host whose link is cut for longer than the host's
 * peer timeout: the host drops it, it reconnects by itself and resends what
 * the host had not acknowledged, and the host, told by the publisher's token
 * how far it got, keeps no copy twice. So every message arrives exactly
 * once, in order, while the link flaps under a full-speed stream. */
Test(tcp_netns, publisher_reconnects_after_a_long_cut_without_loss_or_duplicates, .timeout = 180)
{
    make_hosts();
    int n = getpid() % 250;
    char uri[128], host[32], count[16];
    snprintf(host, sizeof host, "10.77.%d.1", n);
    tcp_uri(uri, sizeof uri, host, free_tcp_port(), "fanin");
    dmaq_options o = bind_opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK);
    o.peer_timeout_ns = 2 * SEC;
    dmaq_sub *sub;
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0, "%s", dmaq_last_error());
    enum { N = 30000, CUT_AT = 3000 };
    snprintf(count, sizeof count, "%d", N);
    char *argv[] = {PEER, "pub", uri, count, "5", NULL};
    pid_t publisher = spawn_in_netns(argv);
    long last = -1, received = 0, reconnects = 0;
    uint32_t publisher_id = 0;
    while (received < N) {
        dmaq_lease l;
        int rc = dmaq_sub_peek(sub, &l, 60 * SEC);
        cr_assert_eq(rc, 0, "after %ld messages: %s", received, dmaq_last_error());
        uint32_t key, index;
        if (l.len >= PAYLOAD_HEAD) { /* the peer's shorter messages carry no index */
            cr_assert(payload_intact(l.data, l.len, &key, &index), "message %ld is corrupt", received);
            cr_assert(key == 5 && index < N, "message %ld: key %u index %u", received, key, index);
            cr_assert_gt((long)index, last, "message %u after %ld: a duplicate, or the order broke", index, last);
            last = index;
        }
        reconnects += publisher_id && l.publisher_id != publisher_id;
        publisher_id = l.publisher_id;
        dmaq_sub_release(sub, &l);
        if (++received == CUT_AT) /* mid-stream, back by itself after 5 s */
            cr_assert_eq(sh("ip link set %s down && (sleep 5; ip link set %s up) &", veth, veth), 0);
    }
    cr_assert(wait_all(&publisher, 1, 90), "the publisher failed or hung");
    dmaq_lease l;
    expect_error(dmaq_sub_peek(sub, &l, SEC / 2), DMAQ_ETIMEDOUT, ""); /* nothing twice */
    cr_expect_gt(reconnects, 0, "the publisher never reconnected (the cut did not take)");
    dmaq_sub_close(sub);
}
#endif
