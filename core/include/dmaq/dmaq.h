/*
 * dmaq.h — the whole public C ABI of dmaq, a brokerless, DMA-first messaging
 * library.
 *
 * A channel is named by a URI ("shm://orders"). Publishers write messages into
 * it, subscribers read them. Its kind is fixed when it is created:
 *
 *   DMAQ_KIND_QUEUE      every message is delivered to exactly one subscriber;
 *                        publishers wait (or get DMAQ_EAGAIN) when it is full.
 *   DMAQ_KIND_BROADCAST  every subscriber sees every message published after
 *                        it joined. Policy DMAQ_POLICY_BLOCK: publishers wait
 *                        for the slowest live subscriber. Policy
 *                        DMAQ_POLICY_OVERWRITE: publishers never wait; a
 *                        subscriber that falls a whole ring behind is told how
 *                        many messages it lost and resumes at the newest.
 *
 * Conventions for every function below:
 *   - Fallible functions return int: 0 (or a non-negative count) on success,
 *     a negative DMAQ_E* code on failure. dmaq_strerror() names a code;
 *     dmaq_last_error() says, for the calling thread, exactly what was wrong.
 *   - Timeouts are in nanoseconds: 0 = try once and return DMAQ_EAGAIN,
 *     negative = wait forever, positive = wait that long and return
 *     DMAQ_ETIMEDOUT (never sooner; a timeout of a second or more is timed
 *     with the coarse clock and may end up to about 20 ms late). Waits spin
 *     briefly, then sleep in the kernel.
 *   - Handles are opaque. A handle may be used by one thread at a time; it
 *     may be moved to (used from) another thread between calls. Different
 *     handles, even on the same channel, may be used concurrently.
 *   - Nothing on the hot path (reserve, commit, abort, send, peek, release,
 *     recv) allocates memory or takes a lock.
 *
 * This header includes only <stddef.h>, <stdint.h> and <stdbool.h>, and uses
 * only fixed-width types in shared structs, so every language can bind it.
 */
#ifndef DMAQ_DMAQ_H
#define DMAQ_DMAQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(DMAQ_BUILDING) && defined(__GNUC__)
#define DMAQ_API __attribute__((visibility("default")))
#else
#define DMAQ_API
#endif

/* Version of this header. The library's own is dmaq_version(). */
#define DMAQ_VERSION_MAJOR 0
#define DMAQ_VERSION_MINOR 1
#define DMAQ_VERSION_PATCH 0
#define DMAQ_VERSION_STRING "0.1.0"
#define DMAQ_VERSION_NUMBER \
    (DMAQ_VERSION_MAJOR * 10000 + DMAQ_VERSION_MINOR * 100 + DMAQ_VERSION_PATCH)

/*
 * Status codes. Numbers are frozen once released; new codes get new numbers.
 * DMAQ_ERRORS(X) expands X(NAME, number, description) once per code.
 */
#define DMAQ_ERRORS(X)                                                          \
    X(EINVAL, -1, "invalid argument")                                           \
    X(ESCHEME, -2, "unknown or unavailable URI scheme")                         \
    X(ENOENT, -3, "channel does not exist")                                     \
    X(EINCOMPAT, -4, "channel exists with different kind, policy or sizes")     \
    X(EMSGSIZE, -5, "message larger than the channel's maximum or the buffer")  \
    X(EAGAIN, -6, "would block (ring full or no message yet)")                  \
    X(ETIMEDOUT, -7, "timed out")                                               \
    X(ELOST, -8, "subscriber was overrun; messages were lost")                  \
    X(EOVERWRITTEN, -9, "leased bytes were overwritten while held")             \
    X(ECORRUPT, -10, "channel is corrupt")                                      \
    X(ENOTCHAN, -11, "not a dmaq channel")                                      \
    X(EVERSION, -12, "channel has an unsupported layout version")               \
    X(ELEASE, -13, "lease is not outstanding on this handle")                   \
    X(EBUSY, -14, "handle already holds a lease")                               \
    X(ELIMIT, -15, "too many publishers or subscribers on the channel")         \
    X(ENOMEM, -16, "out of memory")                                             \
    X(ENOSPC, -17, "no space left for the channel (is /dev/shm too small?)")    \
    X(EACCES, -18, "permission denied")                                         \
    X(ESYS, -19, "operating system error")

