/*
 * The connecting side of tcp://: the handshake, and the pump thread of each
 * handle. A publisher's pump takes batches from the handle's outgoing ring,
 * writes them, and releases them once the host acknowledges them, so a
 * connection lost mid-batch loses nothing: after reconnecting, the host says
 * how many of them it already has (it knows the publisher by a token) and
 * the rest are sent again. A subscriber's pump writes what arrives into the
 * handle's incoming ring behind a prefix; the application's releases go back
 * as acknowledgements, which are the host's credit to send more. While the
 * application itself waits in peek, it reads the connection instead, and
 * leases each message where it lies in the receive buffer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../util/clock.h"
#include "../util/counter.h"
#include "codec.h"
#include "tcp.h"

/* In front of every message in a subscriber's incoming ring. */
struct prefix {
    uint64_t seq; /* the host's sequence number; for a LOST marker, the count */
    uint64_t timestamp_ns;
    uint32_t publisher_id, flags;
    uint32_t lost_marker, epoch;
};
#define PREFIX sizeof(struct prefix)
_Static_assert(sizeof(struct prefix) == TCP_SUB_PREFIX, "the credit unit counts this prefix");

struct tcp_client {
    struct tcp_addr addr;
    struct tcp_conf conf;
    struct tcp_hello hello; /* what we ask for; token for publishers */
    struct tcp_shape shape;
    pthread_mutex_t wlock; /* socket writes, and changes of fd */
    int fd;                /* -1 while disconnected */
    _Atomic uint32_t epoch; /* connections made so far */
    pthread_t thread;
    atomic_bool stop, closing;
    char why[256]; /* why the connection was lost (under wlock) */
    uint8_t *rbuf;
    size_t rcap, rlen;
    size_t roff; /* subscriber: rbuf[roff, rlen) is not taken yet */
    uint64_t last_rx, down_since, last_progress;
    _Atomic uint64_t last_tx; /* the application's ACKs count too */
    int64_t ping_ns; /* idle time after which we send a PING */
    struct tcp_codec codec; /* this connection's payload encoding */
    uint8_t *scratch;       /* publisher on an encoding channel: encoded messages */
    size_t scratch_cap;
    /* publisher */
    dmaq_sub *out;
    dmaq_lease *batch;
    size_t batch_n, batch_sent, batch_acked;
    uint64_t acked;
    _Atomic uint32_t publisher_id;
    /* subscriber: whoever reads the connection and fills the incoming ring
     * (the pump, or the application while it waits in peek) holds rlock */
    pthread_mutex_t rlock;
    _Atomic uint64_t app_peeks; /* the application's peeks so far: the pump stands aside while they come */
    _Atomic uint32_t app_reading; /* application threads reading the connection now: the pump stands aside too */
    atomic_bool shut;             /* the application shut the connection down; `why` says why */
    dmaq_pub *in;
    _Atomic uint64_t in_count; /* messages and markers put in the incoming ring (by rlock's holder) */
    /* The receive buffer holding the message the application has leased
     * in place (NULL: none). Nothing moves in it until the release clears
     * this; a reconnect meanwhile reads into a new buffer, and the old one
     * waits in `orphan` to be freed. */
    _Atomic(uint8_t *) lent_in;
    /* The borrow (net_borrow: the message in the registered receive ring,
     * over RDMA) the application has leased from, and the bytes it ends;
     * NULL: none. Nobody reads the connection meanwhile. */
    _Atomic(void *) lent_ring;
    size_t lent_ring_used;
    uint32_t lent_ring_epoch; /* the connection it is on */
    uint8_t *orphan;
    uint64_t last_seq;
    bool any_seq, check_gap, queue;
};

int tcp_handshake(const struct tcp_addr *a, const struct tcp_conf *c, struct tcp_hello *hello,
                  struct tcp_codec *codec, struct tcp_shape *shape, dmaq_stat *stat, dmaq_sub_stat *subs,
                  size_t subs_cap, int *n_subs, uint8_t *buf, size_t *len, size_t cap)
{
    int fd = tcp_dial(a, c);
    if (fd < 0)
        return fd;
    char what[512];
    snprintf(what, sizeof what, NET_SCHEME "://%s:%s/%s", a->host, a->port, a->name);
    struct tcp_frame f;
    *len = 0;
    long n = tcp_read_frame(fd, buf, len, cap, TCP_FROM_HOST_HANDSHAKE, 0, &f, c->timeout_ns, what);
    if (n > 0 && f.type != TCP_CHALLENGE)
        n = dmaq_error_set(DMAQ_ECORRUPT, "%s: the host did not open with a challenge", what);
    if (n < 0)
        goto fail;
    if (f.u.challenge.version != TCP_VERSION) {
        n = dmaq_error_set(DMAQ_EVERSION, "%s: the host speaks " NET_SCHEME ":// protocol version %u, we speak %u",
                           what, f.u.challenge.version, TCP_VERSION);
        goto fail;
    }
    uint8_t host_nonce[TCP_NONCE];
    memcpy(host_nonce, f.u.challenge.nonce, TCP_NONCE);
    tcp_consume(buf, len, (size_t)n);
    tcp_random(hello->nonce, TCP_NONCE);
    tcp_hello_mac(c, host_nonce, hello, hello->mac);
    uint8_t out[TCP_HEADER + TCP_HELLO_FIXED + TCP_NAME_MAX];
    if (tcp_write_all(fd, out, tcp_put_hello(out, hello), c->timeout_ns, NULL) < 0) {
        n = dmaq_error_set(DMAQ_ESYS, "%s: connection lost in the handshake (%s)", what, strerror(errno));
        goto fail;
    }
    n = tcp_read_frame(fd, buf, len, cap, TCP_FROM_HOST_HANDSHAKE, 0, &f, c->timeout_ns, what);
    if (n > 0 && f.type != TCP_WELCOME)
        n = dmaq_error_set(DMAQ_ECORRUPT, "%s: the host did not answer with a welcome", what);
    if (n < 0)
        goto fail;
    struct tcp_welcome *w = &f.u.welcome;
    if (w->status < 0) {
        int code = w->status >= DMAQ_ESYS ? w->status : DMAQ_ESYS;
        n = dmaq_error_set(code, "%s: %.*s", what, (int)w->reason_len, w->reason);
        goto fail;
    }
    uint8_t mac[TCP_MAC];
    tcp_welcome_mac(c, host_nonce, hello->nonce, mac);
    if (c->has_key && !tcp_mac_equal(mac, w->mac)) {
        n = dmaq_error_set(DMAQ_EACCES, "%s: the host could not prove it knows the channel's key", what);
        goto fail;
    }
    if (codec && tcp_codec_init(codec, c, w->features, false, host_nonce, hello->nonce) < 0) {
        n = dmaq_error_set(DMAQ_ENOMEM, "%s: out of memory", what);
        goto fail;
    }
    shape->features = w->features;
    shape->kind = w->kind;
    shape->policy = w->policy;
    shape->capacity = w->capacity;
    shape->max_message = w->max_message;
    shape->publisher_id = w->publisher_id;
    shape->received = w->received;
    shape->timeout_ms = w->timeout_ms;
    if ((w->kind != DMAQ_KIND_QUEUE && w->kind != DMAQ_KIND_BROADCAST) ||
        (w->policy != DMAQ_POLICY_BLOCK && w->policy != DMAQ_POLICY_OVERWRITE) || w->capacity < DMAQ_CAPACITY_MIN ||
        (w->capacity & (w->capacity - 1)) || w->capacity > (1ull << 40) ||
        w->max_message > w->capacity / 2 - DMAQ_RECORD_HEADER) {
        n = dmaq_error_set(DMAQ_ECORRUPT, "%s: the host describes an impossible channel", what);
        goto fail;
    }
    if (stat) {
        if (!w->has_stat) {
            n = dmaq_error_set(DMAQ_ECORRUPT, "%s: the host sent no figures", what);
            goto fail;
        }
        stat->kind = w->stat_kind;
        stat->policy = w->stat_policy;
        stat->mode = w->stat_mode;
        stat->flags = w->stat_flags;
        stat->capacity = w->stat_capacity;
        stat->max_message = w->stat_max_message;
        stat->bytes_used = w->stat_bytes_used;
        stat->published = w->stat_published;
        stat->publishers = w->stat_publishers;
        stat->subscribers = w->stat_subscribers;
        stat->creator_pid = w->stat_creator_pid;
        for (uint32_t i = 0; i < w->n_subs && i < subs_cap; i++) {
            const uint8_t *e = w->subs + i * TCP_SUB_STAT_SIZE;
            subs[i] = (dmaq_sub_stat){tcp_get64(e), tcp_get64(e + 8), tcp_get64(e + 16), tcp_get64(e + 24),
                                      (int32_t)tcp_get32(e + 32), tcp_get32(e + 36)};
        }
        *n_subs = (int)w->stat_subscribers;
    }
    tcp_consume(buf, len, (size_t)n);
    return fd;
fail:
    net_close(fd);
    return (int)n;
}

