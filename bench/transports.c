/*
 * The transports dmaq-bench drives: dmaq (each channel kind, copying and
 * zero-copy) and what users pick instead on one machine: a pipe, a Unix
 * stream socket, a POSIX message queue, ZeroMQ ipc:// and NNG ipc://
 * (push/pull, the lossless streaming pattern of both).
 *
 * Byte streams (pipe, Unix socket) carry a 4-byte length before each
 * message and are read through a buffer, as an application would.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <dmaq/dmaq.h>
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifdef DMAQ_BENCH_ZMQ
#include <zmq.h>
#endif
#ifdef DMAQ_BENCH_NNG
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#endif

/* Every endpoint starts with this; `stage` is the application's own buffer
 * (the copying paths send from it and receive into it). */
struct endpoint {
    const struct transport *t;
    unsigned char *stage;
};

static unsigned char *stage_alloc(void)
{
    unsigned char *p = malloc(BENCH_MAX_SIZE + 64);
    if (!p)
        bench_fail("out of memory");
    memset(p, 0x5a, BENCH_MAX_SIZE + 64);
    return p;
}

static int64_t ms_to_ns(int timeout_ms) { return timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000000; }

/* ---- dmaq ------------------------------------------------------------------ */

struct dmaq_ep {
    endpoint base;
    dmaq_pub *pub;
    dmaq_sub *sub;
    dmaq_lease lease;
    /* Batched transports: the publisher's messages kept back for one
     * dmaq_pub_send_many, packed in `stage`; the subscriber's leases from one
     * dmaq_sub_peek_many, of which `next` is handed out next. */
    size_t kept, kept_bytes, flush_at, have, next;
    size_t lens[DMAQ_BATCH_MAX];
    dmaq_lease leases[DMAQ_BATCH_MAX];
};

size_t bench_dmaq_capacity(size_t size)
{
    /* Room for at least 8 records of the largest message, and 8 MiB at
     * least: the bare ring's size (floors.c), so that the two are compared
     * at one ring size. (In a 1 MiB ring 64 KiB messages went at a third
     * of the rate, on a machine where the bare ring moved 37 GB/s: the
     * publisher rewrote lines still in the reader's cache.) */
    size_t cap = 8u << 20;
    while (cap < 8 * (size + DMAQ_RECORD_HEADER))
        cap <<= 1;
    return cap;
}

static dmaq_options dmaq_options_for(const struct cell *c)
{
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.kind = c->t->kind;
    o.policy = c->t->policy;
    o.capacity = bench_dmaq_capacity(c->spec.size);
    o.max_message = c->spec.size;
    o.spin_ns = c->t->spin_ns;
    o.flags |= c->t->open_flags;
    return o;
}

static int dmaq_setup(struct cell *c)
{
    static unsigned serial;
    snprintf(c->name, sizeof c->name, "shm://dmaq-bench-%d-%u", (int)getpid(), serial++);
    dmaq_options o = dmaq_options_for(c);
    dmaq_channel_unlink(c->name);
    dmaq_pub *p;
    if (dmaq_pub_open(c->name, &o, &p) < 0) {
        snprintf(c->error, sizeof c->error, "creating %s: %s", c->name, dmaq_last_error());
        return -1;
    }
    dmaq_pub_close(p); /* the channel stays until teardown unlinks it */
    return 0;
}

static endpoint *dmaq_open_ep(struct cell *c, int pub, int index)
{
    (void)index;
    struct dmaq_ep *e = calloc(1, sizeof *e);
    if (!e)
        bench_fail("out of memory");
    e->base.t = c->t;
    e->base.stage = stage_alloc();
    e->flush_at = c->spec.latency ? 1 : (size_t)c->t->batch; /* paced messages go out at once */
    dmaq_options o = dmaq_options_for(c);
    o.flags = DMAQ_OPEN_NO_CREATE;
    if ((pub ? dmaq_pub_open(c->name, &o, &e->pub) : dmaq_sub_open(c->name, &o, &e->sub)) < 0)
        bench_fail("opening %s: %s", c->name, dmaq_last_error());
    return &e->base;
}

