/* The zone: names derived from the cluster (DESIGN.md §8, compat.md §3), in a
 * hash table keyed by the lower-case wire name, frozen into an immutable,
 * reference-counted snapshot. */
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "dns/dns_int.h"

#define COMPAT_FRAMEWORK "marathon"
#define MAX_SEGMENTS     128 /* a 255-byte name has at most 127 labels */

struct dns_zone_builder {
    struct dns_zone *z;
    int err;  /* sticky CM_ENOMEM */
    bool dry; /* derive and check names without adding anything */
    struct dns_zone_config cfg;
    bool have_mname;
    unsigned nmasters;
    bool compat_leader_done;
    bool compat_slave_done;
};

/* ======================================================================= hashing */

uint64_t dns__hash(const uint8_t *name, size_t len)
{
    /* FNV-1a, then a final mix (names differ mostly in their first bytes). */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= name[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

const struct dns__node *dns__zone_find(const struct dns_zone *z, const uint8_t *name,
                                       size_t len)
{
    uint64_t h = dns__hash(name, len);
    for (size_t i = (size_t)h & z->mask;; i = (i + 1) & z->mask) {
        const struct dns__node *n = z->table[i];
        if (n == NULL) {
            return NULL;
        }
        if (n->hash == h && n->namelen == len && memcmp(n->name, name, len) == 0) {
            return n;
        }
    }
}

static int table_grow(struct dns_zone *z)
{
    size_t size = (z->mask + 1) * 2;
    struct dns__node **t = cm_calloc(size, sizeof(*t));
    if (t == NULL) {
        return CM_ENOMEM;
    }
    for (size_t i = 0; i <= z->mask; i++) {
        struct dns__node *n = z->table[i];
        if (n == NULL) {
            continue;
        }
        size_t j = (size_t)n->hash & (size - 1);
        while (t[j] != NULL) {
            j = (j + 1) & (size - 1);
        }
        t[j] = n;
    }
    cm_free(&z->table);
    z->table = t;
    z->mask = size - 1;
    return 0;
}

/* Find or create the node of @name (lower-case, in the zone) and the empty
 * non-terminals above it. Every node's ancestors up to the apex exist, so the
 * walk stops at the first name that is there. NULL on CM_ENOMEM. */
static struct dns__node *node_get(struct dns_zone_builder *b, const uint8_t *name,
                                  size_t len)
{
    struct dns_zone *z = b->z;
    struct dns__node *first = NULL;
    while (true) {
        struct dns__node *n = (struct dns__node *)dns__zone_find(z, name, len);
        if (n != NULL) {
            return first != NULL ? first : n;
        }
        if ((z->count + 1) * 2 > z->mask + 1 && table_grow(z) != 0) {
            return NULL;
        }
        n = cm_calloc(1, sizeof(*n) + len);
        if (n == NULL) {
            return NULL;
        }
        n->hash = dns__hash(name, len);
        n->namelen = (uint16_t)len;
        memcpy(n->name, name, len);
        size_t i = (size_t)n->hash & z->mask;
        while (z->table[i] != NULL) {
            i = (i + 1) & z->mask;
        }
        z->table[i] = n;
        z->count++;
        if (first == NULL) {
            first = n;
        }
        if (len <= z->origin.len) {
            return first; /* the apex itself */
        }
        len -= 1 + (size_t)name[0];
        name += 1 + (size_t)name[0];
    }
}

static int grow(void *pp, uint32_t *cap, size_t elem)
{
    uint32_t ncap = *cap ? *cap * 2 : 2;
    void *p = cm_reallocarray(*(void **)pp, ncap, elem);
    if (p == NULL) {
        return CM_ENOMEM;
    }
    *(void **)pp = p;
    *cap = ncap;
    return 0;
}

/* Add an address to a node, once (RFC 2181 §5: no duplicate records in an
 * RRset). Beyond DNS_RRSET_MAX records are dropped. */
static int node_add_addr(struct dns__node *n, const struct dns_addr *a)
{
    if (a->family == DNS_AF_INET4) {
        for (uint32_t i = 0; i < n->na; i++) {
            if (memcmp(n->a[i], a->bytes, 4) == 0) {
                return 0;
            }
        }
        if (n->na >= DNS_RRSET_MAX) {
            return 0;
        }
        if (n->na == n->capa && grow(&n->a, &n->capa, sizeof(n->a[0])) != 0) {
            return CM_ENOMEM;
        }
        memcpy(n->a[n->na++], a->bytes, 4);
    } else {
        for (uint32_t i = 0; i < n->naaaa; i++) {
            if (memcmp(n->aaaa[i], a->bytes, 16) == 0) {
                return 0;
            }
        }
        if (n->naaaa >= DNS_RRSET_MAX) {
            return 0;
        }
        if (n->naaaa == n->capaaaa &&
            grow(&n->aaaa, &n->capaaaa, sizeof(n->aaaa[0])) != 0) {
            return CM_ENOMEM;
        }
        memcpy(n->aaaa[n->naaaa++], a->bytes, 16);
    }
    return 0;
}

static int node_add_srv(struct dns__node *n, uint16_t port,
                        const struct dns__node *target)
{
    for (uint32_t i = 0; i < n->nsrv; i++) {
        if (n->srv[i].port == port && n->srv[i].target == target) {
            return 0;
        }
    }
    if (n->nsrv >= DNS_RRSET_MAX) {
        return 0;
    }
    if (n->nsrv == n->capsrv && grow(&n->srv, &n->capsrv, sizeof(n->srv[0])) != 0) {
        return CM_ENOMEM;
    }
    /* Priority 0, weight 1: DESIGN.md §8, as Mesos-DNS (compat.md §3.3). */
    n->srv[n->nsrv++] = (struct dns__srv){0, 1, port, target};
    return 0;
}

/* ======================================================================= names */

/* A name being put together, left to right. */
struct nb {
    uint8_t d[DNS_NAME_MAX];
    size_t len;
    bool over; /* over 255 bytes */
    bool bad;  /* an empty label */
};

static void nb_init(struct nb *n)
{
    n->len = 0;
    n->over = false;
    n->bad = false;
}

/* Append a label as is (1..63 bytes). */
static void nb_raw(struct nb *n, const char *s, size_t l)
{
    if (l == 0 || l > DNS_LABEL_MAX) {
        n->bad = true;
        return;
    }
    if (n->over || n->len + 1 + l + 1 > DNS_NAME_MAX) {
        n->over = true;
        return;
    }
    n->d[n->len++] = (uint8_t)l;
    memcpy(n->d + n->len, s, l);
    n->len += l;
}

/* compat.md §3.1: lower-case; keep [a-z0-9]; '-', '.', '_' become '-'; drop the
 * rest; trim '-' at both ends. Writes at most @n bytes to @out. */
static size_t label_map(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = dns__lower((uint8_t)s[i]);
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            out[o++] = (char)c;
        } else if ((c == '-' || c == '.' || c == '_') && o > 0) {
            out[o++] = '-';
        }
    }
    while (o > 0 && out[o - 1] == '-') {
        o--;
    }
    return o;
}