/* ---- connection upkeep, shared by both pumps ---- */

/* Whether the calling thread is cl's pump (else the application's). */
static bool in_pump(const struct tcp_client *cl) { return pthread_equal(pthread_self(), cl->thread); }

/* End the connection. Only the pump closes it (it may be waiting on the
 * descriptor); another thread shuts it down, and the pump, finding it so,
 * closes it and keeps this reason. */
static void disconnect(struct tcp_client *cl, const char *why)
{
    pthread_mutex_lock(&cl->wlock);
    if (cl->fd >= 0 && !in_pump(cl)) {
        if (!atomic_load(&cl->shut))
            snprintf(cl->why, sizeof cl->why, "%s", why);
        atomic_store(&cl->shut, true);
        net_shutdown(cl->fd, SHUT_RDWR);
    } else if (cl->fd >= 0) {
        net_close(cl->fd);
        cl->fd = -1;
        if (!atomic_load(&cl->shut))
            snprintf(cl->why, sizeof cl->why, "%s", why);
        atomic_store(&cl->shut, false);
        cl->down_since = dmaq__mono_ns();
    }
    pthread_mutex_unlock(&cl->wlock);
}

static int connect_once(struct tcp_client *cl)
{
    struct tcp_hello h = cl->hello;
    h.acked = cl->acked;
    struct tcp_shape shape;
    size_t len = 0;
    tcp_codec_free(&cl->codec);
    int fd = tcp_handshake(&cl->addr, &cl->conf, &h, &cl->codec, &shape, NULL, NULL, 0, NULL, cl->rbuf, &len,
                           cl->rcap);
    if (fd < 0)
        return fd;
    if (cl->epoch && (shape.kind != cl->shape.kind || shape.policy != cl->shape.policy ||
                      shape.capacity != cl->shape.capacity || shape.max_message != cl->shape.max_message ||
                      shape.features != cl->shape.features)) {
        net_close(fd);
        return dmaq_error_set(DMAQ_EINCOMPAT,
                              NET_SCHEME "://%s:%s/%s was bound again with another kind, policy, size or encoding",
                              cl->addr.host, cl->addr.port, cl->addr.name);
    }
    cl->shape = shape;
    cl->ping_ns = tcp_ping_every(&cl->conf, shape.timeout_ms);
    atomic_store(&cl->publisher_id, shape.publisher_id);
    cl->rlen = len;
    cl->roff = 0;
    cl->last_rx = dmaq__coarse_ns();
    atomic_store(&cl->last_tx, cl->last_rx);
    if (cl->out)
        tcp_lend_ring(fd, cl->out); /* a reconnect: what the first connection got in tcp_client_pub_open */
    pthread_mutex_lock(&cl->wlock);
    cl->fd = fd;
    atomic_fetch_add(&cl->epoch, 1);
    pthread_mutex_unlock(&cl->wlock);
    return 0;
}

/* Try to reconnect, backing off while the host stays away. */
static void reconnect(struct tcp_client *cl, int64_t *backoff_ns)
{
    if (connect_once(cl) == 0) {
        *backoff_ns = 0;
        return;
    }
    pthread_mutex_lock(&cl->wlock);
    snprintf(cl->why, sizeof cl->why, "%s", dmaq_last_error());
    pthread_mutex_unlock(&cl->wlock);
    *backoff_ns = *backoff_ns ? *backoff_ns * 2 : 10000000;
    if (*backoff_ns > 500000000)
        *backoff_ns = 500000000;
    for (int64_t slept = 0; slept < *backoff_ns && !atomic_load(&cl->stop); slept += TCP_SLICE_NS)
        usleep(TCP_SLICE_NS / 1000);
}

static void send_small(struct tcp_client *cl, uint8_t type, uint64_t count)
{
    uint8_t f[TCP_SMALL_FRAME];
    size_t n = tcp_put_small(f, type, count);
    pthread_mutex_lock(&cl->wlock);
    if (cl->fd >= 0 && tcp_write_all(cl->fd, f, n, cl->conf.timeout_ns, NULL) < 0)
        net_shutdown(cl->fd, SHUT_RDWR); /* the pump notices and reconnects */
    pthread_mutex_unlock(&cl->wlock);
    atomic_store_explicit(&cl->last_tx, dmaq__coarse_ns(), memory_order_relaxed);
}

static bool heard_from_host(struct tcp_client *cl, long n);

