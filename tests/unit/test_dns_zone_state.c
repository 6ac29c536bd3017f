/* dns/zone_state.c: the zone built from a state.db replica (DESIGN.md §8), and
 * dns_zone_to_text, which the checks read. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/base.h"
#include "dns/dns.h"
#include "state/db.h"
#include "test.h"

struct fixture {
    char dir[64];
    char path[96];
    struct cm_state *s;
    uint64_t index;
};

static void fx_open(struct fixture *f)
{
    snprintf(f->dir, sizeof(f->dir), "/tmp/cm-dnszs-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_open(f->path, &f->s, &eb));
    f->index = 0;
}

static void fx_close(struct fixture *f)
{
    cm_state_close(f->s);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    ASSERT_INT_EQ(system(cmd), 0);
}

static void apply(struct fixture *f, const char *cmd)
{
    struct cm_errbuf eb;
    int rv = cm_state_validate(f->s, cmd, strlen(cmd), &eb);
    if (rv != 0) {
        printf("# validate: %s\n", eb.msg);
    }
    ASSERT_OK(rv);
    ASSERT_OK(cm_state_apply(f->s, ++f->index, cmd, strlen(cmd), &eb));
}

/* The zone as text; the caller frees. */
static char *zone_text(struct dns_zone *z)
{
    struct cm_buf b = {0};
    ASSERT_OK(dns_zone_to_text(z, &b));
    return cm_buf_steal(&b);
}

static void expect_line(const char *text, const char *line)
{
    char want[512];
    snprintf(want, sizeof(want), "\n%s\n", line);
    if (strstr(text, want) == NULL) {
        printf("# zone:\n%s", text);
        test__fail(__FILE__, __LINE__, "missing line: %s", line);
    }
}

static void expect_no(const char *text, const char *part)
{
    if (strstr(text, part) != NULL) {
        printf("# zone:\n%s", text);
        test__fail(__FILE__, __LINE__, "unexpected: %s", part);
    }
}

static const char *nodes_cmds[] = {
    "{\"type\":\"node.up\",\"at\":1,\"node\":{\"id\":\"n1\",\"address\":\"10.0.0.1\","
    "\"attrs\":{},\"resources\":{}}}",
    "{\"type\":\"node.up\",\"at\":1,\"node\":{\"id\":\"n2\",\"address\":\"10.0.0.2:"
    "7071\","
    "\"attrs\":{},\"resources\":{}}}",
    "{\"type\":\"node.up\",\"at\":1,\"node\":{\"id\":\"n3\",\"address\":\"10.0.0.3\","
    "\"attrs\":{},\"resources\":{}}}",
    "{\"type\":\"node.state\",\"at\":2,\"id\":\"n3\",\"state\":\"down\"}",
};

static const char *web_put =
    "{\"type\":\"app.put\",\"version\":\"2026-01-01T00:00:00.000Z\",\"app\":{"
    "\"id\":\"/shop/web\",\"cmd\":\"sleep 1000\",\"instances\":3,"
    "\"portDefinitions\":[{\"port\":0,\"name\":\"http\",\"protocol\":\"tcp\"},"
    "{\"port\":0,\"name\":\"dns\",\"protocol\":\"udp,tcp\"}],"
    "\"healthChecks\":[{\"protocol\":\"TCP\",\"portIndex\":0}]}}";

static const char *web_assign =
    "{\"type\":\"task.assign\",\"at\":10,\"tasks\":["
    "{\"id\":\"shop_web.1\",\"app\":\"/shop/web\",\"version\":\"v\",\"node\":\"n1\","
    "\"host\":\"10.0.0.1\",\"ports\":[31000,31001]},"
    "{\"id\":\"shop_web.2\",\"app\":\"/shop/web\",\"version\":\"v\",\"node\":\"n2\","
    "\"host\":\"n2.example\",\"ports\":[31002,31003]},"
    "{\"id\":\"shop_web.3\",\"app\":\"/shop/web\",\"version\":\"v\",\"node\":\"n1\","
    "\"host\":\"10.0.0.1\",\"ports\":[31004,31005]}]}";

static void setup_web(struct fixture *f)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(nodes_cmds); i++) {
        apply(f, nodes_cmds[i]);
    }
    apply(f, web_put);
    apply(f, web_assign);
    apply(f,
          "{\"type\":\"task.status\",\"at\":11,\"id\":\"shop_web.1\",\"state\":"
          "\"running\",\"health\":\"healthy\"}");
    /* Running, but its health checks have not reported yet. */
    apply(f,
          "{\"type\":\"task.status\",\"at\":11,\"id\":\"shop_web.2\",\"state\":"
          "\"running\"}");
    /* shop_web.3 stays staging. */
}