/* Append @prefix (e.g. "_") and the mapped form of @s as one label, cut to fit
 * 63 bytes keeping the head or (@tail) the end. */
static void nb_label(struct nb *n, const char *prefix, const char *s, size_t l, bool tail)
{
    char buf[DNS_LABEL_MAX + 1];
    char tmp[1024];
    if (l > sizeof(tmp)) {
        if (tail) {
            s += l - sizeof(tmp);
        }
        l = sizeof(tmp);
    }
    size_t m = label_map(s, l, tmp);
    size_t pl = strlen(prefix);
    size_t room = DNS_LABEL_MAX - pl;
    const char *src = tmp;
    if (m > room) {
        if (tail) {
            src += m - room;
        }
        m = room;
        /* Cutting may leave a '-' at the cut end. */
        while (tail && m > 0 && src[0] == '-') {
            src++;
            m--;
        }
        while (!tail && m > 0 && src[m - 1] == '-') {
            m--;
        }
    }
    if (m == 0) {
        n->bad = true;
        return;
    }
    memcpy(buf, prefix, pl);
    memcpy(buf + pl, src, m);
    nb_raw(n, buf, pl + m);
}

static void nb_str(struct nb *n, const char *s)
{
    nb_raw(n, s, strlen(s));
}

static void nb_name(struct nb *n, const struct dns_name *name)
{
    if (n->over || n->len + name->len > DNS_NAME_MAX) {
        n->over = true;
        return;
    }
    memcpy(n->d + n->len, name->data, name->len);
    n->len += name->len;
}

