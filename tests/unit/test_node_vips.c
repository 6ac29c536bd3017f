/* lib/node vips.c: the leader's named-VIP plan and the VIP table built from a
 * real state.db replica (no network: the runner is covered by
 * tests/system/test_vip_agent.py). */
#include <arpa/inet.h>
#include <stdlib.h>
#include <unistd.h>

#include "node/vips.h"
#include "state/db.h"
#include "test.h"

struct fixture {
    char dir[64];
    struct cm_state *s;
    uint64_t index;
};

static void fx_open(struct fixture *f)
{
    snprintf(f->dir, sizeof(f->dir), "/tmp/cm-vips-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(f->dir));
    char path[96];
    snprintf(path, sizeof(path), "%s/state.db", f->dir);
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_open(path, &f->s, &eb));
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
    cm_errbuf_clear(&eb);
    int rv = cm_state_validate(f->s, cmd, strlen(cmd), &eb);
    if (rv != 0) {
        test__fail(__FILE__, __LINE__, "validate: %s", eb.msg);
        return;
    }
    ASSERT_OK(cm_state_apply(f->s, ++f->index, cmd, strlen(cmd), &eb));
}

/* Apply what the leader's plan proposes, as the controller would. */
static int plan_and_apply(struct fixture *f)
{
    cJSON *cmds = NULL;
    struct cm_errbuf eb;
    ASSERT_OK(cm_vips_plan(f->s, "198.18.0.0/15", &cmds, &eb));
    int n = cJSON_GetArraySize(cmds);
    for (cJSON *c = cmds->child; c != NULL; c = c->next) {
        char *text = cJSON_PrintUnformatted(c);
        apply(f, text);
        cJSON_free(text);
    }
    cJSON_Delete(cmds);
    return n;
}

static int vip_cb(void *data, const struct cm_vip_row *row)
{
    char *out = data;
    size_t len = strlen(out);
    snprintf(out + len, 512 - len, "%s=%s;", row->name, row->address);
    return 0;
}

static const char *vips_text(struct fixture *f, char *buf)
{
    buf[0] = '\0';
    ASSERT_OK(cm_state_vips(f->s, vip_cb, buf));
    return buf;
}

static void node_up(struct fixture *f)
{
    apply(f,
          "{\"type\":\"node.up\",\"at\":1,\"node\":{\"id\":\"n1\",\"address\":"
          "\"10.0.0.1\",\"attrs\":{},\"resources\":{}}}");
}

static void assign(struct fixture *f, const char *app, const char *id, const char *host,
                   int port)
{
    char cmd[512];
    snprintf(
        cmd, sizeof(cmd),
        "{\"type\":\"task.assign\",\"at\":2,\"tasks\":[{\"id\":\"%s\",\"app\":\"%s\","
        "\"version\":\"v\",\"node\":\"n1\",\"host\":\"%s\",\"ports\":[%d]}]}",
        id, app, host, port);
    apply(f, cmd);
}

static void status(struct fixture *f, const char *id, const char *state,
                   const char *health)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"task.status\",\"at\":3,\"id\":\"%s\",\"state\":\"%s\"%s%s%s}",
             id, state, health ? ",\"health\":\"" : "", health ? health : "",
             health ? "\"" : "");
    apply(f, cmd);
}

/* "vip[mode,pp]: backend,backend | ..." of a table, in its sorted order. */
static void table_text(const struct lb_table *t, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < lb_table_count(t); i++) {
        const struct lb_vip *v = lb_table_at(t, i);
        char ep[LB_ENDPOINT_STRLEN];
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%s/%s%s%s:", i ? " | " : "",
                 lb_endpoint_str(v->vip, ep), v->proto == LB_PROTO_TCP ? "tcp" : "udp",
                 v->mode == LB_MODE_PROXY ? " proxy" : "",
                 v->proxy_protocol ? " pp2" : "");
        for (size_t k = 0; k < v->nbackends; k++) {
            len = strlen(out);
            snprintf(out + len, cap - len, " %s", lb_endpoint_str(v->backends[k].ep, ep));
        }
    }
}

