/* Sockets, addresses, keys and the private rings' directory, for the tcp://
 * transport. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../util/clock.h"
#include "tcp.h"

int tcp_parse_address(const char *address, struct tcp_addr *a)
{
    memset(a, 0, sizeof *a);
    const char *host = address, *host_end, *port;
    if (*host == '[') { /* [v6]:port */
        host_end = strchr(host, ']');
        if (!host_end || host_end[1] != ':')
            return dmaq_error_set(DMAQ_EINVAL, NET_SCHEME " address '%.256s': expected [IPV6]:PORT/NAME", address);
        host++;
        port = host_end + 2;
    } else {
        host_end = strchr(host, ':');
        const char *slash = strchr(host, '/');
        if (!host_end || (slash && slash < host_end))
            return dmaq_error_set(DMAQ_EINVAL,
                                  NET_SCHEME " address '%.256s' has no port (expected " NET_SCHEME "://HOST:PORT/NAME)",
                                  address);
        port = host_end + 1;
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len == 0 || host_len >= sizeof a->host)
        return dmaq_error_set(DMAQ_EINVAL, NET_SCHEME " address '%.256s': host is empty or too long", address);
    const char *slash = strchr(port, '/');
    if (!slash)
        return dmaq_error_set(DMAQ_EINVAL, NET_SCHEME " address '%.256s' has no channel name (expected HOST:PORT/NAME)",
                              address);
    size_t port_len = (size_t)(slash - port);
    char *end;
    unsigned long p = strtoul(port, &end, 10);
    if (port_len == 0 || port_len > 5 || end != slash || p == 0 || p > 65535)
        return dmaq_error_set(DMAQ_EINVAL, NET_SCHEME " address '%.256s': port must be a number from 1 to 65535",
                              address);
    const char *name = slash + 1;
    size_t name_len = strnlen(name, TCP_NAME_MAX + 1);
    if (name_len == 0 || name_len > TCP_NAME_MAX)
        return dmaq_error_set(DMAQ_EINVAL,
                              NET_SCHEME " address '%.256s': channel name is empty or longer than %u bytes", address,
                              TCP_NAME_MAX);
    for (size_t i = 0; i < name_len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.'))
            return dmaq_error_set(DMAQ_EINVAL,
                                  NET_SCHEME " address '%.256s': channel name has character 0x%02x; use letters, "
                                  "digits, '_', '-' and '.'",
                                  address, (unsigned char)c);
    }
    memcpy(a->host, host, host_len);
    memcpy(a->port, port, port_len);
    memcpy(a->name, name, name_len);
    return 0;
}

int tcp_conf_from(const dmaq_options *o, struct tcp_conf *c)
{
    memset(c, 0, sizeof *c);
    c->timeout_ns = o->peer_timeout_ns > 0 ? o->peer_timeout_ns : TCP_DEFAULT_TIMEOUT_NS;
    c->spin_ns = dmaq__spin_ns(o->spin_ns);
    if (o->peer_timeout_ns < 0)
        return dmaq_error_set(DMAQ_EINVAL, "peer_timeout_ns is negative");
    if (c->timeout_ns < 4 * TCP_SLICE_NS)
        return dmaq_error_set(DMAQ_EINVAL, "peer_timeout_ns %lld is below the minimum of %lld ns",
                              (long long)o->peer_timeout_ns, 4 * TCP_SLICE_NS);
    if (o->key) {
        size_t n = strnlen(o->key, 1025);
        if (n == 0 || n > 1024)
            return dmaq_error_set(DMAQ_EINVAL, "key must be 1 to 1024 bytes");
        if (sodium_init() < 0)
            return dmaq_error_set(DMAQ_ESYS, "libsodium failed to initialise");
        crypto_hash_sha256(c->key, (const unsigned char *)o->key, n);
        c->has_key = true;
    }
    return 0;
}

int64_t tcp_ping_every(const struct tcp_conf *c, uint32_t peer_timeout_ms)
{
    int64_t t = c->timeout_ns, peer = (int64_t)peer_timeout_ms * 1000000;
    return (peer > 0 && peer < t ? peer : t) / 4;
}