static void *dmaq_begin(endpoint *b, size_t len)
{
    struct dmaq_ep *e = (struct dmaq_ep *)b;
    if (!b->t->zero_copy)
        return b->stage;
    if (dmaq_pub_reserve(e->pub, len, &e->lease, -1) < 0)
        bench_fail("dmaq_pub_reserve: %s", dmaq_last_error());
    return e->lease.data;
}

static void dmaq_finish(endpoint *b, size_t len)
{
    struct dmaq_ep *e = (struct dmaq_ep *)b;
    int rc = b->t->zero_copy ? dmaq_pub_commit(e->pub, &e->lease, len) : dmaq_pub_send(e->pub, b->stage, len, -1);
    if (rc < 0)
        bench_fail("dmaq publish: %s", dmaq_last_error());
}

static int dmaq_recv_ep(endpoint *b, const void **data, size_t *len, uint64_t *lost, int timeout_ms)
{
    struct dmaq_ep *e = (struct dmaq_ep *)b;
    for (;;) {
        int rc;
        if (b->t->zero_copy) {
            rc = dmaq_sub_peek(e->sub, &e->lease, ms_to_ns(timeout_ms));
            *data = e->lease.data;
            *len = e->lease.len;
            if (rc == DMAQ_ELOST)
                *lost += e->lease.lost;
        } else {
            rc = dmaq_sub_recv(e->sub, b->stage, BENCH_MAX_SIZE, len, ms_to_ns(timeout_ms));
            *data = b->stage;
            if (rc == DMAQ_ELOST)
                *lost += *len;
        }
        if (rc == 0)
            return 1;
        if (rc == DMAQ_ETIMEDOUT || rc == DMAQ_EAGAIN)
            return 0;
        if (rc != DMAQ_ELOST)
            bench_fail("dmaq receive: %s", dmaq_last_error());
    }
}

static int dmaq_done(endpoint *b)
{
    struct dmaq_ep *e = (struct dmaq_ep *)b;
    if (!b->t->zero_copy)
        return 0;
    int rc = dmaq_sub_release(e->sub, &e->lease);
    if (rc == DMAQ_EOVERWRITTEN)
        return 1;
    if (rc < 0)
        bench_fail("dmaq_sub_release: %s", dmaq_last_error());
    return 0;
}

static void dmaq_close_ep(endpoint *b)
{
    struct dmaq_ep *e = (struct dmaq_ep *)b;
    if (e->pub)
        dmaq_pub_close(e->pub);
    if (e->sub)
        dmaq_sub_close(e->sub);
    free(b->stage);
    free(e);
}

static void dmaq_teardown(struct cell *c) { dmaq_channel_unlink(c->name); }

/* Batched: messages are packed into the stage (max_size keeps t->batch of
 * them within it) and go out t->batch at a time. */
static void *dmaq_batch_begin(endpoint *b, size_t len)
{
    (void)len;
    struct dmaq_ep *e = (struct dmaq_ep *)b;
    return b->stage + e->kept_bytes;
}

static void dmaq_batch_flush(endpoint *b)
{
    struct dmaq_ep *e = (struct dmaq_ep *)b;
    size_t sent;
    if (e->kept && dmaq_pub_send_many(e->pub, b->stage, e->lens, e->kept, &sent, -1) < 0)
        bench_fail("dmaq_pub_send_many: %s", dmaq_last_error());
    e->kept = e->kept_bytes = 0;
}

static void dmaq_batch_finish(endpoint *b, size_t len)
{
    struct dmaq_ep *e = (struct dmaq_ep *)b;
    e->lens[e->kept++] = len;
    e->kept_bytes += len;
    if (e->kept == e->flush_at)
        dmaq_batch_flush(b);
}

static void dmaq_batch_release(struct dmaq_ep *e)
{
    if (e->have && dmaq_sub_release_many(e->sub, e->leases, e->have) < 0)
        bench_fail("dmaq_sub_release_many: %s", dmaq_last_error());
    e->have = e->next = 0;
}

/* Release the batch held and lease the next, waiting up to timeout_ms.
 * Returns 0 if none came. */
