/* lib/agent: the pure parts of health and readiness checks: Marathon's result
 * rules, consecutive-failure counting, the grace period, the kill limit and port
 * selection (shared/specs/compat.md §1.7, §1.8). */
#include <stdio.h>
#include <stdlib.h>

#include <ev.h>

#include <cjson/cJSON.h>

#include "agent/agent.h"
#include "agent/agent_int.h"
#include "net/http.h"
#include "state/state.h"
#include "test.h"

static struct cm_app *parse(const char *json)
{
    struct cm_app *app = NULL;
    struct cm_app_parse_opts o = {.features = CM_APP_FEAT_ALL};
    struct cm_app_report rep = {0};
    int rv = cm_app_parse(json, strlen(json), &o, &app, &rep);
    for (size_t i = 0; rv != 0 && i < rep.n; i++) {
        printf("# %s: %s\n", rep.v[i].path, rep.v[i].msg);
    }
    cm_app_report_done(&rep);
    ASSERT_OK(rv);
    return app;
}

TEST(http_result_rules)
{
    static const struct {
        int status;
        bool ignore_1xx;
        enum cm_hc_result want;
    } cases[] = {
        {200, false, CM_HC_HEALTHY},   {204, false, CM_HC_HEALTHY},
        {302, false, CM_HC_HEALTHY},   {399, false, CM_HC_HEALTHY},
        {400, false, CM_HC_UNHEALTHY}, {404, false, CM_HC_UNHEALTHY},
        {500, false, CM_HC_UNHEALTHY}, {503, true, CM_HC_UNHEALTHY},
        {199, false, CM_HC_UNHEALTHY}, {100, false, CM_HC_UNHEALTHY},
        {100, true, CM_HC_IGNORED},    {199, true, CM_HC_IGNORED},
        {200, true, CM_HC_HEALTHY},    {0, false, CM_HC_UNHEALTHY},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        if (cm_agent_hc_http_result(cases[i].status, cases[i].ignore_1xx) !=
            cases[i].want) {
            test__fail(__FILE__, __LINE__, "status %d ignore_1xx %d", cases[i].status,
                       (int)cases[i].ignore_1xx);
        }
    }
}

TEST(readiness_codes)
{
    static const int32_t codes[] = {200, 302};
    ASSERT_TRUE(cm_agent_rc_ready(200, codes, 2));
    ASSERT_TRUE(cm_agent_rc_ready(302, codes, 2));
    ASSERT_FALSE(cm_agent_rc_ready(204, codes, 2));
    ASSERT_FALSE(cm_agent_rc_ready(500, codes, 2));
    ASSERT_FALSE(cm_agent_rc_ready(200, codes, 0));
}

static struct cm_app_health_check check(enum cm_app_hc_proto proto, int grace,
                                        int max_failures)
{
    struct cm_app_health_check hc = {
        .proto = proto,
        .port_index = 0,
        .port = -1,
        .grace_period_s = grace,
        .interval_s = 1,
        .timeout_s = 1,
        .max_consecutive_failures = max_failures,
    };
    return hc;
}

TEST(failures_in_the_grace_period_are_ignored_until_the_first_success)
{
    struct cm_app_health_check hc = check(CM_APP_HC_HTTP, 10, 3);
    struct cm_hc_state s;
    cm_agent_hc_init(&s, 1000);
    /* Within 10 s of the start and no success yet: nothing counts. */
    for (int64_t t = 1000; t < 11000; t += 1000) {
        ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_UNHEALTHY, "HTTP 500 on /", t), 0);
    }
    ASSERT_INT_EQ(s.alive, -1);
    ASSERT_UINT_EQ(s.consecutive_failures, 0);
    ASSERT_INT_EQ(s.last_failure, 0);
    /* The first success ends the grace period at once. */
    ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_HEALTHY, NULL, 5000), CM_HC_CHANGED);
    ASSERT_INT_EQ(s.alive, 1);
    ASSERT_INT_EQ(s.first_success, 5000);
    ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_UNHEALTHY, "HTTP 500 on /", 6000),
                   CM_HC_CHANGED);
    ASSERT_INT_EQ(s.alive, 0);
    ASSERT_UINT_EQ(s.consecutive_failures, 1);
    ASSERT_INT_EQ(s.last_failure, 6000);
    ASSERT_STR_EQ(s.last_failure_cause, "HTTP 500 on /");
}