TEST(vips_plan_allocates_stable_addresses_and_frees_unused_names)
{
    struct fixture f;
    fx_open(&f);
    char buf[512];
    ASSERT_INT_EQ(plan_and_apply(&f), 0); /* nothing declared */
    apply(&f,
          "{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/"
          "a\",\"cmd\":\"sleep 9\","
          "\"portDefinitions\":[{\"port\":0,\"labels\":{\"VIP_0\":\"/web:80\"}},"
          "{\"port\":0,\"labels\":{\"VIP_1\":\"api:81\"}}]}}");
    ASSERT_INT_EQ(plan_and_apply(&f), 1);
    char first[512];
    snprintf(first, sizeof(first), "%s", vips_text(&f, buf));
    ASSERT_TRUE(strstr(first, "api=198.1") != NULL);
    ASSERT_TRUE(strstr(first, "web=198.1") != NULL);
    /* Stable: planning again changes nothing. */
    ASSERT_INT_EQ(plan_and_apply(&f), 0);
    ASSERT_STR_EQ(vips_text(&f, buf), first);

    /* A second app sharing "/web" and declaring an address VIP. */
    apply(&f,
          "{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/"
          "b\",\"cmd\":\"sleep 9\","
          "\"portDefinitions\":[{\"port\":0,\"labels\":{\"VIP_0\":\"web:80\","
          "\"VIP_1\":\"198.18.5.5:80\"}}]}}");
    ASSERT_INT_EQ(plan_and_apply(&f), 0);
    ASSERT_STR_EQ(vips_text(&f, buf), first);

    /* /a goes: "api" is freed, "web" stays (still declared by /b). */
    apply(&f, "{\"type\":\"app.delete\",\"id\":\"/a\"}");
    ASSERT_INT_EQ(plan_and_apply(&f), 1);
    ASSERT_TRUE(strstr(vips_text(&f, buf), "api=") == NULL);
    ASSERT_TRUE(strstr(buf, "web=") != NULL);

    struct cm_errbuf eb;
    cJSON *cmds = NULL;
    ASSERT_ERR(cm_vips_plan(f.s, "198.18.0.1/15", &cmds, &eb), CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "--vip-cidr") != NULL);
    fx_close(&f);
}

TEST(vips_plan_avoids_address_vips_and_reports_a_full_range)
{
    struct fixture f;
    fx_open(&f);
    /* /30 has two usable addresses; an address VIP takes one of them. */
    apply(&f,
          "{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/"
          "a\",\"cmd\":\"sleep 9\","
          "\"portDefinitions\":[{\"port\":0,\"labels\":{\"VIP_0\":\"10.9.9.1:80\","
          "\"VIP_1\":\"/one:80\"}}]}}");
    cJSON *cmds = NULL;
    struct cm_errbuf eb;
    ASSERT_OK(cm_vips_plan(f.s, "10.9.9.0/30", &cmds, &eb));
    char *text = cJSON_PrintUnformatted(cmds);
    ASSERT_TRUE(strstr(text, "\"name\":\"one\",\"address\":\"10.9.9.2\"") != NULL);
    cJSON_free(text);
    text = cJSON_PrintUnformatted(cmds->child);
    apply(&f, text);
    cJSON_free(text);
    cJSON_Delete(cmds);
    apply(&f,
          "{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/"
          "b\",\"cmd\":\"sleep 9\","
          "\"portDefinitions\":[{\"port\":0,\"labels\":{\"VIP_0\":\"/two:80\"}}]}}");
    ASSERT_ERR(cm_vips_plan(f.s, "10.9.9.0/30", &cmds, &eb), CM_ENOSPC);
    ASSERT_TRUE(strstr(eb.msg, "'/two'") != NULL);
    fx_close(&f);
}

