/* Deployments (docs/deployments.md): Marathon's upgrade arithmetic, table-driven
 * with the worked examples of the doc; dependency order and named cycles; the
 * deploy.* commands and the rollback command over a real state.db. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <unistd.h>

#include "state/db.h"
#include "state/state.h"
#include "test.h"

/* ------------------------------------------------------------------ arithmetic */

struct upgrade_case {
    const char *what;
    uint32_t instances;
    double min_health, max_over;
    bool resident;
    uint32_t old_live, new_live, new_ready;
    /* expected */
    uint32_t min_healthy, max_capacity, launch, kill_old;
};

static const struct upgrade_case upgrade_cases[] = {
    /* docs/deployments.md, example 1: 10 instances, 0.5 / 0.2. */
    {"10/0.5/0.2 start", 10, 0.5, 0.2, false, 10, 0, 0, 5, 12, 7, 5},
    {"10/0.5/0.2 three ready", 10, 0.5, 0.2, false, 5, 7, 3, 5, 12, 3, 3},
    {"10/0.5/0.2 eight ready", 10, 0.5, 0.2, false, 2, 10, 8, 5, 12, 0, 2},
    {"10/0.5/0.2 done", 10, 0.5, 0.2, false, 0, 10, 10, 5, 12, 0, 0},
    /* Marathon's default 1 / 1: start every new task, then kill every old one. */
    {"3/1/1 start", 3, 1.0, 1.0, false, 3, 0, 0, 3, 6, 3, 0},
    {"3/1/1 two ready", 3, 1.0, 1.0, false, 3, 3, 2, 3, 6, 0, 2},
    {"3/1/1 all ready", 3, 1.0, 1.0, false, 3, 3, 3, 3, 6, 0, 3},
    /* 1 / 1 / 0: min == max, so one task over capacity (start, then kill). */
    {"1/1/0 start", 1, 1.0, 0.0, false, 1, 0, 0, 1, 2, 1, 0},
    {"1/1/0 new ready", 1, 1.0, 0.0, false, 1, 1, 1, 1, 2, 0, 1},
    /* ... unless resident: one under the floor instead (kill, then start). */
    {"1/1/0 resident", 1, 1.0, 0.0, true, 1, 0, 0, 1, 1, 1, 1},
    /* 0 / 0: kill everything old, start everything new. */
    {"1/0/0", 1, 0.0, 0.0, false, 1, 0, 0, 0, 1, 1, 1},
    {"3/0/0", 3, 0.0, 0.0, false, 3, 0, 0, 0, 3, 3, 3},
    /* ceil for the floor: 3 * 0.5 = 1.5 -> 2. */
    {"3/0.5/0 start", 3, 0.5, 0.0, false, 3, 0, 0, 2, 3, 1, 1},
    {"3/0.5/0 one ready", 3, 0.5, 0.0, false, 2, 1, 1, 2, 3, 1, 1},
    /* truncation for the ceiling: 3 * 1.1 = 3.3 -> 3, then the +1 rule. */
    {"3/1/0.1", 3, 1.0, 0.1, false, 3, 0, 0, 3, 4, 1, 0},
    {"4/0.5/0.5", 4, 0.5, 0.5, false, 4, 0, 0, 2, 6, 4, 2},
    /* A new task that is not ready yet lets no old one go. */
    {"3/1/0 staging", 3, 1.0, 0.0, false, 3, 1, 0, 3, 4, 0, 0},
    /* Scale down during an upgrade: fewer wanted than old tasks. */
    {"2/1/0 from 4 old", 2, 1.0, 0.0, false, 4, 0, 0, 2, 3, 1, 2},
};

TEST(upgrade_arithmetic_table)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(upgrade_cases); i++) {
        const struct upgrade_case *c = &upgrade_cases[i];
        struct cm_upgrade u = {c->instances, c->min_health, c->max_over, c->resident};
        struct cm_upgrade_state st = {c->old_live, c->new_live, c->new_ready};
        struct cm_upgrade_round r;
        cm_upgrade_plan(&u, &st, &r);
        printf("# %s: floor %u cap %u launch %u kill %u\n", c->what, r.min_healthy,
               r.max_capacity, r.launch, r.kill_old);
        ASSERT_UINT_EQ(r.min_healthy, c->min_healthy);
        ASSERT_UINT_EQ(r.max_capacity, c->max_capacity);
        ASSERT_UINT_EQ(r.launch, c->launch);
        ASSERT_UINT_EQ(r.kill_old, c->kill_old);
    }
}

