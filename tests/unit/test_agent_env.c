/* lib/agent: the task environment from an app spec and a task row (Marathon's
 * names and merge order, shared/specs/compat.md §1.4). */
#include <stdlib.h>

#include "agent/agent.h"
#include "state/state.h"
#include "test.h"

static struct cm_app *parse(const char *json)
{
    struct cm_app *app = NULL;
    struct cm_app_parse_opts o = {.features = CM_APP_FEAT_ALL};
    struct cm_app_report rep = {0};
    int rv = cm_app_parse(json, strlen(json), &o, &app, &rep);
    if (rv != 0) {
        for (size_t i = 0; i < rep.n; i++) {
            printf("# %s: %s\n", rep.v[i].path, rep.v[i].msg);
        }
    }
    cm_app_report_done(&rep);
    ASSERT_OK(rv);
    return app;
}

/* The value of @name in @envp, or NULL; fails when it appears twice. */
static const char *get(char **envp, const char *name)
{
    const char *found = NULL;
    size_t n = strlen(name);
    for (char **p = envp; *p; p++) {
        if (strncmp(*p, name, n) == 0 && (*p)[n] == '=') {
            ASSERT_NULL(found);
            found = *p + n + 1;
        }
    }
    return found;
}

static const struct cm_agent_env_task task = {
    .id = "shop_web.a1b2",
    .version = "2026-11-22T14:00:00.000Z",
    .host = "10.0.0.7",
    .ports_json = "[31000,31001,31002]",
    .sandbox = "/var/lib/clusterctl/tasks/shop_web.a1b2",
};

TEST(env_every_variable_host_networking)
{
    struct cm_app *app = parse(
        "{\"id\":\"/shop/web\",\"cmd\":\"run\",\"cpus\":0.5,\"mem\":256,\"disk\":10,"
        "\"labels\":{\"tier\":\"front\",\"a.b-c\":\"x\"},"
        "\"env\":{\"FOO\":\"bar\",\"PORT\":\"9999\",\"HOST\":\"mine\"},"
        "\"portDefinitions\":[{\"port\":0,\"name\":\"http\"},{\"port\":8080,"
        "\"name\":\"admin-api\"},{\"port\":0}]}");
    char **env = NULL;
    ASSERT_OK(cm_agent_env_build(app, &task, &env));
    ASSERT_STR_EQ(get(env, "PORT0"), "31000");
    ASSERT_STR_EQ(get(env, "PORT1"), "31001");
    ASSERT_STR_EQ(get(env, "PORT2"), "31002");
    ASSERT_NULL(get(env, "PORT3"));
    ASSERT_STR_EQ(get(env, "PORTS"), "31000,31001,31002");
    /* Names upper-cased (Marathon), plus the shell-usable form for dashes. */
    ASSERT_STR_EQ(get(env, "PORT_HTTP"), "31000");
    ASSERT_STR_EQ(get(env, "PORT_ADMIN-API"), "31001");
    ASSERT_STR_EQ(get(env, "PORT_ADMIN_API"), "31001");
    /* PORT_<requested> for a fixed port, PORT_<host port> for dynamic ones. */
    ASSERT_STR_EQ(get(env, "PORT_8080"), "31001");
    ASSERT_STR_EQ(get(env, "PORT_31000"), "31000");
    ASSERT_STR_EQ(get(env, "PORT_31002"), "31002");
    ASSERT_STR_EQ(get(env, "MESOS_TASK_ID"), "shop_web.a1b2");
    ASSERT_STR_EQ(get(env, "MESOS_SANDBOX"), "/var/lib/clusterctl/tasks/shop_web.a1b2");
    ASSERT_STR_EQ(get(env, "MARATHON_APP_ID"), "/shop/web");
    ASSERT_STR_EQ(get(env, "MARATHON_APP_VERSION"), "2026-11-22T14:00:00.000Z");
    ASSERT_STR_EQ(get(env, "MARATHON_APP_RESOURCE_CPUS"), "0.5");
    ASSERT_STR_EQ(get(env, "MARATHON_APP_RESOURCE_MEM"), "256.0");
    ASSERT_STR_EQ(get(env, "MARATHON_APP_RESOURCE_DISK"), "10.0");
    ASSERT_STR_EQ(get(env, "MARATHON_APP_RESOURCE_GPUS"), "0");
    ASSERT_NULL(get(env, "MARATHON_APP_DOCKER_IMAGE"));
    /* Labels: runs of other characters become one '_', upper case. */
    ASSERT_STR_EQ(get(env, "MARATHON_APP_LABELS"), "A_B_C TIER");
    ASSERT_STR_EQ(get(env, "MARATHON_APP_LABEL_TIER"), "front");
    ASSERT_STR_EQ(get(env, "MARATHON_APP_LABEL_A_B_C"), "x");
    ASSERT_NOT_NULL(get(env, "PATH"));
    /* The app's env comes last and wins (TaskBuilder's merge order). */
    ASSERT_STR_EQ(get(env, "FOO"), "bar");
    ASSERT_STR_EQ(get(env, "PORT"), "9999");
    ASSERT_STR_EQ(get(env, "HOST"), "mine");
    cm_free(&env);
    cm_app_free(app);
}

