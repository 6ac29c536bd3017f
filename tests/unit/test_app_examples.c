/* lib/state apps: the Marathon example corpus (shared/examples/marathon), the
 * defaults normalisation fills in, round trips through both output forms, and OOM
 * walks over the biggest bodies.
 *
 * Where the examples are read from, in order: $CM_MARATHON_EXAMPLES, the shared
 * corpus directory meson passes in (CM_APP_SHARED_EXAMPLES_DIR) when it exists, else
 * the byte-identical copies in tests/fuzz/fuzz_app_json.in (CM_APP_CORPUS_DIR). All
 * are absolute, so the test does not depend on the current directory. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "state/state.h"
#include "test.h"

#ifndef CM_APP_CORPUS_DIR
#error "meson passes CM_APP_CORPUS_DIR"
#endif
#ifndef CM_APP_SHARED_EXAMPLES_DIR
#define CM_APP_SHARED_EXAMPLES_DIR "/nonexistent"
#endif

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static const char *examples_dir(void)
{
    const char *env = getenv("CM_MARATHON_EXAMPLES");
    if (env != NULL && env[0] != '\0') {
        return env;
    }
    return is_dir(CM_APP_SHARED_EXAMPLES_DIR) ? CM_APP_SHARED_EXAMPLES_DIR
                                              : CM_APP_CORPUS_DIR;
}

/* The whole file in new memory (free with free()); fails the test if unreadable. */
static char *slurp(const char *dir, const char *name, size_t *ret_len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        test__fail(__FILE__, __LINE__, "cannot open %s", path);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    ASSERT_NOT_NULL(buf);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    ASSERT_UINT_EQ(got, (size_t)n);
    buf[n] = '\0';
    *ret_len = (size_t)n;
    return buf;
}

enum shape { APP, ARRAY, GROUP };

struct example {
    const char *file;
    enum shape shape;
    int code;                /* with today's features (none) */
    const char *unsupported; /* the UNSUPPORTED issue paths, space-separated, in order */
    size_t napps;            /* apps when accepted with CM_APP_FEAT_ALL */
};

static const struct example examples[] = {
    {"app-docker-bridge-fixed-serviceport-http-hc.json", APP, CM_EUNSUPPORTED,
     "/container/docker/image", 1},
    {"app-docker-bridge-https-readiness-check.json", APP, CM_EUNSUPPORTED,
     "/container/docker/image", 1},
    {"app-docker-bridge-readiness-portname.json", APP, CM_EUNSUPPORTED,
     "/container/docker/image", 1},
    {"app-docker-bridge-serviceport-accepted-roles.json", APP, CM_EUNSUPPORTED,
     "/container/docker/image", 1},
    {"app-docker-bridge-udp-port-http-and-command-hc.json", APP, CM_EUNSUPPORTED,
     "/container/docker/image", 1},
    {"app-docker-container-network-ipv6-mesos-http-hc.json", APP, CM_EUNSUPPORTED,
     "/container/docker/image /networks(0)", 1},
    {"app-docker-host-tcp-hc-fixed-port.json", APP, CM_EUNSUPPORTED,
     "/container/docker/image", 1},
    {"app-docker-user-network-resident-residency.json", APP, CM_EUNSUPPORTED,
     "/container/docker/image /container/volumes(0) /networks(0)", 1},
    {"app-dotted-path-id-command-hc.json", APP, 0, "", 1},
    {"app-host-requireports-fixed-port-fetch.json", APP, CM_EUNSUPPORTED, "/fetch", 1},
    {"app-kitchen-sink-rest-api-doc-example.json", APP, CM_EVALIDATION, "", 0},
    {"app-labels.json", APP, 0, "", 1},
    {"app-legacy-ipaddress-discovery-ports.json", APP, CM_EUNSUPPORTED,
     "/fetch /networks(0)", 1},
    {"app-mesos-check-http-portindex.json", APP, 0, "", 1},
    {"app-mesos-persistent-volume-resident.json", APP, CM_EUNSUPPORTED,
     "/container/volumes(0)", 1},
    {"app-mesos-ucr-dcos-container-network.json", APP, CM_EUNSUPPORTED,
     "/container/docker/image /networks(0)", 1},
    {"app-mesos-ucr-docker-pullconfig-secret.json", APP, CM_EUNSUPPORTED,
     "/container/docker/image /container/docker/pullConfig /secrets", 1},
    {"app-minimal-sleep.json", APP, 0, "", 1},
    {"app-minuteman-legacy-task-vip-label.json", APP, CM_EUNSUPPORTED,
     "/fetch /labels/vip_PORT0", 1},
    {"app-named-vip-persistent-single-instance-minio.json", APP, CM_EUNSUPPORTED,
     "/container/docker/image /container/docker/privileged /container/volumes(0) "
     "/container/volumes(1) /container/volumes(2) /container/volumes(3)",
     1},
    {"app-networks-container-bridge-haproxy-labels.json", APP, CM_EUNSUPPORTED,
     "/container/docker/image", 1},
    {"app-public-agent-requireports-bridge-hostport.json", APP, CM_EUNSUPPORTED,
     "/container/docker/image", 1},
    {"app-python-http-constraint-unique.json", APP, 0, "", 1},
    {"app-rails-uris-env.json", APP, CM_EUNSUPPORTED, "/fetch", 1},
    {"app-single-instance-framework-readiness-health-labels.json", APP, 0, "", 1},
    {"apps-array-put-with-dependencies.json", ARRAY, 0, "", 2},
    {"group-department-app-level-dependencies.json", GROUP, 0, "", 3},
    {"group-department-group-level-dependency.json", GROUP, CM_EUNSUPPORTED,
     "/groups(0)/apps(0)/container/docker/image", 2},
    {"group-nested-sleep-subgroup.json", GROUP, 0, "", 2},
    {"group-root-getresponse-with-app-details.json", GROUP, CM_EUNSUPPORTED,
     "/groups(0)/apps(0)/container/docker/image "
     "/groups(0)/apps(1)/container/docker/image "
     "/groups(0)/apps(1)/container/docker/privileged "
     "/groups(0)/apps(1)/container/volumes(0) "
     "/groups(0)/apps(1)/container/volumes(1) /groups(0)/apps(1)/container/volumes(2) "
     "/groups(0)/groups(1)/apps(0)/container/docker/image "
     "/groups(0)/groups(1)/apps(0)/container/volumes(0)",
     3},
};