TEST(vips_table_backends_are_running_healthy_tasks)
{
    struct fixture f;
    fx_open(&f);
    node_up(&f);
    /* web: named VIP on its first port; no health checks. */
    apply(&f,
          "{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/"
          "web\",\"cmd\":\"sleep 9\","
          "\"portDefinitions\":[{\"port\":0,\"labels\":{\"VIP_0\":\"/web:8080\"}}]}}");
    /* api: address VIP asking for PROXY v2, with health checks. */
    apply(&f,
          "{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/"
          "api\",\"cmd\":\"sleep 9\","
          "\"healthChecks\":[{\"protocol\":\"TCP\",\"portIndex\":0}],"
          "\"portDefinitions\":[{\"port\":0,\"protocol\":\"tcp\",\"labels\":{"
          "\"VIP_0\":\"198.18.9.9:90\",\"CLUSTERCTL_PROXY_PROTOCOL\":\"v2\"}}]}}");
    plan_and_apply(&f);
    char buf[512];
    vips_text(&f, buf);
    char web[32];
    ASSERT_INT_EQ(sscanf(buf, "web=%31[0-9.];", web), 1);

    assign(&f, "/web", "web.1", "10.0.0.1", 31001);
    assign(&f, "/web", "web.2", "10.0.0.2", 31002);
    assign(&f, "/web", "web.3", "n1", 31003); /* a host name: the node's address */
    assign(&f, "/web", "web.4", "10.0.0.4", 31004);
    assign(&f, "/web", "web.5", "10.0.0.5", 31005);
    status(&f, "web.1", "running", NULL);
    status(&f, "web.2", "running", "healthy");
    status(&f, "web.3", "running", NULL);
    status(&f, "web.4", "running", "unhealthy"); /* out */
    status(&f, "web.5", "running", NULL);
    apply(&f, "{\"type\":\"task.kill\",\"at\":4,\"ids\":[\"web.5\"]}"); /* out: killing */
    assign(&f, "/api", "api.1", "10.0.0.1", 32001);
    assign(&f, "/api", "api.2", "10.0.0.2", 32002);
    assign(&f, "/api", "api.3", "10.0.0.3", 32003);
    status(&f, "api.1", "running", "healthy");
    status(&f, "api.2", "running", NULL); /* not checked yet: out */
    /* api.3 staging: out */

    struct lb_table *t = NULL;
    struct cm_errbuf eb;
    ASSERT_OK(cm_vips_build(f.s, NULL, &t, &eb));
    char got[1024], want[1024];
    table_text(t, got, sizeof(got));
    snprintf(want, sizeof(want),
             "%s:8080/tcp: 10.0.0.1:31001 10.0.0.2:31002 10.0.0.1:31003 | "
             "198.18.9.9:90/tcp proxy pp2: 10.0.0.1:32001",
             web);
    /* The table sorts VIPs by address: put them in that order. */
    struct in_addr a;
    inet_pton(AF_INET, web, &a);
    if (ntohl(a.s_addr) > ntohl(inet_addr("198.18.9.9"))) {
        snprintf(want, sizeof(want),
                 "198.18.9.9:90/tcp proxy pp2: 10.0.0.1:32001 | "
                 "%s:8080/tcp: 10.0.0.1:31001 10.0.0.2:31002 10.0.0.1:31003",
                 web);
    }
    ASSERT_STR_EQ(got, want);

    /* A backend that stops running leaves the next table; the counters of the
     * others carry over (lb_table_new's @prev). */
    status(&f, "web.1", "failed", NULL);
    struct lb_table *t2 = NULL;
    ASSERT_OK(cm_vips_build(f.s, t, &t2, &eb));
    table_text(t2, got, sizeof(got));
    ASSERT_TRUE(strstr(got, "31001") == NULL);
    ASSERT_TRUE(strstr(got, "10.0.0.2:31002 10.0.0.1:31003") != NULL);
    lb_table_unref(t);
    lb_table_unref(t2);
    fx_close(&f);
}

