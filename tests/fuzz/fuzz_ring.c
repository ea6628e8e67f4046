/* libFuzzer target: read and write a ring whose header and record fields
 * are arbitrary.
 *
 * Each input starts from a valid channel with messages in it (a queue, a
 * blocking or an overwriting broadcast, chosen by the first byte), opens a
 * publisher and a subscriber on it, then applies the rest of the input as
 * patches to the live mapping: [offset: 2 bytes][length: 1 byte][bytes].
 * Offsets cover the header, the slots and the ring. Then it reads and
 * writes with zero timeouts. Every call must return; nothing may crash or
 * touch memory outside the mapping (ASan and UBSan watch). */
#include <sys/mman.h>

#include "../../core/shm/layout.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned char *images[3];
    static size_t image_len[3];
    static char path[3][128];
    static const char *names[3] = {"ring-q", "ring-b", "ring-o"};
    if (!images[0])
        for (unsigned k = 0; k < 3; k++) {
            images[k] = fuzz_pristine(names[k], k, &image_len[k]);
            snprintf(path[k], sizeof path[k], "%s/dmaq.%s", fuzz_make_dir(), names[k]);
        }
    if (size < 1)
        return 0;
    unsigned k = data[0] % 3;
    /* Back to the pristine image, in place (handles map the same file). */
    int fd = open(path[k], O_RDWR);
    if (fd < 0 || pwrite(fd, images[k], image_len[k], 0) != (ssize_t)image_len[k])
        abort();
    unsigned char *map = mmap(NULL, image_len[k], PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        abort();

    char uri[64];
    snprintf(uri, sizeof uri, "shm://%s", names[k]);
    dmaq_options o = fuzz_options(k);
    o.flags = DMAQ_OPEN_NO_CREATE;
    dmaq_pub *pub = NULL;
    dmaq_sub *sub = NULL;
    if (dmaq_pub_open(uri, &o, &pub) < 0 || dmaq_sub_open(uri, &o, &sub) < 0)
        abort(); /* the pristine image must open */

    for (size_t i = 1; i + 3 <= size;) {
        size_t at = ((size_t)data[i] | (size_t)data[i + 1] << 8) * 8 % image_len[k];
        size_t n = data[i + 2] % 17;
        i += 3;
        if (n > size - i)
            n = size - i;
        if (n > image_len[k] - at)
            n = image_len[k] - at;
        memcpy(map + at, data + i, n);
        i += n;
    }

    unsigned char buf[600], msg[200];
    memset(msg, 0x42, sizeof msg);
    for (int round = 0; round < 8; round++) {
        dmaq_lease r;
        int rc = dmaq_sub_peek(sub, &r, 0);
        if (rc == 0)
            fuzz_read_and_release(sub, &r);
        size_t len;
        dmaq_sub_recv(sub, buf, sizeof buf, &len, 0);
        dmaq_lease w;
        if (dmaq_pub_reserve(pub, 1 + round * 20, &w, 0) == 0) {
            memset(w.data, round, w.len);
            if (round & 1)
                dmaq_pub_commit(pub, &w, w.len);
            else
                dmaq_pub_abort(pub, &w);
        }
        dmaq_pub_send(pub, msg, (size_t)round * 25, 0);
        size_t lens[3] = {(size_t)round * 3, 10, 40}, sent;
        dmaq_pub_send_many(pub, msg, lens, 3, &sent, 0);
    }
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    munmap(map, image_len[k]);
    return 0;
}
