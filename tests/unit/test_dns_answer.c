/* dns/: the answer engine over a test zone, table-driven (DESIGN.md §8). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/base.h"
#include "dns/dns.h"
#include "test.h"

/* ======================================================================= helpers */

static struct dns_addr ip(const char *s)
{
    struct dns_addr a;
    if (dns_addr_parse(s, &a) != 0) {
        abort();
    }
    return a;
}

/* A query for @name/@qtype; @edns < 0: without OPT. */
static size_t mkquery(uint8_t *buf, size_t cap, uint16_t id, const char *name,
                      uint16_t qtype, int edns, bool do_bit)
{
    struct dns_writer w;
    struct dns_header h = {.id = id, .flags = DNS_FLAG_RD};
    dns_writer_init(&w, buf, cap, &h);
    struct dns_question q = {.qtype = qtype, .qclass = DNS_CLASS_IN};
    if (dns_name_from_str(name, &q.name) != 0 || dns_writer_question(&w, &q) != 0) {
        abort();
    }
    if (edns >= 0) {
        struct dns_edns e = {.udp_size = (uint16_t)edns,
                             .flags = do_bit ? DNS_EDNS_DO : 0};
        if (dns_writer_opt(&w, &e) != 0) {
            abort();
        }
    }
    return dns_writer_finish(&w);
}

static const char *type_str(uint16_t t)
{
    static char buf[16];
    switch (t) {
    case DNS_TYPE_A:
        return "A";
    case DNS_TYPE_AAAA:
        return "AAAA";
    case DNS_TYPE_NS:
        return "NS";
    case DNS_TYPE_SOA:
        return "SOA";
    case DNS_TYPE_SRV:
        return "SRV";
    case DNS_TYPE_OPT:
        return "OPT";
    case DNS_TYPE_ANY:
        return "ANY";
    case DNS_TYPE_TXT:
        return "TXT";
    default:
        snprintf(buf, sizeof(buf), "TYPE%u", t);
        return buf;
    }
}

static const char *rcode_str(unsigned r)
{
    static const char *const names[] = {"NOERROR",  "FORMERR", "SERVFAIL",
                                        "NXDOMAIN", "NOTIMP",  "REFUSED"};
    if (r < CM_ARRAY_SIZE(names)) {
        return names[r];
    }
    return r == DNS_RCODE_BADVERS ? "BADVERS" : "RCODE?";
}

/* The response as text, one line per record, like dig's but shorter:
 *   NOERROR aa tc id=7 q=1 an=1 ns=0 ar=1
 *   Q api.backend.shop.cluster. A
 *   AN api.backend.shop.cluster. 5 A 10.0.0.1
 * The whole message must parse (dns_message_check). */
static char text[65536];
static const char *render(const uint8_t *msg, size_t len)
{
    struct dns_reader r;
    char *o = text;
    size_t room = sizeof(text);
#define OUT(...)                                 \
    do {                                         \
        int n_ = snprintf(o, room, __VA_ARGS__); \
        if (n_ < 0 || (size_t)n_ >= room) {      \
            return "render overflow";            \
        }                                        \
        o += n_;                                 \
        room -= (size_t)n_;                      \
    } while (0)
    if (dns_message_check(msg, len) != 0) {
        return "unparsable";
    }
    dns_reader_init(&r, msg, len);
    const struct dns_header *h = &r.header;
    unsigned rcode = DNS_RCODE_OF(h->flags);
    /* Peek at the OPT for the extended rcode. */
    struct dns_reader r2 = r;
    struct dns_rr rr;
    enum dns_section sec;
    while (dns_reader_rr(&r2, &rr, &sec) == 0) {
        if (rr.type == DNS_TYPE_OPT) {
            rcode |= (unsigned)rr.data.opt.ext_rcode << 4;
        }
    }
    OUT("%s%s%s%s id=%u q=%u an=%u ns=%u ar=%u\n", rcode_str(rcode),
        (h->flags & DNS_FLAG_QR) ? " qr" : "", (h->flags & DNS_FLAG_AA) ? " aa" : "",
        (h->flags & DNS_FLAG_TC) ? " tc" : "", h->id, h->qdcount, h->ancount, h->nscount,
        h->arcount);
    struct dns_question q;
    char name[1100], name2[1100];
    while (dns_reader_question(&r, &q) == 0) {
        dns_name_to_str(&q.name, name, sizeof(name));
        OUT("Q %s %s\n", name, type_str(q.qtype));
    }
    static const char *const secs[] = {"Q", "AN", "NS", "AR"};
    while (dns_reader_rr(&r, &rr, &sec) == 0) {
        dns_name_to_str(&rr.owner, name, sizeof(name));
        if (rr.type == DNS_TYPE_OPT) {
            OUT("AR OPT size=%u v=%u%s\n", rr.data.opt.udp_size, rr.data.opt.version,
                (rr.data.opt.flags & DNS_EDNS_DO) ? " do" : "");
            continue;
        }
        OUT("%s %s %u %s", secs[sec], name, rr.ttl, type_str(rr.type));
        char addr[64];
        switch (rr.type) {
        case DNS_TYPE_A:
            snprintf(addr, sizeof(addr), "%u.%u.%u.%u", rr.data.a[0], rr.data.a[1],
                     rr.data.a[2], rr.data.a[3]);
            OUT(" %s\n", addr);
            break;
        case DNS_TYPE_AAAA:
            OUT(" ");
            for (int i = 0; i < 16; i += 2) {
                OUT("%x%s", (rr.data.aaaa[i] << 8) | rr.data.aaaa[i + 1],
                    i < 14 ? ":" : "");
            }
            OUT("\n");
            break;
        case DNS_TYPE_NS:
            dns_name_to_str(&rr.data.ns, name, sizeof(name));
            OUT(" %s\n", name);
            break;
        case DNS_TYPE_SRV:
            dns_name_to_str(&rr.data.srv.target, name, sizeof(name));
            OUT(" %u %u %u %s\n", rr.data.srv.priority, rr.data.srv.weight,
                rr.data.srv.port, name);
            break;
        case DNS_TYPE_SOA:
            dns_name_to_str(&rr.data.soa.mname, name, sizeof(name));
            dns_name_to_str(&rr.data.soa.rname, name2, sizeof(name2));
            OUT(" %s %s %u %u %u %u %u\n", name, name2, rr.data.soa.serial,
                rr.data.soa.refresh, rr.data.soa.retry, rr.data.soa.expire,
                rr.data.soa.minimum);
            break;
        default:
            OUT(" len=%u\n", rr.rdlength);
        }
    }
#undef OUT
    return text;
}

