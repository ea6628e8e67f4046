/*
 * The stream sockets under the tcp:// transport, and the same code over
 * RDMA. The transport's channel logic (hosting, credits, stash, reconnects,
 * keys, codecs) only needs a reliable byte stream; compiled with
 * DMAQ_NET_RDMA it runs over core/rdma/stream.c instead of the kernel's TCP:
 * one RC queue pair per connection, the bytes moved by one-sided RDMA WRITEs
 * into the peer's registered receive ring and credits returned the same way.
 * That build is libdmaq-rdma.so, scheme rdma://.
 */
#ifndef DMAQ_TCP_SOCK_H
#define DMAQ_TCP_SOCK_H

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef DMAQ_NET_RDMA
#include "../rdma/stream.h"
#define NET_SCHEME "rdma"
#define NET_TRANSPORT_FN dmaq_rdma_transport
#define net_socket rdma_stream_socket
#define net_connect rdma_stream_connect
#define net_bind rdma_stream_bind
#define net_listen rdma_stream_listen
#define net_accept rdma_stream_accept
#define net_send rdma_stream_send
#define net_sendmsg rdma_stream_sendmsg
#define net_recv rdma_stream_recv
#define net_poll rdma_stream_poll
#define net_poll_idle rdma_stream_poll_idle
#define net_close rdma_stream_close
#define net_shutdown rdma_stream_shutdown
#define net_setsockopt rdma_stream_setsockopt
#define net_getsockopt rdma_stream_getsockopt
#define net_fcntl rdma_stream_fcntl
#define net_borrow rdma_stream_borrow
#define net_give_back rdma_stream_give_back
#define net_add_source rdma_stream_add_source
#define NET_SOCKET_FLAGS 0
/* A subscriber reading the connection itself leases a message where it lies
 * in the registered receive ring (rdma_stream_borrow). */
#define NET_CAN_BORROW 1
#else
#define NET_SCHEME "tcp"
#define NET_TRANSPORT_FN dmaq_tcp_transport
#define net_socket socket
#define net_connect connect
#define net_bind bind
#define net_listen listen
#define net_accept(fd, sa, sl) accept4(fd, sa, sl, SOCK_CLOEXEC)
#define net_send send
#define net_sendmsg sendmsg
#define net_recv recv
#define net_poll poll
#define net_poll_idle poll
#define net_close close
#define net_shutdown shutdown
#define net_setsockopt setsockopt
#define net_getsockopt getsockopt
#define net_fcntl fcntl
#define NET_SOCKET_FLAGS SOCK_CLOEXEC
/* The kernel's TCP lends nothing in place: messages are read into a buffer. */
#define NET_CAN_BORROW 0
static inline ssize_t net_borrow(int fd, const void **data, void **token)
{
    (void)fd, (void)data, (void)token;
    return -1;
}
static inline void net_give_back(void *token, size_t used) { (void)token, (void)used; }
/* The kernel's TCP copies what it sends: nothing to register. */
static inline int net_add_source(int fd, const void *base, size_t len)
{
    (void)fd, (void)base, (void)len;
    return 0;
}
#endif

#endif