/* Parse @text as @shape; returns the code and the apps (owned by *list). */
static int parse_shape(enum shape shape, const char *text, size_t len, unsigned features,
                       struct cm_app_list *list, struct cm_app_report *rep)
{
    struct cm_app_parse_opts o = {.base = "/", .features = features};
    if (shape == ARRAY) {
        return cm_app_array_parse(text, len, &o, list, rep);
    }
    if (shape == GROUP) {
        struct cm_app_group *g = NULL;
        int rv = cm_app_group_parse(text, len, &o, &g, rep);
        if (rv == 0) {
            *list = g->apps;
            g->apps = (struct cm_app_list){0};
            cm_app_group_free(g);
        }
        return rv;
    }
    struct cm_app *app = NULL;
    int rv = cm_app_parse(text, len, &o, &app, rep);
    if (rv == 0) {
        list->v = cm_calloc(1, sizeof(*list->v));
        ASSERT_NOT_NULL(list->v);
        list->v[0] = app;
        list->n = 1;
    }
    return rv;
}

static void unsupported_paths(const struct cm_app_report *rep, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < rep->n; i++) {
        if (rep->v[i].kind == CM_APP_ISSUE_UNSUPPORTED) {
            size_t n = strlen(out);
            snprintf(out + n, cap - n, "%s%s", n ? " " : "", rep->v[i].path);
        }
    }
}

/* Canonical -> parse -> canonical, and GET form -> parse -> canonical: same bytes. */
static void assert_round_trip(const struct cm_app *app)
{
    struct cm_buf c1 = {0}, c2 = {0}, c3 = {0}, get = {0};
    struct cm_app *back = NULL, *back2 = NULL;
    struct cm_app_out_opts oo = {.version = "2026-11-22T14:00:00.123Z", .pretty = true};
    struct cm_app_parse_opts all = {.base = "/", .features = CM_APP_FEAT_ALL};
    ASSERT_OK(cm_app_canonical(app, &c1));
    ASSERT_OK(cm_app_from_canonical(c1.data, c1.len, &back));
    ASSERT_OK(cm_app_canonical(back, &c2));
    ASSERT_STR_EQ(c2.data, c1.data);
    ASSERT_OK(cm_app_to_json(app, &oo, &get));
    ASSERT_OK(cm_app_parse(get.data, get.len, &all, &back2, NULL));
    ASSERT_OK(cm_app_canonical(back2, &c3));
    ASSERT_STR_EQ(c3.data, c1.data);
    ASSERT_TRUE(cm_app_equal(app, back));
    ASSERT_TRUE(cm_app_equal(back, back2));
    /* Canonical is compact and has no version; the GET form has both. */
    ASSERT_NULL(strchr(c1.data, '\n'));
    ASSERT_NULL(strstr(c1.data, "\"version\""));
    ASSERT_NOT_NULL(strstr(get.data, "\"version\": \"2026-11-22T14:00:00.123Z\""));
    ASSERT_NOT_NULL(strstr(get.data, "\"lastConfigChangeAt\""));
    cm_app_free(back);
    cm_app_free(back2);
    cm_buf_done(&c1);
    cm_buf_done(&c2);
    cm_buf_done(&c3);
    cm_buf_done(&get);
}