/* A VIP whose every task is draining keeps them as backends (they serve until
 * their drain time ends) rather than refuse clients; once another task is a
 * backend, the draining ones leave. */
TEST(vips_table_falls_back_to_draining_tasks_only_when_nothing_else_serves)
{
    struct fixture f;
    fx_open(&f);
    node_up(&f);
    apply(&f,
          "{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/"
          "web\",\"cmd\":\"sleep 9\",\"portDefinitions\":[{\"port\":0,\"labels\":{"
          "\"VIP_0\":\"198.18.5.5:80\"}}]}}");
    assign(&f, "/web", "web.1", "10.0.0.1", 31001);
    assign(&f, "/web", "web.2", "10.0.0.2", 31002);
    status(&f, "web.1", "running", NULL);
    status(&f, "web.2", "running", NULL);
    apply(&f, "{\"type\":\"task.kill\",\"at\":4,\"ids\":[\"web.1\",\"web.2\"]}");
    assign(&f, "/web", "web.3", "10.0.0.3", 31003); /* staging: not a backend */
    struct lb_table *t = NULL;
    struct cm_errbuf eb;
    ASSERT_OK(cm_vips_build(f.s, NULL, &t, &eb));
    char got[512];
    table_text(t, got, sizeof(got));
    ASSERT_STR_EQ(got, "198.18.5.5:80/tcp: 10.0.0.1:31001 10.0.0.2:31002");
    ASSERT_INT_EQ(lb_table_at(t, 0)->neligible, 2);
    lb_table_unref(t);

    status(&f, "web.3", "running", NULL);
    ASSERT_OK(cm_vips_build(f.s, NULL, &t, &eb));
    table_text(t, got, sizeof(got));
    ASSERT_STR_EQ(got, "198.18.5.5:80/tcp: 10.0.0.3:31003");
    lb_table_unref(t);
    fx_close(&f);
}

TEST(vips_table_lists_vips_without_backends_and_skips_unallocated_names)
{
    struct fixture f;
    fx_open(&f);
    apply(&f,
          "{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/"
          "web\",\"cmd\":\"sleep 9\","
          "\"portDefinitions\":[{\"port\":0,\"protocol\":\"udp,tcp\",\"labels\":{"
          "\"VIP_0\":\"198.18.7.7:53\",\"VIP_1\":\"/notyet:80\"}}]}}");
    struct lb_table *t = NULL;
    struct cm_errbuf eb;
    ASSERT_OK(cm_vips_build(f.s, NULL, &t, &eb));
    char got[512];
    table_text(t, got, sizeof(got));
    ASSERT_STR_EQ(got, "198.18.7.7:53/tcp: | 198.18.7.7:53/udp:");
    lb_table_unref(t);
    fx_close(&f);
}

/* ------------------------------------------------------------------ the operator's view
 */

static const cJSON *jget(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (v == NULL) {
        test__fail(__FILE__, __LINE__, "no field '%s'", key);
    }
    return v;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = jget(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const cJSON *vip_by_port(const cJSON *vips, int port)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, vips)
    {
        if (jget(v, "port")->valueint == port) {
            return v;
        }
    }
    test__fail(__FILE__, __LINE__, "no VIP on port %d", port);
}

static const cJSON *backend_of(const cJSON *vip, const char *task)
{
    const cJSON *b;
    cJSON_ArrayForEach(b, jget(vip, "backends"))
    {
        const char *id = jstr(b, "taskId");
        if (id != NULL && strcmp(id, task) == 0) {
            return b;
        }
    }
    return NULL;
}

static cJSON *view(struct fixture *f, const struct lb_table *t, bool auto_is_nat)
{
    struct cm_buf out = {0};
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    ASSERT_OK(cm_vips_view_json(f->s, t, auto_is_nat, &out, &eb));
    cJSON *j = cJSON_Parse(out.data);
    ASSERT_NOT_NULL(j);
    ASSERT_TRUE(cJSON_IsArray(j));
    cm_buf_done(&out);
    return j;
}

