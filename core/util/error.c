/* Status names and the thread-local detail string behind dmaq_last_error(). */
#include <stdarg.h>
#include <stdio.h>

#include "dmaq/transport.h"
#include "error.h"

static _Thread_local char last_error[512];
static _Thread_local const char *last_const; /* set by dmaq__error_const, else NULL */

const char *dmaq_strerror(int code)
{
    switch (code) {
    case DMAQ_OK:
        return "success";
#define DMAQ__CASE(name, num, text) \
    case DMAQ_##name:               \
        return text;
        DMAQ_ERRORS(DMAQ__CASE)
#undef DMAQ__CASE
    default:
        return code > 0 ? "success" : "unknown dmaq status";
    }
}

const char *dmaq_last_error(void) { return last_const ? last_const : last_error; }

int dmaq_error_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    last_const = NULL;
    return code;
}

int dmaq__error_const(int code, const char *message)
{
    last_const = message;
    return code;
}