TEST(examples_every_file_has_an_expected_outcome)
{
    const char *dir = examples_dir();
    DIR *d = opendir(dir);
    ASSERT_NOT_NULL(d);
    struct dirent *e;
    size_t seen = 0;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        /* The corpus copy also holds fuzz variants ("v-*") and crashers. */
        if (n < 5 || strcmp(e->d_name + n - 5, ".json") != 0 ||
            strncmp(e->d_name, "v-", 2) == 0 || strncmp(e->d_name, "crash-", 6) == 0) {
            continue;
        }
        bool found = false;
        for (size_t i = 0; i < CM_ARRAY_SIZE(examples) && !found; i++) {
            found = strcmp(examples[i].file, e->d_name) == 0;
        }
        if (!found) {
            closedir(d);
            test__fail(__FILE__, __LINE__, "example %s has no row in the table",
                       e->d_name);
        }
        seen++;
    }
    closedir(d);
    ASSERT_UINT_EQ(seen, CM_ARRAY_SIZE(examples));
}

TEST(examples_corpus_copies_are_verbatim)
{
    if (!is_dir(CM_APP_SHARED_EXAMPLES_DIR)) {
        test_skip("%s not present", CM_APP_SHARED_EXAMPLES_DIR);
    }
    for (size_t i = 0; i < CM_ARRAY_SIZE(examples); i++) {
        size_t a, b;
        char *x = slurp(CM_APP_SHARED_EXAMPLES_DIR, examples[i].file, &a);
        char *y = slurp(CM_APP_CORPUS_DIR, examples[i].file, &b);
        ASSERT_UINT_EQ(a, b);
        ASSERT_MEM_EQ(x, y, a);
        free(x);
        free(y);
    }
}

TEST(examples_outcome_with_todays_features)
{
    const char *dir = examples_dir();
    for (size_t i = 0; i < CM_ARRAY_SIZE(examples); i++) {
        const struct example *ex = &examples[i];
        size_t len;
        char *text = slurp(dir, ex->file, &len);
        struct cm_app_list list = {0};
        struct cm_app_report rep = {0};
        int rv = parse_shape(ex->shape, text, len, CM_APP_FEAT_NONE, &list, &rep);
        if (rv != ex->code) {
            test__fail(__FILE__, __LINE__, "%s: got %s, want %s", ex->file,
                       cm_strerror(rv), cm_strerror(ex->code));
        }
        char paths[2048];
        unsupported_paths(&rep, paths, sizeof(paths));
        if (strcmp(paths, ex->unsupported) != 0) {
            test__fail(__FILE__, __LINE__, "%s: unsupported at \"%s\", want \"%s\"",
                       ex->file, paths, ex->unsupported);
        }
        /* Every unsupported issue names the feature. */
        for (size_t k = 0; k < rep.n; k++) {
            if (rep.v[k].kind == CM_APP_ISSUE_UNSUPPORTED) {
                ASSERT_TRUE(strncmp(rep.v[k].msg, "unsupported feature: ", 21) == 0);
            }
        }
        for (size_t k = 0; k < list.n; k++) {
            assert_round_trip(list.v[k]);
        }
        cm_app_list_done(&list);
        cm_app_report_done(&rep);
        free(text);
    }
}

TEST(examples_accepted_with_every_feature_and_round_trip)
{
    const char *dir = examples_dir();
    for (size_t i = 0; i < CM_ARRAY_SIZE(examples); i++) {
        const struct example *ex = &examples[i];
        size_t len;
        char *text = slurp(dir, ex->file, &len);
        struct cm_app_list list = {0};
        struct cm_app_report rep = {0};
        int rv = parse_shape(ex->shape, text, len, CM_APP_FEAT_ALL, &list, &rep);
        int want = ex->code == CM_EVALIDATION ? CM_EVALIDATION : 0;
        if (rv != want) {
            test__fail(__FILE__, __LINE__, "%s: got %s, want %s", ex->file,
                       cm_strerror(rv), cm_strerror(want));
        }
        ASSERT_UINT_EQ(list.n, ex->napps);
        for (size_t k = 0; k < list.n; k++) {
            assert_round_trip(list.v[k]);
        }
        cm_app_list_done(&list);
        cm_app_report_done(&rep);
        free(text);
    }
}

/* Parse one example app with every feature allowed; the caller frees. */
static struct cm_app *example_app(const char *file)
{
    size_t len;
    char *text = slurp(examples_dir(), file, &len);
    struct cm_app_parse_opts o = {.base = "/", .features = CM_APP_FEAT_ALL};
    struct cm_app *app = NULL;
    ASSERT_OK(cm_app_parse(text, len, &o, &app, NULL));
    free(text);
    return app;
}

