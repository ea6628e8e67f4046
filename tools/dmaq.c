/* dmaq — the command-line tool: list, inspect, feed, read, collect and
 * remove the channels on this machine. `dmaq help` and `dmaq COMMAND --help`
 * describe every command. Exit status: 0 success, 1 a dmaq call failed (or
 * `sub --count` timed out short), 2 wrong arguments. */
#include <dirent.h>
#include <dmaq/dmaq.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FAILED 1
#define USAGE 2

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help; /* first line: the synopsis */
};

static const struct command *current; /* the one running */

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, current ? "dmaq %s: " : "dmaq: ", current ? current->name : "");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: dmaq %s", current ? current->help : "COMMAND [ARGS]  (see dmaq help)\n");
    return USAGE;
}

static int failed(void)
{
    fprintf(stderr, "dmaq %s: %s\n", current->name, dmaq_last_error());
    return FAILED;
}

static bool is_help(const char *arg) { return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0; }

/* The value after option argv[*i], or NULL (and a usage message) if none. */
static const char *value_of(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        usage("%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* A number of seconds >= 0 ("0.5", "10"); -1 on a bad one. */
static double seconds_of(const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    return errno || end == s || *end || v < 0 || v > 1e9 ? -1 : v;
}

/* A size in bytes with an optional K, M or G suffix (powers of 1024). */
static bool size_of(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return false;
    int shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
    if (shift)
        end++;
    if (*end || (v << shift) >> shift != v)
        return false;
    *out = v << shift;
    return true;
}

static const char *default_dir(void)
{
    const char *d = getenv("DMAQ_SHM_DIR");
    return d && d[0] ? d : "/dev/shm";
}

/* "orders" -> "shm://orders"; a URI is kept as it is. */
static void to_uri(const char *arg, char *uri, size_t cap)
{
    snprintf(uri, cap, strstr(arg, "://") ? "%s" : "shm://%s", arg);
}

/* The one word that is not an option: the channel. */
static int take_name(const char *arg, const char **name)
{
    if (arg[0] == '-' || *name)
        return usage("unexpected argument '%s'", arg);
    *name = arg;
    return 0;
}

/* The channel's URI from the name given; a usage error if none was. */
static int channel_uri(const char *name, char *uri, size_t cap)
{
    if (!name)
        return usage("needs a channel name or URI");
    to_uri(name, uri, cap);
    return 0;
}

/* "--timeout S" at argv[*i] into *ns. */
static int take_timeout(int argc, char **argv, int *i, int64_t *ns)
{
    const char *v = value_of(argc, argv, i);
    if (!v)
        return USAGE;
    double s = seconds_of(v);
    if (s < 0)
        return usage("--timeout wants a number of seconds, not '%s'", v);
    *ns = (int64_t)(s * 1e9);
    return 0;
}

static const char *kind_name(uint32_t k) { return k == DMAQ_KIND_QUEUE ? "queue" : "broadcast"; }
static const char *policy_name(uint32_t p) { return p == DMAQ_POLICY_OVERWRITE ? "overwrite" : "block"; }

/* ---- ls, gc, rm ---------------------------------------------------------- */

/* Parse "[--dir DIR]"; returns 0, or the exit code when done (help, error). */
static int dir_option(int argc, char **argv, const char **dir, bool *done)
{
    *dir = default_dir();
    *done = true;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i]))
            return printf("usage: dmaq %s", current->help), 0;
        if (strcmp(argv[i], "--dir") != 0)
            return usage("unexpected argument '%s'", argv[i]);
        if (!(*dir = value_of(argc, argv, &i)))
            return USAGE;
    }
    *done = false;
    return 0;
}