TEST(grace_expiry_without_success_counts_failures)
{
    struct cm_app_health_check hc = check(CM_APP_HC_TCP, 2, 2);
    struct cm_hc_state s;
    cm_agent_hc_init(&s, 0);
    ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_UNHEALTHY, "refused", 1999), 0);
    ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_UNHEALTHY, "refused", 2000),
                   CM_HC_CHANGED);
    ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_UNHEALTHY, "refused", 3000),
                   CM_HC_KILL);
    ASSERT_UINT_EQ(s.consecutive_failures, 2);
}

TEST(consecutive_failures_reset_by_a_success_and_kill_at_the_limit)
{
    struct cm_app_health_check hc = check(CM_APP_HC_HTTP, 0, 3);
    struct cm_hc_state s;
    cm_agent_hc_init(&s, 0);
    ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_HEALTHY, NULL, 1000), CM_HC_CHANGED);
    ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_UNHEALTHY, "x", 2000), CM_HC_CHANGED);
    ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_UNHEALTHY, "x", 3000), 0);
    ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_HEALTHY, NULL, 4000), CM_HC_CHANGED);
    ASSERT_UINT_EQ(s.consecutive_failures, 0);
    ASSERT_INT_EQ(s.first_success, 1000);
    ASSERT_INT_EQ(s.last_success, 4000);
    ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_UNHEALTHY, "x", 5000), CM_HC_CHANGED);
    ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_UNHEALTHY, "x", 6000), 0);
    ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_UNHEALTHY, "x", 7000), CM_HC_KILL);
    ASSERT_UINT_EQ(s.consecutive_failures, 3);
    /* Ignored results (1xx with ignoreHttp1xx) change nothing. */
    struct cm_hc_state before = s;
    ASSERT_UINT_EQ(cm_agent_hc_step(&s, &hc, CM_HC_IGNORED, NULL, 8000), 0);
    ASSERT_MEM_EQ(&before, &s, sizeof(s));
}

TEST(max_failures_zero_never_kills_marathon_checks_and_kills_mesos_ones_at_once)
{
    static const struct {
        enum cm_app_hc_proto proto;
        bool kills;
    } cases[] = {
        {CM_APP_HC_HTTP, false},       {CM_APP_HC_HTTPS, false},
        {CM_APP_HC_TCP, false},        {CM_APP_HC_MESOS_HTTP, true},
        {CM_APP_HC_MESOS_HTTPS, true}, {CM_APP_HC_MESOS_TCP, true},
        {CM_APP_HC_COMMAND, true},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        struct cm_app_health_check hc = check(cases[i].proto, 0, 0);
        struct cm_hc_state s;
        cm_agent_hc_init(&s, 0);
        unsigned acts = 0;
        for (int k = 0; k < 100; k++) {
            acts |= cm_agent_hc_step(&s, &hc, CM_HC_UNHEALTHY, "x", 1000 * (k + 1));
        }
        if (((acts & CM_HC_KILL) != 0) != cases[i].kills) {
            test__fail(__FILE__, __LINE__, "%s", cm_app_hc_proto_name(cases[i].proto));
        }
        ASSERT_UINT_EQ(s.consecutive_failures, 100);
    }
}

TEST(task_verdict_over_checks)
{
    struct cm_hc_state v[3];
    for (int i = 0; i < 3; i++) {
        cm_agent_hc_init(&v[i], 0);
    }
    ASSERT_INT_EQ(cm_agent_hc_verdict(v, 0), -1);
    ASSERT_INT_EQ(cm_agent_hc_verdict(v, 3), -1);
    v[0].alive = 1;
    v[1].alive = 1;
    ASSERT_INT_EQ(cm_agent_hc_verdict(v, 3), -1); /* one has no result yet */
    v[2].alive = 1;
    ASSERT_INT_EQ(cm_agent_hc_verdict(v, 3), 1);
    v[1].alive = 0;
    ASSERT_INT_EQ(cm_agent_hc_verdict(v, 3), 0);
    v[2].alive = -1;
    ASSERT_INT_EQ(cm_agent_hc_verdict(v, 3), 0); /* a failure outweighs unknowns */
}