TEST(examples_kitchen_sink_is_rejected_like_marathon)
{
    size_t len;
    char *text =
        slurp(examples_dir(), "app-kitchen-sink-rest-api-doc-example.json", &len);
    struct cm_app_report rep = {0};
    struct cm_app *app = NULL;
    struct cm_app_parse_opts o = {.base = "/", .features = CM_APP_FEAT_ALL};
    ASSERT_ERR(cm_app_parse(text, len, &o, &app, &rep), CM_EVALIDATION);
    /* compat.md §7.4: cmd+args, ipAddress+portDefinitions, env secret by path. */
    static const char *const want[][2] = {
        {"/",
         "AppDefinition must either contain one of 'cmd' or 'args', and/or a "
         "'container'."},
        {"/", "cannot specify both an IP address and port"},
        {"/ipAddress", "ipAddress/discovery is not allowed for Docker containers"},
        {"/portDefinitions", "portDefinitions are only allowed with host-networking"},
        {"/env/PASSWORD", "references an undefined secret"},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(want); i++) {
        bool found = false;
        for (size_t k = 0; k < rep.n && !found; k++) {
            found = rep.v[k].kind == CM_APP_ISSUE_INVALID &&
                    strcmp(rep.v[k].path, want[i][0]) == 0 &&
                    strcmp(rep.v[k].msg, want[i][1]) == 0;
        }
        if (!found) {
            test__fail(__FILE__, __LINE__, "missing %s: %s", want[i][0], want[i][1]);
        }
    }
    cm_app_report_done(&rep);
    free(text);
}

TEST(defaults_minimal_app)
{
    struct cm_app *a = example_app("app-minimal-sleep.json");
    ASSERT_STR_EQ(a->id, "/simple");
    ASSERT_STR_EQ(a->cmd, "sleep 1000");
    ASSERT_INT_EQ(a->instances, 2);
    ASSERT_TRUE(a->cpus == 0.1 && a->mem == 16 && a->disk == 0);
    ASSERT_INT_EQ(a->gpus, 0);
    ASSERT_UINT_EQ(a->n_networks, 1);
    ASSERT_INT_EQ(a->networks[0].mode, CM_APP_NET_HOST);
    ASSERT_UINT_EQ(a->n_port_defs, 1);
    ASSERT_INT_EQ(a->port_defs[0].port, 0);
    ASSERT_INT_EQ(a->port_defs[0].proto, CM_APP_PROTO_TCP);
    ASSERT_STR_EQ(a->port_defs[0].name, "default");
    ASSERT_FALSE(a->require_ports);
    ASSERT_INT_EQ(a->backoff_s, 1);
    ASSERT_TRUE(a->backoff_factor == 1.15);
    ASSERT_INT_EQ(a->max_launch_delay_s, 300);
    ASSERT_TRUE(a->min_health_capacity == 1.0 && a->max_over_capacity == 1.0);
    ASSERT_FALSE(a->unreachable.disabled);
    ASSERT_INT_EQ(a->unreachable.inactive_after_s, 10); /* DESIGN §6, not Marathon's */
    ASSERT_INT_EQ(a->unreachable.expunge_after_s, 600);
    ASSERT_STR_EQ(a->role, "*");
    ASSERT_STR_EQ(a->executor, "");
    ASSERT_INT_EQ(a->kill_selection, CM_APP_KILL_YOUNGEST_FIRST);
    ASSERT_INT_EQ(a->task_kill_grace_period_s, -1);
    ASSERT_INT_EQ(a->tty, -1);
    ASSERT_INT_EQ(a->container.type, CM_APP_CONTAINER_NONE);
    ASSERT_FALSE(a->has_residency);
    ASSERT_INT_EQ(a->check.kind, CM_APP_CHECK_NONE);
    cm_app_free(a);
}

TEST(defaults_minimal_app_get_json_golden)
{
    struct cm_app *a = example_app("app-minimal-sleep.json");
    struct cm_buf out = {0};
    struct cm_app_out_opts oo = {.version = "2026-11-22T14:00:00.123Z"};
    ASSERT_OK(cm_app_to_json(a, &oo, &out));
    ASSERT_STR_EQ(
        out.data,
        "{\"id\":\"/simple\",\"backoffFactor\":1.15,\"backoffSeconds\":1,\"cmd\":\"sleep "
        "1000\",\"constraints\":[],\"cpus\":0.1,\"dependencies\":[],\"disk\":0,\"env\":{}"
        ","
        "\"executor\":\"\",\"fetch\":[],\"gpus\":0,\"healthChecks\":[],\"instances\":2,"
        "\"killSelection\":\"YOUNGEST_FIRST\",\"labels\":{},\"maxLaunchDelaySeconds\":"
        "300,"
        "\"mem\":16,\"networks\":[{\"mode\":\"host\"}],\"portDefinitions\":[{\"port\":0,"
        "\"protocol\":\"tcp\",\"name\":\"default\",\"labels\":{}}],\"readinessChecks\":[]"
        ","
        "\"requirePorts\":false,\"role\":\"*\",\"secrets\":{},\"unreachableStrategy\":{"
        "\"inactiveAfterSeconds\":10,\"expungeAfterSeconds\":600},\"upgradeStrategy\":{"
        "\"minimumHealthCapacity\":1,\"maximumOverCapacity\":1},\"version\":\"2026-11-"
        "22T14:"
        "00:00.123Z\",\"versionInfo\":{\"lastScalingAt\":\"2026-11-22T14:00:00.123Z\","
        "\"lastConfigChangeAt\":\"2026-11-22T14:00:00.123Z\"}}");
    cm_buf_done(&out);
    cm_app_free(a);
}

