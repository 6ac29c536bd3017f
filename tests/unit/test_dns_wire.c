/* dns/: names, the message reader and writer, query validation. */
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "dns/dns.h"
#include "test.h"

/* ======================================================================= names */

static void label_str(char *out, char c, size_t n)
{
    memset(out, c, n);
    out[n] = '\0';
}

TEST(dns_name_from_str_basic)
{
    struct dns_name n;
    ASSERT_OK(dns_name_from_str("api.Cluster", &n));
    ASSERT_UINT_EQ(n.len, 13);
    ASSERT_MEM_EQ(n.data, "\3api\7Cluster\0", 13);
    struct dns_name n2;
    ASSERT_OK(dns_name_from_str("api.Cluster.", &n2));
    ASSERT_UINT_EQ(n2.len, 13);
    ASSERT_OK(dns_name_from_str(".", &n));
    ASSERT_UINT_EQ(n.len, 1);
    ASSERT_OK(dns_name_from_str("", &n));
    ASSERT_UINT_EQ(n.len, 1);
    ASSERT_ERR(dns_name_from_str("a..b", &n), CM_EINVAL);
    ASSERT_ERR(dns_name_from_str(".a", &n), CM_EINVAL);
    ASSERT_ERR(dns_name_from_str("a..", &n), CM_EINVAL);
}

TEST(dns_name_label_63_64)
{
    char s[300];
    struct dns_name n;
    label_str(s, 'a', 63);
    ASSERT_OK(dns_name_from_str(s, &n));
    ASSERT_UINT_EQ(n.len, 65);
    label_str(s, 'a', 64);
    ASSERT_ERR(dns_name_from_str(s, &n), CM_ETOOBIG);
}

/* 255 bytes is the most a name may take on the wire, root label included. */
TEST(dns_name_255_256)
{
    char s[300];
    struct dns_name n;
    /* 3 labels of 63 + one of 61: 4 * 1 + 63 * 3 + 61 + 1 = 255. */
    char l63[64], l61[62], l62[63];
    label_str(l63, 'x', 63);
    label_str(l61, 'y', 61);
    label_str(l62, 'y', 62);
    snprintf(s, sizeof(s), "%s.%s.%s.%s", l63, l63, l63, l61);
    ASSERT_OK(dns_name_from_str(s, &n));
    ASSERT_UINT_EQ(n.len, 255);
    snprintf(s, sizeof(s), "%s.%s.%s.%s", l63, l63, l63, l62);
    ASSERT_ERR(dns_name_from_str(s, &n), CM_ETOOBIG);
}

TEST(dns_name_to_str_escapes)
{
    struct dns_name n = {.len = 8, .data = "\3a.b\2\x01\\"};
    char buf[64];
    ASSERT_INT_EQ(dns_name_to_str(&n, buf, sizeof(buf)), 12);
    ASSERT_STR_EQ(buf, "a\\.b.\\001\\\\.");
    struct dns_name root = {.len = 1, .data = ""};
    ASSERT_INT_EQ(dns_name_to_str(&root, buf, sizeof(buf)), 1);
    ASSERT_STR_EQ(buf, ".");
    ASSERT_ERR(dns_name_to_str(&n, buf, 5), CM_EMSGSIZE);
    ASSERT_STR_EQ(buf, "a\\.b");
    struct dns_name bad = {.len = 3, .data = "\5ab"};
    ASSERT_ERR(dns_name_to_str(&bad, buf, sizeof(buf)), CM_EINVAL);
}

