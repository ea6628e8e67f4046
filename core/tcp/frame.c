/* The tcp:// frame parser and writers. The parser trusts nothing: every
 * length is checked against what the sender may send and the channel's
 * maximum message size before anything is read behind it. */
#include "frame.h"

#include <string.h>

static long bad(const char **why, const char *what)
{
    *why = what;
    return -1;
}

static bool may_send(enum tcp_sender s, uint8_t type)
{
    switch (type) {
    case TCP_CHALLENGE:
    case TCP_WELCOME:
        return s == TCP_FROM_HOST_HANDSHAKE;
    case TCP_HELLO:
        return s == TCP_FROM_PEER_HANDSHAKE;
    case TCP_MSG:
        return s == TCP_FROM_PUB || s == TCP_FROM_HOST_TO_SUB;
    case TCP_LOST:
        return s == TCP_FROM_HOST_TO_SUB;
    case TCP_ACK:
        return s == TCP_FROM_HOST_TO_PUB || s == TCP_FROM_SUB;
    case TCP_PING:
        return s != TCP_FROM_HOST_HANDSHAKE && s != TCP_FROM_PEER_HANDSHAKE;
    default:
        return false;
    }
}

static long parse_hello(struct tcp_frame *f, const char **why)
{
    const uint8_t *b = f->body;
    if (f->body_len < TCP_HELLO_FIXED)
        return bad(why, "HELLO is shorter than its fixed part");
    struct tcp_hello *h = &f->u.hello;
    h->version = tcp_get32(b);
    h->role = tcp_get32(b + 4);
    h->kind = tcp_get32(b + 8);
    h->policy = tcp_get32(b + 12);
    h->start = tcp_get32(b + 16);
    h->timeout_ms = tcp_get32(b + 20);
    h->features = tcp_get32(b + 24);
    h->capacity = tcp_get64(b + 28);
    h->max_message = tcp_get64(b + 36);
    h->token = tcp_get64(b + 44);
    h->acked = tcp_get64(b + 52);
    memcpy(h->nonce, b + 60, TCP_NONCE);
    memcpy(h->mac, b + 60 + TCP_NONCE, TCP_MAC);
    h->name_len = (uint16_t)(b[60 + TCP_NONCE + TCP_MAC] | b[61 + TCP_NONCE + TCP_MAC] << 8);
    h->name = (const char *)b + TCP_HELLO_FIXED;
    if (h->role < TCP_ROLE_PUB || h->role > TCP_ROLE_STAT)
        return bad(why, "HELLO names an unknown role");
    if (h->name_len == 0 || h->name_len > TCP_NAME_MAX)
        return bad(why, "HELLO's channel name is empty or too long");
    if (f->body_len != TCP_HELLO_FIXED + (uint32_t)h->name_len)
        return bad(why, "HELLO's length does not match its name");
    return 0;
}

static long parse_welcome(struct tcp_frame *f, const char **why)
{
    const uint8_t *b = f->body;
    if (f->body_len < TCP_WELCOME_FIXED)
        return bad(why, "WELCOME is shorter than its fixed part");
    struct tcp_welcome *w = &f->u.welcome;
    memset(w, 0, sizeof *w);
    w->status = (int32_t)tcp_get32(b);
    w->publisher_id = tcp_get32(b + 4);
    w->kind = tcp_get32(b + 8);
    w->policy = tcp_get32(b + 12);
    w->timeout_ms = tcp_get32(b + 16);
    w->features = tcp_get32(b + 20);
    w->capacity = tcp_get64(b + 24);
    w->max_message = tcp_get64(b + 32);
    w->received = tcp_get64(b + 40);
    memcpy(w->mac, b + 48, TCP_MAC);
    w->reason_len = (uint16_t)(b[48 + TCP_MAC] | b[49 + TCP_MAC] << 8);
    if (w->reason_len > TCP_REASON_MAX || TCP_WELCOME_FIXED + (uint32_t)w->reason_len > f->body_len)
        return bad(why, "WELCOME's reason is too long");
    w->reason = (const char *)b + TCP_WELCOME_FIXED;
    uint32_t rest = f->body_len - TCP_WELCOME_FIXED - w->reason_len;
    if (rest == 0)
        return 0;
    if (rest < TCP_STAT_FIXED)
        return bad(why, "WELCOME has a truncated stat part");
    const uint8_t *s = b + TCP_WELCOME_FIXED + w->reason_len;
    w->has_stat = true;
    w->stat_kind = tcp_get32(s);
    w->stat_policy = tcp_get32(s + 4);
    w->stat_mode = tcp_get32(s + 8);
    w->stat_flags = tcp_get32(s + 12);
    w->stat_capacity = tcp_get64(s + 16);
    w->stat_max_message = tcp_get64(s + 24);
    w->stat_bytes_used = tcp_get64(s + 32);
    w->stat_published = tcp_get64(s + 40);
    w->stat_publishers = tcp_get32(s + 48);
    w->stat_subscribers = tcp_get32(s + 52);
    w->stat_creator_pid = (int32_t)tcp_get32(s + 56);
    w->n_subs = tcp_get32(s + 60);
    if (w->n_subs > TCP_STAT_SUBS_MAX || rest != TCP_STAT_FIXED + w->n_subs * TCP_SUB_STAT_SIZE)
        return bad(why, "WELCOME's subscriber figures do not match its length");
    w->subs = s + TCP_STAT_FIXED;
    return 0;
}

