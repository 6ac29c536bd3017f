/* Growable owned byte buffer. */
#include "base.h"

#include <stdio.h>
#include <string.h>

int cm_buf_reserve(struct cm_buf *b, size_t extra)
{
    size_t need;
    if (__builtin_add_overflow(b->len, extra, &need) ||
        __builtin_add_overflow(need, 1, &need)) {
        return CM_ENOMEM;
    }
    if (need <= b->cap) {
        return 0;
    }
    size_t cap = b->cap != 0 ? b->cap : 64;
    while (cap < need) {
        if (__builtin_mul_overflow(cap, 2, &cap)) {
            return CM_ENOMEM;
        }
    }
    char *data = cm_realloc(b->data, cap);
    if (data == NULL) {
        return CM_ENOMEM;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

int cm_buf_append(struct cm_buf *b, const void *data, size_t n)
{
    int rv = cm_buf_reserve(b, n);
    if (rv != 0) {
        return rv;
    }
    if (n > 0) {
        memcpy(b->data + b->len, data, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int cm_buf_puts(struct cm_buf *b, const char *s)
{
    return cm_buf_append(b, s, strlen(s));
}

int cm_buf_printf(struct cm_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return CM_EINVAL;
    }
    int rv = cm_buf_reserve(b, (size_t)n);
    if (rv != 0) {
        return rv;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void cm_buf_consume(struct cm_buf *b, size_t n)
{
    CM_BUG_ON(n > b->len);
    if (n == 0) {
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void cm_buf_clear(struct cm_buf *b)
{
    b->len = 0;
    if (b->data != NULL) {
        b->data[0] = '\0';
    }
}

void cm_buf_done(struct cm_buf *b)
{
    cm_free(&b->data);
    b->len = 0;
    b->cap = 0;
}

char *cm_buf_steal(struct cm_buf *b)
{
    char *data = b->data;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return data;
}