TEST(port_selection)
{
    struct cm_app *app = parse(
        "{\"id\":\"/"
        "w\",\"cmd\":\"sleep 1\",\"portDefinitions\":[{\"port\":0,\"name\":\"http\"},"
        "{\"port\":0,\"name\":\"admin\"}],\"healthChecks\":["
        "{\"protocol\":\"HTTP\"},"
        "{\"protocol\":\"TCP\",\"portIndex\":1},"
        "{\"protocol\":\"MESOS_HTTP\",\"portName\":\"admin\"},"
        "{\"protocol\":\"TCP\",\"port\":9200},"
        "{\"protocol\":\"HTTP\",\"portName\":\"admin\",\"path\":\"/x\"}],"
        "\"readinessChecks\":[{\"portName\":\"http\"}]}");
    char why[128];
    const char *ports = "[31000,31001]";
    ASSERT_INT_EQ(cm_agent_hc_port(app, &app->health_checks[0], ports, why, sizeof(why)),
                  31000); /* portIndex 0 by default */
    ASSERT_INT_EQ(cm_agent_hc_port(app, &app->health_checks[1], ports, why, sizeof(why)),
                  31001);
    ASSERT_INT_EQ(cm_agent_hc_port(app, &app->health_checks[2], ports, why, sizeof(why)),
                  31001);
    ASSERT_INT_EQ(cm_agent_hc_port(app, &app->health_checks[3], ports, why, sizeof(why)),
                  9200);
    ASSERT_INT_EQ(cm_agent_hc_port(app, &app->health_checks[4], ports, why, sizeof(why)),
                  31001);
    struct cm_app_health_check cmd = app->health_checks[0];
    cmd.proto = CM_APP_HC_COMMAND;
    ASSERT_ERR(cm_agent_hc_port(app, &cmd, ports, why, sizeof(why)), CM_EINVAL);
    ASSERT_INT_EQ(
        cm_agent_rc_port(app, &app->readiness_checks[0], ports, why, sizeof(why)), 31000);
    /* The task row has fewer host ports than the app names. */
    ASSERT_ERR(cm_agent_hc_port(app, &app->health_checks[1], "[31000]", why, sizeof(why)),
               CM_ERANGE);
    ASSERT_STR_EQ(why, "the task has no port at index 1 (it has 1)");
    ASSERT_ERR(cm_agent_hc_port(app, &app->health_checks[0], "{", why, sizeof(why)),
               CM_EMALFORMED);
    ASSERT_ERR(cm_agent_hc_port(app, &app->health_checks[0], "[0]", why, sizeof(why)),
               CM_ERANGE);
    /* A name the app does not have (validation refuses it; the executor, which may
     * read an older spec, still answers). */
    struct cm_app_health_check hc = app->health_checks[2];
    hc.port_name = "metrics";
    ASSERT_ERR(cm_agent_hc_port(app, &hc, ports, why, sizeof(why)), CM_ENOTFOUND);
    ASSERT_STR_EQ(why, "no port named 'metrics'");
    struct cm_app_readiness_check rc = app->readiness_checks[0];
    rc.port_name = "metrics";
    ASSERT_ERR(cm_agent_rc_port(app, &rc, ports, why, sizeof(why)), CM_ENOTFOUND);
    cm_app_free(app);
}

