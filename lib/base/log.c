/* One grep-able line per event on stderr. */
#include "base.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = CM_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cm_log_set_level(enum cm_log_level level)
{
    atomic_store(&log_level, (int)level);
}

enum cm_log_level cm_log_get_level(void)
{
    return (enum cm_log_level)atomic_load(&log_level);
}

int cm_log_parse_level(const char *s, enum cm_log_level *ret_level)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *ret_level = (enum cm_log_level)i;
            return 0;
        }
    }
    return CM_EINVAL;
}

/* Append @s to line[*len..cap) escaping quotes, backslashes and control bytes. */
static void append_escaped(char *line, size_t *len, size_t cap, const char *s)
{
    for (; *s != '\0' && *len + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            line[(*len)++] = '\\';
            line[(*len)++] = (char)c;
        } else if (c == '\n') {
            line[(*len)++] = '\\';
            line[(*len)++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            *len += (size_t)snprintf(line + *len, cap - *len, "\\x%02x", c);
        } else {
            line[(*len)++] = (char)c;
        }
    }
}

void cm_logv(enum cm_log_level level, const char *comp, const char *fmt, va_list ap)
{
    if ((int)level < atomic_load(&log_level)) {
        return;
    }
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char when[32];
    cm_time_iso8601((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, when);

    char line[1400];
    int n = snprintf(line, sizeof(line), "%s level=%s comp=%s msg=\"", when,
                     level_names[level <= CM_LOG_ERROR ? level : CM_LOG_ERROR],
                     comp != NULL ? comp : "-");
    size_t len = n > 0 ? (size_t)n : 0;
    append_escaped(line, &len, sizeof(line), msg);
    line[len++] = '"';
    line[len++] = '\n';
    /* One write so concurrent writers do not interleave within a line. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void cm_log(enum cm_log_level level, const char *comp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cm_logv(level, comp, fmt, ap);
    va_end(ap);
}
