/* Minuteman VIP labels (shared/specs/compat.md §4.1, §4.2) and the named-VIP
 * address allocator. Pure: no I/O, no clock, no randomness. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "lb/lb_int.h"

char *lb_endpoint_str(struct lb_endpoint ep, char *out)
{
    char a[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &ep.addr, a, sizeof(a)) == NULL) {
        snprintf(a, sizeof(a), "?");
    }
    snprintf(out, LB_ENDPOINT_STRLEN, "%s:%u", a, (unsigned)ep.port);
    return out;
}

/* Strict dotted quad: inet_pton(AF_INET) already refuses the short and octal forms
 * inet_aton would take ("10.1", "010.0.0.1"). */
static bool parse_ipv4(const char *s, size_t len, struct in_addr *ret)
{
    char buf[INET_ADDRSTRLEN];
    if (len == 0 || len >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(AF_INET, buf, ret) == 1;
}

static bool parse_ipv6(const char *s, size_t len)
{
    char buf[INET6_ADDRSTRLEN + 2];
    struct in6_addr a6;
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(AF_INET6, buf, &a6) == 1;
}

/* A decimal port 1..65535, nothing else (no sign, no spaces, no leading '+'). */
static bool parse_port(const char *s, uint16_t *ret)
{
    uint32_t v = 0;
    if (*s == '\0' || strlen(s) > 5) {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
        v = v * 10 + (uint32_t)(*s - '0');
    }
    if (v == 0 || v > 65535) {
        return false;
    }
    *ret = (uint16_t)v;
    return true;
}

int lb_endpoint_parse(const char *s, struct lb_endpoint *ret)
{
    const char *colon = s != NULL ? strrchr(s, ':') : NULL;
    struct lb_endpoint ep;
    if (colon == NULL || !parse_ipv4(s, (size_t)(colon - s), &ep.addr) ||
        !parse_port(colon + 1, &ep.port)) {
        return CM_EINVAL;
    }
    *ret = ep;
    return 0;
}

static bool starts_with_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* "<name or ip>:<port>" shared by both label forms. @label is the key for
 * messages. */
static int parse_target(const char *label, const char *value, bool allow_name,
                        struct lb_decl *d, struct cm_errbuf *eb)
{
    const char *colon = strrchr(value, ':');
    if (colon == NULL) {
        return cm_err_setf(eb, CM_EINVAL, "label %s: `%s` has no `:<port>`", label,
                           value);
    }
    if (!parse_port(colon + 1, &d->port)) {
        return cm_err_setf(eb, CM_EINVAL,
                           "label %s: port `%s` is not an integer in 1..65535", label,
                           colon + 1);
    }
    size_t hlen = (size_t)(colon - value);
    if (hlen == 0) {
        return cm_err_setf(eb, CM_EINVAL,
                           "label %s: `%s` has no name or address before "
                           "the port",
                           label, value);
    }
    if (allow_name && strstr(value, "://") != NULL) {
        return cm_err_setf(eb, CM_EINVAL,
                           "label %s: `%s` has a scheme: `tcp://a.b.c.d:port` belongs in "
                           "the legacy app label vip_PORT<n>",
                           label, value);
    }
    if (parse_ipv4(value, hlen, &d->addr)) {
        d->kind = LB_DECL_ADDR;
        return 0;
    }
    if (parse_ipv6(value, hlen) || memchr(value, ':', hlen) != NULL) {
        /* Split on the last ':' leaves IPv6 literals on the left (compat.md §4.1). */
        return cm_err_setf(eb, CM_EUNSUPPORTED,
                           "label %s: IPv6 VIP `%.*s` is not supported yet", label,
                           (int)hlen, value);
    }
    if (!allow_name) {
        return cm_err_setf(eb, CM_EINVAL, "label %s: `%.*s` is not an IPv4 address",
                           label, (int)hlen, value);
    }
    const char *name = value;
    if (name[0] == '/') {
        name++;
        hlen--;
    }
    if (hlen == 0) {
        return cm_err_setf(eb, CM_EINVAL, "label %s: empty VIP name in `%s`", label,
                           value);
    }
    if (hlen >= LB_NAME_MAX) {
        return cm_err_setf(eb, CM_EINVAL, "label %s: VIP name is longer than %d bytes",
                           label, LB_NAME_MAX - 1);
    }
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= ' ' || c >= 0x7f) {
            return cm_err_setf(eb, CM_EINVAL,
                               "label %s: VIP name `%.*s` has a space or a non-printable "
                               "character",
                               label, (int)hlen, name);
        }
    }
    memcpy(d->name, name, hlen);
    d->name[hlen] = '\0';
    d->kind = LB_DECL_NAMED;
    d->addr.s_addr = 0;
    return 0;
}

