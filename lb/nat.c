/* Mode nat: kernel DNAT from VIP:port to the eligible backends, in one nftables
 * table (`ip clusterctl`) that clusterctl owns and replaces in one transaction.
 *
 * Why our own netlink code: nf_tables is programmed over NETLINK_NETFILTER with a
 * documented kernel ABI (<linux/netfilter/nf_tables.h>); lb/nft.c encodes the few
 * messages and expressions this table needs (a few hundred lines), so every build,
 * the static binary included, has mode nat (Debian ships no static libnftables or
 * libmnl). The whole table is one batch: either the new table is in place or the
 * old one still is. `nft list table ip clusterctl` shows it as:
 *
 *   table ip clusterctl {
 *     map vips {                      # (daddr, l4proto, dport) -> goto vip_<i>
 *       type ipv4_addr . inet_proto . inet_service : verdict
 *       elements = { 198.18.0.1 . tcp . 80 : goto vip_1, ... }
 *     }
 *     set vip_addrs { type ipv4_addr; elements = { 198.18.0.1, ... } }
 *     chain vip_0 { reject }          # UDP VIP without an eligible backend
 *     chain vip_1 {                   # weights 1 and 2: ranges of numgen's draw
 *       meta l4proto tcp dnat ip to numgen random mod 3 map { 0 : 10.0.0.1 . 8080,
 *                                                             1-2 : 10.0.0.2 . 8080 }
 *     }
 *     chain vip_2 { reject with tcp reset }   # TCP VIP without one
 *     chain prerouting { type nat hook prerouting priority dstnat; policy accept;
 *       ip daddr . meta l4proto . th dport vmap @vips }
 *     chain output { type nat hook output priority -100; policy accept;
 *       ip daddr . meta l4proto . th dport vmap @vips }
 *     chain postrouting { type nat hook postrouting priority srcnat; policy accept;
 *       ct status dnat oifname != "lo" ip saddr @vip_addrs masquerade }
 *   }
 *
 * (vip_<i>: i is the VIP's index in the table; the chains, maps and hooks exist
 * only when at least one VIP is in nat mode. Each backend map is anonymous, an
 * interval map bound to its rule, as nft makes it.)
 *
 * Address notes:
 * - Prerouting DNAT (containers behind a bridge, other hosts) keeps the client's
 *   source address: nothing rewrites it.
 * - The node's own processes reach a VIP through the output hook. Their source
 *   address is the VIP itself (it is a local /32 on lo, so the kernel picks it as
 *   the preferred source), which a remote backend cannot route back: those flows,
 *   and only those, are masqueraded in postrouting when they leave through an
 *   interface other than lo.
 * - A backend on 127.0.0.0/8 works from the node itself (output hook, through lo).
 *   Traffic arriving on another interface and DNATed to 127.0.0.0/8 is dropped as
 *   martian unless net.ipv4.conf.<ingress>.route_localnet=1; likewise a client
 *   bound to 127.0.0.1 DNATed to a non-local backend needs route_localnet on the
 *   egress interface. We never set route_localnet (it exposes loopback services to
 *   the network, CVE-2020-8558); such backends should use a real address.
 */
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "lb/lb_int.h"

/* Elements per NEWSETELEM message: the element list is one attribute, whose length
 * is 16 bits; 256 of our largest elements (about 60 bytes) stay well inside. */
#define ELEMS_PER_MSG 256

/* nft's own type numbers for what it prints (NFTA_SET_KEY_TYPE / DATA_TYPE are
 * opaque to the kernel): integer 4, ipv4_addr 7, inet_proto 12, inet_service 13;
 * a concatenation packs them 6 bits each. */
#define NFT_TYPE_INTEGER  4u
#define NFT_TYPE_IPV4     7u
#define NFT_TYPE_PROTO    12u
#define NFT_TYPE_SERVICE  13u
#define NFT_CONCAT2(a, b) (((a) << 6) | (b))

/* Set user data (opaque to the kernel, read back by `nft list`): the TLVs nft 1.0.6
 * writes for these exact set types (key and data byte order, the key's types), so
 * the listing prints addresses, protocols and ports rather than raw integers. */
static const uint8_t udata_vips[] = {
    0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x03, 0x08,
    0x00, 0x04, 0x0d, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00};