static int dmaq_batch_refill(endpoint *b, int timeout_ms)
{
    struct dmaq_ep *e = (struct dmaq_ep *)b;
    dmaq_batch_release(e);
    int rc = dmaq_sub_peek_many(e->sub, e->leases, (size_t)b->t->batch, &e->have, ms_to_ns(timeout_ms));
    if (rc == DMAQ_ETIMEDOUT || rc == DMAQ_EAGAIN)
        return 0;
    if (rc < 0)
        bench_fail("dmaq_sub_peek_many: %s", dmaq_last_error());
    return 1;
}

static int dmaq_batch_recv(endpoint *b, const void **data, size_t *len, uint64_t *lost, int timeout_ms)
{
    (void)lost; /* batched transports are queue and broadcast/block: nothing is lost */
    struct dmaq_ep *e = (struct dmaq_ep *)b;
    if (e->next == e->have && !dmaq_batch_refill(b, timeout_ms))
        return 0;
    *data = e->leases[e->next].data;
    *len = e->leases[e->next].len;
    e->next++;
    return 1;
}

static void dmaq_send_batch(endpoint *b, size_t len)
{
    struct dmaq_ep *e = (struct dmaq_ep *)b;
    for (int i = 0; i < b->t->batch; i++)
        e->lens[i] = len;
    if (dmaq_pub_send_many(e->pub, b->stage, e->lens, (size_t)b->t->batch, NULL, -1) < 0)
        bench_fail("dmaq_pub_send_many: %s", dmaq_last_error());
}

static int dmaq_recv_batch(endpoint *b, const void **data, size_t *len, size_t *n, int timeout_ms)
{
    struct dmaq_ep *e = (struct dmaq_ep *)b;
    if (!dmaq_batch_refill(b, timeout_ms))
        return 0;
    for (size_t i = 0; i < e->have; i++) {
        data[i] = e->leases[i].data;
        len[i] = e->leases[i].len;
    }
    *n = e->next = e->have;
    return 1;
}

static int dmaq_batch_done(endpoint *b)
{
    (void)b; /* released with the whole batch, at the next recv or close */
    return 0;
}

static void dmaq_batch_close(endpoint *b)
{
    struct dmaq_ep *e = (struct dmaq_ep *)b;
    if (e->pub)
        dmaq_batch_flush(b);
    if (e->sub)
        dmaq_batch_release(e);
    dmaq_close_ep(b);
}

#define DMAQ_BATCH_TRANSPORT(key_, kind_)                                                                              \
    {                                                                                                                  \
        .name = kind_ == DMAQ_KIND_QUEUE ? "dmaq queue" : "dmaq broadcast/block", .key = key_,                         \
        .max_size = BENCH_MAX_SIZE / BENCH_BATCH, .fan = 1, .zero_copy = 0, .kind = kind_,                             \
        .policy = DMAQ_POLICY_BLOCK, .spin_ns = -1, .setup = dmaq_setup, .open = dmaq_open_ep,                         \
        .begin = dmaq_batch_begin, .finish = dmaq_batch_finish, .recv = dmaq_batch_recv, .done = dmaq_batch_done,      \
        .close = dmaq_batch_close, .teardown = dmaq_teardown, .flush = dmaq_batch_flush, .batch = BENCH_BATCH,         \
        .send_batch = dmaq_send_batch, .recv_batch = dmaq_recv_batch                                                   \
    }

#define DMAQ_TRANSPORT(name_, key_, kind_, policy_, zc_)                                                               \
    {                                                                                                                  \
        name_, key_, BENCH_MAX_SIZE, 1, zc_, kind_, policy_, -1, 0, dmaq_setup, dmaq_open_ep, dmaq_begin, dmaq_finish, \
            dmaq_recv_ep, dmaq_done, dmaq_close_ep, dmaq_teardown, NULL, 0, NULL, NULL                                 \
    }