int lb_port_label_parse(const char *key, const char *value, enum lb_proto proto,
                        struct lb_decl *ret, struct cm_errbuf *eb)
{
    struct lb_decl d;
    if (key == NULL || (strncmp(key, "VIP", 3) != 0 && strncmp(key, "vip", 3) != 0)) {
        return CM_ENOTFOUND;
    }
    if (value == NULL) {
        return cm_err_setf(eb, CM_EINVAL, "label %s: no value", key);
    }
    if (proto != LB_PROTO_TCP && proto != LB_PROTO_UDP) {
        return cm_err_setf(eb, CM_EINVAL, "label %s: unknown protocol", key);
    }
    memset(&d, 0, sizeof(d));
    d.proto = proto;
    d.port_index = -1;
    int rv = parse_target(key, value, true, &d, eb);
    if (rv != 0) {
        return rv;
    }
    *ret = d;
    return 0;
}

int lb_app_label_parse(const char *key, const char *value, struct lb_decl *ret,
                       struct cm_errbuf *eb)
{
    struct lb_decl d;
    const char *idx;
    if (key == NULL || !starts_with_ci(key, "vip_port")) {
        return CM_ENOTFOUND;
    }
    idx = key + strlen("vip_port");
    if (*idx == '\0' || strspn(idx, "0123456789") != strlen(idx) || strlen(idx) > 5) {
        return CM_ENOTFOUND; /* "VIP_PORTAL" is some other label */
    }
    if (value == NULL) {
        return cm_err_setf(eb, CM_EINVAL, "label %s: no value", key);
    }
    memset(&d, 0, sizeof(d));
    d.port_index = atoi(idx);
    if (starts_with_ci(value, "tcp://")) {
        d.proto = LB_PROTO_TCP;
    } else if (starts_with_ci(value, "udp://")) {
        d.proto = LB_PROTO_UDP;
    } else {
        return cm_err_setf(
            eb, CM_EINVAL,
            "label %s: `%s` must be tcp://<ip>:<port> or udp://<ip>:<port>", key, value);
    }
    int rv = parse_target(key, value + 6, false, &d, eb);
    if (rv != 0) {
        return rv;
    }
    *ret = d;
    return 0;
}

/* One domain_frag part (compat.md §4.2) of [s, s+len) appended at out[*pos]. */
static int frag_part(const char *s, size_t len, char *out, size_t cap, size_t *pos)
{
    size_t start = *pos, n = 0;
    for (size_t i = 0; i < len && n < 63; i++) {
        char c = (char)tolower((unsigned char)s[i]);
        if (c == '-' || c == '_') {
            c = '-';
        } else if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9')) {
            continue;
        }
        if (c == '-' && n == 0) {
            continue; /* leading '-' stripped */
        }
        if (*pos + 1 >= cap) {
            return CM_EMSGSIZE;
        }
        out[(*pos)++] = c;
        n++;
    }
    (void)start;
    return 0;
}

static int frag(const char *s, char *out, size_t cap, size_t *pos)
{
    bool any = false;
    while (*s != '\0') {
        const char *dot = strchr(s, '.');
        size_t len = dot != NULL ? (size_t)(dot - s) : strlen(s);
        size_t before = *pos;
        if (any) {
            if (*pos + 1 >= cap) {
                return CM_EMSGSIZE;
            }
            out[(*pos)++] = '.';
        }
        int rv = frag_part(s, len, out, cap, pos);
        if (rv != 0) {
            return rv;
        }
        if (*pos == before + (any ? 1 : 0)) {
            *pos = before; /* empty part: dropped with its dot */
        } else {
            any = true;
        }
        s += len;
        if (*s == '.') {
            s++;
        }
    }
    return any ? 0 : CM_EINVAL;
}

