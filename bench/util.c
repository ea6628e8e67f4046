/* Clocks, CPU pinning, shared memory and percentiles for dmaq-bench. */
#define _GNU_SOURCE
#include "bench.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

double ns_per_tick = 1;

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void calibrate_ticks(void)
{
    uint64_t t0 = now_ns(), c0 = ticks();
    while (now_ns() - t0 < 100000000)
        ;
    ns_per_tick = (double)(now_ns() - t0) / (double)(ticks() - c0);
}

uint64_t ns_to_ticks(double ns) { return (uint64_t)(ns / ns_per_tick); }

void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

void spin_for_ns(double ns)
{
    uint64_t end = ticks() + ns_to_ticks(ns);
    while (ticks() < end)
        cpu_relax();
}

int cpus_online(void) { return (int)sysconf(_SC_NPROCESSORS_ONLN); }

void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % cpus_online(), &set);
    sched_setaffinity(0, sizeof set, &set);
}

void unpin(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < cpus_online() && i < CPU_SETSIZE; i++)
        CPU_SET(i, &set);
    sched_setaffinity(0, sizeof set, &set);
}

void *shared_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("dmaq-bench: mmap");
        exit(1);
    }
    return p; /* anonymous mappings start zeroed */
}

void shared_free(void *p, size_t n) { munmap(p, n); }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct pct percentiles(double *v, size_t n)
{
    struct pct p = {0};
    if (n == 0)
        return p;
    qsort(v, n, sizeof *v, cmp_double);
#define AT(q) v[(size_t)((q) * (double)(n - 1) + 0.5)]
    p.p50 = AT(0.5);
    p.p90 = AT(0.9);
    p.p99 = AT(0.99);
    p.p999 = AT(0.999);
#undef AT
    p.max = v[n - 1];
    p.n = n;
    return p;
}