/* Keep the host from taking our silence for death. */
static void ping_if_quiet(struct tcp_client *cl, uint64_t now)
{
    if (now - atomic_load_explicit(&cl->last_tx, memory_order_relaxed) >= (uint64_t)cl->ping_ns)
        send_small(cl, TCP_PING, 0);
}

/* Read what the host sent. Returns false when the connection is gone. */
static bool read_host(struct tcp_client *cl, int64_t wait_ns)
{
    if (cl->roff && atomic_load_explicit(&cl->lent_in, memory_order_acquire) != cl->rbuf) {
        memmove(cl->rbuf, cl->rbuf + cl->roff, cl->rlen - cl->roff); /* room at the end to read into */
        cl->rlen -= cl->roff;
        cl->roff = 0;
    }
    if (cl->rlen == cl->rcap)
        return true; /* full of frames the ring had no room for: they go first */
    return heard_from_host(cl, tcp_read_some(cl->fd, cl->rbuf, &cl->rlen, cl->rcap, wait_ns));
}

/* After reading the connection and getting n bytes (-1: it failed or
 * ended, errno 0 for the end): note the host's silence, and ping it if we
 * were quiet long enough. Returns false when the connection is gone. */
static bool heard_from_host(struct tcp_client *cl, long n)
{
    uint64_t now = dmaq__coarse_ns();
    if (n < 0) {
        disconnect(cl, errno ? strerror(errno) : "the host closed the connection");
        return false;
    }
    if (n > 0)
        cl->last_rx = now;
    else if (now - cl->last_rx > (uint64_t)cl->conf.timeout_ns) {
        disconnect(cl, "the host went silent");
        return false;
    }
    ping_if_quiet(cl, now);
    return true;
}

static void protocol_error(struct tcp_client *cl, const char *why)
{
    tcp_log(NET_SCHEME "://%s:%s/%s: malformed frame from the host: %s", cl->addr.host, cl->addr.port, cl->addr.name,
            why);
    disconnect(cl, why);
}

/* ---- publishers ---- */

/* Write iov[0..k) whole, or disconnect. */
static bool write_iov(struct tcp_client *cl, struct iovec *v, size_t k)
{
    uint64_t deadline = dmaq__deadline(cl->conf.timeout_ns);
    while (k) {
        struct msghdr m = {.msg_iov = v, .msg_iovlen = k};
        ssize_t n = net_sendmsg(cl->fd, &m, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || dmaq__mono_ns() > deadline) {
            disconnect(cl, n < 0 ? strerror(errno) : "writes stalled");
            return false;
        }
        while (k && (size_t)n >= v->iov_len) {
            n -= (ssize_t)v->iov_len;
            v++;
            k--;
        }
        if (k) {
            v->iov_base = (uint8_t *)v->iov_base + n;
            v->iov_len -= (size_t)n;
        }
    }
    return true;
}

/* Write the batch's messages not sent yet, in one writev when they go as
 * they are, else encoded through the scratch buffer a chunk at a time. */
static bool send_batch(struct tcp_client *cl)
{
    struct iovec iov[2 * TCP_BATCH];
    uint8_t heads[TCP_BATCH][TCP_HEADER];
    bool encode = tcp_codec_active(&cl->codec);
    size_t k = 0, used = 0;
    for (size_t i = cl->batch_sent; i < cl->batch_n; i++) {
        const dmaq_lease *l = &cl->batch[i];
        if (!encode) {
            tcp_put_header(heads[i], TCP_MSG, (uint32_t)l->len);
            iov[k++] = (struct iovec){heads[i], TCP_HEADER};
            if (l->len)
                iov[k++] = (struct iovec){l->data, l->len};
            continue;
        }
        if (used + TCP_HEADER + tcp_codec_bound(l->len) > cl->scratch_cap) {
            if (!write_iov(cl, iov, k))
                return false;
            k = used = 0;
        }
        uint8_t *o = cl->scratch + used, flags;
        size_t n = tcp_codec_seal(&cl->codec, NULL, 0, l->data, l->len, o + TCP_HEADER, &flags);
        tcp_put_header(o, TCP_MSG, (uint32_t)n);
        o[5] = flags;
        iov[k++] = (struct iovec){o, TCP_HEADER + n};
        used += TCP_HEADER + n;
    }
    if (!write_iov(cl, iov, k))
        return false;
    cl->batch_sent = cl->batch_n;
    atomic_store_explicit(&cl->last_tx, dmaq__coarse_ns(), memory_order_relaxed);
    return true;
}

/* Take in what the host sent a publisher: acknowledgements and pings. */
static int take_ack(void *ctx, const struct tcp_frame *f)
{
    struct tcp_client *cl = ctx;
    if (f->type != TCP_ACK)
        return 0;
    if (f->u.count > cl->batch_sent - cl->batch_acked) {
        protocol_error(cl, "acknowledged messages it was not sent");
        return 1;
    }
    cl->batch_acked += f->u.count;
    cl->last_progress = dmaq__mono_ns();
    return 0;
}

static bool take_acks(struct tcp_client *cl)
{
    const char *why = NULL;
    int rc = tcp_drain_frames(cl->rbuf, &cl->rlen, TCP_FROM_HOST_TO_PUB, cl->shape.max_message, take_ack, cl, &why);
    if (rc < 0)
        protocol_error(cl, why);
    return rc == 0;
}

/* Wait a little for acknowledgements; true once the whole batch has them. */
static bool await_acks(struct tcp_client *cl)
{
    return read_host(cl, TCP_SLICE_NS) && take_acks(cl) && cl->batch_acked == cl->batch_n;
}

/* Closing: give up when the host has taken nothing for a whole peer
 * timeout (gone, or its channel full and nobody reading). */
static bool linger_over(struct tcp_client *cl)
{
    uint64_t since = cl->fd < 0 ? cl->down_since : cl->last_progress;
    return atomic_load(&cl->closing) && dmaq__mono_ns() - since > (uint64_t)cl->conf.timeout_ns;
}

