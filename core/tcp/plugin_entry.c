/* The entry the plugin loader looks up in libdmaq-tcp.so (and
 * libdmaq-rdma.so). It lives apart from tcp.c so that the static archive
 * (libdmaq-tcp.a, for programs that link the core statically and register
 * the transport themselves) does not define it: several static transports
 * could not all define one name. */
#include <dmaq/transport.h>

#include "sock.h"

const dmaq_transport_ops *NET_TRANSPORT_FN(void);

__attribute__((visibility("default"))) const dmaq_transport_ops *dmaq_transport_plugin(void)
{
    return NET_TRANSPORT_FN();
}
