/* The smallest dmaq subscriber: prints every message until "bye".
 *
 *   dmaq-example-subscriber [URI] [NAME]
 */
#include <dmaq/dmaq.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *uri = argc > 1 ? argv[1] : "shm://demo";
    const char *name = argc > 2 ? argv[2] : "subscriber";

    dmaq_options opts = DMAQ_OPTIONS_INIT;
    opts.kind = DMAQ_KIND_BROADCAST;
    opts.policy = DMAQ_POLICY_BLOCK;
    opts.capacity = 1 << 16;
    dmaq_sub *sub;
    if (dmaq_sub_open(uri, &opts, &sub) < 0) {
        fprintf(stderr, "%s: %s\n", name, dmaq_last_error());
        return 1;
    }
    unsigned count = 0;
    for (;;) {
        /* Zero-copy: the lease points into the ring until released. */
        dmaq_lease lease;
        int rc = dmaq_sub_peek(sub, &lease, 10LL * 1000000000); /* 10 s */
        if (rc < 0) {
            fprintf(stderr, "%s: %s (%s)\n", name, dmaq_strerror(rc), dmaq_last_error());
            break;
        }
        int bye = lease.len == 3 && memcmp(lease.data, "bye", 3) == 0;
        if (!bye) {
            count++;
            printf("%s: got    seq=%llu from publisher %u: '%.*s'\n", name, (unsigned long long)lease.seq,
                   lease.publisher_id, (int)lease.len, (const char *)lease.data);
            fflush(stdout);
        }
        dmaq_sub_release(sub, &lease);
        if (bye)
            break;
    }
    printf("%s: received %u messages\n", name, count);
    dmaq_sub_close(sub);
    return 0;
}