TEST(defaults_health_check_fields)
{
    struct cm_app *a = example_app("app-docker-bridge-fixed-serviceport-http-hc.json");
    ASSERT_STR_EQ(a->id, "/tomcat");
    ASSERT_UINT_EQ(a->n_health_checks, 1);
    const struct cm_app_health_check *hc = &a->health_checks[0];
    ASSERT_INT_EQ(hc->proto, CM_APP_HC_HTTP);
    ASSERT_STR_EQ(hc->path, "/");
    ASSERT_INT_EQ(hc->port_index, 0);
    ASSERT_INT_EQ(hc->port, -1);
    ASSERT_INT_EQ(hc->grace_period_s, 300);
    ASSERT_INT_EQ(hc->interval_s, 60);
    ASSERT_INT_EQ(hc->timeout_s, 20);
    ASSERT_INT_EQ(hc->max_consecutive_failures, 3);
    ASSERT_INT_EQ(hc->delay_s, 15);
    ASSERT_FALSE(hc->ignore_http1xx);
    ASSERT_FALSE(hc->ipv6);
    /* docker.network BRIDGE + docker.portMappings -> networks + container.portMappings */
    ASSERT_INT_EQ(a->networks[0].mode, CM_APP_NET_BRIDGE);
    ASSERT_UINT_EQ(a->n_port_defs, 0);
    ASSERT_UINT_EQ(a->container.n_port_mappings, 1);
    ASSERT_INT_EQ(a->container.port_mappings[0].container_port, 8080);
    ASSERT_INT_EQ(a->container.port_mappings[0].host_port, 0);
    ASSERT_INT_EQ(a->container.port_mappings[0].service_port, 10000);
    ASSERT_STR_EQ(a->container.image, "tomcat:8.0");
    cm_app_free(a);
}

TEST(defaults_health_check_portname_example)
{
    /* The health check names its port ("portName", which Marathon ignores and
     * clusterctl honours) and has no portIndex: the named port is the first one,
     * the port Marathon's default portIndex 0 picks too. */
    struct cm_app *a = example_app("app-docker-bridge-readiness-portname.json");
    ASSERT_INT_EQ(a->health_checks[0].port_index, -1);
    ASSERT_STR_EQ(a->health_checks[0].port_name, "http-api");
    ASSERT_STR_EQ(a->container.port_mappings[0].name, "http-api");
    ASSERT_UINT_EQ(a->n_port_defs, 0); /* legacy ports dropped under bridge */
    ASSERT_UINT_EQ(a->n_readiness_checks, 1);
    ASSERT_STR_EQ(a->readiness_checks[0].port_name, "http-api");
    ASSERT_UINT_EQ(a->readiness_checks[0].n_ready_codes, 2);
    ASSERT_INT_EQ(a->readiness_checks[0].ready_codes[1], 302);
    ASSERT_TRUE(a->readiness_checks[0].preserve_last_response);
    ASSERT_STR_EQ(a->readiness_checks[0].name, "readinessCheck");
    cm_app_free(a);
}

TEST(defaults_legacy_uris_and_ports)
{
    struct cm_app *a = example_app("app-rails-uris-env.json");
    ASSERT_UINT_EQ(a->n_fetch, 1);
    ASSERT_TRUE(a->fetch[0].extract); /* .tgz */
    ASSERT_FALSE(a->fetch[0].executable);
    ASSERT_FALSE(a->fetch[0].cache);
    ASSERT_UINT_EQ(a->n_env, 1);
    ASSERT_STR_EQ(a->env[0].name, "RAILS_ENV");
    ASSERT_STR_EQ(a->env[0].value, "production");
    cm_app_free(a);

    a = example_app("app-minuteman-legacy-task-vip-label.json");
    ASSERT_FALSE(a->fetch[0].extract); /* linux-amd64: not an archive */
    ASSERT_UINT_EQ(a->n_port_defs, 1);
    ASSERT_INT_EQ(a->port_defs[0].port, 10000);
    ASSERT_NULL(a->port_defs[0].name);
    cm_app_free(a);
}

