/* libFuzzer target: open a channel whose file holds arbitrary bytes.
 *
 * The input replaces the start of a valid channel file (a queue, a
 * blocking or an overwriting broadcast, chosen by the input's last byte)
 * and, when its last byte is odd, the header checksum is recomputed so
 * that the field checks behind it are reached too. Opening, stat and a few
 * reads must return a DMAQ_E* code or work; never crash, hang or read
 * outside the mapping. */
#include "../../core/shm/layout.h"
#include "fuzz_common.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned char *images[3];
    static size_t image_len[3];
    static char path[128];
    if (!images[0]) {
        const char *names[3] = {"seed-q", "seed-b", "seed-o"};
        for (unsigned k = 0; k < 3; k++)
            images[k] = fuzz_pristine(names[k], k, &image_len[k]);
        snprintf(path, sizeof path, "%s/dmaq.target", fuzz_make_dir());
    }
    unsigned which = size ? data[size - 1] : 0;
    unsigned k = which % 3;
    /* The file is the input over the image, as long as the longer of the
     * two: a short input keeps the image's ring, a long one grows the file. */
    size_t len = size > image_len[k] ? size : image_len[k];
    unsigned char *file = malloc(len);
    memcpy(file, images[k], image_len[k]);
    memcpy(file, data, size);
    if ((which & 1) && len >= sizeof(struct shm_header)) {
        struct shm_header *h = (struct shm_header *)file;
        h->checksum = XXH64(&h->meta, sizeof h->meta, 0);
    }
    if ((which & 2) && size < len)
        len = size; /* sometimes the input is the whole file: truncated ones too */
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0 || write(fd, file, len) != (ssize_t)len)
        abort();
    close(fd);
    free(file);

    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_NO_CREATE;
    o.shm_dir = fuzz_make_dir();
    o.start = DMAQ_START_OLDEST;
    dmaq_sub *sub;
    if (dmaq_sub_open("shm://target", &o, &sub) == 0) {
        dmaq_lease r;
        for (int i = 0; i < 16; i++) {
            int rc = dmaq_sub_peek(sub, &r, 0);
            if (rc == 0)
                fuzz_read_and_release(sub, &r);
            else if (rc != DMAQ_ELOST)
                break;
        }
        dmaq_sub_close(sub);
    }
    dmaq_stat st = {.size = sizeof st};
    dmaq_sub_stat subs[4];
    char uri[160];
    snprintf(uri, sizeof uri, "shm://%s/target", fuzz_make_dir());
    dmaq_channel_stat(uri, &st, subs, 4);
    unlink(path);
    return 0;
}