static int nb_check(const struct nb *n)
{
    return n->bad ? CM_EINVAL : n->over ? CM_ETOOBIG : 0;
}

/* ======================================================================= emitting */

static int emit_addr(struct dns_zone_builder *b, struct nb *name,
                     const struct dns_addr *a)
{
    int rv = nb_check(name);
    if (rv != 0 || b->dry) {
        return rv;
    }
    struct dns__node *n = node_get(b, name->d, name->len);
    if (n == NULL) {
        return CM_ENOMEM;
    }
    return node_add_addr(n, a);
}

static int emit_srv(struct dns_zone_builder *b, struct nb *owner, uint16_t port,
                    struct nb *target)
{
    int rv = nb_check(owner);
    if (rv == 0) {
        rv = nb_check(target);
    }
    if (rv != 0 || b->dry) {
        return rv;
    }
    struct dns__node *t = node_get(b, target->d, target->len);
    if (t == NULL) {
        return CM_ENOMEM;
    }
    struct dns__node *n = node_get(b, owner->d, owner->len);
    if (n == NULL) {
        return CM_ENOMEM;
    }
    return node_add_srv(n, port, t);
}

static bool addr_ok(const struct dns_addr *a)
{
    return a != NULL && (a->family == DNS_AF_INET4 || a->family == DNS_AF_INET6);
}

/* Run @gen once dry (so that invalid input changes nothing), then for real. A
 * failure of the real run can only be CM_ENOMEM, which sticks. */
#define BUILDER_RUN(b, call)      \
    do {                          \
        if ((b)->err != 0) {      \
            return (b)->err;      \
        }                         \
        (b)->dry = true;          \
        int rv_ = (call);         \
        (b)->dry = false;         \
        if (rv_ != 0) {           \
            return rv_;           \
        }                         \
        rv_ = (call);             \
        if (rv_ != 0) {           \
            (b)->err = CM_ENOMEM; \
            return CM_ENOMEM;     \
        }                         \
        return 0;                 \
    } while (0)

/* ======================================================================= builder */

int dns_zone_builder_new(const struct dns_zone_config *cfg,
                         struct dns_zone_builder **ret_b)
{
    struct dns_name origin;
    const char *domain = cfg->domain != NULL ? cfg->domain : "cluster";
    int rv = dns_name_from_str(domain, &origin);
    if (rv != 0) {
        return rv;
    }
    if (origin.len <= 1) {
        return CM_EINVAL; /* not the root */
    }
    dns_name_lower(&origin);

    struct dns_zone_builder *b = cm_calloc(1, sizeof(*b));
    if (b == NULL) {
        return CM_ENOMEM;
    }
    b->cfg = *cfg;
    b->cfg.domain = NULL;
    b->cfg.mname = NULL;
    b->cfg.rname = NULL;
    if (b->cfg.ttl == 0) {
        b->cfg.ttl = DNS_DEFAULT_TTL;
    }
    struct dns_zone *z = cm_calloc(1, sizeof(*z));
    if (z == NULL) {
        goto err_after_b;
    }
    b->z = z;
    atomic_init(&z->refs, 1);
    z->origin = origin;
    z->ttl = b->cfg.ttl;
    z->mask = 63;
    z->table = cm_calloc(z->mask + 1, sizeof(*z->table));
    if (z->table == NULL) {
        goto err_after_b;
    }
    struct nb n;
    if (cfg->mname != NULL) {
        rv = dns_name_from_str(cfg->mname, &z->mname);
        if (rv != 0) {
            goto err_inval;
        }
        dns_name_lower(&z->mname);
        b->have_mname = true;
    }
    if (cfg->rname != NULL) {
        rv = dns_name_from_str(cfg->rname, &z->rname);
        if (rv != 0) {
            goto err_inval;
        }
        dns_name_lower(&z->rname);
    } else {
        nb_init(&n);
        nb_str(&n, "hostmaster");
        nb_name(&n, &origin);
        if ((rv = nb_check(&n)) != 0) {
            goto err_inval;
        }
        memcpy(z->rname.data, n.d, n.len);
        z->rname.len = n.len;
    }
    if (node_get(b, origin.data, origin.len) == NULL) {
        goto err_after_b;
    }
    *ret_b = b;
    return 0;

err_inval:
    dns_zone_builder_free(b);
    return rv;
err_after_b:
    dns_zone_builder_free(b);
    return CM_ENOMEM;
}

