/* Every bad input gets its documented code and a message saying what was
 * wrong; none crashes. Corrupt channel files included. */
#define _GNU_SOURCE /* unshare */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "../core/shm/layout.h"
#include "harness.h"

static dmaq_options opts(uint32_t kind, uint32_t policy, uint64_t capacity)
{
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.kind = kind;
    o.policy = policy;
    o.capacity = capacity;
    return o;
}

Test(errors, names_and_schemes)
{
    dmaq_pub *pub = (dmaq_pub *)1;
    char longname[300] = "shm://";
    memset(longname + 6, 'a', 250);
    expect_error(dmaq_pub_open("shm://", NULL, &pub), DMAQ_EINVAL, "empty");
    cr_expect_null(pub, "*out is NULL after a failure");
    expect_error(dmaq_pub_open(longname, NULL, &pub), DMAQ_EINVAL, "longer than");
    expect_error(dmaq_pub_open("shm://a/b", NULL, &pub), DMAQ_EINVAL, "character");
    expect_error(dmaq_pub_open("shm://.hidden", NULL, &pub), DMAQ_EINVAL, "may not start");
    expect_error(dmaq_pub_open("nothing", NULL, &pub), DMAQ_EINVAL, "no scheme");
    expect_error(dmaq_pub_open("carrier-pigeon://x", NULL, &pub), DMAQ_ESCHEME, "unknown scheme");
    expect_error(dmaq_pub_open(NULL, NULL, &pub), DMAQ_EINVAL, "NULL");
    expect_error(dmaq_pub_open("shm://x", NULL, NULL), DMAQ_EINVAL, "NULL");
    expect_error(dmaq_channel_unlink("shm://never-made-here"), DMAQ_ENOENT, "does not exist");
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_NO_CREATE;
    expect_error(dmaq_sub_open("shm://never-made-here", &o, (dmaq_sub **)&pub), DMAQ_ENOENT, "does not exist");
}

Test(errors, options)
{
    char uri[128];
    unique_uri(uri, sizeof uri, "opts");
    dmaq_pub *pub;
    dmaq_options o = opts(DMAQ_KIND_QUEUE, DMAQ_POLICY_OVERWRITE, 0);
    expect_error(dmaq_pub_open(uri, &o, &pub), DMAQ_EINVAL, "cannot overwrite");
    o = opts(0, 0, 5000);
    expect_error(dmaq_pub_open(uri, &o, &pub), DMAQ_EINVAL, "power of two");
    o = opts(0, 0, 1024);
    expect_error(dmaq_pub_open(uri, &o, &pub), DMAQ_EINVAL, "power of two");
    o = opts(0, 0, 4096);
    o.max_message = 4096;
    expect_error(dmaq_pub_open(uri, &o, &pub), DMAQ_EINVAL, "max_message");
    o = opts(7, 0, 0);
    expect_error(dmaq_pub_open(uri, &o, &pub), DMAQ_EINVAL, "unknown kind");
    o = opts(0, 0, 0);
    o.size = 8;
    expect_error(dmaq_pub_open(uri, &o, &pub), DMAQ_EINVAL, "options.size");
    o = opts(0, 0, 0);
    o.mode = 01777;
    expect_error(dmaq_pub_open(uri, &o, &pub), DMAQ_EINVAL, "mode");
    o = opts(0, 0, 0);
    o.flags = 0x100;
    expect_error(dmaq_pub_open(uri, &o, &pub), DMAQ_EINVAL, "flags");
    struct stat st;
    char path[300];
    cr_expect_neq(stat(shm_file(uri, path, sizeof path), &st), 0, "a refused open leaves no file");
}