/* ======================================================================= zone */

static const struct dns_port api_ports1[] = {
    {.port = 31000, .name = "http", .protocols = DNS_PROTO_TCP},
    {.port = 31001, .name = "dns", .protocols = DNS_PROTO_TCP | DNS_PROTO_UDP},
};
static const struct dns_port api_ports2[] = {
    {.port = 31500, .name = "http"},
    {.port = 31501, .name = "dns", .protocols = DNS_PROTO_TCP | DNS_PROTO_UDP},
};
static const struct dns_port web_ports[] = {{.port = 8080}};

static struct dns_task api_tasks[4];
static struct dns_task web_task;
static struct dns_task big_tasks[200];
static char big_ids[200][32];

static void fill_tasks(void)
{
    api_tasks[0] = (struct dns_task){
        .id = "shop_backend_api.11111111-aaaa",
        .node = "node-a",
        .host = ip("10.0.0.1"),
        .state = DNS_TASK_RUNNING,
        .health = DNS_HEALTH_HEALTHY,
        .ports = api_ports1,
        .nports = 2,
    };
    api_tasks[1] = (struct dns_task){
        .id = "shop_backend_api.22222222-bbbb",
        .node = "node-b",
        .host = ip("10.0.0.2"),
        .state = DNS_TASK_RUNNING,
        .health = DNS_HEALTH_NONE,
        .ports = api_ports2,
        .nports = 2,
    };
    /* Running but failing its checks, and one still starting: not in DNS. */
    api_tasks[2] = api_tasks[0];
    api_tasks[2].id = "shop_backend_api.33333333-cccc";
    api_tasks[2].node = "node-c";
    api_tasks[2].host = ip("10.0.0.3");
    api_tasks[2].health = DNS_HEALTH_UNHEALTHY;
    api_tasks[3] = api_tasks[2];
    api_tasks[3].id = "shop_backend_api.44444444-dddd";
    api_tasks[3].state = DNS_TASK_STARTING;
    api_tasks[3].health = DNS_HEALTH_UNKNOWN;
    web_task = (struct dns_task){
        .id = "web.55555555",
        .node = "node-c",
        .host = ip("fd00::3"),
        .state = DNS_TASK_RUNNING,
        .ports = web_ports,
        .nports = 1,
    };
    for (int i = 0; i < 200; i++) {
        snprintf(big_ids[i], sizeof(big_ids[i]), "big.%04d", i);
        char a[32];
        snprintf(a, sizeof(a), "10.1.%d.%d", i / 250, i % 250 + 1);
        big_tasks[i] = (struct dns_task){
            .id = big_ids[i],
            .node = "node-a",
            .host = ip(a),
            .state = DNS_TASK_RUNNING,
            .ports = web_ports,
            .nports = 1,
        };
    }
}

/* Builds the test zone; returns 0 or an error (for the OOM walk). */
static int build_zone(bool compat, struct dns_zone **ret)
{
    fill_tasks();
    struct dns_zone_config cfg = {
        .domain = compat ? "mesos" : "cluster",
        .serial = 42,
        .mesos_compat = compat,
    };
    struct dns_zone_builder *b;
    int rv = dns_zone_builder_new(&cfg, &b);
    if (rv != 0) {
        return rv;
    }
    const char *domain = compat ? "mesos" : "cluster";
    char ns[64];
    struct dns_addr a1 = ip("10.0.0.1"), a2 = ip("10.0.0.2"), a3 = ip("10.0.0.3");
    struct dns_addr a3v6 = ip("fd00::3");
    snprintf(ns, sizeof(ns), "node-a.node.%s", domain);
    if ((rv = dns_zone_add_ns(b, ns, &a1)) != 0) {
        goto fail;
    }
    snprintf(ns, sizeof(ns), "node-b.node.%s", domain);
    if ((rv = dns_zone_add_ns(b, ns, &a2)) != 0) {
        goto fail;
    }
    if ((rv = dns_zone_add_leader(b, &a1)) != 0 ||
        (rv = dns_zone_add_node(b, "node-a", &a1)) != 0 ||
        (rv = dns_zone_add_node(b, "node-b", &a2)) != 0 ||
        (rv = dns_zone_add_node(b, "node-c", &a3)) != 0 ||
        (rv = dns_zone_add_node(b, "node-c", &a3v6)) != 0) {
        goto fail;
    }
    struct dns_app api = {.path = "/shop/backend/api", .tasks = api_tasks, .ntasks = 4};
    struct dns_app web = {.path = "/web", .tasks = &web_task, .ntasks = 1};
    struct dns_app big = {.path = "/big", .tasks = big_tasks, .ntasks = 200};
    struct dns_addr vip = ip("198.18.0.10");
    if ((rv = dns_zone_add_app(b, &api)) != 0 || (rv = dns_zone_add_app(b, &web)) != 0 ||
        (rv = dns_zone_add_app(b, &big)) != 0 ||
        (rv = dns_zone_add_vip(b, "/shop/backend/api", &vip)) != 0) {
        goto fail;
    }
    return dns_zone_build(b, ret);
fail:
    dns_zone_builder_free(b);
    return rv;
}