TEST(port_selection_by_name_in_port_mappings)
{
    /* Bridge networking: names and indexes refer to container.portMappings. */
    struct cm_app *app = parse(
        "{\"id\":\"/w\",\"cmd\":\"sleep "
        "1\",\"networks\":[{\"mode\":\"container/bridge\"}],"
        "\"container\":{\"type\":\"MESOS\",\"portMappings\":["
        "{\"containerPort\":80,\"hostPort\":0,\"name\":\"web\"},"
        "{\"containerPort\":81,\"hostPort\":0,\"name\":\"api\"}]},"
        "\"healthChecks\":[{\"protocol\":\"HTTP\",\"portName\":\"api\"}]}");
    char why[128];
    ASSERT_INT_EQ(
        cm_agent_hc_port(app, &app->health_checks[0], "[31005,31006]", why, sizeof(why)),
        31006);
    cm_app_free(app);
}

/* ---- the Marathon example corpus: every example with health or readiness checks,
 * parsed with every feature, probes the port Marathon documents and follows its kill
 * rule. (Without the optional features most are refused for their Docker image:
 * test_app_examples checks that they name it.) */

#ifndef CM_APP_CORPUS_DIR
#error "meson passes CM_APP_CORPUS_DIR"
#endif

static char *slurp_example(const char *name)
{
    char path[1024];
    const char *dirs[] = {getenv("CM_MARATHON_EXAMPLES"), CM_APP_SHARED_EXAMPLES_DIR,
                          CM_APP_CORPUS_DIR};
    for (size_t i = 0; i < CM_ARRAY_SIZE(dirs); i++) {
        if (dirs[i] == NULL || dirs[i][0] == '\0') {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dirs[i], name);
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
            continue;
        }
        char *buf = calloc(1, 1 << 20);
        ASSERT_NOT_NULL(buf);
        size_t n = fread(buf, 1, (1 << 20) - 1, f);
        fclose(f);
        buf[n] = '\0';
        return buf;
    }
    test__fail(__FILE__, __LINE__, "example %s not found", name);
    return NULL;
}

/* The app of an example, or a group's first app with health checks. */
static struct cm_app *example_first_app(const char *name, bool group)
{
    char *text = slurp_example(name);
    struct cm_app_parse_opts o = {.base = "/", .features = CM_APP_FEAT_ALL};
    struct cm_app *app = NULL;
    if (group) {
        struct cm_app_group *g = NULL;
        ASSERT_OK(cm_app_group_parse(text, strlen(text), &o, &g, NULL));
        ASSERT_TRUE(g->apps.n > 0);
        size_t pick = 0;
        while (pick + 1 < g->apps.n && g->apps.v[pick]->n_health_checks == 0) {
            pick++;
        }
        app = g->apps.v[pick];
        g->apps.v[pick] = NULL; /* ours now; the group frees the rest */
        cm_app_group_free(g);
    } else {
        ASSERT_OK(cm_app_parse(text, strlen(text), &o, &app, NULL));
    }
    free(text);
    return app;
}

