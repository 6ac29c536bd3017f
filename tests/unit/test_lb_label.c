/* lb/: Minuteman labels, DNS names and the named-VIP allocator (pure). */
#include <arpa/inet.h>
#include <stdlib.h>

#include "base/base.h"
#include "lb/lb.h"
#include "test.h"

static struct in_addr ip(const char *s)
{
    struct in_addr a;
    ASSERT_INT_EQ(inet_pton(AF_INET, s, &a), 1);
    return a;
}

TEST(port_label_forms)
{
    static const struct {
        const char *key, *value;
        enum lb_decl_kind kind;
        const char *name, *addr;
        uint16_t port;
    } cases[] = {
        {"VIP_0", "/web:80", LB_DECL_NAMED, "web", NULL, 80},
        {"VIP_1", "web:8080", LB_DECL_NAMED, "web", NULL, 8080},
        {"vip_0", "/mygroup/myapp:80", LB_DECL_NAMED, "mygroup/myapp", NULL, 80},
        {"VIP", "/api.hello:443", LB_DECL_NAMED, "api.hello", NULL, 443},
        {"VIPanything", "minio:9000", LB_DECL_NAMED, "minio", NULL, 9000},
        {"VIP_0", "198.18.0.10:80", LB_DECL_ADDR, "", "198.18.0.10", 80},
        {"vip_7", "10.0.0.1:65535", LB_DECL_ADDR, "", "10.0.0.1", 65535},
        {"VIP_0", "/10.0.0.1:1", LB_DECL_NAMED, "10.0.0.1", NULL, 1},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        struct lb_decl d;
        struct cm_errbuf eb = {0};
        ASSERT_OK(
            lb_port_label_parse(cases[i].key, cases[i].value, LB_PROTO_UDP, &d, &eb));
        ASSERT_INT_EQ(d.kind, cases[i].kind);
        ASSERT_INT_EQ(d.proto, LB_PROTO_UDP);
        ASSERT_STR_EQ(d.name, cases[i].name);
        ASSERT_UINT_EQ(d.port, cases[i].port);
        ASSERT_INT_EQ(d.port_index, -1);
        if (cases[i].addr != NULL) {
            ASSERT_UINT_EQ(d.addr.s_addr, ip(cases[i].addr).s_addr);
        } else {
            ASSERT_UINT_EQ(d.addr.s_addr, 0);
        }
    }
}

TEST(port_label_not_vip)
{
    struct lb_decl d;
    struct cm_errbuf eb = {0};
    ASSERT_ERR(lb_port_label_parse("HAPROXY_0_VHOST", "x:80", LB_PROTO_TCP, &d, &eb),
               CM_ENOTFOUND);
    ASSERT_ERR(lb_port_label_parse("Vip_0", "x:80", LB_PROTO_TCP, &d, &eb), CM_ENOTFOUND);
    ASSERT_ERR(lb_port_label_parse(NULL, "x:80", LB_PROTO_TCP, &d, &eb), CM_ENOTFOUND);
    ASSERT_INT_EQ(eb.code, 0);
}

