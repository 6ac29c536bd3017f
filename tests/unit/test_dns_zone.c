/* dns/: the zone builder: validation, derived names, limits. */
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "dns/dns.h"
#include "test.h"

static struct dns_addr ip(const char *s)
{
    struct dns_addr a;
    if (dns_addr_parse(s, &a) != 0) {
        abort();
    }
    return a;
}

static uint8_t qbuf[512];
static uint8_t rbuf[4096];

/* The rcode and answer count of @name/@qtype in @z, as "NOERROR/2". */
static const char *probe(const struct dns_zone *z, const char *name, uint16_t qtype)
{
    static char out[64];
    struct dns_writer w;
    struct dns_header h = {.id = 1};
    dns_writer_init(&w, qbuf, sizeof(qbuf), &h);
    struct dns_question q = {.qtype = qtype, .qclass = DNS_CLASS_IN};
    if (dns_name_from_str(name, &q.name) != 0 || dns_writer_question(&w, &q) != 0) {
        abort();
    }
    size_t ql = dns_writer_finish(&w);
    struct dns_answer_opts opts = {.tcp = true};
    struct dns_answer_info info;
    int n = dns_answer(z, qbuf, ql, rbuf, sizeof(rbuf), &opts, &info);
    if (n <= 0) {
        return "none";
    }
    struct dns_reader r;
    dns_reader_init(&r, rbuf, (size_t)n);
    static const char *const rc[] = {"NOERROR",  "FORMERR", "SERVFAIL",
                                     "NXDOMAIN", "NOTIMP",  "REFUSED"};
    snprintf(out, sizeof(out), "%s/%u", info.rcode < 6 ? rc[info.rcode] : "?",
             r.header.ancount);
    return out;
}

static struct dns_zone_builder *builder(const char *domain)
{
    struct dns_zone_config cfg = {.domain = domain};
    struct dns_zone_builder *b;
    if (dns_zone_builder_new(&cfg, &b) != 0) {
        abort();
    }
    return b;
}

TEST(dns_zone_config_errors)
{
    struct dns_zone_builder *b = NULL;
    struct dns_zone_config cfg = {.domain = "."};
    ASSERT_ERR(dns_zone_builder_new(&cfg, &b), CM_EINVAL);
    cfg.domain = "a..b";
    ASSERT_ERR(dns_zone_builder_new(&cfg, &b), CM_EINVAL);
    cfg.domain = "cluster";
    cfg.rname = "bad..rname";
    ASSERT_ERR(dns_zone_builder_new(&cfg, &b), CM_EINVAL);
    cfg.rname = NULL;
    cfg.mname = "ns.example.com";
    cfg.ttl = 30;
    cfg.minimum = 10;
    ASSERT_OK(dns_zone_builder_new(&cfg, &b));
    struct dns_zone *z;
    ASSERT_OK(dns_zone_build(b, &z));
    ASSERT_STR_EQ(probe(z, "cluster", DNS_TYPE_SOA), "NOERROR/1");
    ASSERT_STR_EQ(probe(z, "x.cluster", DNS_TYPE_SOA), "NXDOMAIN/0");
    dns_zone_unref(z);
    dns_zone_builder_free(NULL);
}

TEST(dns_zone_app_errors)
{
    struct dns_zone_builder *b = builder("Cluster.");
    struct dns_task t = {
        .id = "x.1", .node = "n1", .host = ip("10.0.0.1"), .state = DNS_TASK_RUNNING};
    struct dns_app app = {.path = "shop/api", .tasks = &t, .ntasks = 1};
    ASSERT_ERR(dns_zone_add_app(b, &app), CM_EINVAL); /* not absolute */
    app.path = "/";
    ASSERT_ERR(dns_zone_add_app(b, &app), CM_EINVAL);
    app.path = "/shop//api";
    ASSERT_ERR(dns_zone_add_app(b, &app), CM_EINVAL);
    app.path = "/shop/api/";
    ASSERT_ERR(dns_zone_add_app(b, &app), CM_EINVAL);
    app.path = "/vip/api"; /* reserved first segment */
    ASSERT_ERR(dns_zone_add_app(b, &app), CM_EINVAL);
    app.path = "/Node";
    ASSERT_ERR(dns_zone_add_app(b, &app), CM_EINVAL);
    app.path = "/leader/x";
    ASSERT_ERR(dns_zone_add_app(b, &app), CM_EINVAL);
    app.path = "/shop/___"; /* nothing left of the label */
    ASSERT_ERR(dns_zone_add_app(b, &app), CM_EINVAL);
    /* A name over 255 bytes: nothing is added. */
    char path[400];
    size_t o = 0;
    for (int i = 0; i < 5; i++) {
        path[o++] = '/';
        memset(path + o, 'a' + i, 60);
        o += 60;
    }
    path[o] = '\0';
    app.path = path;
    ASSERT_ERR(dns_zone_add_app(b, &app), CM_ETOOBIG);
    /* A task without an id. */
    app.path = "/shop/api";
    t.id = NULL;
    ASSERT_ERR(dns_zone_add_app(b, &app), CM_EINVAL);
    t.id = "x.1";
    struct dns_port p0 = {.port = 0};
    t.ports = &p0;
    t.nports = 1;
    ASSERT_ERR(dns_zone_add_app(b, &app), CM_EINVAL);
    t.nports = 0;
    ASSERT_OK(dns_zone_add_app(b, &app));
    struct dns_zone *z;
    ASSERT_OK(dns_zone_build(b, &z));
    ASSERT_STR_EQ(probe(z, "api.shop.cluster", DNS_TYPE_A), "NOERROR/1");
    /* Only the good app and its names (apex, shop, api, node, n1, x-1) exist. */
    ASSERT_UINT_EQ(dns_zone_size(z), 6);
    dns_zone_unref(z);
}

