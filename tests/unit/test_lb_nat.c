/* lb/: mode nat's nf_tables batches (lb/nft.c, lb/nat.c).
 *
 * Without the kernel: the batch's layout (message headers, sequence numbers,
 * attribute lengths and alignment, nesting, element chunks), the ack reader on
 * made-up replies.
 * With the kernel (root, skipped otherwise): this process moves into a network
 * namespace of its own (unshare(CLONE_NEWNET): it has no name that could collide
 * with anyone's and dies with the process, even on a crash, so there is nothing to
 * clean up), applies tables, and compares `nft list table ip clusterctl`, run in
 * the same namespace, with the listing expected. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/base.h"
#include "lb/lb.h"
#include "lb/lb_int.h"
#include "test.h"

static struct lb_endpoint ep(const char *s)
{
    struct lb_endpoint e;
    ASSERT_OK(lb_endpoint_parse(s, &e));
    return e;
}

static struct lb_backend_spec be(const char *s, uint32_t w)
{
    return (struct lb_backend_spec){.ep = ep(s), .weight = w};
}

/* ------------------------------------------------------------------ layout */

struct walk {
    size_t nattrs;
    size_t max_elems; /* most NFTA_LIST_ELEMs under one NFTA_SET_ELEM_LIST_ELEMENTS */
};

/* Check every attribute of [p, p+len): length at least a header, inside its
 * parent, padded to 4; recurse into nests (NLA_F_NESTED). */
static void walk_attrs(const uint8_t *p, size_t len, struct walk *w, int depth)
{
    ASSERT_INT_OP(depth, <, 10);
    ASSERT_UINT_EQ(len % 4, 0);
    size_t off = 0;
    while (off < len) {
        struct nlattr a;
        ASSERT_TRUE(len - off >= NLA_HDRLEN);
        memcpy(&a, p + off, sizeof(a));
        ASSERT_TRUE(a.nla_len >= NLA_HDRLEN);
        ASSERT_TRUE((size_t)NLA_ALIGN(a.nla_len) <= len - off);
        for (size_t i = a.nla_len; i < (size_t)NLA_ALIGN(a.nla_len); i++) {
            ASSERT_UINT_EQ(p[off + i], 0); /* padding is zero */
        }
        w->nattrs++;
        if (a.nla_type & NLA_F_NESTED) {
            walk_attrs(p + off + NLA_HDRLEN, NLA_ALIGN(a.nla_len) - NLA_HDRLEN, w,
                       depth + 1);
        }
        off += NLA_ALIGN(a.nla_len);
    }
}

/* Find top-level attribute @type of a message body; NULL when absent. */
static const struct nlattr *find_attr(const uint8_t *p, size_t len, uint16_t type)
{
    size_t off = 0;
    while (off + NLA_HDRLEN <= len) {
        const struct nlattr *a = (const struct nlattr *)(p + off);
        if ((a->nla_type & NLA_TYPE_MASK) == type) {
            return a;
        }
        off += NLA_ALIGN(a->nla_len);
    }
    return NULL;
}

static size_t count_elems(const struct nlattr *list)
{
    size_t n = 0, off = NLA_HDRLEN;
    while (off < list->nla_len) {
        const struct nlattr *a = (const struct nlattr *)((const uint8_t *)list + off);
        n++;
        off += NLA_ALIGN(a->nla_len);
    }
    return n;
}