static const struct transport dmaq_transports[] = {
    DMAQ_TRANSPORT("dmaq queue", "dmaq-queue-copy", DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK, 0),
    DMAQ_TRANSPORT("dmaq queue", "dmaq-queue-zc", DMAQ_KIND_QUEUE, DMAQ_POLICY_BLOCK, 1),
    DMAQ_TRANSPORT("dmaq broadcast/block", "dmaq-block-copy", DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 0),
    DMAQ_TRANSPORT("dmaq broadcast/block", "dmaq-block-zc", DMAQ_KIND_BROADCAST, DMAQ_POLICY_BLOCK, 1),
    DMAQ_TRANSPORT("dmaq broadcast/overwrite", "dmaq-overwrite-copy", DMAQ_KIND_BROADCAST, DMAQ_POLICY_OVERWRITE, 0),
    DMAQ_TRANSPORT("dmaq broadcast/overwrite", "dmaq-overwrite-zc", DMAQ_KIND_BROADCAST, DMAQ_POLICY_OVERWRITE, 1),
    DMAQ_BATCH_TRANSPORT("dmaq-queue-batch", DMAQ_KIND_QUEUE),
    DMAQ_BATCH_TRANSPORT("dmaq-block-batch", DMAQ_KIND_BROADCAST),
};

struct transport bench_dmaq_with_spin(int64_t spin_ns, const char *name, const char *key)
{
    struct transport t = dmaq_transports[3]; /* broadcast/block, zero-copy */
    t.spin_ns = spin_ns;
    t.name = name;
    t.key = key;
    return t;
}

/* ---- byte streams: pipe and Unix stream socket ----------------------------- */

#define STREAM_BUF (2 * (BENCH_MAX_SIZE + 4))

struct stream_ep {
    endpoint base;
    int fd;
    unsigned char *buf; /* subscriber: bytes read, [head, tail) not yet consumed */
    size_t head, tail, current;
};

/* Read more, after moving what is left to the front if a whole message might
 * not fit behind it. Returns 0 on timeout. */
static int stream_fill(struct stream_ep *e, int timeout_ms)
{
    if (e->head > 0 && STREAM_BUF - e->head < BENCH_MAX_SIZE + 4) {
        memmove(e->buf, e->buf + e->head, e->tail - e->head);
        e->tail -= e->head;
        e->head = 0;
    }
    struct pollfd p = {e->fd, POLLIN, 0};
    int n = poll(&p, 1, timeout_ms);
    if (n == 0)
        return 0;
    if (n < 0)
        bench_fail("poll: %s", strerror(errno));
    ssize_t r = read(e->fd, e->buf + e->tail, STREAM_BUF - e->tail);
    if (r <= 0)
        bench_fail("read: %s", r ? strerror(errno) : "the writer went away");
    e->tail += (size_t)r;
    return 1;
}

static int stream_setup(struct cell *c, int is_pipe)
{
    if (is_pipe ? pipe(c->fds) : socketpair(AF_UNIX, SOCK_STREAM, 0, c->fds)) {
        snprintf(c->error, sizeof c->error, "%s: %s", is_pipe ? "pipe" : "socketpair", strerror(errno));
        return -1;
    }
    if (is_pipe)
        fcntl(c->fds[1], F_SETPIPE_SZ, 1 << 20); /* Linux's default /proc/sys/fs/pipe-max-size */
    return 0;
}
static int pipe_setup(struct cell *c) { return stream_setup(c, 1); }
static int unix_setup(struct cell *c) { return stream_setup(c, 0); }

static endpoint *stream_open(struct cell *c, int pub, int index)
{
    (void)index;
    struct stream_ep *e = calloc(1, sizeof *e);
    if (!e)
        bench_fail("out of memory");
    e->base.t = c->t;
    e->base.stage = stage_alloc();
    /* A pipe is written at [1]; a socket pair is symmetric. */
    e->fd = c->fds[pub];
    close(c->fds[!pub]);
    if (!pub && !(e->buf = malloc(STREAM_BUF)))
        bench_fail("out of memory");
    return &e->base;
}

static void *stream_begin(endpoint *b, size_t len)
{
    (void)len;
    return b->stage + 4;
}

