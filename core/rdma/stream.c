/* A byte stream over an RDMA RC queue pair: see stream.h. */
#include "stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <rdma/rdma_cma.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../util/clock.h"

/* Ring bytes per direction, in order of preference: 1 MiB when both rings
 * fit one explicit huge page, else 256 KiB, else 64 KiB; the first that
 * maps and registers (locked memory is limited, RLIMIT_MEMLOCK). The two
 * sides use the smaller of theirs. */
static const struct {
    uint32_t size;
    bool huge;
} ring_choices[] = {{1u << 20, true}, {256u << 10, false}, {64u << 10, false}};
#define RING_MIN (64u << 10)
#define RING_MAX (64u << 20)
#define HUGE_PAGE (2u << 20)
#define SQ_DEPTH 256u
#define RQ_DEPTH 1024u
#define SIGNAL_EVERY 32u         /* one signalled write in this many reaps them all */
#define SEND_SGE 4u              /* pieces one write gathers */
#define MAX_SOURCES 4u           /* registered memory a write may take pieces from in place */
#define ZERO_COPY_MIN 4096u      /* a piece this big in a source goes from there, not through the send ring */
#define CREDIT_FLAG 0x80000000u  /* immediate of a credit update, not data */
#define PRIV_MAGIC 0x44514d52u   /* "DQMR" */
#define REJECT_MAGIC 0x44514a52u /* "DQJR": a refusal, its errno in ring_size (see refuse) */
#define MAX_FD 65536
#define DEFAULT_TIMEOUT_MS 5000

/* What each side tells the other at connect/accept (rdma_cm private data),
 * and what a listener that refuses a connection tells the peer why with. */
struct ring_info {
    uint32_t magic, ring_size;
    uint64_t ring_addr, credit_addr;
    uint32_t rkey, credit_rkey;
};

enum role { FRESH, LISTENER, CONN };

struct stream {
    enum role role;
    int fd; /* the event channel's: the descriptor handed out */
    pthread_mutex_t lock;
    atomic_uint lock_wanted; /* threads waiting in stream_lock: a busy-poll stands back */
    struct rdma_event_channel *ec;
    struct rdma_cm_id *id;
    bool nonblock;
    int timeout_ms;
    int64_t spin_ns; /* SO_BUSY_POLL: how long a wait polls before it sleeps */
    int err;         /* SO_ERROR */
    /* listener */
    struct rdma_cm_id *req_id; /* a connection request not accepted yet */
    struct ring_info req_info;
    bool req_info_ok;
    /* connection */
    struct ibv_pd *pd;
    struct ibv_comp_channel *cc;
    /* Two completion queues on one channel: a wait for data arms only the
     * receive one, so that the completions of our own writes (one in
     * SIGNAL_EVERY) wake nobody; a wait for room in the send queue arms
     * the send one too. (One queue for both woke a host's connection
     * reader on every 32nd message of a ping-pong, which then fought the
     * publisher for the lock.) */
    struct ibv_cq *rcq, *scq;
    struct ibv_mr *mr, *words_mr;
    uint8_t *mem;       /* receive ring | send ring, `cap` bytes each */
    size_t mem_size;    /* mapped */
    uint64_t *words;    /* credit in | credit out, a page of their own */
    uint32_t cap, ring; /* ring bytes we have; in use (the smaller of ours and the peer's) */
    struct ring_info remote;
    uint64_t sent, peer_consumed;             /* our outgoing stream */
    uint64_t produced, consumed, credit_sent; /* the incoming one */
    unsigned outstanding;                     /* sends posted and not known complete */
    unsigned unsignalled;                     /* of those, posted since the last signalled one */
    unsigned max_inline, max_sge;
    struct ibv_mr *sources[MAX_SOURCES]; /* rdma_stream_add_source's */
    unsigned n_sources;
    uint64_t sent_in_place; /* of `sent`, bytes written from a source where they lay */
    bool established; /* accepted: the peer's RTU came, so its queue pair takes writes */
    bool peer_gone;   /* disconnected: what is in the ring can still be read */
    bool broken;    /* a transfer failed, or the peer broke the protocol */
    bool borrowed;  /* rdma_stream_borrow's bytes are out: nothing else reads */
    bool closed;    /* closed while borrowed: rdma_stream_give_back frees it */
};

static struct stream *table[MAX_FD];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static uint8_t *recv_ring(struct stream *s) { return s->mem; }
static uint8_t *send_ring(struct stream *s) { return s->mem + s->cap; }
static volatile uint64_t *credit_in(struct stream *s) { return (volatile uint64_t *)s->words; }
static uint64_t *credit_out(struct stream *s) { return s->words + 8; }

static int fail(int err)
{
    errno = err;
    return -1;
}

/* Take the stream's lock, marking that we want it: a thread busy-polling
 * the stream (spin_for) takes it only when nobody is waiting, so a sender
 * or reader is not starved by one that locks it in a loop. */
static void stream_lock(struct stream *s)
{
    atomic_fetch_add_explicit(&s->lock_wanted, 1, memory_order_relaxed);
    pthread_mutex_lock(&s->lock);
    atomic_fetch_sub_explicit(&s->lock_wanted, 1, memory_order_relaxed);
}

