/* Process identity that survives pid reuse: pid plus start time. */
#ifndef DMAQ_UTIL_PROC_H
#define DMAQ_UTIL_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Start time of process `pid` in clock ticks since boot (field 22 of
 * /proc/PID/stat), or 0 if it does not exist. */
uint64_t dmaq__proc_start_time(pid_t pid);

/* True if `pid` runs (a zombie does not) and started at `start_time`
 * (0 = do not compare). Reads /proc: microseconds, not for hot paths. */
bool dmaq__proc_alive(pid_t pid, uint64_t start_time);

/* Which PID namespace this process is in (the inode of /proc/self/ns/pid),
 * or 0 if that cannot be read. A pid means something only in its own
 * namespace: peers in another one (containers sharing /dev/shm but not
 * their process tree) cannot be judged alive or dead from here. */
uint64_t dmaq__pid_ns(void);

#endif