TEST(dns_name_compare)
{
    struct dns_name a, b, z;
    ASSERT_OK(dns_name_from_str("API.backend.Cluster", &a));
    ASSERT_OK(dns_name_from_str("api.BACKEND.cluster", &b));
    ASSERT_TRUE(dns_name_equal(&a, &b));
    ASSERT_OK(dns_name_from_str("cluster", &z));
    ASSERT_TRUE(dns_name_in_zone(&a, &z));
    ASSERT_TRUE(dns_name_in_zone(&z, &z));
    ASSERT_UINT_EQ(dns_name_labels(&a), 3);
    /* "xcluster" is not below "cluster": a label boundary is needed. */
    ASSERT_OK(dns_name_from_str("api.xcluster", &b));
    ASSERT_FALSE(dns_name_in_zone(&b, &z));
    ASSERT_FALSE(dns_name_equal(&b, &a));
    dns_name_lower(&a);
    ASSERT_MEM_EQ(a.data, "\3api\7backend\7cluster", a.len);
}

/* A message of header + @body (@n bytes), then read a name at @at. */
static int read_at(const uint8_t *body, size_t n, size_t at, struct dns_name *ret,
                   size_t *ret_end)
{
    uint8_t msg[1024] = {0};
    memcpy(msg + 12, body, n);
    struct cm_wire w;
    cm_wire_init(&w, msg, 12 + n);
    cm_wire_seek(&w, 12 + at);
    int rv = dns_name_read(&w, ret);
    if (rv == 0) {
        *ret_end = cm_wire_offset(&w) - 12;
    }
    ASSERT_INT_EQ(cm_wire_err(&w), rv);
    return rv;
}

TEST(dns_name_read_compression)
{
    struct dns_name n;
    size_t end;
    /* "b.cluster" at 12, then "a" + pointer to 12 at offset 12+11. */
    static const uint8_t m[] = {1,   'b', 7, 'c', 'l',  'u', 's',  't', 'e',
                                'r', 0,   1, 'a', 0xc0, 12,  0xc0, 14};
    ASSERT_OK(read_at(m, sizeof(m), 11, &n, &end));
    ASSERT_UINT_EQ(end, 15); /* after the first pointer */
    ASSERT_UINT_EQ(n.len, 13);
    ASSERT_MEM_EQ(n.data, "\1a\1b\7cluster", 13);
    /* A pointer to the middle of a name. */
    ASSERT_OK(read_at(m, sizeof(m), 15, &n, &end));
    ASSERT_MEM_EQ(n.data, "\7cluster", 9);
}

TEST(dns_name_read_errors)
{
    struct dns_name n;
    size_t end;
    /* A pointer to itself. */
    static const uint8_t self[] = {0xc0, 12};
    ASSERT_ERR(read_at(self, sizeof(self), 0, &n, &end), CM_EMALFORMED);
    /* Two pointers to each other: the second jump is not backwards. */
    static const uint8_t loop[] = {0xc0, 14, 0xc0, 12};
    ASSERT_ERR(read_at(loop, sizeof(loop), 2, &n, &end), CM_EMALFORMED);
    /* A label then a pointer back to that label. */
    static const uint8_t loop2[] = {1, 'a', 0xc0, 12};
    ASSERT_ERR(read_at(loop2, sizeof(loop2), 0, &n, &end), CM_EMALFORMED);
    /* Forward pointer. */
    static const uint8_t fwd[] = {0xc0, 14, 1, 'a', 0};
    ASSERT_ERR(read_at(fwd, sizeof(fwd), 0, &n, &end), CM_EMALFORMED);
    /* Pointer into the header. */
    static const uint8_t hdr[] = {0xc0, 4};
    ASSERT_ERR(read_at(hdr, sizeof(hdr), 0, &n, &end), CM_EMALFORMED);
    /* Extended (0x40) and reserved (0x80) label types. */
    static const uint8_t ext[] = {0x41, 'a', 0};
    ASSERT_ERR(read_at(ext, sizeof(ext), 0, &n, &end), CM_EMALFORMED);
    static const uint8_t res[] = {0x81, 'a', 0};
    ASSERT_ERR(read_at(res, sizeof(res), 0, &n, &end), CM_EMALFORMED);
    /* Truncated: inside a label, before the root, half a pointer. */
    static const uint8_t t1[] = {5, 'a', 'b'};
    ASSERT_ERR(read_at(t1, sizeof(t1), 0, &n, &end), CM_ETRUNC);
    static const uint8_t t2[] = {1, 'a'};
    ASSERT_ERR(read_at(t2, sizeof(t2), 0, &n, &end), CM_ETRUNC);
    static const uint8_t t3[] = {1, 'a', 0xc0};
    ASSERT_ERR(read_at(t3, sizeof(t3), 0, &n, &end), CM_ETRUNC);
}