long tcp_frame_next(const uint8_t *buf, size_t avail, enum tcp_sender sender, uint64_t max_message,
                    struct tcp_frame *f, const char **why)
{
    if (avail < TCP_HEADER)
        return 0;
    f->body_len = tcp_get32(buf);
    f->type = buf[4];
    f->flags = buf[5];
    if (buf[6] | buf[7] || (f->flags & ~(f->type == TCP_MSG ? TCP_FRAME_COMPRESSED : 0u)))
        return bad(why, "reserved header bytes or flags are not zero");
    if (!may_send(sender, f->type))
        return bad(why, "frame type is unknown or not allowed from this peer here");
    uint64_t limit;
    switch (f->type) {
    case TCP_MSG:
        /* an encrypted payload carries its tag; a compressed one is sent
         * only when it came out smaller */
        limit = max_message + TCP_TAG + (sender == TCP_FROM_HOST_TO_SUB ? TCP_MSG_META : 0);
        break;
    case TCP_HELLO:
        limit = TCP_HELLO_FIXED + TCP_NAME_MAX;
        break;
    case TCP_WELCOME:
        limit = TCP_WELCOME_FIXED + TCP_REASON_MAX + TCP_STAT_FIXED + TCP_STAT_SUBS_MAX * TCP_SUB_STAT_SIZE;
        break;
    case TCP_CHALLENGE:
        limit = TCP_CHALLENGE_BODY;
        break;
    case TCP_LOST:
    case TCP_ACK:
        limit = 8;
        break;
    default:
        limit = 0;
    }
    if (f->body_len > limit)
        return bad(why, f->type == TCP_MSG ? "message is longer than the channel's maximum" : "frame is too long");
    if (avail - TCP_HEADER < f->body_len)
        return 0;
    f->body = buf + TCP_HEADER;
    const uint8_t *b = f->body;
    switch (f->type) {
    case TCP_CHALLENGE:
        if (f->body_len != TCP_CHALLENGE_BODY)
            return bad(why, "CHALLENGE has the wrong length");
        f->u.challenge.magic = tcp_get64(b);
        f->u.challenge.version = tcp_get32(b + 8);
        f->u.challenge.nonce = b + 12;
        if (f->u.challenge.magic != TCP_MAGIC)
            return bad(why, "the peer is not a dmaq host (bad magic)");
        break;
    case TCP_HELLO:
        if (parse_hello(f, why) < 0)
            return -1;
        break;
    case TCP_WELCOME:
        if (parse_welcome(f, why) < 0)
            return -1;
        break;
    case TCP_MSG:
        if (sender == TCP_FROM_HOST_TO_SUB) {
            if (f->body_len < TCP_MSG_META)
                return bad(why, "MSG is shorter than its meta data");
            f->u.msg.seq = tcp_get64(b);
            f->u.msg.timestamp_ns = tcp_get64(b + 8);
            f->u.msg.publisher_id = tcp_get32(b + 16);
            f->u.msg.flags = tcp_get32(b + 20);
            f->u.msg.data = b + TCP_MSG_META;
            f->u.msg.len = f->body_len - TCP_MSG_META;
        } else {
            f->u.msg.data = b;
            f->u.msg.len = f->body_len;
        }
        break;
    case TCP_LOST:
    case TCP_ACK:
        if (f->body_len != 8)
            return bad(why, "LOST or ACK has the wrong length");
        f->u.count = tcp_get64(b);
        if (f->u.count == 0)
            return bad(why, "LOST or ACK counts nothing");
        break;
    case TCP_PING:
        if (f->body_len != 0)
            return bad(why, "PING has a body");
        break;
    }
    return (long)(TCP_HEADER + f->body_len);
}

