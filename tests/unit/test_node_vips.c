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