enum {
    DMAQ_OK = 0,
#define DMAQ__ENUM(name, num, text) DMAQ_##name = (num),
    DMAQ_ERRORS(DMAQ__ENUM)
#undef DMAQ__ENUM
};

/* Channel kinds (dmaq_options.kind). 0 = DMAQ_KIND_ANY. */
#define DMAQ_KIND_ANY 0u       /* open: accept what exists; create: broadcast */
#define DMAQ_KIND_QUEUE 1u     /* each message to exactly one subscriber */
#define DMAQ_KIND_BROADCAST 2u /* each message to every subscriber */

/* Full-ring policies (dmaq_options.policy). 0 = DMAQ_POLICY_ANY. */
#define DMAQ_POLICY_ANY 0u       /* open: accept what exists; create: block */
#define DMAQ_POLICY_BLOCK 1u     /* publishers wait for space */
#define DMAQ_POLICY_OVERWRITE 2u /* broadcast only: publishers never wait */

/* Where a new broadcast subscriber starts (dmaq_options.start). */
#define DMAQ_START_NEWEST 0u /* the next message published */
#define DMAQ_START_OLDEST 1u /* the oldest message still intact in the ring */

/* dmaq_options.flags */
#define DMAQ_OPEN_NO_CREATE 0x1u /* fail with DMAQ_ENOENT if it does not exist */
#define DMAQ_OPEN_HUGEPAGES 0x2u /* ask the kernel to back the ring with huge pages */
#define DMAQ_OPEN_BIND 0x4u      /* network schemes: this handle hosts the channel and
                                    listens at the URI's address; without it, the
                                    handle connects to the process that does */
#define DMAQ_OPEN_ENCRYPT 0x8u   /* network schemes, with a key: binding, seal every
                                    payload (ChaCha20-Poly1305, per-connection keys);
                                    connecting, refuse a channel that does not */
#define DMAQ_OPEN_COMPRESS 0x10u /* network schemes, binding: zstd-compress payloads
                                    of 512 bytes or more when that makes them smaller */
#define DMAQ_OPEN_FENCED 0x20u   /* shm: from now on every waker on this channel pays
                                    a fence per commit, so that a subscriber or
                                    publisher going to sleep need not make every CPU
                                    pass a barrier (membarrier) first: for channels
                                    whose waiters sleep and wake thousands of times a
                                    second, where those interruptions cost more */
/* Publisher: do not stamp messages (their leases' timestamp_ns is 0).
 * Reading the clock is most of a small send on some machines (x86 RDTSC
 * costs 10 ns and more in VMs); for publishers that carry their own time or
 * need none. A connecting network publisher's messages are stamped by the
 * host whatever this says. */
#define DMAQ_OPEN_NO_TIMESTAMPS 0x40u

/* Limits of the shared-memory transport. */
#define DMAQ_NAME_MAX 200u              /* bytes in a channel name */
#define DMAQ_MAX_SUBSCRIBERS 64u        /* live subscribers per channel */
#define DMAQ_MAX_PUBLISHERS 64u         /* live publishers per channel */
#define DMAQ_CAPACITY_MIN 4096u         /* smallest ring, bytes */
#define DMAQ_CAPACITY_DEFAULT (1u << 20)
#define DMAQ_RECORD_HEADER 48u          /* bytes of ring used per message, besides its payload, */
#define DMAQ_RECORD_ALIGN 64u           /* the two together rounded up to a multiple of this */
#define DMAQ_BATCH_MAX 256u             /* leases one dmaq_sub_peek_many call may hand out */