TEST(port_label_errors)
{
    static const struct {
        const char *value;
        int code;
        const char *msg;
    } cases[] = {
        {"web", CM_EINVAL, "label VIP_3: `web` has no `:<port>`"},
        {"web:", CM_EINVAL, "label VIP_3: port `` is not an integer in 1..65535"},
        {"web:0", CM_EINVAL, "label VIP_3: port `0` is not an integer in 1..65535"},
        {"web:65536", CM_EINVAL,
         "label VIP_3: port `65536` is not an integer in 1..65535"},
        {"web:-1", CM_EINVAL, "label VIP_3: port `-1` is not an integer in 1..65535"},
        {"web:+80", CM_EINVAL, "label VIP_3: port `+80` is not an integer in 1..65535"},
        {"web:8o", CM_EINVAL, "label VIP_3: port `8o` is not an integer in 1..65535"},
        {":80", CM_EINVAL, "label VIP_3: `:80` has no name or address before the port"},
        {"/:80", CM_EINVAL, "label VIP_3: empty VIP name in `/:80`"},
        {"my app:80", CM_EINVAL,
         "label VIP_3: VIP name `my app` has a space or a non-printable character"},
        {"::1:80", CM_EUNSUPPORTED, "label VIP_3: IPv6 VIP `::1` is not supported yet"},
        {"[fd01:c::1]:80", CM_EUNSUPPORTED,
         "label VIP_3: IPv6 VIP `[fd01:c::1]` is not supported yet"},
        {"tcp://1.2.3.4:80", CM_EINVAL,
         "label VIP_3: `tcp://1.2.3.4:80` has a scheme: `tcp://a.b.c.d:port` belongs in "
         "the legacy app label vip_PORT<n>"},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        struct lb_decl d = {.port = 7};
        struct cm_errbuf eb = {0};
        ASSERT_ERR(lb_port_label_parse("VIP_3", cases[i].value, LB_PROTO_TCP, &d, &eb),
                   cases[i].code);
        ASSERT_INT_EQ(eb.code, cases[i].code);
        ASSERT_STR_EQ(eb.msg, cases[i].msg);
        ASSERT_UINT_EQ(d.port, 7); /* untouched on failure */
    }
    char longname[300];
    memset(longname, 'a', 260);
    memcpy(longname + 260, ":80", 4);
    struct lb_decl d;
    struct cm_errbuf eb = {0};
    ASSERT_ERR(lb_port_label_parse("VIP_0", longname, LB_PROTO_TCP, &d, &eb), CM_EINVAL);
    ASSERT_STR_EQ(eb.msg, "label VIP_0: VIP name is longer than 255 bytes");
    ASSERT_ERR(lb_port_label_parse("VIP_0", NULL, LB_PROTO_TCP, &d, &eb), CM_EINVAL);
    ASSERT_STR_EQ(eb.msg, "label VIP_0: no value");
}

TEST(app_label_legacy)
{
    struct lb_decl d;
    struct cm_errbuf eb = {0};
    ASSERT_OK(lb_app_label_parse("vip_PORT0", "tcp://10.10.10.10:5050", &d, &eb));
    ASSERT_INT_EQ(d.kind, LB_DECL_ADDR);
    ASSERT_INT_EQ(d.proto, LB_PROTO_TCP);
    ASSERT_UINT_EQ(d.addr.s_addr, ip("10.10.10.10").s_addr);
    ASSERT_UINT_EQ(d.port, 5050);
    ASSERT_INT_EQ(d.port_index, 0);
    ASSERT_OK(lb_app_label_parse("VIP_PORT12", "UDP://1.2.3.4:53", &d, &eb));
    ASSERT_INT_EQ(d.proto, LB_PROTO_UDP);
    ASSERT_INT_EQ(d.port_index, 12);
    ASSERT_OK(lb_app_label_parse("Vip_Port3", "tcp://1.2.3.4:53", &d, &eb));
    ASSERT_INT_EQ(d.port_index, 3);

    ASSERT_ERR(lb_app_label_parse("VIP_0", "tcp://1.2.3.4:80", &d, &eb), CM_ENOTFOUND);
    ASSERT_ERR(lb_app_label_parse("VIP_PORTAL", "tcp://1.2.3.4:80", &d, &eb),
               CM_ENOTFOUND);
    ASSERT_ERR(lb_app_label_parse("vip_PORT", "tcp://1.2.3.4:80", &d, &eb), CM_ENOTFOUND);
    ASSERT_INT_EQ(eb.code, 0);

    ASSERT_ERR(lb_app_label_parse("vip_PORT0", "1.2.3.4:80", &d, &eb), CM_EINVAL);
    ASSERT_STR_EQ(eb.msg,
                  "label vip_PORT0: `1.2.3.4:80` must be tcp://<ip>:<port> or "
                  "udp://<ip>:<port>");
    ASSERT_ERR(lb_app_label_parse("vip_PORT0", "tcp://web:80", &d, &eb), CM_EINVAL);
    ASSERT_STR_EQ(eb.msg, "label vip_PORT0: `web` is not an IPv4 address");
    ASSERT_ERR(lb_app_label_parse("vip_PORT0", "sctp://1.2.3.4:80", &d, &eb), CM_EINVAL);
    ASSERT_ERR(lb_app_label_parse("vip_PORT1", "tcp://1.2.3.4:0", &d, &eb), CM_EINVAL);
    ASSERT_STR_EQ(eb.msg, "label vip_PORT1: port `0` is not an integer in 1..65535");
    ASSERT_ERR(lb_app_label_parse("vip_PORT1", "tcp://1.2.3:80", &d, &eb), CM_EINVAL);
    ASSERT_ERR(lb_app_label_parse("vip_PORT1", "tcp://[::1]:80", &d, &eb),
               CM_EUNSUPPORTED);
}

