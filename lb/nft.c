/* nf_tables over netlink, our own small encoder (see lb_int.h, "nft.c"): kernel UAPI
 * headers only (<linux/netfilter/nf_tables.h>, <linux/netfilter/nfnetlink.h>), no
 * libnftnl or libmnl.
 *
 * A batch is one buffer sent in one sendmsg on a NETLINK_NETFILTER socket:
 *   NFNL_MSG_BATCH_BEGIN (res_id NFNL_SUBSYS_NFTABLES), the nf_tables messages,
 *   NFNL_MSG_BATCH_END.
 * The kernel runs the whole batch inside that sendmsg and either commits every
 * message or none (nfnetlink_rcv_batch). Every inner message carries NLM_F_ACK, so
 * each gets exactly one reply (0 or an error); begin and end carry none (kernels
 * before 6.x do not acknowledge them, later ones only when asked). A failure of the
 * commit itself, and a refusal of the whole batch (no CAP_NET_ADMIN, nf_tables
 * missing), come back as one error with the begin message's sequence number. By
 * the time sendmsg returns every reply is queued on our socket, so they are read
 * without waiting until the socket is empty; the receive buffer is sized for the
 * number of messages so that no reply is dropped.
 *
 * How each rule is encoded mirrors what `nft --debug=netlink,mnl` shows nft 1.0.6
 * sending for the same rule (expressions, registers, set flags and user data). */
#include <arpa/inet.h> /* before the linux/ headers (libc-compat) */
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/base.h"
#include "lb/lb_int.h"

#define NFT_RECV_BUF 65536
#define NFT_ACK_ROOM 2048u /* receive-buffer room per acknowledged message */
#define NFT_ATTR_MAX 65535u

static uint16_t msg_type(uint16_t nft_type)
{
    return (uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | nft_type);
}

static void grow_to(struct lb_nft_batch *b, size_t extra)
{
    if (b->err == 0 && cm_buf_reserve(&b->buf, extra) != 0) {
        b->err = CM_ENOMEM;
    }
}

/* Append @len bytes and zeros up to the next 4-byte boundary. */
static void put_raw(struct lb_nft_batch *b, const void *data, size_t len)
{
    size_t pad = NLMSG_ALIGN(len) - len;
    grow_to(b, len + pad);
    if (b->err != 0) {
        return;
    }
    if (len > 0) {
        memcpy(b->buf.data + b->buf.len, data, len);
    }
    memset(b->buf.data + b->buf.len + len, 0, pad);
    b->buf.len += len + pad;
    b->buf.data[b->buf.len] = '\0';
}

/* The open message's length follows every append. */
static void fix_len(struct lb_nft_batch *b)
{
    if (b->err == 0 && b->msg_at != SIZE_MAX) {
        struct nlmsghdr h;
        memcpy(&h, b->buf.data + b->msg_at, sizeof(h));
        size_t len = b->buf.len - b->msg_at;
        if (len > UINT32_MAX) {
            b->err = CM_ETOOBIG;
            return;
        }
        h.nlmsg_len = (uint32_t)len;
        memcpy(b->buf.data + b->msg_at, &h, sizeof(h));
    }
}

static void put_hdr(struct lb_nft_batch *b, uint16_t type, uint16_t flags, uint32_t seq,
                    uint8_t family, uint16_t res_id)
{
    struct nlmsghdr h = {
        .nlmsg_len = NLMSG_LENGTH(sizeof(struct nfgenmsg)),
        .nlmsg_type = type,
        .nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags),
        .nlmsg_seq = seq,
    };
    struct nfgenmsg g = {
        .nfgen_family = family, .version = NFNETLINK_V0, .res_id = htons(res_id)};
    b->msg_at = b->buf.len;
    put_raw(b, &h, sizeof(h));
    put_raw(b, &g, sizeof(g));
}

