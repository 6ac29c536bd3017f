/* lib/state apps: group bodies, app arrays, dependency cycles, PathId rules, and
 * the DNS / Mesos-DNS / VIP names derived from app ids. */
#include "state/state.h"
#include "test.h"

static bool has_issue(const struct cm_app_report *rep, const char *path, const char *msg)
{
    for (size_t i = 0; i < rep->n; i++) {
        if (strcmp(rep->v[i].path, path) == 0 && strcmp(rep->v[i].msg, msg) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < rep->n; i++) {
        printf("#   [%d] %s: %s\n", rep->v[i].kind, rep->v[i].path, rep->v[i].msg);
    }
    return false;
}

static int group(const char *json, const char *base, struct cm_app_group **g,
                 struct cm_app_report *rep)
{
    struct cm_app_parse_opts o = {.base = base, .features = 0};
    return cm_app_group_parse(json, strlen(json), &o, g, rep);
}

TEST(group_relative_ids_flattened)
{
    const char *j =
        "{\"id\":\"shop\",\"dependencies\":[\"../infra\"],\"apps\":[{\"id\":\"web\","
        "\"cmd\":\"sleep 1\",\"dependencies\":[\"backend/api\"]}],\"groups\":[{\"id\":"
        "\"backend\",\"apps\":[{\"id\":\"api\",\"cmd\":\"sleep 1\"},{\"id\":\"/shop/"
        "backend/db\",\"cmd\":\"sleep 1\"}]}]}";
    struct cm_app_group *g = NULL;
    struct cm_app_report rep = {0};
    ASSERT_OK(group(j, "/", &g, &rep));
    ASSERT_STR_EQ(g->id, "/shop");
    ASSERT_UINT_EQ(g->apps.n, 3);
    ASSERT_STR_EQ(g->apps.v[0]->id, "/shop/web");
    ASSERT_STR_EQ(g->apps.v[0]->dependencies[0], "/shop/backend/api");
    ASSERT_STR_EQ(g->apps.v[1]->id, "/shop/backend/api");
    ASSERT_STR_EQ(g->apps.v[2]->id, "/shop/backend/db");
    ASSERT_UINT_EQ(g->n_groups, 2);
    ASSERT_STR_EQ(g->groups[0].id, "/shop");
    ASSERT_UINT_EQ(g->groups[0].n_dependencies, 1);
    ASSERT_STR_EQ(g->groups[0].dependencies[0], "/infra");
    ASSERT_STR_EQ(g->groups[1].id, "/shop/backend");
    ASSERT_NULL(g->version);
    ASSERT_FALSE(g->has_scale_by);
    ASSERT_INT_EQ(g->enforce_role, -1);
    cm_app_group_free(g);
    cm_app_report_done(&rep);
}

TEST(group_base_from_url)
{
    /* PUT /v2/groups/prod with a relative id and without one. */
    const char *j = "{\"id\":\"team\",\"apps\":[{\"id\":\"a\",\"cmd\":\"sleep 1\"}]}";
    struct cm_app_group *g = NULL;
    ASSERT_OK(group(j, "/prod", &g, NULL));
    ASSERT_STR_EQ(g->id, "/prod/team");
    ASSERT_STR_EQ(g->apps.v[0]->id, "/prod/team/a");
    cm_app_group_free(g);
    j = "{\"apps\":[{\"id\":\"a\",\"cmd\":\"sleep "
        "1\"}],\"version\":\"2015-09-17T10:38:20.875Z\","
        "\"scaleBy\":2,\"enforceRole\":true}";
    ASSERT_OK(group(j, "/prod", &g, NULL));
    ASSERT_STR_EQ(g->id, "/prod");
    ASSERT_STR_EQ(g->apps.v[0]->id, "/prod/a");
    ASSERT_STR_EQ(g->version, "2015-09-17T10:38:20.875Z");
    ASSERT_TRUE(g->has_scale_by && g->scale_by == 2);
    ASSERT_INT_EQ(g->enforce_role, 1);
    cm_app_group_free(g);
}

TEST(group_children_must_be_direct)
{
    struct cm_app_group *g = NULL;
    struct cm_app_report rep = {0};
    const char *j =
        "{\"id\":\"/g\",\"apps\":[{\"id\":\"/other/a\",\"cmd\":\"sleep 1\"}]}";
    ASSERT_ERR(group(j, "/", &g, &rep), CM_EVALIDATION);
    ASSERT_TRUE(
        has_issue(&rep, "/apps(0)/id",
                  "identifier /other/a is not child of /g. Hint: use relative paths."));
    cm_app_report_done(&rep);
    j = "{\"id\":\"/g\",\"groups\":[{\"id\":\"/g/x/y\"}]}";
    ASSERT_ERR(group(j, "/", &g, &rep), CM_EVALIDATION);
    ASSERT_TRUE(
        has_issue(&rep, "/groups(0)/id",
                  "identifier /g/x/y is not child of /g. Hint: use relative paths."));
    cm_app_report_done(&rep);
}

TEST(group_issue_paths_follow_the_body)
{
    struct cm_app_group *g = NULL;
    struct cm_app_report rep = {0};
    const char *j =
        "{\"id\":\"/g\",\"groups\":[{\"id\":\"s\",\"apps\":[{\"id\":\"ok\",\"cmd\":"
        "\"sleep 1\"},{\"id\":\"bad\",\"cmd\":\"sleep 1\",\"cpus\":0}]}]}";
    ASSERT_ERR(group(j, "/", &g, &rep), CM_EVALIDATION);
    ASSERT_TRUE(has_issue(&rep, "/groups(0)/apps(1)/cpus", "error.min"));
    cm_app_report_done(&rep);
    /* Type errors anywhere make the whole body a 400. */
    j = "{\"id\":\"/g\",\"apps\":[{\"id\":\"a\",\"cmd\":\"sleep "
        "1\",\"cpus\":0},{\"id\":\"b\","
        "\"cmd\":7}]}";
    ASSERT_ERR(group(j, "/", &g, &rep), CM_EMALFORMED);
    ASSERT_TRUE(has_issue(&rep, "/apps(1)/cmd", "error.expected.jsstring"));
    cm_app_report_done(&rep);
    j = "{\"id\":\"/g\",\"apps\":{}}";
    ASSERT_ERR(group(j, "/", &g, &rep), CM_EMALFORMED);
    ASSERT_TRUE(has_issue(&rep, "/apps", "error.expected.jsarray"));
    cm_app_report_done(&rep);
}

TEST(group_dependency_cycles)
{
    struct cm_app_group *g = NULL;
    struct cm_app_report rep = {0};
    const char *j =
        "{\"id\":\"/g\",\"apps\":[{\"id\":\"a\",\"cmd\":\"sleep 1\",\"dependencies\":"
        "[\"b\"]},{\"id\":\"b\",\"cmd\":\"sleep 1\",\"dependencies\":[\"/g/c\"]},{"
        "\"id\":\"c\",\"cmd\":\"sleep 1\",\"dependencies\":[\"a\"]}]}";
    ASSERT_ERR(group(j, "/", &g, &rep), CM_EVALIDATION);
    ASSERT_TRUE(has_issue(&rep, "/", "Dependency graph has cyclic dependencies."));
    ASSERT_TRUE(has_issue(&rep, "/", "cycle: /g/a -> /g/b -> /g/c -> /g/a"));
    cm_app_report_done(&rep);
    /* Through a group-level dependency: /g/x depends on /g/y, whose app depends on x's.
     */
    j = "{\"id\":\"/g\",\"groups\":[{\"id\":\"x\",\"dependencies\":[\"/g/"
        "y\"],\"apps\":[{\"id\":"
        "\"a\",\"cmd\":\"sleep "
        "1\"}]},{\"id\":\"y\",\"apps\":[{\"id\":\"b\",\"cmd\":\"sleep 1\","
        "\"dependencies\":[\"/g/x/a\"]}]}]}";
    ASSERT_ERR(group(j, "/", &g, &rep), CM_EVALIDATION);
    ASSERT_TRUE(has_issue(&rep, "/", "Dependency graph has cyclic dependencies."));
    ASSERT_TRUE(has_issue(&rep, "/", "cycle: /g/x/a -> /g/y/b -> /g/x/a"));
    cm_app_report_done(&rep);
    /* A chain and a dependency on something that does not exist are fine. */
    j = "{\"id\":\"/g\",\"apps\":[{\"id\":\"a\",\"cmd\":\"sleep "
        "1\",\"dependencies\":[\"b\","
        "\"/elsewhere\"]},{\"id\":\"b\",\"cmd\":\"sleep "
        "1\",\"dependencies\":[\"c\"]},{\"id\":"
        "\"c\",\"cmd\":\"sleep 1\"}]}";
    ASSERT_OK(group(j, "/", &g, &rep));
    cm_app_group_free(g);
    cm_app_report_done(&rep);
}

TEST(group_duplicate_ids_and_pods)
{
    struct cm_app_group *g = NULL;
    struct cm_app_report rep = {0};
    const char *j =
        "{\"id\":\"/g\",\"apps\":[{\"id\":\"a\",\"cmd\":\"sleep 1\"},{\"id\":\"/g/a\","
        "\"cmd\":\"sleep 2\"}]}";
    ASSERT_ERR(group(j, "/", &g, &rep), CM_EVALIDATION);
    ASSERT_TRUE(has_issue(&rep, "/", "duplicate app id /g/a"));
    cm_app_report_done(&rep);
    j = "{\"id\":\"/g\",\"apps\":[{\"id\":\"a\",\"cmd\":\"sleep "
        "1\"}],\"groups\":[{\"id\":\"a\"}]}";
    ASSERT_ERR(group(j, "/", &g, &rep), CM_EVALIDATION);
    ASSERT_TRUE(has_issue(&rep, "/", "id /g/a is used by both an app and a group"));
    cm_app_report_done(&rep);
    j = "{\"id\":\"/g\",\"pods\":[{\"id\":\"p\"}]}";
    ASSERT_ERR(group(j, "/", &g, &rep), CM_EUNSUPPORTED);
    ASSERT_TRUE(
        has_issue(&rep, "/pods", "unsupported feature: pods (only apps are supported)"));
    cm_app_report_done(&rep);
    j = "{\"id\":\"/g\",\"scaleBy\":-1}";
    ASSERT_ERR(group(j, "/", &g, &rep), CM_EVALIDATION);
    ASSERT_TRUE(has_issue(&rep, "/scaleBy", "error.min"));
    cm_app_report_done(&rep);
}

TEST(group_root_and_empty)
{
    struct cm_app_group *g = NULL;
    ASSERT_OK(group("{\"id\":\"/\"}", "/", &g, NULL));
    ASSERT_STR_EQ(g->id, "/");
    ASSERT_UINT_EQ(g->apps.n, 0);
    ASSERT_UINT_EQ(g->n_groups, 1);
    cm_app_group_free(g);
    struct cm_app_report rep = {0};
    ASSERT_ERR(group("[]", "/", &g, &rep), CM_EMALFORMED);
    cm_app_report_done(&rep);
}

TEST(array_of_apps)
{
    struct cm_app_list l = {0};
    struct cm_app_report rep = {0};
    const char *j =
        "[{\"id\":\"a\",\"cmd\":\"sleep 1\"},{\"id\":\"/b/c\",\"cmd\":\"sleep 1\","
        "\"dependencies\":[\"../a\"]}]";
    ASSERT_OK(cm_app_array_parse(j, strlen(j), NULL, &l, &rep));
    ASSERT_UINT_EQ(l.n, 2);
    ASSERT_STR_EQ(l.v[1]->dependencies[0], "/a");
    cm_app_list_done(&l);
    ASSERT_UINT_EQ(l.n, 0);

    j = "[{\"id\":\"a\",\"cmd\":\"sleep 1\"},{\"id\":\"/a\",\"cmd\":\"sleep 1\"}]";
    ASSERT_ERR(cm_app_array_parse(j, strlen(j), NULL, &l, &rep), CM_EVALIDATION);
    ASSERT_TRUE(has_issue(&rep, "(1)/id", "duplicate app id /a"));
    cm_app_report_done(&rep);

    j = "[{\"id\":\"a\",\"cmd\":\"sleep 1\"},{\"id\":\"b\",\"cmd\":\"sleep "
        "1\",\"cpus\":-1}]";
    ASSERT_ERR(cm_app_array_parse(j, strlen(j), NULL, &l, &rep), CM_EVALIDATION);
    ASSERT_TRUE(has_issue(&rep, "(1)/cpus", "error.min"));
    cm_app_report_done(&rep);

    j = "[{\"id\":\"a\",\"cmd\":\"sleep "
        "1\",\"dependencies\":[\"b\"]},{\"id\":\"b\",\"cmd\":"
        "\"sleep 1\",\"dependencies\":[\"a\"]}]";
    ASSERT_ERR(cm_app_array_parse(j, strlen(j), NULL, &l, &rep), CM_EVALIDATION);
    ASSERT_TRUE(has_issue(&rep, "/", "Dependency graph has cyclic dependencies."));
    cm_app_report_done(&rep);

    ASSERT_ERR(cm_app_array_parse("{}", 2, NULL, &l, &rep), CM_EMALFORMED);
    ASSERT_TRUE(has_issue(&rep, "/", "error.expected.jsarray"));
    cm_app_report_done(&rep);
    ASSERT_ERR(cm_app_array_parse("[1]", 3, NULL, &l, &rep), CM_EMALFORMED);
    ASSERT_TRUE(has_issue(&rep, "(0)", "error.expected.jsobject"));
    cm_app_report_done(&rep);
}

TEST(dependency_check_direct)
{
    /* cm_app_check_dependencies on apps parsed separately (the store's view). */
    const char *ja = "{\"id\":\"/x/a\",\"cmd\":\"sleep 1\",\"dependencies\":[\"/y\"]}";
    const char *jb = "{\"id\":\"/y/b\",\"cmd\":\"sleep 1\"}";
    struct cm_app *a = NULL, *b = NULL;
    ASSERT_OK(cm_app_parse(ja, strlen(ja), NULL, &a, NULL));
    ASSERT_OK(cm_app_parse(jb, strlen(jb), NULL, &b, NULL));
    struct cm_app *apps[] = {a, b};
    ASSERT_OK(cm_app_check_dependencies(apps, 2, NULL, 0, NULL));
    char *deps[] = {"/x"};
    struct cm_app_group_info groups[] = {
        {.id = "/y", .dependencies = deps, .n_dependencies = 1}};
    struct cm_app_report rep = {0};
    ASSERT_ERR(cm_app_check_dependencies(apps, 2, groups, 1, &rep), CM_EVALIDATION);
    ASSERT_UINT_EQ(rep.n, 2); /* Marathon's message, then the cycle named */
    ASSERT_STR_EQ(rep.v[1].msg, "cycle: /x/a -> /y/b -> /x/a");
    cm_app_report_done(&rep);
    ASSERT_OK(cm_app_check_dependencies(NULL, 0, NULL, 0, NULL));
    cm_app_free(a);
    cm_app_free(b);
}

/* ---- paths */

struct norm_case {
    const char *id;
    const char *base;
    int code;
    const char *out;
};

TEST(path_normalize)
{
    static const struct norm_case cases[] = {
        {"a", NULL, 0, "/a"},
        {"a", "/g", 0, "/g/a"},
        {"/a/b", "/g", 0, "/a/b"},
        {"../x", "/g/h", 0, "/g/x"},
        {"./a/./b/../c", "/", 0, "/a/c"},
        {"//a///b/", "/", 0, "/a/b"},
        {"", "/g", 0, "/g"},
        {"/", "/g", 0, "/"},
        {"/v1.23/stress-test", "/", 0, "/v1.23/stress-test"},
        {"..", "/", CM_EINVAL, NULL},
        {"/a/../..", "/", CM_EINVAL, NULL},
        {"/A", "/", CM_EINVAL, NULL},
        {"/a.", "/", CM_EINVAL, NULL},
        {"/.a", "/", CM_EINVAL, NULL},
        {"/a..b", "/", CM_EINVAL, NULL},
        {"/-a", "/", CM_EINVAL, NULL},
        {"/a b", "/", CM_EINVAL, NULL},
        {"a/b/c", "/BAD", CM_EINVAL, NULL},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        char out[CM_APP_MAX_ID + 1];
        int rv = cm_app_path_normalize(cases[i].id, cases[i].base, out, sizeof(out));
        if (rv != cases[i].code) {
            test__fail(__FILE__, __LINE__, "%s: got %d", cases[i].id, rv);
        }
        if (rv == 0) {
            ASSERT_STR_EQ(out, cases[i].out);
        }
    }
    /* Length: 256 bytes is the limit, and so is the caller's buffer. */
    char id[400], out[CM_APP_MAX_ID + 1];
    memset(id, 'a', sizeof(id));
    for (size_t i = 0; i < sizeof(id) - 1; i += 10) {
        id[i] = '/';
    }
    id[sizeof(id) - 1] = '\0';
    ASSERT_ERR(cm_app_path_normalize(id, "/", out, sizeof(out)), CM_ETOOBIG);
    char small[4];
    ASSERT_ERR(cm_app_path_normalize("/abcd", "/", small, sizeof(small)), CM_ETOOBIG);
    ASSERT_OK(cm_app_path_normalize("/ab", "/", small, sizeof(small)));
}

TEST(path_app_rules_parent_within)
{
    ASSERT_NULL(cm_app_id_check("/a"));
    ASSERT_NULL(cm_app_id_check("/vips/x"));
    ASSERT_NULL(cm_app_id_check("/x/vip"));
    ASSERT_NOT_NULL(cm_app_id_check("/"));
    ASSERT_NOT_NULL(cm_app_id_check("a"));
    ASSERT_NOT_NULL(cm_app_id_check("/a/tasks"));
    ASSERT_NOT_NULL(cm_app_id_check("/vip"));
    ASSERT_NOT_NULL(cm_app_id_check("/node/a"));
    ASSERT_NOT_NULL(cm_app_id_check("/leader"));

    char out[64];
    ASSERT_OK(cm_app_path_parent("/a/b/c", out, sizeof(out)));
    ASSERT_STR_EQ(out, "/a/b");
    ASSERT_OK(cm_app_path_parent("/a", out, sizeof(out)));
    ASSERT_STR_EQ(out, "/");
    ASSERT_OK(cm_app_path_parent("/", out, sizeof(out)));
    ASSERT_STR_EQ(out, "/");
    ASSERT_ERR(cm_app_path_parent("/abc/d", out, 3), CM_ETOOBIG);

    ASSERT_TRUE(cm_app_path_within("/a/b", "/a"));
    ASSERT_TRUE(cm_app_path_within("/a", "/a"));
    ASSERT_TRUE(cm_app_path_within("/a", "/"));
    ASSERT_FALSE(cm_app_path_within("/ab", "/a"));
    ASSERT_FALSE(cm_app_path_within("/a", "/a/b"));
}

/* ---- names */

TEST(dns_name_reverses_segments)
{
    char out[64];
    ASSERT_OK(cm_app_dns_name("/shop/backend/api", out, sizeof(out)));
    ASSERT_STR_EQ(out, "api.backend.shop");
    ASSERT_OK(cm_app_dns_name("/web", out, sizeof(out)));
    ASSERT_STR_EQ(out, "web");
    ASSERT_OK(cm_app_dns_name("/v1.23/stress-test", out, sizeof(out)));
    ASSERT_STR_EQ(out, "stress-test.v1.23");
    ASSERT_ERR(cm_app_dns_name("/", out, sizeof(out)), CM_EINVAL);
    ASSERT_ERR(cm_app_dns_name("web", out, sizeof(out)), CM_EINVAL);
    char tiny[8];
    ASSERT_ERR(cm_app_dns_name("/shop/backend", tiny, sizeof(tiny)), CM_ETOOBIG);
    ASSERT_OK(cm_app_dns_name("/ab/cdef", tiny, sizeof(tiny)));
    ASSERT_STR_EQ(tiny, "cdef.ab");
}

TEST(mesos_dns_labels)
{
    static const char *const cases[][3] = {
        /* name, RFC 1123 label, RFC 952 label */
        {"myapp.mygroup", "myapp-mygroup", "myapp-mygroup"},
        {"ChronosTask:nightly_etl", "chronostasknightly-etl", "chronostasknightly-etl"},
        {"stress-test.v1.23", "stress-test-v1-23", "stress-test-v1-23"},
        {"--a--", "a", "a"},
        {"123abc", "123abc", "abc"},
        {"1-2-x", "1-2-x", "x"},
        {"a/b c", "abc", "abc"},
        {"abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnopqrstuvwxyz",
         "abcdefghijklmnopqrstuvwx"},
        {"abcdefghijklmnopqrstuvw-yz", "abcdefghijklmnopqrstuvw-yz",
         "abcdefghijklmnopqrstuvw"},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        char out[64];
        ASSERT_OK(cm_app_mesos_dns_label(cases[i][0], false, out, sizeof(out)));
        ASSERT_STR_EQ(out, cases[i][1]);
        ASSERT_OK(cm_app_mesos_dns_label(cases[i][0], true, out, sizeof(out)));
        ASSERT_STR_EQ(out, cases[i][2]);
    }
    char long_name[100], out[64];
    memset(long_name, 'x', 99);
    long_name[99] = '\0';
    ASSERT_OK(cm_app_mesos_dns_label(long_name, false, out, sizeof(out)));
    ASSERT_UINT_EQ(strlen(out), 63);
    char tiny[4];
    ASSERT_ERR(cm_app_mesos_dns_label("abcd", false, tiny, sizeof(tiny)), CM_ETOOBIG);
}

TEST(mesos_dns_names)
{
    char lab[128], leg[128];
    ASSERT_OK(cm_app_mesos_dns_names("/mygroup/myapp", "marathon", "mesos", lab,
                                     sizeof(lab), leg, sizeof(leg)));
    ASSERT_STR_EQ(lab, "myapp-mygroup.marathon.mesos");
    ASSERT_STR_EQ(leg, "myapp.mygroup.marathon.mesos");
    /* compat.md §7.7 */
    ASSERT_OK(cm_app_mesos_dns_names("/v1.23/stress-test", "marathon", "mesos", lab,
                                     sizeof(lab), leg, sizeof(leg)));
    ASSERT_STR_EQ(lab, "stress-test-v1-23.marathon.mesos");
    ASSERT_STR_EQ(leg, "stress-test.v1.23.marathon.mesos");
    /* compat.md §3.1 step 3: each framework part labelled. */
    ASSERT_OK(cm_app_mesos_dns_names("/nginx", "marathon-0.7.5", "mesos", lab,
                                     sizeof(lab), leg, sizeof(leg)));
    ASSERT_STR_EQ(lab, "nginx.marathon-0.7.5.mesos");
    ASSERT_ERR(cm_app_mesos_dns_names("/", "marathon", "mesos", lab, sizeof(lab), leg,
                                      sizeof(leg)),
               CM_EINVAL);
    ASSERT_ERR(
        cm_app_mesos_dns_names("/a", "marathon", "mesos", lab, 5, leg, sizeof(leg)),
        CM_ETOOBIG);
}

TEST(vip_labels)
{
    char name[64];
    uint16_t port;
    bool ip;
    ASSERT_TRUE(cm_app_is_vip_label("VIP_0"));
    ASSERT_TRUE(cm_app_is_vip_label("vip"));
    ASSERT_FALSE(cm_app_is_vip_label("Vip_0"));
    ASSERT_FALSE(cm_app_is_vip_label("HAPROXY_0_VHOST"));

    ASSERT_OK(cm_app_vip_parse("/myapp:80", name, sizeof(name), &port, &ip));
    ASSERT_STR_EQ(name, "/myapp");
    ASSERT_UINT_EQ(port, 80);
    ASSERT_FALSE(ip);
    ASSERT_OK(cm_app_vip_parse("minio:9000", name, sizeof(name), &port, &ip));
    ASSERT_STR_EQ(name, "minio");
    ASSERT_FALSE(ip);
    ASSERT_OK(cm_app_vip_parse("/api.hello:80", name, sizeof(name), &port, &ip));
    ASSERT_STR_EQ(name, "/api.hello");
    ASSERT_OK(cm_app_vip_parse("192.168.0.1:80", name, sizeof(name), &port, &ip));
    ASSERT_STR_EQ(name, "192.168.0.1");
    ASSERT_TRUE(ip);
    ASSERT_OK(cm_app_vip_parse("[fd01::1]:65535", name, sizeof(name), &port, NULL));
    ASSERT_STR_EQ(name, "fd01::1");
    ASSERT_UINT_EQ(port, 65535);
    ASSERT_OK(cm_app_vip_parse("fd01::1:80", name, sizeof(name), &port, &ip));
    ASSERT_STR_EQ(name, "fd01::1");
    ASSERT_TRUE(ip);

    static const char *const bad[] = {
        "web", ":80", "a:0", "a:65536", "a:", "a:8x", "/:80", "a b:80", "a:123456"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
        if (cm_app_vip_parse(bad[i], name, sizeof(name), &port, &ip) != CM_EINVAL) {
            test__fail(__FILE__, __LINE__, "accepted %s", bad[i]);
        }
    }
    char tiny[4];
    ASSERT_ERR(cm_app_vip_parse("abcdef:80", tiny, sizeof(tiny), &port, NULL),
               CM_ETOOBIG);
}

TEST(enum_names)
{
    ASSERT_STR_EQ(cm_app_proto_name(CM_APP_PROTO_UDP_TCP), "udp,tcp");
    ASSERT_STR_EQ(cm_app_hc_proto_name(CM_APP_HC_MESOS_TCP), "MESOS_TCP");
    ASSERT_STR_EQ(cm_app_constraint_op_name(CM_APP_CONSTRAINT_MAX_PER), "MAX_PER");
    ASSERT_STR_EQ(cm_app_net_mode_name(CM_APP_NET_BRIDGE), "container/bridge");
}