TEST(dns_name)
{
    static const struct {
        const char *name, *want;
    } cases[] = {
        {"/myapp", "myapp.marathon"},
        {"myapp", "myapp.marathon"},
        {"/mygroup/myapp", "mygroupmyapp.marathon"},
        {"minio", "minio.marathon"},
        {"/api.hello", "api.hello.marathon"},
        {"My_App--x", "my-app--x.marathon"},
        {"-lead", "lead.marathon"},
        {"a..b.", "a.b.marathon"},
        {"a.!!.b", "a.b.marathon"},
    };
    char out[300];
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        ASSERT_OK(lb_vip_dns_name(cases[i].name, "marathon", out, sizeof(out)));
        ASSERT_STR_EQ(out, cases[i].want);
    }
    char longpart[100];
    memset(longpart, 'x', 80);
    longpart[80] = '\0';
    ASSERT_OK(lb_vip_dns_name(longpart, "m", out, sizeof(out)));
    ASSERT_UINT_EQ(strlen(out), 63 + 2);
    ASSERT_ERR(lb_vip_dns_name("/!!", "marathon", out, sizeof(out)), CM_EINVAL);
    ASSERT_ERR(lb_vip_dns_name("web", "", out, sizeof(out)), CM_EINVAL);
    ASSERT_ERR(lb_vip_dns_name("web", "marathon", out, 8), CM_EMSGSIZE);
    ASSERT_STR_EQ(out, "");
}

TEST(cidr)
{
    struct lb_cidr c;
    ASSERT_OK(lb_cidr_parse(LB_VIP_CIDR_DEFAULT, &c));
    ASSERT_UINT_EQ(c.prefix, 15);
    ASSERT_TRUE(lb_cidr_contains(&c, ip("198.18.0.1")));
    ASSERT_TRUE(lb_cidr_contains(&c, ip("198.19.255.255")));
    ASSERT_FALSE(lb_cidr_contains(&c, ip("198.20.0.0")));
    ASSERT_ERR(lb_cidr_parse("198.18.0.1/15", &c), CM_EINVAL); /* host bits */
    ASSERT_ERR(lb_cidr_parse("198.18.0.0/33", &c), CM_EINVAL);
    ASSERT_ERR(lb_cidr_parse("198.18.0.0", &c), CM_EINVAL);
    ASSERT_ERR(lb_cidr_parse("x/8", &c), CM_EINVAL);
    ASSERT_OK(lb_cidr_parse("0.0.0.0/0", &c));
    ASSERT_TRUE(lb_cidr_contains(&c, ip("1.2.3.4")));
}

TEST(endpoint)
{
    struct lb_endpoint ep;
    char s[LB_ENDPOINT_STRLEN];
    ASSERT_OK(lb_endpoint_parse("255.255.255.255:65535", &ep));
    ASSERT_STR_EQ(lb_endpoint_str(ep, s), "255.255.255.255:65535");
    ASSERT_ERR(lb_endpoint_parse("1.2.3.4:0", &ep), CM_EINVAL);
    ASSERT_ERR(lb_endpoint_parse("1.2.3.4", &ep), CM_EINVAL);
    ASSERT_ERR(lb_endpoint_parse("web:80", &ep), CM_EINVAL);
}