TEST(defaults_legacy_ip_address)
{
    struct cm_app *a = example_app("app-legacy-ipaddress-discovery-ports.json");
    ASSERT_UINT_EQ(a->n_networks, 1);
    ASSERT_INT_EQ(a->networks[0].mode, CM_APP_NET_CONTAINER);
    ASSERT_STR_EQ(a->networks[0].name, "dcos");
    ASSERT_INT_EQ(a->container.type, CM_APP_CONTAINER_MESOS); /* implicit */
    ASSERT_UINT_EQ(a->container.n_port_mappings, 1);
    ASSERT_INT_EQ(a->container.port_mappings[0].container_port, 7777);
    ASSERT_INT_EQ(a->container.port_mappings[0].host_port, -1);
    ASSERT_STR_EQ(a->container.port_mappings[0].name, "my-port");
    cm_app_free(a);
}

TEST(defaults_resident_apps)
{
    struct cm_app *a = example_app("app-docker-user-network-resident-residency.json");
    ASSERT_TRUE(a->has_residency);
    ASSERT_TRUE(a->unreachable.disabled);
    ASSERT_TRUE(a->min_health_capacity == 0.5 && a->max_over_capacity == 0);
    ASSERT_INT_EQ(a->networks[0].mode, CM_APP_NET_CONTAINER);
    ASSERT_STR_EQ(a->networks[0].name, "dcos");
    ASSERT_INT_EQ(a->health_checks[0].port, 80);
    ASSERT_INT_EQ(a->health_checks[0].port_index, -1);
    cm_app_free(a);

    a = example_app("app-mesos-persistent-volume-resident.json");
    ASSERT_TRUE(a->has_residency); /* auto-added */
    ASSERT_INT_EQ(a->relaunch_escalation_timeout_s, 3600);
    ASSERT_FALSE(a->task_lost_relaunch);
    ASSERT_TRUE(a->unreachable.disabled);
    ASSERT_INT_EQ(a->container.volumes[0].kind, CM_APP_VOLUME_PERSISTENT);
    ASSERT_INT_EQ(a->container.volumes[0].size, 10);
    ASSERT_STR_EQ(a->container.volumes[0].persistent_type, "root");
    cm_app_free(a);
}

TEST(defaults_container_without_type_and_docker_host_network)
{
    struct cm_app *a = example_app("app-docker-host-tcp-hc-fixed-port.json");
    ASSERT_STR_EQ(a->id, "/elasticsearch");
    ASSERT_INT_EQ(a->container.type, CM_APP_CONTAINER_DOCKER);
    ASSERT_TRUE(a->container.force_pull_image);
    ASSERT_INT_EQ(a->networks[0].mode, CM_APP_NET_HOST);
    ASSERT_UINT_EQ(a->n_port_defs, 1);
    ASSERT_STR_EQ(a->port_defs[0].name, "default");
    ASSERT_INT_EQ(a->health_checks[0].proto, CM_APP_HC_TCP);
    ASSERT_NULL(a->health_checks[0].path);
    ASSERT_INT_EQ(a->health_checks[0].max_consecutive_failures, 0);
    cm_app_free(a);
}

TEST(defaults_minio_named_vip_and_string_unreachable)
{
    struct cm_app *a = example_app("app-named-vip-persistent-single-instance-minio.json");
    ASSERT_UINT_EQ(a->n_args, 4);
    ASSERT_NULL(a->cmd);
    ASSERT_TRUE(a->unreachable.disabled);
    ASSERT_INT_EQ(a->networks[0].mode, CM_APP_NET_BRIDGE);
    ASSERT_STR_EQ(a->container.port_mappings[0].labels.v[0].key, "VIP_0");
    ASSERT_STR_EQ(a->container.port_mappings[0].labels.v[0].value, "minio:9000");
    ASSERT_INT_EQ(a->max_launch_delay_s, 36000);
    ASSERT_INT_EQ(a->container.volumes[2].kind, CM_APP_VOLUME_HOST);
    ASSERT_STR_EQ(a->container.volumes[2].host_path, "miniodata");
    cm_app_free(a);
}

TEST(defaults_ipv6_and_check)
{
    struct cm_app *a =
        example_app("app-docker-container-network-ipv6-mesos-http-hc.json");
    ASSERT_TRUE(a->health_checks[0].ipv6);
    ASSERT_INT_EQ(a->health_checks[0].proto, CM_APP_HC_MESOS_HTTP);
    ASSERT_INT_EQ(a->container.port_mappings[0].host_port, 0);
    cm_app_free(a);

    a = example_app("app-mesos-check-http-portindex.json");
    ASSERT_INT_EQ(a->check.kind, CM_APP_CHECK_HTTP);
    ASSERT_INT_EQ(a->check.port_index, 0);
    ASSERT_STR_EQ(a->check.path, "/");
    ASSERT_INT_EQ(a->check.delay_s, 15);
    cm_app_free(a);
}