TEST(zone_state_apps_tasks_nodes)
{
    struct fixture f;
    fx_open(&f);
    setup_web(&f);
    struct dns_zone_config cfg = {0};
    struct dns_state_info info = {.leader = "n2"};
    struct dns_zone *z;
    struct dns_state_report rep;
    ASSERT_OK(dns_zone_from_state(f.s, &cfg, &info, &z, &rep));
    ASSERT_UINT_EQ(rep.apps, 1);
    ASSERT_UINT_EQ(rep.tasks, 2);
    ASSERT_UINT_EQ(rep.nodes, 2);
    ASSERT_UINT_EQ(rep.skipped_tasks, 0);
    char *t = zone_text(z);
    /* SOA serial: the applied index. */
    char soa[160];
    snprintf(soa, sizeof(soa),
             "cluster. 5 IN SOA n1.node.cluster. hostmaster.cluster. %u",
             (unsigned)f.index);
    ASSERT_TRUE(strstr(t, soa) != NULL);
    expect_line(t, "cluster. 5 IN NS n1.node.cluster.");
    expect_line(t, "cluster. 5 IN NS n2.node.cluster.");
    expect_no(t, "n3.node");
    expect_line(t, "n1.node.cluster. 5 IN A 10.0.0.1");
    expect_line(t, "n2.node.cluster. 5 IN A 10.0.0.2"); /* the port is dropped */
    expect_line(t, "leader.cluster. 5 IN A 10.0.0.2");
    /* Only the healthy task is served. */
    expect_line(t, "web.shop.cluster. 5 IN A 10.0.0.1");
    expect_line(t,
                "_web._tcp.shop.cluster. 5 IN SRV 0 1 31000 shop-web-1.n1.node.cluster.");
    expect_line(t,
                "_http._tcp.web.shop.cluster. 5 IN SRV 0 1 31000 "
                "shop-web-1.n1.node.cluster.");
    expect_line(t,
                "_dns._udp.web.shop.cluster. 5 IN SRV 0 1 31001 "
                "shop-web-1.n1.node.cluster.");
    expect_line(t,
                "_dns._tcp.web.shop.cluster. 5 IN SRV 0 1 31001 "
                "shop-web-1.n1.node.cluster.");
    expect_line(t, "shop-web-1.n1.node.cluster. 5 IN A 10.0.0.1");
    expect_no(t, "shop-web-2");
    expect_no(t, "31004");
    cm_free_raw(t);
    dns_zone_unref(z);

    /* shop_web.2 turns healthy: its address is its node's (host is a name). */
    apply(&f,
          "{\"type\":\"task.status\",\"at\":12,\"id\":\"shop_web.2\",\"state\":"
          "\"running\",\"health\":\"healthy\"}");
    ASSERT_OK(dns_zone_from_state(f.s, &cfg, &info, &z, NULL));
    t = zone_text(z);
    expect_line(t, "web.shop.cluster. 5 IN A 10.0.0.2");
    expect_line(t,
                "_http._tcp.web.shop.cluster. 5 IN SRV 0 1 31002 "
                "shop-web-2.n2.node.cluster.");
    cm_free_raw(t);
    dns_zone_unref(z);

    /* Killing: out of DNS at once. */
    apply(&f, "{\"type\":\"task.kill\",\"at\":13,\"ids\":[\"shop_web.1\"]}");
    ASSERT_OK(dns_zone_from_state(f.s, &cfg, &info, &z, NULL));
    t = zone_text(z);
    expect_no(t, "shop-web-1");
    expect_no(t, "IN A 10.0.0.1\nweb");
    cm_free_raw(t);
    dns_zone_unref(z);
    fx_close(&f);
}