TEST(env_defaults_and_no_ports)
{
    /* Default portDefinitions: one dynamic port named "default". */
    struct cm_app *app = parse("{\"id\":\"/a\",\"cmd\":\"xx\"}");
    struct cm_agent_env_task t = task;
    t.ports_json = "[31500]";
    char **env = NULL;
    ASSERT_OK(cm_agent_env_build(app, &t, &env));
    ASSERT_STR_EQ(get(env, "PORT0"), "31500");
    ASSERT_STR_EQ(get(env, "PORT"), "31500");
    ASSERT_STR_EQ(get(env, "PORT_DEFAULT"), "31500");
    ASSERT_STR_EQ(get(env, "HOST"), "10.0.0.7");
    ASSERT_STR_EQ(get(env, "MARATHON_APP_RESOURCE_CPUS"), "1.0");
    ASSERT_STR_EQ(get(env, "MARATHON_APP_RESOURCE_MEM"), "128.0");
    ASSERT_STR_EQ(get(env, "MARATHON_APP_LABELS"), "");
    cm_free(&env);
    cm_app_free(app);

    /* portDefinitions: [] means no ports: no PORT variables at all. */
    app = parse(
        "{\"id\":\"/b\",\"cmd\":\"xx\",\"portDefinitions\":[],"
        "\"env\":{\"PATH\":\"/opt/bin\"}}");
    t.ports_json = "[]";
    ASSERT_OK(cm_agent_env_build(app, &t, &env));
    ASSERT_NULL(get(env, "PORT"));
    ASSERT_NULL(get(env, "PORTS"));
    ASSERT_NULL(get(env, "PORT0"));
    ASSERT_STR_EQ(get(env, "PATH"), "/opt/bin");
    cm_free(&env);
    t.ports_json = NULL;
    t.host = NULL;
    ASSERT_OK(cm_agent_env_build(app, &t, &env));
    ASSERT_NULL(get(env, "PORTS"));
    ASSERT_STR_EQ(get(env, "HOST"), "localhost");
    cm_free(&env);
    cm_app_free(app);
}

TEST(env_port_mappings_and_image)
{
    struct cm_app *app = parse(
        "{\"id\":\"/c\",\"networks\":[{\"mode\":\"container/bridge\"}],"
        "\"container\":{\"type\":\"DOCKER\",\"docker\":{\"image\":\"nginx:1\"},"
        "\"portMappings\":[{\"containerPort\":80,\"hostPort\":0,\"name\":\"web\"},"
        "{\"containerPort\":0,\"hostPort\":0}]}}");
    struct cm_agent_env_task t = task;
    t.ports_json = "[31010,31011]";
    char **env = NULL;
    ASSERT_OK(cm_agent_env_build(app, &t, &env));
    ASSERT_STR_EQ(get(env, "PORT0"), "31010");
    ASSERT_STR_EQ(get(env, "PORT1"), "31011");
    ASSERT_STR_EQ(get(env, "PORT_80"), "31010");
    ASSERT_STR_EQ(get(env, "PORT_WEB"), "31010");
    ASSERT_STR_EQ(get(env, "PORT_31011"), "31011");
    ASSERT_STR_EQ(get(env, "PORTS"), "31010,31011");
    ASSERT_STR_EQ(get(env, "MARATHON_APP_DOCKER_IMAGE"), "nginx:1");
    cm_free(&env);
    cm_app_free(app);
}

TEST(env_rejects_bad_ports)
{
    struct cm_app *app = parse("{\"id\":\"/a\",\"cmd\":\"xx\"}");
    static const char *const bad[] = {"{}",       "[1.5]", "[-1]",    "[70000]",
                                      "[\"80\"]", "[",     "nonsense"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
        struct cm_agent_env_task t = task;
        t.ports_json = bad[i];
        char **env = NULL;
        ASSERT_ERR(cm_agent_env_build(app, &t, &env), CM_EMALFORMED);
        ASSERT_NULL(env);
    }
    cm_app_free(app);
}

static struct cm_app *oom_app;

static int build_once(void *arg)
{
    (void)arg;
    char **env = NULL;
    int rv = cm_agent_env_build(oom_app, &task, &env);
    cm_free(&env);
    return rv;
}

TEST(env_out_of_memory_everywhere)
{
    oom_app = parse(
        "{\"id\":\"/shop/web\",\"cmd\":\"run\",\"labels\":{\"k\":\"v\"},"
        "\"env\":{\"A\":\"1\"},\"portDefinitions\":[{\"port\":0,\"name\":\"p\"},"
        "{\"port\":0}]}");
    ASSERT_INT_OP(test_alloc_walk(build_once, NULL), >, 10);
    cm_app_free(oom_app);
}