TEST(dns_name_read_too_long)
{
    struct dns_name n;
    size_t end;
    uint8_t m[600];
    size_t o = 0;
    /* 4 labels of 63: 256 bytes with the root. */
    for (int i = 0; i < 4; i++) {
        m[o++] = 63;
        memset(m + o, 'a', 63);
        o += 63;
    }
    m[o++] = 0;
    ASSERT_ERR(read_at(m, o, 0, &n, &end), CM_ETOOBIG);
    /* 3 of 63 + 1 of 61: 255, fine. */
    m[3 * 64] = 61;
    m[3 * 64 + 62] = 0;
    ASSERT_OK(read_at(m, 3 * 64 + 63, 0, &n, &end));
    ASSERT_UINT_EQ(n.len, 255);
    ASSERT_UINT_EQ(end, 255);
    /* Too long only through pointers: a 200-byte name, then 60 bytes of labels
     * pointing to it. */
    o = 0;
    for (int i = 0; i < 3; i++) {
        m[o++] = 63;
        memset(m + o, 'b', 63);
        o += 63;
    }
    m[o++] = 7;
    memcpy(m + o, "cluster", 7);
    o += 7;
    m[o++] = 0; /* 200 bytes so far */
    size_t second = o;
    m[o++] = 59;
    memset(m + o, 'c', 59);
    o += 59;
    m[o++] = 0xc0;
    m[o++] = 12;
    ASSERT_ERR(read_at(m, o, second, &n, &end), CM_ETOOBIG);
}

/* ======================================================================= round trips */

static uint8_t buf[65535];