Test(errors, incompatible_reopen_and_mode)
{
    char uri[128], path[300];
    unique_uri(uri, sizeof uri, "compat");
    dmaq_pub *pub, *other;
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 1 << 16);
    o.mode = 0640;
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0, "%s", dmaq_last_error());
    struct stat st;
    cr_assert_eq(stat(shm_file(uri, path, sizeof path), &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0640, "file mode %o", st.st_mode & 0777);
    dmaq_options q = opts(DMAQ_KIND_QUEUE, 0, 0);
    expect_error(dmaq_pub_open(uri, &q, &other), DMAQ_EINCOMPAT, "was created as broadcast, opened as queue");
    q = opts(0, DMAQ_POLICY_OVERWRITE, 0);
    expect_error(dmaq_sub_open(uri, &q, (dmaq_sub **)&other), DMAQ_EINCOMPAT, "policy block, opened with overwrite");
    q = opts(0, 0, 1 << 20);
    expect_error(dmaq_pub_open(uri, &q, &other), DMAQ_EINCOMPAT, "capacity 65536, opened with 1048576");
    q = opts(0, 0, 0); /* zeros accept what exists */
    cr_expect_eq(dmaq_pub_open(uri, &q, &other), 0, "%s", dmaq_last_error());
    dmaq_pub_close(other);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

Test(errors, message_sizes_and_leases)
{
    char uri[128];
    unique_uri(uri, sizeof uri, "lease");
    dmaq_pub *pub, *pub2;
    dmaq_sub *sub, *sub2;
    dmaq_options o = opts(DMAQ_KIND_QUEUE, 0, 1 << 16);
    o.max_message = 1000;
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0);
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub2), 0);
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0);
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub2), 0);
    char buf[2000] = {0};
    dmaq_lease w, w2, r;
    expect_error(dmaq_pub_send(pub, buf, 1001, 0), DMAQ_EMSGSIZE, "exceeds");
    expect_error(dmaq_pub_reserve(pub, 5000, &w, 0), DMAQ_EMSGSIZE, "max_message 1000");
    expect_error(dmaq_pub_send(pub, NULL, 5, 0), DMAQ_EINVAL, "NULL");
    cr_assert_eq(dmaq_pub_reserve(pub, 100, &w, 0), 0);
    expect_error(dmaq_pub_reserve(pub, 100, &w2, 0), DMAQ_EBUSY, "already holds");
    expect_error(dmaq_pub_commit(pub2, &w, 10), DMAQ_ELEASE, "not outstanding");
    expect_error(dmaq_pub_commit(pub, &w, 101), DMAQ_EMSGSIZE, "exceeds the 100 reserved");
    memcpy(w.data, "hello", 5);
    cr_assert_eq(dmaq_pub_commit(pub, &w, 5), 0);
    expect_error(dmaq_pub_commit(pub, &w, 5), DMAQ_ELEASE, "not outstanding");
    expect_error(dmaq_pub_abort(pub, &w), DMAQ_ELEASE, "not outstanding");

    cr_assert_eq(dmaq_sub_peek(sub, &r, 0), 0);
    cr_expect_eq(r.len, 5);
    expect_error(dmaq_sub_peek(sub, &w2, 0), DMAQ_EBUSY, "already holds");
    size_t len;
    expect_error(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), DMAQ_EBUSY, "holds a lease");
    expect_error(dmaq_sub_release(sub2, &r), DMAQ_ELEASE, "not outstanding");
    cr_assert_eq(dmaq_sub_release(sub, &r), 0);
    expect_error(dmaq_sub_release(sub, &r), DMAQ_ELEASE, "not outstanding");

    /* Too small a buffer leaves the message for a bigger one. */
    cr_assert_eq(dmaq_pub_send(pub, "0123456789", 10, 0), 0);
    expect_error(dmaq_sub_recv(sub, buf, 4, &len, 0), DMAQ_EMSGSIZE, "does not fit");
    cr_expect_eq(len, 10, "the needed length is reported");
    cr_assert_eq(dmaq_sub_recv(sub2, buf, sizeof buf, &len, 0), 0);
    cr_expect_eq(len, 10);
    cr_expect_eq(memcmp(buf, "0123456789", 10), 0);
    expect_error(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), DMAQ_EAGAIN, "timeout is 0");

    cr_expect_eq(dmaq_pub_close(NULL), 0);
    cr_expect_eq(dmaq_sub_close(NULL), 0);
    dmaq_sub_close(sub);
    dmaq_sub_close(sub2);
    dmaq_pub_close(pub);
    dmaq_pub_close(pub2);
    dmaq_channel_unlink(uri);
}

