/* The answer engine: a pure function from (zone, query) to a response, written
 * into the caller's buffer without allocating (DESIGN.md §8). */
#include <string.h>

#include "dns/dns_int.h"

/* Size of an OPT record without options: root owner, type, class, ttl, rdlen. */
#define OPT_LEN 11

struct ctx {
    const struct dns_zone *z;
    struct dns_writer w;
    const struct dns_query *q;
    struct dns_answer_info *info;
    uint32_t rotate;
    uint16_t apex_off; /* offset of the zone's origin inside the question */
};

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* The owner of every answer record is the question's name, so it is always the
 * pointer 0xc00c and keeps the question's case (RFC 4343 §4.1). */
#define QNAME_OFF DNS_HEADER_LEN

static int put_addrs(struct ctx *c, enum dns_section s, const uint8_t *owner,
                     size_t owner_len, uint16_t owner_off, const struct dns__node *n,
                     uint16_t type)
{
    uint32_t count = type == DNS_TYPE_A ? n->na : n->naaaa;
    if (count == 0) {
        return 0;
    }
    size_t size = type == DNS_TYPE_A ? 4 : 16;
    const uint8_t *base = type == DNS_TYPE_A ? &n->a[0][0] : &n->aaaa[0][0];
    uint32_t k = c->rotate % count;
    for (uint32_t i = 0; i < count; i++) {
        struct dns__rdata rd = {.pre = base + (size_t)k * size, .prelen = size};
        int rv = dns__writer_put(&c->w, s, owner, owner_len, owner_off, type,
                                 DNS_CLASS_IN, c->z->ttl, &rd);
        if (rv != 0) {
            return rv;
        }
        /* Only the first record carries the owner in full: later ones compress
         * to it through the writer's table. */
        if (++k == count) {
            k = 0;
        }
    }
    return 0;
}

static int put_srvs(struct ctx *c, const struct dns__node *n)
{
    uint32_t k = c->rotate % n->nsrv;
    for (uint32_t i = 0; i < n->nsrv; i++) {
        const struct dns__srv *srv = &n->srv[k];
        uint8_t fixed[6];
        put16(fixed, srv->priority);
        put16(fixed + 2, srv->weight);
        put16(fixed + 4, srv->port);
        struct dns__rdata rd = {
            .pre = fixed,
            .prelen = 6,
            .n1 = srv->target->name,
            .n1len = srv->target->namelen,
            .compress = false, /* RFC 2782: the target is not compressed */
        };
        int rv = dns__writer_put(&c->w, DNS_SECTION_ANSWER, NULL, 0, QNAME_OFF,
                                 DNS_TYPE_SRV, DNS_CLASS_IN, c->z->ttl, &rd);
        if (rv != 0) {
            return rv;
        }
        if (++k == n->nsrv) {
            k = 0;
        }
    }
    return 0;
}

static int put_soa(struct ctx *c, enum dns_section s, uint32_t ttl)
{
    const struct dns_zone *z = c->z;
    struct dns__rdata rd = {
        .n1 = z->mname.data,
        .n1len = z->mname.len,
        .n2 = z->rname.data,
        .n2len = z->rname.len,
        .compress = true,
        .post = z->soa_post,
        .postlen = sizeof(z->soa_post),
    };
    /* The owner is the apex: a suffix of the question's name. */
    return dns__writer_put(&c->w, s, NULL, 0, c->apex_off, DNS_TYPE_SOA, DNS_CLASS_IN,
                           ttl, &rd);
}

