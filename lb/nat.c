/* Mode nat: kernel DNAT from VIP:port to the eligible backends, in one nftables
 * table (`ip clusterctl`) that clusterctl owns and replaces in one transaction.
 *
 * Why libnftables: it is the library the `nft` tool itself is built on, kept with
 * nftables upstream and packaged by Debian (libnftables-dev); feeding it the
 * ruleset in nft syntax keeps what we program readable in `nft list ruleset` and
 * testable as text (lb_nat_render is pure), with the batch being one netlink
 * transaction: either the whole new table is in place or the old one still is.
 *
 * Address notes (see also lb_nat_render in lb.h):
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
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "lb/lb_int.h"

#ifdef LB_HAVE_NFTABLES
#include <nftables/libnftables.h>
#endif

static bool vip_is_nat(const struct lb_vip *v, bool auto_is_nat)
{
    return v->mode == LB_MODE_NAT || (v->mode == LB_MODE_AUTO && auto_is_nat);
}

static const char *proto_name(enum lb_proto p)
{
    return p == LB_PROTO_UDP ? "udp" : "tcp";
}

int lb_nat_render(const struct lb_table *t, bool auto_is_nat, struct cm_buf *out)
{
    char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
    int rv = 0;
    size_t nnat = 0;

    rv |= cm_buf_puts(out, "table ip " LB_NFT_TABLE
                           "\n"
                           "delete table ip " LB_NFT_TABLE
                           "\n"
                           "table ip " LB_NFT_TABLE " {\n");
    for (size_t i = 0; i < t->nvips; i++) {
        const struct lb_vip *v = &t->vips[i];
        if (!vip_is_nat(v, auto_is_nat)) {
            continue;
        }
        nnat++;
        rv |= cm_buf_printf(out, "  chain vip_%zu {\n", i);
        if (v->neligible == 0 || v->total_weight == 0) {
            rv |= cm_buf_printf(out, "    %s\n",
                                v->proto == LB_PROTO_TCP
                                    ? "reject with tcp reset"
                                    : "reject with icmp type port-unreachable");
        } else {
            /* Spread by weight: numgen draws in [0, total) and each backend owns a
             * range as wide as its weight. */
            rv |= cm_buf_printf(out,
                                "    meta l4proto %s dnat ip to numgen random mod %u map "
                                "{ ",
                                proto_name(v->proto), v->total_weight);
            uint32_t at = 0;
            for (size_t k = 0; k < v->neligible; k++) {
                const struct lb_backend *be = &v->backends[v->eligible[k]];
                inet_ntop(AF_INET, &be->ep.addr, b, sizeof(b));
                if (be->weight == 1) {
                    rv |= cm_buf_printf(out, "%s%u : %s . %u", k ? ", " : "", at, b,
                                        (unsigned)be->ep.port);
                } else {
                    rv |= cm_buf_printf(out, "%s%u-%u : %s . %u", k ? ", " : "", at,
                                        at + be->weight - 1, b, (unsigned)be->ep.port);
                }
                at += be->weight;
            }
            rv |= cm_buf_puts(out, " }\n");
        }
        rv |= cm_buf_puts(out, "  }\n");
    }
    if (nnat > 0) {
        rv |= cm_buf_puts(out,
                          "  map vips {\n"
                          "    type ipv4_addr . inet_proto . inet_service : verdict\n"
                          "    elements = { ");
        size_t k = 0;
        for (size_t i = 0; i < t->nvips; i++) {
            const struct lb_vip *v = &t->vips[i];
            if (!vip_is_nat(v, auto_is_nat)) {
                continue;
            }
            inet_ntop(AF_INET, &v->vip.addr, a, sizeof(a));
            rv |= cm_buf_printf(out, "%s%s . %s . %u : goto vip_%zu",
                                k++ ? ",\n      " : "", a, proto_name(v->proto),
                                (unsigned)v->vip.port, i);
        }
        rv |= cm_buf_puts(out, " }\n  }\n");
        rv |= cm_buf_puts(out,
                          "  chain prerouting {\n"
                          "    type nat hook prerouting priority dstnat; policy accept;\n"
                          "    ip daddr . meta l4proto . th dport vmap @vips\n"
                          "  }\n"
                          "  chain output {\n"
                          "    type nat hook output priority -100; policy accept;\n"
                          "    ip daddr . meta l4proto . th dport vmap @vips\n"
                          "  }\n"
                          "  set vip_addrs {\n"
                          "    type ipv4_addr\n"
                          "    elements = { ");
        k = 0;
        for (size_t i = 0; i < t->nvips; i++) {
            const struct lb_vip *v = &t->vips[i];
            if (!vip_is_nat(v, auto_is_nat) ||
                (k > 0 && v->vip.addr.s_addr == t->vips[i - 1].vip.addr.s_addr)) {
                continue; /* sorted by address: duplicates are adjacent */
            }
            inet_ntop(AF_INET, &v->vip.addr, a, sizeof(a));
            rv |= cm_buf_printf(out, "%s%s", k++ ? ", " : "", a);
        }
        rv |=
            cm_buf_puts(out,
                        " }\n"
                        "  }\n"
                        "  chain postrouting {\n"
                        "    type nat hook postrouting priority srcnat; policy accept;\n"
                        "    ct status dnat oifname != \"lo\" ip saddr @vip_addrs "
                        "masquerade\n"
                        "  }\n");
    }
    rv |= cm_buf_puts(out, "}\n");
    return rv != 0 ? CM_ENOMEM : 0;
}