Test(errors, not_a_channel)
{
    char uri[128], path[300];
    unique_uri(uri, sizeof uri, "junk");
    int fd = open(shm_file(uri, path, sizeof path), O_CREAT | O_WRONLY, 0600);
    cr_assert_geq(fd, 0);
    char junk[8192];
    memset(junk, 'J', sizeof junk);
    cr_assert_eq(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    dmaq_sub *sub;
    expect_error(dmaq_sub_open(uri, NULL, &sub), DMAQ_ENOTCHAN, "is not a dmaq channel");
    dmaq_stat st = {.size = sizeof st};
    expect_error(dmaq_channel_stat(uri, &st, NULL, 0), DMAQ_ENOTCHAN, "not a dmaq channel");
    unlink(path);
}

/* Create a channel, let `damage` change its file, and expect `code`. */
static void corrupt_and_open(void (*damage)(int fd, struct shm_header *h), int code, const char *text)
{
    char uri[128], path[300];
    unique_uri(uri, sizeof uri, "corrupt");
    dmaq_pub *pub;
    dmaq_options o = opts(0, 0, 1 << 16);
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0);
    dmaq_pub_close(pub);
    int fd = open(shm_file(uri, path, sizeof path), O_RDWR);
    cr_assert_geq(fd, 0);
    struct shm_header *h = mmap(NULL, sizeof *h, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(h, MAP_FAILED);
    damage(fd, h);
    munmap(h, sizeof *h);
    close(fd);
    dmaq_sub *sub;
    expect_error(dmaq_sub_open(uri, NULL, &sub), code, text);
    dmaq_channel_unlink(uri);
}

static void flip_capacity(int fd, struct shm_header *h) { h->meta.capacity ^= 1 << 20; }
static void bad_version(int fd, struct shm_header *h) { h->meta.layout_version = 99; }
static void bad_magic(int fd, struct shm_header *h) { h->meta.magic = 0x1234; }
static void truncate_ring(int fd, struct shm_header *h) { cr_assert_eq(ftruncate(fd, SHM_RING_OFFSET + 100), 0); }
static void truncate_header(int fd, struct shm_header *h) { cr_assert_eq(ftruncate(fd, 100), 0); }
static void never_ready(int fd, struct shm_header *h) { atomic_store(&h->state, SHM_CREATING); }
static void forged_checksum(int fd, struct shm_header *h)
{
    h->meta.max_message = h->meta.capacity; /* impossible; checksum made to match */
    h->checksum = XXH64(&h->meta, sizeof h->meta, 0);
}

Test(errors, corrupt_header_checksum) { corrupt_and_open(flip_capacity, DMAQ_ECORRUPT, "checksum mismatch"); }
Test(errors, forged_header_fields) { corrupt_and_open(forged_checksum, DMAQ_ECORRUPT, "inconsistent"); }
Test(errors, unknown_layout_version) { corrupt_and_open(bad_version, DMAQ_EVERSION, "layout version 99"); }
Test(errors, overwritten_magic) { corrupt_and_open(bad_magic, DMAQ_ENOTCHAN, "not a dmaq channel"); }
Test(errors, truncated_ring) { corrupt_and_open(truncate_ring, DMAQ_ECORRUPT, "truncated"); }
Test(errors, truncated_header) { corrupt_and_open(truncate_header, DMAQ_ECORRUPT, "never completely created"); }
Test(errors, creation_never_finished) { corrupt_and_open(never_ready, DMAQ_ECORRUPT, "never completely created"); }

Test(errors, corrupt_record_in_ring)
{
    char uri[128], path[300];
    unique_uri(uri, sizeof uri, "badrec");
    dmaq_pub *pub;
    dmaq_sub *sub;
    dmaq_options o = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 1 << 16);
    cr_assert_eq(dmaq_pub_open(uri, &o, &pub), 0);
    cr_assert_eq(dmaq_sub_open(uri, &o, &sub), 0);
    cr_assert_eq(dmaq_pub_send(pub, "abc", 3, 0), 0);
    int fd = open(shm_file(uri, path, sizeof path), O_RDWR);
    struct shm_record rec;
    cr_assert_eq(pread(fd, &rec, sizeof rec, SHM_RING_OFFSET), (ssize_t)sizeof rec);
    rec.size = 0x7ffffff8; /* points far outside the mapping */
    rec.len = 0x7fff0000;
    cr_assert_eq(pwrite(fd, &rec, sizeof rec, SHM_RING_OFFSET), (ssize_t)sizeof rec);
    close(fd);
    dmaq_lease r;
    expect_error(dmaq_sub_peek(sub, &r, 0), DMAQ_ECORRUPT, "impossible size");
    char buf[16];
    size_t len;
    expect_error(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), DMAQ_ECORRUPT, "is corrupt");
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