static struct dns_zone *zone(void)
{
    static struct dns_zone *z;
    if (z == NULL && build_zone(false, &z) != 0) {
        abort();
    }
    return z;
}

static struct dns_zone *compat_zone(void)
{
    static struct dns_zone *z;
    if (z == NULL && build_zone(true, &z) != 0) {
        abort();
    }
    return z;
}

static uint8_t qbuf[4096];
static uint8_t rbuf[65535];

/* Ask @z and render the answer. */
static const char *ask_opts(const struct dns_zone *z, const char *name, uint16_t qtype,
                            int edns, const struct dns_answer_opts *opts,
                            struct dns_answer_info *info)
{
    size_t ql = mkquery(qbuf, sizeof(qbuf), 7, name, qtype, edns, false);
    int n = dns_answer(z, qbuf, ql, rbuf, sizeof(rbuf), opts, info);
    if (n <= 0) {
        return n == 0 ? "(nothing)" : "(error)";
    }
    if (info != NULL && (size_t)n > info->limit) {
        return "(over the limit)";
    }
    return render(rbuf, (size_t)n);
}

static const char *ask(const char *name, uint16_t qtype)
{
    struct dns_answer_info info;
    return ask_opts(zone(), name, qtype, -1, NULL, &info);
}

#define SOA_AUTH \
    "NS cluster. 5 SOA node-a.node.cluster. hostmaster.cluster. 42 60 600 86400 5\n"

/* ======================================================================= the table */

/* Every row of DESIGN.md §8, and the negative cases around them. */
struct row {
    const char *name;
    uint16_t qtype;
    const char *want; /* the whole rendered response */
};

