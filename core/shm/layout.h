/*
 * The shared-memory layout of a channel: /dev/shm/dmaq.<name> holds
 *
 *   [0, 4096)          shm_header: immutable metadata (checksummed), then the
 *                      shared positions and futex words, each on its own
 *                      128-byte line (against the adjacent-line prefetcher)
 *   [4096, +8192)      DMAQ_MAX_PUBLISHERS publisher slots, 128 bytes each
 *   [12288, +8192)     DMAQ_MAX_SUBSCRIBERS subscriber slots
 *   [20480, +capacity) the ring of variable-length records
 *
 * Positions are 64-bit byte counts that only grow; the ring offset is
 * pos & (capacity - 1). The ring is cut into 2 to 16 segments (see
 * shm_segment_size); no record straddles a segment end, so a payload is
 * always contiguous and every segment start is a record start (what lets a
 * late subscriber find one).
 * Where a record does not fit before the segment end, the publisher writes a
 * padding record there, or, when fewer than DMAQ_RECORD_HEADER bytes remain,
 * leaves a gap that everyone skips by rule.
 *
 * Everything here is read from memory other processes can write: each value
 * is checked before it is used.
 */
#ifndef DMAQ_SHM_LAYOUT_H
#define DMAQ_SHM_LAYOUT_H

#include <stdatomic.h>
#include <stdint.h>

#include "dmaq/dmaq.h"

#define SHM_MAGIC 0x314e4843514d4444ull /* "DDMQCHN1" */
#define SHM_LAYOUT_VERSION 6u
#define SHM_PREFIX "dmaq."
#define SHM_DIR_MAX 256u /* bytes in the path of the directory holding channels */
#define SHM_HEADER_BYTES 4096u
#define SHM_SLOT_BYTES 128u
#define SHM_RING_OFFSET (SHM_HEADER_BYTES + (DMAQ_MAX_PUBLISHERS + DMAQ_MAX_SUBSCRIBERS) * SHM_SLOT_BYTES)
#define SHM_CAPACITY_MAX (1ull << 40)

enum { SHM_CREATING = 1, SHM_READY = 2 };

/* Immutable after creation; covered by `checksum`. */
struct shm_meta {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t ring_offset;
    uint32_t kind;
    uint32_t policy;
    uint64_t capacity;
    uint64_t max_message;
    uint64_t file_size;
    uint64_t salt; /* mixed into commit tags; see struct shm_record */
    uint32_t pub_slots;
    uint32_t sub_slots;
    int32_t creator_pid;
    uint32_t mode;
    uint64_t creator_start;
    uint64_t created_ns;
};

/* The write position and the next sequence number change together, with one
 * 16-byte compare-and-swap (or, by a solo publisher, one 16-byte store), so
 * a lapped subscriber can tell exactly how many messages it lost. */
struct shm_write {
    uint64_t pos;
    uint64_t seq;
} __attribute__((aligned(16)));

struct shm_header {
    struct shm_meta meta;
    uint64_t checksum; /* XXH64 of meta */
    _Atomic uint32_t state;

    _Alignas(128) struct shm_write write; /* publishers only */
    /* The publisher that moves `write` with plain stores instead of the
     * compare-and-swap while it is the only one, as its slot index + 1
     * (0: none; SOLO_ENDING set: it is being made to stop; see ring.c). On
     * the line that publisher writes anyway; solo_sub likewise. */
    _Atomic uint32_t solo_pub;
    _Alignas(128) _Atomic uint64_t tail;     /* queue: everything before it is released */
    _Alignas(128) _Atomic uint64_t rd_claim; /* queue: next record to hand out */
    _Atomic uint32_t solo_sub;               /* queue: the subscriber moving rd_claim alone */
    _Alignas(128) _Atomic uint32_t data_futex; /* bumped when a sleeping reader must wake */
    _Atomic uint32_t data_sleepers;
    /* Set (never cleared) by a process that cannot issue membarrier: every
     * waker then fences itself (see util/barrier.h). Read with the sleeper
     * counts, on their line. */
    _Atomic uint32_t fence_required;
    _Alignas(128) _Atomic uint32_t space_futex; /* bumped when a sleeping publisher must wake */
    _Atomic uint32_t space_sleepers;
    _Alignas(128) _Atomic uint32_t next_pub_id;
    _Atomic uint32_t pub_hwm; /* slots at or above these indexes were never used */
    _Atomic uint32_t sub_hwm;
    _Atomic uint64_t aborted; /* reservations aborted: sequence numbers with no message */
    _Atomic uint32_t redeliver; /* queue: records waiting in REC_REDELIVER */
};

/* Slot states. A slot whose process died is taken over for recovery with
 * SLOT_RECOVERING | the recoverer's pid, so that a recoverer that dies too is
 * itself recognised and replaced. */
enum { SLOT_FREE = 0, SLOT_CLAIMING = 1, SLOT_ACTIVE = 2 };
#define SLOT_RECOVERING 0x80000000u

#define SOLO_ENDING 0x80000000u /* in shm_header.solo_pub */