TEST(vips_view_lists_backends_tasks_and_why_not)
{
    struct fixture f;
    fx_open(&f);
    node_up(&f);
    apply(&f,
          "{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/"
          "web\",\"cmd\":\"sleep 9\","
          "\"portDefinitions\":[{\"port\":0,\"labels\":{\"VIP_0\":\"/web:8080\"}}]}}");
    apply(&f,
          "{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/"
          "api\",\"cmd\":\"sleep 9\","
          "\"healthChecks\":[{\"protocol\":\"TCP\",\"portIndex\":0}],"
          "\"portDefinitions\":[{\"port\":0,\"protocol\":\"tcp\",\"labels\":{"
          "\"VIP_0\":\"198.18.9.9:90\",\"CLUSTERCTL_PROXY_PROTOCOL\":\"v2\"}}]}}");
    plan_and_apply(&f);
    char buf[512], web[32];
    vips_text(&f, buf);
    ASSERT_INT_EQ(sscanf(buf, "web=%31[0-9.];", web), 1);
    assign(&f, "/web", "web.1", "10.0.0.1", 31001);
    assign(&f, "/web", "web.2", "10.0.0.2", 31002);
    assign(&f, "/web", "web.4", "10.0.0.4", 31004);
    assign(&f, "/web", "web.5", "10.0.0.5", 31005);
    assign(&f, "/web", "web.6", "10.0.0.6", 31006);
    assign(&f, "/web", "web.7", "10.0.0.7", 31007);
    status(&f, "web.1", "running", NULL);
    status(&f, "web.2", "running", "healthy");
    status(&f, "web.4", "running", "unhealthy");
    status(&f, "web.5", "running", NULL);
    apply(&f, "{\"type\":\"task.kill\",\"at\":4,\"ids\":[\"web.5\"]}"); /* killing */
    /* web.6 staging */
    status(&f, "web.7", "failed", NULL); /* over: not listed */
    assign(&f, "/api", "api.1", "10.0.0.1", 32001);
    assign(&f, "/api", "api.2", "10.0.0.2", 32002);
    status(&f, "api.1", "running", "healthy");
    status(&f, "api.2", "running", NULL); /* not checked yet */

    struct lb_table *t = NULL;
    struct cm_errbuf eb;
    ASSERT_OK(cm_vips_build(f.s, NULL, &t, &eb));
    /* Two connections open to web.2 (the proxy counts them so). */
    const struct lb_vip *wv =
        lb_table_at(t, 0)->vip.port == 8080 ? lb_table_at(t, 0) : lb_table_at(t, 1);
    for (size_t i = 0; i < wv->nbackends; i++) {
        if (wv->backends[i].ep.port == 31002) {
            lb_backend_conn_begin(&wv->backends[i]);
            lb_backend_conn_begin(&wv->backends[i]);
        }
    }

    /* A nat node: the named VIP goes to nat, the PROXY v2 one to the proxy. */
    cJSON *j = view(&f, t, true);
    ASSERT_INT_EQ(cJSON_GetArraySize(j), 2);
    const cJSON *w = vip_by_port(j, 8080);
    ASSERT_STR_EQ(jstr(w, "name"), "web");
    ASSERT_STR_EQ(jstr(w, "address"), web);
    ASSERT_STR_EQ(jstr(w, "protocol"), "tcp");
    ASSERT_STR_EQ(jstr(w, "mode"), "nat");
    ASSERT_TRUE(cJSON_IsFalse(jget(w, "proxyProtocol")));
    ASSERT_INT_EQ(cJSON_GetArraySize(jget(w, "apps")), 1);
    ASSERT_STR_EQ(cJSON_GetArrayItem(jget(w, "apps"), 0)->valuestring, "/web");
    ASSERT_INT_EQ(jget(w, "eligibleBackends")->valueint, 2);
    ASSERT_TRUE(cJSON_IsNull(jget(w, "metrics"))); /* nat: conntrack counts */
    ASSERT_TRUE(cJSON_IsNull(jget(w, "listenError")));
    /* web.1, web.2 backends; web.4, web.5, web.6 listed with why; web.7 over. */
    ASSERT_INT_EQ(cJSON_GetArraySize(jget(w, "backends")), 5);
    const cJSON *b = backend_of(w, "web.2");
    ASSERT_NOT_NULL(b);
    ASSERT_STR_EQ(jstr(b, "appId"), "/web");
    ASSERT_STR_EQ(jstr(b, "host"), "10.0.0.2");
    ASSERT_INT_EQ(jget(b, "port")->valueint, 31002);
    ASSERT_TRUE(cJSON_IsTrue(jget(b, "eligible")));
    ASSERT_TRUE(cJSON_IsNull(jget(b, "reason")));
    ASSERT_TRUE(cJSON_IsNull(jget(b, "activeConnections"))); /* nat */
    ASSERT_TRUE(cJSON_IsTrue(jget(backend_of(w, "web.1"), "eligible")));
    ASSERT_STR_EQ(jstr(backend_of(w, "web.4"), "reason"), "unhealthy");
    ASSERT_STR_EQ(jstr(backend_of(w, "web.5"), "reason"), "draining");
    ASSERT_STR_EQ(jstr(backend_of(w, "web.6"), "reason"), "not running");
    ASSERT_TRUE(cJSON_IsFalse(jget(backend_of(w, "web.6"), "eligible")));
    ASSERT_NULL(backend_of(w, "web.7"));

    const cJSON *a = vip_by_port(j, 90);
    ASSERT_TRUE(cJSON_IsNull(jget(a, "name")));
    ASSERT_STR_EQ(jstr(a, "address"), "198.18.9.9");
    ASSERT_STR_EQ(jstr(a, "mode"), "proxy");
    ASSERT_TRUE(cJSON_IsTrue(jget(a, "proxyProtocol")));
    ASSERT_INT_EQ(jget(a, "eligibleBackends")->valueint, 1);
    ASSERT_INT_EQ(jget(jget(a, "metrics"), "total")->valueint, 0);
    ASSERT_INT_EQ(jget(jget(a, "metrics"), "bytesOut")->valueint, 0);
    ASSERT_INT_EQ(jget(backend_of(a, "api.1"), "activeConnections")->valueint, 0);
    ASSERT_STR_EQ(jstr(backend_of(a, "api.2"), "reason"), "not yet healthy");
    cJSON_Delete(j);

    /* A proxy node: both proxied, with connection counts. */
    j = view(&f, t, false);
    w = vip_by_port(j, 8080);
    ASSERT_STR_EQ(jstr(w, "mode"), "proxy");
    ASSERT_INT_EQ(jget(backend_of(w, "web.2"), "activeConnections")->valueint, 2);
    ASSERT_INT_EQ(jget(backend_of(w, "web.1"), "activeConnections")->valueint, 0);
    ASSERT_TRUE(cJSON_IsNull(jget(backend_of(w, "web.4"), "activeConnections")));
    ASSERT_INT_EQ(jget(jget(w, "metrics"), "active")->valueint, 0);
    cJSON_Delete(j);

    /* The replica moved on, the programmed table not yet: web.6 runs now. */
    status(&f, "web.6", "running", NULL);
    j = view(&f, t, true);
    b = backend_of(vip_by_port(j, 8080), "web.6");
    ASSERT_TRUE(cJSON_IsFalse(jget(b, "eligible")));
    ASSERT_STR_EQ(jstr(b, "reason"), "not programmed yet");
    cJSON_Delete(j);

    /* Nothing programmed: no VIPs. */
    j = view(&f, NULL, true);
    ASSERT_INT_EQ(cJSON_GetArraySize(j), 0);
    cJSON_Delete(j);

    lb_table_unref(t);
    fx_close(&f);
}

