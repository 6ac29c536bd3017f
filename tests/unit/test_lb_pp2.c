/* lb/: PROXY protocol v2 encode and parse (doc/proxy-protocol.txt §2.2). */
#include <arpa/inet.h>

#include "base/base.h"
#include "lb/lb.h"
#include "test.h"

static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static struct sockaddr_in sin4(const char *a, uint16_t port)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(port)};
    ASSERT_INT_EQ(inet_pton(AF_INET, a, &s.sin_addr), 1);
    return s;
}

TEST(encode_ipv4_bytes)
{
    struct sockaddr_in src = sin4("192.0.2.1", 51000), dst = sin4("198.18.0.1", 80);
    uint8_t buf[LB_PP2_ENCODE_MAX];
    size_t len;
    ASSERT_OK(lb_pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, buf,
                            sizeof(buf), &len));
    static const uint8_t want[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a,
        0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, /* version 2, PROXY */
        0x11,                               /* AF_INET, STREAM */
        0x00, 0x0c,                         /* 12 bytes of addresses */
        192,  0,    2,    1,                /* src */
        198,  18,   0,    1,                /* dst */
        0xc7, 0x38,                         /* 51000 */
        0x00, 0x50,                         /* 80 */
    };
    ASSERT_UINT_EQ(len, sizeof(want));
    ASSERT_MEM_EQ(buf, want, sizeof(want));
    ASSERT_ERR(
        lb_pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, buf, 27, &len),
        CM_EMSGSIZE);
}

TEST(roundtrip_ipv4_ipv6)
{
    struct sockaddr_in src = sin4("10.1.2.3", 1), dst = sin4("198.19.255.254", 65535);
    uint8_t buf[LB_PP2_ENCODE_MAX + 8];
    size_t len;
    struct lb_pp2 p;
    ASSERT_OK(lb_pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, buf,
                            sizeof(buf), &len));
    memcpy(buf + len, "GET /", 5); /* payload after the header is not ours */
    ASSERT_OK(lb_pp2_parse(buf, len + 5, &p));
    ASSERT_INT_EQ(p.cmd, LB_PP2_PROXY);
    ASSERT_INT_EQ(p.family, AF_INET);
    ASSERT_INT_EQ(p.socktype, SOCK_STREAM);
    ASSERT_UINT_EQ(p.len, len);
    ASSERT_UINT_EQ(p.tlv_len, 0);
    ASSERT_MEM_EQ(&((struct sockaddr_in *)&p.src)->sin_addr, &src.sin_addr, 4);
    ASSERT_UINT_EQ(((struct sockaddr_in *)&p.src)->sin_port, src.sin_port);
    ASSERT_MEM_EQ(&((struct sockaddr_in *)&p.dst)->sin_addr, &dst.sin_addr, 4);
    ASSERT_UINT_EQ(((struct sockaddr_in *)&p.dst)->sin_port, dst.sin_port);

    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(5)};
    struct sockaddr_in6 d6 = {.sin6_family = AF_INET6, .sin6_port = htons(6)};
    inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr);
    inet_pton(AF_INET6, "fd01:c::2", &d6.sin6_addr);
    ASSERT_OK(lb_pp2_encode((struct sockaddr *)&s6, (struct sockaddr *)&d6, buf,
                            sizeof(buf), &len));
    ASSERT_UINT_EQ(len, 52);
    ASSERT_OK(lb_pp2_parse(buf, len, &p));
    ASSERT_INT_EQ(p.family, AF_INET6);
    ASSERT_MEM_EQ(&((struct sockaddr_in6 *)&p.src)->sin6_addr, &s6.sin6_addr, 16);
    ASSERT_MEM_EQ(&((struct sockaddr_in6 *)&p.dst)->sin6_addr, &d6.sin6_addr, 16);
    ASSERT_UINT_EQ(((struct sockaddr_in6 *)&p.dst)->sin6_port, htons(6));

    /* Mixed families are refused. */
    ASSERT_ERR(lb_pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&d6, buf,
                             sizeof(buf), &len),
               CM_EINVAL);
}