static void *pub_pump(void *arg)
{
    struct tcp_client *cl = arg;
    int64_t backoff = 0;
    while (!atomic_load(&cl->stop)) {
        if (linger_over(cl))
            break;
        if (cl->fd < 0) {
            reconnect(cl, &backoff);
            if (cl->fd >= 0 && cl->batch_n) {
                /* The host already has shape.received - acked of this batch. */
                uint64_t have = cl->shape.received - cl->acked;
                cl->batch_sent = cl->batch_acked = have < cl->batch_n ? (size_t)have : cl->batch_n;
            }
            continue;
        }
        if (!cl->batch_n) {
            size_t n = 0;
            int rc = dmaq_sub_peek_many(cl->out, cl->batch, TCP_BATCH, &n, TCP_SLICE_NS);
            if (rc == DMAQ_EAGAIN || rc == DMAQ_ETIMEDOUT) {
                if (atomic_load(&cl->closing))
                    break; /* all sent and acknowledged */
                if (read_host(cl, 0))
                    take_acks(cl);
                continue;
            }
            if (rc < 0) {
                tcp_log(NET_SCHEME "://%s:%s/%s: %s", cl->addr.host, cl->addr.port, cl->addr.name, dmaq_last_error());
                break;
            }
            cl->batch_n = n;
            cl->batch_sent = cl->batch_acked = 0;
            cl->last_progress = dmaq__mono_ns();
        }
        if (cl->batch_sent < cl->batch_n && !send_batch(cl))
            continue;
        if (await_acks(cl)) {
            dmaq_sub_release_many(cl->out, cl->batch, cl->batch_n);
            cl->acked += cl->batch_n;
            cl->batch_n = 0;
        }
    }
    size_t unsent = 0, n;
    if (cl->batch_n) {
        unsent = cl->batch_n - cl->batch_acked;
        dmaq_sub_release_many(cl->out, cl->batch, cl->batch_n);
    }
    /* Given up on at close: what never even left for the host counts too. */
    while (dmaq_sub_peek_many(cl->out, cl->batch, TCP_BATCH, &n, 0) == 0 && n) {
        unsent += n;
        dmaq_sub_release_many(cl->out, cl->batch, n);
    }
    if (unsent)
        tcp_log(NET_SCHEME "://%s:%s/%s: closing with %zu messages the host never acknowledged (%s)", cl->addr.host,
                cl->addr.port, cl->addr.name, unsent, cl->why[0] ? cl->why : "it took none for a peer timeout");
    return NULL;
}

static struct tcp_client *client_new(const struct tcp_addr *a, const dmaq_options *o, const struct tcp_conf *c,
                                     uint32_t role)
{
    struct tcp_client *cl = calloc(1, sizeof *cl);
    if (!cl)
        return NULL;
    cl->addr = *a;
    cl->conf = *c;
    cl->fd = -1;
    cl->hello = (struct tcp_hello){.version = TCP_VERSION, .role = role, .kind = o->kind, .policy = o->policy,
                                   .start = o->start, .capacity = o->capacity, .max_message = o->max_message,
                                   .timeout_ms = (uint32_t)(c->timeout_ns / 1000000),
                                   .features = (o->flags & DMAQ_OPEN_ENCRYPT) ? TCP_FEATURE_ENCRYPT : 0,
                                   .name_len = (uint16_t)strlen(cl->addr.name), .name = cl->addr.name};
    while (!cl->hello.token)
        tcp_random(&cl->hello.token, sizeof cl->hello.token);
    pthread_mutex_init(&cl->wlock, NULL);
    pthread_mutex_init(&cl->rlock, NULL);
    cl->rcap = 64 * 1024;
    cl->rbuf = malloc(cl->rcap);
    if (!cl->rbuf) {
        free(cl);
        return NULL;
    }
    return cl;
}

static void client_free(struct tcp_client *cl);

/* A client for `role`, connected once: the first connection must work, so
 * that open reports what is wrong (nothing listens, wrong key, wrong kind). */
static int client_start(const struct tcp_addr *a, const dmaq_options *o, const struct tcp_conf *c, uint32_t role,
                        struct tcp_client **out)
{
    struct tcp_client *cl = client_new(a, o, c, role);
    if (!cl)
        return dmaq_error_set(DMAQ_ENOMEM, "out of memory");
    int rc = connect_once(cl);
    if (rc < 0) {
        client_free(cl);
        return rc;
    }
    *out = cl;
    return 0;
}

static void client_free(struct tcp_client *cl)
{
    if (cl->fd >= 0)
        net_close(cl->fd);
    tcp_codec_free(&cl->codec);
    free(cl->scratch);
    pthread_mutex_destroy(&cl->wlock);
    pthread_mutex_destroy(&cl->rlock);
    free(cl->rbuf);
    free(cl->orphan);
    free(cl->batch);
    free(cl);
}

/* A private ring for one handle: opened by both its ends, then unnamed. */
static int private_ring(const char *what, const dmaq_options *o, dmaq_pub **pub, dmaq_sub **sub, bool sub_first)
{
    char uri[512];
    int rc = tcp_ring_uri(uri, sizeof uri, what);
    if (rc < 0)
        return rc;
    if (sub_first) {
        if ((rc = dmaq_sub_open(uri, o, sub)) == 0 && (rc = dmaq_pub_open(uri, o, pub)) < 0)
            dmaq_sub_close(*sub);
    } else {
        if ((rc = dmaq_pub_open(uri, o, pub)) == 0 && (rc = dmaq_sub_open(uri, o, sub)) < 0)
            dmaq_pub_close(*pub);
    }
    char why[512] = ""; /* the unlink of a name that may never have been made must not replace it */
    if (rc < 0)
        snprintf(why, sizeof why, "%s", dmaq_last_error());
    dmaq_channel_unlink(uri);
    return rc < 0 ? dmaq_error_set(rc, "%s", why) : 0;
}

/* Start the pump of a client whose private ring is open; on failure, close
 * the ring's two handles and free the client. */
static int start_pump(struct tcp_client *cl, void *(*pump)(void *), dmaq_pub *pub, dmaq_sub *sub)
{
    if (pthread_create(&cl->thread, NULL, pump, cl) == 0)
        return 0;
    int rc = dmaq_error_set(DMAQ_ESYS, "cannot start a thread for " NET_SCHEME "://%s:%s/%s", cl->addr.host,
                            cl->addr.port, cl->addr.name);
    dmaq_pub_close(pub);
    dmaq_sub_close(sub);
    client_free(cl);
    return rc;
}

int tcp_client_pub_open(struct tcp_pub_state *s, const struct tcp_addr *a, const dmaq_options *o,
                        const struct tcp_conf *c)
{
    struct tcp_client *cl = NULL;
    int rc = client_start(a, o, c, TCP_ROLE_PUB, &cl);
    if (rc < 0)
        return rc;
    cl->batch = calloc(TCP_BATCH, sizeof *cl->batch);
    if (cl->batch && tcp_codec_active(&cl->codec)) {
        cl->scratch_cap = 256 * 1024 + TCP_HEADER + tcp_codec_bound(cl->shape.max_message);
        if (!(cl->scratch = malloc(cl->scratch_cap))) {
            free(cl->batch);
            cl->batch = NULL;
        }
    }
    dmaq_options ro = DMAQ_OPTIONS_INIT;
    ro.kind = DMAQ_KIND_QUEUE;
    ro.flags = DMAQ_OPEN_FENCED; /* its pump sleeps and wakes with every burst: see dmaq.h */
    ro.capacity = cl->shape.capacity;
    ro.max_message = cl->shape.max_message;
    ro.spin_ns = o->spin_ns;
    if (!cl->batch) {
        rc = dmaq_error_set(DMAQ_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = private_ring("out", &ro, &s->inner, &cl->out, false)) < 0)
        goto fail;
    tcp_lend_ring(cl->fd, cl->out); /* the leases of this handle are slots of a registered send ring */
    if ((rc = start_pump(cl, pub_pump, s->inner, cl->out)) < 0)
        return rc;
    s->client = cl;
    return 0;
fail:
    client_free(cl);
    return rc;
}

