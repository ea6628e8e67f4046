/* The fault harness's shared log: peers write what they did as they do it,
 * so a SIGKILL loses nothing the test needs. */
#ifndef DMAQ_TEST_FAULT_LOG_H
#define DMAQ_TEST_FAULT_LOG_H

#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define FAULT_MAX_KEYS 32  /* publisher incarnations per trial */
#define FAULT_MAX_MSGS 1024 /* messages per incarnation */
#define FAULT_MAX_SUBS 16   /* subscriber incarnations per trial */
#define FAULT_MAX_BATCH 8   /* messages per dmaq_pub_send_many */

struct fault_sub {
    _Atomic uint32_t ready, done;
    uint32_t exact; /* broadcast/block: every index must follow the last */
    uint32_t late;  /* joined after publishing began: a key may start anywhere */
    _Atomic uint64_t received, lost, bad, misorder;
    _Atomic uint32_t next[FAULT_MAX_KEYS]; /* next index expected per key */
};

struct fault_log {
    _Atomic uint32_t stop;
    _Atomic uint32_t aborts;
    _Atomic uint32_t committed[FAULT_MAX_KEYS];
    /* Set before each dmaq_pub_send_many: a kill inside it may have
     * committed any of the batch, so at most this many went out. */
    _Atomic uint32_t attempted[FAULT_MAX_KEYS];
    struct fault_sub sub[FAULT_MAX_SUBS];
    _Atomic uint8_t seen[FAULT_MAX_KEYS][FAULT_MAX_MSGS]; /* queue deliveries */
    _Atomic uint8_t redelivered[FAULT_MAX_KEYS][FAULT_MAX_MSGS];
};

/* Map the log at `path` (created zeroed by the test). */
static inline struct fault_log *fault_log_map(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, sizeof(struct fault_log)) < 0) {
        perror(path);
        return NULL;
    }
    void *p = mmap(NULL, sizeof(struct fault_log), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

#endif