void lb_nft_batch_init(struct lb_nft_batch *b, uint32_t seq0)
{
    memset(b, 0, sizeof(*b));
    b->seq0 = seq0;
    b->msg_at = SIZE_MAX;
    put_hdr(b, NFNL_MSG_BATCH_BEGIN, 0, seq0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
    b->msg_at = SIZE_MAX;
}

void lb_nft_batch_done(struct lb_nft_batch *b)
{
    cm_buf_done(&b->buf);
    cm_free(&b->msgs);
    b->nmsgs = b->capmsgs = 0;
}

void lb_nft_msg(struct lb_nft_batch *b, uint16_t nft_type, uint16_t flags,
                const char *fmt, ...)
{
    if (b->err != 0) {
        return;
    }
    CM_BUG_ON(b->depth != 0);
    if (b->nmsgs == b->capmsgs) {
        size_t cap = b->capmsgs ? b->capmsgs * 2 : 32;
        struct lb_nft_msginfo *m = cm_reallocarray(b->msgs, cap, sizeof(*m));
        if (m == NULL) {
            b->err = CM_ENOMEM;
            return;
        }
        b->msgs = m;
        b->capmsgs = cap;
    }
    struct lb_nft_msginfo *mi = &b->msgs[b->nmsgs++];
    mi->type = nft_type;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mi->what, sizeof(mi->what), fmt, ap);
    va_end(ap);
    put_hdr(b, msg_type(nft_type), (uint16_t)(NLM_F_ACK | flags),
            b->seq0 + (uint32_t)b->nmsgs, NFPROTO_IPV4, 0);
}

void lb_nft_put(struct lb_nft_batch *b, uint16_t type, const void *data, size_t len)
{
    if (len > NFT_ATTR_MAX - NLA_HDRLEN) {
        b->err = b->err ? b->err : CM_ETOOBIG;
        return;
    }
    struct nlattr a = {.nla_len = (uint16_t)(NLA_HDRLEN + len), .nla_type = type};
    put_raw(b, &a, sizeof(a));
    put_raw(b, data, len);
    fix_len(b);
}

void lb_nft_put_be32(struct lb_nft_batch *b, uint16_t type, uint32_t v)
{
    uint32_t be = htonl(v);
    lb_nft_put(b, type, &be, sizeof(be));
}

void lb_nft_put_str(struct lb_nft_batch *b, uint16_t type, const char *s)
{
    lb_nft_put(b, type, s, strlen(s) + 1);
}

void lb_nft_nest(struct lb_nft_batch *b, uint16_t type)
{
    CM_BUG_ON(b->depth >= LB_NFT_NEST_MAX);
    b->nests[b->depth++] = b->buf.len;
    struct nlattr a = {.nla_len = NLA_HDRLEN,
                       .nla_type = (uint16_t)(NLA_F_NESTED | type)};
    put_raw(b, &a, sizeof(a));
    fix_len(b);
}

void lb_nft_nest_end(struct lb_nft_batch *b)
{
    CM_BUG_ON(b->depth == 0);
    size_t at = b->nests[--b->depth];
    if (b->err != 0) {
        return;
    }
    size_t len = b->buf.len - at;
    if (len > NFT_ATTR_MAX) {
        b->err = CM_ETOOBIG; /* nested attributes have a 16-bit length */
        return;
    }
    struct nlattr a;
    memcpy(&a, b->buf.data + at, sizeof(a));
    a.nla_len = (uint16_t)len;
    memcpy(b->buf.data + at, &a, sizeof(a));
}

int lb_nft_batch_end(struct lb_nft_batch *b)
{
    CM_BUG_ON(b->depth != 0);
    put_hdr(b, NFNL_MSG_BATCH_END, 0, b->seq0 + (uint32_t)b->nmsgs + 1, AF_UNSPEC,
            NFNL_SUBSYS_NFTABLES);
    b->msg_at = SIZE_MAX;
    return b->err;
}

uint32_t lb_nft_set_id(struct lb_nft_batch *b)
{
    return ++b->set_id;
}

/* ------------------------------------------------------------------ expressions */

static void expr_begin(struct lb_nft_batch *b, const char *name)
{
    lb_nft_nest(b, NFTA_LIST_ELEM);
    lb_nft_put_str(b, NFTA_EXPR_NAME, name);
    lb_nft_nest(b, NFTA_EXPR_DATA);
}

static void expr_end(struct lb_nft_batch *b)
{
    lb_nft_nest_end(b); /* NFTA_EXPR_DATA */
    lb_nft_nest_end(b); /* NFTA_LIST_ELEM */
}

/* NFTA_DATA_VALUE inside nest @type. */
static void put_value(struct lb_nft_batch *b, uint16_t type, const void *data, size_t len)
{
    lb_nft_nest(b, type);
    lb_nft_put(b, NFTA_DATA_VALUE, data, len);
    lb_nft_nest_end(b);
}

