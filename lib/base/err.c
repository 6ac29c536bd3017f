/* Error codes and context messages (STYLE.md rules 8 and 9). */
#include "base.h"

#include <stdio.h>
#include <string.h>

struct err_entry {
    int code;
    const char *name;
    const char *msg;
};

static const struct err_entry err_table[] = {
#define CM__ERR_ROW(name, value, msg) {(value), #name, (msg)},
    CM_ERR_TABLE(CM__ERR_ROW)
#undef CM__ERR_ROW
};

static const struct err_entry *err_find(int code)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(err_table); i++) {
        if (err_table[i].code == code) {
            return &err_table[i];
        }
    }
    return NULL;
}

const char *cm_strerror(int code)
{
    const struct err_entry *e = err_find(code);
    if (e != NULL) {
        return e->msg;
    }
    if (code < 0 && code > -1000) {
        /* strerrordesc_np is thread-safe and returns static text (glibc 2.32+). */
        const char *s = strerrordesc_np(-code);
        if (s != NULL) {
            return s;
        }
    }
    return "unknown error";
}

const char *cm_errname(int code)
{
    const struct err_entry *e = err_find(code);
    return e != NULL ? e->name : NULL;
}

void cm_errbuf_clear(struct cm_errbuf *eb)
{
    if (eb == NULL) {
        return;
    }
    eb->code = 0;
    eb->msg[0] = '\0';
}

CM_PRINTF(3, 0)
static void errbuf_vset(struct cm_errbuf *eb, int code, const char *fmt, va_list ap)
{
    eb->code = code;
    vsnprintf(eb->msg, sizeof(eb->msg), fmt, ap);
}

int cm_err_setf(struct cm_errbuf *eb, int code, const char *fmt, ...)
{
    if (eb == NULL) {
        return code;
    }
    va_list ap;
    va_start(ap, fmt);
    errbuf_vset(eb, code, fmt, ap);
    va_end(ap);
    return code;
}

int cm_err_sys(struct cm_errbuf *eb, int code, const char *fmt, ...)
{
    if (eb == NULL) {
        return code;
    }
    va_list ap;
    va_start(ap, fmt);
    errbuf_vset(eb, code, fmt, ap);
    va_end(ap);
    size_t len = strlen(eb->msg);
    snprintf(eb->msg + len, sizeof(eb->msg) - len, ": %s", cm_strerror(code));
    return code;
}

int cm_err_wrapf(struct cm_errbuf *eb, const char *fmt, ...)
{
    if (eb == NULL) {
        return CM_EINTERNAL;
    }
    char prev[CM_ERRBUF_SIZE];
    if (eb->msg[0] != '\0') {
        memcpy(prev, eb->msg, sizeof(prev));
    } else {
        snprintf(prev, sizeof(prev), "%s", cm_strerror(eb->code));
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(eb->msg, sizeof(eb->msg), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(eb->msg)) {
        snprintf(eb->msg + n, sizeof(eb->msg) - (size_t)n, ": %s", prev);
    }
    if (eb->code == 0) {
        eb->code = CM_EINTERNAL;
    }
    return eb->code;
}