TEST(parse_truncated_prefixes)
{
    struct sockaddr_in src = sin4("10.1.2.3", 1), dst = sin4("10.3.2.1", 2);
    uint8_t buf[LB_PP2_ENCODE_MAX];
    size_t len;
    struct lb_pp2 p;
    ASSERT_OK(lb_pp2_encode((struct sockaddr *)&src, (struct sockaddr *)&dst, buf,
                            sizeof(buf), &len));
    for (size_t i = 0; i < len; i++) {
        ASSERT_ERR(lb_pp2_parse(buf, i, &p), CM_ETRUNC);
    }
}

TEST(parse_malformed)
{
    uint8_t b[64];
    struct lb_pp2 p;
    memcpy(b, sig, 12);
    b[12] = 0x21;
    b[13] = 0x11;
    b[14] = 0;
    b[15] = 12;
    memset(b + 16, 0, 12);
    ASSERT_OK(lb_pp2_parse(b, 28, &p));

    ASSERT_ERR(lb_pp2_parse("PROXY TCP4 1.2.3.4", 18, &p), CM_EMALFORMED); /* v1 */
    b[12] = 0x11; /* version 1 in the binary form */
    ASSERT_ERR(lb_pp2_parse(b, 28, &p), CM_EMALFORMED);
    b[12] = 0x22; /* command 2 */
    ASSERT_ERR(lb_pp2_parse(b, 28, &p), CM_EMALFORMED);
    b[12] = 0x21;
    b[13] = 0x41; /* family 4 */
    ASSERT_ERR(lb_pp2_parse(b, 28, &p), CM_EMALFORMED);
    b[13] = 0x13; /* transport 3 */
    ASSERT_ERR(lb_pp2_parse(b, 28, &p), CM_EMALFORMED);
    b[13] = 0x21; /* AF_INET6 with a 12-byte block */
    ASSERT_ERR(lb_pp2_parse(b, 28, &p), CM_EMALFORMED);
    b[13] = 0x11;
    b[15] = 11; /* address block too short for AF_INET */
    ASSERT_ERR(lb_pp2_parse(b, 28, &p), CM_EMALFORMED);

    /* TLVs after the addresses must tile the rest exactly. */
    b[15] = 12 + 3 + 2;
    b[28] = 0x04; /* PP2_TYPE_NOOP */
    b[29] = 0;
    b[30] = 2;
    b[31] = 0xaa;
    b[32] = 0xbb;
    ASSERT_OK(lb_pp2_parse(b, 33, &p));
    ASSERT_UINT_EQ(p.tlv_off, 28);
    ASSERT_UINT_EQ(p.tlv_len, 5);
    ASSERT_UINT_EQ(p.len, 33);
    b[30] = 3; /* value runs past the header */
    ASSERT_ERR(lb_pp2_parse(b, 33, &p), CM_EMALFORMED);
    b[15] = 12 + 2; /* half a TLV header */
    ASSERT_ERR(lb_pp2_parse(b, 30, &p), CM_EMALFORMED);
}

TEST(parse_local)
{
    uint8_t b[16 + 4];
    struct lb_pp2 p;
    memcpy(b, sig, 12);
    b[12] = 0x20; /* LOCAL */
    b[13] = 0x00;
    b[14] = 0;
    b[15] = 4; /* a block that is ignored */
    memset(b + 16, 0xee, 4);
    ASSERT_OK(lb_pp2_parse(b, sizeof(b), &p));
    ASSERT_INT_EQ(p.cmd, LB_PP2_LOCAL);
    ASSERT_INT_EQ(p.family, AF_UNSPEC);
    ASSERT_UINT_EQ(p.len, 20);
    b[13] = 0x11; /* LOCAL with a short AF_INET block is still fine */
    ASSERT_OK(lb_pp2_parse(b, sizeof(b), &p));
    ASSERT_INT_EQ(p.family, AF_UNSPEC);
}
