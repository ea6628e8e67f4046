/* The tcp:// transport table (libdmaq-tcp.so), and the rdma:// one
 * (libdmaq-rdma.so: the same code over an RDMA stream, see sock.h). A handle that
 * binds works on the hosted ring directly; one that connects works on its
 * private ring, through client.c for what a subscriber reads. */
#include <errno.h>
#include <string.h>

#include "tcp.h"

#define KNOWN_FLAGS                                                                                                    \
    (DMAQ_OPEN_BIND | DMAQ_OPEN_NO_CREATE | DMAQ_OPEN_HUGEPAGES | DMAQ_OPEN_ENCRYPT | DMAQ_OPEN_COMPRESS |             \
     DMAQ_OPEN_NO_TIMESTAMPS)

static int available(void)
{
#ifdef DMAQ_NET_RDMA
    if (!rdma_stream_available()) {
        int err = errno;
        dmaq_error_set(DMAQ_ESCHEME,
                       "rdma:// is unavailable here: no usable RDMA device (%s; a kernel with an RDMA driver, or "
                       "Soft-RoCE's rdma_rxe with `rdma link add`, provides one)",
                       err == ENODEV || !err ? "none found" : strerror(err));
        return 0;
    }
#endif
    return 1;
}

static int prepare(const char *address, const dmaq_options *o, struct tcp_addr *a, struct tcp_conf *c)
{
    if (!available())
        return DMAQ_ESCHEME;
    int rc = tcp_parse_address(address, a);
    if (rc < 0)
        return rc;
    if (o->flags & ~(uint32_t)KNOWN_FLAGS)
        return dmaq_error_set(DMAQ_EINVAL, NET_SCHEME "://%s: unknown flags 0x%x", address, o->flags);
    if ((o->flags & DMAQ_OPEN_ENCRYPT) && !o->key)
        return dmaq_error_set(DMAQ_EINVAL, NET_SCHEME "://%s: DMAQ_OPEN_ENCRYPT needs a key (dmaq_options.key)",
                              address);
    return tcp_conf_from(o, c);
}

/* The options for a binding handle's shm handle on the hosted ring. */
static dmaq_options ring_options(const dmaq_options *o)
{
    dmaq_options r = *o;
    /* the encoding is the wire's, not the ring's; the ring is fenced (host.c) */
    r.flags = (o->flags & (DMAQ_OPEN_HUGEPAGES | DMAQ_OPEN_NO_TIMESTAMPS)) | DMAQ_OPEN_NO_CREATE | DMAQ_OPEN_FENCED;
    r.shm_dir = NULL;
    r.key = NULL;
    return r;
}

/* Open a handle on `address`: connect to the host through client.c, or
 * (DMAQ_OPEN_BIND) host the channel and open a plain shm handle on its ring. */
static int open_handle(const char *address, const dmaq_options *o, struct tcp_pub_state *ps,
                       struct tcp_sub_state *ss)
{
    struct tcp_addr a;
    struct tcp_conf c;
    int rc = prepare(address, o, &a, &c);
    if (rc < 0)
        return rc;
    if (!(o->flags & DMAQ_OPEN_BIND))
        return ps ? tcp_client_pub_open(ps, &a, o, &c) : tcp_client_sub_open(ss, &a, o, &c);
    dmaq_options r = ring_options(o);
    return ps ? tcp_host_attach(&a, o, &c, &r, &ps->inner, NULL, &ps->hosted)
              : tcp_host_attach(&a, o, &c, &r, NULL, &ss->inner, &ss->hosted);
}

static int pub_open(void *state, const char *address, const dmaq_options *o)
{
    return open_handle(address, o, state, NULL);
}

static void pub_close(void *state)
{
    struct tcp_pub_state *s = state;
    if (s->client) {
        tcp_client_pub_close(s);
        return;
    }
    tcp_host_detach(s->hosted); /* first: see tcp_host_attach */
    dmaq_pub_close(s->inner);
}

static uint32_t pub_id(const void *state)
{
    const struct tcp_pub_state *s = state;
    return s->client ? tcp_client_pub_id(s) : dmaq_pub_id(s->inner);
}

static int pub_reserve(void *state, size_t len, dmaq_lease *lease, int64_t timeout_ns)
{
    return dmaq_pub_reserve(((struct tcp_pub_state *)state)->inner, len, lease, timeout_ns);
}

/* A binding publisher's message is in the hosted ring: see that it leaves. */
static int published(const struct tcp_pub_state *s, int rc)
{
    if (rc >= 0 && s->hosted)
        tcp_host_published(s->hosted);
    return rc;
}

static int pub_commit(void *state, dmaq_lease *lease, size_t used)
{
    struct tcp_pub_state *s = state;
    return published(s, dmaq_pub_commit(s->inner, lease, used));
}

static int pub_abort(void *state, dmaq_lease *lease)
{
    return dmaq_pub_abort(((struct tcp_pub_state *)state)->inner, lease);
}