size_t tcp_put_header(uint8_t *out, uint8_t type, uint32_t body_len)
{
    tcp_put32(out, body_len);
    out[4] = type;
    out[5] = out[6] = out[7] = 0;
    return TCP_HEADER;
}

size_t tcp_put_challenge(uint8_t *out, const uint8_t nonce[TCP_NONCE])
{
    tcp_put_header(out, TCP_CHALLENGE, TCP_CHALLENGE_BODY);
    tcp_put64(out + 8, TCP_MAGIC);
    tcp_put32(out + 16, TCP_VERSION);
    memcpy(out + 20, nonce, TCP_NONCE);
    return TCP_HEADER + TCP_CHALLENGE_BODY;
}

size_t tcp_put_hello(uint8_t *out, const struct tcp_hello *h)
{
    uint8_t *b = out + TCP_HEADER;
    tcp_put_header(out, TCP_HELLO, TCP_HELLO_FIXED + h->name_len);
    tcp_put32(b, h->version);
    tcp_put32(b + 4, h->role);
    tcp_put32(b + 8, h->kind);
    tcp_put32(b + 12, h->policy);
    tcp_put32(b + 16, h->start);
    tcp_put32(b + 20, h->timeout_ms);
    tcp_put32(b + 24, h->features);
    tcp_put64(b + 28, h->capacity);
    tcp_put64(b + 36, h->max_message);
    tcp_put64(b + 44, h->token);
    tcp_put64(b + 52, h->acked);
    memcpy(b + 60, h->nonce, TCP_NONCE);
    memcpy(b + 60 + TCP_NONCE, h->mac, TCP_MAC);
    b[60 + TCP_NONCE + TCP_MAC] = (uint8_t)h->name_len;
    b[61 + TCP_NONCE + TCP_MAC] = (uint8_t)(h->name_len >> 8);
    memcpy(b + TCP_HELLO_FIXED, h->name, h->name_len);
    return TCP_HEADER + TCP_HELLO_FIXED + h->name_len;
}

size_t tcp_put_count(uint8_t *out, uint8_t type, uint64_t count)
{
    tcp_put_header(out, type, 8);
    tcp_put64(out + TCP_HEADER, count);
    return TCP_HEADER + 8;
}

size_t tcp_put_small(uint8_t *out, uint8_t type, uint64_t count)
{
    return type == TCP_PING ? tcp_put_header(out, TCP_PING, 0) : tcp_put_count(out, type, count);
}

size_t tcp_put_msg_meta(uint8_t *out, uint32_t len, uint64_t seq, uint64_t ts, uint32_t publisher_id,
                        uint32_t flags)
{
    tcp_put_header(out, TCP_MSG, TCP_MSG_META + len);
    tcp_put64(out + 8, seq);
    tcp_put64(out + 16, ts);
    tcp_put32(out + 24, publisher_id);
    tcp_put32(out + 28, flags);
    return TCP_HEADER + TCP_MSG_META;
}

size_t tcp_put_welcome(uint8_t *out, const struct tcp_welcome *w, const uint8_t *stat_bytes, size_t stat_len)
{
    uint16_t reason_len = w->reason ? (uint16_t)strnlen(w->reason, TCP_REASON_MAX) : 0;
    uint8_t *b = out + TCP_HEADER;
    tcp_put_header(out, TCP_WELCOME, (uint32_t)(TCP_WELCOME_FIXED + reason_len + stat_len));
    tcp_put32(b, (uint32_t)w->status);
    tcp_put32(b + 4, w->publisher_id);
    tcp_put32(b + 8, w->kind);
    tcp_put32(b + 12, w->policy);
    tcp_put32(b + 16, w->timeout_ms);
    tcp_put32(b + 20, w->features);
    tcp_put64(b + 24, w->capacity);
    tcp_put64(b + 32, w->max_message);
    tcp_put64(b + 40, w->received);
    memcpy(b + 48, w->mac, TCP_MAC);
    b[48 + TCP_MAC] = (uint8_t)reason_len;
    b[49 + TCP_MAC] = (uint8_t)(reason_len >> 8);
    memcpy(b + TCP_WELCOME_FIXED, w->reason ? w->reason : "", reason_len);
    if (stat_len)
        memcpy(b + TCP_WELCOME_FIXED + reason_len, stat_bytes, stat_len);
    return TCP_HEADER + TCP_WELCOME_FIXED + reason_len + stat_len;
}