TEST(zone_state_no_health_checks_and_bridge_ports)
{
    struct fixture f;
    fx_open(&f);
    apply(&f, nodes_cmds[0]);
    apply(&f,
          "{\"type\":\"app.put\",\"version\":\"v1\",\"app\":{\"id\":\"/db\","
          "\"cmd\":\"sleep "
          "9\",\"instances\":1,\"networks\":[{\"mode\":\"container/bridge\"}],"
          "\"container\":{\"type\":\"DOCKER\",\"docker\":{\"image\":\"redis\"},"
          "\"portMappings\":[{\"containerPort\":6379,\"hostPort\":0,\"name\":\"redis\"},"
          "{\"containerPort\":9100,\"hostPort\":0,\"name\":\"metrics\"}]}}}");
    apply(&f,
          "{\"type\":\"task.assign\",\"at\":10,\"tasks\":[{\"id\":\"db.1\","
          "\"app\":\"/db\",\"version\":\"v1\",\"node\":\"n1\",\"host\":\"fd00::1\","
          "\"ports\":[31000,31001]}]}");
    apply(&f,
          "{\"type\":\"task.status\",\"at\":11,\"id\":\"db.1\",\"state\":\"running\"}");
    struct dns_zone_config cfg = {.domain = "dc1.example"};
    struct dns_zone *z;
    ASSERT_OK(dns_zone_from_state(f.s, &cfg, NULL, &z, NULL));
    char *t = zone_text(z);
    expect_line(t, "db.dc1.example. 5 IN AAAA fd00::1");
    expect_line(
        t, "_redis._tcp.db.dc1.example. 5 IN SRV 0 1 31000 db-1.n1.node.dc1.example.");
    expect_line(
        t, "_metrics._tcp.db.dc1.example. 5 IN SRV 0 1 31001 db-1.n1.node.dc1.example.");
    expect_no(t, "leader.");
    cm_free_raw(t);
    dns_zone_unref(z);
    fx_close(&f);
}

TEST(zone_state_cache_parses_changed_specs_only)
{
    struct fixture f;
    fx_open(&f);
    setup_web(&f);
    apply(&f,
          "{\"type\":\"app.put\",\"version\":\"v1\",\"app\":{\"id\":\"/a\","
          "\"cmd\":\"sleep 9\",\"instances\":1}}");
    struct dns_state_cache *cache;
    ASSERT_OK(dns_state_cache_new(&cache));
    struct dns_zone_config cfg = {0};
    struct dns_state_info info = {.cache = cache};
    struct dns_state_report rep;
    struct dns_zone *z;
    ASSERT_OK(dns_zone_from_state(f.s, &cfg, &info, &z, &rep));
    ASSERT_UINT_EQ(rep.parsed_specs, 2);
    dns_zone_unref(z);
    ASSERT_OK(dns_zone_from_state(f.s, &cfg, &info, &z, &rep));
    ASSERT_UINT_EQ(rep.parsed_specs, 0);
    char *t1 = zone_text(z);
    dns_zone_unref(z);
    /* A new version of one app: only that one is parsed again; the zone built
     * from the cache equals one built without it. */
    apply(&f,
          "{\"type\":\"app.put\",\"version\":\"v2\",\"app\":{\"id\":\"/a\","
          "\"cmd\":\"sleep 8\",\"instances\":1}}");
    ASSERT_OK(dns_zone_from_state(f.s, &cfg, &info, &z, &rep));
    ASSERT_UINT_EQ(rep.parsed_specs, 1);
    char *t2 = zone_text(z);
    dns_zone_unref(z);
    ASSERT_OK(dns_zone_from_state(f.s, &cfg, NULL, &z, &rep));
    ASSERT_UINT_EQ(rep.parsed_specs, 2);
    char *t3 = zone_text(z);
    dns_zone_unref(z);
    /* Serials differ (applied index); the rest is the same. */
    ASSERT_STR_EQ(strchr(t2, '\n') + 1, strchr(t3, '\n') + 1);
    ASSERT_TRUE(strstr(t1, "web.shop.cluster. 5 IN A 10.0.0.1") != NULL);
    /* Deleting an app drops it from the cache. */
    apply(&f, "{\"type\":\"app.delete\",\"at\":20,\"id\":\"/a\"}");
    ASSERT_OK(dns_zone_from_state(f.s, &cfg, &info, &z, &rep));
    ASSERT_UINT_EQ(rep.apps, 1);
    ASSERT_UINT_EQ(rep.parsed_specs, 0);
    dns_zone_unref(z);
    cm_free_raw(t1);
    cm_free_raw(t2);
    cm_free_raw(t3);
    dns_state_cache_free(cache);
    fx_close(&f);
}