static const uint8_t udata_vip_addrs[] = {0x00, 0x04, 0x02, 0x00, 0x00, 0x00};
static const uint8_t udata_backends[] = {0x00, 0x04, 0x01, 0x00, 0x00, 0x00,
                                         0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
                                         0x06, 0x04, 0x00, 0x00, 0x00, 0x00};

static bool vip_is_nat(const struct lb_vip *v, bool auto_is_nat)
{
    return v->mode == LB_MODE_NAT || (v->mode == LB_MODE_AUTO && auto_is_nat);
}

static uint8_t ipproto(enum lb_proto p)
{
    return p == LB_PROTO_UDP ? IPPROTO_UDP : IPPROTO_TCP;
}

static void put_table_msg(struct lb_nft_batch *b, uint16_t type)
{
    lb_nft_msg(b, type, type == NFT_MSG_NEWTABLE ? NLM_F_CREATE : 0, "table %s",
               LB_NFT_TABLE);
    lb_nft_put_str(b, NFTA_TABLE_NAME, LB_NFT_TABLE);
    if (type == NFT_MSG_NEWTABLE) {
        lb_nft_put_be32(b, NFTA_TABLE_FLAGS, 0);
    }
}

/* table ip clusterctl; delete table ip clusterctl: the delete cannot fail. */
static void put_table_reset(struct lb_nft_batch *b)
{
    put_table_msg(b, NFT_MSG_NEWTABLE);
    put_table_msg(b, NFT_MSG_DELTABLE);
}

static void put_chain(struct lb_nft_batch *b, const char *name, const char *type,
                      uint32_t hook, int32_t prio)
{
    lb_nft_msg(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE, "chain %s", name);
    lb_nft_put_str(b, NFTA_CHAIN_TABLE, LB_NFT_TABLE);
    lb_nft_put_str(b, NFTA_CHAIN_NAME, name);
    if (type != NULL) {
        lb_nft_put_str(b, NFTA_CHAIN_TYPE, type);
        lb_nft_put_be32(b, NFTA_CHAIN_POLICY, NF_ACCEPT);
        lb_nft_nest(b, NFTA_CHAIN_HOOK);
        lb_nft_put_be32(b, NFTA_HOOK_HOOKNUM, hook);
        lb_nft_put_be32(b, NFTA_HOOK_PRIORITY, (uint32_t)prio);
        lb_nft_nest_end(b);
    }
}

static void put_rule_begin(struct lb_nft_batch *b, const char *chain)
{
    lb_nft_msg(b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, "chain %s", chain);
    lb_nft_put_str(b, NFTA_RULE_TABLE, LB_NFT_TABLE);
    lb_nft_put_str(b, NFTA_RULE_CHAIN, chain);
    lb_nft_nest(b, NFTA_RULE_EXPRESSIONS);
}

static void put_rule_end(struct lb_nft_batch *b)
{
    lb_nft_nest_end(b);
}

struct set_def {
    const char *name;
    uint32_t id, flags, key_type, key_len, data_type, data_len, size;
    const uint8_t *udata;
    size_t udata_len;
};

static void put_set(struct lb_nft_batch *b, const struct set_def *s)
{
    lb_nft_msg(b, NFT_MSG_NEWSET, NLM_F_CREATE, "set %s", s->name);
    lb_nft_put_str(b, NFTA_SET_TABLE, LB_NFT_TABLE);
    lb_nft_put_str(b, NFTA_SET_NAME, s->name);
    lb_nft_put_be32(b, NFTA_SET_FLAGS, s->flags);
    lb_nft_put_be32(b, NFTA_SET_KEY_TYPE, s->key_type);
    lb_nft_put_be32(b, NFTA_SET_KEY_LEN, s->key_len);
    if (s->flags & NFT_SET_MAP) {
        lb_nft_put_be32(b, NFTA_SET_DATA_TYPE, s->data_type);
        lb_nft_put_be32(b, NFTA_SET_DATA_LEN, s->data_len);
    }
    lb_nft_put_be32(b, NFTA_SET_ID, s->id);
    if (s->size > 0) {
        lb_nft_nest(b, NFTA_SET_DESC);
        lb_nft_put_be32(b, NFTA_SET_DESC_SIZE, s->size);
        lb_nft_nest_end(b);
    }
    lb_nft_put(b, NFTA_SET_USERDATA, s->udata, s->udata_len);
}