void lb_nft_expr_payload(struct lb_nft_batch *b, uint32_t dreg, uint32_t base,
                         uint32_t offset, uint32_t len)
{
    expr_begin(b, "payload");
    lb_nft_put_be32(b, NFTA_PAYLOAD_DREG, dreg);
    lb_nft_put_be32(b, NFTA_PAYLOAD_BASE, base);
    lb_nft_put_be32(b, NFTA_PAYLOAD_OFFSET, offset);
    lb_nft_put_be32(b, NFTA_PAYLOAD_LEN, len);
    expr_end(b);
}

void lb_nft_expr_meta(struct lb_nft_batch *b, uint32_t key, uint32_t dreg)
{
    expr_begin(b, "meta");
    lb_nft_put_be32(b, NFTA_META_KEY, key);
    lb_nft_put_be32(b, NFTA_META_DREG, dreg);
    expr_end(b);
}

void lb_nft_expr_ct(struct lb_nft_batch *b, uint32_t key, uint32_t dreg)
{
    expr_begin(b, "ct");
    lb_nft_put_be32(b, NFTA_CT_KEY, key);
    lb_nft_put_be32(b, NFTA_CT_DREG, dreg);
    expr_end(b);
}

void lb_nft_expr_cmp(struct lb_nft_batch *b, uint32_t sreg, uint32_t op, const void *data,
                     size_t len)
{
    expr_begin(b, "cmp");
    lb_nft_put_be32(b, NFTA_CMP_SREG, sreg);
    lb_nft_put_be32(b, NFTA_CMP_OP, op);
    put_value(b, NFTA_CMP_DATA, data, len);
    expr_end(b);
}

void lb_nft_expr_bitwise(struct lb_nft_batch *b, uint32_t reg, const void *mask,
                         const void * xor, size_t len)
{
    expr_begin(b, "bitwise");
    lb_nft_put_be32(b, NFTA_BITWISE_SREG, reg);
    lb_nft_put_be32(b, NFTA_BITWISE_DREG, reg);
    lb_nft_put_be32(b, NFTA_BITWISE_LEN, (uint32_t)len);
    put_value(b, NFTA_BITWISE_MASK, mask, len);
    put_value(b, NFTA_BITWISE_XOR, xor, len);
    expr_end(b);
}

void lb_nft_expr_numgen_random(struct lb_nft_batch *b, uint32_t dreg, uint32_t mod)
{
    expr_begin(b, "numgen");
    lb_nft_put_be32(b, NFTA_NG_DREG, dreg);
    lb_nft_put_be32(b, NFTA_NG_MODULUS, mod);
    lb_nft_put_be32(b, NFTA_NG_TYPE, NFT_NG_RANDOM);
    lb_nft_put_be32(b, NFTA_NG_OFFSET, 0);
    expr_end(b);
}

void lb_nft_expr_hton(struct lb_nft_batch *b, uint32_t reg, uint32_t len, uint32_t size)
{
    expr_begin(b, "byteorder");
    lb_nft_put_be32(b, NFTA_BYTEORDER_SREG, reg);
    lb_nft_put_be32(b, NFTA_BYTEORDER_DREG, reg);
    lb_nft_put_be32(b, NFTA_BYTEORDER_OP, NFT_BYTEORDER_HTON);
    lb_nft_put_be32(b, NFTA_BYTEORDER_LEN, len);
    lb_nft_put_be32(b, NFTA_BYTEORDER_SIZE, size);
    expr_end(b);
}

void lb_nft_expr_lookup(struct lb_nft_batch *b, uint32_t sreg, int32_t dreg,
                        const char *set, uint32_t set_id)
{
    expr_begin(b, "lookup");
    lb_nft_put_be32(b, NFTA_LOOKUP_SREG, sreg);
    if (dreg >= 0) {
        lb_nft_put_be32(b, NFTA_LOOKUP_DREG, (uint32_t)dreg);
    }
    lb_nft_put_str(b, NFTA_LOOKUP_SET, set);
    lb_nft_put_be32(b, NFTA_LOOKUP_SET_ID, set_id);
    expr_end(b);
}

