/* dns/ internals shared by wire.c, zone.c and answer.c. Not installed, not for
 * other components (STYLE.md rule 1). */
#ifndef DNS_INT_H
#define DNS_INT_H

#include <stdatomic.h>

#include "base/base.h"
#include "dns/dns.h"

/* ---------------------------------------------------------------- writer */

/* The rdata of a record in parts: fixed bytes, up to two names, fixed bytes.
 * That covers A, AAAA (pre only), NS (n1), SRV (pre + n1), SOA (n1, n2, post). */
struct dns__rdata {
    const uint8_t *pre;
    size_t prelen;
    const uint8_t *n1;
    size_t n1len;
    const uint8_t *n2;
    size_t n2len;
    bool compress; /* compress n1/n2 (RFC 1035 types; never SRV, RFC 2782) */
    const uint8_t *post;
    size_t postlen;
};

/* Write one record. The owner is @owner (wire, @owner_len bytes, compressed),
 * or, when @owner is NULL, a pointer to the name at @owner_off of the message.
 * All or nothing: CM_EMSGSIZE leaves the writer as it was. */
int dns__writer_put(struct dns_writer *w, enum dns_section section, const uint8_t *owner,
                    size_t owner_len, uint16_t owner_off, uint16_t type, uint16_t rclass,
                    uint32_t ttl, const struct dns__rdata *rd);

/* Lower-case an ASCII byte. */
static inline uint8_t dns__lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* ---------------------------------------------------------------- zone */

struct dns__node;

struct dns__srv {
    uint16_t priority;
    uint16_t weight;
    uint16_t port;
    const struct dns__node *target;
};

struct dns__ns {
    uint8_t *name; /* lower-case wire */
    size_t len;
    const struct dns__node *glue; /* in-zone node with its addresses, or NULL */
};

/* One name of the zone. A node without records is an empty non-terminal (or
 * the apex, whose SOA and NS live in the zone). */
struct dns__node {
    uint64_t hash;
    uint8_t (*a)[4];
    uint8_t (*aaaa)[16];
    struct dns__srv *srv;
    uint32_t na, capa;
    uint32_t naaaa, capaaaa;
    uint32_t nsrv, capsrv;
    uint16_t namelen;
    uint8_t name[]; /* lower-case wire */
};

struct dns_zone {
    atomic_uint refs;
    struct dns_name origin; /* lower-case */
    uint32_t ttl;
    /* Open addressing, linear probing, power-of-two size, at most half full. */
    struct dns__node **table;
    size_t mask;
    size_t count;
    const struct dns__node *apex;
    /* SOA */
    struct dns_name mname;
    struct dns_name rname;
    uint32_t minimum;
    uint8_t soa_post[20]; /* serial refresh retry expire minimum, wire order */
    struct dns__ns *ns;
    size_t nns;
};

uint64_t dns__hash(const uint8_t *name, size_t len);

/* The node of the lower-case wire name, or NULL. */
const struct dns__node *dns__zone_find(const struct dns_zone *z, const uint8_t *name,
                                       size_t len);

#endif /* DNS_INT_H */