static int cmd_ls(int argc, char **argv)
{
    const char *dir;
    bool done;
    int rc = dir_option(argc, argv, &dir, &done);
    if (done)
        return rc;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "dmaq ls: %s: %s\n", dir, strerror(errno));
        return FAILED;
    }
    printf("%-24s %-9s %-9s %10s %5s %4s %4s %4s %-8s %s\n", "NAME", "KIND", "POLICY", "CAPACITY", "FILL",
           "PUBS", "SUBS", "MODE", "OWNER", "STATE");
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "dmaq.", 5) != 0)
            continue;
        const char *name = e->d_name + 5;
        char uri[1024], path[1024];
        snprintf(uri, sizeof uri, "shm://%s/%s", dir, name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat fst;
        const char *owner = "?";
        if (stat(path, &fst) == 0) {
            struct passwd *pw = getpwuid(fst.st_uid);
            owner = pw ? pw->pw_name : "?";
        }
        dmaq_stat st = {.size = sizeof st};
        if (dmaq_channel_stat(uri, &st, NULL, 0) < 0) {
            printf("%-24s %-9s %-9s %10s %5s %4s %4s %4s %-8s %s\n", name, "-", "-", "-", "-", "-", "-", "-",
                   owner, dmaq_last_error());
            continue;
        }
        printf("%-24s %-9s %-9s %10llu %4.0f%% %4u %4u %04o %-8s %s\n", name, kind_name(st.kind),
               policy_name(st.policy), (unsigned long long)st.capacity, 100.0 * st.bytes_used / st.capacity,
               st.publishers, st.subscribers, st.mode, owner, st.flags & DMAQ_STAT_STALE ? "stale" : "live");
    }
    closedir(d);
    return 0;
}

static int cmd_gc(int argc, char **argv)
{
    const char *dir;
    bool done;
    int rc = dir_option(argc, argv, &dir, &done);
    if (done)
        return rc;
    int removed = dmaq_channel_gc(dir);
    if (removed < 0)
        return failed();
    printf("removed %d stale file%s from %s\n", removed, removed == 1 ? "" : "s", dir);
    return 0;
}

static int cmd_rm(int argc, char **argv)
{
    if (argc == 1 && is_help(argv[0]))
        return printf("usage: dmaq %s", current->help), 0;
    if (argc == 0)
        return usage("needs at least one channel name or URI");
    int status = 0;
    for (int i = 0; i < argc; i++) {
        char uri[1024];
        to_uri(argv[i], uri, sizeof uri);
        if (dmaq_channel_unlink(uri) < 0)
            status = failed();
    }
    return status;
}

/* ---- stat ---------------------------------------------------------------- */

