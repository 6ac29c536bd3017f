/* Small string parsers shared by the CLI and the daemon. */
#include "base.h"

#include <stdlib.h>
#include <string.h>

int cm_parse_i64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
    if (s == NULL || *s == '\0') {
        return CM_EINVAL;
    }
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || end == s) {
        return CM_EINVAL;
    }
    if (errno == ERANGE || v < min || v > max) {
        return CM_ERANGE;
    }
    *ret = (int64_t)v;
    return 0;
}

int cm_parse_hostport(const char *s, char *host, size_t cap, uint16_t *ret_port)
{
    const char *colon;
    const char *hbeg = s;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            return CM_EINVAL;
        }
        hbeg = s + 1;
        hlen = (size_t)(close - hbeg);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || strchr(s, ':') != colon) {
            return CM_EINVAL;
        }
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= cap) {
        return CM_EINVAL;
    }
    int64_t port;
    int rv = cm_parse_i64(colon + 1, 1, 65535, &port);
    if (rv != 0) {
        return rv;
    }
    memcpy(host, hbeg, hlen);
    host[hlen] = '\0';
    *ret_port = (uint16_t)port;
    return 0;
}