static void zone_free(struct dns_zone *z)
{
    if (z == NULL) {
        return;
    }
    if (z->table != NULL) {
        for (size_t i = 0; i <= z->mask; i++) {
            struct dns__node *n = z->table[i];
            if (n != NULL) {
                cm_free(&n->a);
                cm_free(&n->aaaa);
                cm_free(&n->srv);
                cm_free(&n);
            }
        }
        cm_free(&z->table);
    }
    for (size_t i = 0; i < z->nns; i++) {
        cm_free(&z->ns[i].name);
    }
    cm_free(&z->ns);
    cm_free_raw(z);
}

void dns_zone_builder_free(struct dns_zone_builder *b)
{
    if (b == NULL) {
        return;
    }
    zone_free(b->z);
    cm_free_raw(b);
}

static int gen_ns(struct dns_zone_builder *b, const struct dns_name *name,
                  const struct dns_addr *addr)
{
    struct dns_zone *z = b->z;
    struct nb n;
    int rv;
    if (addr != NULL && dns_name_in_zone(name, &z->origin)) {
        nb_init(&n);
        nb_name(&n, name);
        if ((rv = emit_addr(b, &n, addr)) != 0) {
            return rv;
        }
    }
    if (b->cfg.mesos_compat && addr != NULL) {
        /* master.D: every master; masterN.D: each in order (compat.md §3.2). */
        char label[32];
        nb_init(&n);
        nb_str(&n, "master");
        nb_name(&n, &z->origin);
        if ((rv = emit_addr(b, &n, addr)) != 0) {
            return rv;
        }
        nb_init(&n);
        nb_raw(&n, label,
               (size_t)snprintf(label, sizeof(label), "master%u", b->nmasters));
        nb_name(&n, &z->origin);
        if ((rv = emit_addr(b, &n, addr)) != 0) {
            return rv;
        }
        if (!b->dry) {
            b->nmasters++;
        }
    }
    if (b->dry) {
        return 0;
    }
    for (size_t i = 0; i < z->nns; i++) {
        if (z->ns[i].len == name->len &&
            memcmp(z->ns[i].name, name->data, name->len) == 0) {
            return 0;
        }
    }
    struct dns__ns *ns = cm_reallocarray(z->ns, z->nns + 1, sizeof(*ns));
    if (ns == NULL) {
        return CM_ENOMEM;
    }
    z->ns = ns;
    ns[z->nns].name = cm_memdup(name->data, name->len);
    if (ns[z->nns].name == NULL) {
        return CM_ENOMEM;
    }
    ns[z->nns].len = name->len;
    ns[z->nns].glue = NULL;
    z->nns++;
    return 0;
}

int dns_zone_add_ns(struct dns_zone_builder *b, const char *name,
                    const struct dns_addr *addr)
{
    struct dns_name n;
    if (name == NULL || (addr != NULL && !addr_ok(addr))) {
        return CM_EINVAL;
    }
    int rv = dns_name_from_str(name, &n);
    if (rv != 0) {
        return rv;
    }
    if (n.len <= 1) {
        return CM_EINVAL;
    }
    dns_name_lower(&n);
    BUILDER_RUN(b, gen_ns(b, &n, addr));
}

