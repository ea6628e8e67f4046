/* Internal: find the transport for a URI. */
#ifndef DMAQ_TRANSPORT_REGISTRY_H
#define DMAQ_TRANSPORT_REGISTRY_H

#include "dmaq/transport.h"

/* Look up the transport for `uri` ("scheme://address"). On success stores
 * the table in *ops and the address part in *address and returns 0. */
int dmaq__transport_for_uri(const char *uri, const dmaq_transport_ops **ops, const char **address);

extern const dmaq_transport_ops dmaq__shm_transport;

#endif