Test(errors, names_versions_and_sizes)
{
    const int codes[] = {
#define CODE(name, num, text) DMAQ_##name,
        DMAQ_ERRORS(CODE)
#undef CODE
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        cr_expect_lt(codes[i], 0);
        for (size_t j = 0; j < i; j++)
            cr_expect_str_neq(dmaq_strerror(codes[i]), dmaq_strerror(codes[j]));
    }
    cr_expect_str_eq(dmaq_strerror(0), "success");
    cr_expect_str_eq(dmaq_strerror(-9999), "unknown dmaq status");
    cr_expect_str_eq(dmaq_version(), DMAQ_VERSION_STRING);
    cr_expect_eq(dmaq_struct_size(DMAQ_STRUCT_LEASE), sizeof(dmaq_lease));
    cr_expect_eq(dmaq_struct_size(DMAQ_STRUCT_OPTIONS), sizeof(dmaq_options));
    cr_expect_eq(dmaq_struct_size(DMAQ_STRUCT_STAT), sizeof(dmaq_stat));
    cr_expect_eq(dmaq_struct_size(DMAQ_STRUCT_SUB_STAT), sizeof(dmaq_sub_stat));
    cr_expect_eq(dmaq_struct_size(42), 0);
    cr_expect_eq(dmaq_transport_available("shm"), 1);
    cr_expect_eq(dmaq_transport_available("rdma"), 0);
    cr_expect(strstr(dmaq_last_error(), "rdma") != NULL);
    dmaq_stat st = {.size = 4};
    expect_error(dmaq_channel_stat("shm://x", &st, NULL, 0), DMAQ_EINVAL, "stat.size");
}

/* Docker gives containers a 64 MiB /dev/shm. A channel that does not fit
 * must fail at open with DMAQ_ENOSPC and leave no file behind, never SIGBUS
 * at first touch; one that fits must work to its last page. The test mounts
 * such a /dev/shm in a private mount namespace (Criterion runs each test in
 * its own process, so nothing leaks to the host). */
Test(errors, channel_bigger_than_a_64_mib_dev_shm)
{
    if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=64m") < 0)
        cr_skip_test("needs CAP_SYS_ADMIN to mount a small /dev/shm: %s", strerror(errno));
    char path[256];
    dmaq_options big = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 128u << 20);
    dmaq_pub *pub;
    expect_error(dmaq_pub_open("shm://too-big", &big, &pub), DMAQ_ENOSPC, "the channel needs 134238208");
    cr_expect(strstr(dmaq_last_error(), "/dev/shm has 67108864 bytes free"), "%s", dmaq_last_error());
    cr_expect_neq(access(shm_file("shm://too-big", path, sizeof path), F_OK), 0, "a failed create left %s",
                  path);

    /* 32 MiB fits once; a second one no longer does. */
    dmaq_options fits = opts(DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 32u << 20);
    fits.max_message = 1u << 20;
    cr_assert_eq(dmaq_pub_open("shm://fits", &fits, &pub), 0, "%s", dmaq_last_error());
    dmaq_pub *second;
    expect_error(dmaq_pub_open("shm://no-room-left", &fits, &second), DMAQ_ENOSPC, "bytes free");

    /* Write every byte of the ring: the pages exist, so nothing faults. */
    dmaq_sub *sub;
    cr_assert_eq(dmaq_sub_open("shm://fits", &fits, &sub), 0, "%s", dmaq_last_error());
    static unsigned char block[1u << 20];
    for (int i = 0; i < 40; i++) {
        memset(block, i, sizeof block);
        cr_assert_eq(dmaq_pub_send(pub, block, sizeof block, 0), 0, "send %d: %s", i, dmaq_last_error());
        size_t len;
        cr_assert_eq(dmaq_sub_recv(sub, block, sizeof block, &len, 0), 0, "recv %d: %s", i, dmaq_last_error());
        cr_expect(len == sizeof block && block[0] == i && block[sizeof block - 1] == i);
    }
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    cr_expect_eq(dmaq_channel_unlink("shm://fits"), 0);
}