static int pub_send(void *state, const void *data, size_t len, int64_t timeout_ns)
{
    struct tcp_pub_state *s = state;
    return published(s, dmaq_pub_send(s->inner, data, len, timeout_ns));
}

static int pub_send_many(void *state, const void *data, const size_t *lens, size_t count, size_t *sent,
                         int64_t timeout_ns)
{
    struct tcp_pub_state *s = state;
    size_t n = 0;
    int rc = dmaq_pub_send_many(s->inner, data, lens, count, &n, timeout_ns);
    if (sent)
        *sent = n;
    if (n && s->hosted)
        tcp_host_published(s->hosted); /* the ones that went in, even if not all did */
    return rc;
}

static int sub_open(void *state, const char *address, const dmaq_options *o)
{
    return open_handle(address, o, NULL, state);
}

static void sub_close(void *state)
{
    struct tcp_sub_state *s = state;
    if (s->client) {
        tcp_client_sub_close(s);
        return;
    }
    tcp_host_detach(s->hosted);
    dmaq_sub_close(s->inner);
}

static int sub_peek(void *state, dmaq_lease *lease, int64_t timeout_ns)
{
    struct tcp_sub_state *s = state;
    return s->client ? tcp_client_peek(s, lease, timeout_ns) : dmaq_sub_peek(s->inner, lease, timeout_ns);
}

static int sub_release(void *state, dmaq_lease *lease)
{
    struct tcp_sub_state *s = state;
    return s->client ? tcp_client_release(s, lease) : dmaq_sub_release(s->inner, lease);
}

static int sub_recv(void *state, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    struct tcp_sub_state *s = state;
    if (!s->client)
        return dmaq_sub_recv(s->inner, buf, cap, len, timeout_ns);
    dmaq_lease lease;
    int rc = tcp_client_peek(s, &lease, timeout_ns);
    if (rc == DMAQ_ELOST)
        *len = lease.lost;
    if (rc < 0)
        return rc;
    *len = lease.len;
    if (lease.len > cap) { /* stays unread: the next peek or recv gets it */
        s->held = true;
        s->held_lease = lease;
        return dmaq_error_set(DMAQ_EMSGSIZE, "message of %llu bytes does not fit a buffer of %zu",
                              (unsigned long long)lease.len, cap);
    }
    memcpy(buf, lease.data, lease.len);
    return tcp_client_release(s, &lease);
}

/* A connecting subscriber hands out one lease per batch. */
static int sub_peek_many(void *state, dmaq_lease *leases, size_t max_count, size_t *count, int64_t timeout_ns)
{
    struct tcp_sub_state *s = state;
    if (!s->client)
        return dmaq_sub_peek_many(s->inner, leases, max_count, count, timeout_ns);
    int rc = tcp_client_peek(s, &leases[0], timeout_ns);
    *count = rc == 0;
    return rc;
}

static int sub_release_many(void *state, dmaq_lease *leases, size_t count)
{
    struct tcp_sub_state *s = state;
    if (!s->client)
        return dmaq_sub_release_many(s->inner, leases, count);
    if (count != 1)
        return dmaq_error_set(DMAQ_ELEASE,
                              "a " NET_SCHEME ":// subscriber's batches hold one lease; release_many got %zu", count);
    return tcp_client_release(s, &leases[0]);
}

static int channel_stat(const char *address, dmaq_stat *stat, dmaq_sub_stat *subs, size_t cap)
{
    struct tcp_addr a;
    struct tcp_conf c;
    dmaq_options o = DMAQ_OPTIONS_INIT;
    int rc = prepare(address, &o, &a, &c);
    return rc < 0 ? rc : tcp_client_stat(&a, stat, subs, cap, &c);
}

static int channel_unlink(const char *address)
{
    return dmaq_error_set(DMAQ_EINVAL,
                          NET_SCHEME "://%s has no name to remove: a " NET_SCHEME
                                     ":// channel ends when the last handle binding "
                                     "it closes",
                          address);
}

static const dmaq_transport_ops tcp_ops = {
    .abi_version = DMAQ_TRANSPORT_ABI,
    .struct_size = sizeof(dmaq_transport_ops),
    .scheme = NET_SCHEME,
    .available = available,
    .pub_state_size = sizeof(struct tcp_pub_state),
    .sub_state_size = sizeof(struct tcp_sub_state),
    .pub_open = pub_open,
    .pub_close = pub_close,
    .pub_id = pub_id,
    .pub_reserve = pub_reserve,
    .pub_commit = pub_commit,
    .pub_abort = pub_abort,
    .pub_send = pub_send,
    .sub_open = sub_open,
    .sub_close = sub_close,
    .sub_peek = sub_peek,
    .sub_release = sub_release,
    .sub_recv = sub_recv,
    .channel_stat = channel_stat,
    .channel_unlink = channel_unlink,
    .sub_peek_many = sub_peek_many,
    .sub_release_many = sub_release_many,
    .pub_send_many = pub_send_many,
};

__attribute__((visibility("default"))) const dmaq_transport_ops *NET_TRANSPORT_FN(void) { return &tcp_ops; }