/* Simulate a whole rolling upgrade, round by round (each started task becomes
 * ready before the next round, each kill takes effect): the floor and the
 * ceiling hold at every instant, and it ends with every task new. */
TEST(upgrade_simulation_keeps_floor_and_ceiling)
{
    static const double mins[] = {0.0, 0.3, 0.5, 0.9, 1.0};
    static const double maxs[] = {0.0, 0.2, 0.5, 1.0};
    for (uint32_t inst = 1; inst <= 12; inst++) {
        for (size_t a = 0; a < CM_ARRAY_SIZE(mins); a++) {
            for (size_t b = 0; b < CM_ARRAY_SIZE(maxs); b++) {
                struct cm_upgrade u = {inst, mins[a], maxs[b], false};
                struct cm_upgrade_state st = {inst, 0, 0};
                int rounds = 0;
                for (; rounds < 100 && (st.old_live > 0 || st.new_ready < inst);
                     rounds++) {
                    struct cm_upgrade_round r;
                    cm_upgrade_plan(&u, &st, &r);
                    st.old_live -= r.kill_old;
                    /* The floor: old + ready new never below it. */
                    ASSERT_TRUE(st.old_live + st.new_ready >= r.min_healthy);
                    st.new_live += r.launch;
                    ASSERT_TRUE(st.old_live + st.new_live <= r.max_capacity);
                    ASSERT_TRUE(st.new_live <= inst);
                    st.new_ready = st.new_live;
                }
                ASSERT_INT_OP(rounds, <, 100);
                ASSERT_UINT_EQ(st.old_live, 0);
                ASSERT_UINT_EQ(st.new_ready, inst);
            }
        }
    }
}

/* ------------------------------------------------------------------ order */

TEST(deploy_order_levels_and_groups)
{
    const char *db[] = {"/db"};
    const char *api[] = {"/db"};
    const char *web[] = {"/shop/backend"}; /* a group: every app under it */
    const char *none[] = {"/elsewhere"};   /* outside the set: ignored */
    struct cm_deploy_node apps[] = {
        {"/shop/web", web, 1},          {"/shop/backend/api", api, 1}, {"/db", NULL, 0},
        {"/shop/backend/cache", db, 1}, {"/lonely", none, 1},
    };
    uint32_t step[5];
    char cycle[128];
    ASSERT_OK(cm_deploy_order(apps, 5, step, cycle, sizeof(cycle)));
    ASSERT_UINT_EQ(step[2], 0);
    ASSERT_UINT_EQ(step[1], 1);
    ASSERT_UINT_EQ(step[3], 1);
    ASSERT_UINT_EQ(step[0], 2);
    ASSERT_UINT_EQ(step[4], 0);
}

TEST(deploy_order_names_the_cycle)
{
    const char *a[] = {"/b"};
    const char *b[] = {"/c"};
    const char *c[] = {"/a"};
    struct cm_deploy_node apps[] = {
        {"/x", NULL, 0}, {"/a", a, 1}, {"/b", b, 1}, {"/c", c, 1}};
    uint32_t step[4];
    char cycle[128];
    ASSERT_ERR(cm_deploy_order(apps, 4, step, cycle, sizeof(cycle)), CM_EVALIDATION);
    ASSERT_STR_EQ(cycle, "/a -> /b -> /c -> /a");
    ASSERT_OK(cm_deploy_order(NULL, 0, step, cycle, sizeof(cycle)));
}

/* ------------------------------------------------------------------ commands */

struct fixture {
    char dir[64];
    char path[96];
    struct cm_state *s;
    uint64_t index;
};

