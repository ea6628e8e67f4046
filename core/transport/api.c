/* The public calls of dmaq.h: argument checks, then one indirect call into
 * the transport chosen at open. */
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "../util/clock.h"

struct dmaq_pub {
    const dmaq_transport_ops *ops;
    _Alignas(64) unsigned char state[]; /* the transport's, ops->pub_state_size bytes */
};

struct dmaq_sub {
    const dmaq_transport_ops *ops;
    _Alignas(64) unsigned char state[];
};

int dmaq_sub_memory(const dmaq_sub *sub, const void **base, size_t *len)
{
    if (!sub || !base || !len)
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_sub_memory: %s is NULL", !sub ? "sub" : !base ? "base" : "len");
    if (sub->ops != &dmaq__shm_transport)
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_sub_memory: the handle is on %s://, not shm://", sub->ops->scheme);
    dmaq__shm_sub_memory(sub->state, base, len);
    return 0;
}

const char *dmaq_version(void) { return DMAQ_VERSION_STRING; }

void dmaq_options_init(dmaq_options *opts)
{
    if (!opts)
        return;
    dmaq_options defaults = DMAQ_OPTIONS_INIT;
    *opts = defaults;
}

/* A zeroed handle of `size` bytes, aligned as the handle types require
 * (calloc promises only 16). */
static void *handle_alloc(size_t size)
{
    size = (size + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, size);
    if (p)
        memset(p, 0, size);
    return p;
}

size_t dmaq_struct_size(int which)
{
    switch (which) {
    case DMAQ_STRUCT_OPTIONS:
        return sizeof(dmaq_options);
    case DMAQ_STRUCT_LEASE:
        return sizeof(dmaq_lease);
    case DMAQ_STRUCT_STAT:
        return sizeof(dmaq_stat);
    case DMAQ_STRUCT_SUB_STAT:
        return sizeof(dmaq_sub_stat);
    default:
        return 0;
    }
}

/* Copy the caller's options into a full-size struct, so transports always see
 * every field: fields an older caller did not know stay at their defaults. */
static int read_options(const dmaq_options *in, dmaq_options *out)
{
    dmaq_options_init(out);
    if (!in)
        return 0;
    size_t v1 = offsetof(dmaq_options, spin_ns) + sizeof(int64_t);
    if (in->size < v1)
        return dmaq_error_set(DMAQ_EINVAL, "options.size is %u; set it to sizeof(dmaq_options) (%zu)",
                              in->size, sizeof(dmaq_options));
    memcpy(out, in, in->size < sizeof *out ? in->size : sizeof *out);
    out->size = sizeof *out;
    return 0;
}

int dmaq_pub_open(const char *uri, const dmaq_options *opts, dmaq_pub **out)
{
    if (!out)
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_pub_open: out is NULL");
    *out = NULL;
    const dmaq_transport_ops *ops;
    const char *address;
    dmaq_options o;
    int rc = dmaq__transport_for_uri(uri, &ops, &address);
    if (rc == 0)
        rc = read_options(opts, &o);
    if (rc < 0)
        return rc;
    dmaq_pub *pub = handle_alloc(sizeof *pub + ops->pub_state_size);
    if (!pub)
        return dmaq_error_set(DMAQ_ENOMEM, "out of memory opening a publisher on '%.256s'", uri);
    pub->ops = ops;
    rc = ops->pub_open(pub->state, address, &o);
    if (rc < 0) {
        free(pub);
        return rc;
    }
    *out = pub;
    return 0;
}

int dmaq_pub_close(dmaq_pub *pub)
{
    if (pub) {
        pub->ops->pub_close(pub->state);
        free(pub);
    }
    return 0;
}

uint32_t dmaq_pub_id(const dmaq_pub *pub) { return pub ? pub->ops->pub_id(pub->state) : 0; }

int dmaq_pub_reserve(dmaq_pub *pub, size_t len, dmaq_lease *lease, int64_t timeout_ns)
{
    if (!pub || !lease)
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_pub_reserve: %s is NULL", pub ? "lease" : "pub");
    return pub->ops->pub_reserve(pub->state, len, lease, timeout_ns);
}

