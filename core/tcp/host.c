/*
 * The binding side of tcp://: a listener per address, the channels hosted
 * on it (each an shm ring in the private directory, named while hosted), and
 * one thread per connected peer (two for a subscriber: a reader for its
 * acknowledgements, a forwarder for its messages).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../util/clock.h"
#include "codec.h"
#include "tcp.h"

#define TOKENS 256 /* publishers remembered for deduplication across reconnects */
#define MAX_CONNS 512 /* connections per listener, handshaking ones included */

struct tcp_token {
    uint64_t token;
    _Atomic uint64_t received; /* its messages published into the ring */
    struct tcp_conn *owner;    /* the live connection using it, or NULL */
    uint64_t used_ns;
};

struct tcp_conn {
    struct tcp_conn *next;
    struct tcp_listener *lst;
    struct tcp_chan *ch;
    int fd;
    pthread_t thread;
    atomic_bool stop, done;
    char peer[80];
    int64_t ping_ns; /* idle time after which we send a PING */
    struct tcp_codec codec;
    /* subscriber connections */
    _Atomic uint64_t acks; /* acknowledged by the peer, not yet applied */
    pthread_mutex_t lock;  /* guards the two flags below; with cond, the forwarder's sleeps */
    pthread_cond_t cond;
    bool credit_wait; /* the forwarder sleeps until the peer acknowledges */
    bool kicked;      /* a publisher left the idle forwarder work */
    dmaq_sub *sub;
};

struct tcp_chan {
    struct tcp_chan *next;
    struct tcp_listener *lst;
    char name[TCP_NAME_MAX + 1];
    char ring_uri[512];
    uint32_t kind, policy;
    uint64_t capacity, max_message;
    uint32_t features; /* TCP_FEATURE_* */
    struct tcp_conf conf;
    int refs;
    struct tcp_token tokens[TOKENS];
    /* Queue: messages sent to subscribers that vanished before releasing
     * them, for the next subscriber forwarder to hand out again. */
    pthread_mutex_t stash_lock;
    struct stashed *stash, **stash_end;
    atomic_uint stashed;
    /* The subscribers' forwarders, for publishers to hand their messages to
     * when a forwarder is idle (tcp_host_published). */
    bool forward_here; /* forward_here_default() */
    pthread_mutex_t fw_lock;
    struct forward *forwarders;
    atomic_uint idle_forwarders;
};

/* A message waiting to be delivered again, with what its lease reports. */
struct stashed {
    struct stashed *next;
    dmaq_lease lease; /* data points at bytes[] */
    uint8_t bytes[];
};

struct tcp_listener {
    struct tcp_listener *next;
    struct tcp_addr addr;
    int fd;
    int stop_pipe[2];
    pthread_t thread;
    struct tcp_chan *chans;
    struct tcp_conn *conns;
};

static pthread_mutex_t hosts_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tcp_listener *listeners;

static int64_t handshake_timeout(void) { return TCP_DEFAULT_TIMEOUT_NS; }

static void send_frame(struct tcp_conn *c, const uint8_t *frame, size_t len, int64_t timeout_ns)
{
    if (tcp_write_all(c->fd, frame, len, timeout_ns, &c->stop) < 0)
        atomic_store(&c->stop, true);
}

static void send_count(struct tcp_conn *c, uint8_t type, uint64_t count)
{
    uint8_t f[TCP_SMALL_FRAME];
    send_frame(c, f, tcp_put_small(f, type, count), c->ch->conf.timeout_ns);
}