int lb_vip_dns_name(const char *name, const char *framework, char *out, size_t cap)
{
    size_t pos = 0;
    int rv;
    if (name == NULL || framework == NULL || cap == 0) {
        return CM_EINVAL;
    }
    rv = frag(name, out, cap, &pos);
    if (rv == 0) {
        if (pos + 1 >= cap) {
            rv = CM_EMSGSIZE;
        } else {
            out[pos++] = '.';
            rv = frag(framework, out, cap, &pos);
        }
    }
    if (rv != 0) {
        out[0] = '\0';
        return rv;
    }
    out[pos] = '\0';
    return 0;
}

/* ------------------------------------------------------------------ allocator */

int lb_cidr_parse(const char *s, struct lb_cidr *ret)
{
    const char *slash = s != NULL ? strchr(s, '/') : NULL;
    struct lb_cidr c;
    int64_t prefix;
    if (slash == NULL || !parse_ipv4(s, (size_t)(slash - s), &c.net) ||
        cm_parse_i64(slash + 1, 0, 32, &prefix) != 0) {
        return CM_EINVAL;
    }
    c.prefix = (uint8_t)prefix;
    uint32_t mask = c.prefix == 0 ? 0 : ~(uint32_t)0 << (32 - c.prefix);
    if ((ntohl(c.net.s_addr) & ~mask) != 0) {
        return CM_EINVAL;
    }
    *ret = c;
    return 0;
}

static uint32_t cidr_mask(const struct lb_cidr *c)
{
    return c->prefix == 0 ? 0 : ~(uint32_t)0 << (32 - c->prefix);
}

bool lb_cidr_contains(const struct lb_cidr *c, struct in_addr a)
{
    uint32_t m = cidr_mask(c);
    return (ntohl(a.s_addr) & m) == (ntohl(c->net.s_addr) & m);
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static const char *strip_slash(const char *name)
{
    return name[0] == '/' ? name + 1 : name;
}

int lb_vip_alloc(const struct lb_cidr *cidr, const struct lb_alloc_entry *taken,
                 size_t ntaken, const char *name, struct in_addr *ret)
{
    if (cidr == NULL || cidr->prefix > 32 || name == NULL || *strip_slash(name) == '\0') {
        return CM_EINVAL;
    }
    name = strip_slash(name);
    for (size_t i = 0; i < ntaken; i++) {
        if (taken[i].name != NULL && strcmp(strip_slash(taken[i].name), name) == 0) {
            *ret = taken[i].addr;
            return 0;
        }
    }

    uint32_t base = ntohl(cidr->net.s_addr) & cidr_mask(cidr);
    uint64_t size = (uint64_t)1 << (32 - cidr->prefix);
    uint64_t first = 0;
    if (cidr->prefix <= 30) {
        first = 1; /* skip the network and broadcast addresses */
        size -= 2;
    }

    /* Sorted taken addresses in host order for bsearch while probing. */
    uint32_t *sorted = cm_reallocarray(NULL, ntaken ? ntaken : 1, sizeof(uint32_t));
    if (sorted == NULL) {
        return CM_ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < ntaken; i++) {
        if (lb_cidr_contains(cidr, taken[i].addr)) {
            sorted[n++] = ntohl(taken[i].addr.s_addr);
        }
    }
    qsort(sorted, n, sizeof(*sorted), u32_cmp);

    /* FNV-1a 64: stable across platforms and releases, unlike a library hash. */
    uint64_t h = 14695981039346656037ull;
    for (const char *p = name; *p != '\0'; p++) {
        h ^= (uint8_t)*p;
        h *= 1099511628211ull;
    }
    int rv = CM_ENOSPC;
    for (uint64_t i = 0; i < size; i++) {
        uint32_t cand = base + (uint32_t)(first + (h + i) % size);
        if (bsearch(&cand, sorted, n, sizeof(*sorted), u32_cmp) == NULL) {
            ret->s_addr = htonl(cand);
            rv = 0;
            break;
        }
    }
    cm_free(&sorted);
    return rv;
}