/*
 * Options for dmaq_pub_open() and dmaq_sub_open(). Start from
 * DMAQ_OPTIONS_INIT or dmaq_options_init(); set `size` to sizeof(dmaq_options)
 * so that fields added later can be told apart from callers built earlier.
 * Fields left 0 take the channel's existing value when opening one that
 * exists, and the default when creating one.
 */
typedef struct dmaq_options {
    uint32_t size;        /* sizeof(dmaq_options) as the caller compiled it */
    uint32_t kind;        /* DMAQ_KIND_*; default broadcast */
    uint32_t policy;      /* DMAQ_POLICY_*; default block */
    uint32_t flags;       /* DMAQ_OPEN_* */
    uint64_t capacity;    /* ring bytes, a power of two >= DMAQ_CAPACITY_MIN;
                             default DMAQ_CAPACITY_DEFAULT */
    uint64_t max_message; /* largest payload in bytes; at most
                             capacity/2 - DMAQ_RECORD_HEADER; default capacity/4 */
    uint32_t mode;        /* file permission bits when creating; default 0600 */
    uint32_t start;       /* DMAQ_START_*; subscribers of broadcast channels */
    int64_t spin_ns;      /* how long a wait spins before it sleeps;
                             negative = default (50 us), 0 = sleep at once,
                             INT64_MAX = busy-poll. Network schemes: also
                             the waits of the threads serving this handle
                             (rdma://: polling the completion queue) */
    const char *shm_dir;  /* shm:// channels: the directory holding their
                             files; NULL = $DMAQ_SHM_DIR, else /dev/shm.
                             Only read during the open call. */
    /* Fields below were added in 0.2; callers built before pass a smaller
     * `size` and get their defaults. */
    int64_t peer_timeout_ns; /* network schemes: a peer silent this long is
                                dead (heartbeats keep live ones heard);
                                0 = default (5 s) */
    const char *key;         /* network schemes: pre-shared key; a peer must
                                prove it knows the same one. NULL = none.
                                Only read during the open call. */
} dmaq_options;

#define DMAQ_OPTIONS_INIT {sizeof(dmaq_options), 0, 0, 0, 0, 0, 0, 0, -1, NULL, 0, NULL}

/* dmaq_lease.flags */
#define DMAQ_LEASE_REDELIVERED 0x1u /* queue: an earlier receiver died holding it */
#define DMAQ_LEASE_OVERWRITTEN 0x2u /* set by dmaq_sub_release_many: overwritten while held */

/*
 * A zero-copy lease on bytes inside a channel's ring. The caller owns the
 * struct (usually on its stack); dmaq fills it. A write lease (from
 * dmaq_pub_reserve) ends in exactly one dmaq_pub_commit or dmaq_pub_abort; a
 * read lease (from dmaq_sub_peek) ends in exactly one dmaq_sub_release.
 * `data` is valid only until then. A handle holds at most one lease at a time.
 */
typedef struct dmaq_lease {
    void *data;            /* write: len writable bytes; read: len read-only bytes */
    uint64_t len;          /* write: bytes reserved; read: payload length */
    uint64_t seq;          /* channel-wide sequence number of the message */
    uint64_t timestamp_ns; /* CLOCK_REALTIME at commit, nanoseconds (0: the
                              publisher opened with DMAQ_OPEN_NO_TIMESTAMPS) */
    uint32_t publisher_id; /* id of the publisher handle that committed it */
    uint32_t flags;        /* DMAQ_LEASE_* */
    uint64_t lost;         /* after DMAQ_ELOST: how many messages were lost */
    uint64_t opaque_[4];   /* dmaq's own bookkeeping; do not touch */
} dmaq_lease;