/* Walk the whole batch; returns the inner message types in @types (up to @cap). */
static size_t walk_batch(const struct lb_nft_batch *b, uint16_t *types, size_t cap,
                         struct walk *w)
{
    const uint8_t *p = (const uint8_t *)b->buf.data;
    size_t len = b->buf.len, off = 0, nmsg = 0;
    uint32_t seq = b->seq0;
    ASSERT_UINT_EQ(len % 4, 0);
    while (off < len) {
        struct nlmsghdr h;
        struct nfgenmsg g;
        ASSERT_TRUE(len - off >= NLMSG_LENGTH(sizeof(g)));
        memcpy(&h, p + off, sizeof(h));
        memcpy(&g, p + off + NLMSG_HDRLEN, sizeof(g));
        ASSERT_UINT_EQ(h.nlmsg_len % 4, 0);
        ASSERT_TRUE(h.nlmsg_len <= len - off);
        ASSERT_UINT_EQ(h.nlmsg_seq, seq);
        seq++;
        ASSERT_TRUE(h.nlmsg_flags & NLM_F_REQUEST);
        ASSERT_UINT_EQ(g.version, NFNETLINK_V0);
        if (off == 0) {
            ASSERT_UINT_EQ(h.nlmsg_type, NFNL_MSG_BATCH_BEGIN);
            ASSERT_UINT_EQ(ntohs(g.res_id), NFNL_SUBSYS_NFTABLES);
            ASSERT_UINT_EQ(h.nlmsg_len, NLMSG_LENGTH(sizeof(g)));
        } else if (off + h.nlmsg_len == len) {
            ASSERT_UINT_EQ(h.nlmsg_type, NFNL_MSG_BATCH_END);
            ASSERT_UINT_EQ(ntohs(g.res_id), NFNL_SUBSYS_NFTABLES);
        } else {
            ASSERT_UINT_EQ(h.nlmsg_type >> 8, NFNL_SUBSYS_NFTABLES);
            ASSERT_TRUE(h.nlmsg_flags & NLM_F_ACK);
            ASSERT_UINT_EQ(g.nfgen_family, 2 /* NFPROTO_IPV4 */);
            uint16_t t = (uint16_t)(h.nlmsg_type & 0xff);
            ASSERT_UINT_EQ(b->msgs[nmsg].type, t);
            if (nmsg < cap) {
                types[nmsg] = t;
            }
            const uint8_t *body = p + off + NLMSG_LENGTH(sizeof(g));
            size_t blen = h.nlmsg_len - NLMSG_LENGTH(sizeof(g));
            walk_attrs(body, blen, w, 0);
            if (t == NFT_MSG_NEWSETELEM) {
                const struct nlattr *l =
                    find_attr(body, blen, NFTA_SET_ELEM_LIST_ELEMENTS);
                ASSERT_NOT_NULL(l);
                w->max_elems = CM_MAX(w->max_elems, count_elems(l));
            }
            nmsg++;
        }
        off += h.nlmsg_len;
    }
    ASSERT_UINT_EQ(nmsg, b->nmsgs);
    return nmsg;
}