/* Open a NEWSETELEM message when none is open or the open one is full. */
static void elems_step(struct lb_nft_batch *b, const struct set_def *s, size_t *n)
{
    if (*n % ELEMS_PER_MSG == 0) {
        if (*n > 0) {
            lb_nft_nest_end(b); /* NFTA_SET_ELEM_LIST_ELEMENTS */
        }
        lb_nft_msg(b, NFT_MSG_NEWSETELEM, NLM_F_CREATE, "set %s", s->name);
        lb_nft_put_str(b, NFTA_SET_ELEM_LIST_TABLE, LB_NFT_TABLE);
        lb_nft_put_str(b, NFTA_SET_ELEM_LIST_SET, s->name);
        lb_nft_put_be32(b, NFTA_SET_ELEM_LIST_SET_ID, s->id);
        lb_nft_nest(b, NFTA_SET_ELEM_LIST_ELEMENTS);
    }
    (*n)++;
}

static void elems_end(struct lb_nft_batch *b, size_t n)
{
    if (n > 0) {
        lb_nft_nest_end(b);
    }
}

/* One element: key, and data (a value, or a goto @chain when @chain != NULL). */
static void put_elem(struct lb_nft_batch *b, const void *key, size_t klen,
                     const void *data, size_t dlen, const char *chain, uint32_t flags)
{
    lb_nft_nest(b, NFTA_LIST_ELEM);
    if (flags != 0) {
        lb_nft_put_be32(b, NFTA_SET_ELEM_FLAGS, flags);
    }
    lb_nft_nest(b, NFTA_SET_ELEM_KEY);
    lb_nft_put(b, NFTA_DATA_VALUE, key, klen);
    lb_nft_nest_end(b);
    if (chain != NULL) {
        lb_nft_nest(b, NFTA_SET_ELEM_DATA);
        lb_nft_nest(b, NFTA_DATA_VERDICT);
        lb_nft_put_be32(b, NFTA_VERDICT_CODE, (uint32_t)NFT_GOTO);
        lb_nft_put_str(b, NFTA_VERDICT_CHAIN, chain);
        lb_nft_nest_end(b);
        lb_nft_nest_end(b);
    } else if (data != NULL) {
        lb_nft_nest(b, NFTA_SET_ELEM_DATA);
        lb_nft_put(b, NFTA_DATA_VALUE, data, dlen);
        lb_nft_nest_end(b);
    }
    lb_nft_nest_end(b);
}

/* The chain of VIP @i: DNAT by weight, or reject when no backend is eligible. */
static void put_vip_rule(struct lb_nft_batch *b, const struct lb_vip *v, size_t i)
{
    char chain[32];
    snprintf(chain, sizeof(chain), "vip_%zu", i);
    uint8_t proto = ipproto(v->proto);

    if (v->neligible == 0 || v->total_weight == 0) {
        put_rule_begin(b, chain);
        if (v->proto == LB_PROTO_TCP) {
            /* reject with tcp reset (nft adds the l4proto match it needs) */
            lb_nft_expr_meta(b, NFT_META_L4PROTO, NFT_REG_1);
            lb_nft_expr_cmp(b, NFT_REG_1, NFT_CMP_EQ, &proto, 1);
            lb_nft_expr_reject(b, NFT_REJECT_TCP_RST, 0);
        } else {
            lb_nft_expr_reject(b, NFT_REJECT_ICMP_UNREACH, 3 /* port unreachable */);
        }
        put_rule_end(b);
        return;
    }
    /* numgen draws in [0, total) and each backend owns a range as wide as its
     * weight: an interval map with one start element per backend and one end
     * element at total (ranges are contiguous, so no other end is needed). */
    struct set_def s = {
        .name = "__map%d",
        .id = lb_nft_set_id(b),
        .flags = NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_INTERVAL | NFT_SET_MAP,
        .key_type = NFT_TYPE_INTEGER,
        .key_len = 4,
        .data_type = NFT_CONCAT2(NFT_TYPE_IPV4, NFT_TYPE_SERVICE),
        .data_len = 8,
        .size = (uint32_t)v->neligible + 1,
        .udata = udata_backends,
        .udata_len = sizeof(udata_backends),
    };
    put_set(b, &s);
    size_t n = 0;
    uint32_t at = 0;
    for (size_t k = 0; k < v->neligible; k++) {
        const struct lb_backend *be = &v->backends[v->eligible[k]];
        uint8_t data[8] = {0};
        uint32_t key = htonl(at);
        uint16_t port = htons(be->ep.port);
        memcpy(data, &be->ep.addr, 4);
        memcpy(data + 4, &port, 2);
        elems_step(b, &s, &n);
        put_elem(b, &key, 4, data, sizeof(data), NULL, 0);
        at += be->weight;
    }
    uint32_t end = htonl(at);
    elems_step(b, &s, &n);
    put_elem(b, &end, 4, NULL, 0, NULL, NFT_SET_ELEM_INTERVAL_END);
    elems_end(b, n);

    /* meta l4proto P dnat ip to numgen random mod W map { ... } */
    put_rule_begin(b, chain);
    lb_nft_expr_meta(b, NFT_META_L4PROTO, NFT_REG_1);
    lb_nft_expr_cmp(b, NFT_REG_1, NFT_CMP_EQ, &proto, 1);
    lb_nft_expr_numgen_random(b, NFT_REG_1, v->total_weight);
    lb_nft_expr_hton(b, NFT_REG_1, 4, 4);
    lb_nft_expr_lookup(b, NFT_REG_1, NFT_REG_1, s.name, s.id);
    /* address in the first 32-bit word of reg 1, port in the next */
    lb_nft_expr_dnat(b, NFT_REG_1, NFT_REG32_01);
    put_rule_end(b);
}

