/*
 * Internal to the tcp:// transport (libdmaq-tcp.so).
 *
 * The design: every byte an application touches lives in a shared-memory
 * ring, so leases, waits, batches and timeouts are the shm transport's own.
 * The process that binds hosts the channel as an shm ring in a private
 * directory; its handles are plain shm handles on that ring. For each peer
 * that connects, a host thread pumps between the ring and the socket. A
 * connecting handle owns a private ring of its own (publisher: the messages
 * on their way out; subscriber: the messages that came in, each behind a
 * small prefix carrying the sequence number, timestamp and publisher id the
 * host gave it) and one pump thread between that ring and its socket. A
 * connecting subscriber that waits for a message reads the socket itself
 * (the pump stands aside while it does), so a message on its way in wakes
 * one thread, the application's, as on a plain socket.
 */
#ifndef DMAQ_TCP_H
#define DMAQ_TCP_H

#include <dmaq/transport.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "frame.h"
#include "sock.h"

#define TCP_DEFAULT_TIMEOUT_NS 5000000000LL
#define TCP_SLICE_NS 20000000LL   /* longest a pump waits before looking at its flags */
/* A subscriber's pump leaves the reading to the application while it read
 * within this long, and up to the longer figure while it keeps reading: a
 * waiting application takes a message straight from the connection, and
 * one busy elsewhere (a relay blocked on its destination) does not hold the
 * stream up for longer. */
#define TCP_APP_READS_NS 2000000LL
#define TCP_APP_READS_MAX_NS 8000000LL
#define TCP_KEY_BYTES 32u
/* A subscriber acknowledges what it released once that is an eighth of its
 * credit window while busy, and a quarter before it sleeps: the host never
 * waits for credit the subscriber holds back (it keeps at least half the
 * window for the messages in flight, and a message is at most half). */
#define TCP_ACK_BUSY_DIV 8u
#define TCP_ACK_IDLE_DIV 4u
#define TCP_BATCH 256u            /* publisher pump: messages per write */

struct tcp_addr {
    char host[256];
    char port[8];
    char name[TCP_NAME_MAX + 1];
};

/* What a handle was opened with, beyond the channel's shape. */
struct tcp_conf {
    int64_t timeout_ns;          /* a peer silent this long is dead */
    int64_t spin_ns;             /* rdma://: how long a connection's wait busy-polls */
    bool has_key;
    uint8_t key[TCP_KEY_BYTES];  /* SHA-256 of the pre-shared key */
};

/* net.c */
int tcp_parse_address(const char *address, struct tcp_addr *a);
int tcp_conf_from(const dmaq_options *o, struct tcp_conf *c);
/* How often to send something when idle: a quarter of the shorter of our
 * peer timeout and the peer's (0 = not known). */
int64_t tcp_ping_every(const struct tcp_conf *c, uint32_t peer_timeout_ms);
/* Connect to a.host:a.port within c's peer timeout, tuned for c. Returns
 * the socket or a DMAQ_E* code. */
int tcp_dial(const struct tcp_addr *a, const struct tcp_conf *c);
/* Listen on a.host:a.port. Returns the socket or a DMAQ_E* code. */
int tcp_listen(const struct tcp_addr *a);
/* Set a connection up for c: no Nagle, c's peer timeout and spin. */
void tcp_tune(int fd, const struct tcp_conf *c);
/* Write all of buf, waiting at most timeout_ns (negative: for ever) in all
 * while the socket is full, and giving up early if *stop becomes true.
 * Returns 0 or -1 (errno set; ETIMEDOUT when the time is up). */
int tcp_write_all(int fd, const void *buf, size_t len, int64_t timeout_ns, const atomic_bool *stop);
/* The same for the `count` buffers of iov, in order (one gathering write
 * where the connection takes it all); iov is used up on the way. */
int tcp_writev_all(int fd, struct iovec *iov, int count, int64_t timeout_ns, const atomic_bool *stop);
/* Read what is there (waiting at most wait_ns for something) into
 * buf[*len..cap). Returns bytes read, 0 if none came in time, -1 on EOF or
 * error (errno 0 for EOF). */
long tcp_read_some(int fd, uint8_t *buf, size_t *len, size_t cap, int64_t wait_ns);
/* Read until one whole frame from `sender` is at the front of buf, within
 * timeout_ns. Returns its size, or a DMAQ_E* code with the reason set. */
long tcp_read_frame(int fd, uint8_t *buf, size_t *len, size_t cap, enum tcp_sender sender, uint64_t max_message,
                    struct tcp_frame *f, int64_t timeout_ns, const char *what);
/* Drop the first `n` bytes of buf[0..*len). */
void tcp_consume(uint8_t *buf, size_t *len, size_t n);
/* Hand each whole frame from `sender` at the front of buf[0..*len) to
 * fn(ctx, frame) in turn, and drop those it took. Returns 0 when what is
 * left is at most part of a frame; 1 when fn returned nonzero (the frame it
 * refused stays); -1 for a malformed frame, with *why. */
int tcp_drain_frames(uint8_t *buf, size_t *len, enum tcp_sender sender, uint64_t max_message,
                     int (*fn)(void *ctx, const struct tcp_frame *f), void *ctx, const char **why);