TEST(batch_layout)
{
    struct lb_backend_spec b[3] = {be("10.0.0.1:8080", 1), be("10.0.0.2:8080", 2),
                                   be("10.0.0.3:8080", 1)};
    b[2].draining = true;
    struct lb_vip_spec v[] = {
        {.vip = ep("198.18.0.1:80"), .backends = b, .nbackends = 3},
        {.vip = ep("198.18.0.1:53"), .proto = LB_PROTO_UDP, .mode = LB_MODE_NAT},
        {.vip = ep("198.18.0.2:80"),
         .mode = LB_MODE_PROXY,
         .backends = b,
         .nbackends = 1},
    };
    struct lb_table *t;
    ASSERT_OK(lb_table_new(v, 3, NULL, &t, NULL));
    struct lb_nft_batch bt;
    ASSERT_OK(lb__nat_batch(t, true, 1000, &bt));
    uint16_t types[32];
    struct walk w = {0};
    size_t n = walk_batch(&bt, types, 32, &w);
    const uint16_t want[] = {
        NFT_MSG_NEWTABLE, NFT_MSG_DELTABLE,   NFT_MSG_NEWTABLE, NFT_MSG_NEWCHAIN,
        NFT_MSG_NEWCHAIN, NFT_MSG_NEWCHAIN,   NFT_MSG_NEWCHAIN, NFT_MSG_NEWCHAIN,
        NFT_MSG_NEWSET,   NFT_MSG_NEWSETELEM,                  /* vips */
        NFT_MSG_NEWSET,   NFT_MSG_NEWSETELEM,                  /* vip_addrs */
        NFT_MSG_NEWRULE,                                       /* vip_0: reject */
        NFT_MSG_NEWSET,   NFT_MSG_NEWSETELEM, NFT_MSG_NEWRULE, /* vip_1 */
        NFT_MSG_NEWRULE,  NFT_MSG_NEWRULE,    NFT_MSG_NEWRULE,
    };
    ASSERT_UINT_EQ(n, CM_ARRAY_SIZE(want));
    for (size_t i = 0; i < n; i++) {
        ASSERT_UINT_EQ(types[i], want[i]);
    }
    ASSERT_STR_EQ(bt.msgs[0].what, "table clusterctl");
    ASSERT_STR_EQ(bt.msgs[3].what, "chain vip_0");
    ASSERT_STR_EQ(bt.msgs[8].what, "set vips");
    ASSERT_STR_EQ(bt.msgs[15].what, "chain vip_1");
    ASSERT_STR_EQ(bt.msgs[18].what, "chain postrouting");

    /* The vips element of 198.18.0.1 tcp 80: the key is daddr . l4proto . dport,
     * each in a 32-bit word, and the data a goto vip_1. */
    const uint8_t key[12] = {198, 18, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0};
    const char *k = memmem(bt.buf.data, bt.buf.len, key, sizeof(key));
    ASSERT_NOT_NULL(k);
    ASSERT_NOT_NULL(memmem(k, 64, "vip_1", 6));
    /* The backend map: start keys 0 and 1 (big-endian) and an end element at 3
     * flagged NFT_SET_ELEM_INTERVAL_END. */
    const uint8_t data2[8] = {10, 0, 0, 2, 0x1f, 0x90, 0, 0};
    ASSERT_NOT_NULL(memmem(bt.buf.data, bt.buf.len, data2, sizeof(data2)));
    const uint8_t end[] = {8, 0, NFTA_SET_ELEM_FLAGS, 0, 0, 0, 0, 1};
    ASSERT_NOT_NULL(memmem(bt.buf.data, bt.buf.len, end, sizeof(end)));
    lb_nft_batch_done(&bt);

    /* AUTO VIPs stay out when the node runs them in the proxy: only vip_0 (UDP,
     * NAT) is left, and it rejects. */
    ASSERT_OK(lb__nat_batch(t, false, 1, &bt));
    ASSERT_NULL(memmem(bt.buf.data, bt.buf.len, "vip_1", 6));
    ASSERT_NOT_NULL(memmem(bt.buf.data, bt.buf.len, "vip_0", 6));
    lb_nft_batch_done(&bt);
    lb_table_unref(t);

    /* No NAT VIP at all: the table alone. */
    ASSERT_OK(lb_table_new(NULL, 0, NULL, &t, NULL));
    ASSERT_OK(lb__nat_batch(t, true, 7, &bt));
    w = (struct walk){0};
    ASSERT_UINT_EQ(walk_batch(&bt, types, 32, &w), 3);
    lb_nft_batch_done(&bt);
    lb_table_unref(t);
}

TEST(batch_chunks)
{
    /* 600 backends: 601 elements in the backend map, in 256-element messages. */
    struct lb_backend_spec *b = calloc(600, sizeof(*b));
    ASSERT_NOT_NULL(b);
    for (int i = 0; i < 600; i++) {
        char s[32];
        snprintf(s, sizeof(s), "10.1.%d.%d:80", i / 200, i % 200 + 1);
        b[i] = be(s, 1000);
    }
    struct lb_vip_spec v = {.vip = ep("198.18.0.1:80"), .backends = b, .nbackends = 600};
    struct lb_table *t;
    ASSERT_OK(lb_table_new(&v, 1, NULL, &t, NULL));
    free(b);
    struct lb_nft_batch bt;
    ASSERT_OK(lb__nat_batch(t, true, 1, &bt));
    uint16_t types[64];
    struct walk w = {0};
    size_t n = walk_batch(&bt, types, 64, &w);
    size_t nelem = 0;
    for (size_t i = 0; i < n; i++) {
        nelem += types[i] == NFT_MSG_NEWSETELEM;
    }
    ASSERT_UINT_EQ(nelem, 2 + 3); /* vips, vip_addrs, 3 for the backends */
    ASSERT_UINT_EQ(w.max_elems, 256);
    lb_nft_batch_done(&bt);
    lb_table_unref(t);
}

