/*
 * A reliable byte stream over one RDMA RC queue pair, with the calls of a
 * stream socket, so that the tcp:// transport's channel code (core/tcp/,
 * through core/tcp/sock.h) runs unchanged over RDMA as rdma://.
 *
 * The data path is one-sided: each side registers, at connect or accept, a
 * receive ring (1 MiB on an explicit huge page when the system has some
 * reserved, else 256 KiB, or 64 KiB when locked memory is short) and a
 * credit word and gives the peer
 * their addresses, rkeys and the ring's size in the rdma_cm private data;
 * both use the smaller ring. send() copies into a registered send ring and
 * posts an RDMA WRITE WITH_IMM (inline when small) straight into the peer's
 * receive ring, the immediate carrying the byte count; recv() copies out of
 * the receive ring and returns credit, its consumed position, by RDMA WRITE
 * (WITH_IMM, flagged, so a blocked sender wakes) into the peer's credit
 * word. No receive buffers are posted for data: a receive WR only catches
 * the immediate. Connection setup, rejection and disconnects go through
 * librdmacm; a listener that refuses a connection puts its errno in the
 * reject's private data (ENOMEM: it could not register the rings), and the
 * refused connect() fails with that errno.
 *
 * The "descriptors" these calls return are real descriptors (a connection's
 * completion channel, a listener's event channel), so they are distinct and
 * can sit in a pollfd array beside ordinary ones; rdma_poll() understands
 * both kinds.
 */
#ifndef DMAQ_RDMA_STREAM_H
#define DMAQ_RDMA_STREAM_H

#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>

int rdma_stream_socket(int domain, int type, int protocol);
int rdma_stream_bind(int fd, const struct sockaddr *addr, socklen_t len);
int rdma_stream_listen(int fd, int backlog);
int rdma_stream_accept(int fd, struct sockaddr *addr, socklen_t *len);
/* Blocking, within the timeout set with TCP_USER_TIMEOUT (default 5 s). */
int rdma_stream_connect(int fd, const struct sockaddr *addr, socklen_t len);
/* A send flag of this stream's own: send all of it now or none of it
 * (-1, EAGAIN), whether or not the stream blocks. For a caller that must
 * not wait and cannot keep what a partial send leaves over. */
#define RDMA_STREAM_WHOLE 0x20000000
ssize_t rdma_stream_send(int fd, const void *buf, size_t len, int flags);
ssize_t rdma_stream_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t rdma_stream_recv(int fd, void *buf, size_t len, int flags);
int rdma_stream_poll(struct pollfd *fds, nfds_t nfds, int timeout_ms);
/* The same without busy-polling first, whatever SO_BUSY_POLL says: for a
 * thread that only stands by while another waits for the data. */
int rdma_stream_poll_idle(struct pollfd *fds, nfds_t nfds, int timeout_ms);
/* Lend the bytes at the front of the incoming stream where they lie in the
 * registered receive ring, without consuming them: *data, as far as the
 * ring's end (a frame that wraps needs recv), and *token for
 * rdma_stream_give_back. Returns the byte count, 0 at the end of the stream,
 * or -1 (EAGAIN: nothing yet; EBUSY: already lent). Until the give-back
 * nothing else reads the stream (recv fails with EBUSY), and the bytes stay
 * put: the peer gets no credit for them. */
ssize_t rdma_stream_borrow(int fd, const void **data, void **token);
/* End a borrow, consuming its first `used` bytes (returning their credit).
 * A stream closed meanwhile is freed here. Any thread. */
void rdma_stream_give_back(void *token, size_t used);
/* Register [base, base + len) with the connection's protection domain, so
 * that a send of a piece of at least 4 KiB that lies there posts it in
 * place instead of copying it into the send ring; such a send returns only
 * once the NIC has read the piece. Done once per connection, never per
 * message. Returns 0, or -1: ENOTCONN, ENOSPC (sources full, or pinning it
 * would leave under half of RLIMIT_MEMLOCK), or ibv_reg_mr's errno. The
 * caller keeps the memory mapped until the stream is closed. */
int rdma_stream_add_source(int fd, const void *base, size_t len);
int rdma_stream_shutdown(int fd, int how);
int rdma_stream_close(int fd);
/* SO_REUSEADDR is accepted and ignored; TCP_USER_TIMEOUT bounds blocking
 * sends and connects; TCP_NODELAY is what this stream always does;
 * SO_BUSY_POLL (an int, microseconds; INT_MAX: for ever) is how long a wait
 * polls the completion queue before it sleeps on the completion channel. */
int rdma_stream_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
/* SO_ERROR: the connection's pending error (0 when connected). */
int rdma_stream_getsockopt(int fd, int level, int name, void *val, socklen_t *len);
/* F_GETFL/F_SETFL: O_NONBLOCK only. */
int rdma_stream_fcntl(int fd, int cmd, ...);
/* 1 if an RDMA device is there; 0 with errno otherwise. */
int rdma_stream_available(void);

#endif
