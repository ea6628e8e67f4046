/*
 * A stand-in for the part of Criterion the tests use, for the
 * ThreadSanitizer build only: Criterion itself cannot run under TSan
 * (Snaipe/Criterion#274). Like Criterion, every test runs in its own forked
 * process; `--filter SUITE/NAME` (a glob) selects tests; Criterion's other
 * options are accepted and ignored. Each test file is one translation unit,
 * so the registry and main() live here.
 */
#ifndef DMAQ_TSAN_SHIM_CRITERION_H
#define DMAQ_TSAN_SHIM_CRITERION_H

/* cr_assert(cond) with no message passes "" as the format. */
#pragma GCC diagnostic ignored "-Wformat-zero-length"

#include <fnmatch.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct shim_test {
    const char *suite, *name;
    void (*fn)(void);
    struct shim_test *next;
};

static struct shim_test *shim_tests;
static bool shim_failed;

/* Test(suite, name, .options...) { body }: the options are ignored. */
#define Test(suite, name, ...)                                                                     \
    static void suite##_##name##_impl(void);                                                       \
    static struct shim_test suite##_##name##_entry = {#suite, #name, suite##_##name##_impl, NULL}; \
    __attribute__((constructor)) static void suite##_##name##_register(void)                       \
    {                                                                                              \
        suite##_##name##_entry.next = shim_tests;                                                  \
        shim_tests = &suite##_##name##_entry;                                                      \
    }                                                                                              \
    static void suite##_##name##_impl(void)

__attribute__((format(printf, 6, 7))) static void shim_check(bool ok, bool fatal, const char *file, int line,
                                                             const char *expr, const char *fmt, ...)
{
    if (ok)
        return;
    fprintf(stderr, "[----] %s:%d: Assertion failed: %s\n", file, line, expr);
    if (fmt[0]) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "[----]   ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
    shim_failed = true;
    if (fatal) {
        fflush(NULL);
        exit(1);
    }
}

#define shim_cond(fatal, cond, text, ...) shim_check((cond), (fatal), __FILE__, __LINE__, (text), "" __VA_ARGS__)
#define cr_assert(cond, ...) shim_cond(true, !!(cond), #cond, __VA_ARGS__)
#define cr_expect(cond, ...) shim_cond(false, !!(cond), #cond, __VA_ARGS__)
#define cr_assert_eq(a, b, ...) shim_cond(true, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) shim_cond(false, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) shim_cond(true, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) shim_cond(false, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) shim_cond(true, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) shim_cond(true, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) shim_cond(false, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) shim_cond(false, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) shim_cond(false, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) shim_cond(true, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) shim_cond(true, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) shim_cond(false, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...) shim_cond(true, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_null(p, ...) shim_cond(false, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) shim_cond(true, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) shim_cond(false, strcmp((a), (b)) == 0, #a " equals " #b, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...) shim_cond(false, strcmp((a), (b)) != 0, #a " differs from " #b, __VA_ARGS__)
#define cr_skip_test(...)                         \
    do {                                          \
        fprintf(stderr, "[SKIP] " __VA_ARGS__); \
        fprintf(stderr, "\n");                    \
        exit(0);                                  \
    } while (0)

int main(int argc, char **argv)
{
    const char *filter = "*";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
        else if (strncmp(argv[i], "--filter=", 9) == 0)
            filter = argv[i] + 9;
    }
    int ran = 0, failed = 0;
    for (struct shim_test *t = shim_tests; t; t = t->next) {
        char full[256];
        snprintf(full, sizeof full, "%s/%s", t->suite, t->name);
        if (fnmatch(filter, full, 0) != 0)
            continue;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            t->fn();
            fflush(NULL);
            exit(shim_failed ? 1 : 0);
        }
        int status = -1;
        waitpid(pid, &status, 0);
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        printf("[%s] %s::%s\n", ok ? "PASS" : "FAIL", t->suite, t->name);
        ran++;
        failed += !ok;
    }
    printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d\n", ran, ran - failed, failed);
    return failed ? 1 : 0;
}

#endif