TEST(alloc_deterministic)
{
    struct lb_cidr c;
    struct in_addr a, b;
    ASSERT_OK(lb_cidr_parse(LB_VIP_CIDR_DEFAULT, &c));
    ASSERT_OK(lb_vip_alloc(&c, NULL, 0, "/web", &a));
    ASSERT_OK(lb_vip_alloc(&c, NULL, 0, "web", &b));
    ASSERT_UINT_EQ(a.s_addr, b.s_addr); /* same name with or without '/' */
    ASSERT_TRUE(lb_cidr_contains(&c, a));
    /* Pinned: FNV-1a 64 of "web" mod 131070, + 1, from 198.18.0.0. A change here
     * would move every stored VIP of a rolling upgrade's mixed cluster. */
    char s[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, s, sizeof(s));
    uint64_t h = 14695981039346656037ull;
    for (const char *p = "web"; *p; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    }
    ASSERT_UINT_EQ(ntohl(a.s_addr), ntohl(ip("198.18.0.0").s_addr) + 1 + h % 131070);

    /* Already allocated: the stored address, whatever the hash says. */
    struct lb_alloc_entry taken[] = {{"/web", ip("198.18.7.7")},
                                     {NULL, ip("198.19.0.1")}};
    ASSERT_OK(lb_vip_alloc(&c, taken, 2, "web", &b));
    ASSERT_UINT_EQ(b.s_addr, ip("198.18.7.7").s_addr);

    /* A collision probes linearly to the next free address. */
    struct lb_alloc_entry coll[] = {{"other", a}};
    ASSERT_OK(lb_vip_alloc(&c, coll, 1, "web", &b));
    ASSERT_UINT_EQ(ntohl(b.s_addr), ntohl(a.s_addr) + 1);

    /* Independent of the order of the taken set. */
    struct lb_alloc_entry t1[3] = {{"x", a}, {"y", b}, {NULL, ip("198.18.0.9")}};
    struct lb_alloc_entry t2[3] = {t1[2], t1[1], t1[0]};
    struct in_addr r1, r2;
    ASSERT_OK(lb_vip_alloc(&c, t1, 3, "web", &r1));
    ASSERT_OK(lb_vip_alloc(&c, t2, 3, "web", &r2));
    ASSERT_UINT_EQ(r1.s_addr, r2.s_addr);

    ASSERT_ERR(lb_vip_alloc(&c, NULL, 0, "/", &a), CM_EINVAL);
    ASSERT_ERR(lb_vip_alloc(&c, NULL, 0, "", &a), CM_EINVAL);
}

TEST(alloc_many_distinct_and_exhaustion)
{
    struct lb_cidr c;
    ASSERT_OK(lb_cidr_parse("10.9.0.0/28", &c)); /* 14 usable */
    struct lb_alloc_entry taken[14];
    char names[14][8];
    for (int i = 0; i < 14; i++) {
        snprintf(names[i], sizeof(names[i]), "app%d", i);
        ASSERT_OK(lb_vip_alloc(&c, taken, (size_t)i, names[i], &taken[i].addr));
        taken[i].name = names[i];
        uint32_t h = ntohl(taken[i].addr.s_addr) & 0xff;
        ASSERT_TRUE(h >= 1 && h <= 14); /* neither .0 nor .15 */
        for (int j = 0; j < i; j++) {
            ASSERT_TRUE(taken[j].addr.s_addr != taken[i].addr.s_addr);
        }
    }
    struct in_addr a;
    ASSERT_ERR(lb_vip_alloc(&c, taken, 14, "one-more", &a), CM_ENOSPC);
    ASSERT_OK(lb_vip_alloc(&c, taken, 14, "app3", &a)); /* existing names still work */
    ASSERT_UINT_EQ(a.s_addr, taken[3].addr.s_addr);

    /* /32 and /31 use every address. */
    ASSERT_OK(lb_cidr_parse("10.1.1.1/32", &c));
    ASSERT_OK(lb_vip_alloc(&c, NULL, 0, "x", &a));
    ASSERT_UINT_EQ(a.s_addr, ip("10.1.1.1").s_addr);
    struct lb_alloc_entry one = {"x", a};
    ASSERT_ERR(lb_vip_alloc(&c, &one, 1, "y", &a), CM_ENOSPC);
}

static int alloc_walk_fn(void *arg)
{
    (void)arg;
    struct lb_cidr c;
    struct in_addr a;
    struct lb_alloc_entry t = {"z", {0}};
    lb_cidr_parse("10.0.0.0/8", &c);
    return lb_vip_alloc(&c, &t, 1, "web", &a);
}

TEST(alloc_oom)
{
    ASSERT_INT_OP(test_alloc_walk(alloc_walk_fn, NULL), >=, 1);
}