/* Channel-wide figures from dmaq_channel_stat(). */
typedef struct dmaq_stat {
    uint32_t size;          /* sizeof(dmaq_stat) as the caller compiled it */
    uint32_t kind;          /* DMAQ_KIND_* */
    uint32_t policy;        /* DMAQ_POLICY_* */
    uint32_t mode;          /* file permission bits */
    uint64_t capacity;      /* ring bytes */
    uint64_t max_message;   /* largest payload */
    uint64_t bytes_used;    /* ring bytes not yet given back by the slowest reader (queue: up to 32 records
                               released by each subscriber may still count until it next sleeps or closes) */
    uint64_t published;     /* messages committed since creation */
    uint32_t publishers;    /* publishers attached now */
    uint32_t subscribers;   /* subscribers attached now */
    int32_t creator_pid;    /* process that created the channel */
    uint32_t flags;         /* DMAQ_STAT_* */
} dmaq_stat;

/* dmaq_stat.flags */
#define DMAQ_STAT_STALE 0x1u /* no live process is attached: dmaq_channel_gc would remove it */

/* One subscriber's figures from dmaq_channel_stat(). */
typedef struct dmaq_sub_stat {
    uint64_t received;  /* messages delivered to it */
    uint64_t lost;      /* messages it lost to overwriting */
    uint64_t lag;       /* messages published that it has not yet read
                           (broadcast); for a queue, the messages waiting */
    uint64_t lag_bytes; /* ring bytes between it and the newest message */
    int32_t pid;        /* its process */
    uint32_t alive;     /* 1 if that process is still running */
} dmaq_sub_stat;

typedef struct dmaq_pub dmaq_pub; /* a publisher handle */
typedef struct dmaq_sub dmaq_sub; /* a subscriber handle */

/* ---- Library ------------------------------------------------------------ */

/* The library's version string ("0.1.0"). Static storage; any thread. */
DMAQ_API const char *dmaq_version(void);

/* A short English name for a status code ("timed out"); never NULL.
 * Static storage; any thread. */
DMAQ_API const char *dmaq_strerror(int code);

/* What exactly went wrong in the calling thread's most recent failing dmaq
 * call, e.g. "channel 'orders' was created as broadcast, opened as queue".
 * Thread-local storage, valid until this thread's next dmaq call; never NULL
 * (empty before any failure). */
DMAQ_API const char *dmaq_last_error(void);

/* Fill *opts with the defaults (including opts->size). Any thread. */
DMAQ_API void dmaq_options_init(dmaq_options *opts);

/* Whether the transport for `scheme` ("shm", "tcp", "rdma") can be used in
 * this process, loading its plugin (libdmaq-SCHEME.so, from
 * $DMAQ_PLUGIN_PATH, next to libdmaq.so, or the loader's default paths) if
 * it is not loaded yet. Returns 1 if so, 0 if not (dmaq_last_error() says
 * why). Any thread. */
DMAQ_API int dmaq_transport_available(const char *scheme);

/* sizeof the public struct named by `which` (DMAQ_STRUCT_*), so bindings can
 * check their own declarations against the library's. 0 for an unknown name. */
#define DMAQ_STRUCT_OPTIONS 1
#define DMAQ_STRUCT_LEASE 2
#define DMAQ_STRUCT_STAT 3
#define DMAQ_STRUCT_SUB_STAT 4
DMAQ_API size_t dmaq_struct_size(int which);

/* ---- Publishers --------------------------------------------------------- */

/* Open a publisher on the channel at `uri`, creating the channel from `opts`
 * if it does not exist (unless DMAQ_OPEN_NO_CREATE). `opts` may be NULL for
 * the defaults; it is only read during the call. On success stores a new
 * handle in *out (the caller owns it; free it with dmaq_pub_close) and returns
 * 0; on failure leaves *out NULL and returns DMAQ_EINVAL, DMAQ_ESCHEME,
 * DMAQ_ENOENT, DMAQ_EINCOMPAT, DMAQ_ENOTCHAN, DMAQ_EVERSION, DMAQ_ECORRUPT,
 * DMAQ_ELIMIT, DMAQ_ENOSPC, DMAQ_EACCES, DMAQ_ENOMEM or DMAQ_ESYS.
 * On shm:// this maps the whole channel and touches every page of it, so
 * that no message pays for a page's first access: open takes time in
 * proportion to the capacity (about 1.3 ms per MiB on the VMs we measure,
 * whose hypervisor traps each page's first access). Any thread. */