/* A table made directly with lb: every mode, an address VIP, a name that needs
 * escaping in a label, a VIP without an eligible backend, a UDP VIP that only nat
 * serves. */
static struct lb_table *metrics_table(void)
{
    struct lb_backend_spec bes[] = {
        {{{htonl(0x0a000001)}, 31001}, 1, false},
        {{{htonl(0x0a000002)}, 31002}, 1, false},
        {{{htonl(0x0a000003)}, 31003}, 1, true}, /* draining */
    };
    struct lb_vip_spec specs[] = {
        {{{htonl(0xc6120001)}, 80}, LB_PROTO_TCP, "web", LB_MODE_AUTO, false, bes, 3},
        {{{htonl(0xc6120002)}, 53}, LB_PROTO_UDP, NULL, LB_MODE_NAT, false, bes, 1},
        {{{htonl(0xc6120003)}, 443},
         LB_PROTO_TCP,
         "a\"b\\c",
         LB_MODE_PROXY,
         true,
         bes,
         0},
        {{{htonl(0xc6120004)}, 53}, LB_PROTO_UDP, "dns", LB_MODE_AUTO, false, bes, 2},
    };
    struct lb_table *t = NULL;
    struct cm_errbuf eb;
    ASSERT_OK(lb_table_new(specs, CM_ARRAY_SIZE(specs), NULL, &t, &eb));
    return t;
}