TEST(examples_with_checks_probe_the_documented_port_and_kill_rule)
{
    static const struct {
        const char *file;
        bool group;
        size_t check;
        int port; /* with host ports [31000, 31001]; 0: no port (COMMAND) */
        bool kills_at_first_failure_with_max_0; /* only meaningful when max is 0 */
        int32_t max_failures;
    } cases[] = {
        {"app-docker-bridge-fixed-serviceport-http-hc.json", false, 0, 31000, false, 3},
        {"app-docker-bridge-readiness-portname.json", false, 0, 31000, false, 3},
        {"app-docker-bridge-serviceport-accepted-roles.json", false, 0, 31000, false, 10},
        {"app-docker-bridge-udp-port-http-and-command-hc.json", false, 0, 31000, false,
         3},
        {"app-docker-bridge-udp-port-http-and-command-hc.json", false, 1, 0, true, 3},
        {"app-docker-container-network-ipv6-mesos-http-hc.json", false, 0, 31000, true,
         3},
        {"app-docker-host-tcp-hc-fixed-port.json", false, 0, 9200, false, 0},
        {"app-docker-user-network-resident-residency.json", false, 0, 80, false, 10},
        {"app-dotted-path-id-command-hc.json", false, 0, 0, true, 1},
        {"app-minuteman-legacy-task-vip-label.json", false, 0, 31000, false, 3},
        {"app-named-vip-persistent-single-instance-minio.json", false, 0, 0, true, 3},
        {"app-public-agent-requireports-bridge-hostport.json", false, 0, 31000, false, 3},
        {"app-single-instance-framework-readiness-health-labels.json", false, 0, 31000,
         false, 0},
        {"group-department-group-level-dependency.json", true, 0, 31000, false, 3},
        {"group-root-getresponse-with-app-details.json", true, 0, 31000, false, 3},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        struct cm_app *app = example_first_app(cases[i].file, cases[i].group);
        if (app->n_health_checks <= cases[i].check) {
            test__fail(__FILE__, __LINE__, "%s: no health check %zu", cases[i].file,
                       cases[i].check);
        }
        const struct cm_app_health_check *hc = &app->health_checks[cases[i].check];
        char why[128];
        int port = cm_agent_hc_port(app, hc, "[31000,31001]", why, sizeof(why));
        if (cases[i].port == 0 ? port != CM_EINVAL : port != cases[i].port) {
            test__fail(__FILE__, __LINE__, "%s: port %d (%s), want %d", cases[i].file,
                       port, port < 0 ? why : "", cases[i].port);
        }
        ASSERT_INT_EQ(hc->max_consecutive_failures, cases[i].max_failures);
        /* The kill rule, run on the example's own check after its grace period. */
        struct cm_hc_state s;
        cm_agent_hc_init(&s, 0);
        int64_t t = (int64_t)hc->grace_period_s * 1000 + 1;
        int failures_to_kill = 0;
        for (int k = 1; k <= 20 && failures_to_kill == 0; k++) {
            if (cm_agent_hc_step(&s, hc, CM_HC_UNHEALTHY, "x", t + k) & CM_HC_KILL) {
                failures_to_kill = k;
            }
        }
        int want = hc->max_consecutive_failures > 0 ? hc->max_consecutive_failures
                   : cases[i].kills_at_first_failure_with_max_0 ? 1
                                                                : 0;
        if (failures_to_kill != want) {
            test__fail(__FILE__, __LINE__, "%s: killed after %d failures, want %d",
                       cases[i].file, failures_to_kill, want);
        }
        cm_app_free(app);
    }
}

TEST(examples_with_readiness_checks_probe_their_named_port)
{
    static const struct {
        const char *file;
        int port;
    } cases[] = {
        {"app-docker-bridge-https-readiness-check.json", 31001}, /* "https": mapping 1 */
        {"app-docker-bridge-readiness-portname.json", 31000},
        {"app-single-instance-framework-readiness-health-labels.json", 31000},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        struct cm_app *app = example_first_app(cases[i].file, false);
        ASSERT_UINT_EQ(app->n_readiness_checks, 1);
        char why[128];
        ASSERT_INT_EQ(cm_agent_rc_port(app, &app->readiness_checks[0], "[31000,31001]",
                                       why, sizeof(why)),
                      cases[i].port);
        cm_app_free(app);
    }
}

/* ---- the checks on a libev loop, against servers of this process on loopback
 * (no root, no task: the checks only need an address and a port). */

struct probe_srv {
    struct cm_http_server *http;
    uint16_t port;
    int status;
    struct cm_http_req *held[8]; /* requests /hold never answers */
    size_t n_held;
};

static void h_status(struct cm_http_req *req, void *data)
{
    struct probe_srv *s = data;
    char body[32];
    int n = snprintf(body, sizeof(body), "status %d\n", s->status);
    cm_http_respond(req, s->status, "text/plain", body, (size_t)n);
}

static void h_hold(struct cm_http_req *req, void *data)
{
    struct probe_srv *s = data;
    if (s->n_held < CM_ARRAY_SIZE(s->held)) {
        s->held[s->n_held++] = req; /* never answered; srv_free ends it */
    } else {
        cm_http_req_abort(req);
    }
}

static void srv_free(struct probe_srv *s)
{
    for (size_t i = 0; i < s->n_held; i++) {
        cm_http_req_abort(s->held[i]);
    }
    s->n_held = 0;
    cm_http_server_free(s->http);
    s->http = NULL;
}