static void fx_open(struct fixture *f)
{
    snprintf(f->dir, sizeof(f->dir), "/tmp/deploy-test-XXXXXX");
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

static int apply(struct fixture *f, const char *cmd)
{
    struct cm_errbuf eb;
    int rv = cm_state_validate(f->s, cmd, strlen(cmd), &eb);
    if (rv != 0) {
        printf("# validate: %s\n", eb.msg);
        return rv;
    }
    return cm_state_apply(f->s, ++f->index, cmd, strlen(cmd), &eb);
}

struct dep_seen {
    char status[16];
    char reason[128];
    int64_t step;
    bool promoted;
    int n;
};

static int dep_cb(void *data, const struct cm_deploy_row *row)
{
    struct dep_seen *d = data;
    snprintf(d->status, sizeof(d->status), "%s", row->status);
    snprintf(d->reason, sizeof(d->reason), "%s", row->reason ? row->reason : "");
    d->step = row->step;
    d->promoted = row->promoted;
    d->n++;
    return 0;
}

static struct dep_seen dep(struct fixture *f, const char *id)
{
    struct dep_seen d = {0};
    ASSERT_OK(cm_state_deployments(f->s, id, false, dep_cb, &d));
    return d;
}

static int running(struct fixture *f)
{
    struct dep_seen d = {0};
    ASSERT_OK(cm_state_deployments(f->s, NULL, true, dep_cb, &d));
    return d.n;
}

struct app_seen {
    char version[32];
    int64_t instances;
};

static int app_cb(void *data, const struct cm_app_row *row)
{
    struct app_seen *a = data;
    snprintf(a->version, sizeof(a->version), "%s", row->version);
    a->instances = row->instances;
    return 0;
}

#define APP_V(v, inst)                       \
    "{\"type\":\"app.put\",\"version\":\"" v \
    "\",\"app\":{\"id\":\"/web\",\"cmd\":"   \
    "\"sleep 1\",\"instances\":" #inst "}}"

TEST(deploy_commands_lifecycle)
{
    struct fixture f;
    fx_open(&f);
    ASSERT_OK(apply(&f,
                    "{\"type\":\"deploy.start\",\"at\":1000,\"id\":\"d1\","
                    "\"version\":\"v1\",\"apps\":[\"/web\"],\"plan\":{\"steps\":["
                    "{\"actions\":[{\"action\":\"StartApplication\",\"app\":\"/web\","
                    "\"version\":\"v1\"}]}]},\"changes\":[" APP_V("v1", 2) "]}"));
    /* The change came with it. */
    struct app_seen a = {0};
    ASSERT_OK(cm_state_apps(f.s, "/web", app_cb, &a));
    ASSERT_STR_EQ(a.version, "v1");
    struct dep_seen d = dep(&f, "d1");
    ASSERT_STR_EQ(d.status, "running");
    ASSERT_INT_EQ(d.step, 0);
    ASSERT_INT_EQ(running(&f), 1);
    ASSERT_OK(
        apply(&f, "{\"type\":\"deploy.step\",\"at\":1100,\"id\":\"d1\",\"step\":1}"));
    ASSERT_INT_EQ(dep(&f, "d1").step, 1);
    ASSERT_OK(apply(&f, "{\"type\":\"deploy.promote\",\"at\":1200,\"id\":\"d1\"}"));
    ASSERT_TRUE(dep(&f, "d1").promoted);
    ASSERT_OK(apply(&f, "{\"type\":\"deploy.done\",\"at\":1300,\"id\":\"d1\"}"));
    ASSERT_STR_EQ(dep(&f, "d1").status, "success");
    ASSERT_INT_EQ(running(&f), 0);
    /* Finished is final. */
    ASSERT_OK(apply(&f,
                    "{\"type\":\"deploy.failed\",\"at\":1400,\"id\":\"d1\","
                    "\"reason\":\"late\"}"));
    ASSERT_STR_EQ(dep(&f, "d1").status, "success");

    /* A newer deployment of the same app replaces the running one. */
    ASSERT_OK(apply(&f,
                    "{\"type\":\"deploy.start\",\"at\":2000,\"id\":\"d2\","
                    "\"version\":\"v2\",\"apps\":[\"/web\"],\"plan\":{\"steps\":[]},"
                    "\"changes\":[" APP_V("v2", 2) "]}"));
    ASSERT_OK(apply(&f,
                    "{\"type\":\"deploy.start\",\"at\":2100,\"id\":\"d3\","
                    "\"version\":\"v3\",\"apps\":[\"/web\",\"/other\"],\"plan\":{"
                    "\"steps\":[]},\"changes\":[" APP_V("v3", 3) "]}"));
    d = dep(&f, "d2");
    ASSERT_STR_EQ(d.status, "cancelled");
    ASSERT_STR_EQ(d.reason, "replaced by d3");
    ASSERT_OK(apply(&f, "{\"type\":\"deploy.cancel\",\"at\":2200,\"id\":\"d3\"}"));
    ASSERT_STR_EQ(dep(&f, "d3").status, "cancelled");
    ASSERT_ERR(cm_state_deployments(f.s, "nope", false, dep_cb, &d), CM_ENOTFOUND);
    fx_close(&f);
}

TEST(deploy_commands_are_validated)
{
    struct fixture f;
    fx_open(&f);
    struct cm_errbuf eb;
    const char *bad[][2] = {
        {"{\"type\":\"deploy.start\",\"at\":1,\"id\":\"d\",\"version\":\"v\",\"apps\":[],"
         "\"plan\":{\"steps\":[]},\"changes\":[{\"type\":\"node.up\"}]}",
         "deploy.start: changes[0].type: must be app.put, app.delete or task.kill"},
        {"{\"type\":\"deploy.start\",\"at\":1,\"id\":\"d\",\"version\":\"v\",\"apps\":[],"
         "\"changes\":[]}",
         "deploy.start: plan: missing"},
        {"{\"type\":\"deploy.start\",\"at\":1,\"id\":\"d\",\"version\":\"v\",\"apps\":[],"
         "\"plan\":{\"steps\":[]},\"changes\":[{\"type\":\"app.delete\",\"id\":\"/x\"}]}",
         "app.delete: id: app '/x' does not exist"},
        {"{\"type\":\"deploy.step\",\"at\":1,\"id\":\"d\"}",
         "deploy.step: step: missing"},
        {"{\"type\":\"deploy.failed\",\"at\":1,\"id\":\"d\"}",
         "deploy.failed: reason: missing"},
        {"{\"type\":\"deploy.bogus\",\"at\":1,\"id\":\"d\"}",
         "command: type: unknown type 'deploy.bogus'"},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
        ASSERT_ERR(cm_state_validate(f.s, bad[i][0], strlen(bad[i][0]), &eb),
                   CM_EVALIDATION);
        ASSERT_STR_EQ(eb.msg, bad[i][1]);
    }
    fx_close(&f);
}

TEST(deploy_rollback_restores_versions_and_instances)
{
    struct fixture f;
    fx_open(&f);
    ASSERT_OK(apply(&f, APP_V("v1", 2)));
    ASSERT_OK(apply(&f,
                    "{\"type\":\"app.put\",\"version\":\"v0\",\"app\":{\"id\":"
                    "\"/db\",\"cmd\":\"sleep 1\"}}"));
    /* d1: /web v1 (2) -> v2 (5), and starts /new. */
    ASSERT_OK(apply(
        &f,
        "{\"type\":\"deploy.start\",\"at\":1000,\"id\":\"d1\",\"version\":\"v2\","
        "\"apps\":[\"/web\",\"/new\",\"/db\"],\"plan\":{\"steps\":[{\"actions\":[{"
        "\"action\":\"StopApplication\",\"app\":\"/db\",\"from\":\"v0\","
        "\"fromInstances\":1,\"spec\":{\"id\":\"/db\",\"cmd\":\"sleep 1\"}}]},"
        "{\"actions\":[{\"action\":\"RestartApplication\","
        "\"app\":\"/web\",\"version\":\"v2\",\"from\":\"v1\",\"fromInstances\":2}]},"
        "{\"actions\":[{\"action\":\"StartApplication\",\"app\":\"/new\","
        "\"version\":\"v2\"}]}]},\"changes\":[" APP_V(
            "v2", 5) ",{\"type\":\"app.put\","
                     "\"version\":\"v2\",\"app\":{\"id\":\"/new\",\"cmd\":\"sleep "
                     "1\"}},{\"type\":"
                     "\"app.delete\",\"at\":1000,\"id\":\"/db\"}]}"));
    struct cm_buf cmd = {0};
    ASSERT_OK(cm_deploy_rollback_cmd(f.s, "d1", "r1", "v3", 2000, &cmd));
    cJSON *j = cJSON_Parse(cmd.data);
    ASSERT_NOT_NULL(j);
    const cJSON *steps = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "plan"), "steps");
    ASSERT_INT_EQ(cJSON_GetArraySize(steps), 3);
    /* Undone last step first: /new stops, /web goes back, /db comes back. */
    const cJSON *a0 = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetArrayItem(steps, 0), "actions"), 0);
    ASSERT_STR_EQ(cJSON_GetObjectItem(a0, "action")->valuestring, "StopApplication");
    ASSERT_STR_EQ(cJSON_GetObjectItem(a0, "app")->valuestring, "/new");
    const cJSON *a2 = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetArrayItem(steps, 2), "actions"), 0);
    ASSERT_STR_EQ(cJSON_GetObjectItem(a2, "action")->valuestring, "StartApplication");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "rollbackOf")->valuestring, "d1");
    cJSON_Delete(j);
    ASSERT_OK(apply(&f, cmd.data));
    cm_buf_done(&cmd);
    struct app_seen a = {0};
    ASSERT_OK(cm_state_apps(f.s, "/web", app_cb, &a));
    ASSERT_STR_EQ(a.version, "v1");
    ASSERT_INT_EQ(a.instances, 2);
    ASSERT_ERR(cm_state_apps(f.s, "/new", app_cb, &a), CM_ENOTFOUND);
    ASSERT_OK(cm_state_apps(f.s, "/db", app_cb, &a));
    ASSERT_STR_EQ(a.version, "v0");
    struct dep_seen d = dep(&f, "d1");
    ASSERT_STR_EQ(d.status, "failed");
    ASSERT_STR_EQ(d.reason, "rolled back by r1");
    ASSERT_STR_EQ(dep(&f, "r1").status, "running");
    ASSERT_ERR(cm_deploy_rollback_cmd(f.s, "nope", "r2", "v4", 3000, &cmd), CM_ENOTFOUND);
    cm_buf_done(&cmd);
    fx_close(&f);
}