static struct stream *lookup(int fd)
{
    if (fd < 0 || fd >= MAX_FD)
        return NULL;
    pthread_mutex_lock(&table_lock);
    struct stream *s = table[fd];
    pthread_mutex_unlock(&table_lock);
    return s;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

int rdma_stream_available(void)
{
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (list)
        ibv_free_device_list(list);
    if (n <= 0)
        return fail(ENODEV), 0;
    struct rdma_event_channel *ec = rdma_create_event_channel();
    if (!ec)
        return 0; /* no rdma_cm: errno says why */
    rdma_destroy_event_channel(ec);
    return 1;
}

/* Make the event channel's descriptor the stream's, ready to register. */
static void adopt_channel(struct stream *s)
{
    set_nonblocking(s->ec->fd);
    s->fd = s->ec->fd;
    s->timeout_ms = DEFAULT_TIMEOUT_MS;
    pthread_mutex_init(&s->lock, NULL);
}

static void register_stream(struct stream *s)
{
    pthread_mutex_lock(&table_lock);
    table[s->fd] = s;
    pthread_mutex_unlock(&table_lock);
}

int rdma_stream_socket(int domain, int type, int protocol)
{
    (void)protocol;
    if ((domain != AF_INET && domain != AF_INET6) || (type & 0xff) != SOCK_STREAM)
        return fail(EAFNOSUPPORT);
    struct stream *s = calloc(1, sizeof *s);
    if (!s)
        return fail(ENOMEM);
    s->ec = rdma_create_event_channel();
    if (!s->ec) {
        int err = errno;
        free(s);
        return fail(err ? err : ENODEV);
    }
    if (rdma_create_id(s->ec, &s->id, s, RDMA_PS_TCP) != 0) {
        int err = errno;
        rdma_destroy_event_channel(s->ec);
        free(s);
        return fail(err);
    }
    adopt_channel(s);
    if (s->fd >= MAX_FD) {
        rdma_destroy_id(s->id);
        rdma_destroy_event_channel(s->ec);
        free(s);
        return fail(EMFILE);
    }
    register_stream(s);
    return s->fd;
}

/* ---- connection events ---- */

/* Take the next event of the channel (waiting at most timeout_ms; 0: only
 * what is there), keep what we need of it, acknowledge it. Returns its type
 * or -1 (errno ETIMEDOUT when none came). */
static int next_event(struct stream *s, int timeout_ms, struct rdma_cm_id **id, struct ring_info *info, bool *info_ok,
                      int *status)
{
    uint64_t deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        struct rdma_cm_event *ev;
        if (rdma_get_cm_event(s->ec, &ev) == 0) {
            int type = ev->event;
            if (id)
                *id = ev->id;
            if (status)
                *status = ev->status;
            if (info_ok) {
                const struct rdma_conn_param *p = &ev->param.conn;
                *info_ok = p->private_data && p->private_data_len >= sizeof *info;
                if (*info_ok)
                    memcpy(info, p->private_data, sizeof *info);
            }
            rdma_ack_cm_event(ev);
            return type;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        uint64_t now = now_ms();
        if (now >= deadline)
            return fail(ETIMEDOUT);
        struct pollfd p = {s->ec->fd, POLLIN, 0};
        poll(&p, 1, (int)(deadline - now));
    }
}

/* Events on an established connection: only its end matters. */
static void take_conn_events(struct stream *s)
{
    int type;
    while ((type = next_event(s, 0, NULL, NULL, NULL, NULL)) >= 0)
        if (type == RDMA_CM_EVENT_ESTABLISHED)
            s->established = true;
        else
            s->peer_gone = true; /* disconnected, unreachable, device gone, or never completed */
}

/* ---- the queue pair and the rings ---- */

static int post_recv(struct stream *s)
{
    struct ibv_recv_wr wr = {.wr_id = 0, .sg_list = NULL, .num_sge = 0}, *bad;
    return ibv_post_recv(s->id->qp, &wr, &bad);
}

/* Map `size` bytes for the rings: on explicit huge pages (fewer TLB misses
 * for the NIC and for us; none unless the system has some reserved), or
 * on ordinary pages the kernel may fold into transparent huge ones. */
static void *map_rings(size_t size, bool huge, size_t *mapped)
{
    if (huge)
        size = (size + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0), -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (!huge)
        madvise(p, size, MADV_HUGEPAGE);
    *mapped = size;
    return p;
}

static void unmap_rings(struct stream *s)
{
    if (s->mr)
        ibv_dereg_mr(s->mr);
    if (s->mem)
        munmap(s->mem, s->mem_size);
    s->mr = NULL, s->mem = NULL, s->mem_size = 0;
}

/* Register the rings (see ring_choices) and the credit words, once per
 * connection: nothing is registered per message. */
static int register_rings(struct stream *s)
{
    int err = ENOMEM;
    for (size_t i = 0; i < sizeof ring_choices / sizeof ring_choices[0] && !s->mr; i++) {
        s->cap = ring_choices[i].size;
        if (!(s->mem = map_rings(2 * (size_t)s->cap, ring_choices[i].huge, &s->mem_size)))
            continue;
        s->mr = ibv_reg_mr(s->pd, s->mem, 2 * (size_t)s->cap, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
        if (!s->mr) {
            err = errno;
            unmap_rings(s);
        }
    }
    if (!s->mr)
        return fail(err);
    s->ring = s->cap;
    if (posix_memalign((void **)&s->words, 4096, 4096) != 0)
        return fail(ENOMEM);
    memset(s->words, 0, 4096);
    s->words_mr = ibv_reg_mr(s->pd, s->words, 4096, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
    return s->words_mr ? 0 : -1;
}

static int setup_conn(struct stream *s)
{
    struct ibv_context *ctx = s->id->verbs;
    s->pd = ibv_alloc_pd(ctx);
    s->cc = s->pd ? ibv_create_comp_channel(ctx) : NULL;
    s->rcq = s->cc ? ibv_create_cq(ctx, (int)(RQ_DEPTH + 8), NULL, s->cc, 0) : NULL;
    s->scq = s->rcq ? ibv_create_cq(ctx, (int)(SQ_DEPTH + 8), NULL, s->cc, 0) : NULL;
    if (!s->scq)
        return -1;
    set_nonblocking(s->cc->fd);
    struct ibv_qp_init_attr qa = {.send_cq = s->scq,
                                  .recv_cq = s->rcq,
                                  .qp_type = IBV_QPT_RC,
                                  .sq_sig_all = 0,
                                  .cap = {.max_send_wr = SQ_DEPTH,
                                          .max_recv_wr = RQ_DEPTH,
                                          .max_send_sge = SEND_SGE,
                                          .max_recv_sge = 1,
                                          .max_inline_data = 64}};
    if (rdma_create_qp(s->id, s->pd, &qa) != 0)
        return -1;
    s->max_inline = qa.cap.max_inline_data;
    s->max_sge = qa.cap.max_send_sge < SEND_SGE ? qa.cap.max_send_sge : SEND_SGE;
    if (register_rings(s) != 0)
        return -1;
    for (unsigned i = 0; i < RQ_DEPTH; i++)
        if (post_recv(s) != 0)
            return -1;
    s->role = CONN;
    return 0;
}

static struct ring_info local_info(struct stream *s)
{
    return (struct ring_info){.magic = PRIV_MAGIC,
                              .ring_size = s->cap,
                              .ring_addr = (uintptr_t)recv_ring(s),
                              .credit_addr = (uintptr_t)credit_in(s),
                              .rkey = s->mr->rkey,
                              .credit_rkey = s->words_mr->rkey};
}

static bool info_valid(const struct ring_info *i)
{
    uint32_t n = i->ring_size;
    return i->magic == PRIV_MAGIC && n >= RING_MIN && n <= RING_MAX && (n & (n - 1)) == 0;
}

/* Both sides write at offsets within the smaller of the two rings. */
static void agree_ring(struct stream *s) { s->ring = s->cap < s->remote.ring_size ? s->cap : s->remote.ring_size; }

static void teardown_conn(struct stream *s)
{
    if (s->id && s->id->qp)
        rdma_destroy_qp(s->id);
    unmap_rings(s);
    for (unsigned i = 0; i < s->n_sources; i++)
        ibv_dereg_mr(s->sources[i]);
    s->n_sources = 0;
    if (s->words_mr)
        ibv_dereg_mr(s->words_mr);
    if (s->scq)
        ibv_destroy_cq(s->scq);
    if (s->rcq)
        ibv_destroy_cq(s->rcq);
    if (s->cc)
        ibv_destroy_comp_channel(s->cc);
    if (s->pd)
        ibv_dealloc_pd(s->pd);
    free(s->words);
    s->words_mr = NULL, s->rcq = s->scq = NULL, s->cc = NULL, s->pd = NULL, s->words = NULL;
}

/* Post one RDMA WRITE WITH_IMM of the `nsge` pieces (`len` bytes in all)
 * to raddr. `awaited`: the caller waits for it (await_writes), so it must
 * report its completion. */
static int post_write(struct stream *s, struct ibv_sge *sge, int nsge, uint64_t raddr, uint32_t rkey, uint32_t len,
                      uint32_t imm, bool awaited)
{
    /* Completions are asked for selectively: one for every SIGNAL_EVERY
     * writes, or sooner as the send queue fills, reports them all (its
     * wr_id says how many), since an RC queue completes in order. */
    bool signal = awaited || s->unsignalled + 1 >= SIGNAL_EVERY || s->outstanding + 1 >= SQ_DEPTH / 2;
    struct ibv_send_wr wr = {.wr_id = signal ? s->unsignalled + 1 : 0,
                             .sg_list = sge,
                             .num_sge = nsge,
                             .opcode = IBV_WR_RDMA_WRITE_WITH_IMM,
                             .send_flags =
                                 (signal ? IBV_SEND_SIGNALED : 0) | (len <= s->max_inline ? IBV_SEND_INLINE : 0),
                             .imm_data = htonl(imm)},
                       *bad;
    wr.wr.rdma.remote_addr = raddr;
    wr.wr.rdma.rkey = rkey;
    if (ibv_post_send(s->id->qp, &wr, &bad) != 0) {
        s->broken = true;
        return -1;
    }
    s->outstanding++;
    s->unsignalled = signal ? 0 : s->unsignalled + 1;
    return 0;
}

/* Reap completions (never waits); lock held. Connection events are taken
 * where a wait sees their channel readable (rdma_stream_poll), not here:
 * that would cost a system call per send and receive. */
static void drain(struct stream *s)
{
    if (s->role != CONN)
        return;
    struct ibv_wc wc[32];
    int n;
    /* Our writes' completions (none to come while none is outstanding). */
    while (s->outstanding && (n = ibv_poll_cq(s->scq, 32, wc)) != 0) {
        for (int i = 0; i < n; i++)
            if (wc[i].status != IBV_WC_SUCCESS)
                s->broken = true;
            else
                s->outstanding -= (unsigned)wc[i].wr_id; /* this write and the unsignalled ones before it */
        if (n < 0) {
            s->broken = true;
            break;
        }
    }
    while ((n = ibv_poll_cq(s->rcq, 32, wc)) > 0) {
        for (int i = 0; i < n; i++) {
            if (wc[i].status != IBV_WC_SUCCESS || wc[i].opcode != IBV_WC_RECV_RDMA_WITH_IMM) {
                s->broken = true;
                continue;
            }
            uint32_t imm = ntohl(wc[i].imm_data);
            /* What the peer says it wrote must fit what we gave it. */
            if (!(imm & CREDIT_FLAG)) {
                if (imm > s->ring || s->produced + imm - s->consumed > s->ring)
                    s->broken = true;
                else
                    s->produced += imm;
            }
            if (post_recv(s) != 0)
                s->broken = true;
        }
    }
    if (n < 0)
        s->broken = true;
    uint64_t c = *credit_in(s);
    if (c < s->peer_consumed || c > s->sent)
        s->broken = true; /* credit for bytes never sent */
    else
        s->peer_consumed = c;
}

/* Tell the peer how far we read, once that is an eighth of the ring; lock
 * held. That is soon enough for a sender that waits: it waits only when
 * the whole ring is in flight, and reading all of it crosses the eighth.
 * (Returning less each time the ring runs empty cost an RDMA WRITE, and
 * the peer a completion, per message of a ping-pong.) */
static void return_credit(struct stream *s)
{
    if (s->consumed == s->credit_sent || s->broken || s->peer_gone || s->outstanding >= SQ_DEPTH - 1)
        return;
    if (s->consumed - s->credit_sent < s->ring / 8)
        return;
    *credit_out(s) = s->consumed;
    struct ibv_sge sge = {.addr = (uintptr_t)credit_out(s), .length = 8, .lkey = s->words_mr->lkey};
    if (post_write(s, &sge, 1, s->remote.credit_addr, s->remote.credit_rkey, 8, CREDIT_FLAG, false) == 0)
        s->credit_sent = s->consumed;
}

static short readiness(struct stream *s, short events)
{
    short r = 0;
    if (s->role == LISTENER) {
        if (!s->req_id) {
            int type;
            struct rdma_cm_id *id;
            while (!s->req_id && (type = next_event(s, 0, &id, &s->req_info, &s->req_info_ok, NULL)) >= 0)
                if (type == RDMA_CM_EVENT_CONNECT_REQUEST)
                    s->req_id = id;
        }
        return s->req_id ? (short)(events & POLLIN) : 0;
    }
    if (s->role != CONN)
        return (short)(events & POLLOUT) ? POLLHUP : 0;
    drain(s);
    return_credit(s);
    if ((events & POLLIN) && (s->produced > s->consumed || s->peer_gone || s->broken))
        r |= POLLIN;
    if ((events & POLLOUT) &&
        ((s->established && s->sent - s->peer_consumed < s->ring && s->outstanding + 2 < SQ_DEPTH) || s->peer_gone ||
         s->broken))
        r |= POLLOUT;
    if (s->peer_gone || s->broken)
        r |= POLLHUP;
    return r;
}

/* Arm the completion channel, so that what a wait for `events` waits for
 * wakes a poll on its descriptor: data, credit and errors (the receive
 * queue's completions: a broken queue pair flushes its posted receives),
 * and for POLLOUT room in the send queue too; lock held. */
static void arm(struct stream *s, short events)
{
    if (s->role != CONN)
        return;
    ibv_req_notify_cq(s->rcq, 0);
    if (events & POLLOUT)
        ibv_req_notify_cq(s->scq, 0);
}

/* Take a completion channel's wake-up (if this thread won it). */
static void take_wakeup(struct stream *s)
{
    struct ibv_cq *cq;
    void *ctx;
    if (ibv_get_cq_event(s->cc, &cq, &ctx) == 0)
        ibv_ack_cq_events(cq, 1);
}

/* The time-stamp counter's rate (ticks per ms; 0 until known), learnt
 * from the clock reads of the first spins: from then on a spin times itself
 * with the counter and reads no clock but a rare backstop. Where the clock
 * is no vDSO read (an emulated guest's HPET: about 1 us, and a lock in the
 * emulator that both CPUs' spins fought over) it was most of each look. */
static _Atomic uint64_t tick_rate;
static uint64_t rate_ticks0, rate_ns0; /* the first reading, under table_lock */
#define RATE_SPAN_NS 5000000u          /* measure the rate over at least this: spins need no more */
/* Looks between a timed spin's clock reads: a few ms of them. (Every 1024
 * was about one per message of a busy-polled ping-pong in the emulated
 * guest, where a clock read is a system call of 1-1.5 us.) */
#define CLOCK_BACKSTOP_LOOKS 16384u

static void learn_tick_rate(uint64_t ticks, uint64_t ns)
{
    pthread_mutex_lock(&table_lock);
    if (!rate_ns0 || ticks <= rate_ticks0 || ns <= rate_ns0) {
        rate_ticks0 = ticks; /* the first, or the counter went back: start over */
        rate_ns0 = ns;
    } else if (ns - rate_ns0 >= RATE_SPAN_NS) {
        uint64_t rate = (uint64_t)((double)(ticks - rate_ticks0) * 1e6 / (double)(ns - rate_ns0));
        if (rate)
            atomic_store_explicit(&tick_rate, rate, memory_order_relaxed);
    }
    pthread_mutex_unlock(&table_lock);
}

/* ns at `rate` counter ticks per ms, as ticks (0: the rate is not known). */
static uint64_t ticks_for(uint64_t ns, uint64_t rate)
{
    return !rate ? 0 : ns >= UINT64_MAX / rate ? UINT64_MAX : ns * rate / 1000000u;
}

/* Busy-poll the connections among fds (their completion queues and credit
 * words, no system call) for as long as the longest SO_BUSY_POLL among them
 * and at most timeout_ms: a message then reaches a waiting thread without
 * the completion channel's interrupt and wake-up. Descriptors that are not
 * ours, and connection events, are looked at by the poll() that follows.
 * Returns true once one is ready; else false, with *began_ms when the spin
 * began (0: it did not spin). */
static bool spin_for(struct pollfd *fds, nfds_t nfds, int timeout_ms, uint64_t *began_ms)
{
    struct stream *conns[8];
    short events[8];
    nfds_t n = 0;
    int64_t spin = 0;
    *began_ms = 0;
    for (nfds_t i = 0; i < nfds && n < 8; i++) {
        struct stream *s = lookup(fds[i].fd);
        if (!s || s->role != CONN)
            continue;
        conns[n] = s;
        events[n++] = fds[i].events;
        if (s->spin_ns > spin)
            spin = s->spin_ns;
    }
    if (spin <= 0 || timeout_ms == 0)
        return false;
    uint64_t limit = timeout_ms < 0 ? UINT64_MAX : (uint64_t)timeout_ms * 1000000u;
    if ((uint64_t)spin < limit)
        limit = (uint64_t)spin;
    uint64_t rate = atomic_load_explicit(&tick_rate, memory_order_relaxed);
    uint64_t limit_ticks = ticks_for(limit, rate);
    /* The time every 16 looks, the first time at the 16th: a wait that
     * finds its data at once needs none. The spin runs those 16 looks past
     * its limit. Timed with the counter, it reads the clock every
     * CLOCK_BACKSTOP_LOOKS all the same, against a counter that stopped. */
    uint64_t start = 0, start_ticks = 0;
    for (unsigned looks = 1;; looks++) {
        for (nfds_t i = 0; i < n; i++) {
            struct stream *s = conns[i];
            if (atomic_load_explicit(&s->lock_wanted, memory_order_relaxed) || pthread_mutex_trylock(&s->lock) != 0)
                continue;
            short r = readiness(s, events[i]);
            pthread_mutex_unlock(&s->lock);
            if (r)
                return true;
        }
        if (looks % 16 != 0)
            continue;
        uint64_t ticks = dmaq__ticks();
        if (!start_ticks)
            start_ticks = ticks;
        if (limit_ticks && looks % CLOCK_BACKSTOP_LOOKS != 0 && ticks - start_ticks < limit_ticks)
            continue; /* (a counter that went back ends the spin: harmless) */
        uint64_t now = dmaq__mono_ns();
        if (!start)
            start = now; /* with start_ticks, at the same look unless the rate was known */
        if (!rate) {
            learn_tick_rate(ticks, now);
            /* Once learnt, the rest of this spin is timed by the counter
             * too (a first spin can be long: a peer setting up). */
            rate = atomic_load_explicit(&tick_rate, memory_order_relaxed);
            limit_ticks = ticks_for(limit, rate);
        }
        if (now - start >= limit || (limit_ticks && ticks - start_ticks >= limit_ticks)) {
            uint64_t spun = now - start;
            if (limit_ticks) { /* the counter's measure, unless it jumped */
                uint64_t t = ticks - start_ticks;
                spun = t > UINT64_MAX / 1000000u || t * 1000000u / rate > now ? 0 : t * 1000000u / rate;
            }
            *began_ms = (now - spun) / 1000000u;
            return false;
        }
    }
}

/* rdma_stream_poll, busy-polling first if `spin`. */
static int poll_streams(struct pollfd *fds, nfds_t nfds, int timeout_ms, bool spin)
{
    struct pollfd sys[16];
    if (nfds > 8)
        return fail(EINVAL);
    uint64_t began = 0;
    if (spin && spin_for(fds, nfds, timeout_ms, &began)) {
        /* Ready while spinning: when all the descriptors are ours, report
         * it without arming the completion queues or a poll() (system
         * calls both, and the arming a wake-up to take later). */
        int ready = 0;
        nfds_t i = 0;
        for (struct stream *s; i < nfds && (s = lookup(fds[i].fd)); i++) {
            stream_lock(s);
            fds[i].revents = readiness(s, fds[i].events);
            pthread_mutex_unlock(&s->lock);
            ready += fds[i].revents != 0;
        }
        if (i == nfds && ready)
            return ready;
        timeout_ms = 0; /* the loop below reports what is, without waiting */
    }
    /* (A timeout of 0 never waits below: no clock for it.) */
    uint64_t deadline = timeout_ms <= 0 ? UINT64_MAX : (began ? began : now_ms()) + (uint64_t)timeout_ms;
    for (;;) {
        int ready = 0;
        nfds_t k = 0;
        for (nfds_t i = 0; i < nfds; i++) {
            struct stream *s = lookup(fds[i].fd);
            fds[i].revents = 0;
            if (!s) {
                sys[k++] = (struct pollfd){fds[i].fd, fds[i].events, 0};
                continue;
            }
            stream_lock(s);
            arm(s, fds[i].events);
            fds[i].revents = readiness(s, fds[i].events);
            pthread_mutex_unlock(&s->lock);
            ready += fds[i].revents != 0;
            sys[k++] = (struct pollfd){s->ec->fd, POLLIN, 0};
            if (s->role == CONN)
                sys[k++] = (struct pollfd){s->cc->fd, POLLIN, 0};
        }
        int wait = -1;
        if (ready || timeout_ms == 0) {
            wait = 0;
        } else if (deadline != UINT64_MAX) {
            uint64_t now = now_ms();
            wait = now >= deadline ? 0 : (int)(deadline - now);
        }
        int n = poll(sys, k, wait);
        /* The plain descriptors' results; ours are looked at again above. */
        k = 0;
        for (nfds_t i = 0; i < nfds; i++) {
            struct stream *s = lookup(fds[i].fd);
            if (!s) {
                fds[i].revents = sys[k++].revents;
                ready += fds[i].revents != 0;
                continue;
            }
            bool events = sys[k++].revents & POLLIN;
            if (s->role != CONN)
                continue;
            if (events) {
                stream_lock(s);
                take_conn_events(s);
                pthread_mutex_unlock(&s->lock);
            }
            if (sys[k++].revents & POLLIN)
                take_wakeup(s);
        }
        if (ready || wait == 0)
            return ready;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

int rdma_stream_poll(struct pollfd *fds, nfds_t nfds, int timeout_ms)
{
    return poll_streams(fds, nfds, timeout_ms, true);
}

int rdma_stream_poll_idle(struct pollfd *fds, nfds_t nfds, int timeout_ms)
{
    return poll_streams(fds, nfds, timeout_ms, false);
}

/* Wait until `events` or the deadline (ms since boot; UINT64_MAX: none). */
static bool wait_for(struct stream *s, short events, uint64_t deadline)
{
    struct pollfd p = {s->fd, events, 0};
    uint64_t now = now_ms();
    int t = deadline == UINT64_MAX ? -1 : now >= deadline ? 0 : (int)(deadline - now);
    return rdma_stream_poll(&p, 1, t) > 0;
}

/* ---- the calls of a socket ---- */

int rdma_stream_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    (void)len;
    struct stream *s = lookup(fd);
    if (!s)
        return fail(EBADF);
    return rdma_bind_addr(s->id, (struct sockaddr *)addr);
}

int rdma_stream_listen(int fd, int backlog)
{
    struct stream *s = lookup(fd);
    if (!s)
        return fail(EBADF);
    if (rdma_listen(s->id, backlog) != 0)
        return -1;
    s->role = LISTENER;
    return 0;
}

int rdma_stream_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    (void)len;
    struct stream *s = lookup(fd);
    if (!s)
        return fail(EBADF);
    int type, status = 0, t = s->timeout_ms;
    if (rdma_resolve_addr(s->id, NULL, (struct sockaddr *)addr, t) != 0)
        return -1;
    if ((type = next_event(s, t, NULL, NULL, NULL, &status)) != RDMA_CM_EVENT_ADDR_RESOLVED)
        return fail(type < 0 ? ETIMEDOUT : EHOSTUNREACH);
    if (rdma_resolve_route(s->id, t) != 0)
        return -1;
    if ((type = next_event(s, t, NULL, NULL, NULL, &status)) != RDMA_CM_EVENT_ROUTE_RESOLVED)
        return fail(type < 0 ? ETIMEDOUT : EHOSTUNREACH);
    if (setup_conn(s) != 0) {
        int err = errno;
        teardown_conn(s);
        s->role = FRESH;
        return fail(err ? err : ENOMEM);
    }
    struct ring_info mine = local_info(s);
    /* retry_count 7 and rnr_retry_count 7: a busy peer is waited for; a
     * gone one is found by the channel's heartbeats and timeouts. */
    struct rdma_conn_param p = {
        .private_data = &mine, .private_data_len = sizeof mine, .retry_count = 7, .rnr_retry_count = 7};
    if (rdma_connect(s->id, &p) != 0)
        return -1;
    bool ok = false;
    type = next_event(s, t, NULL, &s->remote, &ok, &status);
    if (type == RDMA_CM_EVENT_ESTABLISHED && ok && info_valid(&s->remote)) {
        agree_ring(s);
        s->established = true;
        return 0;
    }
    s->broken = true;
    if (type == RDMA_CM_EVENT_REJECTED) /* by a dmaq listener with its reason, or by nobody listening */
        return fail(ok && s->remote.magic == REJECT_MAGIC && s->remote.ring_size ? (int)s->remote.ring_size
                                                                                 : ECONNREFUSED);
    if (type == RDMA_CM_EVENT_ESTABLISHED)
        return fail(EPROTO); /* not a dmaq peer */
    return fail(type < 0 ? ETIMEDOUT : EHOSTUNREACH);
}

/* Refuse a connection request, telling the peer the errno of why. */
static void refuse(struct rdma_cm_id *id, int err)
{
    struct ring_info why = {.magic = REJECT_MAGIC, .ring_size = (uint32_t)err};
    rdma_reject(id, &why, sizeof why);
}

int rdma_stream_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    struct stream *l = lookup(fd);
    if (!l || l->role != LISTENER)
        return fail(EINVAL);
    stream_lock(l);
    while (!readiness(l, POLLIN)) {
        pthread_mutex_unlock(&l->lock);
        if (l->nonblock)
            return fail(EAGAIN);
        wait_for(l, POLLIN, UINT64_MAX);
        stream_lock(l);
    }
    struct rdma_cm_id *id = l->req_id;
    struct ring_info info = l->req_info;
    bool info_ok = l->req_info_ok;
    l->req_id = NULL;
    pthread_mutex_unlock(&l->lock);

    struct stream *s = calloc(1, sizeof *s);
    if (!s || !(s->ec = rdma_create_event_channel()) || rdma_migrate_id(id, s->ec) != 0) {
        refuse(id, ENOMEM);
        rdma_destroy_id(id);
        if (s && s->ec)
            rdma_destroy_event_channel(s->ec);
        free(s);
        return fail(ENOMEM);
    }
    adopt_channel(s);
    s->id = id;
    s->remote = info;
    bool peer_ok = info_ok && info_valid(&info) && s->fd < MAX_FD;
    bool ok = peer_ok && setup_conn(s) == 0;
    int why = peer_ok ? (errno ? errno : ENOMEM) : EPROTO;
    struct ring_info mine;
    if (ok) {
        agree_ring(s);
        mine = local_info(s);
        struct rdma_conn_param p = {
            .private_data = &mine, .private_data_len = sizeof mine, .retry_count = 7, .rnr_retry_count = 7};
        /* ESTABLISHED (the peer's RTU) is not waited for here: under load
         * it can take the CM's retry timeout, and meanwhile every other
         * connection request would wait behind this one. The first send
         * waits for it instead (until then the peer's queue pair may not
         * take writes, and a write would wait out a retransmission); a
         * connection that never completes ends with an event
         * take_conn_events sees. */
        ok = rdma_accept(id, &p) == 0;
    } else {
        refuse(id, why); /* not a dmaq peer (EPROTO), or no resources (locked memory, most often) */
    }
    if (!ok) {
        teardown_conn(s);
        rdma_destroy_id(id);
        rdma_destroy_event_channel(s->ec);
        free(s);
        return fail(ECONNABORTED);
    }
    if (addr && len) {
        struct sockaddr *peer = rdma_get_peer_addr(id);
        socklen_t n = peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
        memcpy(addr, peer, n < *len ? n : *len);
        *len = n;
    }
    register_stream(s);
    return s->fd;
}

/* Where a gathering send has got to in its buffers. */
struct gather {
    const struct iovec *iov; /* the buffer being taken */
    size_t off;              /* bytes of it already taken */
};

/* The registered source that holds all of [p, p + n), or NULL. */
static struct ibv_mr *source_of(struct stream *s, const uint8_t *p, size_t n)
{
    for (unsigned i = 0; i < s->n_sources; i++) {
        const uint8_t *base = s->sources[i]->addr;
        if (p >= base && n <= s->sources[i]->length && (size_t)(p - base) <= s->sources[i]->length - n)
            return s->sources[i];
    }
    return NULL;
}

/* Describe the gather's next `n` bytes as the pieces of one write to ring
 * offset `off`, at most max_sge of them: a piece of ZERO_COPY_MIN bytes or
 * more that lies in a registered source is taken where it is (*in_place
 * set); the rest is copied into the send ring at its offset, runs of it
 * merged into one piece. Returns the bytes described: n, or fewer when the
 * pieces ran out. */
static uint32_t describe(struct stream *s, struct gather *g, uint32_t off, uint32_t n, struct ibv_sge *sge, int *nsge,
                         bool *in_place)
{
    uint32_t taken = 0;
    int k = 0;
    while (taken < n) {
        size_t piece = g->iov->iov_len - g->off;
        if (piece == 0) {
            g->iov++;
            g->off = 0;
            continue;
        }
        if (piece > n - taken)
            piece = n - taken;
        const uint8_t *src = (const uint8_t *)g->iov->iov_base + g->off;
        struct ibv_mr *mr = piece >= ZERO_COPY_MIN ? source_of(s, src, piece) : NULL;
        uint8_t *stage = send_ring(s) + off + taken;
        bool extend =
            !mr && k > 0 && sge[k - 1].lkey == s->mr->lkey && sge[k - 1].addr + sge[k - 1].length == (uintptr_t)stage;
        if (!extend && k == (int)s->max_sge)
            break;
        if (mr) {
            sge[k++] = (struct ibv_sge){.addr = (uintptr_t)src, .length = (uint32_t)piece, .lkey = mr->lkey};
            *in_place = true;
            s->sent_in_place += piece;
        } else {
            memcpy(stage, src, piece);
            if (extend)
                sge[k - 1].length += (uint32_t)piece;
            else
                sge[k++] = (struct ibv_sge){.addr = (uintptr_t)stage, .length = (uint32_t)piece, .lkey = s->mr->lkey};
        }
        taken += (uint32_t)piece;
        g->off += piece;
        if (g->off == g->iov->iov_len) {
            g->iov++;
            g->off = 0;
        }
    }
    *nsge = k;
    return taken;
}

/* Wait until every write posted has completed (lock held): the caller may
 * reuse a source's bytes once the send returns. Completions come as the
 * NIC finishes (rxe finishes inside the post), so this polls; past the
 * stream's timeout the connection is given up as broken. */
static void await_writes(struct stream *s)
{
    uint64_t deadline = now_ms() + (uint64_t)s->timeout_ms;
    while (s->outstanding && !s->broken) {
        drain(s);
        if (s->outstanding && now_ms() >= deadline)
            s->broken = true;
    }
}

/* Send the `count` buffers of iov as one run of bytes: as few writes as the
 * ring's end and the peer's credit allow, whatever the buffers' sizes. */
static ssize_t send_gathered(int fd, const struct iovec *iov, size_t count, int flags)
{
    size_t len = 0;
    for (size_t i = 0; i < count; i++)
        len += iov[i].iov_len;
    struct gather g = {iov, 0};
    struct stream *s = lookup(fd);
    if (!s || s->role != CONN)
        return fail(s ? ENOTCONN : EBADF);
    size_t done = 0;
    bool nonblock = s->nonblock || (flags & MSG_DONTWAIT);
    uint64_t deadline = UINT64_MAX;
    bool in_place = false; /* a write takes bytes from a source: await it */
    stream_lock(s);
    if (flags & RDMA_STREAM_WHOLE) {
        drain(s);
        /* Room for every write it may take: its buffers cut at the ring's
         * end, one write each where the device gathers no more (5 leaves
         * the loop's own check of the send queue well clear). */
        if (!s->broken && !s->peer_gone &&
            (!s->established || len > s->ring - (s->sent - s->peer_consumed) || s->outstanding + 5 >= SQ_DEPTH)) {
            pthread_mutex_unlock(&s->lock);
            return fail(EAGAIN);
        }
        nonblock = true;
    }
    while (done < len) {
        drain(s);
        if (s->broken || s->peer_gone)
            break;
        uint64_t space = s->ring - (s->sent - s->peer_consumed);
        if (space == 0 || s->outstanding + 2 >= SQ_DEPTH || !s->established) {
            if (in_place) { /* this may return: the sources' bytes must be free by then */
                await_writes(s);
                in_place = false;
                continue;
            }
            pthread_mutex_unlock(&s->lock);
            if (nonblock)
                return done ? (ssize_t)done : fail(EAGAIN);
            if (deadline == UINT64_MAX)
                deadline = now_ms() + (uint64_t)s->timeout_ms;
            bool woke = wait_for(s, POLLOUT, deadline);
            stream_lock(s);
            if (!woke && now_ms() >= deadline) {
                pthread_mutex_unlock(&s->lock);
                return done ? (ssize_t)done : fail(ETIMEDOUT); /* TCP_USER_TIMEOUT's meaning */
            }
            continue;
        }
        deadline = UINT64_MAX; /* progress */
        uint32_t off = (uint32_t)(s->sent % s->ring);
        uint32_t n = (uint32_t)(len - done < space ? len - done : space);
        if (n > s->ring - off)
            n = s->ring - off; /* to the ring's end; the rest from its start next */
        struct ibv_sge sge[SEND_SGE];
        int nsge;
        n = describe(s, &g, off, n, sge, &nsge, &in_place);
        /* Once a write takes bytes in place, every later one reports its
         * completion: await_writes needs the last write to. */
        if (post_write(s, sge, nsge, s->remote.ring_addr + off, s->remote.rkey, n, n, in_place) != 0)
            break;
        s->sent += n;
        done += n;
    }
    if (in_place)
        await_writes(s);
    bool failed = s->broken || s->peer_gone;
    pthread_mutex_unlock(&s->lock);
    if (done)
        return (ssize_t)done;
    return failed ? fail(EPIPE) : 0;
}

ssize_t rdma_stream_send(int fd, const void *buf, size_t len, int flags)
{
    struct iovec v = {(void *)buf, len};
    return send_gathered(fd, &v, 1, flags);
}

ssize_t rdma_stream_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    return send_gathered(fd, msg->msg_iov, msg->msg_iovlen, flags);
}

ssize_t rdma_stream_recv(int fd, void *buf, size_t len, int flags)
{
    struct stream *s = lookup(fd);
    if (!s || s->role != CONN)
        return fail(s ? ENOTCONN : EBADF);
    bool nonblock = s->nonblock || (flags & MSG_DONTWAIT);
    stream_lock(s);
    if (s->borrowed) {
        pthread_mutex_unlock(&s->lock);
        return fail(EBUSY); /* the borrowed bytes come first */
    }
    for (;;) {
        drain(s);
        uint64_t avail = s->produced - s->consumed;
        if (avail) {
            uint32_t off = (uint32_t)(s->consumed % s->ring);
            size_t n = len < avail ? len : (size_t)avail;
            size_t first = n < s->ring - off ? n : s->ring - off;
            memcpy(buf, recv_ring(s) + off, first);
            memcpy((uint8_t *)buf + first, recv_ring(s), n - first);
            s->consumed += n;
            return_credit(s);
            pthread_mutex_unlock(&s->lock);
            return (ssize_t)n;
        }
        if (s->peer_gone || s->broken) {
            pthread_mutex_unlock(&s->lock);
            return s->broken ? fail(ECONNRESET) : 0;
        }
        pthread_mutex_unlock(&s->lock);
        if (nonblock)
            return fail(EAGAIN);
        wait_for(s, POLLIN, UINT64_MAX);
        stream_lock(s);
    }
}

ssize_t rdma_stream_borrow(int fd, const void **data, void **token)
{
    struct stream *s = lookup(fd);
    if (!s || s->role != CONN)
        return fail(s ? ENOTCONN : EBADF);
    stream_lock(s);
    drain(s);
    ssize_t n;
    uint64_t avail = s->produced - s->consumed;
    if (s->borrowed) {
        n = fail(EBUSY);
    } else if (avail) {
        uint32_t off = (uint32_t)(s->consumed % s->ring);
        n = (ssize_t)(avail < s->ring - off ? avail : s->ring - off);
        *data = recv_ring(s) + off;
        *token = s;
        s->borrowed = true;
    } else if (s->broken) {
        n = fail(ECONNRESET);
    } else {
        n = s->peer_gone ? 0 : fail(EAGAIN);
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* What rdma_stream_close leaves to the end of a borrow. */
static void close_conn(struct stream *s)
{
    /* Whether big messages went in place (or, say, RLIMIT_MEMLOCK kept the
     * rings they come from unregistered, and they were copied). */
    if (s->role == CONN && secure_getenv("DMAQ_RDMA_STATS"))
        fprintf(stderr, "dmaq rdma: connection closed: %llu bytes sent, %llu of them in place from registered memory\n",
                (unsigned long long)s->sent, (unsigned long long)s->sent_in_place);
    teardown_conn(s);
    rdma_destroy_id(s->id); /* every event of it was acknowledged as it came */
    rdma_destroy_event_channel(s->ec);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void rdma_stream_give_back(void *token, size_t used)
{
    struct stream *s = token;
    stream_lock(s);
    if (!s->closed && used <= s->produced - s->consumed) {
        s->consumed += used;
        return_credit(s);
    }
    s->borrowed = false;
    bool closed = s->closed;
    pthread_mutex_unlock(&s->lock);
    if (closed)
        close_conn(s);
}

int rdma_stream_shutdown(int fd, int how)
{
    (void)how;
    struct stream *s = lookup(fd);
    if (!s)
        return fail(EBADF);
    stream_lock(s);
    if (s->role == CONN && !s->peer_gone) {
        rdma_disconnect(s->id);
        s->peer_gone = true;
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int rdma_stream_close(int fd)
{
    struct stream *s = lookup(fd);
    if (!s)
        return fail(EBADF);
    pthread_mutex_lock(&table_lock);
    table[fd] = NULL;
    pthread_mutex_unlock(&table_lock);
    if (s->role == CONN)
        rdma_disconnect(s->id);
    if (s->req_id) {
        rdma_reject(s->req_id, NULL, 0);
        rdma_destroy_id(s->req_id);
    }
    stream_lock(s);
    s->closed = s->borrowed; /* then the borrower's give-back frees it */
    pthread_mutex_unlock(&s->lock);
    if (!s->closed)
        close_conn(s);
    return 0;
}

/* Would pinning `len` more bytes leave half the locked-memory limit for
 * the rings of connections to come? Unlimited, yes; otherwise compare
 * against what this process has pinned already (VmPin). */
static bool may_pin(size_t len)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        return false;
    if (rl.rlim_cur == RLIM_INFINITY)
        return true;
    unsigned long long pinned_kb = 0;
    char line[128];
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f) && sscanf(line, "VmPin: %llu kB", &pinned_kb) != 1)
        ;
    if (f)
        fclose(f);
    return pinned_kb * 1024 + len <= rl.rlim_cur / 2;
}

int rdma_stream_add_source(int fd, const void *base, size_t len)
{
    struct stream *s = lookup(fd);
    if (!s)
        return fail(EBADF);
    stream_lock(s);
    int rc = 0;
    if (s->role != CONN)
        rc = fail(ENOTCONN);
    else if (s->n_sources == MAX_SOURCES || !may_pin(len))
        rc = fail(ENOSPC);
    else if (!(s->sources[s->n_sources] = ibv_reg_mr(s->pd, (void *)base, len, 0)))
        rc = -1; /* errno from ibv_reg_mr */
    else
        s->n_sources++;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int rdma_stream_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    struct stream *s = lookup(fd);
    if (!s)
        return fail(EBADF);
    if (level == IPPROTO_TCP && name == TCP_USER_TIMEOUT && len >= sizeof(unsigned)) {
        unsigned ms = *(const unsigned *)val;
        s->timeout_ms = ms ? (int)ms : DEFAULT_TIMEOUT_MS;
    }
    if (level == SOL_SOCKET && name == SO_BUSY_POLL && len >= sizeof(int)) {
        int us = *(const int *)val;
        s->spin_ns = us == INT32_MAX ? INT64_MAX : (int64_t)us * 1000;
    }
    return 0; /* SO_REUSEADDR, TCP_NODELAY: nothing to do */
}

int rdma_stream_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    struct stream *s = lookup(fd);
    if (!s)
        return fail(EBADF);
    if (level != SOL_SOCKET || name != SO_ERROR || *len < sizeof(int))
        return fail(ENOPROTOOPT);
    *(int *)val = s->err;
    s->err = 0;
    return 0;
}

int rdma_stream_fcntl(int fd, int cmd, ...)
{
    struct stream *s = lookup(fd);
    if (!s)
        return fail(EBADF);
    if (cmd == F_GETFL)
        return s->nonblock ? O_NONBLOCK : 0;
    if (cmd != F_SETFL)
        return fail(EINVAL);
    va_list ap;
    va_start(ap, cmd);
    int flags = va_arg(ap, int);
    va_end(ap);
    s->nonblock = (flags & O_NONBLOCK) != 0;
    return 0;
}
