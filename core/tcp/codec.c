/* MSG payload encoding for tcp:// (see codec.h). */
#include "codec.h"

#include <sodium.h>
#include <string.h>
#include <zstd.h>

#include "tcp.h"

static void derive(const struct tcp_conf *c, const char *label, const uint8_t host_nonce[TCP_NONCE],
                   const uint8_t peer_nonce[TCP_NONCE], uint8_t out[32])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, c->key, sizeof c->key);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label));
    crypto_auth_hmacsha256_update(&st, host_nonce, TCP_NONCE);
    crypto_auth_hmacsha256_update(&st, peer_nonce, TCP_NONCE);
    crypto_auth_hmacsha256_final(&st, out);
}

int tcp_codec_init(struct tcp_codec *k, const struct tcp_conf *c, uint32_t features, bool host_side,
                   const uint8_t host_nonce[TCP_NONCE], const uint8_t peer_nonce[TCP_NONCE])
{
    memset(k, 0, sizeof *k);
    k->features = features;
    if (features & TCP_FEATURE_ENCRYPT) {
        uint8_t to_host[32], to_peer[32];
        derive(c, "dmaq-to-host", host_nonce, peer_nonce, to_host);
        derive(c, "dmaq-to-peer", host_nonce, peer_nonce, to_peer);
        memcpy(k->tx_key, host_side ? to_peer : to_host, 32);
        memcpy(k->rx_key, host_side ? to_host : to_peer, 32);
        sodium_memzero(to_host, sizeof to_host);
        sodium_memzero(to_peer, sizeof to_peer);
    }
    if (features & TCP_FEATURE_COMPRESS) {
        k->cctx = ZSTD_createCCtx();
        k->dctx = ZSTD_createDCtx();
        if (!k->cctx || !k->dctx) {
            tcp_codec_free(k);
            return -1;
        }
        ZSTD_CCtx_setParameter(k->cctx, ZSTD_c_compressionLevel, 1); /* fast: it runs per message */
    }
    return 0;
}

void tcp_codec_free(struct tcp_codec *k)
{
    ZSTD_freeCCtx(k->cctx);
    ZSTD_freeDCtx(k->dctx);
    sodium_memzero(k, sizeof *k);
}

size_t tcp_codec_bound(size_t len) { return ZSTD_compressBound(len) + TCP_TAG; }

static void nonce_of(uint64_t n, uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES])
{
    memset(nonce, 0, crypto_aead_chacha20poly1305_IETF_NPUBBYTES);
    tcp_put64(nonce, n);
}

size_t tcp_codec_seal(struct tcp_codec *k, const uint8_t *ad, size_t ad_len, const void *in, size_t len,
                      uint8_t *out, uint8_t *frame_flags)
{
    *frame_flags = 0;
    size_t n = len;
    const void *plain = in;
    if ((k->features & TCP_FEATURE_COMPRESS) && len >= TCP_COMPRESS_MIN) {
        size_t z = ZSTD_compress2(k->cctx, out, ZSTD_compressBound(len), in, len);
        if (!ZSTD_isError(z) && z < len) {
            *frame_flags = TCP_FRAME_COMPRESSED;
            n = z;
            plain = out;
        }
    }
    if (!(k->features & TCP_FEATURE_ENCRYPT)) {
        if (plain != out)
            memcpy(out, in, len);
        return n;
    }
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
    nonce_of(k->tx_n++, nonce);
    uint8_t flags_ad = *frame_flags;
    /* the flags byte is authenticated with the meta data: a forger cannot
     * make a plain payload be read as compressed */
    uint8_t all_ad[TCP_MSG_META + 1];
    if (ad_len)
        memcpy(all_ad, ad, ad_len);
    all_ad[ad_len] = flags_ad;
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(out, out + n, NULL, plain, n, all_ad, ad_len + 1, NULL, nonce,
                                                       k->tx_key);
    return n + TCP_TAG;
}

long tcp_codec_open(struct tcp_codec *k, const uint8_t *ad, size_t ad_len, uint8_t *in, size_t *in_len,
                    uint8_t frame_flags, uint64_t max_message, const char **why)
{
    if ((frame_flags & TCP_FRAME_COMPRESSED) && !(k->features & TCP_FEATURE_COMPRESS)) {
        *why = "a compressed message on a channel without compression";
        return -1;
    }
    if (k->features & TCP_FEATURE_ENCRYPT) {
        if (*in_len < TCP_TAG) {
            *why = "an encrypted message shorter than its tag";
            return -1;
        }
        size_t n = *in_len - TCP_TAG;
        uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
        nonce_of(k->rx_n++, nonce);
        uint8_t all_ad[TCP_MSG_META + 1];
        if (ad_len)
        memcpy(all_ad, ad, ad_len);
        all_ad[ad_len] = frame_flags;
        if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(in, NULL, in, n, in + n, all_ad, ad_len + 1, nonce,
                                                               k->rx_key) != 0) {
            *why = "a message failed authentication (forged, corrupt or out of order)";
            return -1;
        }
        *in_len = n;
    }
    if (!(frame_flags & TCP_FRAME_COMPRESSED)) {
        if (*in_len > max_message) {
            *why = "message is longer than the channel's maximum";
            return -1;
        }
        return (long)*in_len;
    }
    unsigned long long size = ZSTD_getFrameContentSize(in, *in_len);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > max_message) {
        *why = "a compressed message of unknown size or longer than the channel's maximum";
        return -1;
    }
    return (long)size;
}

int tcp_codec_copy(struct tcp_codec *k, const uint8_t *in, size_t in_len, uint8_t frame_flags, void *out,
                   size_t msg_len, const char **why)
{
    if (!(frame_flags & TCP_FRAME_COMPRESSED)) {
        if (msg_len)
            memcpy(out, in, msg_len);
        return 0;
    }
    size_t n = ZSTD_decompressDCtx(k->dctx, out, msg_len, in, in_len);
    if (ZSTD_isError(n) || n != msg_len) {
        *why = "a compressed message did not decompress to its stated size";
        return -1;
    }
    return 0;
}