void tcp_tune(int fd, const struct tcp_conf *c)
{
    int one = 1;
    net_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Data unacknowledged this long means the path is gone (a cut cable
     * sends no RST); heartbeats make sure there is always data when idle. */
    unsigned ms = (unsigned)(c->timeout_ns / 1000000);
    net_setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
#ifdef DMAQ_NET_RDMA
    /* The handle's spin_ns, for the waits on the queue pair (the kernel's
     * SO_BUSY_POLL is another thing, and TCP is left alone). */
    int us = c->spin_ns >= (int64_t)INT32_MAX * 1000 ? INT32_MAX : (int)(c->spin_ns / 1000);
    net_setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &us, sizeof us);
#endif
}

static int resolve(const struct tcp_addr *a, bool passive, struct addrinfo **out)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = passive ? AI_PASSIVE | AI_NUMERICSERV : AI_NUMERICSERV};
    int rc = getaddrinfo(a->host, a->port, &hints, out);
    if (rc != 0)
        return dmaq_error_set(DMAQ_EINVAL, "cannot resolve '%s': %s", a->host, gai_strerror(rc));
    return 0;
}

int tcp_dial(const struct tcp_addr *a, const struct tcp_conf *c)
{
    int64_t timeout_ns = c->timeout_ns;
    struct addrinfo *ai;
    int rc = resolve(a, false, &ai);
    if (rc < 0)
        return rc;
    int err = 0;
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        int fd = net_socket(p->ai_family, p->ai_socktype | NET_SOCKET_FLAGS, p->ai_protocol);
        if (fd < 0 || net_fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
            err = errno;
            if (fd >= 0)
                net_close(fd);
            continue;
        }
        if (net_connect(fd, p->ai_addr, p->ai_addrlen) == 0 || errno == EINPROGRESS) {
            struct pollfd pfd = {fd, POLLOUT, 0};
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (net_poll(&pfd, 1, (int)(timeout_ns / 1000000)) == 1 &&
                net_getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
                freeaddrinfo(ai);
                net_fcntl(fd, F_SETFL, net_fcntl(fd, F_GETFL) & ~O_NONBLOCK);
                tcp_tune(fd, c);
                return fd;
            }
            err = soerr ? soerr : ETIMEDOUT;
        } else {
            err = errno;
        }
        net_close(fd);
    }
    freeaddrinfo(ai);
    if (err == ECONNREFUSED)
        return dmaq_error_set(DMAQ_ENOENT, "nothing listens at %s:%s (is the binding side up?)", a->host, a->port);
    if (err == ETIMEDOUT)
        return dmaq_error_set(DMAQ_ETIMEDOUT, "connecting to %s:%s timed out", a->host, a->port);
#ifdef DMAQ_NET_RDMA
    /* This process, or the host (which says so in its refusal), could not
     * register a connection's rings: locked memory is what runs out. */
    if (err == ENOMEM)
        return dmaq_error_set(DMAQ_ENOMEM,
                              "cannot connect to %s:%s: no memory to register the connection's rings (64 KiB each "
                              "way at the least) here or at the host; locked memory (RLIMIT_MEMLOCK, ulimit -l) is "
                              "too low",
                              a->host, a->port);
    if (err == EPROTO)
        return dmaq_error_set(DMAQ_ESYS, "cannot connect to %s:%s: the peer is not a dmaq rdma:// endpoint", a->host,
                              a->port);
#endif
    return dmaq_error_set(DMAQ_ESYS, "cannot connect to %s:%s: %s", a->host, a->port, strerror(err));
}