static int gen_leader(struct dns_zone_builder *b, const struct dns_addr *addr)
{
    const struct dns_name *o = &b->z->origin;
    struct nb leader, n;
    nb_init(&leader);
    nb_str(&leader, "leader");
    nb_name(&leader, o);
    int rv = emit_addr(b, &leader, addr);
    if (rv != 0 || !b->cfg.mesos_compat) {
        return rv;
    }
    /* F.D is the framework's scheduler: here the leader (compat.md §3.2). */
    struct nb fw;
    nb_init(&fw);
    nb_str(&fw, COMPAT_FRAMEWORK);
    nb_name(&fw, o);
    if ((rv = emit_addr(b, &fw, addr)) != 0) {
        return rv;
    }
    if (b->compat_leader_done) {
        return 0;
    }
    uint16_t lport = b->cfg.compat_leader_port ? b->cfg.compat_leader_port : 5050;
    uint16_t fport = b->cfg.compat_framework_port ? b->cfg.compat_framework_port : 8080;
    static const char *const protos[] = {"_tcp", "_udp"};
    for (int i = 0; i < 2; i++) {
        nb_init(&n);
        nb_str(&n, "_leader");
        nb_str(&n, protos[i]);
        nb_name(&n, o);
        if ((rv = emit_srv(b, &n, lport, &leader)) != 0) {
            return rv;
        }
    }
    nb_init(&n);
    nb_str(&n, "_framework");
    nb_str(&n, "_tcp");
    nb_str(&n, COMPAT_FRAMEWORK);
    nb_name(&n, o);
    if ((rv = emit_srv(b, &n, fport, &fw)) != 0) {
        return rv;
    }
    if (!b->dry) {
        b->compat_leader_done = true;
    }
    return 0;
}

int dns_zone_add_leader(struct dns_zone_builder *b, const struct dns_addr *addr)
{
    if (!addr_ok(addr)) {
        return CM_EINVAL;
    }
    BUILDER_RUN(b, gen_leader(b, addr));
}

static int gen_node(struct dns_zone_builder *b, const char *node,
                    const struct dns_addr *addr)
{
    const struct dns_name *o = &b->z->origin;
    struct nb n;
    nb_init(&n);
    nb_label(&n, "", node, strlen(node), false);
    nb_str(&n, "node");
    nb_name(&n, o);
    int rv = emit_addr(b, &n, addr);
    if (rv != 0 || !b->cfg.mesos_compat) {
        return rv;
    }
    struct nb slave;
    nb_init(&slave);
    nb_str(&slave, "slave");
    nb_name(&slave, o);
    if ((rv = emit_addr(b, &slave, addr)) != 0 || b->compat_slave_done) {
        return rv;
    }
    nb_init(&n);
    nb_str(&n, "_slave");
    nb_str(&n, "_tcp");
    nb_name(&n, o);
    uint16_t port = b->cfg.compat_agent_port ? b->cfg.compat_agent_port : 5051;
    if ((rv = emit_srv(b, &n, port, &slave)) != 0) {
        return rv;
    }
    if (!b->dry) {
        b->compat_slave_done = true;
    }
    return 0;
}

int dns_zone_add_node(struct dns_zone_builder *b, const char *node,
                      const struct dns_addr *addr)
{
    if (node == NULL || !addr_ok(addr)) {
        return CM_EINVAL;
    }
    BUILDER_RUN(b, gen_node(b, node, addr));
}

/* ======================================================================= apps */

struct segs {
    unsigned n;
    struct {
        const char *s;
        size_t len;
    } v[MAX_SEGMENTS];
};

/* "/shop/backend/api" → {shop, backend, api}. */
static int split_path(const char *path, struct segs *sg)
{
    if (path == NULL || path[0] != '/') {
        return CM_EINVAL;
    }
    sg->n = 0;
    const char *p = path + 1;
    while (*p != '\0') {
        const char *e = strchr(p, '/');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        if (l == 0) {
            return CM_EINVAL;
        }
        if (sg->n == MAX_SEGMENTS) {
            return CM_ETOOBIG;
        }
        sg->v[sg->n].s = p;
        sg->v[sg->n].len = l;
        sg->n++;
        if (e == NULL) {
            break;
        }
        p = e + 1;
        if (*p == '\0') {
            return CM_EINVAL; /* trailing '/' */
        }
    }
    return sg->n > 0 ? 0 : CM_EINVAL;
}

/* Append segments [0, upto) in reverse order, one label each. */
static void nb_segs(struct nb *n, const struct segs *sg, unsigned upto)
{
    for (unsigned i = upto; i-- > 0;) {
        nb_label(n, "", sg->v[i].s, sg->v[i].len, false);
    }
}

static const char *const proto_labels[2] = {"_tcp", "_udp"};
static const unsigned proto_bits[2] = {DNS_PROTO_TCP, DNS_PROTO_UDP};