TEST(zone_state_leader_vips_and_answers)
{
    struct fixture f;
    fx_open(&f);
    setup_web(&f);
    struct dns_addr leader, vip;
    ASSERT_OK(dns_addr_parse("192.0.2.9", &leader));
    ASSERT_OK(dns_addr_parse("198.18.0.1", &vip));
    struct dns_vip vips[] = {{.path = "/shop/web", .addr = vip}};
    struct dns_state_info info = {.leader_addr = &leader, .vips = vips, .nvips = 1};
    struct dns_zone_config cfg = {.serial = 77};
    struct dns_zone *z;
    ASSERT_OK(dns_zone_from_state(f.s, &cfg, &info, &z, NULL));
    char *t = zone_text(z);
    expect_line(t, "leader.cluster. 5 IN A 192.0.2.9");
    expect_line(t, "web.shop.vip.cluster. 5 IN A 198.18.0.1");
    ASSERT_TRUE(strstr(t, "hostmaster.cluster. 77 ") != NULL);
    cm_free_raw(t);

    /* The answer engine over the built zone. */
    uint8_t q[512], r[4096];
    struct dns_writer w;
    struct dns_header h = {.id = 7};
    dns_writer_init(&w, q, sizeof(q), &h);
    struct dns_question qq = {.qtype = DNS_TYPE_A, .qclass = DNS_CLASS_IN};
    ASSERT_OK(dns_name_from_str("WEB.shop.cluster", &qq.name));
    ASSERT_OK(dns_writer_question(&w, &qq));
    size_t qlen = dns_writer_finish(&w);
    struct dns_answer_opts o = {0};
    struct dns_answer_info ai;
    int n = dns_answer(z, q, qlen, r, sizeof(r), &o, &ai);
    ASSERT_INT_OP(n, >, 0);
    ASSERT_INT_EQ(ai.rcode, DNS_RCODE_NOERROR);
    struct dns_reader rd;
    ASSERT_OK(dns_reader_init(&rd, r, (size_t)n));
    ASSERT_UINT_EQ(rd.header.ancount, 1);
    dns_zone_unref(z);
    fx_close(&f);
}

/* Named VIPs the leader allocated into the replica answer as <name>.vip.<domain>,
 * and go away with vip.delete. */
TEST(zone_state_vips_from_the_replica)
{
    struct fixture f;
    fx_open(&f);
    setup_web(&f);
    apply(&f,
          "{\"type\":\"vip.put\",\"vips\":[{\"name\":\"web\",\"address\":"
          "\"198.18.0.7\"},{\"name\":\"shop/api\",\"address\":\"198.18.3.4\"}]}");
    struct dns_zone_config cfg = {.domain = "corp"};
    struct dns_zone *z;
    ASSERT_OK(dns_zone_from_state(f.s, &cfg, NULL, &z, NULL));
    char *t = zone_text(z);
    expect_line(t, "web.vip.corp. 5 IN A 198.18.0.7");
    expect_line(t, "api.shop.vip.corp. 5 IN A 198.18.3.4");
    cm_free_raw(t);
    dns_zone_unref(z);

    apply(&f, "{\"type\":\"vip.delete\",\"names\":[\"web\"]}");
    ASSERT_OK(dns_zone_from_state(f.s, &cfg, NULL, &z, NULL));
    t = zone_text(z);
    expect_no(t, "web.vip.corp.");
    expect_line(t, "api.shop.vip.corp. 5 IN A 198.18.3.4");
    cm_free_raw(t);
    dns_zone_unref(z);
    fx_close(&f);
}

TEST(zone_state_empty_and_bad_config)
{
    struct fixture f;
    fx_open(&f);
    struct dns_zone_config cfg = {0};
    struct dns_zone *z;
    ASSERT_OK(dns_zone_from_state(f.s, &cfg, NULL, &z, NULL));
    ASSERT_UINT_EQ(dns_zone_size(z), 1); /* the apex */
    dns_zone_unref(z);
    struct dns_zone_config bad = {.domain = "a..b"};
    ASSERT_ERR(dns_zone_from_state(f.s, &bad, NULL, &z, NULL), CM_EINVAL);
    fx_close(&f);
}

static struct fixture *oom_fx;

static int oom_build(void *arg)
{
    struct dns_state_cache *cache = arg;
    struct dns_zone_config cfg = {0};
    struct dns_state_info info = {.leader = "n1", .cache = cache};
    struct dns_zone *z;
    int rv = dns_zone_from_state(oom_fx->s, &cfg, &info, &z, NULL);
    if (rv == 0) {
        dns_zone_unref(z);
    }
    /* lib/state reports its own allocation failures as storage errors. */
    return rv == CM_EIO ? CM_ENOMEM : rv;
}

TEST(zone_state_oom_walk)
{
    struct fixture f;
    fx_open(&f);
    setup_web(&f);
    oom_fx = &f;
    ASSERT_INT_OP(test_alloc_walk(oom_build, NULL), >, 10);
    /* With a warm cache, and with one that failures keep emptying. */
    struct dns_state_cache *cache;
    ASSERT_OK(dns_state_cache_new(&cache));
    ASSERT_OK(oom_build(cache));
    ASSERT_INT_OP(test_alloc_walk(oom_build, cache), >, 10);
    dns_state_cache_free(cache);
    fx_close(&f);
}
