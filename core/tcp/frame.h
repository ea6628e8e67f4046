/*
 * The tcp:// wire protocol: frames, and the one parser every byte from a peer
 * goes through (fuzzed by tests/fuzz/fuzz_frame.c).
 *
 * A frame is an 8-byte header, little-endian: u32 body length, u8 type,
 * three zero bytes; then the body. A connection starts with the host's
 * CHALLENGE, the peer's HELLO and the host's WELCOME; afterwards
 *   publisher -> host: MSG (payload only), PING
 *   host -> publisher: ACK (messages published into the channel), PING
 *   host -> subscriber: MSG (meta + payload), LOST, PING
 *   subscriber -> host: ACK (messages released, returning their credit), PING
 * and for a stat request the WELCOME carries the channel's figures.
 */
#ifndef DMAQ_TCP_FRAME_H
#define DMAQ_TCP_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TCP_MAGIC 0x3150435451414d44ull /* "DMAQTCP1" */
#define TCP_VERSION 1u
#define TCP_HEADER 8u
#define TCP_NONCE 32u
#define TCP_MAC 32u
#define TCP_NAME_MAX 200u
#define TCP_REASON_MAX 400u
#define TCP_STAT_SUBS_MAX 64u

enum tcp_type {
    TCP_CHALLENGE = 1,
    TCP_HELLO = 2,
    TCP_WELCOME = 3,
    TCP_MSG = 4,
    TCP_LOST = 5,
    TCP_ACK = 6,
    TCP_PING = 7,
};

enum tcp_role { TCP_ROLE_PUB = 1, TCP_ROLE_SUB = 2, TCP_ROLE_STAT = 3 };

/* Body of a MSG from the host: what the subscriber's lease reports. */
#define TCP_MSG_META 24u /* u64 seq, u64 timestamp_ns, u32 publisher_id, u32 flags */

/* Fixed-size parts of the handshake bodies. */
#define TCP_CHALLENGE_BODY (8 + 4 + TCP_NONCE)
#define TCP_HELLO_FIXED (4 * 7 + 8 * 4 + TCP_NONCE + TCP_MAC + 2) /* then the name */
#define TCP_WELCOME_FIXED (4 * 6 + 8 * 3 + TCP_MAC + 2)           /* then the reason */

/* Channel features (HELLO: wanted; WELCOME: the channel's). */
#define TCP_FEATURE_ENCRYPT 0x1u  /* MSG payloads are ChaCha20-Poly1305 sealed */
#define TCP_FEATURE_COMPRESS 0x2u /* MSG payloads may be zstd frames */
/* Header byte 5 of a MSG: how its payload was encoded. */
#define TCP_FRAME_COMPRESSED 0x1u
#define TCP_TAG 16u /* bytes an encrypted payload grows by */
#define TCP_STAT_FIXED (4 * 4 + 8 * 4 + 4 * 3 + 4)                      /* after the reason */
#define TCP_SUB_STAT_SIZE (8 * 4 + 4 + 4)

struct tcp_hello {
    uint32_t version, role, kind, policy, start;
    uint32_t timeout_ms; /* the peer gives up on silence this long: ping well within it */
    uint32_t features;   /* TCP_FEATURE_* the peer insists on */
    uint64_t capacity, max_message;
    uint64_t token; /* publisher: identifies it across reconnects */
    uint64_t acked; /* publisher: messages the host has acknowledged so far */
    uint8_t nonce[TCP_NONCE];
    uint8_t mac[TCP_MAC];
    uint16_t name_len;
    const char *name; /* not NUL-terminated; points into the frame */
};