/* Mesos-DNS's task hash: the first 5 characters of zbase32(sha1(task id))
 * (records/generator.go hashString). */
static void compat_hash(const char *id, char out[6])
{
    static const char alphabet[] = "ybndrfg8ejkmcpqxot1uwisza345h769";
    uint8_t md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)id, strlen(id), md);
    uint32_t bits = ((uint32_t)md[0] << 24) | ((uint32_t)md[1] << 16) |
                    ((uint32_t)md[2] << 8) | md[3];
    for (int i = 0; i < 5; i++) {
        out[i] = alphabet[(bits >> (27 - 5 * i)) & 31];
    }
    out[5] = '\0';
}

/* The Mesos-DNS names of one running task (compat.md §3.2, framework
 * "marathon", DiscoveryInfo semantics). */
static int gen_compat_task(struct dns_zone_builder *b, const struct segs *sg,
                           const struct dns_task *t)
{
    const struct dns_name *o = &b->z->origin;
    int rv;
    /* L: the reversed path, dot-joined, then labelled. */
    char joined[1024];
    size_t jl = 0;
    for (unsigned i = sg->n; i-- > 0;) {
        size_t l = sg->v[i].len;
        if (jl + l + 1 > sizeof(joined)) {
            return CM_ETOOBIG;
        }
        memcpy(joined + jl, sg->v[i].s, l);
        jl += l;
        joined[jl++] = '.';
    }
    jl--;
    char lab[DNS_LABEL_MAX + 1];
    struct nb tmp;
    nb_init(&tmp);
    nb_label(&tmp, "", joined, jl, false);
    if ((rv = nb_check(&tmp)) != 0) {
        return rv;
    }
    size_t ll = tmp.d[0];
    memcpy(lab, tmp.d + 1, ll);
    /* C = L-H-S: S is the last '-' part of the agent id, lower-cased. */
    const char *agent = t->agent_id != NULL ? t->agent_id : t->node;
    const char *dash = strrchr(agent, '-');
    const char *tail = dash != NULL ? dash + 1 : agent;
    char h[6];
    compat_hash(t->id, h);
    char canon[1024];
    int cl = snprintf(canon, sizeof(canon), "%.*s-%s-%s", (int)ll, lab, h, tail);
    if (cl < 0 || (size_t)cl >= sizeof(canon)) {
        return CM_ETOOBIG;
    }

    /* A: T.F.D, L.F.D, C.F.D and the same under F.slave.D. */
    for (int slave = 0; slave < 2; slave++) {
        for (int form = 0; form < 3; form++) {
            struct nb n;
            nb_init(&n);
            if (form == 0) {
                nb_segs(&n, sg, sg->n);
            } else if (form == 1) {
                nb_raw(&n, lab, ll);
            } else {
                nb_label(&n, "", canon, (size_t)cl, false);
            }
            nb_str(&n, COMPAT_FRAMEWORK);
            if (slave) {
                nb_str(&n, "slave");
            }
            nb_name(&n, o);
            if ((rv = emit_addr(b, &n, &t->host)) != 0) {
                return rv;
            }
        }
    }
    struct nb target, starget;
    nb_init(&target);
    nb_label(&target, "", canon, (size_t)cl, false);
    nb_str(&target, COMPAT_FRAMEWORK);
    nb_init(&starget);
    nb_label(&starget, "", canon, (size_t)cl, false);
    nb_str(&starget, COMPAT_FRAMEWORK);
    nb_str(&starget, "slave");
    nb_name(&target, o);
    nb_name(&starget, o);

    for (size_t p = 0; p < t->nports; p++) {
        const struct dns_port *pt = &t->ports[p];
        unsigned protos = pt->protocols ? pt->protocols : DNS_PROTO_TCP;
        for (int k = 0; k < 2; k++) {
            struct nb n;
            /* _L._<proto>.F.slave.D for both protocols, whatever the port's. */
            nb_init(&n);
            nb_label(&n, "_", lab, ll, false);
            nb_str(&n, proto_labels[k]);
            nb_str(&n, COMPAT_FRAMEWORK);
            nb_str(&n, "slave");
            nb_name(&n, o);
            if ((rv = emit_srv(b, &n, pt->port, &starget)) != 0) {
                return rv;
            }
            if (!(protos & proto_bits[k])) {
                continue;
            }
            /* _L._<proto>.F.D with the port's own protocol. */
            nb_init(&n);
            nb_label(&n, "_", lab, ll, false);
            nb_str(&n, proto_labels[k]);
            nb_str(&n, COMPAT_FRAMEWORK);
            nb_name(&n, o);
            if ((rv = emit_srv(b, &n, pt->port, &target)) != 0) {
                return rv;
            }
            if (pt->name == NULL) {
                continue;
            }
            /* _<portname>._L._<proto>.F.D */
            nb_init(&n);
            nb_label(&n, "_", pt->name, strlen(pt->name), false);
            nb_label(&n, "_", lab, ll, false);
            nb_str(&n, proto_labels[k]);
            nb_str(&n, COMPAT_FRAMEWORK);
            nb_name(&n, o);
            if ((rv = emit_srv(b, &n, pt->port, &target)) != 0) {
                return rv;
            }
        }
    }
    return 0;
}