uint32_t tcp_client_pub_id(const struct tcp_pub_state *s) { return atomic_load(&s->client->publisher_id); }

void tcp_client_pub_close(struct tcp_pub_state *s)
{
    struct tcp_client *cl = s->client;
    dmaq_pub_close(s->inner); /* aborts a reservation still held; the rest drains */
    atomic_store(&cl->closing, true);
    pthread_join(cl->thread, NULL);
    dmaq_sub_close(cl->out);
    client_free(cl);
}

/* ---- subscribers ---- */

enum put { PUT_DONE, PUT_FULL, PUT_FAILED };

/* Write a message into the incoming ring behind its prefix, decoding the
 * MSG frame `f` straight into place (f NULL: a LOST marker). The pump waits
 * for room; the application, the ring's own reader, may not (PUT_FULL: the
 * frame stays where it is), and reads directly only plain channels, whose
 * frames it can size before anything is decoded. */
static enum put put_in(struct tcp_client *cl, const struct prefix *p, const struct tcp_frame *f)
{
    bool may_wait = in_pump(cl);
    dmaq_lease lease;
    int rc = DMAQ_EAGAIN;
    if (!may_wait && (rc = dmaq_pub_reserve(cl->in, PREFIX + (f ? f->u.msg.len : 0), &lease, 0)) == DMAQ_EAGAIN)
        return PUT_FULL;
    uint8_t *in = NULL;
    size_t in_len = 0;
    long len = 0;
    const char *why = NULL;
    if (f) {
        in = (uint8_t *)f->u.msg.data; /* in our receive buffer: decrypted in place */
        in_len = f->u.msg.len;
        len = tcp_codec_open(&cl->codec, f->body, TCP_MSG_META, in, &in_len, f->flags, cl->shape.max_message, &why);
    }
    if (len < 0) {
        if (rc == 0)
            dmaq_pub_abort(cl->in, &lease);
        protocol_error(cl, why);
        return PUT_FAILED;
    }
    while (may_wait && (rc = dmaq_pub_reserve(cl->in, PREFIX + (size_t)len, &lease, TCP_SLICE_NS)) == DMAQ_ETIMEDOUT)
        if (atomic_load(&cl->stop))
            return PUT_FAILED;
    if (rc < 0) {
        tcp_log(NET_SCHEME "://%s:%s/%s: %s", cl->addr.host, cl->addr.port, cl->addr.name, dmaq_last_error());
        return PUT_FAILED;
    }
    memcpy(lease.data, p, PREFIX);
    if (f && tcp_codec_copy(&cl->codec, in, in_len, f->flags, (uint8_t *)lease.data + PREFIX, (size_t)len, &why) < 0) {
        dmaq_pub_abort(cl->in, &lease);
        protocol_error(cl, why);
        return PUT_FAILED;
    }
    if (dmaq_pub_commit(cl->in, &lease, PREFIX + (size_t)len) < 0)
        return PUT_FAILED;
    atomic_store_explicit(&cl->in_count, atomic_load_explicit(&cl->in_count, memory_order_relaxed) + 1,
                          memory_order_release);
    return PUT_DONE;
}

static enum put put_lost(struct tcp_client *cl, uint64_t count)
{
    struct prefix p = {.seq = count, .lost_marker = 1, .epoch = atomic_load(&cl->epoch)};
    return put_in(cl, &p, NULL);
}

/* One frame from the host into the incoming ring; nonzero if it could not
 * go in (the ring is full, we are stopping, or the connection was found
 * broken): it stays in the buffer, and what it changes is not changed. */
static int take_frame(void *ctx, const struct tcp_frame *f)
{
    struct tcp_client *cl = ctx;
    if (f->type == TCP_MSG) {
        if (cl->check_gap && f->u.msg.seq > cl->last_seq + 1 &&
            put_lost(cl, f->u.msg.seq - cl->last_seq - 1) != PUT_DONE)
            return 1;
        cl->check_gap = false;
        struct prefix p = {f->u.msg.seq, f->u.msg.timestamp_ns, f->u.msg.publisher_id, f->u.msg.flags, 0,
                           atomic_load(&cl->epoch)};
        if (put_in(cl, &p, f) != PUT_DONE)
            return 1;
        cl->last_seq = f->u.msg.seq;
        cl->any_seq = true;
    } else if (f->type == TCP_LOST) {
        if (put_lost(cl, f->u.count) != PUT_DONE)
            return 1;
        /* Those are the messages right after the last one we had: a gap
         * after a reconnect must not count them again. */
        if (cl->any_seq)
            cl->last_seq += f->u.count;
    }
    return 0;
}

/* The pump's read (rlock held): what the host sent, its messages into the
 * incoming ring. A frame the ring has no room for stays in the buffer. */
static void take_in(struct tcp_client *cl)
{
    if (!read_host(cl, 0))
        return;
    const char *why = NULL;
    size_t len = cl->rlen - cl->roff;
    int rc = tcp_drain_frames(cl->rbuf + cl->roff, &len, TCP_FROM_HOST_TO_SUB, cl->shape.max_message, take_frame, cl,
                              &why);
    cl->rlen = cl->roff + len;
    if (rc < 0)
        protocol_error(cl, why);
}

/* A receive buffer that is not the one the application has leased from
 * can go; rlock held. */
static void free_orphan(struct tcp_client *cl)
{
    if (cl->orphan && atomic_load_explicit(&cl->lent_in, memory_order_acquire) != cl->orphan) {
        free(cl->orphan);
        cl->orphan = NULL;
    }
}

/* Before a reconnect overwrites the receive buffer: if the application
 * leases from it, read into a new one. False if there is no memory for one. */
static bool spare_lent_buffer(struct tcp_client *cl)
{
    free_orphan(cl);
    if (atomic_load_explicit(&cl->lent_in, memory_order_acquire) != cl->rbuf)
        return true;
    if (cl->orphan)
        return false; /* cannot happen: only one message is leased at a time */
    uint8_t *fresh = malloc(cl->rcap);
    if (!fresh)
        return false;
    cl->orphan = cl->rbuf;
    cl->rbuf = fresh;
    cl->rlen = cl->roff = 0;
    return true;
}

