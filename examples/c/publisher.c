/* The smallest dmaq publisher: waits for N subscribers, then publishes.
 *
 *   dmaq-example-publisher [URI] [MESSAGES] [SUBSCRIBERS]
 */
#include <dmaq/dmaq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
    const char *uri = argc > 1 ? argv[1] : "shm://demo";
    int messages = argc > 2 ? atoi(argv[2]) : 10;
    int want_subs = argc > 3 ? atoi(argv[3]) : 2;

    dmaq_options opts = DMAQ_OPTIONS_INIT;
    opts.kind = DMAQ_KIND_BROADCAST;
    opts.policy = DMAQ_POLICY_BLOCK;
    opts.capacity = 1 << 16;
    dmaq_pub *pub;
    if (dmaq_pub_open(uri, &opts, &pub) < 0) {
        fprintf(stderr, "publisher: %s\n", dmaq_last_error());
        return 1;
    }
    /* Broadcast subscribers see what is published after they join. */
    dmaq_stat st = {.size = sizeof st};
    while (dmaq_channel_stat(uri, &st, NULL, 0) >= 0 && (int)st.subscribers < want_subs)
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    printf("publisher %u: %d subscribers attached, sending %d messages\n", dmaq_pub_id(pub), st.subscribers,
           messages);

    for (int i = 0; i < messages; i++) {
        /* Zero-copy: write straight into the ring, then commit. */
        dmaq_lease lease;
        if (dmaq_pub_reserve(pub, 64, &lease, -1) < 0) {
            fprintf(stderr, "publisher: %s\n", dmaq_last_error());
            return 1;
        }
        int n = snprintf(lease.data, lease.len, "hello #%d", i);
        dmaq_pub_commit(pub, &lease, (size_t)n);
        printf("publisher: sent   seq=%llu '%.*s'\n", (unsigned long long)lease.seq, n, (char *)lease.data);
        fflush(stdout);
        nanosleep(&(struct timespec){0, 50000000}, NULL);
    }
    /* The copying path, for the closing message. */
    dmaq_pub_send(pub, "bye", 3, -1);
    dmaq_pub_close(pub);
    /* Remove the name; subscribers still reading keep their mapping. */
    dmaq_channel_unlink(uri);
    return 0;
}