DMAQ_API int dmaq_pub_open(const char *uri, const dmaq_options *opts, dmaq_pub **out);

/* Close a publisher, aborting a reservation it still holds. NULL does
 * nothing. The handle is invalid afterwards. Returns 0. */
DMAQ_API int dmaq_pub_close(dmaq_pub *pub);

/* This publisher's id, as carried in dmaq_lease.publisher_id of the messages
 * it commits. Unique among the channel's publishers since its creation. A
 * publisher that connects to a network channel gets its id from the host,
 * and a new one each time it reconnects. */
DMAQ_API uint32_t dmaq_pub_id(const dmaq_pub *pub);

/* Reserve `len` bytes in the ring (len <= the channel's max_message) and fill
 * *lease with a writable pointer to them; nothing is visible to subscribers
 * until dmaq_pub_commit. Waits up to `timeout_ns` for space when the ring is
 * full (block policy and queues): it spins for the channel's spin_ns, then
 * sleeps; on a broadcast channel a sleeping publisher is woken when an
 * eighth of the ring is free (or its message fits and the subscribers have
 * paused), not for every message read. Returns 0, or DMAQ_EMSGSIZE, DMAQ_EAGAIN,
 * DMAQ_ETIMEDOUT, DMAQ_EBUSY (a reservation is already outstanding),
 * DMAQ_ECORRUPT or DMAQ_EINVAL. */
DMAQ_API int dmaq_pub_reserve(dmaq_pub *pub, size_t len, dmaq_lease *lease, int64_t timeout_ns);

/* Publish the first `used_len` bytes (<= lease->len) of a reservation.
 * Fills lease->seq and lease->timestamp_ns; ends the lease. Returns 0, or
 * DMAQ_ELEASE if the lease is not this publisher's outstanding one, or
 * DMAQ_EMSGSIZE (the lease stays outstanding) if used_len > lease->len. */
DMAQ_API int dmaq_pub_commit(dmaq_pub *pub, dmaq_lease *lease, size_t used_len);

/* Give up a reservation; subscribers never see it. Returns 0 or DMAQ_ELEASE. */
DMAQ_API int dmaq_pub_abort(dmaq_pub *pub, dmaq_lease *lease);

/* Copy `len` bytes from `data` into one message and publish it (reserve +
 * memcpy + commit). `data` may be NULL when len is 0. Returns 0 or as
 * dmaq_pub_reserve. */
DMAQ_API int dmaq_pub_send(dmaq_pub *pub, const void *data, size_t len, int64_t timeout_ns);

/* Publish `count` messages in order, as `count` dmaq_pub_send calls would,
 * in one call: for bindings, where each call across the language boundary
 * costs more than a message, and for streams of small messages, since on
 * shm:// the messages that fit the ring go out under one claim (one atomic
 * operation, one clock read and one wake-up check for them all; they share
 * a timestamp, and subscribers may see the first before the last is
 * written, in order as always). On a shm:// broadcast channel, runs of
 * messages of up to 512 bytes are packed into shared records of up to
 * 4 KiB (8 bytes of ring each besides the payload, padded to 16, instead
 * of DMAQ_RECORD_HEADER and DMAQ_RECORD_ALIGN), each record visible to
 * subscribers whole; they still read, number and release each message on
 * its own, payloads 16-byte aligned. Message i is the lens[i] bytes that follow
 * messages 0..i-1 in `data` (the messages packed back to back). Waits at
 * most `timeout_ns` in all. Returns 0 when all are published; otherwise the
 * first failure's code (as dmaq_pub_send), the messages before it published.
 * Either way stores how many were published in *sent (sent may be NULL). */