int tcp_listen(const struct tcp_addr *a)
{
    struct addrinfo *ai;
    int rc = resolve(a, true, &ai);
    if (rc < 0)
        return rc;
    int err = 0;
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        int fd = net_socket(p->ai_family, p->ai_socktype | NET_SOCKET_FLAGS, p->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        net_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (net_bind(fd, p->ai_addr, p->ai_addrlen) == 0 && net_listen(fd, 128) == 0) {
            freeaddrinfo(ai);
            return fd;
        }
        err = errno;
        net_close(fd);
    }
    freeaddrinfo(ai);
    if (err == EACCES)
        return dmaq_error_set(DMAQ_EACCES, "may not listen on %s:%s: %s", a->host, a->port, strerror(err));
    return dmaq_error_set(DMAQ_ESYS, "cannot listen on %s:%s: %s", a->host, a->port, strerror(err));
}

/* Step over the first n bytes of the iovecs, and any empty ones after them. */
static void skip_sent(struct iovec **iov, int *count, size_t n)
{
    for (; *count; ++*iov, --*count) {
        if (n < (*iov)->iov_len) {
            (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + n;
            (*iov)->iov_len -= n;
            return;
        }
        n -= (*iov)->iov_len;
    }
}

int tcp_writev_all(int fd, struct iovec *iov, int count, int64_t timeout_ns, const atomic_bool *stop)
{
    uint64_t deadline = 0; /* read the clock only once the connection makes us wait */
    skip_sent(&iov, &count, 0);
    while (count) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)count};
        ssize_t n = net_sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            skip_sent(&iov, &count, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return -1;
        if (!deadline)
            deadline = dmaq__deadline(timeout_ns);
        if ((stop && atomic_load(stop)) || dmaq__mono_ns() >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pfd = {fd, POLLOUT, 0};
        net_poll(&pfd, 1, (int)(TCP_SLICE_NS / 1000000));
    }
    return 0;
}

int tcp_write_all(int fd, const void *buf, size_t len, int64_t timeout_ns, const atomic_bool *stop)
{
    struct iovec v = {(void *)buf, len};
    return tcp_writev_all(fd, &v, 1, timeout_ns, stop);
}

long tcp_read_some(int fd, uint8_t *buf, size_t *len, size_t cap, int64_t wait_ns)
{
    for (;;) {
        ssize_t n = net_recv(fd, buf + *len, cap - *len, MSG_DONTWAIT);
        if (n > 0) {
            *len += (size_t)n;
            return n;
        }
        if (n == 0) {
            errno = 0;
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -1;
        if (wait_ns <= 0)
            return 0;
        struct pollfd pfd = {fd, POLLIN, 0};
        int rc = net_poll(&pfd, 1, (int)((wait_ns + 999999) / 1000000));
        if (rc == 0)
            return 0;
        wait_ns = 0; /* readable (or an error to collect): one more recv */
    }
}

long tcp_read_frame(int fd, uint8_t *buf, size_t *len, size_t cap, enum tcp_sender sender, uint64_t max_message,
                    struct tcp_frame *f, int64_t timeout_ns, const char *what)
{
    uint64_t deadline = dmaq__deadline(timeout_ns);
    for (;;) {
        const char *why = NULL;
        long n = tcp_frame_next(buf, *len, sender, max_message, f, &why);
        if (n > 0)
            return n;
        if (n < 0)
            return dmaq_error_set(DMAQ_ECORRUPT, "%s: malformed frame: %s", what, why);
        if (*len == cap)
            return dmaq_error_set(DMAQ_ECORRUPT, "%s: frame larger than the receive buffer", what);
        int64_t left = dmaq__timeout_left(timeout_ns, deadline);
        if (timeout_ns > 0 && left == 0)
            return dmaq_error_set(DMAQ_ETIMEDOUT, "%s: no answer within %lld ms", what,
                                  (long long)(timeout_ns / 1000000));
        if (tcp_read_some(fd, buf, len, cap, left) < 0)
            return dmaq_error_set(DMAQ_ESYS, "%s: connection lost (%s)", what, errno ? strerror(errno) : "closed");
    }
}

void tcp_consume(uint8_t *buf, size_t *len, size_t n)
{
    memmove(buf, buf + n, *len - n);
    *len -= n;
}

int tcp_drain_frames(uint8_t *buf, size_t *len, enum tcp_sender sender, uint64_t max_message,
                     int (*fn)(void *ctx, const struct tcp_frame *f), void *ctx, const char **why)
{
    size_t off = 0;
    long n;
    struct tcp_frame f;
    int rc = 0;
    while ((n = tcp_frame_next(buf + off, *len - off, sender, max_message, &f, why)) > 0) {
        if (fn(ctx, &f) != 0) {
            rc = 1;
            break;
        }
        off += (size_t)n;
    }
    if (n < 0)
        return -1;
    tcp_consume(buf, len, off);
    return rc;
}

void tcp_random(void *buf, size_t len)
{
    if (sodium_init() < 0) /* cannot happen on Linux with getrandom; a weak nonce is still unique enough */
        memset(buf, 0, len);
    randombytes_buf(buf, len);
}

void tcp_hello_mac(const struct tcp_conf *c, const uint8_t host_nonce[TCP_NONCE], const struct tcp_hello *h,
                   uint8_t out[TCP_MAC])
{
    memset(out, 0, TCP_MAC);
    if (!c->has_key)
        return;
    crypto_auth_hmacsha256_state st;
    uint8_t role[4];
    tcp_put32(role, h->role);
    crypto_auth_hmacsha256_init(&st, c->key, sizeof c->key);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)"dmaq-hello", 10);
    crypto_auth_hmacsha256_update(&st, host_nonce, TCP_NONCE);
    crypto_auth_hmacsha256_update(&st, h->nonce, TCP_NONCE);
    crypto_auth_hmacsha256_update(&st, role, 4);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)h->name, h->name_len);
    crypto_auth_hmacsha256_final(&st, out);
}