TEST(put_too_big)
{
    struct lb_nft_batch b;
    lb_nft_batch_init(&b, 1);
    lb_nft_msg(&b, NFT_MSG_NEWTABLE, 0, "table %s", "x");
    static char big[70000];
    lb_nft_put(&b, NFTA_TABLE_USERDATA, big, sizeof(big));
    ASSERT_ERR(lb_nft_batch_end(&b), CM_ETOOBIG);
    lb_nft_batch_done(&b);

    /* A nest that outgrows 16 bits, from attributes that each fit. */
    lb_nft_batch_init(&b, 1);
    lb_nft_msg(&b, NFT_MSG_NEWTABLE, 0, "table %s", "x");
    lb_nft_nest(&b, NFTA_TABLE_USERDATA);
    for (int i = 0; i < 3; i++) {
        lb_nft_put(&b, 1, big, 30000);
    }
    lb_nft_nest_end(&b);
    ASSERT_ERR(lb_nft_batch_end(&b), CM_ETOOBIG);
    lb_nft_batch_done(&b);
}

/* ------------------------------------------------------------------ acks */

/* Append one NLMSG_ERROR reply for @seq with @err, optionally capped with an
 * extended-ack message. */
static void reply(struct cm_buf *out, uint32_t seq, int err, const char *msg)
{
    struct nlmsghdr h = {.nlmsg_type = NLMSG_ERROR, .nlmsg_seq = seq};
    struct nlmsgerr e = {.error = err};
    e.msg.nlmsg_len = 20;
    e.msg.nlmsg_seq = seq;
    h.nlmsg_flags = NLM_F_CAPPED;
    size_t alen = 0;
    if (msg != NULL) {
        h.nlmsg_flags |= NLM_F_ACK_TLVS;
        alen = NLA_ALIGN(NLA_HDRLEN + strlen(msg) + 1);
    }
    h.nlmsg_len = (uint32_t)(sizeof(h) + sizeof(e) + alen);
    ASSERT_OK(cm_buf_append(out, &h, sizeof(h)));
    ASSERT_OK(cm_buf_append(out, &e, sizeof(e)));
    if (msg != NULL) {
        struct nlattr a = {.nla_len = (uint16_t)(NLA_HDRLEN + strlen(msg) + 1),
                           .nla_type = NLMSGERR_ATTR_MSG};
        char pad[4] = {0};
        ASSERT_OK(cm_buf_append(out, &a, sizeof(a)));
        ASSERT_OK(cm_buf_append(out, msg, strlen(msg) + 1));
        ASSERT_OK(cm_buf_append(out, pad, alen - a.nla_len));
    }
}