void tcp_random(void *buf, size_t len);
/* The MACs of the handshake (all zero without a key). */
void tcp_hello_mac(const struct tcp_conf *c, const uint8_t host_nonce[TCP_NONCE], const struct tcp_hello *h,
                   uint8_t out[TCP_MAC]);
void tcp_welcome_mac(const struct tcp_conf *c, const uint8_t host_nonce[TCP_NONCE],
                     const uint8_t peer_nonce[TCP_NONCE], uint8_t out[TCP_MAC]);
bool tcp_mac_equal(const uint8_t a[TCP_MAC], const uint8_t b[TCP_MAC]);
/* "shm://DIR/NAME" for a new private ring of this process. */
int tcp_ring_uri(char *out, size_t cap, const char *what);
/* Let connection `fd` send big messages straight from the ring `ring`
 * reads (over rdma://, registered with the NIC; over tcp://, nothing to
 * do). Best effort: where the ring cannot be registered, they are copied. */
void tcp_lend_ring(int fd, const dmaq_sub *ring);
void tcp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Bytes in front of each message in a connecting subscriber's ring. */
#define TCP_SUB_PREFIX 32u

/* Ring bytes a message of `len` payload bytes takes in a connecting
 * subscriber's ring: the unit of its credit window. */
static inline uint64_t tcp_credit(uint64_t len)
{
    return (TCP_SUB_PREFIX + len + DMAQ_RECORD_HEADER + DMAQ_RECORD_ALIGN - 1) & ~(uint64_t)(DMAQ_RECORD_ALIGN - 1);
}

/* host.c: a channel this process hosts. */
struct tcp_chan;
/* Host (or join the hosting of) the channel at `a`, creating its ring from
 * `o`, and open the caller's handle on the ring with `ring_opts`: a
 * publisher into *pub or, when pub is NULL, a subscriber into *sub. The
 * handle is opened under the hosts' lock because it is what keeps another
 * process's dmaq_channel_gc from taking the ring for garbage; so close it
 * only after tcp_host_detach. */
int tcp_host_attach(const struct tcp_addr *a, const dmaq_options *o, const struct tcp_conf *c,
                    const dmaq_options *ring_opts, dmaq_pub **pub, dmaq_sub **sub, struct tcp_chan **out);
void tcp_host_detach(struct tcp_chan *ch);
/* After a message went into ch's ring (any thread): an idle subscriber
 * forwarder's work is done here, in the caller's thread, or the forwarder
 * woken for it. Costs a fence when no forwarder is idle. */
void tcp_host_published(struct tcp_chan *ch);

/* client.c: the handshake of a connecting handle. */
struct tcp_shape {
    uint32_t kind, policy, publisher_id, timeout_ms, features;
    uint64_t capacity, max_message, received;
};
/* Connect and introduce ourselves as `hello` (role, wanted shape, token).
 * On success returns the socket and fills *shape (and, for a stat request,
 * *stat and subs); buf[0..*len) holds what the host sent after its WELCOME. */
struct tcp_codec;
int tcp_handshake(const struct tcp_addr *a, const struct tcp_conf *c, struct tcp_hello *hello,
                  struct tcp_codec *codec, struct tcp_shape *shape, dmaq_stat *stat, dmaq_sub_stat *subs,
                  size_t subs_cap, int *n_subs, uint8_t *buf, size_t *len, size_t cap);

/* The handle states, given to the core as pub_state_size/sub_state_size. */
struct tcp_client;
struct tcp_pub_state {
    dmaq_pub *inner;           /* on the host's ring, or on our outgoing ring */
    struct tcp_chan *hosted;   /* bind: the channel we host */
    struct tcp_client *client; /* connect: the pump */
};

struct tcp_sub_state {
    dmaq_sub *inner;
    struct tcp_chan *hosted;
    struct tcp_client *client;
    bool queue;
    uint32_t pending_acks;   /* connect: releases not yet acknowledged */
    uint64_t pending_credit; /* and the credit they return (tcp_credit units) */
    uint64_t window;         /* the host's credit window: the channel's capacity */
    uint32_t acks_epoch;   /* the connection they belong to */
    bool held;             /* connect: a peeked message recv could not take */
    dmaq_lease held_lease;
    bool leased;         /* connect: the application holds a lease (in place or from the ring) */
    uint64_t taken;      /* connect: messages and markers taken from the incoming ring */
    uint64_t lent_token; /* connect: the lease held in the receive buffer (0: none) */
    uint64_t tokens;     /* connect: leases handed out in place so far */
};

int tcp_client_pub_open(struct tcp_pub_state *s, const struct tcp_addr *a, const dmaq_options *o,
                        const struct tcp_conf *c);
void tcp_client_pub_close(struct tcp_pub_state *s);
/* The id the host gave this publisher (a new one after each reconnect). */
uint32_t tcp_client_pub_id(const struct tcp_pub_state *s);
int tcp_client_sub_open(struct tcp_sub_state *s, const struct tcp_addr *a, const dmaq_options *o,
                        const struct tcp_conf *c);
void tcp_client_sub_close(struct tcp_sub_state *s);
int tcp_client_peek(struct tcp_sub_state *s, dmaq_lease *lease, int64_t timeout_ns);
int tcp_client_release(struct tcp_sub_state *s, dmaq_lease *lease);
int tcp_client_stat(const struct tcp_addr *a, dmaq_stat *stat, dmaq_sub_stat *subs, size_t subs_cap,
                    const struct tcp_conf *c);

#endif