static bool has_line(const struct cm_buf *b, const char *line)
{
    char want[512];
    snprintf(want, sizeof(want), "\n%s\n", line);
    return strstr(b->data, want) != NULL;
}

TEST(vips_metrics_per_vip_prometheus_text)
{
    struct lb_table *t = metrics_table();
    struct cm_buf out = {0};

    /* A proxy node: AUTO and PROXY VIPs are proxied, the NAT one is not. */
    ASSERT_OK(cm_vips_view_metrics(t, false, &out));
    ASSERT_TRUE(has_line(&out, "# TYPE clusterctl_vip_connections_total counter"));
    ASSERT_TRUE(has_line(&out, "# TYPE clusterctl_vip_connections_active gauge"));
    ASSERT_TRUE(has_line(&out, "# TYPE clusterctl_vip_backends gauge"));
    ASSERT_TRUE(has_line(&out, "# TYPE clusterctl_vip_listen_error gauge"));
    ASSERT_TRUE(has_line(&out,
                         "clusterctl_vip_backends{vip=\"web\",address="
                         "\"198.18.0.1\",port=\"80\",proto=\"tcp\",mode=\"proxy\"} "
                         "2"));
    ASSERT_TRUE(has_line(&out,
                         "clusterctl_vip_backends{vip=\"198.18.0.2:53\",address="
                         "\"198.18.0.2\",port=\"53\",proto=\"udp\",mode=\"nat\"} 1"));
    ASSERT_TRUE(has_line(&out,
                         "clusterctl_vip_backends{vip=\"a\\\"b\\\\c\",address="
                         "\"198.18.0.3\",port=\"443\",proto=\"tcp\",mode=\"proxy\"} "
                         "0"));
    static const char *const counters[] = {
        "clusterctl_vip_connections_active",       "clusterctl_vip_connections_total",
        "clusterctl_vip_connections_failed_total", "clusterctl_vip_bytes_in_total",
        "clusterctl_vip_bytes_out_total",
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(counters); i++) {
        char line[256];
        snprintf(line, sizeof(line),
                 "%s{vip=\"web\",address=\"198.18.0.1\",port=\"80\",proto=\"tcp\","
                 "mode=\"proxy\"} 0",
                 counters[i]);
        ASSERT_TRUE(has_line(&out, line));
        /* nat mode has no userspace counters */
        snprintf(line, sizeof(line), "%s{vip=\"198.18.0.2:53\"", counters[i]);
        ASSERT_NULL(strstr(out.data, line));
    }
    /* UDP in proxy mode: not served (the proxy is TCP only), no counters. */
    ASSERT_TRUE(has_line(&out,
                         "clusterctl_vip_backends{vip=\"dns\",address="
                         "\"198.18.0.4\",port=\"53\",proto=\"udp\",mode=\"none\"} "
                         "2"));
    ASSERT_NULL(strstr(out.data, "clusterctl_vip_connections_total{vip=\"dns\""));
    /* Listening works (nothing set it): no sample. */
    ASSERT_NULL(strstr(out.data, "clusterctl_vip_listen_error{"));
    /* Each family's samples follow its own TYPE line. */
    const char *type =
        strstr(out.data, "# TYPE clusterctl_vip_connections_total counter");
    const char *sample = strstr(out.data, "clusterctl_vip_connections_total{");
    const char *next = strstr(out.data, "# TYPE clusterctl_vip_connections_failed_total");
    ASSERT_TRUE(type != NULL && sample > type && next > sample);

    /* A nat node: the AUTO VIP is nat too, its counters go. */
    cm_buf_clear(&out);
    ASSERT_OK(cm_vips_view_metrics(t, true, &out));
    ASSERT_TRUE(has_line(&out,
                         "clusterctl_vip_backends{vip=\"web\",address="
                         "\"198.18.0.1\",port=\"80\",proto=\"tcp\",mode=\"nat\"} 2"));
    ASSERT_NULL(strstr(out.data, "clusterctl_vip_connections_total{vip=\"web\""));
    ASSERT_NOT_NULL(strstr(out.data, "clusterctl_vip_connections_total{vip=\"a\\\"b"));
    ASSERT_NOT_NULL(strstr(out.data,
                           "clusterctl_vip_backends{vip=\"dns\",address="
                           "\"198.18.0.4\",port=\"53\",proto=\"udp\","
                           "mode=\"nat\"} 2\n"));

    /* No table yet: the families alone. */
    cm_buf_clear(&out);
    ASSERT_OK(cm_vips_view_metrics(NULL, true, &out));
    ASSERT_NULL(strstr(out.data, "{"));
    ASSERT_NOT_NULL(strstr(out.data, "# HELP clusterctl_vip_backends "));
    cm_buf_done(&out);
    lb_table_unref(t);
}