TEST(acks)
{
    struct cm_buf r = {0};
    struct lb_nft_acks a = {.seq0 = 100, .nmsgs = 3};
    reply(&r, 101, 0, NULL);
    reply(&r, 102, 0, NULL);
    ASSERT_OK(lb_nft_acks_feed(&a, r.data, r.len));
    cm_buf_clear(&r);
    reply(&r, 103, 0, NULL);
    ASSERT_OK(lb_nft_acks_feed(&a, r.data, r.len));
    ASSERT_UINT_EQ(a.nacks, 3);
    ASSERT_INT_EQ(a.err, 0);

    /* The first failing message is the one reported; its extack text is kept. */
    a = (struct lb_nft_acks){.seq0 = 100, .nmsgs = 3};
    cm_buf_clear(&r);
    reply(&r, 101, 0, NULL);
    reply(&r, 103, -ENOENT, NULL);
    reply(&r, 102, -EINVAL, "bad thing");
    ASSERT_OK(lb_nft_acks_feed(&a, r.data, r.len));
    ASSERT_INT_EQ(a.err, -EINVAL);
    ASSERT_UINT_EQ(a.err_seq, 102);
    ASSERT_STR_EQ(a.msg, "bad thing");
    ASSERT_UINT_EQ(a.nacks, 3);
    /* A batch-wide error (begin's seq) wins and is no message's ack. */
    cm_buf_clear(&r);
    reply(&r, 100, -EPERM, NULL);
    ASSERT_OK(lb_nft_acks_feed(&a, r.data, r.len));
    ASSERT_INT_EQ(a.err, -EPERM);
    ASSERT_UINT_EQ(a.err_seq, 100);
    ASSERT_STR_EQ(a.msg, "");
    ASSERT_UINT_EQ(a.nacks, 3);

    /* Sequence numbers around the 32-bit wrap. */
    a = (struct lb_nft_acks){.seq0 = UINT32_MAX, .nmsgs = 2};
    cm_buf_clear(&r);
    reply(&r, 0, 0, NULL);
    reply(&r, 1, -EEXIST, NULL);
    ASSERT_OK(lb_nft_acks_feed(&a, r.data, r.len));
    ASSERT_UINT_EQ(a.nacks, 2);
    ASSERT_INT_EQ(a.err, -EEXIST);

    /* Replies to what we did not send, and malformed ones. */
    a = (struct lb_nft_acks){.seq0 = 100, .nmsgs = 3};
    cm_buf_clear(&r);
    reply(&r, 104, 0, NULL);
    ASSERT_ERR(lb_nft_acks_feed(&a, r.data, r.len), CM_EPROTO);
    cm_buf_clear(&r);
    reply(&r, 101, 0, NULL);
    ASSERT_ERR(lb_nft_acks_feed(&a, r.data, r.len - 1), CM_EMALFORMED);
    ASSERT_ERR(lb_nft_acks_feed(&a, r.data, 10), CM_EMALFORMED);
    cm_buf_clear(&r);
    reply(&r, 101, 5, NULL); /* positive error codes do not exist */
    ASSERT_ERR(lb_nft_acks_feed(&a, r.data, r.len), CM_EMALFORMED);
    cm_buf_clear(&r);
    reply(&r, 101, -EINVAL, "x");
    struct nlattr *at = (struct nlattr *)(r.data + r.len - 8);
    at->nla_len = 200; /* runs past the reply */
    ASSERT_ERR(lb_nft_acks_feed(&a, r.data, r.len), CM_EMALFORMED);
    cm_buf_done(&r);
}

/* ------------------------------------------------------------------ kernel */

static bool kernel_setup(void)
{
    static int state; /* 0 untried, 1 in our namespace, -1 cannot */
    if (state == 0) {
        state = -1;
        if (geteuid() == 0 && system("command -v nft >/dev/null 2>&1") == 0 &&
            unshare(CLONE_NEWNET) == 0) {
            state = 1;
        }
    }
    return state == 1;
}

#define NEED_KERNEL()                                                        \
    do {                                                                     \
        if (!kernel_setup())                                                 \
            test_skip("needs root, nft and a network namespace of its own"); \
    } while (0)

/* `nft list table ip clusterctl` in our namespace: its output, and its exit status
 * in *status. */
static char *nft_list(int *status)
{
    FILE *f = popen("nft list table ip clusterctl 2>&1", "r");
    ASSERT_NOT_NULL(f);
    struct cm_buf out = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        ASSERT_OK(cm_buf_append(&out, chunk, n));
    }
    int st = pclose(f);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (out.data == NULL) {
        ASSERT_OK(cm_buf_puts(&out, ""));
    }
    return cm_buf_steal(&out);
}

static void expect_listing(const char *want)
{
    int st;
    char *got = nft_list(&st);
    ASSERT_INT_EQ(st, 0);
    ASSERT_STR_EQ(got, want);
    free(got);
}

static void expect_no_table(void)
{
    int st;
    char *got = nft_list(&st);
    ASSERT_INT_OP(st, !=, 0);
    free(got);
}

