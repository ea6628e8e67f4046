/*
 * How MSG payloads travel on a tcp:// connection: as they are, compressed
 * with zstd (when the channel allows it and it makes them smaller), sealed
 * with ChaCha20-Poly1305 (when the channel is encrypted), or both, in that
 * order. Keys are per connection and direction, derived from the channel's
 * pre-shared key and both handshake nonces; the nonce of each message is
 * its number on the connection, which both sides count.
 */
#ifndef DMAQ_TCP_CODEC_H
#define DMAQ_TCP_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

struct tcp_conf;

#define TCP_COMPRESS_MIN 512u /* smaller payloads are never worth compressing */

struct tcp_codec {
    uint32_t features; /* TCP_FEATURE_* in force on this connection */
    uint8_t tx_key[32], rx_key[32];
    uint64_t tx_n, rx_n; /* messages sealed and opened so far */
    void *cctx, *dctx;   /* zstd's, made once per connection */
};

/* Set up for a connection with `features`; `host_side` says which
 * direction is which. Returns 0, or -1 if zstd could not allocate. */
int tcp_codec_init(struct tcp_codec *k, const struct tcp_conf *c, uint32_t features, bool host_side,
                   const uint8_t host_nonce[TCP_NONCE], const uint8_t peer_nonce[TCP_NONCE]);
void tcp_codec_free(struct tcp_codec *k);
static inline bool tcp_codec_active(const struct tcp_codec *k) { return k->features != 0; }

/* Room an encoded payload of `len` bytes may need. */
size_t tcp_codec_bound(size_t len);

/* Encode in[0..len) into out; `ad` (the MSG's meta, or NULL) is
 * authenticated too. Returns the encoded length and sets *frame_flags. */
size_t tcp_codec_seal(struct tcp_codec *k, const uint8_t *ad, size_t ad_len, const void *in, size_t len,
                      uint8_t *out, uint8_t *frame_flags);

/* First half of decoding the payload in[0..*in_len) of a MSG with
 * `frame_flags`: decrypts it in place (*in_len becomes the plain length)
 * and returns the length of the message it holds (at most max_message), or
 * -1 with *why: forged, corrupt or too long. */
long tcp_codec_open(struct tcp_codec *k, const uint8_t *ad, size_t ad_len, uint8_t *in, size_t *in_len,
                    uint8_t frame_flags, uint64_t max_message, const char **why);
/* Second half: write that message (msg_len bytes) into out. Returns 0 or -1
 * with *why. */
int tcp_codec_copy(struct tcp_codec *k, const uint8_t *in, size_t in_len, uint8_t frame_flags, void *out,
                   size_t msg_len, const char **why);

#endif