static int metrics_once(void *arg)
{
    struct cm_buf out = {0};
    int rv = cm_vips_view_metrics(arg, false, &out);
    cm_buf_done(&out);
    return rv;
}

TEST(vips_metrics_out_of_memory)
{
    struct lb_table *t = metrics_table();
    ASSERT_INT_OP(test_alloc_walk(metrics_once, t), >, 0);
    lb_table_unref(t);
}

struct view_walk {
    struct fixture *f;
    const struct lb_table *t;
};

static int view_once(void *arg)
{
    struct view_walk *w = arg;
    struct cm_buf out = {0};
    int rv = cm_vips_view_json(w->f->s, w->t, false, &out, NULL);
    cm_buf_done(&out);
    return rv;
}

TEST(vips_view_out_of_memory)
{
    struct fixture f;
    fx_open(&f);
    node_up(&f);
    apply(
        &f,
        "{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/"
        "web\",\"cmd\":\"sleep 9\","
        "\"portDefinitions\":[{\"port\":0,\"labels\":{\"VIP_0\":\"198.18.1.1:80\"}}]}}");
    assign(&f, "/web", "web.1", "10.0.0.1", 31001);
    assign(&f, "/web", "web.2", "10.0.0.2", 31002);
    status(&f, "web.1", "running", NULL);
    struct lb_table *t = NULL;
    struct cm_errbuf eb;
    ASSERT_OK(cm_vips_build(f.s, NULL, &t, &eb));
    struct view_walk w = {&f, t};
    ASSERT_INT_OP(test_alloc_walk(view_once, &w), >, 10);
    lb_table_unref(t);
    fx_close(&f);
}