static void print_stat_text(const char *uri, const dmaq_stat *st, const dmaq_sub_stat *subs, int n)
{
    printf("channel      %s\nkind         %s\npolicy       %s\ncapacity     %llu bytes\nmax message  %llu bytes\n"
           "in use       %llu bytes\npublished    %llu\npublishers   %u\nsubscribers  %u\nmode         %04o\n"
           "creator pid  %d\nstate        %s\n",
           uri, kind_name(st->kind), policy_name(st->policy), (unsigned long long)st->capacity,
           (unsigned long long)st->max_message, (unsigned long long)st->bytes_used,
           (unsigned long long)st->published, st->publishers, st->subscribers, st->mode, st->creator_pid,
           st->flags & DMAQ_STAT_STALE ? "stale (no live process attached)" : "live");
    for (int i = 0; i < n; i++)
        printf("subscriber   pid %d (%s): received %llu, lag %llu (%llu bytes), lost %llu\n", subs[i].pid,
               subs[i].alive ? "alive" : "dead", (unsigned long long)subs[i].received,
               (unsigned long long)subs[i].lag, (unsigned long long)subs[i].lag_bytes,
               (unsigned long long)subs[i].lost);
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void print_stat_json(const char *uri, const dmaq_stat *st, const dmaq_sub_stat *subs, int n)
{
    printf("{\"channel\":");
    print_json_string(uri);
    printf(",\"kind\":\"%s\",\"policy\":\"%s\",\"capacity\":%llu,\"max_message\":%llu,\"bytes_used\":%llu,"
           "\"published\":%llu,\"publishers\":%u,\"subscribers\":%u,\"mode\":\"%04o\",\"creator_pid\":%d,"
           "\"stale\":%s,\"subscriber\":[",
           kind_name(st->kind), policy_name(st->policy), (unsigned long long)st->capacity,
           (unsigned long long)st->max_message, (unsigned long long)st->bytes_used,
           (unsigned long long)st->published, st->publishers, st->subscribers, st->mode, st->creator_pid,
           st->flags & DMAQ_STAT_STALE ? "true" : "false");
    for (int i = 0; i < n; i++)
        printf("%s{\"pid\":%d,\"alive\":%s,\"received\":%llu,\"lag\":%llu,\"lag_bytes\":%llu,\"lost\":%llu}",
               i ? "," : "", subs[i].pid, subs[i].alive ? "true" : "false", (unsigned long long)subs[i].received,
               (unsigned long long)subs[i].lag, (unsigned long long)subs[i].lag_bytes,
               (unsigned long long)subs[i].lost);
    printf("]}\n");
}

static int cmd_stat(int argc, char **argv)
{
    const char *name = NULL;
    bool json = false, watch = false;
    double interval = 1;
    unsigned long long iterations = 0; /* 0: until interrupted */
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i]))
            return printf("usage: dmaq %s", current->help), 0;
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--watch") == 0) {
            watch = true;
        } else if (strcmp(argv[i], "--iterations") == 0) {
            const char *v = value_of(argc, argv, &i);
            if (!v)
                return USAGE;
            char *end;
            iterations = strtoull(v, &end, 10);
            if (*end || end == v || v[0] == '-' || iterations == 0)
                return usage("--iterations wants a number above 0, not '%s'", v);
        } else if (strcmp(argv[i], "--interval") == 0) {
            const char *v = value_of(argc, argv, &i);
            if (!v)
                return USAGE;
            if ((interval = seconds_of(v)) <= 0)
                return usage("--interval wants a number of seconds above 0, not '%s'", v);
        } else if (take_name(argv[i], &name)) {
            return USAGE;
        }
    }
    char uri[1024];
    if (channel_uri(name, uri, sizeof uri))
        return USAGE;
    bool tty = isatty(STDOUT_FILENO);
    for (unsigned long long round = 1;; round++) {
        dmaq_stat st = {.size = sizeof st};
        dmaq_sub_stat subs[DMAQ_MAX_SUBSCRIBERS];
        int n = dmaq_channel_stat(uri, &st, subs, DMAQ_MAX_SUBSCRIBERS);
        if (n < 0)
            return failed();
        if (n > (int)DMAQ_MAX_SUBSCRIBERS)
            n = DMAQ_MAX_SUBSCRIBERS;
        if (watch && tty && !json)
            printf("\033[H\033[2J"); /* a screen that refreshes in place */
        if (json)
            print_stat_json(uri, &st, subs, n);
        else
            print_stat_text(uri, &st, subs, n);
        fflush(stdout);
        if (!watch || round == iterations)
            return 0;
        struct timespec ts = {(time_t)interval, (long)((interval - (time_t)interval) * 1e9)};
        nanosleep(&ts, NULL);
        if (!tty && !json)
            printf("\n");
    }
}

/* ---- pub, sub -------------------------------------------------------------- */

/* The pre-shared key in file `path` (its first line), kept for the process's
 * life: the options point at it. A key belongs in a file, not on a command
 * line every user can read in ps. */
static int read_key(const char *path, dmaq_options *o)
{
    static char key[1025];
    FILE *f = fopen(path, "r");
    if (!f)
        return usage("--key-file: cannot read %s: %s", path, strerror(errno));
    bool ok = fgets(key, sizeof key, f) != NULL;
    fclose(f);
    key[strcspn(key, "\r\n")] = 0;
    if (!ok || !key[0])
        return usage("--key-file: %s holds no key on its first line", path);
    o->key = key;
    return 0;
}

/* Options shared by pub and sub: how to create the channel if need be, and
 * for network channels whether to bind and with which key. */