int dmaq_pub_commit(dmaq_pub *pub, dmaq_lease *lease, size_t used_len)
{
    if (!pub || !lease)
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_pub_commit: %s is NULL", pub ? "lease" : "pub");
    return pub->ops->pub_commit(pub->state, lease, used_len);
}

int dmaq_pub_abort(dmaq_pub *pub, dmaq_lease *lease)
{
    if (!pub || !lease)
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_pub_abort: %s is NULL", pub ? "lease" : "pub");
    return pub->ops->pub_abort(pub->state, lease);
}

int dmaq_pub_send(dmaq_pub *pub, const void *data, size_t len, int64_t timeout_ns)
{
    if (!pub || (!data && len))
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_pub_send: %s is NULL", pub ? "data" : "pub");
    if (pub->ops->pub_send)
        return pub->ops->pub_send(pub->state, data, len, timeout_ns);
    dmaq_lease lease;
    int rc = pub->ops->pub_reserve(pub->state, len, &lease, timeout_ns);
    if (rc < 0)
        return rc;
    if (len)
        memcpy(lease.data, data, len);
    return pub->ops->pub_commit(pub->state, &lease, len);
}

int dmaq_pub_send_many(dmaq_pub *pub, const void *data, const size_t *lens, size_t count, size_t *sent,
                       int64_t timeout_ns)
{
    if (sent)
        *sent = 0;
    if (!pub || (!lens && count))
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_pub_send_many: %s is NULL", pub ? "lens" : "pub");
    if (!data)
        for (size_t i = 0; i < count; i++)
            if (lens[i])
                return dmaq_error_set(DMAQ_EINVAL, "dmaq_pub_send_many: data is NULL");
    if (pub->ops->pub_send_many) {
        size_t ignored;
        return pub->ops->pub_send_many(pub->state, data, lens, count, sent ? sent : &ignored, timeout_ns);
    }
    uint64_t deadline = dmaq__deadline(timeout_ns);
    const unsigned char *p = data;
    for (size_t i = 0; i < count; i++) {
        int rc = dmaq_pub_send(pub, p, lens[i], dmaq__timeout_left(timeout_ns, deadline));
        if (rc < 0)
            return rc;
        if (sent)
            *sent = i + 1;
        if (p)
            p += lens[i];
    }
    return 0;
}

int dmaq_sub_open(const char *uri, const dmaq_options *opts, dmaq_sub **out)
{
    if (!out)
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_sub_open: out is NULL");
    *out = NULL;
    const dmaq_transport_ops *ops;
    const char *address;
    dmaq_options o;
    int rc = dmaq__transport_for_uri(uri, &ops, &address);
    if (rc == 0)
        rc = read_options(opts, &o);
    if (rc < 0)
        return rc;
    dmaq_sub *sub = handle_alloc(sizeof *sub + ops->sub_state_size);
    if (!sub)
        return dmaq_error_set(DMAQ_ENOMEM, "out of memory opening a subscriber on '%.256s'", uri);
    sub->ops = ops;
    rc = ops->sub_open(sub->state, address, &o);
    if (rc < 0) {
        free(sub);
        return rc;
    }
    *out = sub;
    return 0;
}

int dmaq_sub_close(dmaq_sub *sub)
{
    if (sub) {
        sub->ops->sub_close(sub->state);
        free(sub);
    }
    return 0;
}

int dmaq_sub_peek(dmaq_sub *sub, dmaq_lease *lease, int64_t timeout_ns)
{
    if (!sub || !lease)
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_sub_peek: %s is NULL", sub ? "lease" : "sub");
    return sub->ops->sub_peek(sub->state, lease, timeout_ns);
}

int dmaq_sub_release(dmaq_sub *sub, dmaq_lease *lease)
{
    if (!sub || !lease)
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_sub_release: %s is NULL", sub ? "lease" : "sub");
    return sub->ops->sub_release(sub->state, lease);
}