DMAQ_API int dmaq_pub_send_many(dmaq_pub *pub, const void *data, const size_t *lens, size_t count, size_t *sent,
                                int64_t timeout_ns);

/* ---- Subscribers -------------------------------------------------------- */

/* Open a subscriber on the channel at `uri`, creating it from `opts` if it
 * does not exist (unless DMAQ_OPEN_NO_CREATE). Ownership, errors and the
 * touching of every page as for dmaq_pub_open. A broadcast subscriber
 * receives the messages published after this call returns (or, with
 * DMAQ_START_OLDEST, also those still intact in the ring). Any thread. */
DMAQ_API int dmaq_sub_open(const char *uri, const dmaq_options *opts, dmaq_sub **out);

/* Close a subscriber, releasing a lease it still holds. NULL does nothing.
 * Returns 0. */
DMAQ_API int dmaq_sub_close(dmaq_sub *sub);

/* Wait up to `timeout_ns` for the next message and fill *lease with a
 * read-only pointer to it in the ring (no copy). Returns 0; DMAQ_EAGAIN or
 * DMAQ_ETIMEDOUT if none came; DMAQ_ELOST (overwrite policy) if the ring
 * lapped this subscriber: lease->lost says how many messages it lost, no
 * lease is held, and the next call resumes at the newest message (a
 * broadcast subscriber of a network scheme also gets it after reconnecting,
 * counting what it missed while away);
 * DMAQ_EBUSY if a lease is already held; DMAQ_ECORRUPT. */
DMAQ_API int dmaq_sub_peek(dmaq_sub *sub, dmaq_lease *lease, int64_t timeout_ns);

/* End a read lease and give its space back. Returns 0; DMAQ_EOVERWRITTEN
 * (overwrite policy) if the bytes were overwritten while held, so whatever
 * was read from them must be discarded (the message counts as lost);
 * DMAQ_ELEASE if the lease is not this subscriber's outstanding one. */
DMAQ_API int dmaq_sub_release(dmaq_sub *sub, dmaq_lease *lease);

/* Copy the next message into buf[0..cap). On success stores its length in
 * *len and returns 0. If it does not fit, returns DMAQ_EMSGSIZE with the
 * needed length in *len and leaves the message unread. On DMAQ_ELOST stores
 * the number of lost messages in *len. Other codes as dmaq_sub_peek. */
DMAQ_API int dmaq_sub_recv(dmaq_sub *sub, void *buf, size_t cap, size_t *len, int64_t timeout_ns);

/* Lease up to `max_count` (at most DMAQ_BATCH_MAX) messages in place at
 * once, for bindings where each call costs more than a message: waits up to
 * `timeout_ns` for the first, then takes those already waiting, filling
 * leases[0..*count) in order. They all end together, in one
 * dmaq_sub_release_many; until then the subscriber holds them (peek and
 * recv return DMAQ_EBUSY). Returns 0 with *count >= 1; with *count = 0,
 * DMAQ_EAGAIN or DMAQ_ETIMEDOUT if none came, DMAQ_ELOST (overwrite policy;
 * leases[0].lost says how many), or as dmaq_sub_peek. A transport without
 * batches hands out one lease per call. Same thread rules as peek. */
DMAQ_API int dmaq_sub_peek_many(dmaq_sub *sub, dmaq_lease *leases, size_t max_count, size_t *count,
                                int64_t timeout_ns);

/* End the `count` leases of the last dmaq_sub_peek_many (the same array and
 * count). Returns 0; DMAQ_EOVERWRITTEN (overwrite policy) if some were
 * overwritten while held: each of those has DMAQ_LEASE_OVERWRITTEN in its
 * flags, and what was read from it must be discarded; DMAQ_ELEASE if these
 * are not the subscriber's outstanding batch. */
DMAQ_API int dmaq_sub_release_many(dmaq_sub *sub, dmaq_lease *leases, size_t count);

