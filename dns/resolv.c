/* Upstream resolver addresses: "host[:port]" and resolv.conf(5), parsed in pure
 * functions (STYLE.md rule 19), with one thin loader that reads the file. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "dns/dns_int.h"

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static int parse_port(const char *s, uint16_t *ret)
{
    int64_t v;
    if (cm_parse_i64(s, 1, 65535, &v) != 0) {
        return CM_EINVAL;
    }
    *ret = (uint16_t)v;
    return 0;
}

int dns_upstream_parse(const char *s, struct dns_upstream *ret)
{
    char host[64];
    struct dns_upstream u = {.port = 53};
    if (s == NULL) {
        return CM_EINVAL;
    }
    const char *colon = strchr(s, ':');
    if (s[0] == '[') {
        /* [v6] or [v6]:port */
        const char *close = strchr(s, ']');
        if (close == NULL || (size_t)(close - s - 1) >= sizeof(host)) {
            return CM_EINVAL;
        }
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        if (close[1] == ':') {
            if (parse_port(close + 2, &u.port) != 0) {
                return CM_EINVAL;
            }
        } else if (close[1] != '\0') {
            return CM_EINVAL;
        }
        if (strchr(host, ':') == NULL) {
            return CM_EINVAL; /* brackets are for IPv6 only */
        }
    } else if (colon != NULL && strchr(colon + 1, ':') == NULL) {
        /* v4:port */
        if ((size_t)(colon - s) >= sizeof(host)) {
            return CM_EINVAL;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        if (parse_port(colon + 1, &u.port) != 0) {
            return CM_EINVAL;
        }
    } else {
        /* v4 or bare v6 */
        if (strlen(s) >= sizeof(host)) {
            return CM_EINVAL;
        }
        strcpy(host, s);
    }
    if (strchr(host, '%') != NULL || dns_addr_parse(host, &u.addr) != 0) {
        return CM_EINVAL;
    }
    *ret = u;
    return 0;
}

void dns_resolv_conf_parse(const char *text, size_t len, struct dns_upstream *ret,
                           size_t cap, size_t *ret_n)
{
    static const char kw[] = "nameserver";
    size_t n = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n') {
            end++;
        }
        size_t i = pos;
        pos = end + 1;
        while (i < end && is_blank(text[i])) {
            i++;
        }
        if (i == end || text[i] == '#' || text[i] == ';') {
            continue;
        }
        if (end - i <= sizeof(kw) - 1 || memcmp(text + i, kw, sizeof(kw) - 1) != 0 ||
            !is_blank(text[i + sizeof(kw) - 1])) {
            continue; /* another keyword (or "nameserverX") */
        }
        i += sizeof(kw) - 1;
        while (i < end && is_blank(text[i])) {
            i++;
        }
        size_t a = i;
        while (i < end && !is_blank(text[i]) && text[i] != '#' && text[i] != ';') {
            i++;
        }
        char addr[64];
        if (i == a || i - a >= sizeof(addr) || n >= cap) {
            continue;
        }
        memcpy(addr, text + a, i - a);
        addr[i - a] = '\0';
        /* resolv.conf names an address only, always on port 53. */
        struct dns_upstream u = {.port = 53};
        if (strchr(addr, '%') != NULL || dns_addr_parse(addr, &u.addr) != 0) {
            continue;
        }
        ret[n++] = u;
    }
    *ret_n = n;
}

int dns_resolv_conf_load(const char *path, struct dns_upstream *ret, size_t cap,
                         size_t *ret_n)
{
    enum { MAX = 64 * 1024 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return cm_errno();
    }
    char *buf = cm_malloc(MAX + 1);
    if (buf == NULL) {
        close(fd);
        return CM_ENOMEM;
    }
    size_t len = 0;
    int rv = 0;
    for (;;) {
        ssize_t k = read(fd, buf + len, MAX + 1 - len);
        if (k < 0) {
            if (errno == EINTR) {
                continue;
            }
            rv = cm_errno();
            break;
        }
        if (k == 0) {
            break;
        }
        len += (size_t)k;
        if (len > MAX) {
            rv = CM_ETOOBIG;
            break;
        }
    }
    close(fd);
    if (rv == 0) {
        dns_resolv_conf_parse(buf, len, ret, cap, ret_n);
    }
    cm_free(&buf);
    return rv;
}