static void srv_start(struct ev_loop *loop, struct probe_srv *s)
{
    memset(s, 0, sizeof(*s));
    s->status = 200;
    ASSERT_OK(cm_http_server_new(loop, NULL, &s->http));
    ASSERT_OK(cm_http_server_route(s->http, "GET", "/ok", 0, h_status, s));
    ASSERT_OK(cm_http_server_route(s->http, "GET", "/hold", 0, h_hold, s));
    struct cm_errbuf eb;
    ASSERT_OK(cm_http_server_listen(s->http, "127.0.0.1:0", &eb));
    s->port = cm_http_server_port(s->http);
}

struct seen {
    int changed;
    int killed;
    char reason[CM_AGENT_REASON_MAX + 1];
};

static void seen_changed(void *data)
{
    ((struct seen *)data)->changed++;
}

static void seen_kill(void *data, const char *reason)
{
    struct seen *s = data;
    s->killed++;
    snprintf(s->reason, sizeof(s->reason), "%s", reason);
}

static struct agent_health *checks_on(struct ev_loop *loop, const char *app_json,
                                      uint16_t port, struct seen *seen)
{
    char ports[16];
    snprintf(ports, sizeof(ports), "[%u]", (unsigned)port);
    struct agent_health_task t = {
        .id = "w.1",
        .version = "v",
        .host = "127.0.0.1",
        .ports_json = ports,
        .sandbox = "/",
        .started_at = cm_clock_real_ms(cm_clock_system()),
        .pidfd = -1,
    };
    struct agent_health_cbs cbs = {
        .data = seen, .changed = seen_changed, .kill = seen_kill};
    struct agent_health *h = NULL;
    ASSERT_OK(agent__health_new(loop, cm_clock_system(), parse(app_json), &t, &cbs, &h));
    return h;
}

/* Run @loop until @done (a bounded wait so that a bug fails instead of hanging;
 * meson's timeout is the real limit). */
static void run_until(struct ev_loop *loop, bool (*done)(void *), void *arg)
{
    uint64_t end = cm_clock_mono_ms(cm_clock_system()) + 60000;
    while (!done(arg) && cm_clock_mono_ms(cm_clock_system()) < end) {
        ev_run(loop, EVRUN_ONCE);
    }
    ASSERT_TRUE(done(arg));
}

static bool healthy_and_ready(void *arg)
{
    const char *v = agent__health_verdict(arg);
    return v != NULL && strcmp(v, "healthy") == 0 && agent__health_ready(arg);
}

static bool was_killed(void *arg)
{
    return ((struct seen *)arg)->killed > 0;
}

TEST(loop_http_check_and_readiness_then_kill_at_the_limit)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct probe_srv s;
    srv_start(loop, &s);
    struct seen seen = {0};
    struct agent_health *h = checks_on(
        loop,
        "{\"id\":\"/w\",\"cmd\":\"sleep 1\",\"portDefinitions\":[{\"port\":0,\"name\":"
        "\"http\"}],\"healthChecks\":[{\"protocol\":\"HTTP\",\"path\":\"/ok\","
        "\"gracePeriodSeconds\":0,\"intervalSeconds\":1,\"timeoutSeconds\":1,"
        "\"maxConsecutiveFailures\":2},{\"protocol\":\"TCP\",\"portName\":\"http\","
        "\"intervalSeconds\":1,\"timeoutSeconds\":1}],\"readinessChecks\":[{\"portName\":"
        "\"http\",\"path\":\"/ok\",\"intervalSeconds\":2,\"timeoutSeconds\":1,"
        "\"preserveLastResponse\":true}]}",
        s.port, &seen);
    ASSERT_NULL(agent__health_verdict(h));
    ASSERT_FALSE(agent__health_ready(h));
    run_until(loop, healthy_and_ready, h);
    ASSERT_INT_OP(seen.changed, >=, 1);
    cJSON *j = agent__health_checks_json(h);
    ASSERT_NOT_NULL(j);
    char *text = cJSON_PrintUnformatted(j);
    ASSERT_NOT_NULL(strstr(text,
                           "\"lastResponse\":{\"status\":200,\"contentType\":"
                           "\"text/plain\",\"body\":\"status 200\\n\"}"));
    cJSON_free(text);
    cJSON_Delete(j);

    s.status = 503;
    run_until(loop, was_killed, &seen);
    ASSERT_STR_EQ(agent__health_verdict(h), "unhealthy");
    ASSERT_STR_EQ(seen.reason, "health check failed: HTTP 503 on /ok");
    ASSERT_TRUE(agent__health_ready(h)); /* readiness never goes back */
    agent__health_free(h);
    srv_free(&s);
    ev_loop_destroy(loop);
}

