/*
 * Transport plugins. Network transports are shared libraries loaded on the
 * first use of their scheme, so that a program that only uses shm:// needs
 * neither their dependencies nor a network. For scheme S the loader looks
 * for libdmaq-S.so in each directory of $DMAQ_PLUGIN_PATH (colon-separated),
 * then in the directory libdmaq.so itself was loaded from, then wherever
 * the dynamic loader looks by default. A plugin exports
 *
 *     const dmaq_transport_ops *dmaq_transport_plugin(void);
 *
 * returning its table (static storage), which the loader registers. See
 * core/transport/README.md.
 */
#include "registry.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCHEME_MAX 31
#define PLUGIN_ENTRY "dmaq_transport_plugin"

typedef const dmaq_transport_ops *(*plugin_entry)(void);

/* One loader at a time: two threads opening tcp:// URIs at once load it
 * once. */
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;

/* Schemes name files: letters, digits, '+', '-' and '.' only, so a URI
 * cannot point the loader at a path. */
static int scheme_ok(const char *scheme, size_t len)
{
    if (len == 0 || len > SCHEME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = scheme[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
              c == '-' || (c == '.' && i > 0)))
            return 0;
    }
    return 1;
}

/* Where the loader looked, and why it failed: the reason a plugin that
 * exists would not load (a library it needs is missing, say) is the one
 * worth reporting, else the last attempt's. */
struct search {
    char tried[1024], why[512];
    int found_broken;
};

static void note_failure(struct search *s, const char *path)
{
    const char *err = dlerror();
    int exists = strchr(path, '/') && access(path, F_OK) == 0;
    if (s->found_broken || (!exists && s->why[0] && strchr(path, '/')))
        return;
    snprintf(s->why, sizeof s->why, "%s", err ? err : "no reason given");
    s->found_broken = exists;
}

/* dlopen `dir`/`file` (or `file` alone when dir is NULL), noting where it
 * looked and why it failed in `s`. */
static void *try_open(const char *dir, size_t dir_len, const char *file, struct search *s, char *path,
                      size_t path_cap)
{
    char *tried = s->tried;
    size_t cap = sizeof s->tried;
    if (dir)
        snprintf(path, path_cap, "%.*s/%s", (int)dir_len, dir, file);
    else
        snprintf(path, path_cap, "%s", file);
    size_t used = strlen(tried);
    if (used + 1 < cap && dir)
        snprintf(tried + used, cap - used, "%s%.*s", used ? ", " : "", (int)(dir_len < 256 ? dir_len : 256), dir);
    else if (used + 1 < cap)
        snprintf(tried + used, cap - used, "%sthe loader's default paths", used ? ", " : "");
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        note_failure(s, path);
    return h;
}

static void *find_plugin(const char *file, struct search *s, char *path, size_t path_cap)
{
    void *h = NULL;
    const char *env = getenv("DMAQ_PLUGIN_PATH");
    for (const char *d = env; d && *d && !h;) {
        const char *end = strchr(d, ':');
        size_t len = end ? (size_t)(end - d) : strlen(d);
        if (len)
            h = try_open(d, len, file, s, path, path_cap);
        d = end ? end + 1 : NULL;
    }
    Dl_info self;
    if (!h && dladdr((void *)dmaq_version, &self) && self.dli_fname && strchr(self.dli_fname, '/')) {
        const char *slash = strrchr(self.dli_fname, '/');
        h = try_open(self.dli_fname, (size_t)(slash - self.dli_fname), file, s, path, path_cap);
    }
    if (!h)
        h = try_open(NULL, 0, file, s, path, path_cap);
    return h;
}

int dmaq__transport_load(const char *scheme, size_t len)
{
    if (!scheme_ok(scheme, len))
        return dmaq_error_set(DMAQ_ESCHEME,
                              "unknown scheme '%.*s': it is not a transport name (up to %d letters, digits, '+', '-', "
                              "'.')",
                              (int)(len < SCHEME_MAX ? len : SCHEME_MAX), scheme, SCHEME_MAX);
    char file[64], path[PATH_MAX + 64];
    struct search search = {{0}, {0}, 0};
    snprintf(file, sizeof file, "libdmaq-%.*s.so", (int)len, scheme);
    pthread_mutex_lock(&load_lock);
    int rc = 0;
    if (dmaq__transport_find(scheme, len))
        goto out; /* another thread loaded it meanwhile */
    void *h = find_plugin(file, &search, path, sizeof path);
    if (!h) {
        rc = dmaq_error_set(DMAQ_ESCHEME,
                            "unknown scheme '%.*s': none is built in, and its plugin %s %s (looked in %s; %s)",
                            (int)len, scheme, file, search.found_broken ? "would not load" : "was not found",
                            search.tried, search.why);
        goto out;
    }
    plugin_entry entry;
    *(void **)&entry = dlsym(h, PLUGIN_ENTRY);
    const dmaq_transport_ops *ops = entry ? entry() : NULL;
    if (!ops) {
        rc = dmaq_error_set(DMAQ_ESCHEME, "plugin %s has no %s() or it returned no transport", path, PLUGIN_ENTRY);
    } else if (!ops->scheme || strlen(ops->scheme) != len || strncmp(ops->scheme, scheme, len) != 0) {
        rc = dmaq_error_set(DMAQ_ESCHEME, "plugin %s is for scheme '%.32s', not '%.*s'", path,
                            ops->scheme ? ops->scheme : "(none)", (int)len, scheme);
    } else {
        rc = dmaq_transport_register(ops);
    }
    if (rc < 0)
        dlclose(h); /* nothing of it is in use */
out:
    pthread_mutex_unlock(&load_lock);
    return rc;
}
