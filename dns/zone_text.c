/* A zone as an RFC 1035 §5 master file, for debugging and for loading the same
 * records into another server (tests/bench/dns feeds it to Knot). */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns_int.h"

static int name_text(const uint8_t *wire, size_t len, char *out, size_t cap)
{
    struct dns_name n;
    if (len == 0 || len > DNS_NAME_MAX) {
        return CM_EINVAL;
    }
    memcpy(n.data, wire, len);
    n.len = len;
    return dns_name_to_str(&n, out, cap);
}

static int cmp_node(const void *a, const void *b)
{
    const struct dns__node *x = *(const struct dns__node *const *)a;
    const struct dns__node *y = *(const struct dns__node *const *)b;
    size_t n = CM_MIN(x->namelen, y->namelen);
    int c = memcmp(x->name, y->name, n);
    if (c != 0) {
        return c;
    }
    return (int)x->namelen - (int)y->namelen;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int put_node(struct cm_buf *out, const struct dns__node *n, uint32_t ttl)
{
    char owner[4 * DNS_NAME_MAX + 2];
    char addr[INET6_ADDRSTRLEN];
    char target[4 * DNS_NAME_MAX + 2];
    int rv = 0;
    if (name_text(n->name, n->namelen, owner, sizeof(owner)) < 0) {
        return CM_EINVAL;
    }
    for (uint32_t i = 0; i < n->na && rv == 0; i++) {
        inet_ntop(AF_INET, n->a[i], addr, sizeof(addr));
        rv = cm_buf_printf(out, "%s %u IN A %s\n", owner, ttl, addr);
    }
    for (uint32_t i = 0; i < n->naaaa && rv == 0; i++) {
        inet_ntop(AF_INET6, n->aaaa[i], addr, sizeof(addr));
        rv = cm_buf_printf(out, "%s %u IN AAAA %s\n", owner, ttl, addr);
    }
    for (uint32_t i = 0; i < n->nsrv && rv == 0; i++) {
        const struct dns__srv *s = &n->srv[i];
        if (name_text(s->target->name, s->target->namelen, target, sizeof(target)) < 0) {
            return CM_EINVAL;
        }
        rv = cm_buf_printf(out, "%s %u IN SRV %u %u %u %s\n", owner, ttl, s->priority,
                           s->weight, s->port, target);
    }
    return rv;
}

int dns_zone_to_text(const struct dns_zone *z, struct cm_buf *out)
{
    char origin[4 * DNS_NAME_MAX + 2];
    char m[4 * DNS_NAME_MAX + 2];
    char r[4 * DNS_NAME_MAX + 2];
    if (dns_name_to_str(&z->origin, origin, sizeof(origin)) < 0 ||
        dns_name_to_str(&z->mname, m, sizeof(m)) < 0 ||
        dns_name_to_str(&z->rname, r, sizeof(r)) < 0) {
        return CM_EINVAL;
    }
    const uint8_t *p = z->soa_post;
    int rv =
        cm_buf_printf(out, "$ORIGIN %s\n$TTL %u\n%s %u IN SOA %s %s %u %u %u %u %u\n",
                      origin, z->ttl, origin, z->ttl, m, r, get32(p), get32(p + 4),
                      get32(p + 8), get32(p + 12), get32(p + 16));
    for (size_t i = 0; i < z->nns && rv == 0; i++) {
        if (name_text(z->ns[i].name, z->ns[i].len, m, sizeof(m)) < 0) {
            return CM_EINVAL;
        }
        rv = cm_buf_printf(out, "%s %u IN NS %s\n", origin, z->ttl, m);
    }
    if (rv != 0) {
        return rv;
    }
    const struct dns__node **v = cm_reallocarray(NULL, z->count + 1, sizeof(*v));
    if (v == NULL) {
        return CM_ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i <= z->mask; i++) {
        if (z->table[i] != NULL) {
            v[n++] = z->table[i];
        }
    }
    qsort(v, n, sizeof(*v), cmp_node);
    for (size_t i = 0; i < n && rv == 0; i++) {
        rv = put_node(out, v[i], z->ttl);
    }
    cm_free_raw(v);
    return rv;
}
