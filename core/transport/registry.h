/* Internal: find the transport for a URI. */
#ifndef DMAQ_TRANSPORT_REGISTRY_H
#define DMAQ_TRANSPORT_REGISTRY_H

#include "dmaq/transport.h"

/* Look up the transport for `uri` ("scheme://address"). On success stores
 * the table in *ops and the address part in *address and returns 0. */
int dmaq__transport_for_uri(const char *uri, const dmaq_transport_ops **ops, const char **address);

/* The registered transport for `scheme` (len bytes), or NULL. */
const dmaq_transport_ops *dmaq__transport_find(const char *scheme, size_t len);

/* Load and register the plugin for `scheme` (plugin.c). Returns 0 or
 * DMAQ_ESCHEME with a message saying where it looked and why it failed. */
int dmaq__transport_load(const char *scheme, size_t len);

extern const dmaq_transport_ops dmaq__shm_transport;

/* The mapping of the shm:// subscriber whose state this is (ring.c). */
void dmaq__shm_sub_memory(const void *state, const void **base, size_t *len);

#endif