int dmaq_sub_recv(dmaq_sub *sub, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    if (!sub || !len || (!buf && cap))
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_sub_recv: %s is NULL", !sub ? "sub" : !len ? "len" : "buf");
    return sub->ops->sub_recv(sub->state, buf, cap, len, timeout_ns);
}

int dmaq_sub_peek_many(dmaq_sub *sub, dmaq_lease *leases, size_t max_count, size_t *count, int64_t timeout_ns)
{
    if (count)
        *count = 0;
    if (!sub || !leases || !count)
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_sub_peek_many: %s is NULL", !sub ? "sub" : !leases ? "leases" : "count");
    if (max_count == 0 || max_count > DMAQ_BATCH_MAX)
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_sub_peek_many: max_count is %zu; it must be 1 to %u", max_count,
                              DMAQ_BATCH_MAX);
    if (sub->ops->sub_peek_many)
        return sub->ops->sub_peek_many(sub->state, leases, max_count, count, timeout_ns);
    int rc = sub->ops->sub_peek(sub->state, leases, timeout_ns);
    if (rc == 0)
        *count = 1;
    return rc;
}

int dmaq_sub_release_many(dmaq_sub *sub, dmaq_lease *leases, size_t count)
{
    if (!sub || !leases)
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_sub_release_many: %s is NULL", sub ? "leases" : "sub");
    if (sub->ops->sub_release_many)
        return sub->ops->sub_release_many(sub->state, leases, count);
    if (count != 1)
        return dmaq_error_set(DMAQ_ELEASE, "dmaq_sub_release_many: this transport hands out batches of one lease");
    return sub->ops->sub_release(sub->state, leases);
}

int dmaq_sub_recv_many(dmaq_sub *sub, void *buf, size_t cap, size_t *lens, size_t max_count, size_t *count,
                       int64_t timeout_ns)
{
    if (count)
        *count = 0;
    if (!sub || !lens || !count || (!buf && cap))
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_sub_recv_many: %s is NULL",
                              !sub ? "sub" : !lens ? "lens" : !count ? "count" : "buf");
    if (max_count == 0)
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_sub_recv_many: max_count is 0");
    unsigned char *p = buf;
    size_t used = 0;
    for (size_t n = 0; n < max_count; n++) {
        size_t len = 0;
        /* Only the first waits: a batch is what is there already. */
        int rc = sub->ops->sub_recv(sub->state, p ? p + used : p, cap - used, &len, n ? 0 : timeout_ns);
        if (rc < 0) {
            if (n > 0 && (rc == DMAQ_EAGAIN || rc == DMAQ_ETIMEDOUT || rc == DMAQ_EMSGSIZE))
                break; /* the batch ends; a message that did not fit stays for the next call */
            if (n == 0 || rc == DMAQ_ELOST)
                lens[n] = len;
            return rc;
        }
        lens[n] = len;
        used += len;
        *count = n + 1;
    }
    return 0;
}

int dmaq_channel_stat(const char *uri, dmaq_stat *stat, dmaq_sub_stat *subs, size_t subs_cap)
{
    const dmaq_transport_ops *ops;
    const char *address;
    if (!stat || (!subs && subs_cap))
        return dmaq_error_set(DMAQ_EINVAL, "dmaq_channel_stat: %s is NULL", stat ? "subs" : "stat");
    if (stat->size < sizeof(dmaq_stat))
        return dmaq_error_set(DMAQ_EINVAL, "stat.size is %u; set it to sizeof(dmaq_stat) (%zu)", stat->size,
                              sizeof(dmaq_stat));
    int rc = dmaq__transport_for_uri(uri, &ops, &address);
    return rc < 0 ? rc : ops->channel_stat(address, stat, subs, subs_cap);
}

int dmaq_channel_unlink(const char *uri)
{
    const dmaq_transport_ops *ops;
    const char *address;
    int rc = dmaq__transport_for_uri(uri, &ops, &address);
    return rc < 0 ? rc : ops->channel_unlink(address);
}