static bool reserved_label(const char *s, size_t l)
{
    char tmp[DNS_LABEL_MAX + 1];
    struct nb n;
    nb_init(&n);
    nb_label(&n, "", s, l, false);
    if (n.bad || n.over) {
        return false;
    }
    size_t m = n.d[0];
    memcpy(tmp, n.d + 1, m);
    tmp[m] = '\0';
    return strcmp(tmp, "vip") == 0 || strcmp(tmp, "node") == 0 ||
           strcmp(tmp, "leader") == 0;
}

static bool task_served(const struct dns_task *t)
{
    return t->state == DNS_TASK_RUNNING &&
           (t->health == DNS_HEALTH_NONE || t->health == DNS_HEALTH_HEALTHY);
}

static int gen_app(struct dns_zone_builder *b, const struct dns_app *app,
                   const struct segs *sg)
{
    const struct dns_name *o = &b->z->origin;
    const unsigned last = sg->n - 1;
    int rv;
    struct nb name;
    nb_init(&name);
    nb_segs(&name, sg, sg->n);
    nb_name(&name, o);
    if ((rv = nb_check(&name)) != 0) {
        return rv;
    }
    for (size_t i = 0; i < app->ntasks; i++) {
        const struct dns_task *t = &app->tasks[i];
        if (b->dry && (t->id == NULL || t->node == NULL || !addr_ok(&t->host) ||
                       (t->nports > 0 && t->ports == NULL))) {
            return CM_EINVAL;
        }
        for (size_t p = 0; b->dry && p < t->nports; p++) {
            if (t->ports[p].port == 0) {
                return CM_EINVAL;
            }
        }
        if (b->cfg.mesos_compat && t->state == DNS_TASK_RUNNING) {
            if ((rv = gen_compat_task(b, sg, t)) != 0) {
                return rv;
            }
        }
        if (!task_served(t)) {
            continue;
        }
        if ((rv = emit_addr(b, &name, &t->host)) != 0) {
            return rv;
        }
        /* SRV target <task>.<node>.node.D: a name of its own with the task's
         * address, so that it stays right whatever the node's address is (a
         * task may have an address of its own) and is unique per task. */
        struct nb target;
        nb_init(&target);
        nb_label(&target, "", t->id, strlen(t->id), true);
        nb_label(&target, "", t->node, strlen(t->node), false);
        nb_str(&target, "node");
        nb_name(&target, o);
        if ((rv = emit_addr(b, &target, &t->host)) != 0) {
            return rv;
        }
        for (size_t p = 0; p < t->nports; p++) {
            const struct dns_port *pt = &t->ports[p];
            unsigned protos = pt->protocols ? pt->protocols : DNS_PROTO_TCP;
            for (int k = 0; k < 2; k++) {
                if (!(protos & proto_bits[k])) {
                    continue;
                }
                /* _api._tcp.backend.shop.D */
                struct nb n;
                nb_init(&n);
                nb_label(&n, "_", sg->v[last].s, sg->v[last].len, false);
                nb_str(&n, proto_labels[k]);
                nb_segs(&n, sg, last);
                nb_name(&n, o);
                if ((rv = emit_srv(b, &n, pt->port, &target)) != 0) {
                    return rv;
                }
                if (pt->name == NULL) {
                    continue;
                }
                /* _http._tcp.api.backend.shop.D */
                nb_init(&n);
                nb_label(&n, "_", pt->name, strlen(pt->name), false);
                nb_str(&n, proto_labels[k]);
                nb_segs(&n, sg, sg->n);
                nb_name(&n, o);
                if ((rv = emit_srv(b, &n, pt->port, &target)) != 0) {
                    return rv;
                }
            }
        }
    }
    return 0;
}