static int put_ns(struct ctx *c)
{
    const struct dns_zone *z = c->z;
    for (size_t i = 0; i < z->nns; i++) {
        struct dns__rdata rd = {
            .n1 = z->ns[i].name,
            .n1len = z->ns[i].len,
            .compress = true,
        };
        int rv = dns__writer_put(&c->w, DNS_SECTION_ANSWER, NULL, 0, c->apex_off,
                                 DNS_TYPE_NS, DNS_CLASS_IN, z->ttl, &rd);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* Addresses of a target in the additional section; they are a courtesy, so a
 * record that does not fit just ends the section (RFC 2181 §9). */
static bool put_glue(struct ctx *c, const struct dns__node *t)
{
    if (t == NULL) {
        return true;
    }
    struct dns_writer_mark m;
    dns_writer_mark(&c->w, &m);
    if (put_addrs(c, DNS_SECTION_ADDITIONAL, t->name, t->namelen, 0, t, DNS_TYPE_A) !=
            0 ||
        put_addrs(c, DNS_SECTION_ADDITIONAL, t->name, t->namelen, 0, t, DNS_TYPE_AAAA) !=
            0) {
        dns_writer_rollback(&c->w, &m);
        return false;
    }
    return true;
}

static void srv_additionals(struct ctx *c, const struct dns__node *n)
{
    /* In the order written, each distinct target once. */
    uint32_t k = c->rotate % n->nsrv;
    for (uint32_t i = 0; i < n->nsrv; i++) {
        const struct dns__node *t = n->srv[(k + i) % n->nsrv].target;
        bool seen = false;
        for (uint32_t j = 0; j < i && !seen; j++) {
            seen = n->srv[(k + j) % n->nsrv].target == t;
        }
        if (!seen && !put_glue(c, t)) {
            return;
        }
    }
}

/* The answer RRset of a type at a node, whole or not at all. Returns false when
 * the node has none of it. */
static bool answer_type(struct ctx *c, const struct dns__node *n, uint16_t type)
{
    const struct dns_zone *z = c->z;
    struct dns_writer_mark m;
    dns_writer_mark(&c->w, &m);
    int rv;
    switch (type) {
    case DNS_TYPE_A:
    case DNS_TYPE_AAAA:
        if ((type == DNS_TYPE_A ? n->na : n->naaaa) == 0) {
            return false;
        }
        rv = put_addrs(c, DNS_SECTION_ANSWER, NULL, 0, QNAME_OFF, n, type);
        break;
    case DNS_TYPE_SRV:
        if (n->nsrv == 0) {
            return false;
        }
        rv = put_srvs(c, n);
        break;
    case DNS_TYPE_SOA:
        if (n != z->apex) {
            return false;
        }
        rv = put_soa(c, DNS_SECTION_ANSWER, z->ttl);
        break;
    case DNS_TYPE_NS:
        if (n != z->apex || z->nns == 0) {
            return false;
        }
        rv = put_ns(c);
        break;
    default:
        return false;
    }
    if (rv != 0) {
        /* RFC 2181 §9: leave the RRset out whole and set TC. */
        dns_writer_rollback(&c->w, &m);
        c->info->truncated = true;
        return true;
    }
    if (type == DNS_TYPE_SRV) {
        srv_additionals(c, n);
    } else if (type == DNS_TYPE_NS) {
        for (size_t i = 0; i < z->nns; i++) {
            if (!put_glue(c, z->ns[i].glue)) {
                break;
            }
        }
    }
    return true;
}

/* Negative answers carry the SOA in the authority section, its TTL the lesser
 * of the SOA's TTL and MINIMUM (RFC 2308 §3). */
static void negative(struct ctx *c)
{
    const struct dns_zone *z = c->z;
    uint32_t ttl = z->minimum < z->ttl ? z->minimum : z->ttl;
    if (put_soa(c, DNS_SECTION_AUTHORITY, ttl) != 0) {
        c->info->truncated = true;
    }
}

static void lookup(struct ctx *c, struct dns_name *lname)
{
    const struct dns_zone *z = c->z;
    const struct dns_question *qs = &c->q->question;
    const struct dns__node *n = dns__zone_find(z, lname->data, lname->len);
    if (n == NULL) {
        c->info->rcode = DNS_RCODE_NXDOMAIN;
        negative(c);
        return;
    }
    bool found;
    if (qs->qtype == DNS_TYPE_ANY) {
        /* RFC 8482 §4.1: one RRset is enough. */
        static const uint16_t order[] = {DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_SRV,
                                         DNS_TYPE_SOA};
        found = false;
        for (size_t i = 0; i < CM_ARRAY_SIZE(order) && !found; i++) {
            found = answer_type(c, n, order[i]);
        }
    } else {
        found = answer_type(c, n, qs->qtype);
    }
    if (!found) {
        negative(c); /* NODATA, also for empty non-terminals (RFC 8020 §2) */
    }
}

int dns_answer(const struct dns_zone *z, const uint8_t *q, size_t qlen, uint8_t *resp,
               size_t cap, const struct dns_answer_opts *opts,
               struct dns_answer_info *info)
{
    static const struct dns_answer_opts default_opts = {0};
    struct dns_answer_info local;
    if (info == NULL) {
        info = &local;
    }
    memset(info, 0, sizeof(*info));
    if (opts == NULL) {
        opts = &default_opts;
    }
    if (cap < DNS_UDP_MIN) {
        return CM_EINVAL;
    }
    struct dns_query query;
    int prv = dns_query_parse(q, qlen, &query);
    if (prv == CM_ETRUNC) {
        return 0; /* not even a header: nobody to answer */
    }
    if ((query.header.flags & DNS_FLAG_QR) != 0) {
        return 0; /* never answer a response */
    }

    /* The size limit (RFC 6891 §6.2.5; DNS flag day 2020). */
    size_t udp_max = opts->udp_max ? opts->udp_max : DNS_EDNS_SIZE;
    udp_max = udp_max < DNS_UDP_MIN    ? DNS_UDP_MIN
              : udp_max > DNS_EDNS_MAX ? DNS_EDNS_MAX
                                       : udp_max;
    size_t limit;
    if (opts->tcp) {
        limit = DNS_TCP_MAX;
    } else if (query.has_edns) {
        limit = query.edns.udp_size < DNS_UDP_MIN ? DNS_UDP_MIN : query.edns.udp_size;
        limit = limit > udp_max ? udp_max : limit;
    } else {
        limit = DNS_UDP_MIN;
    }
    limit = limit > cap ? cap : limit;
    info->limit = limit;

    struct ctx c = {.z = z, .q = &query, .info = info, .rotate = opts->rotate};
    struct dns_header h = {
        .id = query.header.id,
        .flags = (uint16_t)(DNS_FLAG_QR |
                            (query.header.flags & (0x7800u | DNS_FLAG_RD | DNS_FLAG_CD))),
    };
    dns_writer_init(&c.w, resp, cap, &h);
    /* Keep room for the OPT, which must survive truncation. */
    dns_writer_set_limit(&c.w, query.has_edns ? limit - OPT_LEN : limit);

    if (query.has_question) {
        info->qtype = query.question.qtype;
        if (dns_writer_question(&c.w, &query.question) != 0) {
            /* Cannot happen within 512 bytes; refuse rather than send junk. */
            query.rcode = DNS_RCODE_FORMERR;
        }
    }
    uint16_t rcode = query.rcode;
    if (prv == 0 && rcode == DNS_RCODE_NOERROR) {
        struct dns_name lname = query.question.name;
        dns_name_lower(&lname);
        const struct dns_question *qs = &query.question;
        if (z == NULL || !dns_name_in_zone(&lname, &z->origin)) {
            info->out_of_zone = true;
            if (opts->forward) {
                info->forward = true;
                return 0;
            }
            rcode = DNS_RCODE_REFUSED;
        } else if (qs->qclass != DNS_CLASS_IN && qs->qclass != DNS_CLASS_ANY) {
            rcode = DNS_RCODE_REFUSED; /* we only have class IN data */
        } else if (qs->qtype == DNS_TYPE_AXFR || qs->qtype == DNS_TYPE_IXFR ||
                   qs->qtype == DNS_TYPE_MAILA || qs->qtype == DNS_TYPE_MAILB) {
            rcode = DNS_RCODE_REFUSED; /* no zone transfers */
        } else {
            info->authoritative = true;
            c.apex_off = (uint16_t)(QNAME_OFF + lname.len - z->origin.len);
            info->rcode = DNS_RCODE_NOERROR;
            lookup(&c, &lname);
            rcode = info->rcode;
        }
    }
    info->rcode = rcode;
    uint16_t flags = (uint16_t)(rcode & 0xfu);
    if (info->authoritative) {
        flags |= DNS_FLAG_AA;
    }
    if (info->truncated) {
        flags |= DNS_FLAG_TC;
    }
    dns_writer_set_flags(&c.w, flags);
    if (query.has_edns) {
        dns_writer_set_limit(&c.w, limit);
        struct dns_edns e = {
            .udp_size = (uint16_t)udp_max,
            .ext_rcode = (uint8_t)(rcode >> 4),
            .version = 0,
            .flags = (uint16_t)(query.edns.flags & DNS_EDNS_DO), /* RFC 3225 §3 */
        };
        int rv = dns_writer_opt(&c.w, &e);
        CM_ASSERT(rv == 0);
        (void)rv;
    }
    return (int)dns_writer_finish(&c.w);
}