static int open_option(int argc, char **argv, int *i, dmaq_options *o, bool *matched)
{
    const char *opt = argv[*i];
    *matched = true;
    if (strcmp(opt, "--kind") == 0 || strcmp(opt, "--policy") == 0 || strcmp(opt, "--capacity") == 0 ||
        strcmp(opt, "--max-message") == 0) {
        const char *v = value_of(argc, argv, i);
        if (!v)
            return USAGE;
        if (strcmp(opt, "--kind") == 0) {
            if (strcmp(v, "queue") == 0)
                o->kind = DMAQ_KIND_QUEUE;
            else if (strcmp(v, "broadcast") == 0)
                o->kind = DMAQ_KIND_BROADCAST;
            else
                return usage("--kind is queue or broadcast, not '%s'", v);
        } else if (strcmp(opt, "--policy") == 0) {
            if (strcmp(v, "block") == 0)
                o->policy = DMAQ_POLICY_BLOCK;
            else if (strcmp(v, "overwrite") == 0)
                o->policy = DMAQ_POLICY_OVERWRITE;
            else
                return usage("--policy is block or overwrite, not '%s'", v);
        } else if (!size_of(v, strcmp(opt, "--capacity") == 0 ? &o->capacity : &o->max_message)) {
            return usage("%s wants a size in bytes (K, M and G suffixes allowed), not '%s'", opt, v);
        }
        return 0;
    }
    if (strcmp(opt, "--no-create") == 0) {
        o->flags |= DMAQ_OPEN_NO_CREATE;
        return 0;
    }
    if (strcmp(opt, "--bind") == 0 || strcmp(opt, "--encrypt") == 0 || strcmp(opt, "--compress") == 0) {
        o->flags |= opt[2] == 'b' ? DMAQ_OPEN_BIND : opt[2] == 'e' ? DMAQ_OPEN_ENCRYPT : DMAQ_OPEN_COMPRESS;
        return 0;
    }
    if (strcmp(opt, "--key-file") == 0 || strcmp(opt, "--peer-timeout") == 0) {
        const char *v = value_of(argc, argv, i);
        if (!v)
            return USAGE;
        if (strcmp(opt, "--peer-timeout") == 0) {
            double sec = seconds_of(v);
            if (sec <= 0)
                return usage("--peer-timeout wants a number of seconds above 0, not '%s'", v);
            o->peer_timeout_ns = (int64_t)(sec * 1e9);
            return 0;
        }
        return read_key(v, o);
    }
    *matched = false;
    return 0;
}

/* Read all of `f` into *buf (grown as needed); returns its length or -1. */
static long slurp(FILE *f, char **buf, size_t *cap)
{
    size_t len = 0;
    for (;;) {
        if (len == *cap) {
            size_t ncap = *cap ? *cap * 2 : 1 << 16;
            char *nbuf = realloc(*buf, ncap);
            if (!nbuf)
                return -1;
            *buf = nbuf;
            *cap = ncap;
        }
        size_t n = fread(*buf + len, 1, *cap - len, f);
        len += n;
        if (n == 0)
            return ferror(f) ? -1 : (long)len;
    }
}

static int cmd_pub(int argc, char **argv)
{
    const char *name = NULL;
    dmaq_options o = DMAQ_OPTIONS_INIT;
    int64_t timeout_ns = -1;
    int first_file = -1;
    for (int i = 0; i < argc; i++) {
        bool matched;
        int rc = open_option(argc, argv, &i, &o, &matched);
        if (rc)
            return rc;
        if (matched)
            continue;
        if (is_help(argv[i]))
            return printf("usage: dmaq %s", current->help), 0;
        if (strcmp(argv[i], "--timeout") == 0) {
            if (take_timeout(argc, argv, &i, &timeout_ns))
                return USAGE;
        } else if (strcmp(argv[i], "--file") == 0) {
            first_file = i + 1;
            if (first_file >= argc)
                return usage("--file needs at least one path ('-' for standard input)");
            break; /* the rest are paths */
        } else if (take_name(argv[i], &name)) {
            return USAGE;
        }
    }
    char uri[1024];
    if (channel_uri(name, uri, sizeof uri))
        return USAGE;
    dmaq_pub *pub;
    if (dmaq_pub_open(uri, &o, &pub) < 0)
        return failed();
    int status = 0;
    char *buf = NULL;
    size_t cap = 0;
    if (first_file < 0) {
        /* One message per line of standard input, without its newline. */
        ssize_t len;
        while (status == 0 && (len = getline(&buf, &cap, stdin)) >= 0) {
            if (len > 0 && buf[len - 1] == '\n')
                len--;
            if (dmaq_pub_send(pub, buf, (size_t)len, timeout_ns) < 0)
                status = failed();
        }
    } else {
        for (int i = first_file; i < argc && status == 0; i++) {
            FILE *f = strcmp(argv[i], "-") == 0 ? stdin : fopen(argv[i], "rb");
            if (!f) {
                fprintf(stderr, "dmaq pub: %s: %s\n", argv[i], strerror(errno));
                status = FAILED;
                break;
            }
            long len = slurp(f, &buf, &cap);
            if (f != stdin)
                fclose(f);
            if (len < 0) {
                fprintf(stderr, "dmaq pub: reading %s: %s\n", argv[i], strerror(errno));
                status = FAILED;
            } else if (dmaq_pub_send(pub, buf, (size_t)len, timeout_ns) < 0) {
                status = failed();
            }
        }
    }
    free(buf);
    dmaq_pub_close(pub);
    return status;
}