#ifdef LB_HAVE_NFTABLES

struct lb_nat {
    struct nft_ctx *nft;
};

bool lb_nat_built(void)
{
    return true;
}

int lb_nat_run(struct lb_nat *n, const char *script, struct cm_errbuf *eb)
{
    if (nft_run_cmd_from_buffer(n->nft, script) != 0) {
        const char *msg = nft_ctx_get_error_buffer(n->nft);
        size_t len = msg != NULL ? strlen(msg) : 0;
        while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) {
            len--;
        }
        int code = msg != NULL && strstr(msg, "Operation not permitted") != NULL
                       ? CM_EPERM
                       : CM_EIO;
        return cm_err_setf(eb, code, "nftables: %.*s", (int)CM_MIN(len, 200u),
                           msg != NULL ? msg : "failed");
    }
    return 0;
}

int lb_nat_new(struct lb_nat **ret, struct cm_errbuf *eb)
{
    struct lb_nat *n = cm_calloc(1, sizeof(*n));
    if (n == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "nat");
    }
    n->nft = nft_ctx_new(NFT_CTX_DEFAULT);
    if (n->nft == NULL) {
        cm_free(&n);
        return cm_err_setf(eb, CM_ENOMEM, "nft_ctx_new");
    }
    nft_ctx_buffer_output(n->nft);
    nft_ctx_buffer_error(n->nft);
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
    struct cm_buf script = {0};
    int rv = lb_nat_render(t, auto_is_nat, &script);
    if (rv != 0) {
        cm_buf_done(&script);
        return cm_err_setf(eb, rv, "nft ruleset");
    }
    rv = lb_nat_run(n, script.data, eb);
    cm_buf_done(&script);
    return rv;
}

int lb_nat_clear(struct lb_nat *n, struct cm_errbuf *eb)
{
    return lb_nat_run(n, LB_NAT_CLEAR_SCRIPT, eb);
}

void lb_nat_free(struct lb_nat *n)
{
    if (n == NULL) {
        return;
    }
    nft_ctx_free(n->nft);
    cm_free(&n);
}

#else /* !LB_HAVE_NFTABLES */

struct lb_nat {
    int unused;
};

bool lb_nat_built(void)
{
    return false;
}

int lb_nat_new(struct lb_nat **ret, struct cm_errbuf *eb)
{
    (void)ret;
    return cm_err_setf(eb, CM_ENOTSUP,
                       "mode nat: built without libnftables (install the Debian package "
                       "libnftables-dev and rebuild)");
}

int lb_nat_run(struct lb_nat *n, const char *script, struct cm_errbuf *eb)
{
    (void)n;
    (void)script;
    return cm_err_setf(eb, CM_ENOTSUP, "mode nat: built without libnftables");
}

int lb_nat_apply(struct lb_nat *n, const struct lb_table *t, bool auto_is_nat,
                 struct cm_errbuf *eb)
{
    (void)t;
    (void)auto_is_nat;
    return lb_nat_run(n, NULL, eb);
}

int lb_nat_clear(struct lb_nat *n, struct cm_errbuf *eb)
{
    return lb_nat_run(n, NULL, eb);
}

void lb_nat_free(struct lb_nat *n)
{
    (void)n;
}

#endif
