#include "proc.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Field 22 (start time) of /proc/PID/stat; 0 if there is no such process,
 * or (with `living`) if it is a zombie: it has exited, whatever it held is
 * abandoned, and only its parent has not collected it yet. */
static uint64_t start_time_of(pid_t pid, bool living)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: count the
     * fields after its last ')'. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return 0;
    if (living && (p[2] == 'Z' || p[2] == 'X'))
        return 0;
    for (int field = 2; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

uint64_t dmaq__proc_start_time(pid_t pid) { return start_time_of(pid, false); }

uint64_t dmaq__pid_ns(void)
{
    struct stat st;
    return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

bool dmaq__proc_alive(pid_t pid, uint64_t start_time)
{
    if (pid <= 0)
        return false;
    uint64_t now = start_time_of(pid, true);
    if (now == 0)
        return false;
    return start_time == 0 || now == start_time;
}
