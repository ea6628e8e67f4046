/* Internal to the shm transport: a process's view of one mapped channel. */
#ifndef DMAQ_SHM_SHM_H
#define DMAQ_SHM_SHM_H

#include <stdbool.h>
#include <stddef.h>

#include "layout.h"

struct shm_chan {
    struct shm_header *hdr;
    unsigned char *ring;
    size_t map_len;
    /* Copies of the validated immutable metadata: never re-read from the
     * mapping, so a later scribble on the header cannot change them. */
    uint64_t capacity, mask, segment, max_message, salt, max_record;
    uint32_t kind, policy;
    char name[DMAQ_NAME_MAX + 1];
};

/* Map the channel named by `address`, creating it from `opts` unless it
 * exists (or opts->flags has DMAQ_OPEN_NO_CREATE). Validates everything and
 * checks the caller's kind/policy/sizes against what exists. */
int shm_chan_open(struct shm_chan *ch, const char *address, const dmaq_options *opts);
void shm_chan_close(struct shm_chan *ch);

/* Claim a free slot in `slots` (n entries) for this process, counting it in
 * *hwm. Returns the index or DMAQ_ELIMIT. */
int shm_slot_claim(struct shm_slot *slots, unsigned n, _Atomic uint32_t *hwm, const char *what,
                   const char *name);

int shm_channel_stat(const char *address, dmaq_stat *stat, dmaq_sub_stat *subs, size_t subs_cap);
int shm_channel_unlink(const char *address);

static inline uint64_t shm_align8(uint64_t x) { return (x + 7) & ~(uint64_t)7; }

/* First position after the segment that holds `pos`. */
static inline uint64_t shm_segment_end(const struct shm_chan *ch, uint64_t pos)
{
    return (pos | (ch->segment - 1)) + 1;
}

static inline struct shm_record *shm_rec(const struct shm_chan *ch, uint64_t pos)
{
    return (struct shm_record *)(ch->ring + (pos & ch->mask));
}

/* Read the write position and sequence as one atomic pair. */
static inline struct shm_write shm_write_load(struct shm_header *h)
{
    unsigned __int128 *p = (unsigned __int128 *)&h->write;
    unsigned __int128 v = __sync_val_compare_and_swap(p, (unsigned __int128)0, (unsigned __int128)0);
    struct shm_write w = {(uint64_t)v, (uint64_t)(v >> 64)};
    return w;
}

static inline bool shm_write_cas(struct shm_header *h, struct shm_write *expected, struct shm_write desired)
{
    unsigned __int128 *p = (unsigned __int128 *)&h->write;
    unsigned __int128 e = (unsigned __int128)expected->pos | ((unsigned __int128)expected->seq << 64);
    unsigned __int128 d = (unsigned __int128)desired.pos | ((unsigned __int128)desired.seq << 64);
    unsigned __int128 seen = __sync_val_compare_and_swap(p, e, d);
    if (seen == e)
        return true;
    expected->pos = (uint64_t)seen;
    expected->seq = (uint64_t)(seen >> 64);
    return false;
}

/* The write position alone (the low half of the pair). */
static inline uint64_t shm_write_pos(struct shm_header *h)
{
    return __atomic_load_n(&h->write.pos, __ATOMIC_ACQUIRE);
}

#endif