TEST(defaults_relative_ids_and_dotted_segments)
{
    struct cm_app *a = example_app("app-python-http-constraint-unique.json");
    ASSERT_STR_EQ(a->id, "/http");
    ASSERT_UINT_EQ(a->n_constraints, 1);
    ASSERT_STR_EQ(a->constraints[0].field, "hostname");
    ASSERT_INT_EQ(a->constraints[0].op, CM_APP_CONSTRAINT_UNIQUE);
    ASSERT_NULL(a->constraints[0].value);
    cm_app_free(a);

    a = example_app("app-dotted-path-id-command-hc.json");
    ASSERT_STR_EQ(a->id, "/v1.23/stress-test");
    char dns[128];
    ASSERT_OK(cm_app_dns_name(a->id, dns, sizeof(dns)));
    ASSERT_STR_EQ(dns, "stress-test.v1.23");
    ASSERT_INT_EQ(a->health_checks[0].port_index, -1); /* COMMAND */
    cm_app_free(a);
}

static const char sorted_a[] =
    "{\"id\":\"a\",\"cmd\":\"sleep 1\",\"labels\":{\"b\":\"2\",\"a\":\"1\"},"
    "\"env\":{\"Z\":\"z\",\"A\":\"a\"}}";
static const char sorted_b[] =
    "{ \"env\" : {\"A\":\"a\",\"Z\":\"z\"}, \"labels\": {\"a\":\"1\","
    "\"b\":\"2\"}, \"cmd\": \"sleep 1\", \"id\": \"/a\", \"cpus\": 1.0,"
    "\"version\": \"2015-01-01T00:00:00.000Z\"}";

TEST(canonical_is_deterministic)
{
    struct cm_app *a = NULL, *b = NULL;
    ASSERT_OK(cm_app_parse(sorted_a, strlen(sorted_a), NULL, &a, NULL));
    ASSERT_OK(cm_app_parse(sorted_b, strlen(sorted_b), NULL, &b, NULL));
    struct cm_buf ca = {0}, cb = {0}, ca2 = {0};
    ASSERT_OK(cm_app_canonical(a, &ca));
    ASSERT_OK(cm_app_canonical(b, &cb));
    ASSERT_OK(cm_app_canonical(a, &ca2));
    ASSERT_STR_EQ(ca.data, cb.data);
    ASSERT_STR_EQ(ca.data, ca2.data);
    ASSERT_TRUE(cm_app_equal(a, b));
    ASSERT_NOT_NULL(strstr(ca.data, "\"labels\":{\"a\":\"1\",\"b\":\"2\"}"));
    ASSERT_NOT_NULL(strstr(ca.data, "\"env\":{\"A\":\"a\",\"Z\":\"z\"}"));
    /* A change is visible. */
    b->instances = 7;
    ASSERT_FALSE(cm_app_equal(a, b));
    cm_buf_done(&ca);
    cm_buf_done(&cb);
    cm_buf_done(&ca2);
    cm_app_free(a);
    cm_app_free(b);
}

TEST(copy_is_equal_and_independent)
{
    struct cm_app *a =
        example_app("app-single-instance-framework-readiness-health-labels.json");
    struct cm_app *b = NULL;
    ASSERT_OK(cm_app_copy(a, &b));
    ASSERT_TRUE(cm_app_equal(a, b));
    ASSERT_TRUE(a->labels.v != b->labels.v);
    cm_app_free(a);
    cm_app_free(b);
}

TEST(round_trip_kitchen_sink_valid_variant)
{
    size_t len;
    char *text = slurp(CM_APP_CORPUS_DIR, "v-kitchen-sink-valid.json", &len);
    struct cm_app_parse_opts o = {.base = "/", .features = CM_APP_FEAT_ALL};
    struct cm_app_report rep = {0};
    struct cm_app *a = NULL;
    ASSERT_OK(cm_app_parse(text, len, &o, &a, &rep));
    ASSERT_STR_EQ(a->id, "/shop/backend/api");
    ASSERT_UINT_EQ(a->n_constraints, 9);
    ASSERT_INT_EQ(a->constraints[7].op, CM_APP_CONSTRAINT_CLUSTER);
    ASSERT_STR_EQ(a->constraints[7].value, "a:b"); /* legacy "field:OP:value" */
    ASSERT_INT_EQ(a->constraints[8].op, CM_APP_CONSTRAINT_LIKE);
    ASSERT_STR_EQ(a->dependencies[0], "/shop/db");
    ASSERT_STR_EQ(a->dependencies[1], "/shop/cache");
    ASSERT_STR_EQ(a->env[0].name, "DB_PASSWORD");
    ASSERT_STR_EQ(a->env[0].secret, "dbpass");
    ASSERT_TRUE(a->limit_cpus.unlimited);
    ASSERT_TRUE(a->limit_mem.value == 128);
    ASSERT_INT_EQ(a->container.volumes[2].kind, CM_APP_VOLUME_EXTERNAL);
    ASSERT_INT_EQ(a->container.volumes[3].kind, CM_APP_VOLUME_SECRET);
    ASSERT_INT_EQ(a->port_defs[1].proto, CM_APP_PROTO_UDP_TCP);
    ASSERT_TRUE(a->task_lost_relaunch);
    ASSERT_INT_EQ(a->tty, 0);
    /* "unknownField", "storeUrls" and "version" are ignored with warnings. */
    ASSERT_UINT_EQ(cm_app_report_count(&rep, CM_APP_ISSUE_WARNING), 3);
    assert_round_trip(a);
    cm_app_report_done(&rep);
    cm_app_free(a);
    free(text);
}