static void reject(struct tcp_conn *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reject(struct tcp_conn *c, int code, const char *fmt, ...)
{
    char reason[TCP_REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    struct tcp_welcome w = {.status = code, .reason = reason};
    uint8_t frame[TCP_HEADER + TCP_WELCOME_FIXED + TCP_REASON_MAX];
    send_frame(c, frame, tcp_put_welcome(frame, &w, NULL, 0), handshake_timeout());
}

static const char *kind_name(uint32_t k) { return k == DMAQ_KIND_QUEUE ? "queue" : "broadcast"; }
static const char *policy_name(uint32_t p) { return p == DMAQ_POLICY_OVERWRITE ? "overwrite" : "block"; }

/* Why a peer's wanted shape does not fit the channel, or NULL. */
static const char *mismatch(const struct tcp_chan *ch, const struct tcp_hello *h, char *buf, size_t cap)
{
    if (h->kind && h->kind != ch->kind)
        snprintf(buf, cap, "channel '%s' is a %s, opened as %s", ch->name, kind_name(ch->kind), kind_name(h->kind));
    else if (h->policy && h->policy != ch->policy)
        snprintf(buf, cap, "channel '%s' has policy %s, opened with %s", ch->name, policy_name(ch->policy),
                 policy_name(h->policy));
    else if (h->capacity && h->capacity != ch->capacity)
        snprintf(buf, cap, "channel '%s' has capacity %llu, opened with %llu", ch->name,
                 (unsigned long long)ch->capacity, (unsigned long long)h->capacity);
    else if (h->max_message && h->max_message != ch->max_message)
        snprintf(buf, cap, "channel '%s' has max_message %llu, opened with %llu", ch->name,
                 (unsigned long long)ch->max_message, (unsigned long long)h->max_message);
    else
        return NULL;
    return buf;
}

static void welcome(struct tcp_conn *c, const uint8_t host_nonce[TCP_NONCE], const struct tcp_hello *h,
                    uint32_t publisher_id, uint64_t received, const uint8_t *stat, size_t stat_len)
{
    struct tcp_chan *ch = c->ch;
    struct tcp_welcome w = {.publisher_id = publisher_id, .kind = ch->kind, .policy = ch->policy,
                            .timeout_ms = (uint32_t)(ch->conf.timeout_ns / 1000000), .features = ch->features,
                            .capacity = ch->capacity, .max_message = ch->max_message, .received = received};
    tcp_welcome_mac(&ch->conf, host_nonce, h->nonce, w.mac);
    uint8_t frame[TCP_HEADER + TCP_WELCOME_FIXED + TCP_STAT_FIXED + TCP_STAT_SUBS_MAX * TCP_SUB_STAT_SIZE];
    send_frame(c, frame, tcp_put_welcome(frame, &w, stat, stat_len), handshake_timeout());
}

/* ---- stat ---- */

static void serve_stat(struct tcp_conn *c, const uint8_t nonce[TCP_NONCE], const struct tcp_hello *h)
{
    dmaq_stat st = {.size = sizeof st};
    static _Thread_local dmaq_sub_stat subs[TCP_STAT_SUBS_MAX];
    int n = dmaq_channel_stat(c->ch->ring_uri, &st, subs, TCP_STAT_SUBS_MAX);
    if (n < 0) {
        reject(c, n, "%s", dmaq_last_error());
        return;
    }
    uint32_t shown = n < (int)TCP_STAT_SUBS_MAX ? (uint32_t)n : TCP_STAT_SUBS_MAX;
    uint8_t buf[TCP_STAT_FIXED + TCP_STAT_SUBS_MAX * TCP_SUB_STAT_SIZE], *s = buf;
    tcp_put32(s, st.kind);
    tcp_put32(s + 4, st.policy);
    tcp_put32(s + 8, st.mode);
    tcp_put32(s + 12, st.flags);
    tcp_put64(s + 16, st.capacity);
    tcp_put64(s + 24, st.max_message);
    tcp_put64(s + 32, st.bytes_used);
    tcp_put64(s + 40, st.published);
    tcp_put32(s + 48, st.publishers);
    tcp_put32(s + 52, st.subscribers);
    tcp_put32(s + 56, (uint32_t)st.creator_pid);
    tcp_put32(s + 60, shown);
    for (uint32_t i = 0; i < shown; i++) {
        uint8_t *e = s + TCP_STAT_FIXED + i * TCP_SUB_STAT_SIZE;
        tcp_put64(e, subs[i].received);
        tcp_put64(e + 8, subs[i].lost);
        tcp_put64(e + 16, subs[i].lag);
        tcp_put64(e + 24, subs[i].lag_bytes);
        tcp_put32(e + 32, (uint32_t)subs[i].pid);
        tcp_put32(e + 36, subs[i].alive);
    }
    welcome(c, nonce, h, 0, 0, buf, TCP_STAT_FIXED + shown * TCP_SUB_STAT_SIZE);
}

/* ---- publishers: frames in, messages into the ring ---- */

/* Read what the peer sent. False when the connection is over: closed,
 * failed, or silent for longer than the channel's peer timeout. */
static bool read_peer(struct tcp_conn *c, uint8_t *rbuf, size_t *rlen, size_t rcap, uint64_t *last_rx,
                      const char *role)
{
    long n = tcp_read_some(c->fd, rbuf, rlen, rcap, TCP_SLICE_NS);
    if (n < 0)
        return false;
    uint64_t now = dmaq__coarse_ns();
    if (n > 0)
        *last_rx = now;
    else if (now - *last_rx > (uint64_t)c->ch->conf.timeout_ns) {
        tcp_log("%s %s on '%s' silent for %lld ms: dropping it", role, c->peer, c->ch->name,
                (long long)(c->ch->conf.timeout_ns / 1000000));
        return false;
    }
    return true;
}


static struct tcp_token *claim_token(struct tcp_conn *c, uint64_t token, uint64_t acked)
{
    struct tcp_chan *ch = c->ch;
    for (;;) {
        pthread_mutex_lock(&hosts_lock);
        struct tcp_token *t = NULL, *oldest = NULL;
        for (int i = 0; i < TOKENS; i++) {
            struct tcp_token *e = &ch->tokens[i];
            if (e->token == token && token)
                t = e;
            if (!e->owner && (!oldest || e->used_ns < oldest->used_ns))
                oldest = e;
        }
        if (t && t->owner) {
            /* The same publisher again: its old connection is dead but not
             * yet noticed. End it, and wait until its count is final. */
            atomic_store(&t->owner->stop, true);
            net_shutdown(t->owner->fd, SHUT_RDWR);
            pthread_mutex_unlock(&hosts_lock);
            usleep(1000);
            if (atomic_load(&c->stop))
                return NULL;
            continue;
        }
        if (!t) {
            t = oldest; /* with TOKENS slots and at most 64 publishers, never NULL */
            t->token = token;
            atomic_store(&t->received, acked);
        }
        t->owner = c;
        t->used_ns = dmaq__mono_ns();
        pthread_mutex_unlock(&hosts_lock);
        return t;
    }
}

/* Put a publisher's MSG into the ring, decoding it straight into place.
 * Returns 0, or a DMAQ_E* code (stopping, or a payload that fails to
 * decode: logged). */
static int publish(struct tcp_conn *c, dmaq_pub *pub, const struct tcp_frame *f, uint64_t *last_tx)
{
    uint8_t *in = (uint8_t *)f->u.msg.data; /* in the receive buffer: ours to decrypt in place */
    size_t in_len = f->u.msg.len;
    const char *why = NULL;
    long len = tcp_codec_open(&c->codec, NULL, 0, in, &in_len, f->flags, c->ch->max_message, &why);
    if (len < 0) {
        tcp_log("closing publisher %s on '%s': %s", c->peer, c->ch->name, why);
        return DMAQ_ECORRUPT;
    }
    dmaq_lease lease;
    int rc;
    while ((rc = dmaq_pub_reserve(pub, (size_t)len, &lease, TCP_SLICE_NS)) == DMAQ_ETIMEDOUT) {
        if (atomic_load(&c->stop))
            return rc;
        uint64_t now = dmaq__coarse_ns();
        if (now - *last_tx >= (uint64_t)c->ping_ns) { /* keep the peer from giving up on us */
            send_count(c, TCP_PING, 0);
            *last_tx = now;
        }
    }
    if (rc < 0)
        return rc;
    if (tcp_codec_copy(&c->codec, in, in_len, f->flags, lease.data, (size_t)len, &why) < 0) {
        tcp_log("closing publisher %s on '%s': %s", c->peer, c->ch->name, why);
        dmaq_pub_abort(pub, &lease);
        return DMAQ_ECORRUPT;
    }
    return dmaq_pub_commit(pub, &lease, (size_t)len);
}

/* A publisher's connection as it takes in frames. */
struct publishing {
    struct tcp_conn *c;
    dmaq_pub *pub;
    struct tcp_token *token;
    uint64_t last_tx, unacked;
};

static int publish_frame(void *ctx, const struct tcp_frame *f)
{
    struct publishing *in = ctx;
    if (f->type != TCP_MSG)
        return 0;
    if (publish(in->c, in->pub, f, &in->last_tx) < 0)
        return 1;
    atomic_fetch_add(&in->token->received, 1);
    in->unacked++;
    return 0;
}

static void serve_publisher(struct tcp_conn *c, const uint8_t nonce[TCP_NONCE], const struct tcp_hello *h,
                            uint8_t *rbuf, size_t rcap, size_t rlen)
{
    struct tcp_chan *ch = c->ch;
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_NO_CREATE | DMAQ_OPEN_FENCED;
    dmaq_pub *pub;
    if (dmaq_pub_open(ch->ring_uri, &o, &pub) < 0) {
        reject(c, DMAQ_ELIMIT, "%s", dmaq_last_error());
        return;
    }
    struct tcp_token *t = claim_token(c, h->token, h->acked);
    if (!t) {
        dmaq_pub_close(pub);
        return;
    }
    welcome(c, nonce, h, dmaq_pub_id(pub), atomic_load(&t->received), NULL, 0);
    struct publishing in = {c, pub, t, dmaq__coarse_ns(), 0};
    uint64_t last_rx = in.last_tx;
    while (!atomic_load(&c->stop) && read_peer(c, rbuf, &rlen, rcap, &last_rx, "publisher")) {
        uint64_t now = dmaq__coarse_ns();
        const char *why = NULL;
        int rc = tcp_drain_frames(rbuf, &rlen, TCP_FROM_PUB, ch->max_message, publish_frame, &in, &why);
        if (in.unacked)
            tcp_host_published(ch);
        if (rc > 0)
            break; /* stopping, or a message that would not decode (logged) */
        if (rc < 0) {
            tcp_log("closing publisher %s on '%s': malformed frame: %s", c->peer, ch->name, why);
            break;
        }
        if (in.unacked) {
            send_count(c, TCP_ACK, in.unacked);
            in.unacked = 0;
            in.last_tx = now;
        } else if (now - in.last_tx >= (uint64_t)c->ping_ns) {
            send_count(c, TCP_PING, 0);
            in.last_tx = now;
        }
    }
    pthread_mutex_lock(&hosts_lock);
    t->owner = NULL;
    pthread_mutex_unlock(&hosts_lock);
    dmaq_pub_close(pub);
}

/* ---- subscribers: messages out of the ring, frames out ----
 *
 * Each subscriber's forwarder thread takes messages from the ring, frames
 * them and writes them to the connection. Once it has watched an empty ring
 * for a while it goes idle: it stops looking at the ring and sleeps on its
 * connection's condition variable. A publisher of this process that commits
 * a message meanwhile does the idle forwarder's work in its own thread
 * (tcp_host_published), so the message leaves with no thread woken on its
 * way and no system call but the write. What could block (a full
 * connection, no credit, an encoding channel) it leaves to the thread. */

struct forward {
    struct tcp_conn *c;
    struct forward *next; /* in c->ch->forwarders */
    pthread_mutex_t mu;   /* the state below: held by whoever forwards, the thread or a publisher */
    atomic_bool idle;     /* the thread sleeps and leaves the forwarding to publishers */
    int64_t spin_ns;      /* how long the thread watches an empty ring before it goes idle */
    /* when a publisher last forwarded (tcp_host_published), and how long
     * that takes (its recent least), in dmaq__ticks() */
    uint64_t here_end, here_cost;
    uint8_t *scratch; /* encoded frames on their way out, when the channel encodes */
    size_t scratch_cap;
    uint8_t *buf;
    size_t cap, head, sent, tail; /* [head, sent) sent, not acknowledged; [sent, tail) not sent */
    uint64_t window, in_flight;   /* record bytes */
    uint64_t lost;                /* to report before the next message */
    uint64_t last_tx;
    bool held;
    dmaq_lease lease;
    struct stashed *from_stash; /* the held message came from the stash, not the ring */
    bool direct;                /* big messages may go out from the ring (send_direct) */
};

/* A message at least this big goes from where it lies in the ring straight
 * to the connection, its frame header and meta gathered in front of it in
 * one write (over rdma://, into the registered send ring), instead of being
 * copied into buf first: one copy of it fewer on the forwarder's core, which
 * is what limits a stream of big messages. Only where nothing needs the
 * bytes after the write: a broadcast/block channel (a queue keeps them in
 * buf to hand them to another subscriber if this one vanishes; an overwrite
 * ring may overwrite a record while it is written), without a codec. Small
 * messages are better batched through buf, many to a write. */
#define DIRECT_MIN 16384u
/* In buf, a MSG frame that went out that way: only its header and meta are
 * kept there (for the acknowledgements' credit); never on the wire. */
#define SENT_DIRECT 0x80u

/* How much of a frame buf keeps. */
static size_t kept_size(const uint8_t *f) { return TCP_HEADER + (f[4] == SENT_DIRECT ? TCP_MSG_META : tcp_get32(f)); }

/* Publishers forward for idle forwarders over RDMA, where a write is a post
 * to the queue pair. Not by default over the kernel's TCP: there a write on
 * loopback delivers the message and wakes its reader, which on few cores
 * preempts the publisher; the forwarder thread, spinning on the ring and
 * then sleeping on it, was faster there (one-way 12 against 18 us on two
 * cores). DMAQ_FORWARD_HERE=0 or 1 overrides this for the channels hosted
 * from then on (the tests run both ways over TCP). */
static bool forward_here_default(void)
{
    const char *env = secure_getenv("DMAQ_FORWARD_HERE");
    if (env && (env[0] == '0' || env[0] == '1') && !env[1])
        return env[0] == '1';
#ifdef DMAQ_NET_RDMA
    return true;
#else
    return false;
#endif
}

/* Long enough for a forwarder to keep up with a stream without going idle
 * between its messages (then publishers would write each one themselves),
 * short enough not to take a core from the applications for long. */
#define FORWARD_SPIN_NS 20000LL

/* A publisher back sooner after its last forwarding than this fraction of
 * what that forwarding cost is streaming, and leaves the stream to the
 * forwarder thread. A streaming publisher is back at once (its gap is the
 * time to make the next message), one in a request-reply exchange only
 * after the peer's reply, which took the peer a forwarding too; the whole
 * forwarding cost as the bar sent a quarter to half of the ping-pong's
 * messages to the thread (a wake-up each) on the emulated RDMA guest, where
 * a post to the queue pair can take as long as the wait for the reply. */
#define STREAMING_GAP_DIV 4u

static bool dead(const struct forward *fw) { return atomic_load(&fw->c->stop); }

/* A publisher's forwarding took `cost` ticks: the bar comes down to it at
 * once and goes up by an eighth at most, so that a forwarding that was
 * preempted (milliseconds, on a busy machine) does not make the next
 * messages look like a stream's. */
static void learn_forwarding_cost(struct forward *fw, uint64_t cost)
{
    if (!fw->here_cost || cost < fw->here_cost)
        fw->here_cost = cost;
    else
        fw->here_cost += (cost - fw->here_cost < fw->here_cost ? cost - fw->here_cost : fw->here_cost) / 8;
}

static void write_out(struct forward *fw, const uint8_t *p, size_t n)
{
    if (n && tcp_write_all(fw->c->fd, p, n, fw->c->ch->conf.timeout_ns, &fw->c->stop) < 0)
        atomic_store(&fw->c->stop, true);
}

/* Send the frames not sent yet. They stay plain in buf (a queue may have to
 * hand them to another subscriber); an encoding channel sends them encoded
 * through the scratch buffer. */
static void flush(struct forward *fw)
{
    if (fw->tail == fw->sent)
        return;
    if (!tcp_codec_active(&fw->c->codec)) {
        /* sent may be inside a frame: a publisher's flush_now wrote part of it */
        write_out(fw, fw->buf + fw->sent, fw->tail - fw->sent);
    } else {
        size_t used = 0;
        for (size_t at = fw->sent; at < fw->tail;) {
            const uint8_t *f = fw->buf + at;
            uint32_t body = tcp_get32(f);
            size_t need = TCP_HEADER + TCP_MSG_META + tcp_codec_bound(body);
            if (used + need > fw->scratch_cap) {
                write_out(fw, fw->scratch, used);
                used = 0;
            }
            uint8_t *o = fw->scratch + used;
            if (f[4] != TCP_MSG) {
                memcpy(o, f, TCP_HEADER + body);
                used += TCP_HEADER + body;
            } else {
                uint8_t flags;
                memcpy(o + TCP_HEADER, f + TCP_HEADER, TCP_MSG_META);
                size_t n = tcp_codec_seal(&fw->c->codec, f + TCP_HEADER, TCP_MSG_META, f + TCP_HEADER + TCP_MSG_META,
                                          body - TCP_MSG_META, o + TCP_HEADER + TCP_MSG_META, &flags);
                tcp_put_header(o, TCP_MSG, (uint32_t)(TCP_MSG_META + n));
                o[5] = flags;
                used += TCP_HEADER + TCP_MSG_META + n;
            }
            at += TCP_HEADER + body;
        }
        write_out(fw, fw->scratch, used);
    }
    fw->sent = fw->tail;
    fw->last_tx = dmaq__coarse_ns();
}

/* A publisher's flush (plain frames only): what the connection takes
 * without waiting. True if that was all of it. */
static bool flush_now(struct forward *fw)
{
    while (fw->sent < fw->tail) {
        ssize_t n = net_send(fw->c->fd, fw->buf + fw->sent, fw->tail - fw->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            fw->sent += (size_t)n;
            fw->last_tx = dmaq__coarse_ns();
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            atomic_store(&fw->c->stop, true);
        return false;
    }
    return true;
}

static void ping_if_idle(struct forward *fw)
{
    uint64_t now = dmaq__coarse_ns();
    if (fw->tail == fw->sent && now - fw->last_tx >= (uint64_t)fw->c->ping_ns) {
        send_count(fw->c, TCP_PING, 0);
        fw->last_tx = now;
    }
}

/* Drop the frames the peer acknowledged. False if it acknowledged more than
 * it was sent (a broken or hostile peer). */
static bool apply_acks(struct forward *fw)
{
    if (!atomic_load_explicit(&fw->c->acks, memory_order_relaxed))
        return true; /* the usual case: no locked instruction for it */
    uint64_t n = atomic_exchange(&fw->c->acks, 0);
    while (n) {
        if (fw->head >= fw->sent)
            return false;
        const uint8_t *f = fw->buf + fw->head;
        if (fw->head + kept_size(f) > fw->sent)
            return false; /* not all of that frame went out */
        if (f[4] == TCP_MSG || f[4] == SENT_DIRECT) {
            fw->in_flight -= tcp_credit(tcp_get32(f) - TCP_MSG_META);
            n--;
        }
        fw->head += kept_size(f);
    }
    if (fw->head == fw->tail)
        fw->head = fw->sent = fw->tail = 0;
    return true;
}

static void append_lost(struct forward *fw)
{
    if (fw->lost) {
        fw->tail += tcp_put_count(fw->buf + fw->tail, TCP_LOST, fw->lost);
        fw->lost = 0;
    }
}

static void stash_push(struct tcp_chan *ch, struct stashed *m)
{
    pthread_mutex_lock(&ch->stash_lock);
    m->next = NULL;
    *ch->stash_end = m;
    ch->stash_end = &m->next;
    atomic_fetch_add(&ch->stashed, 1);
    pthread_mutex_unlock(&ch->stash_lock);
}

static struct stashed *stash_pop(struct tcp_chan *ch)
{
    if (!atomic_load_explicit(&ch->stashed, memory_order_relaxed))
        return NULL;
    pthread_mutex_lock(&ch->stash_lock);
    struct stashed *m = ch->stash;
    if (m) {
        ch->stash = m->next;
        if (!ch->stash)
            ch->stash_end = &ch->stash;
        atomic_fetch_sub(&ch->stashed, 1);
    }
    pthread_mutex_unlock(&ch->stash_lock);
    return m;
}

static void stash_copy(struct tcp_conn *c, const dmaq_lease *l)
{
    struct stashed *m = malloc(sizeof *m + l->len);
    if (!m) {
        tcp_log("out of memory: lost a message of subscriber %s on '%s'", c->peer, c->ch->name);
        return;
    }
    m->lease = *l;
    m->lease.data = m->bytes;
    m->lease.flags |= DMAQ_LEASE_REDELIVERED;
    memcpy(m->bytes, l->data, l->len);
    stash_push(c->ch, m);
}

/* Queue: the messages a vanished subscriber was sent but never released go
 * to the stash, in order, for the other subscribers. */
static void redeliver(struct forward *fw)
{
    struct tcp_conn *c = fw->c;
    if (c->ch->kind != DMAQ_KIND_QUEUE)
        return;
    for (size_t at = fw->head; at < fw->tail;) {
        const uint8_t *f = fw->buf + at;
        uint32_t body = tcp_get32(f);
        if (f[4] == TCP_MSG) {
            dmaq_lease l = {.data = (void *)(f + TCP_HEADER + TCP_MSG_META), .len = body - TCP_MSG_META,
                            .seq = tcp_get64(f + 8), .timestamp_ns = tcp_get64(f + 16),
                            .publisher_id = tcp_get32(f + 24), .flags = tcp_get32(f + 28)};
            stash_copy(c, &l);
        }
        at += TCP_HEADER + body;
    }
    if (fw->held && fw->from_stash) {
        stash_push(c->ch, fw->from_stash);
    } else if (fw->held) {
        stash_copy(c, &fw->lease);
        dmaq_sub_release(c->sub, &fw->lease);
    }
    fw->held = false;
    fw->from_stash = NULL;
}

enum step { STEP_MORE, STEP_EMPTY, STEP_NO_CREDIT, STEP_STOP };

/* Hold the next message, from the stash or the ring (waiting up to wait_ns
 * for one), or count the ring's lost ones. */
static enum step take_next(struct forward *fw, int64_t wait_ns)
{
    struct tcp_conn *c = fw->c;
    if ((fw->from_stash = stash_pop(c->ch))) {
        fw->lease = fw->from_stash->lease;
        fw->held = true;
        return STEP_MORE;
    }
    int rc = dmaq_sub_peek(c->sub, &fw->lease, wait_ns);
    if (rc == 0) {
        fw->held = true;
        return STEP_MORE;
    }
    if (rc == DMAQ_ELOST) {
        fw->lost += fw->lease.lost;
        return STEP_MORE;
    }
    if (rc == DMAQ_EAGAIN || rc == DMAQ_ETIMEDOUT)
        return STEP_EMPTY;
    tcp_log("subscriber %s on '%s': %s", c->peer, c->ch->name, dmaq_last_error());
    atomic_store(&c->stop, true);
    return STEP_STOP;
}

/* The frame at buf + fw->tail (`meta` bytes) went out with its message from
 * the ring: buf keeps it as a SENT_DIRECT frame, for the credit. */
static void mark_sent_direct(struct forward *fw, size_t meta)
{
    fw->buf[fw->tail + 4] = SENT_DIRECT;
    fw->tail += meta;
    fw->sent = fw->tail;
    fw->last_tx = dmaq__coarse_ns();
}

/* Write the held message from the ring, after what buf has not sent yet,
 * its frame's header and meta (at buf + fw->tail, `meta` bytes) gathered in
 * front of it. True: it is done with (a failed write stops the connection). */
static bool send_direct(struct forward *fw, size_t meta)
{
    flush(fw);
    struct iovec v[2] = {{fw->buf + fw->tail, meta}, {fw->lease.data, fw->lease.len}};
    if (tcp_writev_all(fw->c->fd, v, 2, fw->c->ch->conf.timeout_ns, &fw->c->stop) < 0)
        atomic_store(&fw->c->stop, true);
    mark_sent_direct(fw, meta);
    return true;
}

/* send_direct for a publisher's thread, which must not wait on the
 * connection: only when buf has sent everything and the stream takes the
 * whole frame at once (over rdma://: RDMA_STREAM_WHOLE; the kernel's TCP
 * could take part of it). True if it went. */
static bool send_direct_now(struct forward *fw, size_t meta)
{
#ifdef DMAQ_NET_RDMA
    if (!flush_now(fw))
        return false;
    struct iovec v[2] = {{fw->buf + fw->tail, meta}, {fw->lease.data, fw->lease.len}};
    struct msghdr m = {.msg_iov = v, .msg_iovlen = 2};
    ssize_t n = net_sendmsg(fw->c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT | RDMA_STREAM_WHOLE);
    if (n == (ssize_t)(meta + fw->lease.len)) {
        mark_sent_direct(fw, meta);
        return true;
    }
    if (n >= 0 || errno != EAGAIN) /* broken half way: the connection is over */
        atomic_store(&fw->c->stop, true);
    return false;
#else
    (void)fw, (void)meta;
    return false;
#endif
}

/* Frame the next message into buf, if there is one and the peer has the
 * credit for it (fw->mu held); a big one may go out at once instead
 * (send_direct with `may_wait`, else send_direct_now). */
static enum step forward_one(struct forward *fw, bool may_wait)
{
    struct tcp_conn *c = fw->c;
    if (!apply_acks(fw)) {
        tcp_log("closing subscriber %s on '%s': it acknowledged more messages than it was sent", c->peer, c->ch->name);
        atomic_store(&c->stop, true);
        return STEP_STOP;
    }
    if (!fw->held) {
        enum step st = take_next(fw, 0);
        if (!fw->held)
            return st;
    }
    uint64_t need = tcp_credit(fw->lease.len);
    if (fw->in_flight && fw->in_flight + need > fw->window)
        return STEP_NO_CREDIT;
    size_t frame = TCP_HEADER + 8 + TCP_HEADER + TCP_MSG_META + fw->lease.len;
    if (fw->tail + frame > fw->cap) {
        memmove(fw->buf, fw->buf + fw->head, fw->tail - fw->head);
        fw->sent -= fw->head;
        fw->tail -= fw->head;
        fw->head = 0;
    }
    append_lost(fw);
    size_t at = fw->tail;
    at += tcp_put_msg_meta(fw->buf + at, (uint32_t)fw->lease.len, fw->lease.seq, fw->lease.timestamp_ns,
                           fw->lease.publisher_id, fw->lease.flags);
    if (fw->direct && !fw->from_stash && fw->lease.len >= DIRECT_MIN &&
        (may_wait ? send_direct(fw, at - fw->tail) : send_direct_now(fw, at - fw->tail))) {
        fw->held = false;
        dmaq_sub_release(c->sub, &fw->lease); /* block policy: never overwritten */
        fw->in_flight += need;
        return STEP_MORE;
    }
    memcpy(fw->buf + at, fw->lease.data, fw->lease.len);
    fw->held = false;
    if (fw->from_stash) {
        free(fw->from_stash);
        fw->from_stash = NULL;
    } else if (dmaq_sub_release(c->sub, &fw->lease) == DMAQ_EOVERWRITTEN) {
        fw->lost++; /* the copy may be torn: it counts as lost */
        return STEP_MORE;
    }
    fw->tail = at + fw->lease.len;
    fw->in_flight += need;
    return STEP_MORE;
}

static void nap_on_cond(struct tcp_conn *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += TCP_SLICE_NS;
    ts.tv_sec += ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    pthread_cond_timedwait(&c->cond, &c->lock, &ts);
}

/* Out of credit: sleep (a slice at most) until the peer acknowledges some. */
static void wait_for_credit(struct forward *fw)
{
    struct tcp_conn *c = fw->c;
    pthread_mutex_lock(&c->lock);
    c->credit_wait = true;
    if (!atomic_load(&c->acks) && !dead(fw))
        nap_on_cond(c);
    c->credit_wait = false;
    pthread_mutex_unlock(&c->lock);
}

/* The thread, out of work (fw->mu held): sleep (a slice at most) until a
 * publisher leaves it some or the connection stops, forwarding nothing
 * meanwhile but what publishers forward themselves. */
static void go_idle(struct forward *fw)
{
    struct tcp_conn *c = fw->c;
    atomic_store(&fw->idle, true);
    atomic_fetch_add(&c->ch->idle_forwarders, 1);
    /* Pairs with tcp_host_published's fence: either this last look sees the
     * message just committed, or that publisher sees us idle. */
    atomic_thread_fence(memory_order_seq_cst);
    if (take_next(fw, 0) == STEP_EMPTY) {
        pthread_mutex_unlock(&fw->mu);
        pthread_mutex_lock(&c->lock);
        if (!c->kicked && !dead(fw))
            nap_on_cond(c);
        c->kicked = false;
        pthread_mutex_unlock(&c->lock);
        pthread_mutex_lock(&fw->mu);
    }
    atomic_fetch_sub(&c->ch->idle_forwarders, 1);
    atomic_store(&fw->idle, false);
}

static void wake_forwarder(struct forward *fw)
{
    struct tcp_conn *c = fw->c;
    pthread_mutex_lock(&c->lock);
    if (!c->kicked) {
        c->kicked = true;
        pthread_cond_signal(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
}

/* A publisher's thread doing an idle forwarder's work (fw->mu held). True
 * if it did all there was; false leaves the rest to the thread. */
static bool forward_in_caller(struct forward *fw)
{
    if (tcp_codec_active(&fw->c->codec))
        return false; /* encoding is the thread's: flush() */
    enum step st;
    while ((st = forward_one(fw, false)) == STEP_MORE)
        ;
    append_lost(fw);
    return flush_now(fw) && st == STEP_EMPTY;
}

void tcp_host_published(struct tcp_chan *ch)
{
    /* Without forward_here the forwarders sleep on the ring: its publishers wake them. */
    if (!ch->forward_here)
        return;
    atomic_thread_fence(memory_order_seq_cst); /* pairs with go_idle's */
    if (!atomic_load_explicit(&ch->idle_forwarders, memory_order_relaxed))
        return;
    pthread_mutex_lock(&ch->fw_lock);
    for (struct forward *fw = ch->forwarders; fw; fw = fw->next) {
        if (!atomic_load(&fw->idle))
            continue;
        bool done = false;
        if (pthread_mutex_trylock(&fw->mu) == 0) {
            /* Not idle any more, with the lock free: the thread waits for
             * credit, and goes on by itself when it comes. A publisher back
             * within a fraction of its last forwarding's cost is streaming
             * (STREAMING_GAP_DIV): the stream is the thread's, which keeps
             * up without a wake-up per message, where forwarding every
             * message here would spend most of the publisher's time on it. */
            uint64_t start = dmaq__ticks();
            if (!atomic_load(&fw->idle) || dead(fw)) {
                done = true;
            } else if (start - fw->here_end >= fw->here_cost / STREAMING_GAP_DIV) {
                done = forward_in_caller(fw);
                fw->here_end = dmaq__ticks();
                learn_forwarding_cost(fw, fw->here_end - start);
            } else {
                /* Left to the thread. The bar comes down a little each
                 * time, so that one wrong measure cannot keep the
                 * publisher from forwarding for good. */
                fw->here_cost -= fw->here_cost / 4;
            }
            pthread_mutex_unlock(&fw->mu);
        }
        if (!done)
            wake_forwarder(fw); /* busy going idle, or work it must do itself */
    }
    pthread_mutex_unlock(&ch->fw_lock);
}

static void *forwarder(void *arg)
{
    struct forward *fw = arg;
    pthread_mutex_lock(&fw->mu);
    while (!dead(fw)) {
        enum step st = forward_one(fw, true);
        if (st == STEP_MORE) {
            if (fw->tail - fw->sent >= 65536)
                flush(fw);
            continue;
        }
        if (st == STEP_STOP)
            break;
        append_lost(fw);
        flush(fw);
        if (st == STEP_NO_CREDIT)
            wait_for_credit(fw);
        else if (!fw->c->ch->forward_here)
            take_next(fw, TCP_SLICE_NS); /* spins, then sleeps on the ring */
        else if (take_next(fw, fw->spin_ns) == STEP_EMPTY)
            go_idle(fw);
        ping_if_idle(fw);
    }
    /* The peer's last ACK (a subscriber acknowledges at close) may have come
     * in with the end of the connection: count it before handing back what
     * is left, or those messages would be delivered twice. */
    apply_acks(fw);
    redeliver(fw);
    if (fw->held && fw->from_stash)
        free(fw->from_stash);
    else if (fw->held)
        dmaq_sub_release(fw->c->sub, &fw->lease);
    pthread_mutex_unlock(&fw->mu);
    return NULL;
}

/* A subscriber's ACK: credit back, and the forwarder woken if it waits for it. */
static int take_ack(void *ctx, const struct tcp_frame *f)
{
    struct tcp_conn *c = ctx;
    if (f->type == TCP_ACK) {
        atomic_fetch_add(&c->acks, f->u.count);
        pthread_mutex_lock(&c->lock);
        if (c->credit_wait)
            pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);
    }
    return 0;
}

static void serve_subscriber(struct tcp_conn *c, const uint8_t nonce[TCP_NONCE], const struct tcp_hello *h,
                             uint8_t *rbuf, size_t rcap, size_t rlen)
{
    struct tcp_chan *ch = c->ch;
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_NO_CREATE | DMAQ_OPEN_FENCED;
    /* The binding handle's spin, busy-polling included; where publishers
     * forward (ch->forward_here), up to the most a forwarder spins, and twice
     * that for the ring's own wait, so that the forwarder's watch ends in a
     * timeout and never in a sleep on the ring. */
    int64_t spin_ns = ch->conf.spin_ns;
    if (ch->forward_here) {
        spin_ns = spin_ns < FORWARD_SPIN_NS ? spin_ns : FORWARD_SPIN_NS;
        o.spin_ns = 2 * spin_ns;
    } else {
        o.spin_ns = spin_ns;
    }
    o.start = h->start == DMAQ_START_OLDEST ? DMAQ_START_OLDEST : DMAQ_START_NEWEST;
    if (dmaq_sub_open(ch->ring_uri, &o, &c->sub) < 0) {
        reject(c, DMAQ_ELIMIT, "%s", dmaq_last_error());
        return;
    }
#ifdef DMAQ_NET_RDMA
    /* Nothing waits on this connection for a message: its reader takes
     * acknowledgements, which can wait, and need not take a core. */
    int no_spin = 0;
    net_setsockopt(c->fd, SOL_SOCKET, SO_BUSY_POLL, &no_spin, sizeof no_spin);
#endif
    struct forward fw = {.c = c,
                         .window = ch->capacity,
                         .last_tx = dmaq__coarse_ns(),
                         .spin_ns = spin_ns,
                         .direct = ch->kind == DMAQ_KIND_BROADCAST && ch->policy == DMAQ_POLICY_BLOCK &&
                                   !tcp_codec_active(&c->codec)};
    if (fw.direct)
        tcp_lend_ring(c->fd, c->sub);
    fw.cap = ch->capacity + tcp_frame_max(ch->max_message) + 2 * TCP_HEADER + 8;
    fw.buf = malloc(fw.cap);
    if (tcp_codec_active(&c->codec)) {
        fw.scratch_cap = 256 * 1024 + TCP_HEADER + TCP_MSG_META + tcp_codec_bound(ch->max_message);
        fw.scratch = malloc(fw.scratch_cap);
    }
    if (!fw.buf || (tcp_codec_active(&c->codec) && !fw.scratch)) {
        reject(c, DMAQ_ENOMEM, "host is out of memory");
        free(fw.buf);
        free(fw.scratch);
        dmaq_sub_close(c->sub);
        return;
    }
    /* The WELCOME goes first: from then on only the forwarder writes. */
    welcome(c, nonce, h, 0, 0, NULL, 0);
    pthread_mutex_init(&fw.mu, NULL);
    pthread_mutex_lock(&ch->fw_lock);
    fw.next = ch->forwarders;
    ch->forwarders = &fw;
    pthread_mutex_unlock(&ch->fw_lock);
    pthread_t t;
    bool started = pthread_create(&t, NULL, forwarder, &fw) == 0;
    if (!started)
        tcp_log("no thread for subscriber %s on '%s'", c->peer, ch->name);
    uint64_t last_rx = dmaq__coarse_ns();
    while (started && !atomic_load(&c->stop) && read_peer(c, rbuf, &rlen, rcap, &last_rx, "subscriber")) {
        const char *why = NULL;
        if (tcp_drain_frames(rbuf, &rlen, TCP_FROM_SUB, ch->max_message, take_ack, c, &why) < 0) {
            tcp_log("closing subscriber %s on '%s': malformed frame: %s", c->peer, ch->name, why);
            break;
        }
    }
    atomic_store(&c->stop, true);
    if (started) {
        wake_forwarder(&fw);
        pthread_join(t, NULL);
    }
    pthread_mutex_lock(&ch->fw_lock);
    for (struct forward **pp = &ch->forwarders; *pp; pp = &(*pp)->next)
        if (*pp == &fw) {
            *pp = fw.next;
            break;
        }
    pthread_mutex_unlock(&ch->fw_lock);
    pthread_mutex_destroy(&fw.mu);
    free(fw.buf);
    free(fw.scratch);
    dmaq_sub_close(c->sub);
}

/* ---- connections ---- */

static struct tcp_chan *find_chan(struct tcp_listener *l, const char *name, size_t len)
{
    for (struct tcp_chan *ch = l->chans; ch; ch = ch->next)
        if (strlen(ch->name) == len && memcmp(ch->name, name, len) == 0)
            return ch;
    return NULL;
}

static void *conn_main(void *arg)
{
    struct tcp_conn *c = arg;
    uint8_t nonce[TCP_NONCE];
    tcp_random(nonce, sizeof nonce);
    uint8_t challenge[TCP_HEADER + TCP_CHALLENGE_BODY];
    size_t rcap = 256 * 1024, rlen = 0;
    uint8_t *rbuf = NULL;
    if (tcp_write_all(c->fd, challenge, tcp_put_challenge(challenge, nonce), handshake_timeout(), &c->stop) < 0)
        goto done;
    uint8_t hbuf[TCP_HEADER + TCP_HELLO_FIXED + TCP_NAME_MAX];
    struct tcp_frame f;
    long fl = tcp_read_frame(c->fd, hbuf, &rlen, sizeof hbuf, TCP_FROM_PEER_HANDSHAKE, 0, &f, handshake_timeout(),
                             "handshake");
    if (fl < 0) {
        if (fl == DMAQ_ECORRUPT)
            tcp_log("closing connection from %s: %s", c->peer, dmaq_last_error());
        goto done;
    }
    struct tcp_hello h = f.u.hello;
    char name[TCP_NAME_MAX + 1];
    memcpy(name, h.name, h.name_len);
    name[h.name_len] = 0;
    h.name = name;
    if (h.version != TCP_VERSION) {
        reject(c, DMAQ_EVERSION, "the host speaks " NET_SCHEME ":// protocol version %u, the peer %u", TCP_VERSION,
               h.version);
        goto done;
    }
    pthread_mutex_lock(&hosts_lock);
    c->ch = find_chan(c->lst, h.name, h.name_len);
    pthread_mutex_unlock(&hosts_lock);
    if (!c->ch) {
        reject(c, DMAQ_ENOENT, "no channel '%s' is bound at %s:%s", name, c->lst->addr.host, c->lst->addr.port);
        goto done;
    }
    uint8_t mac[TCP_MAC];
    tcp_hello_mac(&c->ch->conf, nonce, &h, mac);
    /* A stat request needs no key: the figures are not secret, the messages are. */
    if (c->ch->conf.has_key && h.role != TCP_ROLE_STAT && !tcp_mac_equal(mac, h.mac)) {
        tcp_log("refused %s on '%s': it does not know the channel's key", c->peer, name);
        reject(c, DMAQ_EACCES, "channel '%s' refused the connection: wrong or missing key", name);
        goto done;
    }
    char why[TCP_REASON_MAX];
    if (h.role != TCP_ROLE_STAT && mismatch(c->ch, &h, why, sizeof why)) {
        reject(c, DMAQ_EINCOMPAT, "%s", why);
        goto done;
    }
    if (h.role != TCP_ROLE_STAT && (h.features & ~c->ch->features)) {
        reject(c, DMAQ_EINCOMPAT, "channel '%s' is not %s, which the peer requires", name,
               (h.features & ~c->ch->features & TCP_FEATURE_ENCRYPT) ? "encrypted" : "compressed");
        goto done;
    }
    if (tcp_codec_init(&c->codec, &c->ch->conf, h.role == TCP_ROLE_STAT ? 0 : c->ch->features, true, nonce,
                       h.nonce) < 0) {
        reject(c, DMAQ_ENOMEM, "host is out of memory");
        goto done;
    }
    c->ping_ns = tcp_ping_every(&c->ch->conf, h.timeout_ms);
    tcp_tune(c->fd, &c->ch->conf);
    if (h.role == TCP_ROLE_STAT) {
        serve_stat(c, nonce, &h);
        goto done;
    }
    rcap = rcap > 2 * tcp_frame_max(c->ch->max_message) ? rcap : 2 * tcp_frame_max(c->ch->max_message);
    rbuf = malloc(rcap);
    if (!rbuf) {
        reject(c, DMAQ_ENOMEM, "host is out of memory");
        goto done;
    }
    memcpy(rbuf, hbuf + fl, rlen - (size_t)fl); /* what came after the HELLO */
    rlen -= (size_t)fl;
    if (h.role == TCP_ROLE_PUB)
        serve_publisher(c, nonce, &h, rbuf, rcap, rlen);
    else
        serve_subscriber(c, nonce, &h, rbuf, rcap, rlen);
done:
    free(rbuf);
    net_shutdown(c->fd, SHUT_RDWR);
    atomic_store(&c->done, true);
    return NULL;
}

static void conn_free(struct tcp_conn *c)
{
    pthread_join(c->thread, NULL);
    tcp_codec_free(&c->codec);
    net_close(c->fd);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

/* Take the connections `which` selects out of l's list (under hosts_lock). */
static struct tcp_conn *unlink_conns(struct tcp_listener *l, bool (*which)(struct tcp_conn *, void *), void *arg)
{
    struct tcp_conn *out = NULL, **pp = &l->conns;
    while (*pp) {
        struct tcp_conn *c = *pp;
        if (which(c, arg)) {
            *pp = c->next;
            c->next = out;
            out = c;
        } else {
            pp = &c->next;
        }
    }
    return out;
}

static void stop_and_free(struct tcp_conn *list)
{
    for (struct tcp_conn *c = list; c; c = c->next) {
        atomic_store(&c->stop, true);
        net_shutdown(c->fd, SHUT_RDWR);
    }
    while (list) {
        struct tcp_conn *next = list->next;
        conn_free(list);
        list = next;
    }
}

static bool is_done(struct tcp_conn *c, void *arg)
{
    (void)arg;
    return atomic_load(&c->done);
}
static bool of_chan(struct tcp_conn *c, void *arg) { return c->ch == arg; }

static void *accept_main(void *arg)
{
    struct tcp_listener *l = arg;
    for (;;) {
        struct pollfd p[2] = {{l->fd, POLLIN, 0}, {l->stop_pipe[0], POLLIN, 0}};
        net_poll(p, 2, 1000);
        if (p[1].revents)
            break;
        pthread_mutex_lock(&hosts_lock);
        struct tcp_conn *finished = unlink_conns(l, is_done, NULL);
        unsigned open_conns = 0;
        for (struct tcp_conn *c = l->conns; c; c = c->next)
            open_conns++;
        pthread_mutex_unlock(&hosts_lock);
        stop_and_free(finished);
        if ((p[0].revents & POLLIN) && open_conns >= MAX_CONNS) {
            /* A flood of connections must not become a flood of threads:
             * refuse until some end (a channel has at most 128 peers). */
            int fd = net_accept(l->fd, NULL, NULL);
            if (fd >= 0)
                net_close(fd);
            tcp_log("refused a connection to %s:%s: %u connections open", l->addr.host, l->addr.port, open_conns);
            continue;
        }
        if (!(p[0].revents & POLLIN))
            continue;
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = net_accept(l->fd, (struct sockaddr *)&sa, &sl);
        if (fd < 0)
            continue;
        struct tcp_conn *c = calloc(1, sizeof *c);
        if (!c) {
            net_close(fd);
            continue;
        }
        c->fd = fd;
        c->lst = l;
        char host[64] = "?", port[8] = "?";
        getnameinfo((struct sockaddr *)&sa, sl, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
        snprintf(c->peer, sizeof c->peer, "%s:%s", host, port);
        tcp_tune(fd, &(struct tcp_conf){.timeout_ns = TCP_DEFAULT_TIMEOUT_NS});
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        pthread_mutex_lock(&hosts_lock);
        if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
            pthread_mutex_unlock(&hosts_lock);
            net_close(fd);
            free(c);
            continue;
        }
        c->next = l->conns;
        l->conns = c;
        pthread_mutex_unlock(&hosts_lock);
    }
    return NULL;
}

/* ---- hosting ---- */

static bool same_addr(const struct tcp_addr *a, const struct tcp_addr *b)
{
    return strcmp(a->host, b->host) == 0 && strcmp(a->port, b->port) == 0;
}

static int start_listener(const struct tcp_addr *a, struct tcp_listener **out)
{
    struct tcp_listener *l = calloc(1, sizeof *l);
    if (!l)
        return dmaq_error_set(DMAQ_ENOMEM, "out of memory");
    l->addr = *a;
    l->fd = tcp_listen(a);
    if (l->fd < 0) {
        int rc = l->fd;
        free(l);
        return rc;
    }
    if (pipe2(l->stop_pipe, O_CLOEXEC) < 0 || pthread_create(&l->thread, NULL, accept_main, l) != 0) {
        int err = errno;
        net_close(l->fd);
        free(l);
        return dmaq_error_set(DMAQ_ESYS, "cannot start the listener for %s:%s: %s", a->host, a->port, strerror(err));
    }
    *out = l;
    return 0;
}

static void stop_listener(struct tcp_listener *l)
{
    if (write(l->stop_pipe[1], "x", 1) < 0) { /* the pipe is empty and ours: cannot fail */
    }
    pthread_join(l->thread, NULL);
    net_close(l->fd);
    close(l->stop_pipe[0]);
    close(l->stop_pipe[1]);
    stop_and_free(l->conns);
    free(l);
}

/* The caller's handle on ch's ring; hosts_lock held. */
static int open_on_ring(const struct tcp_chan *ch, const dmaq_options *ring_opts, dmaq_pub **pub, dmaq_sub **sub)
{
    return pub ? dmaq_pub_open(ch->ring_uri, ring_opts, pub) : dmaq_sub_open(ch->ring_uri, ring_opts, sub);
}

int tcp_host_attach(const struct tcp_addr *a, const dmaq_options *o, const struct tcp_conf *conf,
                    const dmaq_options *ring_opts, dmaq_pub **pub, dmaq_sub **sub, struct tcp_chan **out)
{
    pthread_mutex_lock(&hosts_lock);
    struct tcp_listener *l = listeners;
    while (l && !same_addr(&l->addr, a))
        l = l->next;
    int rc = 0;
    if (!l) {
        rc = start_listener(a, &l);
        if (rc < 0)
            goto out;
        l->next = listeners;
        listeners = l;
    }
    struct tcp_chan *ch = find_chan(l, a->name, strlen(a->name));
    if (ch) {
        /* refs > 0: a handle of ours is open on the ring, so it is there */
        if ((rc = open_on_ring(ch, ring_opts, pub, sub)) == 0) {
            ch->refs++;
            *out = ch;
        }
        goto out;
    }
    ch = calloc(1, sizeof *ch);
    if (!ch) {
        rc = dmaq_error_set(DMAQ_ENOMEM, "out of memory");
        goto out;
    }
    strcpy(ch->name, a->name);
    ch->lst = l;
    ch->conf = *conf;
    ch->refs = 1;
    ch->features = ((o->flags & DMAQ_OPEN_ENCRYPT) ? TCP_FEATURE_ENCRYPT : 0) |
                   ((o->flags & DMAQ_OPEN_COMPRESS) ? TCP_FEATURE_COMPRESS : 0);
    pthread_mutex_init(&ch->stash_lock, NULL);
    pthread_mutex_init(&ch->fw_lock, NULL);
    ch->forward_here = forward_here_default();
    ch->stash_end = &ch->stash;
    dmaq_options ro = *o;
    ro.flags = (ro.flags & DMAQ_OPEN_HUGEPAGES) | DMAQ_OPEN_FENCED; /* forwarders sleep and wake with every burst */
    ro.shm_dir = NULL;
    ro.key = NULL;
    dmaq_pub *creator = NULL;
    dmaq_stat st = {.size = sizeof st};
    if ((rc = tcp_ring_uri(ch->ring_uri, sizeof ch->ring_uri, "host")) < 0 ||
        (rc = dmaq_pub_open(ch->ring_uri, &ro, &creator)) < 0 ||
        (rc = dmaq_channel_stat(ch->ring_uri, &st, NULL, 0)) < 0 || (rc = open_on_ring(ch, ring_opts, pub, sub)) < 0) {
        dmaq_pub_close(creator);
        if (creator)
            dmaq_channel_unlink(ch->ring_uri);
        pthread_mutex_destroy(&ch->stash_lock);
        pthread_mutex_destroy(&ch->fw_lock);
        free(ch);
        goto out;
    }
    /* The file stays, named and locked by the caller's handle, while we host it. */
    dmaq_pub_close(creator);
    ch->kind = st.kind;
    ch->policy = st.policy;
    ch->capacity = st.capacity;
    ch->max_message = st.max_message;
    ch->next = l->chans;
    l->chans = ch;
    *out = ch;
    rc = 0;
out:
    if (rc < 0 && l && !l->chans) {
        for (struct tcp_listener **pp = &listeners; *pp; pp = &(*pp)->next)
            if (*pp == l) {
                *pp = l->next;
                break;
            }
        pthread_mutex_unlock(&hosts_lock);
        stop_listener(l);
        return rc;
    }
    pthread_mutex_unlock(&hosts_lock);
    return rc;
}

void tcp_host_detach(struct tcp_chan *ch)
{
    pthread_mutex_lock(&hosts_lock);
    if (--ch->refs > 0) {
        pthread_mutex_unlock(&hosts_lock);
        return;
    }
    struct tcp_listener *l = ch->lst;
    for (struct tcp_chan **pp = &l->chans; *pp; pp = &(*pp)->next)
        if (*pp == ch) {
            *pp = ch->next;
            break;
        }
    struct tcp_conn *conns = unlink_conns(l, of_chan, ch);
    bool last = !l->chans;
    if (last)
        for (struct tcp_listener **pp = &listeners; *pp; pp = &(*pp)->next)
            if (*pp == l) {
                *pp = l->next;
                break;
            }
    pthread_mutex_unlock(&hosts_lock);
    stop_and_free(conns);
    if (last)
        stop_listener(l);
    dmaq_channel_unlink(ch->ring_uri);
    for (struct stashed *m; (m = stash_pop(ch));)
        free(m);
    pthread_mutex_destroy(&ch->stash_lock);
    pthread_mutex_destroy(&ch->fw_lock);
    free(ch);
}