struct tcp_welcome {
    int32_t status; /* 0 or a DMAQ_E* code; then `reason` says why */
    uint32_t publisher_id, kind, policy;
    uint32_t timeout_ms; /* the host gives up on silence this long */
    uint32_t features;   /* TCP_FEATURE_* of the channel */
    uint64_t capacity, max_message;
    uint64_t received; /* publisher: messages of its token the host already has */
    uint8_t mac[TCP_MAC];
    uint16_t reason_len;
    const char *reason;
    bool has_stat; /* a stat reply: the fields below follow the reason */
    uint32_t stat_kind, stat_policy, stat_mode, stat_flags;
    uint64_t stat_capacity, stat_max_message, stat_bytes_used, stat_published;
    uint32_t stat_publishers, stat_subscribers;
    int32_t stat_creator_pid;
    uint32_t n_subs;      /* entries in subs (at most TCP_STAT_SUBS_MAX) */
    const uint8_t *subs;  /* n_subs * TCP_SUB_STAT_SIZE bytes; tcp_sub_stat_at */
};

/* One parsed frame. Pointers point into the buffer given to tcp_frame_next. */
struct tcp_frame {
    uint8_t type;
    uint8_t flags; /* MSG: TCP_FRAME_* */
    uint32_t body_len;
    const uint8_t *body;
    union {
        struct {
            uint64_t magic;
            uint32_t version;
            const uint8_t *nonce;
        } challenge;
        struct tcp_hello hello;
        struct tcp_welcome welcome;
        struct {
            uint64_t seq, timestamp_ns;
            uint32_t publisher_id, flags;
            const uint8_t *data;
            uint32_t len;
        } msg;
        uint64_t count; /* LOST, ACK */
    } u;
};

/* Who sent the bytes being parsed, which decides what may arrive. */
enum tcp_sender { TCP_FROM_HOST_TO_PUB, TCP_FROM_HOST_TO_SUB, TCP_FROM_HOST_HANDSHAKE, TCP_FROM_PUB, TCP_FROM_SUB,
                  TCP_FROM_PEER_HANDSHAKE };

/* Parse the frame at the start of buf[0..avail). Returns its total size
 * (header + body) and fills *f; 0 if more bytes are needed; -1 if the bytes
 * can never be a valid frame from `sender` on a channel whose messages are at
 * most `max_message` bytes, with *why saying what is wrong. Never reads
 * beyond avail. */
long tcp_frame_next(const uint8_t *buf, size_t avail, enum tcp_sender sender, uint64_t max_message,
                    struct tcp_frame *f, const char **why);

/* Writers: each fills `out` (which must hold the frame) and returns its size. */
size_t tcp_put_header(uint8_t *out, uint8_t type, uint32_t body_len);
size_t tcp_put_challenge(uint8_t *out, const uint8_t nonce[TCP_NONCE]);
size_t tcp_put_hello(uint8_t *out, const struct tcp_hello *h);
size_t tcp_put_count(uint8_t *out, uint8_t type, uint64_t count);
/* A frame of at most TCP_SMALL_FRAME bytes: a PING (no body; count ignored)
 * or a frame carrying a count (ACK, LOST). Returns its size. */
#define TCP_SMALL_FRAME (TCP_HEADER + 8)
size_t tcp_put_small(uint8_t *out, uint8_t type, uint64_t count);
size_t tcp_put_msg_meta(uint8_t *out, uint32_t len, uint64_t seq, uint64_t ts, uint32_t publisher_id,
                        uint32_t flags);
/* WELCOME without figures (reason may be NULL), or with `stat` (the caller
 * lays out the figures with tcp_put_stat). */
size_t tcp_put_welcome(uint8_t *out, const struct tcp_welcome *w, const uint8_t *stat_bytes, size_t stat_len);

/* The largest frame a channel with these messages can carry. */
static inline uint64_t tcp_frame_max(uint64_t max_message)
{
    uint64_t handshake = TCP_HEADER + TCP_WELCOME_FIXED + TCP_REASON_MAX + TCP_STAT_FIXED +
                         TCP_STAT_SUBS_MAX * TCP_SUB_STAT_SIZE;
    uint64_t msg = TCP_HEADER + TCP_MSG_META + max_message + TCP_TAG;
    return msg > handshake ? msg : handshake;
}

/* Little-endian loads and stores. */
static inline void tcp_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void tcp_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t tcp_get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}
static inline uint64_t tcp_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

#endif