/* Does the application lease from the current connection's receive ring
 * (net_borrow)? Nothing may be read from it then. */
static bool lent_here(struct tcp_client *cl)
{
    return atomic_load_explicit(&cl->lent_ring, memory_order_acquire) && cl->lent_ring_epoch == atomic_load(&cl->epoch);
}

/* The pump while the application leases from the connection's receive
 * ring: it watches for the connection's end (then closes it, and
 * reconnects: the borrowed bytes stay until the release) and pings the
 * host meanwhile, waiting at most nap_ns. */
static void watch_lent_connection(struct tcp_client *cl, int64_t nap_ns)
{
    struct pollfd p = {cl->fd, 0, 0};
    net_poll_idle(&p, 1, (int)(nap_ns / 1000000));
    if (p.revents & (POLLHUP | POLLERR)) {
        pthread_mutex_lock(&cl->rlock);
        disconnect(cl, "the host closed the connection");
        pthread_mutex_unlock(&cl->rlock);
    } else {
        ping_if_quiet(cl, dmaq__coarse_ns());
    }
}

/* The pump keeps the connection read while the application does not: it
 * stands aside while the application reads it, or has peeked within the
 * pump's last nap, so a message wakes one thread, not two. The naps grow
 * from TCP_APP_READS_NS to TCP_APP_READS_MAX_NS while the application
 * stays: each wake-up takes a CPU from it, on two CPUs a busy-polling one. */
static void *sub_pump(void *arg)
{
    struct tcp_client *cl = arg;
    int64_t backoff = 0;
    uint64_t peeks_seen = 0;
    int64_t nap_ns = TCP_APP_READS_NS;
    while (!atomic_load(&cl->stop)) {
        if (cl->fd < 0) {
            pthread_mutex_lock(&cl->rlock);
            if (spare_lent_buffer(cl))
                reconnect(cl, &backoff);
            else
                usleep(TCP_SLICE_NS / 1000);
            if (cl->fd >= 0 && !cl->queue && cl->any_seq)
                cl->check_gap = true; /* what we missed shows in the next sequence number */
            pthread_mutex_unlock(&cl->rlock);
            continue;
        }
        uint64_t peeks = atomic_load_explicit(&cl->app_peeks, memory_order_relaxed);
        bool shut = atomic_load(&cl->shut);
        if (lent_here(cl) && !shut) {
            watch_lent_connection(cl, nap_ns);
            continue;
        }
        if ((peeks != peeks_seen || atomic_load_explicit(&cl->app_reading, memory_order_relaxed)) && !shut) {
            peeks_seen = peeks;
            usleep((useconds_t)(nap_ns / 1000));
            nap_ns = nap_ns * 2 < TCP_APP_READS_MAX_NS ? nap_ns * 2 : TCP_APP_READS_MAX_NS;
            continue;
        }
        nap_ns = TCP_APP_READS_NS;
        if (!shut) {
            struct pollfd p = {cl->fd, POLLIN, 0};
            net_poll_idle(&p, 1, (int)(TCP_SLICE_NS / 1000000));
        }
        pthread_mutex_lock(&cl->rlock);
        free_orphan(cl);
        bool lent = lent_here(cl) && !shut;
        if (!lent)
            take_in(cl); /* (shut, a read fails while lent, and the connection closes) */
        bool no_room = lent || cl->rlen == cl->rcap;
        pthread_mutex_unlock(&cl->rlock);
        if (no_room)
            usleep(TCP_SLICE_NS / 1000); /* the ring is full, or the application leases from the buffer */
    }
    return NULL;
}

/* opaque_[2] of a lease into the receive buffer (an incoming ring's
 * sequence number there otherwise). */
#define LEASED_IN_PLACE UINT64_MAX

static bool ring_empty(const struct tcp_sub_state *s)
{
    return atomic_load_explicit(&s->client->in_count, memory_order_acquire) == s->taken;
}

/* Fill *lease with the MSG frame f, taken from the connection: the next
 * message in sequence, leased where it lies. */
static void lease_frame(struct tcp_sub_state *s, dmaq_lease *lease, const struct tcp_frame *f)
{
    struct tcp_client *cl = s->client;
    cl->check_gap = false;
    cl->last_seq = f->u.msg.seq;
    cl->any_seq = true;
    *lease = (dmaq_lease){.data = (void *)f->u.msg.data,
                          .len = f->u.msg.len,
                          .seq = f->u.msg.seq,
                          .timestamp_ns = f->u.msg.timestamp_ns,
                          .publisher_id = f->u.msg.publisher_id,
                          .flags = f->u.msg.flags};
    s->lent_token = ++s->tokens;
    lease->opaque_[0] = (uint64_t)(uintptr_t)s;
    lease->opaque_[1] = s->lent_token;
    lease->opaque_[2] = LEASED_IN_PLACE;
    lease->opaque_[3] = atomic_load(&cl->epoch);
}

static bool next_in_sequence(const struct tcp_client *cl, const struct tcp_frame *f)
{
    return f->type == TCP_MSG && !(cl->check_gap && f->u.msg.seq > cl->last_seq + 1);
}

/* A message this long is leased in the registered receive ring even with
 * more behind it; a shorter one only when it is all there is (a reply the
 * application waits for). Small messages that come in a run are read into
 * the receive buffer together: one read for them all, where a lease in the
 * ring costs the stream's lock twice per message. */
#define BORROW_MIN 1024u

/* The receive buffer empty (rlock held), over RDMA: lease the next message
 * where it lies in the registered receive ring (net_borrow), waiting at
 * most wait_ns for bytes. Returns 1 with *lease filled; 0 when none came or
 * what came is not to be leased there (a frame the ring's end cuts, a LOST
 * count, a gap to report, a run of small messages: read it into the buffer
 * instead); -1 when the connection is gone. */
static int lease_borrowed(struct tcp_sub_state *s, dmaq_lease *lease, int64_t wait_ns)
{
    struct tcp_client *cl = s->client;
    const void *data = NULL;
    void *token = NULL;
    ssize_t n = net_borrow(cl->fd, &data, &token);
    if (n < 0 && errno == EAGAIN && wait_ns > 0) {
        struct pollfd p = {cl->fd, POLLIN, 0};
        net_poll(&p, 1, (int)((wait_ns + 999999) / 1000000));
        n = net_borrow(cl->fd, &data, &token);
    }
    long heard = n;
    if (n == 0) {
        heard = -1;
        errno = 0; /* the end of the stream */
    } else if (n < 0 && errno == EAGAIN) {
        heard = 0;
    }
    if (!heard_from_host(cl, heard))
        return -1;
    if (n <= 0)
        return 0;
    struct tcp_frame f;
    const char *why = NULL;
    long used = tcp_frame_next(data, (size_t)n, TCP_FROM_HOST_TO_SUB, cl->shape.max_message, &f, &why);
    if (used > 0 && next_in_sequence(cl, &f) && (used == n || f.u.msg.len >= BORROW_MIN)) {
        lease_frame(s, lease, &f);
        cl->lent_ring_used = (size_t)used;
        cl->lent_ring_epoch = atomic_load(&cl->epoch);
        atomic_store_explicit(&cl->lent_ring, token, memory_order_release);
        return 1;
    }
    net_give_back(token, 0);
    if (used < 0) {
        protocol_error(cl, why);
        return -1;
    }
    return 0;
}

