/*
 * transport.h — the transport layer interface (TLI), for transport authors.
 *
 * A transport is one const dmaq_transport_ops table: a URI scheme, the size
 * of the private state it needs per publisher and per subscriber, and the
 * operations. The public calls in dmaq.h find the table once, at open, from
 * the URI's scheme; afterwards every call is one indirect call into it, with
 * the transport's state. The core never looks inside that state.
 *
 * Operations receive `address`, the URI without "scheme://". They report
 * errors through dmaq_error_set() and return its result. The lease checks
 * (is this lease outstanding on this handle?) are the transport's to do,
 * since only it knows its bookkeeping.
 */
#ifndef DMAQ_TRANSPORT_H
#define DMAQ_TRANSPORT_H

#include "dmaq.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DMAQ_TRANSPORT_ABI 1u

typedef struct dmaq_transport_ops {
    uint32_t abi_version;   /* DMAQ_TRANSPORT_ABI */
    uint32_t struct_size;   /* sizeof(dmaq_transport_ops) */
    const char *scheme;     /* "shm", "tcp", ... */
    size_t pub_state_size;  /* bytes of zeroed state given to pub_* ops */
    size_t sub_state_size;  /* bytes of zeroed state given to sub_* ops */

    /* Is the transport usable here? 1 yes, 0 no (with dmaq_error_set). */
    int (*available)(void);

    int (*pub_open)(void *state, const char *address, const dmaq_options *opts);
    void (*pub_close)(void *state); /* must end an outstanding lease */
    uint32_t (*pub_id)(const void *state);
    int (*pub_reserve)(void *state, size_t len, dmaq_lease *lease, int64_t timeout_ns);
    int (*pub_commit)(void *state, dmaq_lease *lease, size_t used_len);
    int (*pub_abort)(void *state, dmaq_lease *lease);
    /* May be NULL: the core then sends with reserve + memcpy + commit. */
    int (*pub_send)(void *state, const void *data, size_t len, int64_t timeout_ns);

    int (*sub_open)(void *state, const char *address, const dmaq_options *opts);
    void (*sub_close)(void *state); /* must end an outstanding lease */
    int (*sub_peek)(void *state, dmaq_lease *lease, int64_t timeout_ns);
    int (*sub_release)(void *state, dmaq_lease *lease);
    /* Must leave a message that does not fit unread (DMAQ_EMSGSIZE). */
    int (*sub_recv)(void *state, void *buf, size_t cap, size_t *len, int64_t timeout_ns);

    int (*channel_stat)(const char *address, dmaq_stat *stat, dmaq_sub_stat *subs, size_t subs_cap);
    int (*channel_unlink)(const char *address);

    /* May be NULL: the core then hands out one lease per batch. max_count
     * is at most DMAQ_BATCH_MAX; count is that of the outstanding batch. */
    int (*sub_peek_many)(void *state, dmaq_lease *leases, size_t max_count, size_t *count, int64_t timeout_ns);
    int (*sub_release_many)(void *state, dmaq_lease *leases, size_t count);
    /* May be NULL: the core then sends each message with pub_send. As
     * dmaq_pub_send_many, with `sent` never NULL and set to 0 before. */
    int (*pub_send_many)(void *state, const void *data, const size_t *lens, size_t count, size_t *sent,
                         int64_t timeout_ns);
} dmaq_transport_ops;

/* Make `ops` handle its scheme from now on. The table must outlive the
 * process (static storage). Returns 0, DMAQ_EINVAL for a malformed table or
 * DMAQ_ELIMIT when the registry is full. Any thread. */
DMAQ_API int dmaq_transport_register(const dmaq_transport_ops *ops);

/* Where the leases of an shm:// subscriber handle lie: its channel's whole
 * mapping, `*len` bytes from `*base`, valid until the handle is closed. For
 * a transport that hands big messages to a NIC straight from a ring it
 * reads: it registers the range once, when it opens a connection, never per
 * message. Returns 0, or DMAQ_EINVAL for a NULL argument or a handle of
 * another transport. Any thread. */
DMAQ_API int dmaq_sub_memory(const dmaq_sub *sub, const void **base, size_t *len);

/* Record `code` and a printf-style detail as the calling thread's last error
 * (see dmaq_last_error) and return `code`, so ops can `return
 * dmaq_error_set(DMAQ_EINVAL, "...", ...)`. */
DMAQ_API int dmaq_error_set(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif /* DMAQ_TRANSPORT_H */