/* ---- OOM walks */

struct walk {
    const char *text;
    size_t len;
    unsigned features;
    int expect; /* the code of a run without faults */
};

static int walk_parse(void *arg)
{
    struct walk *w = arg;
    struct cm_app_parse_opts o = {.base = "/", .features = w->features};
    struct cm_app_report rep = {0};
    struct cm_app *a = NULL;
    struct cm_buf out = {0};
    int rv = cm_app_parse(w->text, w->len, &o, &a, &rep);
    if (rv != 0 && rv != CM_ENOMEM) {
        int r2 = cm_app_report_body(&rep, rv, &out);
        rv = r2 != 0 ? r2 : (rv == w->expect ? 0 : rv);
    }
    if (rv == 0 && a != NULL) {
        struct cm_app *b = NULL;
        struct cm_app_out_opts oo = {.version = "2026-11-22T14:00:00.123Z",
                                     .pretty = true};
        rv = cm_app_to_json(a, &oo, &out);
        if (rv == 0) {
            rv = cm_app_copy(a, &b);
        }
        cm_app_free(b);
    }
    cm_buf_done(&out);
    cm_app_free(a);
    cm_app_report_done(&rep);
    return rv;
}

TEST(oom_walk_kitchen_sink_example)
{
    size_t len;
    char *text =
        slurp(examples_dir(), "app-kitchen-sink-rest-api-doc-example.json", &len);
    struct walk w = {text, len, CM_APP_FEAT_ALL, CM_EVALIDATION};
    ASSERT_INT_OP(test_alloc_walk(walk_parse, &w), >, 100);
    free(text);
}

TEST(oom_walk_kitchen_sink_valid_variant)
{
    size_t len;
    char *text = slurp(CM_APP_CORPUS_DIR, "v-kitchen-sink-valid.json", &len);
    struct walk w = {text, len, CM_APP_FEAT_ALL, 0};
    ASSERT_INT_OP(test_alloc_walk(walk_parse, &w), >, 200);
    w.features = CM_APP_FEAT_NONE; /* the unsupported path */
    w.expect = CM_EUNSUPPORTED;
    ASSERT_INT_OP(test_alloc_walk(walk_parse, &w), >, 100);
    free(text);
}

static int walk_group(void *arg)
{
    struct walk *w = arg;
    struct cm_app_parse_opts o = {.base = "/", .features = w->features};
    struct cm_app_report rep = {0};
    struct cm_app_group *g = NULL;
    int rv = cm_app_group_parse(w->text, w->len, &o, &g, &rep);
    cm_app_group_free(g);
    cm_app_report_done(&rep);
    return rv == w->expect ? 0 : rv;
}

static int walk_array(void *arg)
{
    struct walk *w = arg;
    struct cm_app_list l = {0};
    struct cm_app_report rep = {0};
    int rv = cm_app_array_parse(w->text, w->len, NULL, &l, &rep);
    cm_app_list_done(&l);
    cm_app_report_done(&rep);
    return rv == w->expect ? 0 : rv;
}

TEST(oom_walk_groups_and_arrays)
{
    size_t len;
    char *text =
        slurp(examples_dir(), "group-root-getresponse-with-app-details.json", &len);
    struct walk w = {text, len, CM_APP_FEAT_ALL, 0};
    ASSERT_INT_OP(test_alloc_walk(walk_group, &w), >, 100);
    free(text);
    text = slurp(examples_dir(), "group-department-app-level-dependencies.json", &len);
    w = (struct walk){text, len, CM_APP_FEAT_NONE, 0};
    ASSERT_INT_OP(test_alloc_walk(walk_group, &w), >, 50);
    free(text);
    text = slurp(examples_dir(), "apps-array-put-with-dependencies.json", &len);
    w = (struct walk){text, len, CM_APP_FEAT_NONE, 0};
    ASSERT_INT_OP(test_alloc_walk(walk_array, &w), >, 20);
    free(text);
}