void lb_nft_expr_dnat(struct lb_nft_batch *b, uint32_t reg_addr, uint32_t reg_proto)
{
    expr_begin(b, "nat");
    lb_nft_put_be32(b, NFTA_NAT_TYPE, NFT_NAT_DNAT);
    lb_nft_put_be32(b, NFTA_NAT_FAMILY, NFPROTO_IPV4);
    lb_nft_put_be32(b, NFTA_NAT_REG_ADDR_MIN, reg_addr);
    lb_nft_put_be32(b, NFTA_NAT_REG_PROTO_MIN, reg_proto);
    expr_end(b);
}

void lb_nft_expr_masq(struct lb_nft_batch *b)
{
    expr_begin(b, "masq");
    expr_end(b);
}

void lb_nft_expr_reject(struct lb_nft_batch *b, uint32_t type, uint8_t code)
{
    expr_begin(b, "reject");
    lb_nft_put_be32(b, NFTA_REJECT_TYPE, type);
    lb_nft_put(b, NFTA_REJECT_ICMP_CODE, &code, 1);
    expr_end(b);
}

/* ------------------------------------------------------------------ acks */

static void note_error(struct lb_nft_acks *a, uint32_t seq, int err, const char *msg,
                       size_t msglen)
{
    /* The batch-wide error wins; among messages, the first one (lowest seq) does:
     * later errors are often consequences of it. */
    bool better = a->err == 0 || (seq == a->seq0 && a->err_seq != a->seq0) ||
                  (a->err_seq != a->seq0 && seq - a->seq0 < a->err_seq - a->seq0);
    if (!better) {
        return;
    }
    a->err = err;
    a->err_seq = seq;
    size_t n = CM_MIN(msglen, sizeof(a->msg) - 1);
    memcpy(a->msg, msg, n);
    a->msg[n] = '\0';
}

int lb_nft_acks_feed(struct lb_nft_acks *a, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        struct nlmsghdr h;
        if (len < sizeof(h)) {
            return CM_EMALFORMED;
        }
        memcpy(&h, p, sizeof(h));
        if (h.nlmsg_len < sizeof(h) || h.nlmsg_len > len) {
            return CM_EMALFORMED;
        }
        size_t step = CM_MIN((size_t)NLMSG_ALIGN(h.nlmsg_len), len);
        if (h.nlmsg_type == NLMSG_ERROR) {
            struct nlmsgerr e;
            size_t body = h.nlmsg_len - sizeof(h);
            if (body < sizeof(e)) {
                return CM_EMALFORMED;
            }
            memcpy(&e, p + sizeof(h), sizeof(e));
            if (e.error > 0 || e.error < -4095) {
                return CM_EMALFORMED;
            }
            uint32_t seq = h.nlmsg_seq;
            bool ours =
                seq == a->seq0 || (seq - a->seq0 >= 1 && seq - a->seq0 <= a->nmsgs);
            if (!ours) {
                return CM_EPROTO; /* a reply to something we did not send */
            }
            if (seq != a->seq0) {
                a->nacks++;
            }
            if (e.error != 0) {
                /* Extended ack TLVs follow the echoed request: its header only when
                 * capped, the whole request otherwise. */
                const char *msg = "";
                size_t msglen = 0;
                if (h.nlmsg_flags & NLM_F_ACK_TLVS) {
                    size_t off = sizeof(e);
                    if (!(h.nlmsg_flags & NLM_F_CAPPED)) {
                        if (e.msg.nlmsg_len < sizeof(e.msg) ||
                            e.msg.nlmsg_len > body - sizeof(e) + sizeof(e.msg)) {
                            return CM_EMALFORMED;
                        }
                        off += NLMSG_ALIGN(e.msg.nlmsg_len) - sizeof(e.msg);
                    }
                    while (off + NLA_HDRLEN <= body) {
                        struct nlattr at;
                        memcpy(&at, p + sizeof(h) + off, sizeof(at));
                        if (at.nla_len < NLA_HDRLEN || at.nla_len > body - off) {
                            return CM_EMALFORMED;
                        }
                        if ((at.nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
                            msg = (const char *)p + sizeof(h) + off + NLA_HDRLEN;
                            msglen = strnlen(msg, at.nla_len - NLA_HDRLEN);
                        }
                        off += NLA_ALIGN(at.nla_len);
                    }
                }
                note_error(a, seq, e.error, msg, msglen);
            }
        } else if (h.nlmsg_type == NLMSG_DONE || h.nlmsg_type == NLMSG_NOOP) {
            /* nothing */
        } else {
            return CM_EPROTO; /* we asked for acks only */
        }
        p += step;
        len -= step;
    }
    return 0;
}