TEST(dns_wire_round_trip)
{
    struct dns_writer w;
    struct dns_header h = {.id = 0x1234, .flags = DNS_FLAG_QR | DNS_FLAG_AA};
    dns_writer_init(&w, buf, sizeof(buf), &h);
    struct dns_question q = {.qtype = DNS_TYPE_ANY, .qclass = DNS_CLASS_IN};
    ASSERT_OK(dns_name_from_str("Api.Cluster", &q.name));
    ASSERT_OK(dns_writer_question(&w, &q));

    struct dns_rr rrs[7];
    memset(rrs, 0, sizeof(rrs));
    for (int i = 0; i < 7; i++) {
        rrs[i].owner = q.name;
        rrs[i].rclass = DNS_CLASS_IN;
        rrs[i].ttl = (uint32_t)(100 + i);
    }
    rrs[0].type = DNS_TYPE_A;
    memcpy(rrs[0].data.a, "\x0a\x00\x00\x01", 4);
    rrs[1].type = DNS_TYPE_AAAA;
    memcpy(rrs[1].data.aaaa, "\xfd\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x03", 16);
    rrs[2].type = DNS_TYPE_SRV;
    rrs[2].data.srv.priority = 1;
    rrs[2].data.srv.weight = 2;
    rrs[2].data.srv.port = 3;
    ASSERT_OK(dns_name_from_str("t1.node-a.node.Cluster", &rrs[2].data.srv.target));
    rrs[3].type = DNS_TYPE_NS;
    ASSERT_OK(dns_name_from_str("ns1.Cluster", &rrs[3].data.ns));
    rrs[4].type = DNS_TYPE_SOA;
    ASSERT_OK(dns_name_from_str("ns1.Cluster", &rrs[4].data.soa.mname));
    ASSERT_OK(dns_name_from_str("hostmaster.Cluster", &rrs[4].data.soa.rname));
    rrs[4].data.soa.serial = 1;
    rrs[4].data.soa.refresh = 2;
    rrs[4].data.soa.retry = 3;
    rrs[4].data.soa.expire = 4;
    rrs[4].data.soa.minimum = 5;
    rrs[5].type = DNS_TYPE_TXT;
    rrs[5].rdata = (const uint8_t *)"\5hello";
    rrs[5].rdlength = 6;
    ASSERT_OK(dns_name_from_str("t1.node-a.node.Cluster", &rrs[6].owner));
    rrs[6].type = DNS_TYPE_A;
    memcpy(rrs[6].data.a, "\x0a\x00\x00\x02", 4);

    enum dns_section secs[7] = {DNS_SECTION_ANSWER,    DNS_SECTION_ANSWER,
                                DNS_SECTION_ANSWER,    DNS_SECTION_AUTHORITY,
                                DNS_SECTION_AUTHORITY, DNS_SECTION_ADDITIONAL,
                                DNS_SECTION_ADDITIONAL};
    for (int i = 0; i < 7; i++) {
        ASSERT_OK(dns_writer_rr(&w, secs[i], &rrs[i]));
    }
    struct dns_edns e = {.udp_size = 1232, .flags = DNS_EDNS_DO};
    ASSERT_OK(dns_writer_opt(&w, &e));
    /* Sections never go backwards. */
    ASSERT_ERR(dns_writer_rr(&w, DNS_SECTION_ANSWER, &rrs[0]), CM_EINVAL);
    size_t len = dns_writer_finish(&w);
    ASSERT_OK(dns_message_check(buf, len));

    struct dns_reader r;
    ASSERT_OK(dns_reader_init(&r, buf, len));
    ASSERT_UINT_EQ(r.header.id, 0x1234);
    ASSERT_UINT_EQ(r.header.flags, DNS_FLAG_QR | DNS_FLAG_AA);
    ASSERT_UINT_EQ(r.header.qdcount, 1);
    ASSERT_UINT_EQ(r.header.ancount, 3);
    ASSERT_UINT_EQ(r.header.nscount, 2);
    ASSERT_UINT_EQ(r.header.arcount, 3);
    struct dns_question q2;
    ASSERT_OK(dns_reader_question(&r, &q2));
    ASSERT_UINT_EQ(q2.name.len, q.name.len);
    ASSERT_MEM_EQ(q2.name.data, q.name.data, q.name.len);
    ASSERT_ERR(dns_reader_question(&r, &q2), CM_ENOENT);
    for (int i = 0; i < 7; i++) {
        struct dns_rr rr;
        enum dns_section s;
        ASSERT_OK(dns_reader_rr(&r, &rr, &s));
        ASSERT_INT_EQ(s, secs[i]);
        ASSERT_UINT_EQ(rr.type, rrs[i].type);
        ASSERT_UINT_EQ(rr.ttl, rrs[i].ttl);
        ASSERT_TRUE(dns_name_equal(&rr.owner, &rrs[i].owner));
        ASSERT_MEM_EQ(rr.owner.data, rrs[i].owner.data, rr.owner.len);
        switch (rr.type) {
        case DNS_TYPE_A:
            ASSERT_MEM_EQ(rr.data.a, rrs[i].data.a, 4);
            break;
        case DNS_TYPE_AAAA:
            ASSERT_MEM_EQ(rr.data.aaaa, rrs[i].data.aaaa, 16);
            break;
        case DNS_TYPE_SRV:
            ASSERT_UINT_EQ(rr.data.srv.port, 3);
            ASSERT_UINT_EQ(rr.data.srv.weight, 2);
            ASSERT_TRUE(dns_name_equal(&rr.data.srv.target, &rrs[i].data.srv.target));
            /* RFC 2782: the target is written in full. */
            ASSERT_UINT_EQ(rr.rdlength, 6 + rrs[i].data.srv.target.len);
            break;
        case DNS_TYPE_NS:
            ASSERT_TRUE(dns_name_equal(&rr.data.ns, &rrs[i].data.ns));
            break;
        case DNS_TYPE_SOA:
            ASSERT_TRUE(dns_name_equal(&rr.data.soa.mname, &rrs[i].data.soa.mname));
            ASSERT_TRUE(dns_name_equal(&rr.data.soa.rname, &rrs[i].data.soa.rname));
            ASSERT_UINT_EQ(rr.data.soa.serial, 1);
            ASSERT_UINT_EQ(rr.data.soa.minimum, 5);
            break;
        case DNS_TYPE_TXT:
            ASSERT_UINT_EQ(rr.rdlength, 6);
            ASSERT_MEM_EQ(rr.rdata, "\5hello", 6);
            break;
        }
    }
    struct dns_rr opt;
    ASSERT_OK(dns_reader_rr(&r, &opt, NULL));
    ASSERT_UINT_EQ(opt.type, DNS_TYPE_OPT);
    ASSERT_UINT_EQ(opt.data.opt.udp_size, 1232);
    ASSERT_UINT_EQ(opt.data.opt.flags, DNS_EDNS_DO);
    ASSERT_ERR(dns_reader_rr(&r, &opt, NULL), CM_ENOENT);
    ASSERT_OK(dns_reader_finish(&r));

    /* Compression made it smaller than the names written in full. */
    size_t plain = 12 + (q.name.len + 4) + 7 * 10 + 4 + 16 + 6 + 23 + 12 + 12 + 19 + 20 +
                   6 + 4 + 11 + q.name.len * 6 + 23;
    printf("# %zu bytes compressed, %zu plain\n", len, plain);
    ASSERT_INT_OP(len + 40, <, plain);
}

