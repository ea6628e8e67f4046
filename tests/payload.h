/* The checksummed message format of the test peers and the soak:
 * [u32 key][u32 index][u64 XXH64(rest, key << 32 | index)][rest]. */
#ifndef DMAQ_TEST_PAYLOAD_H
#define DMAQ_TEST_PAYLOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define PAYLOAD_HEAD 16

/* xorshift64: cheap bytes for the rest of a message. */
static inline uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Write the head over p[0..16) for the bytes already in p[16..len). */
static inline void payload_seal(unsigned char *p, size_t len, uint32_t key, uint32_t index)
{
    uint64_t h = XXH64(p + PAYLOAD_HEAD, len - PAYLOAD_HEAD, (uint64_t)key << 32 | index);
    memcpy(p, &key, 4);
    memcpy(p + 4, &index, 4);
    memcpy(p + 8, &h, 8);
}

/* Fill p[16..len) from *rng and seal it. len >= PAYLOAD_HEAD. */
static inline void payload_fill(unsigned char *p, size_t len, uint32_t key, uint32_t index, uint64_t *rng)
{
    for (size_t i = PAYLOAD_HEAD; i < len; i++)
        p[i] = (unsigned char)rng_next(rng);
    payload_seal(p, len, key, index);
}

/* True if p[0..len) is a sealed message; its key and index in *key, *index. */
static inline bool payload_intact(const unsigned char *p, size_t len, uint32_t *key, uint32_t *index)
{
    if (len < PAYLOAD_HEAD)
        return false;
    uint64_t h;
    memcpy(key, p, 4);
    memcpy(index, p + 4, 4);
    memcpy(&h, p + 8, 8);
    return XXH64(p + PAYLOAD_HEAD, len - PAYLOAD_HEAD, (uint64_t)*key << 32 | *index) == h;
}

#endif
