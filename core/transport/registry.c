/* The registry of transports, keyed by URI scheme. shm is built in; network
 * transports are registered when their plugin is loaded (plugin.c). */
#include "registry.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define MAX_TRANSPORTS 16

static const dmaq_transport_ops *_Atomic transports[MAX_TRANSPORTS] = {&dmaq__shm_transport};
static pthread_mutex_t register_lock = PTHREAD_MUTEX_INITIALIZER;

const dmaq_transport_ops *dmaq__transport_find(const char *scheme, size_t len)
{
    for (int i = 0; i < MAX_TRANSPORTS; i++) {
        const dmaq_transport_ops *t = atomic_load_explicit(&transports[i], memory_order_acquire);
        if (!t)
            break;
        if (strlen(t->scheme) == len && memcmp(t->scheme, scheme, len) == 0)
            return t;
    }
    return NULL;
}

int dmaq_transport_register(const dmaq_transport_ops *ops)
{
    if (!ops || ops->abi_version != DMAQ_TRANSPORT_ABI || ops->struct_size < sizeof(*ops) ||
        !ops->scheme || !ops->scheme[0] || !ops->pub_open || !ops->pub_close || !ops->pub_reserve ||
        !ops->pub_commit || !ops->pub_abort || !ops->sub_open || !ops->sub_close || !ops->sub_peek ||
        !ops->sub_release || !ops->sub_recv || !ops->channel_stat || !ops->channel_unlink || !ops->pub_id)
        return dmaq_error_set(DMAQ_EINVAL, "transport table is incomplete or of another ABI version");
    pthread_mutex_lock(&register_lock);
    int rc = dmaq_error_set(DMAQ_ELIMIT, "transport registry is full (%d entries)", MAX_TRANSPORTS);
    for (int i = 0; i < MAX_TRANSPORTS; i++) {
        const dmaq_transport_ops *t = atomic_load(&transports[i]);
        if (t && strcmp(t->scheme, ops->scheme) == 0) {
            rc = dmaq_error_set(DMAQ_EINVAL, "scheme '%s' is already registered", ops->scheme);
            break;
        }
        if (!t) {
            atomic_store_explicit(&transports[i], ops, memory_order_release);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&register_lock);
    return rc;
}

int dmaq__transport_for_uri(const char *uri, const dmaq_transport_ops **ops, const char **address)
{
    if (!uri)
        return dmaq_error_set(DMAQ_EINVAL, "URI is NULL");
    const char *sep = strstr(uri, "://");
    if (!sep || sep == uri)
        return dmaq_error_set(DMAQ_EINVAL, "URI '%.256s' has no scheme (expected e.g. shm://name)", uri);
    size_t len = (size_t)(sep - uri);
    const dmaq_transport_ops *t = dmaq__transport_find(uri, len);
    if (!t) {
        int rc = dmaq__transport_load(uri, len);
        if (rc < 0)
            return rc;
        t = dmaq__transport_find(uri, len);
    }
    *ops = t;
    *address = sep + 3;
    return 0;
}

int dmaq_transport_available(const char *scheme)
{
    if (!scheme)
        return dmaq_error_set(0, "scheme is NULL");
    size_t len = strlen(scheme);
    const dmaq_transport_ops *t = dmaq__transport_find(scheme, len);
    if (!t && dmaq__transport_load(scheme, len) < 0)
        return 0; /* dmaq_last_error() says where the plugin was looked for */
    t = dmaq__transport_find(scheme, len);
    return t->available ? t->available() : 1;
}