TEST(dns_writer_limit_and_rollback)
{
    struct dns_writer w;
    struct dns_header h = {.id = 1};
    dns_writer_init(&w, buf, sizeof(buf), &h);
    dns_writer_set_limit(&w, 60);
    struct dns_question q = {.qtype = DNS_TYPE_A, .qclass = DNS_CLASS_IN};
    ASSERT_OK(dns_name_from_str("a.cluster", &q.name));
    ASSERT_OK(dns_writer_question(&w, &q)); /* 12 + 11 + 4 = 27 */
    struct dns_rr rr = {.owner = q.name, .type = DNS_TYPE_A, .rclass = 1, .ttl = 5};
    ASSERT_OK(dns_writer_rr(&w, DNS_SECTION_ANSWER, &rr)); /* +2+10+4 = 43 */
    ASSERT_OK(dns_writer_rr(&w, DNS_SECTION_ANSWER, &rr)); /* 59 */
    ASSERT_ERR(dns_writer_rr(&w, DNS_SECTION_ANSWER, &rr), CM_EMSGSIZE);
    ASSERT_UINT_EQ(dns_writer_finish(&w), 59);
    struct dns_writer_mark m;
    dns_writer_set_limit(&w, 1000);
    dns_writer_mark(&w, &m);
    ASSERT_OK(dns_writer_rr(&w, DNS_SECTION_ADDITIONAL, &rr));
    dns_writer_rollback(&w, &m);
    ASSERT_OK(dns_writer_rr(&w, DNS_SECTION_ANSWER, &rr)); /* back in ANSWER */
    size_t len = dns_writer_finish(&w);
    ASSERT_UINT_EQ(len, 75);
    ASSERT_OK(dns_message_check(buf, len));
    struct dns_reader r;
    ASSERT_OK(dns_reader_init(&r, buf, len));
    ASSERT_UINT_EQ(r.header.ancount, 3);
    ASSERT_UINT_EQ(r.header.arcount, 0);
    /* A writer over a buffer smaller than a header writes nothing. */
    uint8_t tiny[8];
    dns_writer_init(&w, tiny, sizeof(tiny), &h);
    ASSERT_ERR(dns_writer_question(&w, &q), CM_EMSGSIZE);
    ASSERT_UINT_EQ(dns_writer_finish(&w), 0);
}