/* The application's own read, its ring found empty (rlock held): lease the
 * next message where it lies in the receive buffer (or, over RDMA, in the
 * registered receive ring), reading the connection (if `may_read`, waiting
 * at most wait_ns) when no whole frame is there. A frame that is not the
 * next message in sequence (a LOST count, a gap to report) goes through the
 * ring, as the pump would put it. Returns 1 with *lease filled, or 0: look
 * at the ring again. */
static int lease_in_place(struct tcp_sub_state *s, dmaq_lease *lease, bool may_read, int64_t wait_ns)
{
    struct tcp_client *cl = s->client;
    bool waited = false;
    while (ring_empty(s) && cl->fd >= 0) {
        struct tcp_frame f;
        const char *why = NULL;
        long n = tcp_frame_next(cl->rbuf + cl->roff, cl->rlen - cl->roff, TCP_FROM_HOST_TO_SUB,
                                cl->shape.max_message, &f, &why);
        if (n < 0) {
            protocol_error(cl, why);
            return 0;
        }
        if (n == 0) {
            if (!may_read)
                return 0;
            int64_t wait = waited ? 0 : wait_ns;
            size_t had = cl->rlen - cl->roff;
            atomic_fetch_add_explicit(&cl->app_reading, 1, memory_order_relaxed);
            int got = 0;
            if (NET_CAN_BORROW && had == 0) {
                got = lease_borrowed(s, lease, wait);
                wait = 0; /* waited there already */
            }
            bool up = got == 0 && read_host(cl, wait);
            atomic_fetch_sub_explicit(&cl->app_reading, 1, memory_order_relaxed);
            dmaq__bump(&cl->app_peeks, 1); /* a long wait to read counts as the application's activity too */
            if (got > 0)
                return 1;
            if (!up || cl->rlen - cl->roff == had)
                return 0;
            waited = true;
            continue;
        }
        if (next_in_sequence(cl, &f)) {
            cl->roff += (size_t)n;
            lease_frame(s, lease, &f);
            atomic_store_explicit(&cl->lent_in, cl->rbuf, memory_order_relaxed); /* the pump reads it under rlock */
            return 1;
        }
        if (take_frame(cl, &f) != 0)
            return 0; /* the ring is full: the frame stays */
        cl->roff += (size_t)n;
    }
    return 0;
}

/* While the application waits: take the next message from the receive
 * buffer, reading the connection itself if `may_read` (at most wait_ns, and
 * one slice), unless the pump is at it, it is down, or it encodes its
 * payloads (see put_in). Returns 1 with a message leased in place, 0 to
 * look at the ring again, -1 to wait on the ring instead. */
static int read_directly(struct tcp_sub_state *s, dmaq_lease *lease, bool may_read, int64_t wait_ns)
{
    struct tcp_client *cl = s->client;
    if (pthread_mutex_trylock(&cl->rlock) != 0)
        return -1;
    int got = -1;
    if (cl->fd >= 0 && !atomic_load(&cl->shut) && !tcp_codec_active(&cl->codec))
        got = lease_in_place(s, lease, may_read, wait_ns < 0 || wait_ns > TCP_SLICE_NS ? TCP_SLICE_NS : wait_ns);
    pthread_mutex_unlock(&cl->rlock);
    return got;
}

int tcp_client_sub_open(struct tcp_sub_state *s, const struct tcp_addr *a, const dmaq_options *o,
                        const struct tcp_conf *c)
{
    struct tcp_client *cl = NULL;
    int rc = client_start(a, o, c, TCP_ROLE_SUB, &cl);
    if (rc < 0)
        return rc;
    size_t rcap = 2 * tcp_frame_max(cl->shape.max_message);
    if (rcap > cl->rcap) {
        uint8_t *bigger = realloc(cl->rbuf, rcap);
        if (!bigger) {
            rc = dmaq_error_set(DMAQ_ENOMEM, "out of memory");
            goto fail;
        }
        cl->rbuf = bigger;
        cl->rcap = rcap;
    }
    cl->queue = s->queue = cl->shape.kind == DMAQ_KIND_QUEUE;
    s->window = cl->shape.capacity; /* the pump rewrites shape on reconnect; the window stays */
    /* Twice the channel's capacity: the host never has more than one
     * capacity's worth of records unacknowledged, so the pump never waits. */
    dmaq_options ro = DMAQ_OPTIONS_INIT;
    ro.kind = DMAQ_KIND_BROADCAST;
    ro.flags = DMAQ_OPEN_FENCED;
    ro.capacity = 2 * cl->shape.capacity;
    ro.max_message = cl->shape.max_message + PREFIX;
    ro.spin_ns = o->spin_ns;
    if ((rc = private_ring("in", &ro, &cl->in, &s->inner, true)) < 0)
        goto fail;
    s->acks_epoch = atomic_load(&cl->epoch);
    if ((rc = start_pump(cl, sub_pump, cl->in, s->inner)) < 0)
        return rc;
    s->client = cl;
    return 0;
fail:
    client_free(cl);
    return rc;
}

static void flush_acks(struct tcp_sub_state *s)
{
    if (s->pending_acks && s->acks_epoch == atomic_load(&s->client->epoch))
        send_small(s->client, TCP_ACK, s->pending_acks);
    s->pending_acks = 0;
    s->pending_credit = 0;
}

void tcp_client_sub_close(struct tcp_sub_state *s)
{
    struct tcp_client *cl = s->client;
    if (s->held)
        tcp_client_release(s, &s->held_lease);
    flush_acks(s);
    atomic_store(&cl->stop, true);
    pthread_join(cl->thread, NULL);
    void *borrow = atomic_load(&cl->lent_ring);
    if (borrow)
        net_give_back(borrow, 0); /* a lease the application never released: its stream can be freed */
    dmaq_sub_close(s->inner);
    dmaq_pub_close(cl->in);
    client_free(cl);
}