static void stream_finish(endpoint *b, size_t len)
{
    struct stream_ep *e = (struct stream_ep *)b;
    uint32_t n = (uint32_t)len;
    memcpy(b->stage, &n, 4);
    for (size_t put = 0; put < len + 4;) {
        ssize_t w = write(e->fd, b->stage + put, len + 4 - put);
        if (w < 0)
            bench_fail("write: %s", strerror(errno));
        put += (size_t)w;
    }
}

static int stream_recv(endpoint *b, const void **data, size_t *len, uint64_t *lost, int timeout_ms)
{
    (void)lost;
    struct stream_ep *e = (struct stream_ep *)b;
    uint32_t n;
    while (e->tail - e->head < 4)
        if (!stream_fill(e, timeout_ms))
            return 0;
    memcpy(&n, e->buf + e->head, 4);
    if (n > BENCH_MAX_SIZE)
        bench_fail("stream framing lost: length %u", n);
    while (e->tail - e->head < 4 + (size_t)n)
        if (!stream_fill(e, timeout_ms))
            return 0;
    *data = e->buf + e->head + 4;
    *len = n;
    e->current = 4 + (size_t)n;
    return 1;
}

static int stream_done(endpoint *b)
{
    struct stream_ep *e = (struct stream_ep *)b;
    e->head += e->current;
    if (e->head == e->tail)
        e->head = e->tail = 0;
    return 0;
}

static void stream_close(endpoint *b)
{
    struct stream_ep *e = (struct stream_ep *)b;
    close(e->fd);
    free(e->buf);
    free(b->stage);
    free(e);
}

static void stream_teardown(struct cell *c)
{
    close(c->fds[0]);
    close(c->fds[1]);
}

/* ---- POSIX message queue --------------------------------------------------- */

/* Linux's default limits for an unprivileged user: 10 messages of 8 KiB. */
#define MQ_MAX_MSG 10
#define MQ_MSG_SIZE 8192

struct mq_ep {
    endpoint base;
    mqd_t q;
};