enum format { TEXT, HEX, RAW };

static void print_message(enum format fmt, const dmaq_lease *m)
{
    const unsigned char *p = m->data;
    if (fmt == RAW) {
        fwrite(p, 1, m->len, stdout);
    } else if (fmt == TEXT) {
        fwrite(p, 1, m->len, stdout);
        putchar('\n');
    } else {
        printf("seq %llu, %llu bytes, publisher %u%s\n", (unsigned long long)m->seq, (unsigned long long)m->len,
               m->publisher_id, m->flags & DMAQ_LEASE_REDELIVERED ? ", redelivered" : "");
        for (uint64_t off = 0; off < m->len; off += 16) {
            printf("  %08llx ", (unsigned long long)off);
            for (uint64_t k = off; k < off + 16; k++) {
                if (k < m->len)
                    printf(" %02x", p[k]);
                else
                    printf("   ");
            }
            printf("  ");
            for (uint64_t k = off; k < off + 16 && k < m->len; k++)
                putchar(p[k] >= 0x20 && p[k] < 0x7f ? p[k] : '.');
            putchar('\n');
        }
    }
}

static int cmd_sub(int argc, char **argv)
{
    const char *name = NULL;
    dmaq_options o = DMAQ_OPTIONS_INIT;
    int64_t timeout_ns = -1;
    unsigned long long count = 0; /* 0: no limit */
    enum format fmt = TEXT;
    for (int i = 0; i < argc; i++) {
        bool matched;
        int rc = open_option(argc, argv, &i, &o, &matched);
        if (rc)
            return rc;
        if (matched)
            continue;
        const char *v;
        if (is_help(argv[i])) {
            return printf("usage: dmaq %s", current->help), 0;
        } else if (strcmp(argv[i], "--oldest") == 0) {
            o.start = DMAQ_START_OLDEST;
        } else if (strcmp(argv[i], "--timeout") == 0) {
            if (take_timeout(argc, argv, &i, &timeout_ns))
                return USAGE;
        } else if (strcmp(argv[i], "--count") == 0) {
            if (!(v = value_of(argc, argv, &i)))
                return USAGE;
            char *end;
            count = strtoull(v, &end, 10);
            if (*end || end == v || v[0] == '-' || count == 0)
                return usage("--count wants a number above 0, not '%s'", v);
        } else if (strcmp(argv[i], "--format") == 0) {
            if (!(v = value_of(argc, argv, &i)))
                return USAGE;
            if (strcmp(v, "text") != 0 && strcmp(v, "hex") != 0 && strcmp(v, "raw") != 0)
                return usage("--format is text, hex or raw, not '%s'", v);
            fmt = v[0] == 't' ? TEXT : v[0] == 'h' ? HEX : RAW;
        } else if (take_name(argv[i], &name)) {
            return USAGE;
        }
    }
    char uri[1024];
    if (channel_uri(name, uri, sizeof uri))
        return USAGE;
    dmaq_sub *sub;
    if (dmaq_sub_open(uri, &o, &sub) < 0)
        return failed();
    int status = 0;
    unsigned long long got = 0;
    while (count == 0 || got < count) {
        dmaq_lease m;
        int rc = dmaq_sub_peek(sub, &m, timeout_ns);
        if (rc == DMAQ_ELOST) {
            fprintf(stderr, "dmaq sub: overrun, %llu messages lost\n", (unsigned long long)m.lost);
            continue;
        }
        if (rc == DMAQ_ETIMEDOUT) {
            if (count) {
                fprintf(stderr, "dmaq sub: timed out after %llu of %llu messages\n", got, count);
                status = FAILED;
            }
            break;
        }
        if (rc < 0) {
            status = failed();
            break;
        }
        print_message(fmt, &m);
        if (dmaq_sub_release(sub, &m) == DMAQ_EOVERWRITTEN)
            fprintf(stderr, "dmaq sub: the message above was overwritten while it was printed\n");
        got++;
        fflush(stdout);
    }
    dmaq_sub_close(sub);
    return status;
}