#define HOOKS                                                               \
    "\tchain prerouting {\n"                                                \
    "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"        \
    "\t\tip daddr . meta l4proto . th dport vmap @vips\n"                   \
    "\t}\n\n"                                                               \
    "\tchain output {\n"                                                    \
    "\t\ttype nat hook output priority -100; policy accept;\n"              \
    "\t\tip daddr . meta l4proto . th dport vmap @vips\n"                   \
    "\t}\n\n"                                                               \
    "\tchain postrouting {\n"                                               \
    "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"       \
    "\t\tct status dnat oifname != \"lo\" ip saddr @vip_addrs masquerade\n" \
    "\t}\n"

static const char mixed_listing[] =
    "table ip clusterctl {\n"
    "\tmap vips {\n"
    "\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"
    "\t\telements = { 198.18.0.1 . udp . 53 : goto vip_0,\n"
    "\t\t\t     198.18.0.1 . tcp . 80 : goto vip_1,\n"
    "\t\t\t     198.18.0.2 . tcp . 81 : goto vip_3 }\n"
    "\t}\n\n"
    "\tset vip_addrs {\n"
    "\t\ttype ipv4_addr\n"
    "\t\telements = { 198.18.0.1, 198.18.0.2 }\n"
    "\t}\n\n"
    "\tchain vip_0 {\n"
    "\t\treject\n"
    "\t}\n\n"
    "\tchain vip_1 {\n"
    "\t\tmeta l4proto tcp dnat ip to numgen random mod 8 map { 0 : 10.0.0.1 . 8080, "
    "1-5 : 10.0.0.2 . 8080, 6-7 : 10.0.0.4 . 9090 }\n"
    "\t}\n\n"
    "\tchain vip_3 {\n"
    "\t\treject with tcp reset\n"
    "\t}\n\n" HOOKS "}\n";

static struct lb_table *mixed_table(void)
{
    struct lb_backend_spec b[4] = {be("10.0.0.1:8080", 1), be("10.0.0.2:8080", 5),
                                   be("10.0.0.3:8080", 1), be("10.0.0.4:9090", 2)};
    b[2].draining = true;
    struct lb_vip_spec v[] = {
        {.vip = ep("198.18.0.1:80"), .backends = b, .nbackends = 4},
        {.vip = ep("198.18.0.1:53"), .proto = LB_PROTO_UDP, .mode = LB_MODE_NAT},
        {.vip = ep("198.18.0.2:80"),
         .mode = LB_MODE_PROXY,
         .backends = b,
         .nbackends = 1},
        {.vip = ep("198.18.0.2:81"), .backends = b + 2, .nbackends = 1}, /* draining */
    };
    struct lb_table *t;
    ASSERT_OK(lb_table_new(v, CM_ARRAY_SIZE(v), NULL, &t, NULL));
    return t;
}

TEST(kernel_apply_replace_clear)
{
    NEED_KERNEL();
    struct cm_errbuf eb = {0};
    struct lb_nat *n;
    ASSERT_OK(lb_nat_new(&n, &eb));
    expect_no_table();

    /* 0 VIPs: an empty table. */
    struct lb_table *t;
    ASSERT_OK(lb_table_new(NULL, 0, NULL, &t, NULL));
    ASSERT_OK(lb_nat_apply(n, t, true, &eb));
    lb_table_unref(t);
    expect_listing("table ip clusterctl {\n}\n");

    /* TCP and UDP, weights, a draining backend, a VIP without an eligible
     * backend, a proxy-mode VIP left out. */
    t = mixed_table();
    ASSERT_OK(lb_nat_apply(n, t, true, &eb));
    expect_listing(mixed_listing);

    /* Replace with one VIP of one backend. */
    struct lb_backend_spec b1 = be("10.9.0.1:80", 3);
    struct lb_vip_spec v1 = {
        .vip = ep("198.18.1.1:8080"), .backends = &b1, .nbackends = 1};
    struct lb_table *t1;
    ASSERT_OK(lb_table_new(&v1, 1, NULL, &t1, NULL));
    ASSERT_OK(lb_nat_apply(n, t1, true, &eb));
    expect_listing(
        "table ip clusterctl {\n"
        "\tmap vips {\n"
        "\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"
        "\t\telements = { 198.18.1.1 . tcp . 8080 : goto vip_0 }\n"
        "\t}\n\n"
        "\tset vip_addrs {\n"
        "\t\ttype ipv4_addr\n"
        "\t\telements = { 198.18.1.1 }\n"
        "\t}\n\n"
        "\tchain vip_0 {\n"
        "\t\tmeta l4proto tcp dnat ip to numgen random mod 3 map { 0-2 : "
        "10.9.0.1 . 80 }\n"
        "\t}\n\n" HOOKS "}\n");
    /* The same table twice: still the same rules. */
    ASSERT_OK(lb_nat_apply(n, t1, true, &eb));
    ASSERT_OK(lb_nat_apply(n, t, true, &eb));
    expect_listing(mixed_listing);
    lb_table_unref(t1);
    lb_table_unref(t);

    ASSERT_OK(lb_nat_clear(n, &eb));
    expect_no_table();
    ASSERT_OK(lb_nat_clear(n, &eb)); /* idempotent */
    lb_nat_free(n);
}