/* ------------------------------------------------------------------ the app model */

static bool has_issue(const struct cm_app_report *rep, enum cm_app_issue_kind kind,
                      const char *path, const char *msg)
{
    for (size_t i = 0; i < rep->n; i++) {
        if (rep->v[i].kind == kind && strcmp(rep->v[i].path, path) == 0 &&
            strcmp(rep->v[i].msg, msg) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < rep->n; i++) {
        printf("#   [%d] %s: %s\n", rep->v[i].kind, rep->v[i].path, rep->v[i].msg);
    }
    return false;
}

TEST(upgrade_strategy_extensions_parse_validate_and_round_trip)
{
    const char *j =
        "{\"id\":\"/w\",\"cmd\":\"sleep 1\",\"instances\":4,\"upgradeStrategy\":"
        "{\"minimumHealthCapacity\":0.5,\"canaries\":1,"
        "\"canaryPromoteAfterSeconds\":30,\"autoRollback\":true,"
        "\"progressDeadlineSeconds\":60,\"bogus\":1}}";
    struct cm_app *a = NULL;
    struct cm_app_report rep = {0};
    ASSERT_OK(cm_app_parse(j, strlen(j), NULL, &a, &rep));
    ASSERT_INT_EQ(a->canaries, 1);
    ASSERT_INT_EQ(a->canary_promote_after_s, 30);
    ASSERT_TRUE(a->auto_rollback);
    ASSERT_INT_EQ(a->progress_deadline_s, 60);
    /* Unknown fields stay what they were: ignored, with a warning. */
    ASSERT_UINT_EQ(cm_app_report_count(&rep, CM_APP_ISSUE_WARNING), 1);
    cm_app_report_done(&rep);
    struct cm_app *b = NULL;
    ASSERT_OK(cm_app_copy(a, &b));
    ASSERT_TRUE(cm_app_equal(a, b));
    ASSERT_INT_EQ(b->progress_deadline_s, 60);
    cm_app_free(b);
    cm_app_free(a);
    /* Marathon's apps keep their shape: no extension fields when unset. */
    j = "{\"id\":\"/w\",\"cmd\":\"sleep 1\"}";
    ASSERT_OK(cm_app_parse(j, strlen(j), NULL, &a, NULL));
    struct cm_buf out = {0};
    ASSERT_OK(cm_app_canonical(a, &out));
    ASSERT_NULL(strstr(out.data, "canar"));
    ASSERT_NULL(strstr(out.data, "autoRollback"));
    cm_buf_done(&out);
    cm_app_free(a);

    static const char *const bad[][3] = {
        {"{\"canaries\":-1}", "/upgradeStrategy/canaries", "error.min"},
        {"{\"canaries\":5}", "/upgradeStrategy/canaries",
         "must not be more than instances"},
        {"{\"canaryPromoteAfterSeconds\":10}",
         "/upgradeStrategy/canaryPromoteAfterSeconds",
         "needs upgradeStrategy.canaries > 0"},
        {"{\"progressDeadlineSeconds\":-3}", "/upgradeStrategy/progressDeadlineSeconds",
         "error.min"},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"id\":\"/w\",\"cmd\":\"sleep 1\",\"instances\":4,"
                 "\"upgradeStrategy\":%s}",
                 bad[i][0]);
        ASSERT_ERR(cm_app_parse(body, strlen(body), NULL, &a, &rep), CM_EVALIDATION);
        ASSERT_TRUE(has_issue(&rep, CM_APP_ISSUE_INVALID, bad[i][1], bad[i][2]));
        cm_app_report_done(&rep);
    }
    j = "{\"id\":\"/w\",\"cmd\":\"sleep 1\",\"upgradeStrategy\":{\"autoRollback\":1}}";
    ASSERT_ERR(cm_app_parse(j, strlen(j), NULL, &a, &rep), CM_EMALFORMED);
    ASSERT_TRUE(has_issue(&rep, CM_APP_ISSUE_SYNTAX, "/upgradeStrategy/autoRollback",
                          "error.expected.jsboolean"));
    cm_app_report_done(&rep);
}
