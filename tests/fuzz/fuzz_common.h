/* Shared by the libFuzzer targets: a private directory for channel files,
 * and a pristine channel image to start each input from. */
#ifndef DMAQ_FUZZ_COMMON_H
#define DMAQ_FUZZ_COMMON_H

#include <dmaq/dmaq.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_CAPACITY 4096u

static char fuzz_dir[64];

/* A directory of our own on tmpfs, removed at exit. */
static void fuzz_cleanup(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fuzz_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", fuzz_dir);
}

static const char *fuzz_make_dir(void)
{
    if (!fuzz_dir[0]) {
        snprintf(fuzz_dir, sizeof fuzz_dir, "/dev/shm/dmaq-fuzz-XXXXXX");
        if (!mkdtemp(fuzz_dir))
            abort();
        atexit(fuzz_cleanup);
    }
    return fuzz_dir;
}

/* Options for a small channel of kind `which` % 3 in our directory. */
static dmaq_options fuzz_options(unsigned which)
{
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.kind = which % 3 == 0 ? DMAQ_KIND_QUEUE : DMAQ_KIND_BROADCAST;
    o.policy = which % 3 == 2 ? DMAQ_POLICY_OVERWRITE : DMAQ_POLICY_BLOCK;
    o.capacity = FUZZ_CAPACITY;
    o.max_message = 512;
    o.start = DMAQ_START_OLDEST;
    o.shm_dir = fuzz_make_dir();
    o.spin_ns = 0;
    return o;
}

/* Build channel `name` of kind `which` holding a few messages (the queue's
 * first taken), with no handle left open; returns its bytes (malloc'd) and
 * length. */
static unsigned char *fuzz_pristine(const char *name, unsigned which, size_t *len)
{
    char uri[128], path[128];
    snprintf(uri, sizeof uri, "shm://%s", name);
    snprintf(path, sizeof path, "%s/dmaq.%s", fuzz_make_dir(), name);
    dmaq_options o = fuzz_options(which);
    dmaq_channel_unlink(uri);
    dmaq_pub *pub;
    dmaq_sub *sub;
    if (dmaq_pub_open(uri, &o, &pub) < 0 || dmaq_sub_open(uri, &o, &sub) < 0)
        abort();
    unsigned char msg[300];
    for (unsigned i = 0; i < 12; i++) {
        memset(msg, (int)i, sizeof msg);
        dmaq_pub_send(pub, msg, (i * 37) % sizeof msg, 0);
    }
    size_t lens[5] = {0, 9, 40, 100, 16}, sent; /* a broadcast channel packs them into one record */
    dmaq_pub_send_many(pub, msg, lens, 5, &sent, 0);
    dmaq_lease r;
    if (dmaq_sub_peek(sub, &r, 0) == 0)
        dmaq_sub_release(sub, &r);
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        abort();
    unsigned char *bytes = malloc((size_t)st.st_size);
    if (!bytes || pread(fd, bytes, (size_t)st.st_size, 0) != st.st_size)
        abort();
    close(fd);
    *len = (size_t)st.st_size;
    return bytes;
}

/* Read every byte of a read lease (ASan would see one outside the
 * mapping), then release it. */
static void fuzz_read_and_release(dmaq_sub *sub, dmaq_lease *r)
{
    volatile unsigned char sink = 0;
    for (uint64_t b = 0; b < r->len; b++)
        sink ^= ((const unsigned char *)r->data)[b];
    (void)sink;
    dmaq_sub_release(sub, r);
}

#endif