/* ---- relay ----------------------------------------------------------------- */

static volatile int relay_stop;
static void on_stop_signal(int sig) { relay_stop = sig; }

static int cmd_relay(int argc, char **argv)
{
    const char *names[2] = {NULL, NULL};
    dmaq_options src = DMAQ_OPTIONS_INIT, dst = DMAQ_OPTIONS_INIT;
    bool dst_given = false;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i]))
            return printf("usage: dmaq %s", current->help), 0;
        if (strcmp(argv[i], "--bind-src") == 0) {
            src.flags |= DMAQ_OPEN_BIND;
        } else if (strcmp(argv[i], "--bind-dst") == 0) {
            dst.flags |= DMAQ_OPEN_BIND;
            dst_given = true;
        } else if (strcmp(argv[i], "--key-file") == 0) {
            const char *v = value_of(argc, argv, &i);
            if (!v || read_key(v, &src))
                return USAGE;
            dst.key = src.key;
            dst_given = true;
        } else if (argv[i][0] == '-' || names[1]) {
            return usage("unexpected argument '%s'", argv[i]);
        } else {
            names[names[0] ? 1 : 0] = argv[i];
        }
    }
    if (!names[1])
        return usage("needs a source and a destination");
    char src_uri[1024], dst_uri[1024];
    to_uri(names[0], src_uri, sizeof src_uri);
    to_uri(names[1], dst_uri, sizeof dst_uri);
    if (dst_given) { /* the destination takes the source's shape, plus what was asked */
        dmaq_stat st = {.size = sizeof st};
        if (!(src.flags & DMAQ_OPEN_BIND) && dmaq_channel_stat(src_uri, &st, NULL, 0) >= 0) {
            dst.kind = st.kind;
            dst.policy = st.policy;
            dst.capacity = st.capacity;
            dst.max_message = st.max_message;
        }
    }
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    dmaq_relay_stat st;
    int rc = dmaq_relay(src_uri, &src, dst_uri, dst_given ? &dst : NULL, &relay_stop, &st);
    fprintf(stderr, "relayed %llu messages, %llu lost\n", (unsigned long long)st.relayed,
            (unsigned long long)st.lost);
    if (rc < 0)
        return failed();
    return 0;
}

/* ---- bench ----------------------------------------------------------------- */

static int cmd_bench(int argc, char **argv)
{
    if (argc == 1 && is_help(argv[0]))
        return printf("usage: dmaq %s", current->help), 0;
    if (argc)
        return usage("unexpected argument '%s'", argv[0]);
    /* dmaq-bench lives next to this program (installed or in the build). */
    char self[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0)
        return failed();
    self[n] = 0;
    char *slash = strrchr(self, '/');
    *slash = 0;
    const char *candidates[] = {"%s/dmaq-bench", "%s/../bench/dmaq-bench"};
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
        snprintf(path, sizeof path, candidates[i], self);
        if (access(path, X_OK) == 0) {
            execl(path, path, "--quick", (char *)NULL);
            fprintf(stderr, "dmaq bench: %s: %s\n", path, strerror(errno));
            return FAILED;
        }
    }
    fprintf(stderr, "dmaq bench: dmaq-bench is not installed next to %s (build with DMAQ_BUILD_BENCH=ON)\n", self);
    return FAILED;
}

/* ---- main ------------------------------------------------------------------ */

static int cmd_help(int argc, char **argv);