static const struct row rows[] = {
    /* app A/AAAA: only running, healthy tasks */
    {"api.backend.shop.cluster", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=2 ns=0 ar=0\n"
     "Q api.backend.shop.cluster. A\n"
     "AN api.backend.shop.cluster. 5 A 10.0.0.1\n"
     "AN api.backend.shop.cluster. 5 A 10.0.0.2\n"},
    {"api.backend.shop.cluster", DNS_TYPE_AAAA,
     "NOERROR qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q api.backend.shop.cluster. AAAA\n" SOA_AUTH},
    {"web.cluster", DNS_TYPE_AAAA,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=0\n"
     "Q web.cluster. AAAA\n"
     "AN web.cluster. 5 AAAA fd00:0:0:0:0:0:0:3\n"},
    /* SRV per task and port, targets with their addresses */
    {"_api._tcp.backend.shop.cluster", DNS_TYPE_SRV,
     "NOERROR qr aa id=7 q=1 an=4 ns=0 ar=2\n"
     "Q _api._tcp.backend.shop.cluster. SRV\n"
     "AN _api._tcp.backend.shop.cluster. 5 SRV 0 1 31000 "
     "shop-backend-api-11111111-aaaa.node-a.node.cluster.\n"
     "AN _api._tcp.backend.shop.cluster. 5 SRV 0 1 31001 "
     "shop-backend-api-11111111-aaaa.node-a.node.cluster.\n"
     "AN _api._tcp.backend.shop.cluster. 5 SRV 0 1 31500 "
     "shop-backend-api-22222222-bbbb.node-b.node.cluster.\n"
     "AN _api._tcp.backend.shop.cluster. 5 SRV 0 1 31501 "
     "shop-backend-api-22222222-bbbb.node-b.node.cluster.\n"
     "AR shop-backend-api-11111111-aaaa.node-a.node.cluster. 5 A 10.0.0.1\n"
     "AR shop-backend-api-22222222-bbbb.node-b.node.cluster. 5 A 10.0.0.2\n"},
    {"_api._udp.backend.shop.cluster", DNS_TYPE_SRV,
     "NOERROR qr aa id=7 q=1 an=2 ns=0 ar=2\n"
     "Q _api._udp.backend.shop.cluster. SRV\n"
     "AN _api._udp.backend.shop.cluster. 5 SRV 0 1 31001 "
     "shop-backend-api-11111111-aaaa.node-a.node.cluster.\n"
     "AN _api._udp.backend.shop.cluster. 5 SRV 0 1 31501 "
     "shop-backend-api-22222222-bbbb.node-b.node.cluster.\n"
     "AR shop-backend-api-11111111-aaaa.node-a.node.cluster. 5 A 10.0.0.1\n"
     "AR shop-backend-api-22222222-bbbb.node-b.node.cluster. 5 A 10.0.0.2\n"},
    /* named ports */
    {"_http._tcp.api.backend.shop.cluster", DNS_TYPE_SRV,
     "NOERROR qr aa id=7 q=1 an=2 ns=0 ar=2\n"
     "Q _http._tcp.api.backend.shop.cluster. SRV\n"
     "AN _http._tcp.api.backend.shop.cluster. 5 SRV 0 1 31000 "
     "shop-backend-api-11111111-aaaa.node-a.node.cluster.\n"
     "AN _http._tcp.api.backend.shop.cluster. 5 SRV 0 1 31500 "
     "shop-backend-api-22222222-bbbb.node-b.node.cluster.\n"
     "AR shop-backend-api-11111111-aaaa.node-a.node.cluster. 5 A 10.0.0.1\n"
     "AR shop-backend-api-22222222-bbbb.node-b.node.cluster. 5 A 10.0.0.2\n"},
    {"_web._tcp.cluster", DNS_TYPE_SRV,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=1\n"
     "Q _web._tcp.cluster. SRV\n"
     "AN _web._tcp.cluster. 5 SRV 0 1 8080 web-55555555.node-c.node.cluster.\n"
     "AR web-55555555.node-c.node.cluster. 5 AAAA fd00:0:0:0:0:0:0:3\n"},
    /* the SRV target itself */
    {"shop-backend-api-22222222-bbbb.node-b.node.cluster", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=0\n"
     "Q shop-backend-api-22222222-bbbb.node-b.node.cluster. A\n"
     "AN shop-backend-api-22222222-bbbb.node-b.node.cluster. 5 A 10.0.0.2\n"},
    /* the unhealthy task has no name */
    {"shop-backend-api-33333333-cccc.node-c.node.cluster", DNS_TYPE_A,
     "NXDOMAIN qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q shop-backend-api-33333333-cccc.node-c.node.cluster. A\n" SOA_AUTH},
    /* VIP */
    {"api.backend.shop.vip.cluster", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=0\n"
     "Q api.backend.shop.vip.cluster. A\n"
     "AN api.backend.shop.vip.cluster. 5 A 198.18.0.10\n"},
    /* nodes */
    {"node-b.node.cluster", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=0\n"
     "Q node-b.node.cluster. A\n"
     "AN node-b.node.cluster. 5 A 10.0.0.2\n"},
    {"node-c.node.cluster", DNS_TYPE_AAAA,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=0\n"
     "Q node-c.node.cluster. AAAA\n"
     "AN node-c.node.cluster. 5 AAAA fd00:0:0:0:0:0:0:3\n"},
    /* leader */
    {"leader.cluster", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=0\n"
     "Q leader.cluster. A\n"
     "AN leader.cluster. 5 A 10.0.0.1\n"},
    /* apex SOA and NS (with glue) */
    {"cluster", DNS_TYPE_SOA,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=0\n"
     "Q cluster. SOA\n"
     "AN cluster. 5 SOA node-a.node.cluster. hostmaster.cluster. 42 60 600 86400 5\n"},
    {"cluster", DNS_TYPE_NS,
     "NOERROR qr aa id=7 q=1 an=2 ns=0 ar=2\n"
     "Q cluster. NS\n"
     "AN cluster. 5 NS node-a.node.cluster.\n"
     "AN cluster. 5 NS node-b.node.cluster.\n"
     "AR node-a.node.cluster. 5 A 10.0.0.1\n"
     "AR node-b.node.cluster. 5 A 10.0.0.2\n"},
    {"cluster", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q cluster. A\n" SOA_AUTH},
    /* NXDOMAIN vs NODATA, empty non-terminals (RFC 8020) */
    {"nope.cluster", DNS_TYPE_A,
     "NXDOMAIN qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q nope.cluster. A\n" SOA_AUTH},
    {"x.api.backend.shop.cluster", DNS_TYPE_A,
     "NXDOMAIN qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q x.api.backend.shop.cluster. A\n" SOA_AUTH},
    {"backend.shop.cluster", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q backend.shop.cluster. A\n" SOA_AUTH},
    {"shop.cluster", DNS_TYPE_SRV,
     "NOERROR qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q shop.cluster. SRV\n" SOA_AUTH},
    {"_tcp.backend.shop.cluster", DNS_TYPE_SRV,
     "NOERROR qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q _tcp.backend.shop.cluster. SRV\n" SOA_AUTH},
    {"node.cluster", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q node.cluster. A\n" SOA_AUTH},
    {"vip.cluster", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q vip.cluster. A\n" SOA_AUTH},
    {"api.backend.shop.cluster", DNS_TYPE_TXT,
     "NOERROR qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q api.backend.shop.cluster. TXT\n" SOA_AUTH},
    {"_api._tcp.backend.shop.cluster", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q _api._tcp.backend.shop.cluster. A\n" SOA_AUTH},
    /* case: matched insensitively, the question's case kept */
    {"API.Backend.SHOP.cluster", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=2 ns=0 ar=0\n"
     "Q API.Backend.SHOP.cluster. A\n"
     "AN API.Backend.SHOP.cluster. 5 A 10.0.0.1\n"
     "AN API.Backend.SHOP.cluster. 5 A 10.0.0.2\n"},
    {"Nope.CLUSTER", DNS_TYPE_A,
     "NXDOMAIN qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q Nope.CLUSTER. A\n"
     "NS CLUSTER. 5 SOA node-a.node.cluster. hostmaster.cluster. 42 60 600 86400 5\n"},
    /* ANY: one RRset (RFC 8482) */
    {"api.backend.shop.cluster", DNS_TYPE_ANY,
     "NOERROR qr aa id=7 q=1 an=2 ns=0 ar=0\n"
     "Q api.backend.shop.cluster. ANY\n"
     "AN api.backend.shop.cluster. 5 A 10.0.0.1\n"
     "AN api.backend.shop.cluster. 5 A 10.0.0.2\n"},
    {"cluster", DNS_TYPE_ANY,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=0\n"
     "Q cluster. ANY\n"
     "AN cluster. 5 SOA node-a.node.cluster. hostmaster.cluster. 42 60 600 86400 5\n"},
    {"web.cluster", DNS_TYPE_ANY,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=0\n"
     "Q web.cluster. ANY\n"
     "AN web.cluster. 5 AAAA fd00:0:0:0:0:0:0:3\n"},
    {"shop.cluster", DNS_TYPE_ANY,
     "NOERROR qr aa id=7 q=1 an=0 ns=1 ar=0\n"
     "Q shop.cluster. ANY\n" SOA_AUTH},
    /* outside the zone, forwarding off; zone transfers */
    {"example.com", DNS_TYPE_A,
     "REFUSED qr id=7 q=1 an=0 ns=0 ar=0\n"
     "Q example.com. A\n"},
    {"notcluster", DNS_TYPE_A,
     "REFUSED qr id=7 q=1 an=0 ns=0 ar=0\n"
     "Q notcluster. A\n"},
    {"cluster", DNS_TYPE_AXFR,
     "REFUSED qr id=7 q=1 an=0 ns=0 ar=0\n"
     "Q cluster. TYPE252\n"},
};

TEST(dns_answer_table)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(rows); i++) {
        const char *got = ask(rows[i].name, rows[i].qtype);
        if (strcmp(got, rows[i].want) != 0) {
            printf("# row %zu: %s %s\n# got:\n", i, rows[i].name,
                   type_str(rows[i].qtype));
            test_note(got);
            printf("# want:\n");
            test_note(rows[i].want);
        }
        ASSERT_STR_EQ(got, rows[i].want);
    }
}

/* ======================================================================= mesos compat */

static const struct row compat_rows[] = {
    {"leader.mesos", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=0\n"
     "Q leader.mesos. A\n"
     "AN leader.mesos. 5 A 10.0.0.1\n"},
    {"_leader._tcp.mesos", DNS_TYPE_SRV,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=1\n"
     "Q _leader._tcp.mesos. SRV\n"
     "AN _leader._tcp.mesos. 5 SRV 0 1 5050 leader.mesos.\n"
     "AR leader.mesos. 5 A 10.0.0.1\n"},
    {"marathon.mesos", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=0\n"
     "Q marathon.mesos. A\n"
     "AN marathon.mesos. 5 A 10.0.0.1\n"},
    {"master.mesos", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=2 ns=0 ar=0\n"
     "Q master.mesos. A\n"
     "AN master.mesos. 5 A 10.0.0.1\n"
     "AN master.mesos. 5 A 10.0.0.2\n"},
    {"master1.mesos", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=0\n"
     "Q master1.mesos. A\n"
     "AN master1.mesos. 5 A 10.0.0.2\n"},
    {"slave.mesos", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=3 ns=0 ar=0\n"
     "Q slave.mesos. A\n"
     "AN slave.mesos. 5 A 10.0.0.1\n"
     "AN slave.mesos. 5 A 10.0.0.2\n"
     "AN slave.mesos. 5 A 10.0.0.3\n"},
    /* Mesos-DNS serves tasks that run, whatever their health: 3 of 4. */
    {"api-backend-shop.marathon.mesos", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=3 ns=0 ar=0\n"
     "Q api-backend-shop.marathon.mesos. A\n"
     "AN api-backend-shop.marathon.mesos. 5 A 10.0.0.1\n"
     "AN api-backend-shop.marathon.mesos. 5 A 10.0.0.2\n"
     "AN api-backend-shop.marathon.mesos. 5 A 10.0.0.3\n"},
    {"api.backend.shop.marathon.mesos", DNS_TYPE_A,
     "NOERROR qr aa id=7 q=1 an=3 ns=0 ar=0\n"
     "Q api.backend.shop.marathon.mesos. A\n"
     "AN api.backend.shop.marathon.mesos. 5 A 10.0.0.1\n"
     "AN api.backend.shop.marathon.mesos. 5 A 10.0.0.2\n"
     "AN api.backend.shop.marathon.mesos. 5 A 10.0.0.3\n"},
    {"web.marathon.slave.mesos", DNS_TYPE_AAAA,
     "NOERROR qr aa id=7 q=1 an=1 ns=0 ar=0\n"
     "Q web.marathon.slave.mesos. AAAA\n"
     "AN web.marathon.slave.mesos. 5 AAAA fd00:0:0:0:0:0:0:3\n"},
};

TEST(dns_answer_mesos_compat)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(compat_rows); i++) {
        struct dns_answer_info info;
        const char *got = ask_opts(compat_zone(), compat_rows[i].name,
                                   compat_rows[i].qtype, -1, NULL, &info);
        if (strcmp(got, compat_rows[i].want) != 0) {
            printf("# row %zu: %s\n# got:\n", i, compat_rows[i].name);
            test_note(got);
        }
        ASSERT_STR_EQ(got, compat_rows[i].want);
    }
    /* SRV by the labelled name, to canonical C = L-H-S targets. */
    struct dns_answer_info info;
    const char *got = ask_opts(compat_zone(), "_web._tcp.marathon.mesos", DNS_TYPE_SRV,
                               -1, NULL, &info);
    test_note(got);
    ASSERT_TRUE(strstr(got, "AN _web._tcp.marathon.mesos. 5 SRV 0 1 8080 web-") != NULL);
    ASSERT_TRUE(strstr(got, "-c.marathon.mesos.\nAR web-") != NULL);
    got = ask_opts(compat_zone(), "_dns._api-backend-shop._udp.marathon.mesos",
                   DNS_TYPE_SRV, -1, NULL, &info);
    ASSERT_TRUE(strstr(got, "an=3 ") != NULL); /* tasks 1, 2 and the unhealthy 3 */
    got = ask_opts(compat_zone(), "_api-backend-shop._udp.marathon.slave.mesos",
                   DNS_TYPE_SRV, -1, NULL, &info);
    ASSERT_TRUE(strstr(got, "an=6 ") != NULL); /* every port, both protocols */
    got = ask_opts(compat_zone(), "_slave._tcp.mesos", DNS_TYPE_SRV, -1, NULL, &info);
    ASSERT_TRUE(strstr(got, "SRV 0 1 5051 slave.mesos.\n") != NULL);
    /* The native names are there too. */
    got = ask_opts(compat_zone(), "api.backend.shop.mesos", DNS_TYPE_A, -1, NULL, &info);
    ASSERT_TRUE(strstr(got, "an=2 ") != NULL);
}

/* The canonical name's hash part: zbase32(sha1(task id))[:5], per Mesos-DNS. */
TEST(dns_answer_mesos_canonical_hash)
{
    static const struct dns_port port = {.port = 31302};
    struct dns_task t = {
        .id = "nginx.0b3c1a5e-4f7c-11ee-be56-0242ac120002",
        .node = "agent-7",
        .agent_id = "20160101-000000-1-S1",
        .host = ip("10.0.0.9"),
        .state = DNS_TASK_RUNNING,
        .ports = &port,
        .nports = 1,
    };
    struct dns_zone_config cfg = {.domain = "mesos", .mesos_compat = true};
    struct dns_zone_builder *b;
    ASSERT_OK(dns_zone_builder_new(&cfg, &b));
    struct dns_app app = {.path = "/nginx", .tasks = &t, .ntasks = 1};
    ASSERT_OK(dns_zone_add_app(b, &app));
    struct dns_zone *z;
    ASSERT_OK(dns_zone_build(b, &z));
    struct dns_answer_info info;
    const char *got =
        ask_opts(z, "_nginx._tcp.marathon.mesos", DNS_TYPE_SRV, -1, NULL, &info);
    test_note(got);
    /* nginx-<5 zbase32 chars>-s1.marathon.mesos. */
    const char *p = strstr(got, "SRV 0 1 31302 nginx-");
    ASSERT_NOT_NULL(p);
    p += strlen("SRV 0 1 31302 nginx-");
    for (int i = 0; i < 5; i++) {
        ASSERT_NOT_NULL(strchr("ybndrfg8ejkmcpqxot1uwisza345h769", p[i]));
    }
    ASSERT_TRUE(strncmp(p + 5, "-s1.marathon.mesos.", 19) == 0);
    dns_zone_unref(z);
}

/* ======================================================================= sizes */

TEST(dns_answer_truncation_udp_512)
{
    struct dns_answer_info info;
    /* 200 A records do not fit 512 bytes: the RRset is left out whole. */
    const char *got = ask_opts(zone(), "big.cluster", DNS_TYPE_A, -1, NULL, &info);
    ASSERT_STR_EQ(got,
                  "NOERROR qr aa tc id=7 q=1 an=0 ns=0 ar=0\n"
                  "Q big.cluster. A\n");
    ASSERT_TRUE(info.truncated);
    ASSERT_UINT_EQ(info.limit, 512);
    /* 200 * 16 + header and question: fits 4096 with EDNS. */
    struct dns_answer_opts opts = {.udp_max = 4096};
    got = ask_opts(zone(), "big.cluster", DNS_TYPE_A, 4096, &opts, &info);
    ASSERT_FALSE(info.truncated);
    ASSERT_UINT_EQ(info.limit, 4096);
    ASSERT_TRUE(strncmp(got, "NOERROR qr aa id=7 q=1 an=200 ns=0 ar=1\n", 40) == 0);
    ASSERT_TRUE(strstr(got, "AR OPT size=4096 v=0\n") != NULL);
    /* Our own maximum caps the client's: 1232 by default. */
    got = ask_opts(zone(), "big.cluster", DNS_TYPE_A, 4096, NULL, &info);
    ASSERT_UINT_EQ(info.limit, 1232);
    ASSERT_TRUE(info.truncated);
    ASSERT_STR_EQ(got,
                  "NOERROR qr aa tc id=7 q=1 an=0 ns=0 ar=1\n"
                  "Q big.cluster. A\n"
                  "AR OPT size=1232 v=0\n");
    /* A client advertising less than 512 gets 512 (RFC 6891 §6.2.5). */
    got = ask_opts(zone(), "web.cluster", DNS_TYPE_AAAA, 100, NULL, &info);
    ASSERT_UINT_EQ(info.limit, 512);
    /* SRV: 200 records of ~50 bytes need TCP. */
    got = ask_opts(zone(), "_big._tcp.cluster", DNS_TYPE_SRV, 1232, NULL, &info);
    ASSERT_TRUE(info.truncated);
    struct dns_answer_opts tcp = {.tcp = true};
    got = ask_opts(zone(), "_big._tcp.cluster", DNS_TYPE_SRV, -1, &tcp, &info);
    ASSERT_FALSE(info.truncated);
    ASSERT_UINT_EQ(info.limit, 65535);
    ASSERT_TRUE(strncmp(got, "NOERROR qr aa id=7 q=1 an=200 ns=0 ar=200\n", 42) == 0);
}

/* Additional records that do not fit are dropped without TC. */
TEST(dns_answer_additionals_dropped_quietly)
{
    struct dns_answer_info info;
    struct dns_answer_opts opts = {.udp_max = 4096};
    /* 200 SRV of 48 bytes and 200 A: the answer fits 4096 with EDNS (10k would
     * not), so try a size that fits the answer but not all additionals. */
    size_t ql =
        mkquery(qbuf, sizeof(qbuf), 9, "_big._tcp.cluster", DNS_TYPE_SRV, 4096, false);
    int n = dns_answer(zone(), qbuf, ql, rbuf, sizeof(rbuf), &opts, &info);
    ASSERT_INT_OP(n, >, 0);
    ASSERT_INT_OP(n, <=, 4096);
    const char *got = render(rbuf, (size_t)n);
    ASSERT_TRUE(info.truncated); /* 200 SRV do not fit in 4096 */
    (void)got;
    /* A smaller app: 4 SRV and 2 A fit easily; with 512 all additionals too. */
    got =
        ask_opts(zone(), "_api._tcp.backend.shop.cluster", DNS_TYPE_SRV, -1, NULL, &info);
    ASSERT_FALSE(info.truncated);
    ASSERT_TRUE(strstr(got, "ar=2") != NULL);
}

/* ======================================================================= errors */

static int answer_raw(const uint8_t *q, size_t ql, struct dns_answer_info *info)
{
    return dns_answer(zone(), q, ql, rbuf, sizeof(rbuf), NULL, info);
}

TEST(dns_answer_short_input_dropped)
{
    struct dns_answer_info info;
    static const uint8_t junk[11] = {1, 2, 3};
    ASSERT_INT_EQ(answer_raw(junk, sizeof(junk), &info), 0);
    ASSERT_INT_EQ(answer_raw(junk, 0, &info), 0);
    /* A response is never answered. */
    size_t ql = mkquery(qbuf, sizeof(qbuf), 1, "web.cluster", DNS_TYPE_A, -1, false);
    qbuf[2] |= 0x80;
    ASSERT_INT_EQ(answer_raw(qbuf, ql, &info), 0);
    /* The caller's buffer must hold 512 bytes. */
    ql = mkquery(qbuf, sizeof(qbuf), 1, "web.cluster", DNS_TYPE_A, -1, false);
    ASSERT_ERR(dns_answer(zone(), qbuf, ql, rbuf, 100, NULL, &info), CM_EINVAL);
}

TEST(dns_answer_formerr)
{
    struct dns_answer_info info;
    /* Header only: QDCOUNT 0. */
    uint8_t h[12] = {0xab, 0xcd, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0};
    int n = answer_raw(h, sizeof(h), &info);
    ASSERT_STR_EQ(render(rbuf, (size_t)n), "FORMERR qr id=43981 q=0 an=0 ns=0 ar=0\n");
    ASSERT_UINT_EQ(info.rcode, DNS_RCODE_FORMERR);
    /* QDCOUNT 2. */
    size_t ql = mkquery(qbuf, sizeof(qbuf), 5, "web.cluster", DNS_TYPE_A, -1, false);
    qbuf[5] = 2;
    n = answer_raw(qbuf, ql, &info);
    ASSERT_STR_EQ(render(rbuf, (size_t)n), "FORMERR qr id=5 q=0 an=0 ns=0 ar=0\n");
    /* Truncated question: the header is still answered. */
    ql = mkquery(qbuf, sizeof(qbuf), 5, "web.cluster", DNS_TYPE_A, -1, false);
    n = answer_raw(qbuf, ql - 3, &info);
    ASSERT_STR_EQ(render(rbuf, (size_t)n), "FORMERR qr id=5 q=0 an=0 ns=0 ar=0\n");
    /* Trailing garbage after the question. */
    ql = mkquery(qbuf, sizeof(qbuf), 5, "web.cluster", DNS_TYPE_A, -1, false);
    qbuf[ql] = 0;
    n = answer_raw(qbuf, ql + 1, &info);
    ASSERT_STR_EQ(render(rbuf, (size_t)n),
                  "FORMERR qr id=5 q=1 an=0 ns=0 ar=0\n"
                  "Q web.cluster. A\n");
    /* A compression pointer loop in the question. */
    static const uint8_t loop[] = {0, 9, 1, 0,    0,  1, 0, 0, 0,
                                   0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
    n = answer_raw(loop, sizeof(loop), &info);
    ASSERT_STR_EQ(render(rbuf, (size_t)n), "FORMERR qr id=9 q=0 an=0 ns=0 ar=0\n");
    /* Two OPT records: FORMERR, and the OPT is not echoed. */
    ql = mkquery(qbuf, sizeof(qbuf), 5, "web.cluster", DNS_TYPE_A, 1232, false);
    memcpy(qbuf + ql, qbuf + ql - 11, 11);
    qbuf[11] = 2;
    n = answer_raw(qbuf, ql + 11, &info);
    ASSERT_STR_EQ(render(rbuf, (size_t)n),
                  "FORMERR qr id=5 q=1 an=0 ns=0 ar=0\n"
                  "Q web.cluster. A\n");
}

TEST(dns_answer_notimp_badvers)
{
    struct dns_answer_info info;
    size_t ql = mkquery(qbuf, sizeof(qbuf), 5, "web.cluster", DNS_TYPE_A, -1, false);
    qbuf[2] = (uint8_t)(qbuf[2] | (DNS_OPCODE_UPDATE << 3));
    int n = answer_raw(qbuf, ql, &info);
    ASSERT_STR_EQ(render(rbuf, (size_t)n), "NOTIMP qr id=5 q=0 an=0 ns=0 ar=0\n");
    ASSERT_UINT_EQ(rbuf[2] >> 3 & 0xf, DNS_OPCODE_UPDATE); /* opcode echoed */
    /* EDNS version 1: BADVERS, in the OPT's extended rcode (RFC 6891 §6.1.3). */
    ql = mkquery(qbuf, sizeof(qbuf), 5, "web.cluster", DNS_TYPE_A, 1232, false);
    qbuf[ql - 5] = 1; /* the OPT's version byte */
    n = answer_raw(qbuf, ql, &info);
    ASSERT_STR_EQ(render(rbuf, (size_t)n),
                  "BADVERS qr id=5 q=1 an=0 ns=0 ar=1\n"
                  "Q web.cluster. A\n"
                  "AR OPT size=1232 v=0\n");
    ASSERT_UINT_EQ(info.rcode, DNS_RCODE_BADVERS);
}

TEST(dns_answer_edns_echo)
{
    struct dns_answer_info info;
    size_t ql = mkquery(qbuf, sizeof(qbuf), 3, "leader.cluster", DNS_TYPE_A, 4096, true);
    int n = dns_answer(zone(), qbuf, ql, rbuf, sizeof(rbuf), NULL, &info);
    ASSERT_STR_EQ(render(rbuf, (size_t)n),
                  "NOERROR qr aa id=3 q=1 an=1 ns=0 ar=1\n"
                  "Q leader.cluster. A\n"
                  "AN leader.cluster. 5 A 10.0.0.1\n"
                  "AR OPT size=1232 v=0 do\n");
    /* RD is copied. */
    ASSERT_TRUE((rbuf[2] & 0x01) != 0);
}

TEST(dns_answer_forward_out_of_zone)
{
    struct dns_answer_info info;
    struct dns_answer_opts opts = {.forward = true};
    size_t ql = mkquery(qbuf, sizeof(qbuf), 3, "example.com", DNS_TYPE_A, -1, false);
    ASSERT_INT_EQ(dns_answer(zone(), qbuf, ql, rbuf, sizeof(rbuf), &opts, &info), 0);
    ASSERT_TRUE(info.forward);
    ASSERT_TRUE(info.out_of_zone);
    /* In the zone, forwarding changes nothing. */
    ql = mkquery(qbuf, sizeof(qbuf), 3, "nope.cluster", DNS_TYPE_A, -1, false);
    ASSERT_INT_OP(dns_answer(zone(), qbuf, ql, rbuf, sizeof(rbuf), &opts, &info), >, 0);
    ASSERT_FALSE(info.forward);
    ASSERT_UINT_EQ(info.rcode, DNS_RCODE_NXDOMAIN);
    /* Without a zone everything is outside. */
    ASSERT_INT_EQ(dns_answer(NULL, qbuf, ql, rbuf, sizeof(rbuf), &opts, &info), 0);
    ASSERT_TRUE(info.forward);
}

TEST(dns_answer_rotation)
{
    struct dns_answer_info info;
    struct dns_answer_opts opts = {.rotate = 1};
    const char *got =
        ask_opts(zone(), "api.backend.shop.cluster", DNS_TYPE_A, -1, &opts, &info);
    ASSERT_STR_EQ(got,
                  "NOERROR qr aa id=7 q=1 an=2 ns=0 ar=0\n"
                  "Q api.backend.shop.cluster. A\n"
                  "AN api.backend.shop.cluster. 5 A 10.0.0.2\n"
                  "AN api.backend.shop.cluster. 5 A 10.0.0.1\n");
}

/* Answers compress: owners are pointers to the question. */
TEST(dns_answer_compression)
{
    size_t ql =
        mkquery(qbuf, sizeof(qbuf), 3, "api.backend.shop.cluster", DNS_TYPE_A, -1, false);
    int n = dns_answer(zone(), qbuf, ql, rbuf, sizeof(rbuf), NULL, NULL);
    /* header + question (26 + 4) + 2 * (2 + 10 + 4) */
    ASSERT_INT_EQ(n, 12 + 30 + 2 * 16);
    ASSERT_UINT_EQ(rbuf[42], 0xc0);
    ASSERT_UINT_EQ(rbuf[43], 12);
}

/* ======================================================================= memory */

static int build_for_walk(void *arg)
{
    bool compat = *(bool *)arg;
    struct dns_zone *z = NULL;
    int rv = build_zone(compat, &z);
    dns_zone_unref(z);
    return rv;
}

TEST(dns_zone_build_oom_walk)
{
    bool compat = false;
    int points = test_alloc_walk(build_for_walk, &compat);
    printf("# %d allocation failure points\n", points);
    ASSERT_INT_OP(points, >, 10);
    compat = true;
    points = test_alloc_walk(build_for_walk, &compat);
    printf("# compat: %d allocation failure points\n", points);
}

TEST(dns_answer_allocates_nothing)
{
    static const struct {
        const char *name;
        uint16_t qtype;
    } qs[] = {{"api.backend.shop.cluster", DNS_TYPE_A},
              {"_api._tcp.backend.shop.cluster", DNS_TYPE_SRV},
              {"nope.cluster", DNS_TYPE_A},
              {"cluster", DNS_TYPE_NS},
              {"example.com", DNS_TYPE_A}};
    struct dns_zone *z = zone();
    for (size_t i = 0; i < CM_ARRAY_SIZE(qs); i++) {
        size_t ql = mkquery(qbuf, sizeof(qbuf), 3, qs[i].name, qs[i].qtype, 1232, false);
        unsigned long before = cm_alloc_count();
        int n = dns_answer(z, qbuf, ql, rbuf, sizeof(rbuf), NULL, NULL);
        ASSERT_UINT_EQ(cm_alloc_count(), before);
        ASSERT_INT_OP(n, >, 0);
    }
}

TEST(dns_zone_refcount)
{
    struct dns_zone *z;
    ASSERT_OK(build_zone(false, &z));
    ASSERT_TRUE(dns_zone_ref(z) == z);
    dns_zone_unref(z);
    ASSERT_INT_OP(dns_zone_size(z), >, 20);
    char buf[64];
    ASSERT_INT_EQ(dns_name_to_str(dns_zone_origin(z), buf, sizeof(buf)), 8);
    ASSERT_STR_EQ(buf, "cluster.");
    dns_zone_unref(z); /* the last one: ASan checks it is all freed */
    dns_zone_unref(NULL);
}

/* ======================================================================= speed */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Not a pass/fail test: prints answers per second of the engine on one core. */
TEST(dns_answer_bench)
{
    static const struct {
        const char *what;
        const char *name;
        uint16_t qtype;
    } qs[] = {
        {"A hit (2 records)", "api.backend.shop.cluster", DNS_TYPE_A},
        {"SRV hit (4 + 2 additional)", "_api._tcp.backend.shop.cluster", DNS_TYPE_SRV},
        {"NXDOMAIN", "nope.backend.shop.cluster", DNS_TYPE_A}};
    struct dns_zone *z = zone();
    for (size_t i = 0; i < CM_ARRAY_SIZE(qs); i++) {
        size_t ql = mkquery(qbuf, sizeof(qbuf), 3, qs[i].name, qs[i].qtype, 1232, false);
        long iters = 0;
        double t0 = now_s(), t;
        size_t sum = 0;
        do {
            for (int k = 0; k < 10000; k++) {
                struct dns_answer_opts opts = {.rotate = (uint32_t)k};
                sum += (size_t)dns_answer(z, qbuf, ql, rbuf, 1232, &opts, NULL);
            }
            iters += 10000;
            t = now_s();
        } while (t - t0 < 0.3);
        printf("# bench %-28s %10.0f answers/s (%zu bytes avg)\n", qs[i].what,
               (double)iters / (t - t0), sum / (size_t)iters);
    }
}