TEST(loop_timeouts_and_refused_connections_fail_with_their_cause)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct probe_srv s;
    srv_start(loop, &s);
    struct seen seen = {0};
    struct agent_health *h =
        checks_on(loop,
                  "{\"id\":\"/w\",\"cmd\":\"sleep 1\",\"portDefinitions\":[{\"port\":0}],"
                  "\"healthChecks\":[{\"protocol\":\"HTTP\",\"path\":\"/hold\","
                  "\"gracePeriodSeconds\":0,\"intervalSeconds\":2,\"timeoutSeconds\":1,"
                  "\"maxConsecutiveFailures\":1}]}",
                  s.port, &seen);
    run_until(loop, was_killed, &seen);
    char want[128];
    snprintf(want, sizeof(want),
             "health check failed: HTTP check on 127.0.0.1:%u timed out after 1s",
             (unsigned)s.port);
    ASSERT_STR_EQ(seen.reason, want);
    agent__health_free(h);

    /* Nothing listens on the port any more. */
    uint16_t port = s.port;
    srv_free(&s);
    memset(&seen, 0, sizeof(seen));
    h = checks_on(loop,
                  "{\"id\":\"/w\",\"cmd\":\"sleep 1\",\"portDefinitions\":[{\"port\":0}],"
                  "\"healthChecks\":[{\"protocol\":\"TCP\",\"gracePeriodSeconds\":0,"
                  "\"intervalSeconds\":1,\"timeoutSeconds\":1,"
                  "\"maxConsecutiveFailures\":1}]}",
                  port, &seen);
    run_until(loop, was_killed, &seen);
    snprintf(want, sizeof(want),
             "health check failed: TCP connect to 127.0.0.1:%u: connection refused",
             (unsigned)port);
    ASSERT_STR_EQ(seen.reason, want);
    agent__health_free(h);
    ev_loop_destroy(loop);
}

static int new_and_free(void *arg)
{
    struct ev_loop *loop = arg;
    static const char app_json[] =
        "{\"id\":\"/w\",\"cmd\":\"sleep 1\",\"portDefinitions\":[{\"port\":0,\"name\":"
        "\"http\"}],\"healthChecks\":[{\"protocol\":\"HTTP\"},{\"protocol\":\"COMMAND\","
        "\"command\":{\"value\":\"true\"}}],\"readinessChecks\":[{\"portName\":\"http\"}]"
        "}";
    struct cm_app *app = NULL;
    struct cm_app_parse_opts o = {.features = CM_APP_FEAT_ALL};
    int rv = cm_app_parse(app_json, strlen(app_json), &o, &app, NULL);
    if (rv != 0) {
        return rv;
    }
    struct agent_health_task t = {.id = "w.1", .ports_json = "[31000]", .pidfd = -1};
    struct seen seen = {0};
    struct agent_health_cbs cbs = {
        .data = &seen, .changed = seen_changed, .kill = seen_kill};
    struct agent_health *h = NULL;
    rv = agent__health_new(loop, cm_clock_system(), app, &t, &cbs, &h);
    if (rv != 0) {
        cm_app_free(app);
        return rv;
    }
    cJSON *j = agent__health_checks_json(h);
    rv = j != NULL ? 0 : CM_ENOMEM;
    cJSON_Delete(j);
    agent__health_free(h);
    return rv;
}

TEST(new_and_results_oom_walk)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ASSERT_INT_OP(test_alloc_walk(new_and_free, loop), >, 10);
    ev_loop_destroy(loop);
}
