/*
 * A transport plugin for the loader's tests (test_plugin.c): scheme
 * ALIAS_SCHEME names the same channels as shm://, every operation done
 * through the public API on an inner shm handle. Built four times:
 * libdmaq-testalias.so (found through DMAQ_PLUGIN_PATH), libdmaq-testnext.so
 * (next to libdmaq.so), libdmaq-testnoentry.so (no entry point) and
 * libdmaq-testwrong.so (a table for another scheme).
 */
#include <dmaq/transport.h>
#include <stdio.h>

#ifndef ALIAS_SCHEME
#error "build with -DALIAS_SCHEME=\"...\""
#endif
#ifndef TABLE_SCHEME
#define TABLE_SCHEME ALIAS_SCHEME
#endif

struct alias_pub {
    dmaq_pub *inner;
};
struct alias_sub {
    dmaq_sub *inner;
};

static int shm_uri(char *buf, size_t cap, const char *address)
{
    if ((size_t)snprintf(buf, cap, "shm://%s", address) >= cap)
        return dmaq_error_set(DMAQ_EINVAL, "address '%.64s' is too long", address);
    return 0;
}

static int pub_open(void *state, const char *address, const dmaq_options *opts)
{
    char uri[512];
    int rc = shm_uri(uri, sizeof uri, address);
    return rc < 0 ? rc : dmaq_pub_open(uri, opts, &((struct alias_pub *)state)->inner);
}

static void pub_close(void *state) { dmaq_pub_close(((struct alias_pub *)state)->inner); }
static uint32_t pub_id(const void *state) { return dmaq_pub_id(((const struct alias_pub *)state)->inner); }

static int pub_reserve(void *state, size_t len, dmaq_lease *lease, int64_t timeout_ns)
{
    return dmaq_pub_reserve(((struct alias_pub *)state)->inner, len, lease, timeout_ns);
}

static int pub_commit(void *state, dmaq_lease *lease, size_t used)
{
    return dmaq_pub_commit(((struct alias_pub *)state)->inner, lease, used);
}

static int pub_abort(void *state, dmaq_lease *lease) { return dmaq_pub_abort(((struct alias_pub *)state)->inner, lease); }

static int sub_open(void *state, const char *address, const dmaq_options *opts)
{
    char uri[512];
    int rc = shm_uri(uri, sizeof uri, address);
    return rc < 0 ? rc : dmaq_sub_open(uri, opts, &((struct alias_sub *)state)->inner);
}

static void sub_close(void *state) { dmaq_sub_close(((struct alias_sub *)state)->inner); }

static int sub_peek(void *state, dmaq_lease *lease, int64_t timeout_ns)
{
    return dmaq_sub_peek(((struct alias_sub *)state)->inner, lease, timeout_ns);
}

static int sub_release(void *state, dmaq_lease *lease)
{
    return dmaq_sub_release(((struct alias_sub *)state)->inner, lease);
}

static int sub_recv(void *state, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
    return dmaq_sub_recv(((struct alias_sub *)state)->inner, buf, cap, len, timeout_ns);
}

static int channel_stat(const char *address, dmaq_stat *stat, dmaq_sub_stat *subs, size_t cap)
{
    char uri[512];
    int rc = shm_uri(uri, sizeof uri, address);
    return rc < 0 ? rc : dmaq_channel_stat(uri, stat, subs, cap);
}

static int channel_unlink(const char *address)
{
    char uri[512];
    int rc = shm_uri(uri, sizeof uri, address);
    return rc < 0 ? rc : dmaq_channel_unlink(uri);
}

static const dmaq_transport_ops alias_ops = {
    .abi_version = DMAQ_TRANSPORT_ABI,
    .struct_size = sizeof(dmaq_transport_ops),
    .scheme = TABLE_SCHEME,
    .pub_state_size = sizeof(struct alias_pub),
    .sub_state_size = sizeof(struct alias_sub),
    .pub_open = pub_open,
    .pub_close = pub_close,
    .pub_id = pub_id,
    .pub_reserve = pub_reserve,
    .pub_commit = pub_commit,
    .pub_abort = pub_abort,
    .sub_open = sub_open,
    .sub_close = sub_close,
    .sub_peek = sub_peek,
    .sub_release = sub_release,
    .sub_recv = sub_recv,
    .channel_stat = channel_stat,
    .channel_unlink = channel_unlink,
};

#ifndef NO_ENTRY
__attribute__((visibility("default"))) const dmaq_transport_ops *dmaq_transport_plugin(void) { return &alias_ops; }
#else
/* Referenced so the table is kept, yet reachable by no entry point. */
__attribute__((visibility("default"))) const void *not_the_entry_point(void) { return &alias_ops; }
#endif