/* Labels are mapped like Mesos-DNS maps them; long task ids keep their end. */
TEST(dns_zone_label_mapping)
{
    struct dns_zone_builder *b = builder("cluster");
    char id[200];
    memset(id, 'a', 100);
    memcpy(id + 100, ".0123456789-end", 16);
    struct dns_port port = {.port = 80, .name = "HTTP_Main"};
    struct dns_task t = {.id = id,
                         .node = "Node_1.Example",
                         .host = ip("10.0.0.1"),
                         .state = DNS_TASK_RUNNING,
                         .ports = &port,
                         .nports = 1};
    struct dns_app app = {
        .path = "/My_Group/v1.23/Stress:Test", .tasks = &t, .ntasks = 1};
    ASSERT_OK(dns_zone_add_app(b, &app));
    struct dns_addr v = ip("198.18.0.1");
    ASSERT_OK(dns_zone_add_vip(b, "/web", &v));
    struct dns_zone *z;
    ASSERT_OK(dns_zone_build(b, &z));
    ASSERT_STR_EQ(probe(z, "stresstest.v1-23.my-group.cluster", DNS_TYPE_A), "NOERROR/1");
    ASSERT_STR_EQ(probe(z, "_stresstest._tcp.v1-23.my-group.cluster", DNS_TYPE_SRV),
                  "NOERROR/1");
    ASSERT_STR_EQ(
        probe(z, "_http-main._tcp.stresstest.v1-23.my-group.cluster", DNS_TYPE_SRV),
        "NOERROR/1");
    /* 63 bytes from the end of the mapped id: 48 a's then "-0123456789-end". */
    char name[300];
    snprintf(name, sizeof(name), "%.*s-0123456789-end.node-1-example.node.cluster", 48,
             id);
    ASSERT_STR_EQ(probe(z, name, DNS_TYPE_A), "NOERROR/1");
    ASSERT_STR_EQ(probe(z, "web.vip.cluster", DNS_TYPE_A), "NOERROR/1");
    dns_zone_unref(z);
}

/* The same address twice is one record (RFC 2181 §5); VIPs and tasks of
 * several apps under one name merge. */
TEST(dns_zone_dedup)
{
    struct dns_zone_builder *b = builder("cluster");
    struct dns_addr a = ip("10.0.0.1");
    ASSERT_OK(dns_zone_add_node(b, "n1", &a));
    ASSERT_OK(dns_zone_add_node(b, "n1", &a));
    ASSERT_OK(dns_zone_add_leader(b, &a));
    ASSERT_OK(dns_zone_add_leader(b, &a));
    ASSERT_OK(dns_zone_add_ns(b, "n1.node.cluster", &a));
    ASSERT_OK(dns_zone_add_ns(b, "N1.node.cluster", &a));
    ASSERT_OK(dns_zone_add_ns(b, "ns.example.com", NULL));
    struct dns_task t[2] = {
        {.id = "a.1", .node = "n1", .host = a, .state = DNS_TASK_RUNNING},
        {.id = "a.2", .node = "n1", .host = a, .state = DNS_TASK_RUNNING},
    };
    struct dns_app app = {.path = "/a", .tasks = t, .ntasks = 2};
    ASSERT_OK(dns_zone_add_app(b, &app));
    struct dns_zone *z;
    ASSERT_OK(dns_zone_build(b, &z));
    ASSERT_STR_EQ(probe(z, "n1.node.cluster", DNS_TYPE_A), "NOERROR/1");
    ASSERT_STR_EQ(probe(z, "leader.cluster", DNS_TYPE_A), "NOERROR/1");
    ASSERT_STR_EQ(probe(z, "a.cluster", DNS_TYPE_A), "NOERROR/1");
    ASSERT_STR_EQ(probe(z, "cluster", DNS_TYPE_NS), "NOERROR/2");
    dns_zone_unref(z);
}

TEST(dns_zone_failed_builder_stays_failed)
{
    struct dns_zone_builder *b = builder("cluster");
    struct dns_addr a = ip("10.0.0.1");
    cm_alloc_fault_set(0, -1);
    int rv = dns_zone_add_node(b, "n1", &a);
    cm_alloc_fault_reset();
    ASSERT_ERR(rv, CM_ENOMEM);
    ASSERT_ERR(dns_zone_add_node(b, "n2", &a), CM_ENOMEM);
    struct dns_zone *z = NULL;
    ASSERT_ERR(dns_zone_build(b, &z), CM_ENOMEM);
    ASSERT_NULL(z);
}

/* Many names: the table grows and every name is still found. */
TEST(dns_zone_many_names)
{
    struct dns_zone_builder *b = builder("cluster");
    for (int i = 0; i < 5000; i++) {
        char n[32];
        snprintf(n, sizeof(n), "node%d", i);
        struct dns_addr a = ip("10.0.0.1");
        a.bytes[2] = (uint8_t)(i >> 8);
        a.bytes[3] = (uint8_t)i;
        ASSERT_OK(dns_zone_add_node(b, n, &a));
    }
    struct dns_zone *z;
    ASSERT_OK(dns_zone_build(b, &z));
    ASSERT_UINT_EQ(dns_zone_size(z), 5002);
    for (int i = 0; i < 5000; i += 7) {
        char n[64];
        snprintf(n, sizeof(n), "NODE%d.node.cluster", i);
        ASSERT_STR_EQ(probe(z, n, DNS_TYPE_A), "NOERROR/1");
    }
    ASSERT_STR_EQ(probe(z, "node5000.node.cluster", DNS_TYPE_A), "NXDOMAIN/0");
    dns_zone_unref(z);
}