/* shm_slot.sleeping bits: which sleeper count this handle is in. */
#define SLEEP_DATA 0x1u
#define SLEEP_SPACE 0x2u

/* One publisher or subscriber, on its own cache lines. */
struct shm_slot {
    _Atomic uint32_t state;
    uint32_t id; /* publisher id */
    int32_t pid;
    _Atomic uint32_t sleeping;     /* SLEEP_* */
    uint64_t start_time;           /* with pid: which process */
    /* subscriber: next position to read (queue: the record it claims or
     * claimed last); publisher: where its current claim starts from
     * (UINT64_MAX when not writing) */
    _Atomic uint64_t pos;
    _Atomic uint64_t next_seq;     /* subscriber: sequence it expects next */
    _Atomic uint64_t count;        /* published / received */
    _Atomic uint64_t lost;         /* subscriber: lost to overwriting */
    /* publisher: the claim announced at `pos`, so that others can finish
     * it if this process dies holding it (see reap.c): claim_count records
     * from claim_start to claim_end, numbered from claim_seq; a queue
     * subscriber claiming a run of records announces [pos, claim_end) */
    _Atomic uint64_t claim_start, claim_end, claim_seq;
    _Atomic uint32_t claim_owned; /* the claim's compare-and-swap succeeded */
    _Atomic uint32_t claim_count; /* records in the claim (dmaq_pub_send_many claims several) */
    uint64_t pid_ns;              /* with pid: in which PID namespace (see proc.h) */
    _Atomic uint32_t solo_busy;   /* inside a claim made as the solo publisher or queue subscriber */
    _Atomic uint32_t claim_seqs;  /* sequence numbers the claim takes: claim_count, or a packed record's messages */
} __attribute__((aligned(128)));

#define REC_PAD 0x1u     /* skip it */
#define REC_ABORTED 0x2u /* a padding record that consumed `count` sequence numbers (0 = one) */
#define REC_PACKED 0x4u  /* broadcast: `count` small messages in one record (struct shm_entry) */

/* Queue claim states of a record; else 1 + the claiming subscriber's slot. */
enum { REC_UNCLAIMED = 0, REC_REDELIVER = 0xfffffffeu, REC_RELEASED = 0xffffffffu };

/*
 * A record: this header, then `len` payload bytes, `size` bytes in all
 * (a multiple of DMAQ_RECORD_ALIGN, and records start at such multiples). It is committed when `tag` == position ^ salt, stored
 * last with release order. The salt makes old payload bytes that happen to
 * equal a position no risk: a stale word matches only by a 2^-64 chance.
 */
struct shm_record {
    _Atomic uint64_t tag;
    uint64_t seq;
    uint64_t timestamp_ns;
    uint32_t size;
    uint32_t len;
    uint32_t pub_id;
    uint32_t flags;
    _Atomic uint32_t state; /* queue claim state */
    uint32_t count;         /* REC_PACKED: messages; REC_ABORTED: sequence numbers taken; else 0 */
};

/*
 * A packed record (REC_PACKED, broadcast channels only, written by
 * dmaq_pub_send_many): `count` >= 2 messages numbered from `seq`, sharing the
 * record's timestamp and publisher, each as an entry header and its payload.
 * The first entry header is at SHM_PACK_FIRST bytes into the record, each
 * payload is 16-byte aligned, and the next entry header follows at
 * shm_pack_next(). `len` is the bytes from the record header's end to the
 * last payload's end. Small messages cost 8 bytes and their alignment
 * instead of a 48-byte header and a 64-byte-aligned record: a 64-byte
 * message takes 80 bytes of ring, not 128 (which made 64 B streams bound by
 * the cache lines crossing between CPUs).
 */
struct shm_entry {
    uint32_t len;
    uint32_t index; /* 0..count-1, checked by readers */
};
#define SHM_PACK_FIRST 56u
#define SHM_PACK_BYTES 4096u /* the largest packed record a publisher builds */
/* The largest message a publisher packs: past it a record's own header
 * costs little, and packing 1 KiB messages measured 0.96x. */
#define SHM_PACK_MESSAGE_MAX 512u

/* Where the entry after one at `off` with a `len`-byte payload starts. */
static inline uint64_t shm_pack_next(uint64_t off, uint64_t len)
{
    return ((off + sizeof(struct shm_entry) + len + 15) & ~(uint64_t)15) + sizeof(struct shm_entry);
}

_Static_assert(sizeof(struct shm_record) == DMAQ_RECORD_HEADER, "record header size is ABI");
_Static_assert(sizeof(struct shm_header) <= SHM_HEADER_BYTES, "header fits its page");
_Static_assert(sizeof(struct shm_slot) == SHM_SLOT_BYTES, "slot size");

static inline struct shm_slot *shm_pub_slots(struct shm_header *h)
{
    return (struct shm_slot *)((char *)h + SHM_HEADER_BYTES);
}

static inline struct shm_slot *shm_sub_slots(struct shm_header *h)
{
    return shm_pub_slots(h) + DMAQ_MAX_PUBLISHERS;
}

#endif