/* ------------------------------------------------------------------ send */

static const char *type_name(uint16_t t)
{
    switch (t) {
    case NFT_MSG_NEWTABLE:
        return "NEWTABLE";
    case NFT_MSG_DELTABLE:
        return "DELTABLE";
    case NFT_MSG_NEWCHAIN:
        return "NEWCHAIN";
    case NFT_MSG_NEWRULE:
        return "NEWRULE";
    case NFT_MSG_NEWSET:
        return "NEWSET";
    case NFT_MSG_NEWSETELEM:
        return "NEWSETELEM";
    default:
        return "message";
    }
}

static void set_buf(int fd, int force, int plain, size_t want)
{
    int v = (int)CM_MIN(want, (size_t)1 << 30);
    /* The forced variant passes rmem_max / wmem_max (needs CAP_NET_ADMIN, which
     * programming nf_tables needs anyway); the plain one is the fallback. */
    if (setsockopt(fd, SOL_SOCKET, force, &v, sizeof(v)) != 0) {
        (void)setsockopt(fd, SOL_SOCKET, plain, &v, sizeof(v));
    }
}

int lb_nft_batch_send(const struct lb_nft_batch *b, struct cm_errbuf *eb)
{
    static _Thread_local char rbuf[NFT_RECV_BUF] __attribute__((aligned(4)));
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    struct lb_nft_acks acks = {.seq0 = b->seq0, .nmsgs = (uint32_t)b->nmsgs};
    int on = 1, rv;

    CM_BUG_ON(b->err != 0);
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0) {
        return cm_err_sys(eb, cm_errno(), "nftables: netlink socket");
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        rv = cm_err_sys(eb, cm_errno(), "nftables: netlink bind");
        goto out;
    }
    /* Errors echo only the request's header; extended acks may name the reason. */
    (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof(on));
    (void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof(on));
    set_buf(fd, SO_SNDBUFFORCE, SO_SNDBUF, b->buf.len + 4096);
    set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF, (b->nmsgs + 1) * NFT_ACK_ROOM + 65536);

    struct sockaddr_nl to = {.nl_family = AF_NETLINK};
    struct iovec iov = {.iov_base = b->buf.data, .iov_len = b->buf.len};
    struct msghdr mh = {
        .msg_name = &to, .msg_namelen = sizeof(to), .msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n;
    do {
        n = sendmsg(fd, &mh, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        rv = cm_err_sys(eb, cm_errno(), "nftables: send batch of %zu bytes", b->buf.len);
        goto out;
    }
    for (;;) {
        n = recv(fd, rbuf, sizeof(rbuf), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            rv = cm_err_sys(eb, cm_errno(), "nftables: read acks");
            goto out;
        }
        rv = lb_nft_acks_feed(&acks, rbuf, (size_t)n);
        if (rv != 0) {
            rv = cm_err_setf(eb, CM_EPROTO, "nftables: bad reply (%s)", cm_strerror(rv));
            goto out;
        }
    }
    if (acks.err != 0) {
        const char *what = "batch", *tn = "";
        if (acks.err_seq != acks.seq0) {
            const struct lb_nft_msginfo *mi = &b->msgs[acks.err_seq - acks.seq0 - 1];
            tn = type_name(mi->type);
            what = mi->what;
        }
        rv = cm_err_setf(eb, acks.err, "nftables: %s%s%s: %s%s%s%s", tn, *tn ? " " : "",
                         what, cm_strerror(acks.err), acks.msg[0] ? " (" : "", acks.msg,
                         acks.msg[0] ? ")" : "");
        goto out;
    }
    if (acks.nacks != b->nmsgs) {
        rv = cm_err_setf(eb, CM_EPROTO,
                         "nftables: batch not acknowledged (%zu of %zu acks); the kernel "
                         "refused it whole",
                         acks.nacks, b->nmsgs);
        goto out;
    }
    rv = 0;
out:
    close(fd);
    return rv;
}