static int mq_setup(struct cell *c)
{
    static unsigned serial;
    snprintf(c->name, sizeof c->name, "/dmaq-bench-%d-%u", (int)getpid(), serial++);
    struct mq_attr attr = {.mq_maxmsg = MQ_MAX_MSG, .mq_msgsize = MQ_MSG_SIZE};
    mq_unlink(c->name);
    mqd_t q = mq_open(c->name, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
    if (q == (mqd_t)-1) {
        snprintf(c->error, sizeof c->error, "mq_open %s: %s", c->name, strerror(errno));
        return -1;
    }
    mq_close(q);
    return 0;
}

static endpoint *mq_open_ep(struct cell *c, int pub, int index)
{
    (void)index;
    struct mq_ep *e = calloc(1, sizeof *e);
    if (!e)
        bench_fail("out of memory");
    e->base.t = c->t;
    e->base.stage = stage_alloc();
    if ((e->q = mq_open(c->name, pub ? O_WRONLY : O_RDONLY)) == (mqd_t)-1)
        bench_fail("mq_open %s: %s", c->name, strerror(errno));
    return &e->base;
}

static void *plain_begin(endpoint *b, size_t len)
{
    (void)len;
    return b->stage;
}

static void mq_finish(endpoint *b, size_t len)
{
    if (mq_send(((struct mq_ep *)b)->q, (const char *)b->stage, len, 0) < 0)
        bench_fail("mq_send: %s", strerror(errno));
}

static int mq_recv_ep(endpoint *b, const void **data, size_t *len, uint64_t *lost, int timeout_ms)
{
    (void)lost;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    ssize_t n = timeout_ms < 0 ? mq_receive(((struct mq_ep *)b)->q, (char *)b->stage, MQ_MSG_SIZE, NULL)
                               : mq_timedreceive(((struct mq_ep *)b)->q, (char *)b->stage, MQ_MSG_SIZE, NULL,
                                                 &deadline);
    if (n < 0 && errno == ETIMEDOUT)
        return 0;
    if (n < 0)
        bench_fail("mq_receive: %s", strerror(errno));
    *data = b->stage;
    *len = (size_t)n;
    return 1;
}

static int nothing_to_release(endpoint *b)
{
    (void)b;
    return 0;
}

static void mq_close_ep(endpoint *b)
{
    mq_close(((struct mq_ep *)b)->q);
    free(b->stage);
    free(b);
}

static void mq_teardown(struct cell *c) { mq_unlink(c->name); }

/* ---- ZeroMQ and NNG over ipc:// -------------------------------------------- */

#if defined(DMAQ_BENCH_ZMQ) || defined(DMAQ_BENCH_NNG)
static int ipc_setup(struct cell *c)
{
    static unsigned serial;
    snprintf(c->name, sizeof c->name, "ipc:///tmp/dmaq-bench-%d-%u.ipc", (int)getpid(), serial++);
    return 0;
}

static void ipc_teardown(struct cell *c) { unlink(c->name + strlen("ipc://")); }
#endif

#ifdef DMAQ_BENCH_ZMQ
struct zmq_ep {
    endpoint base;
    void *ctx, *sock;
    int timeout_ms;
};

static endpoint *zmq_open_ep(struct cell *c, int pub, int index)
{
    (void)index;
    struct zmq_ep *e = calloc(1, sizeof *e);
    if (!e)
        bench_fail("out of memory");
    e->base.t = c->t;
    e->base.stage = stage_alloc();
    e->timeout_ms = -1;
    e->ctx = zmq_ctx_new();
    e->sock = e->ctx ? zmq_socket(e->ctx, pub ? ZMQ_PUSH : ZMQ_PULL) : NULL;
    int linger = 0;
    if (!e->sock || zmq_setsockopt(e->sock, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
        (pub ? zmq_bind(e->sock, c->name) : zmq_connect(e->sock, c->name)) < 0)
        bench_fail("zmq %s: %s", c->name, zmq_strerror(zmq_errno()));
    return &e->base;
}

static void zmq_finish(endpoint *b, size_t len)
{
    if (zmq_send(((struct zmq_ep *)b)->sock, b->stage, len, 0) != (int)len)
        bench_fail("zmq_send: %s", zmq_strerror(zmq_errno()));
}

static int zmq_recv_ep(endpoint *b, const void **data, size_t *len, uint64_t *lost, int timeout_ms)
{
    (void)lost;
    struct zmq_ep *e = (struct zmq_ep *)b;
    if (timeout_ms != e->timeout_ms) { /* a socket option, so set it only when it changes */
        zmq_setsockopt(e->sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
        e->timeout_ms = timeout_ms;
    }
    int n = zmq_recv(e->sock, b->stage, BENCH_MAX_SIZE, 0);
    if (n < 0 && zmq_errno() == EAGAIN)
        return 0;
    if (n < 0)
        bench_fail("zmq_recv: %s", zmq_strerror(zmq_errno()));
    *data = b->stage;
    *len = (size_t)n;
    return 1;
}

static void zmq_close_ep(endpoint *b)
{
    struct zmq_ep *e = (struct zmq_ep *)b;
    zmq_close(e->sock);
    zmq_ctx_term(e->ctx);
    free(b->stage);
    free(e);
}
#endif

#ifdef DMAQ_BENCH_NNG
struct nng_ep {
    endpoint base;
    nng_socket sock;
    int timeout_ms;
};

static endpoint *nng_open_ep(struct cell *c, int pub, int index)
{
    (void)index;
    struct nng_ep *e = calloc(1, sizeof *e);
    if (!e)
        bench_fail("out of memory");
    e->base.t = c->t;
    e->base.stage = stage_alloc();
    e->timeout_ms = -2;
    int rv = pub ? nng_push0_open(&e->sock) : nng_pull0_open(&e->sock);
    /* The subscriber may dial before the publisher listens: a nonblocking
     * dial keeps retrying in the background. */
    /* Without buffers (NNG's default) every push waits for the pull to ask
     * for a message: give it queues like ZeroMQ's default high-water mark. */
    if (!rv)
        rv = nng_socket_set_int(e->sock, pub ? NNG_OPT_SENDBUF : NNG_OPT_RECVBUF, 1000);
    if (!rv)
        rv = pub ? nng_listen(e->sock, c->name, NULL, 0) : nng_dial(e->sock, c->name, NULL, NNG_FLAG_NONBLOCK);
    if (rv)
        bench_fail("nng %s: %s", c->name, nng_strerror(rv));
    return &e->base;
}

static void nng_finish(endpoint *b, size_t len)
{
    int rv = nng_send(((struct nng_ep *)b)->sock, b->stage, len, 0);
    if (rv)
        bench_fail("nng_send: %s", nng_strerror(rv));
}

static int nng_recv_ep(endpoint *b, const void **data, size_t *len, uint64_t *lost, int timeout_ms)
{
    (void)lost;
    struct nng_ep *e = (struct nng_ep *)b;
    if (timeout_ms != e->timeout_ms) {
        nng_socket_set_ms(e->sock, NNG_OPT_RECVTIMEO, timeout_ms < 0 ? NNG_DURATION_INFINITE : timeout_ms);
        e->timeout_ms = timeout_ms;
    }
    size_t n = BENCH_MAX_SIZE;
    int rv = nng_recv(e->sock, b->stage, &n, 0);
    if (rv == NNG_ETIMEDOUT)
        return 0;
    if (rv)
        bench_fail("nng_recv: %s", nng_strerror(rv));
    *data = b->stage;
    *len = n;
    return 1;
}

static void nng_close_ep(endpoint *b)
{
    nng_close(((struct nng_ep *)b)->sock);
    free(b->stage);
    free(b);
}
#endif

/* A transport of the comparison: no dmaq options, no batches. */
#define OTHER_TRANSPORT(name_, key_, max_size_, setup_, open_, begin_, finish_, recv_, done_, close_, teardown_)       \
    {                                                                                                                  \
        .name = name_, .key = key_, .max_size = max_size_, .setup = setup_, .open = open_, .begin = begin_,            \
        .finish = finish_, .recv = recv_, .done = done_, .close = close_, .teardown = teardown_                        \
    }

static const struct transport pipe_transport =
    OTHER_TRANSPORT("pipe", "pipe", BENCH_MAX_SIZE, pipe_setup, stream_open, stream_begin, stream_finish, stream_recv,
                    stream_done, stream_close, stream_teardown);
static const struct transport unix_transport =
    OTHER_TRANSPORT("Unix stream socket", "unix", BENCH_MAX_SIZE, unix_setup, stream_open, stream_begin, stream_finish,
                    stream_recv, stream_done, stream_close, stream_teardown);
static const struct transport mq_transport =
    OTHER_TRANSPORT("POSIX mqueue", "mqueue", MQ_MSG_SIZE, mq_setup, mq_open_ep, plain_begin, mq_finish, mq_recv_ep,
                    nothing_to_release, mq_close_ep, mq_teardown);
#ifdef DMAQ_BENCH_ZMQ
static const struct transport zmq_transport =
    OTHER_TRANSPORT("ZeroMQ ipc (push/pull)", "zeromq", BENCH_MAX_SIZE, ipc_setup, zmq_open_ep, plain_begin, zmq_finish,
                    zmq_recv_ep, nothing_to_release, zmq_close_ep, ipc_teardown);
#endif
#ifdef DMAQ_BENCH_NNG
static const struct transport nng_transport =
    OTHER_TRANSPORT("NNG ipc (push0/pull0)", "nng", BENCH_MAX_SIZE, ipc_setup, nng_open_ep, plain_begin, nng_finish,
                    nng_recv_ep, nothing_to_release, nng_close_ep, ipc_teardown);
#endif

const struct transport *const bench_transports[] = {
    &dmaq_transports[0], &dmaq_transports[1], &dmaq_transports[2], &dmaq_transports[3],
    &dmaq_transports[4], &dmaq_transports[5], &dmaq_transports[6], &dmaq_transports[7],
    &pipe_transport,     &unix_transport,
    &mq_transport,
#ifdef DMAQ_BENCH_ZMQ
    &zmq_transport,
#endif
#ifdef DMAQ_BENCH_NNG
    &nng_transport,
#endif
};
const size_t bench_transport_count = sizeof bench_transports / sizeof *bench_transports;