void tcp_welcome_mac(const struct tcp_conf *c, const uint8_t host_nonce[TCP_NONCE],
                     const uint8_t peer_nonce[TCP_NONCE], uint8_t out[TCP_MAC])
{
    memset(out, 0, TCP_MAC);
    if (!c->has_key)
        return;
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, c->key, sizeof c->key);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)"dmaq-welcome", 12);
    crypto_auth_hmacsha256_update(&st, peer_nonce, TCP_NONCE);
    crypto_auth_hmacsha256_update(&st, host_nonce, TCP_NONCE);
    crypto_auth_hmacsha256_final(&st, out);
}

bool tcp_mac_equal(const uint8_t a[TCP_MAC], const uint8_t b[TCP_MAC]) { return sodium_memcmp(a, b, TCP_MAC) == 0; }

static pthread_once_t ring_dir_once = PTHREAD_ONCE_INIT;
static char ring_dir[300];
static int ring_dir_err;

static void make_ring_dir(void)
{
    const char *base = secure_getenv("DMAQ_SHM_DIR");
    if (!base || base[0] != '/')
        base = "/dev/shm";
    snprintf(ring_dir, sizeof ring_dir, "%.200s/dmaq-" NET_SCHEME "-%u", base, (unsigned)getuid());
    if (mkdir(ring_dir, 0700) < 0 && errno != EEXIST)
        ring_dir_err = errno;
    else
        dmaq_channel_gc(ring_dir); /* rings of processes that died without closing them */
}

int tcp_ring_uri(char *out, size_t cap, const char *what)
{
    static atomic_uint counter;
    pthread_once(&ring_dir_once, make_ring_dir);
    if (ring_dir_err)
        return dmaq_error_set(DMAQ_ESYS, "cannot create %s for " NET_SCHEME ":// rings: %s", ring_dir,
                              strerror(ring_dir_err));
    snprintf(out, cap, "shm://%s/%s-%d-%u", ring_dir, what, (int)getpid(), atomic_fetch_add(&counter, 1));
    return 0;
}

void tcp_lend_ring(int fd, const dmaq_sub *ring)
{
    const void *base;
    size_t len;
    if (dmaq_sub_memory(ring, &base, &len) == 0)
        (void)net_add_source(fd, base, len);
}

void tcp_log(const char *fmt, ...)
{
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "dmaq " NET_SCHEME ": %s\n", line);
}