int dns_zone_add_app(struct dns_zone_builder *b, const struct dns_app *app)
{
    struct segs sg;
    if (app == NULL || (app->ntasks > 0 && app->tasks == NULL)) {
        return CM_EINVAL;
    }
    int rv = split_path(app->path, &sg);
    if (rv != 0) {
        return rv;
    }
    if (reserved_label(sg.v[0].s, sg.v[0].len)) {
        return CM_EINVAL; /* DESIGN.md §8: vip, node, leader */
    }
    if (app->ntasks > DNS_RRSET_MAX) {
        return CM_ETOOBIG;
    }
    BUILDER_RUN(b, gen_app(b, app, &sg));
}

static int gen_vip(struct dns_zone_builder *b, const struct segs *sg,
                   const struct dns_addr *addr)
{
    struct nb n;
    nb_init(&n);
    nb_segs(&n, sg, sg->n);
    nb_str(&n, "vip");
    nb_name(&n, &b->z->origin);
    return emit_addr(b, &n, addr);
}

int dns_zone_add_vip(struct dns_zone_builder *b, const char *path,
                     const struct dns_addr *addr)
{
    struct segs sg;
    if (!addr_ok(addr)) {
        return CM_EINVAL;
    }
    int rv = split_path(path, &sg);
    if (rv != 0) {
        return rv;
    }
    BUILDER_RUN(b, gen_vip(b, &sg, addr));
}

/* ======================================================================= zone */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int dns_zone_build(struct dns_zone_builder *b, struct dns_zone **ret_zone)
{
    if (b->err != 0) {
        dns_zone_builder_free(b);
        return CM_ENOMEM;
    }
    struct dns_zone *z = b->z;
    for (size_t i = 0; i < z->nns; i++) {
        z->ns[i].glue = dns__zone_find(z, z->ns[i].name, z->ns[i].len);
    }
    if (!b->have_mname) {
        if (z->nns > 0) {
            memcpy(z->mname.data, z->ns[0].name, z->ns[0].len);
            z->mname.len = z->ns[0].len;
        } else {
            struct nb n;
            nb_init(&n);
            nb_str(&n, "ns1");
            nb_name(&n, &z->origin);
            if (nb_check(&n) != 0) {
                /* The origin is too long for "ns1." in front: use it. */
                z->mname = z->origin;
            } else {
                memcpy(z->mname.data, n.d, n.len);
                z->mname.len = n.len;
            }
        }
    }
    const struct dns_zone_config *c = &b->cfg;
    z->minimum = c->minimum ? c->minimum : c->ttl;
    put32(z->soa_post, c->serial);
    put32(z->soa_post + 4, c->refresh ? c->refresh : 60);
    put32(z->soa_post + 8, c->retry ? c->retry : 600);
    put32(z->soa_post + 12, c->expire ? c->expire : 86400);
    put32(z->soa_post + 16, z->minimum);
    z->apex = dns__zone_find(z, z->origin.data, z->origin.len);
    CM_BUG_ON(z->apex == NULL);
    b->z = NULL;
    dns_zone_builder_free(b);
    *ret_zone = z;
    return 0;
}

struct dns_zone *dns_zone_ref(struct dns_zone *z)
{
    atomic_fetch_add_explicit(&z->refs, 1, memory_order_relaxed);
    return z;
}

void dns_zone_unref(struct dns_zone *z)
{
    if (z == NULL) {
        return;
    }
    /* Release our view of the zone; the last owner acquires every other's. */
    if (atomic_fetch_sub_explicit(&z->refs, 1, memory_order_acq_rel) == 1) {
        zone_free(z);
    }
}

const struct dns_name *dns_zone_origin(const struct dns_zone *z)
{
    return &z->origin;
}

size_t dns_zone_size(const struct dns_zone *z)
{
    return z->count;
}
