/* dmaq_relay: a subscriber and a publisher, one copy per message between
 * them, built on the public calls only, so it relays between any schemes. */
#include <string.h>

#include "registry.h"

#define RELAY_SLICE_NS 100000000LL /* how often the stop flag is looked at */

/* The destination's options: the caller's, else the source's shape. */
static int dest_options(const char *src_uri, const dmaq_options *dst_opts, dmaq_options *o)
{
    if (dst_opts) {
        *o = *dst_opts;
        return 0;
    }
    dmaq_options_init(o);
    dmaq_stat st = {.size = sizeof st};
    int rc = dmaq_channel_stat(src_uri, &st, NULL, 0);
    if (rc < 0)
        return rc;
    o->kind = st.kind;
    o->policy = st.policy;
    o->capacity = st.capacity;
    o->max_message = st.max_message;
    return 0;
}

/* Copy one message across. The source lease ends before the copy is
 * committed, so bytes an overwriting source tore while we copied them are
 * never published: the copy is aborted and counted lost. */
static int relay_one(dmaq_sub *sub, dmaq_lease *in, dmaq_pub *pub, const volatile int *stop, dmaq_relay_stat *stat)
{
    dmaq_lease out;
    int rc;
    while ((rc = dmaq_pub_reserve(pub, in->len, &out, RELAY_SLICE_NS)) == DMAQ_ETIMEDOUT)
        if (stop && *stop)
            break;
    if (rc < 0) {
        dmaq_sub_release(sub, in);
        stat->lost++; /* stopped while the destination was full, or it cannot take it */
        return rc == DMAQ_ETIMEDOUT ? 0 : rc;
    }
    memcpy(out.data, in->data, in->len);
    if (dmaq_sub_release(sub, in) == DMAQ_EOVERWRITTEN) {
        dmaq_pub_abort(pub, &out);
        stat->lost++;
        return 0;
    }
    rc = dmaq_pub_commit(pub, &out, out.len);
    stat->relayed += rc == 0;
    return rc;
}

int dmaq_relay(const char *src_uri, const dmaq_options *src_opts, const char *dst_uri,
               const dmaq_options *dst_opts, const volatile int *stop, dmaq_relay_stat *stat)
{
    dmaq_relay_stat ignored;
    if (!stat)
        stat = &ignored;
    *stat = (dmaq_relay_stat){0, 0};
    dmaq_sub *sub = NULL;
    dmaq_pub *pub = NULL;
    dmaq_options dst;
    int rc = dmaq_sub_open(src_uri, src_opts, &sub);
    if (rc == 0)
        rc = dest_options(src_uri, dst_opts, &dst);
    if (rc == 0)
        rc = dmaq_pub_open(dst_uri, &dst, &pub);
    while (rc == 0 && !(stop && *stop)) {
        dmaq_lease lease;
        rc = dmaq_sub_peek(sub, &lease, RELAY_SLICE_NS);
        if (rc == DMAQ_ELOST)
            stat->lost += lease.lost;
        if (rc == 0)
            rc = relay_one(sub, &lease, pub, stop, stat);
        else if (rc == DMAQ_ETIMEDOUT || rc == DMAQ_EAGAIN || rc == DMAQ_ELOST)
            rc = 0;
    }
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    return rc;
}