/* ======================================================================= queries */

static size_t query(uint8_t *out, const char *name, uint16_t qtype, int edns)
{
    struct dns_writer w;
    struct dns_header h = {.id = 77, .flags = DNS_FLAG_RD};
    dns_writer_init(&w, out, 4096, &h);
    struct dns_question q = {.qtype = qtype, .qclass = DNS_CLASS_IN};
    if (dns_name_from_str(name, &q.name) != 0 || dns_writer_question(&w, &q) != 0) {
        abort();
    }
    if (edns >= 0) {
        struct dns_edns e = {.udp_size = (uint16_t)edns, .flags = DNS_EDNS_DO};
        dns_writer_opt(&w, &e);
    }
    return dns_writer_finish(&w);
}

TEST(dns_query_parse_good)
{
    struct dns_query q;
    size_t n = query(buf, "Web.Cluster", DNS_TYPE_SRV, -1);
    ASSERT_OK(dns_query_parse(buf, n, &q));
    ASSERT_UINT_EQ(q.header.id, 77);
    ASSERT_TRUE(q.has_question);
    ASSERT_FALSE(q.has_edns);
    ASSERT_UINT_EQ(q.question.qtype, DNS_TYPE_SRV);
    ASSERT_MEM_EQ(q.question.name.data, "\3Web\7Cluster", 13);
    n = query(buf, "web.cluster", DNS_TYPE_A, 4096);
    ASSERT_OK(dns_query_parse(buf, n, &q));
    ASSERT_TRUE(q.has_edns);
    ASSERT_UINT_EQ(q.edns.udp_size, 4096);
    ASSERT_UINT_EQ(q.edns.flags, DNS_EDNS_DO);
    ASSERT_UINT_EQ(q.edns.version, 0);
    ASSERT_UINT_EQ(q.rcode, DNS_RCODE_NOERROR);
}

TEST(dns_query_parse_edns_options)
{
    struct dns_query q;
    size_t n = query(buf, "web.cluster", DNS_TYPE_A, 1232);
    /* Add a COOKIE option (code 10, 8 bytes) to the OPT's rdata. */
    static const uint8_t opt[] = {0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8};
    buf[n - 1] = sizeof(opt);
    memcpy(buf + n, opt, sizeof(opt));
    ASSERT_OK(dns_query_parse(buf, n + sizeof(opt), &q));
    ASSERT_TRUE(q.has_edns);
    /* An option longer than the rdata. */
    buf[n + 3] = 9;
    ASSERT_ERR(dns_query_parse(buf, n + sizeof(opt), &q), CM_EPROTO);
    ASSERT_UINT_EQ(q.rcode, DNS_RCODE_FORMERR);
}