/* ip daddr . meta l4proto . th dport vmap @vips */
static void put_vmap_rule(struct lb_nft_batch *b, const char *chain, uint32_t vips_id)
{
    put_rule_begin(b, chain);
    /* the key spans reg 1's first three 32-bit words */
    lb_nft_expr_payload(b, NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, 16, 4);
    lb_nft_expr_meta(b, NFT_META_L4PROTO, NFT_REG32_01);
    lb_nft_expr_payload(b, NFT_REG32_02, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
    lb_nft_expr_lookup(b, NFT_REG_1, NFT_REG_VERDICT, "vips", vips_id);
    put_rule_end(b);
}

/* ct status dnat oifname != "lo" ip saddr @vip_addrs masquerade */
static void put_masq_rule(struct lb_nft_batch *b, uint32_t addrs_id)
{
    uint32_t dnat = IPS_DST_NAT, zero = 0;
    char lo[IFNAMSIZ] = "lo";
    put_rule_begin(b, "postrouting");
    lb_nft_expr_ct(b, NFT_CT_STATUS, NFT_REG_1);
    lb_nft_expr_bitwise(b, NFT_REG_1, &dnat, &zero, 4);
    lb_nft_expr_cmp(b, NFT_REG_1, NFT_CMP_NEQ, &zero, 4);
    lb_nft_expr_meta(b, NFT_META_OIFNAME, NFT_REG_1);
    lb_nft_expr_cmp(b, NFT_REG_1, NFT_CMP_NEQ, lo, sizeof(lo));
    lb_nft_expr_payload(b, NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, 12, 4);
    lb_nft_expr_lookup(b, NFT_REG_1, -1, "vip_addrs", addrs_id);
    lb_nft_expr_masq(b);
    put_rule_end(b);
}

int lb__nat_batch(const struct lb_table *t, bool auto_is_nat, uint32_t seq0,
                  struct lb_nft_batch *b)
{
    size_t nnat = 0;
    char chain[32];

    lb_nft_batch_init(b, seq0);
    put_table_reset(b);
    put_table_msg(b, NFT_MSG_NEWTABLE);
    for (size_t i = 0; i < t->nvips; i++) {
        if (vip_is_nat(&t->vips[i], auto_is_nat)) {
            snprintf(chain, sizeof(chain), "vip_%zu", i);
            put_chain(b, chain, NULL, 0, 0);
            nnat++;
        }
    }
    if (nnat > 0) {
        put_chain(b, "prerouting", "nat", NF_INET_PRE_ROUTING, NF_IP_PRI_NAT_DST);
        put_chain(b, "output", "nat", NF_INET_LOCAL_OUT, NF_IP_PRI_NAT_DST);
        put_chain(b, "postrouting", "nat", NF_INET_POST_ROUTING, NF_IP_PRI_NAT_SRC);

        struct set_def vips = {
            .name = "vips",
            .id = lb_nft_set_id(b),
            .flags = NFT_SET_MAP,
            .key_type =
                NFT_CONCAT2(NFT_CONCAT2(NFT_TYPE_IPV4, NFT_TYPE_PROTO), NFT_TYPE_SERVICE),
            .key_len = 12,
            .data_type = NFT_DATA_VERDICT,
            .data_len = 0,
            .udata = udata_vips,
            .udata_len = sizeof(udata_vips),
        };
        put_set(b, &vips);
        size_t n = 0;
        for (size_t i = 0; i < t->nvips; i++) {
            const struct lb_vip *v = &t->vips[i];
            if (!vip_is_nat(v, auto_is_nat)) {
                continue;
            }
            /* daddr . l4proto . dport, each in a 32-bit register word */
            uint8_t key[12] = {0};
            uint16_t port = htons(v->vip.port);
            memcpy(key, &v->vip.addr, 4);
            key[4] = ipproto(v->proto);
            memcpy(key + 8, &port, 2);
            snprintf(chain, sizeof(chain), "vip_%zu", i);
            elems_step(b, &vips, &n);
            put_elem(b, key, sizeof(key), NULL, 0, chain, 0);
        }
        elems_end(b, n);

        struct set_def addrs = {
            .name = "vip_addrs",
            .id = lb_nft_set_id(b),
            .key_type = NFT_TYPE_IPV4,
            .key_len = 4,
            .udata = udata_vip_addrs,
            .udata_len = sizeof(udata_vip_addrs),
        };
        put_set(b, &addrs);
        n = 0;
        struct in_addr last = {0};
        for (size_t i = 0; i < t->nvips; i++) {
            const struct lb_vip *v = &t->vips[i];
            /* Sorted by address: duplicates are adjacent (a proxy-mode VIP may
             * sit between two NAT ports of one address, hence `last`). */
            if (!vip_is_nat(v, auto_is_nat) ||
                (n > 0 && v->vip.addr.s_addr == last.s_addr)) {
                continue;
            }
            last = v->vip.addr;
            elems_step(b, &addrs, &n);
            put_elem(b, &v->vip.addr, 4, NULL, 0, NULL, 0);
        }
        elems_end(b, n);

        for (size_t i = 0; i < t->nvips; i++) {
            if (vip_is_nat(&t->vips[i], auto_is_nat)) {
                put_vip_rule(b, &t->vips[i], i);
            }
        }
        put_vmap_rule(b, "prerouting", vips.id);
        put_vmap_rule(b, "output", vips.id);
        put_masq_rule(b, addrs.id);
    }
    return lb_nft_batch_end(b);
}

struct lb_nat {
    uint32_t seq;
};

bool lb_nat_built(void)
{
    return true;
}

static int send_batch(struct lb_nat *n, struct lb_nft_batch *b, struct cm_errbuf *eb)
{
    int rv = lb_nft_batch_send(b, eb);
    n->seq += (uint32_t)b->nmsgs + 2;
    return rv;
}

int lb_nat_new(struct lb_nat **ret, struct cm_errbuf *eb)
{
    struct lb_nat *n = cm_calloc(1, sizeof(*n));
    if (n == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "nat");
    }
    n->seq = (uint32_t)time(NULL);
    /* A table left behind by a crashed run goes before anything is programmed. */
    int rv = lb_nat_clear(n, eb);
    if (rv != 0) {
        lb_nat_free(n);
        return rv;
    }
    *ret = n;
    return 0;
}

int lb_nat_apply(struct lb_nat *n, const struct lb_table *t, bool auto_is_nat,
                 struct cm_errbuf *eb)
{
    struct lb_nft_batch b;
    int rv = lb__nat_batch(t, auto_is_nat, n->seq, &b);
    if (rv != 0) {
        rv = cm_err_setf(eb, rv, "nftables: build batch for %zu VIPs: %s", t->nvips,
                         cm_strerror(rv));
    } else {
        rv = send_batch(n, &b, eb);
    }
    lb_nft_batch_done(&b);
    return rv;
}

int lb_nat_clear(struct lb_nat *n, struct cm_errbuf *eb)
{
    struct lb_nft_batch b;
    lb_nft_batch_init(&b, n->seq);
    put_table_reset(&b);
    int rv = lb_nft_batch_end(&b);
    if (rv != 0) {
        rv = cm_err_setf(eb, rv, "nftables: build batch");
    } else {
        rv = send_batch(n, &b, eb);
    }
    lb_nft_batch_done(&b);
    return rv;
}

void lb_nat_free(struct lb_nat *n)
{
    if (n == NULL) {
        return;
    }
    cm_free(&n);
}