/* Copy up to `max_count` messages in one call (see dmaq_pub_send_many):
 * waits up to `timeout_ns` for the first, then takes those already waiting
 * while they fit, packing them back to back into buf[0..cap) with their
 * lengths in lens[0..*count). Returns 0 with *count >= 1. With *count = 0:
 * DMAQ_EAGAIN or DMAQ_ETIMEDOUT if none came; DMAQ_EMSGSIZE if the first
 * does not fit (lens[0] = its length; it stays unread). DMAQ_ELOST
 * (overwrite policy): the ring lapped this subscriber after the *count
 * messages delivered, and lens[*count] holds how many were lost (lens has
 * room: *count < max_count). Other codes as dmaq_sub_recv, after *count
 * messages. lens holds max_count entries. Same thread rules as
 * dmaq_sub_recv. */
DMAQ_API int dmaq_sub_recv_many(dmaq_sub *sub, void *buf, size_t cap, size_t *lens, size_t max_count, size_t *count,
                                int64_t timeout_ns);

/* ---- Channels ----------------------------------------------------------- */

/* Describe the channel at `uri`. Fills *stat (set stat->size first) and up to
 * `subs_cap` entries of `subs` (may be NULL when subs_cap is 0), one per
 * attached subscriber. Returns the number of attached subscribers (which may
 * exceed subs_cap) or a negative DMAQ_E* code. Any thread. */
DMAQ_API int dmaq_channel_stat(const char *uri, dmaq_stat *stat, dmaq_sub_stat *subs, size_t subs_cap);

/* Remove the channel's name. Handles already open keep working; the next
 * open creates a new channel. Returns 0, DMAQ_ENOENT, DMAQ_EACCES or another
 * DMAQ_E* code. Any thread. */
DMAQ_API int dmaq_channel_unlink(const char *uri);

/* Remove the stale shm channels in directory `shm_dir` (NULL = the
 * default: $DMAQ_SHM_DIR, else /dev/shm): channel files no handle is open on
 * in any process, and files whose creator died before finishing them.
 * Files that are not dmaq channels, and channels in use, are left alone;
 * every handle holds a shared lock on its channel's file, so a channel
 * cannot be removed under a process opening it. Programs that own a
 * directory of channels call it at start. Returns how many files it removed,
 * DMAQ_ENOENT (no such directory), DMAQ_EACCES or DMAQ_ESYS. Any thread. */
DMAQ_API int dmaq_channel_gc(const char *shm_dir);

/* ---- Relay ---------------------------------------------------------------- */

/* What dmaq_relay() has done so far; it updates the caller's struct as it
 * goes (plain stores, read them from another thread only as estimates). */
typedef struct dmaq_relay_stat {
    uint64_t relayed; /* messages republished into the destination */
    uint64_t lost;    /* messages the source reported lost (overwrite policy) */
} dmaq_relay_stat;

/* Subscribe to `src_uri` and republish every message into `dst_uri` (one
 * copy each, the payload unchanged), so one network stream per machine can
 * fan out to many local processes: dmaq_relay("tcp://feed:7000/quotes", NULL,
 * "shm://quotes", NULL, &stop, &st). Opens both with their options (NULL =
 * defaults; the destination is created like the source if it does not exist,
 * unless dst_opts says otherwise), then runs in the calling thread until
 * *stop becomes nonzero (looked at least every 100 ms) or a failure. Lost
 * messages of an overwriting source are counted in stat->lost; a publisher
 * that waits on a full destination makes the relay wait too. `stop` and
 * `stat` may be NULL (run until failure; no figures). Returns 0 when
 * stopped, or the first failure's code (opening either channel, or a
 * message larger than the destination's max_message: DMAQ_EMSGSIZE). */
DMAQ_API int dmaq_relay(const char *src_uri, const dmaq_options *src_opts, const char *dst_uri,
                        const dmaq_options *dst_opts, const volatile int *stop, dmaq_relay_stat *stat);

#ifdef __cplusplus
}
#endif
#endif /* DMAQ_DMAQ_H */