static const struct command commands[] = {
    {"ls", cmd_ls,
     "ls [--dir DIR]\n"
     "  List the channels in DIR (default $DMAQ_SHM_DIR, else /dev/shm): name, kind, policy,\n"
     "  capacity, fill, publishers, subscribers, file mode, owner, and STATE: live, stale\n"
     "  (no live process attached; `dmaq gc` removes it) or why it cannot be read.\n"},
    {"stat", cmd_stat,
     "stat NAME|URI [--json] [--watch [--interval S] [--iterations N]]\n"
     "  One channel in detail, with every subscriber's lag, lost count and whether its\n"
     "  process is alive. --json prints one JSON object (a line each refresh); --watch\n"
     "  refreshes every S seconds (default 1), N times or until interrupted.\n"},
    {"pub", cmd_pub,
     "pub NAME|URI [--timeout S] [CREATE OPTIONS] [--file PATH...]\n"
     "  Send each line of standard input as a message (without its newline), or with --file\n"
     "  each PATH's whole contents as one message ('-' = standard input). --timeout: how long\n"
     "  a send may wait for room (default forever).\n"
     "  CREATE OPTIONS, used if the channel does not exist: --kind queue|broadcast,\n"
     "  --policy block|overwrite, --capacity BYTES, --max-message BYTES (K/M/G suffixes);\n"
     "  --no-create fails instead.\n"
     "  NETWORK OPTIONS, for tcp:// URIs: --bind hosts the channel and listens at the URI's\n"
     "  address (without it, connect to the process that does); --key-file PATH, a pre-shared\n"
     "  key (first line of PATH); --peer-timeout S, when a silent peer counts as gone (5 s);\n"
     "  --encrypt (with a key: binding, seal payloads; connecting, insist they are);\n"
     "  --compress (binding: zstd for payloads of 512 bytes or more).\n"},
    {"sub", cmd_sub,
     "sub NAME|URI [--count N] [--timeout S] [--format text|hex|raw] [--oldest] [CREATE OPTIONS]\n"
     "  Print the messages that arrive: text (one per line), hex (a dump with the sequence\n"
     "  number) or raw (the bytes alone). Stops after N messages, or when none came for S\n"
     "  seconds (exit 1 if that was before N). --oldest starts at the oldest retained message\n"
     "  of a broadcast channel. CREATE and NETWORK OPTIONS as for pub.\n"},
    {"relay", cmd_relay,
     "relay SRC DST [--bind-src] [--bind-dst] [--key-file PATH]\n"
     "  Subscribe to SRC and republish every message into DST until interrupted, so one\n"
     "  network stream fans out through shared memory: dmaq relay tcp://feed:7000/quotes quotes.\n"
     "  DST is created like SRC if it does not exist. --bind-src/--bind-dst: that side of a\n"
     "  network URI hosts the channel (listens) instead of connecting. --key-file: the\n"
     "  channels' pre-shared key.\n"},
    {"gc", cmd_gc,
     "gc [--dir DIR]\n"
     "  Remove stale channels (no handle open on them anywhere) and files of creators that died.\n"},
    {"rm", cmd_rm,
     "rm NAME|URI...\n"
     "  Remove channels. Handles already open keep working; the next open creates anew.\n"},
    {"bench", cmd_bench,
     "bench\n"
     "  Run the quick benchmark (dmaq-bench --quick): latency and throughput against the\n"
     "  machine's own floors.\n"},
    {"help", cmd_help, "help\n  This text.\n"},
};

static int cmd_help(int argc, char **argv)
{
    printf("usage: dmaq COMMAND [ARGS]; dmaq COMMAND --help for one. Channels are NAME (in\n"
           "$DMAQ_SHM_DIR, else /dev/shm) or a URI such as shm://NAME or shm:///DIR/NAME.\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        printf("dmaq %s\n", commands[i].help);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage("no command given");
    const char *cmd = argv[1];
    if (is_help(cmd))
        cmd = "help";
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(cmd, commands[i].name) == 0) {
            current = &commands[i];
            return commands[i].run(argc - 2, argv + 2);
        }
    return usage("unknown command '%s'", cmd);
}
