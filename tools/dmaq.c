/* dmaq — list, inspect, collect and remove the channels on this machine.
 *
 *   dmaq ls [--dir DIR]      every channel in DIR, with a stale mark
 *   dmaq stat NAME|URI       one channel and its subscribers
 *   dmaq gc [--dir DIR]      remove stale channels (dmaq_channel_gc)
 *   dmaq rm NAME|URI...      remove channels (dmaq_channel_unlink)
 *
 * DIR defaults to $DMAQ_SHM_DIR, else /dev/shm. Exit status: 0 success,
 * 1 a dmaq call failed, 2 wrong arguments. */
#include <dirent.h>
#include <dmaq/dmaq.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define USAGE_EXIT 2

static const char *usage_text =
    "usage: dmaq COMMAND [ARGS]\n"
    "  ls [--dir DIR]        list the channels in DIR (default $DMAQ_SHM_DIR, else /dev/shm);\n"
    "                        STATE is live, stale (no live process attached) or the error\n"
    "  stat NAME|URI         one channel in detail, with every subscriber\n"
    "  gc [--dir DIR]        remove stale channels and files of creators that died\n"
    "  rm NAME|URI...        remove channels (open handles keep working)\n"
    "  help                  this text\n";

static int usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "dmaq: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage_text);
    return USAGE_EXIT;
}

static const char *default_dir(void)
{
    const char *d = getenv("DMAQ_SHM_DIR");
    return d && d[0] ? d : "/dev/shm";
}

/* Parse "[--dir DIR]" into *dir; returns 0 or the usage exit code. */
static int dir_option(int argc, char **argv, const char **dir)
{
    *dir = default_dir();
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            *dir = argv[++i];
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return fputs(usage_text, stdout), -1;
        else
            return usage("unexpected argument '%s'", argv[i]);
    }
    return 0;
}

/* "orders" -> "shm://orders"; a URI is kept as it is. */
static void to_uri(const char *arg, char *uri, size_t cap)
{
    snprintf(uri, cap, strstr(arg, "://") ? "%s" : "shm://%s", arg);
}

static const char *kind_name(uint32_t k) { return k == DMAQ_KIND_QUEUE ? "queue" : "broadcast"; }
static const char *policy_name(uint32_t p) { return p == DMAQ_POLICY_OVERWRITE ? "overwrite" : "block"; }

static int cmd_ls(int argc, char **argv)
{
    const char *dir;
    int rc = dir_option(argc, argv, &dir);
    if (rc)
        return rc < 0 ? 0 : rc;
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return 1;
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

static int cmd_stat(int argc, char **argv)
{
    if (argc == 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0))
        return fputs(usage_text, stdout), 0;
    if (argc != 1)
        return usage("stat takes one channel name or URI%s", "");
    char uri[1024];
    to_uri(argv[0], uri, sizeof uri);
    dmaq_stat st = {.size = sizeof st};
    dmaq_sub_stat subs[DMAQ_MAX_SUBSCRIBERS];
    int n = dmaq_channel_stat(uri, &st, subs, DMAQ_MAX_SUBSCRIBERS);
    if (n < 0) {
        fprintf(stderr, "dmaq: %s\n", dmaq_last_error());
        return 1;
    }
    printf("channel      %s\nkind         %s\npolicy       %s\ncapacity     %llu bytes\nmax message  %llu bytes\n"
           "in use       %llu bytes\npublished    %llu\npublishers   %u\nsubscribers  %u\nmode         %04o\n"
           "creator pid  %d\nstate        %s\n",
           uri, kind_name(st.kind), policy_name(st.policy), (unsigned long long)st.capacity,
           (unsigned long long)st.max_message, (unsigned long long)st.bytes_used,
           (unsigned long long)st.published, st.publishers, st.subscribers, st.mode, st.creator_pid,
           st.flags & DMAQ_STAT_STALE ? "stale (no live process attached)" : "live");
    for (int i = 0; i < n && i < (int)DMAQ_MAX_SUBSCRIBERS; i++)
        printf("subscriber   pid %d (%s): received %llu, lag %llu, lost %llu\n", subs[i].pid,
               subs[i].alive ? "alive" : "dead", (unsigned long long)subs[i].received,
               (unsigned long long)subs[i].lag, (unsigned long long)subs[i].lost);
    return 0;
}

static int cmd_gc(int argc, char **argv)
{
    const char *dir;
    int rc = dir_option(argc, argv, &dir);
    if (rc)
        return rc < 0 ? 0 : rc;
    int removed = dmaq_channel_gc(dir);
    if (removed < 0) {
        fprintf(stderr, "dmaq: %s\n", dmaq_last_error());
        return 1;
    }
    printf("removed %d stale file%s from %s\n", removed, removed == 1 ? "" : "s", dir);
    return 0;
}

static int cmd_rm(int argc, char **argv)
{
    if (argc == 0)
        return usage("rm needs at least one channel name or URI%s", "");
    int status = 0;
    for (int i = 0; i < argc; i++) {
        char uri[1024];
        to_uri(argv[i], uri, sizeof uri);
        if (dmaq_channel_unlink(uri) < 0) {
            fprintf(stderr, "dmaq: %s\n", dmaq_last_error());
            status = 1;
        }
    }
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage("no command given%s", "");
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return fputs(usage_text, stdout), 0;
    if (strcmp(cmd, "ls") == 0)
        return cmd_ls(argc - 2, argv + 2);
    if (strcmp(cmd, "stat") == 0)
        return cmd_stat(argc - 2, argv + 2);
    if (strcmp(cmd, "gc") == 0)
        return cmd_gc(argc - 2, argv + 2);
    if (strcmp(cmd, "rm") == 0)
        return cmd_rm(argc - 2, argv + 2);
    return usage("unknown command '%s'", cmd);
}