TEST(dns_query_parse_errors)
{
    struct dns_query q;
    ASSERT_ERR(dns_query_parse(buf, 11, &q), CM_ETRUNC);
    size_t n = query(buf, "web.cluster", DNS_TYPE_A, -1);
    buf[2] |= 0x80; /* QR */
    ASSERT_ERR(dns_query_parse(buf, n, &q), CM_EPROTO);
    n = query(buf, "web.cluster", DNS_TYPE_A, -1);
    buf[2] = (uint8_t)(buf[2] | (DNS_OPCODE_NOTIFY << 3));
    ASSERT_ERR(dns_query_parse(buf, n, &q), CM_EPROTO);
    ASSERT_UINT_EQ(q.rcode, DNS_RCODE_NOTIMP);
    n = query(buf, "web.cluster", DNS_TYPE_A, -1);
    buf[7] = 1; /* ANCOUNT 1 */
    ASSERT_ERR(dns_query_parse(buf, n, &q), CM_EPROTO);
    ASSERT_UINT_EQ(q.rcode, DNS_RCODE_FORMERR);
    ASSERT_TRUE(q.has_question);
    n = query(buf, "web.cluster", DNS_TYPE_OPT, -1);
    ASSERT_ERR(dns_query_parse(buf, n, &q), CM_EPROTO);
    ASSERT_UINT_EQ(q.rcode, DNS_RCODE_FORMERR);
    /* An OPT whose owner is not the root. */
    struct dns_writer w;
    struct dns_header h = {.id = 1};
    dns_writer_init(&w, buf, 512, &h);
    struct dns_question qs = {.qtype = DNS_TYPE_A, .qclass = DNS_CLASS_IN};
    ASSERT_OK(dns_name_from_str("web.cluster", &qs.name));
    ASSERT_OK(dns_writer_question(&w, &qs));
    struct dns_rr opt = {.type = DNS_TYPE_OPT};
    ASSERT_OK(dns_name_from_str("x", &opt.owner));
    opt.data.opt.udp_size = 1232;
    ASSERT_OK(dns_writer_rr(&w, DNS_SECTION_ADDITIONAL, &opt));
    n = dns_writer_finish(&w);
    ASSERT_ERR(dns_query_parse(buf, n, &q), CM_EPROTO);
    ASSERT_UINT_EQ(q.rcode, DNS_RCODE_FORMERR);
    ASSERT_FALSE(q.has_edns);
    /* BADVERS. */
    n = query(buf, "web.cluster", DNS_TYPE_A, 1232);
    buf[n - 5] = 2; /* the OPT's version: before flags and rdlength */
    ASSERT_ERR(dns_query_parse(buf, n, &q), CM_EPROTO);
    ASSERT_UINT_EQ(q.rcode, DNS_RCODE_BADVERS);
    ASSERT_TRUE(q.has_edns);
    ASSERT_UINT_EQ(q.edns.version, 2);
}

TEST(dns_reader_rdata_must_fit)
{
    /* An A record with rdlength 5. */
    static const uint8_t m[] = {0, 1, 0x80, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
                                1, 0, 1,    0, 0, 0, 5, 0, 5, 1, 2, 3, 4, 5};
    ASSERT_ERR(dns_message_check(m, sizeof(m)), CM_EMALFORMED);
    /* An SRV whose target runs past the rdata. */
    static const uint8_t s[] = {0, 1, 0x80, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 33,  0,
                                1, 0, 0,    0, 5, 0, 7, 0, 0, 0, 0, 0, 0, 1, 'a', 0};
    ASSERT_ERR(dns_message_check(s, sizeof(s)), CM_EMALFORMED);
    /* Counts promising more records than there are. */
    static const uint8_t c[] = {0, 1, 0x80, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
                                1, 0, 1,    0, 0, 0, 5, 0, 4, 1, 2, 3, 4};
    ASSERT_ERR(dns_message_check(c, sizeof(c)), CM_ETRUNC);
    /* ... and the good one. */
    uint8_t ok[sizeof(c)];
    memcpy(ok, c, sizeof(c));
    ok[7] = 1;
    ASSERT_OK(dns_message_check(ok, sizeof(ok)));
}

TEST(dns_addr_parse_forms)
{
    struct dns_addr a;
    ASSERT_OK(dns_addr_parse("10.1.2.3", &a));
    ASSERT_UINT_EQ(a.family, DNS_AF_INET4);
    ASSERT_MEM_EQ(a.bytes, "\x0a\x01\x02\x03", 4);
    ASSERT_OK(dns_addr_parse("fd00::1", &a));
    ASSERT_UINT_EQ(a.family, DNS_AF_INET6);
    ASSERT_ERR(dns_addr_parse("10.1.2", &a), CM_EINVAL);
    ASSERT_ERR(dns_addr_parse("node-a", &a), CM_EINVAL);
}