TEST(kernel_many_vips)
{
    NEED_KERNEL();
    /* 400 VIPs of 3 backends each (TCP and UDP), and one of 600 backends: several
     * element messages per set, and a batch larger than the default socket
     * buffers. */
    enum { NV = 400 };
    struct lb_vip_spec *v = calloc(NV + 1, sizeof(*v));
    struct lb_backend_spec *b = calloc(600, sizeof(*b));
    ASSERT_TRUE(v != NULL && b != NULL);
    for (int i = 0; i < 600; i++) {
        char s[32];
        snprintf(s, sizeof(s), "10.2.%d.%d:80", i / 200, i % 200 + 1);
        b[i] = be(s, (uint32_t)(i % 7 + 1));
    }
    for (int i = 0; i < NV; i++) {
        char s[32];
        snprintf(s, sizeof(s), "198.18.%d.%d:%d", i / 100, i % 100 + 1, 1000 + i % 3);
        v[i] = (struct lb_vip_spec){.vip = ep(s),
                                    .proto = i % 2 ? LB_PROTO_UDP : LB_PROTO_TCP,
                                    .backends = b + i,
                                    .nbackends = 3};
    }
    v[NV] =
        (struct lb_vip_spec){.vip = ep("198.19.0.1:80"), .backends = b, .nbackends = 600};
    struct lb_table *t;
    ASSERT_OK(lb_table_new(v, NV + 1, NULL, &t, NULL));
    free(v);
    free(b);
    struct cm_errbuf eb = {0};
    struct lb_nat *n;
    ASSERT_OK(lb_nat_new(&n, &eb));
    ASSERT_OK(lb_nat_apply(n, t, true, &eb));
    int st;
    char *got = nft_list(&st);
    ASSERT_INT_EQ(st, 0);
    size_t gotos = 0, dnats = 0;
    for (const char *p = got; (p = strstr(p, ": goto vip_")) != NULL; p++) {
        gotos++;
    }
    for (const char *p = got; (p = strstr(p, "dnat ip to numgen")) != NULL; p++) {
        dnats++;
    }
    ASSERT_UINT_EQ(gotos, NV + 1);
    ASSERT_UINT_EQ(dnats, NV + 1);
    /* The 600-backend VIP's weights (1..7 cycling) sum to 85 * 28 + 15 = 2395. */
    ASSERT_NOT_NULL(strstr(got,
                           "numgen random mod 2395 map { 0 : 10.2.0.1 . 80, 1-2 : "
                           "10.2.0.2 . 80,"));
    ASSERT_NOT_NULL(strstr(got, ", 2390-2394 : 10.2.2.200 . 80 }"));
    ASSERT_NOT_NULL(strstr(got, "198.18.3.100 . udp . 1000 : goto vip_"));
    free(got);
    ASSERT_OK(lb_nat_clear(n, &eb));
    lb_nat_free(n);
    lb_table_unref(t);
}