static int not_now(struct tcp_sub_state *s, int rc)
{
    struct tcp_client *cl = s->client;
    pthread_mutex_lock(&cl->wlock);
    if (cl->fd < 0)
        rc = dmaq_error_set(rc, "no message from " NET_SCHEME "://%s:%s/%s: not connected (%s); reconnecting",
                            cl->addr.host, cl->addr.port, cl->addr.name, cl->why);
    else
        rc = dmaq_error_set(rc, "no message from " NET_SCHEME "://%s:%s/%s %s", cl->addr.host, cl->addr.port,
                            cl->addr.name, rc == DMAQ_ETIMEDOUT ? "within the timeout" : "yet");
    pthread_mutex_unlock(&cl->wlock);
    return rc;
}

static int leased(struct tcp_sub_state *s)
{
    s->leased = true;
    return 0;
}

int tcp_client_peek(struct tcp_sub_state *s, dmaq_lease *lease, int64_t timeout_ns)
{
    if (s->held) {
        *lease = s->held_lease;
        s->held = false;
        return 0;
    }
    if (s->leased)
        return dmaq_error_set(DMAQ_EBUSY, "subscriber on " NET_SCHEME "://%s:%s/%s already holds a lease; release it "
                                          "first", s->client->addr.host, s->client->addr.port, s->client->addr.name);
    struct tcp_client *cl = s->client;
    dmaq__bump(&cl->app_peeks, 1);
    /* 0 until something must be waited for: what is here needs no clock.
     * (Where the clock is an emulated HPET, each read is a system call of
     * 1-1.5 us: one per wait, and none for a timeout of 0 or for ever.) */
    uint64_t deadline = 0;
    for (;;) {
        int rc = ring_empty(s) ? DMAQ_EAGAIN : dmaq_sub_peek(s->inner, lease, 0);
        if (rc == DMAQ_EAGAIN) {
            if (s->pending_credit >= s->window / TCP_ACK_IDLE_DIV)
                flush_acks(s); /* before waiting, so the host is not left waiting for credit */
            int64_t left = timeout_ns;
            if (!deadline) {
                int got = read_directly(s, lease, false, 0);
                if (got > 0)
                    return leased(s);
                deadline = timeout_ns > 0 ? dmaq__deadline(timeout_ns) : UINT64_MAX;
                if (!ring_empty(s))
                    continue;
            } else {
                left = dmaq__timeout_left(timeout_ns, deadline);
            }
            int got = read_directly(s, lease, true, left);
            if (got > 0)
                return leased(s);
            if (got == 0 && (left != 0 || !ring_empty(s)))
                continue;
            if (got < 0 && left != 0) {
                /* The pump has the connection (reading, or reconnecting):
                 * wait for what it puts in the ring, a slice at a time. */
                rc = dmaq_sub_peek(s->inner, lease, left < 0 || left > TCP_SLICE_NS ? TCP_SLICE_NS : left);
                if ((rc == DMAQ_EAGAIN || rc == DMAQ_ETIMEDOUT) && dmaq__timeout_left(timeout_ns, deadline) != 0)
                    continue;
            }
            if (rc == DMAQ_EAGAIN && timeout_ns > 0)
                rc = DMAQ_ETIMEDOUT;
        }
        if (rc == DMAQ_EAGAIN || rc == DMAQ_ETIMEDOUT)
            return not_now(s, rc);
        if (rc < 0)
            return rc;
        s->taken++;
        struct prefix p;
        memcpy(&p, lease->data, PREFIX);
        if (p.lost_marker) {
            dmaq_sub_release(s->inner, lease);
            memset(lease, 0, sizeof *lease);
            lease->lost = p.seq;
            return dmaq_error_set(DMAQ_ELOST, NET_SCHEME "://%s:%s/%s: %llu messages lost", cl->addr.host,
                                  cl->addr.port, cl->addr.name, (unsigned long long)p.seq);
        }
        if (s->queue && p.epoch != atomic_load(&s->client->epoch)) {
            /* Sent on a connection since lost: the host gives it to another. */
            dmaq_sub_release(s->inner, lease);
            continue;
        }
        lease->opaque_[2] = lease->seq;
        lease->opaque_[3] = p.epoch;
        lease->data = (uint8_t *)lease->data + PREFIX;
        lease->len -= PREFIX;
        lease->seq = p.seq;
        lease->timestamp_ns = p.timestamp_ns;
        lease->publisher_id = p.publisher_id;
        lease->flags = p.flags;
        return leased(s);
    }
}

int tcp_client_release(struct tcp_sub_state *s, dmaq_lease *lease)
{
    if (lease->opaque_[2] == LEASED_IN_PLACE) {
        if (!s->lent_token || lease->opaque_[0] != (uint64_t)(uintptr_t)s || lease->opaque_[1] != s->lent_token)
            return dmaq_error_set(DMAQ_ELEASE, "release: this lease is not outstanding on this handle (already "
                                               "ended, or from another handle)");
        s->lent_token = 0;
        lease->opaque_[1] = 0;
        void *borrow = atomic_load_explicit(&s->client->lent_ring, memory_order_relaxed);
        if (borrow) {
            net_give_back(borrow, s->client->lent_ring_used); /* the message's bytes are read */
            atomic_store_explicit(&s->client->lent_ring, NULL, memory_order_release);
        } else {
            atomic_store_explicit(&s->client->lent_in, NULL, memory_order_release); /* the buffer may move again */
        }
    } else {
        dmaq_lease inner = *lease;
        inner.data = (uint8_t *)inner.data - PREFIX;
        inner.len += PREFIX;
        inner.seq = lease->opaque_[2];
        int rc = dmaq_sub_release(s->inner, &inner);
        if (rc < 0)
            return rc;
        lease->opaque_[1] = inner.opaque_[1];
    }
    s->leased = false;
    uint32_t epoch = (uint32_t)lease->opaque_[3];
    if (epoch != s->acks_epoch) {
        s->acks_epoch = epoch;
        s->pending_acks = 0;
        s->pending_credit = 0;
    }
    s->pending_acks++;
    s->pending_credit += tcp_credit(lease->len);
    if (s->pending_credit >= s->window / TCP_ACK_BUSY_DIV)
        flush_acks(s);
    return 0;
}

int tcp_client_stat(const struct tcp_addr *a, dmaq_stat *stat, dmaq_sub_stat *subs, size_t subs_cap,
                    const struct tcp_conf *c)
{
    struct tcp_hello h = {.version = TCP_VERSION, .role = TCP_ROLE_STAT,
                          .timeout_ms = (uint32_t)(c->timeout_ns / 1000000), .name_len = (uint16_t)strlen(a->name),
                          .name = a->name};
    struct tcp_shape shape;
    uint8_t buf[8192];
    size_t len = 0;
    int n = 0;
    int fd = tcp_handshake(a, c, &h, NULL, &shape, stat, subs, subs_cap, &n, buf, &len, sizeof buf);
    if (fd < 0)
        return fd;
    net_close(fd);
    return n;
}
