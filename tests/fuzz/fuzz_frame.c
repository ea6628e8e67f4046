/*
 * libFuzzer target for the tcp:// frame parser (core/tcp/frame.c), the only
 * code that reads bytes a network peer chose. Input: one byte choosing who
 * sent the bytes, four giving the channel's max_message, then a stream of
 * frames. Every frame the parser accepts must lie inside the input and obey
 * the limits it was given (a MSG may exceed max_message by the tag an
 * encrypted payload carries; codec.c bounds what it decodes to), and a HELLO or a WELCOME must encode back to the
 * very bytes it was parsed from.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/tcp/frame.h"

#define CHECK(x)          \
    do {                  \
        if (!(x))         \
            abort();      \
    } while (0)

static void check_round_trip(const uint8_t *frame, long size, const struct tcp_frame *f)
{
    static uint8_t again[1 << 16];
    size_t n = 0;
    if (f->type == TCP_HELLO) {
        n = tcp_put_hello(again, &f->u.hello);
    } else if (f->type == TCP_WELCOME) {
        const struct tcp_welcome *w = &f->u.welcome;
        char reason[TCP_REASON_MAX + 1];
        memcpy(reason, w->reason, w->reason_len);
        reason[w->reason_len] = 0;
        if (strlen(reason) != w->reason_len)
            return; /* a NUL inside the reason: the writer stops there, by design */
        struct tcp_welcome copy = *w;
        copy.reason = reason;
        size_t stat_len = f->body_len - TCP_WELCOME_FIXED - w->reason_len;
        n = tcp_put_welcome(again, &copy, f->body + TCP_WELCOME_FIXED + w->reason_len, stat_len);
    } else {
        return;
    }
    CHECK((long)n == size && memcmp(again, frame, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    enum tcp_sender sender = (enum tcp_sender)(data[0] % 6);
    uint64_t max_message = tcp_get32(data + 1) % (1u << 20);
    data += 5;
    size -= 5;
    while (size) {
        struct tcp_frame f;
        const char *why = NULL;
        long n = tcp_frame_next(data, size, sender, max_message, &f, &why);
        if (n <= 0) {
            CHECK(n == 0 || why != NULL);
            break;
        }
        CHECK((size_t)n <= size && n == (long)(TCP_HEADER + f.body_len));
        if (f.type == TCP_MSG) /* an encrypted payload carries a tag; decoding checks the rest */
            CHECK(f.u.msg.len <= max_message + TCP_TAG && f.u.msg.data + f.u.msg.len <= data + n);
        if (f.type == TCP_HELLO)
            CHECK(f.u.hello.name_len <= TCP_NAME_MAX &&
                  (const uint8_t *)f.u.hello.name + f.u.hello.name_len == data + n);
        if (f.type == TCP_WELCOME && f.u.welcome.has_stat)
            CHECK(f.u.welcome.n_subs <= TCP_STAT_SUBS_MAX &&
                  f.u.welcome.subs + f.u.welcome.n_subs * TCP_SUB_STAT_SIZE == data + n);
        check_round_trip(data, n, &f);
        data += n;
        size -= (size_t)n;
    }
    return 0;
}
