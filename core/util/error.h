/* Internal error helpers beside dmaq_error_set (dmaq/transport.h). */
#ifndef DMAQ_UTIL_ERROR_H
#define DMAQ_UTIL_ERROR_H

/* As dmaq_error_set with a fixed message, for paths a caller may take
 * millions of times a second (a try-receive that finds nothing): no
 * formatting, no copy; `message` must have static storage. */
int dmaq__error_const(int code, const char *message);

#endif