TEST(kernel_failing_batch)
{
    NEED_KERNEL();
    struct cm_errbuf eb = {0};
    struct lb_nat *n;
    ASSERT_OK(lb_nat_new(&n, &eb));
    struct lb_table *t = mixed_table();
    ASSERT_OK(lb_nat_apply(n, t, true, &eb));

    /* A replacement the kernel refuses (a rule in a chain that does not exist):
     * the error names the message, and the previous table is still in place. */
    struct lb_nft_batch b;
    lb_nft_batch_init(&b, 5000);
    lb_nft_msg(&b, NFT_MSG_NEWTABLE, NLM_F_CREATE, "table %s", LB_NFT_TABLE);
    lb_nft_put_str(&b, NFTA_TABLE_NAME, LB_NFT_TABLE);
    lb_nft_msg(&b, NFT_MSG_DELTABLE, 0, "table %s", LB_NFT_TABLE);
    lb_nft_put_str(&b, NFTA_TABLE_NAME, LB_NFT_TABLE);
    lb_nft_msg(&b, NFT_MSG_NEWTABLE, NLM_F_CREATE, "table %s", LB_NFT_TABLE);
    lb_nft_put_str(&b, NFTA_TABLE_NAME, LB_NFT_TABLE);
    lb_nft_msg(&b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, "chain %s", "vip_9");
    lb_nft_put_str(&b, NFTA_RULE_TABLE, LB_NFT_TABLE);
    lb_nft_put_str(&b, NFTA_RULE_CHAIN, "vip_9");
    lb_nft_nest(&b, NFTA_RULE_EXPRESSIONS);
    lb_nft_expr_masq(&b);
    lb_nft_nest_end(&b);
    ASSERT_OK(lb_nft_batch_end(&b));
    ASSERT_ERR(lb_nft_batch_send(&b, &eb), -ENOENT);
    ASSERT_STR_EQ(eb.msg, "nftables: NEWRULE chain vip_9: no such file or directory");
    lb_nft_batch_done(&b);
    expect_listing(mixed_listing);

    /* An expression the kernel does not know: EOPNOTSUPP (or ENOENT), same
     * outcome. */
    lb_nft_batch_init(&b, 6000);
    lb_nft_msg(&b, NFT_MSG_DELTABLE, 0, "table %s", LB_NFT_TABLE);
    lb_nft_put_str(&b, NFTA_TABLE_NAME, LB_NFT_TABLE);
    lb_nft_msg(&b, NFT_MSG_NEWTABLE, NLM_F_CREATE, "table %s", "nfnl_x");
    lb_nft_put_str(&b, NFTA_TABLE_NAME, "nfnl_x");
    lb_nft_msg(&b, NFT_MSG_NEWCHAIN, NLM_F_CREATE, "chain %s", "c");
    lb_nft_put_str(&b, NFTA_CHAIN_TABLE, "nfnl_x");
    lb_nft_put_str(&b, NFTA_CHAIN_NAME, "c");
    lb_nft_msg(&b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, "chain %s", "c");
    lb_nft_put_str(&b, NFTA_RULE_TABLE, "nfnl_x");
    lb_nft_put_str(&b, NFTA_RULE_CHAIN, "c");
    lb_nft_nest(&b, NFTA_RULE_EXPRESSIONS);
    lb_nft_nest(&b, NFTA_LIST_ELEM);
    lb_nft_put_str(&b, NFTA_EXPR_NAME, "nfnl_no_such_expr");
    lb_nft_nest_end(&b);
    lb_nft_nest_end(&b);
    ASSERT_OK(lb_nft_batch_end(&b));
    int rv = lb_nft_batch_send(&b, &eb);
    ASSERT_TRUE(rv == -EOPNOTSUPP || rv == -ENOENT);
    ASSERT_TRUE(strncmp(eb.msg, "nftables: NEWRULE chain c: ", 27) == 0);
    lb_nft_batch_done(&b);
    expect_listing(mixed_listing);
    int st;
    free(nft_list(&st));
    ASSERT_INT_EQ(system("nft list table ip nfnl_x >/dev/null 2>&1") != 0, 1);

    ASSERT_OK(lb_nat_clear(n, &eb));
    expect_no_table();
    lb_nat_free(n);
    lb_table_unref(t);
}
