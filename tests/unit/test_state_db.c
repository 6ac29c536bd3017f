/* lib/state db: commands validated and applied deterministically, snapshots. */
#include <stdlib.h>
#include <unistd.h>

#include "state/db.h"
#include "test.h"

struct fixture {
    char dir[64];
    char path[96];
    struct cm_state *s;
};

static void fx_open(struct fixture *f)
{
    snprintf(f->dir, sizeof(f->dir), "/tmp/cm-state-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_open(f->path, &f->s, &eb));
}

static void fx_close(struct fixture *f)
{
    cm_state_close(f->s);
    f->s = NULL;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    ASSERT_INT_EQ(system(cmd), 0);
}

static int apply(struct fixture *f, uint64_t index, const char *cmd)
{
    struct cm_errbuf eb;
    int rv = cm_state_validate(f->s, cmd, strlen(cmd), &eb);
    if (rv != 0) {
        printf("# validate: %s\n", eb.msg);
        return rv;
    }
    return cm_state_apply(f->s, index, cmd, strlen(cmd), &eb);
}

static int count_cb(void *data, const struct cm_task_row *row)
{
    (void)row;
    (*(int *)data)++;
    return 0;
}

static int state_cb(void *data, const struct cm_task_row *row)
{
    *(struct cm_task_row *)data = *row;
    ((struct cm_task_row *)data)->id = NULL; /* strings are borrowed */
    return 0;
}

static int tasks_of(struct fixture *f, const char *app, const char *node)
{
    int n = 0;
    ASSERT_OK(cm_state_tasks(f->s, app, node, count_cb, &n));
    return n;
}

static enum cm_task_state task_state(struct fixture *f, const char *id)
{
    struct cm_task_row r;
    ASSERT_OK(cm_state_task(f->s, id, state_cb, &r));
    return r.state;
}

static const char *app_put =
    "{\"type\":\"app.put\",\"version\":\"2026-11-22T14:00:00.000Z\","
    "\"app\":{\"id\":\"/web\",\"cmd\":\"sleep 1000\",\"instances\":2}}";
static const char *assign =
    "{\"type\":\"task.assign\",\"at\":1000,\"tasks\":["
    "{\"id\":\"web.1\",\"app\":\"/web\",\"version\":\"v1\",\"node\":\"n1\","
    "\"host\":\"10.0.0.1\",\"ports\":[31000]},"
    "{\"id\":\"web.2\",\"app\":\"/web\",\"version\":\"v1\",\"node\":\"n2\","
    "\"host\":\"10.0.0.2\",\"ports\":[31001]}]}";

TEST(state_apply_lifecycle)
{
    struct fixture f;
    fx_open(&f);
    ASSERT_UINT_EQ(cm_state_applied_index(f.s), 0);
    ASSERT_OK(apply(&f, 1, app_put));
    ASSERT_UINT_EQ(cm_state_take_changes(f.s), CM_STATE_CHANGED_APPS);
    ASSERT_OK(apply(&f, 2, assign));
    ASSERT_INT_EQ(tasks_of(&f, "/web", NULL), 2);
    ASSERT_INT_EQ(tasks_of(&f, NULL, "n2"), 1);
    ASSERT_INT_EQ(task_state(&f, "web.1"), CM_TASK_STAGING);
    ASSERT_OK(apply(&f, 3,
                    "{\"type\":\"task.status\",\"at\":1500,\"id\":\"web.1\","
                    "\"state\":\"running\",\"health\":\"healthy\"}"));
    struct cm_task_row r;
    ASSERT_OK(cm_state_task(f.s, "web.1", state_cb, &r));
    ASSERT_INT_EQ(r.state, CM_TASK_RUNNING);
    ASSERT_INT_EQ(r.started_at, 1500);
    ASSERT_INT_EQ(r.exit_status, -1);
    ASSERT_OK(apply(&f, 4, "{\"type\":\"task.kill\",\"at\":1600,\"ids\":[\"web.1\"]}"));
    ASSERT_INT_EQ(task_state(&f, "web.1"), CM_TASK_KILLING);
    /* A "running" report sent before the kill committed does not revive it. */
    ASSERT_OK(apply(&f, 40,
                    "{\"type\":\"task.status\",\"at\":1650,\"id\":\"web.1\","
                    "\"state\":\"running\"}"));
    ASSERT_INT_EQ(task_state(&f, "web.1"), CM_TASK_KILLING);
    ASSERT_OK(apply(&f, 45,
                    "{\"type\":\"task.status\",\"at\":1700,\"id\":\"web.1\","
                    "\"state\":\"killed\",\"exit\":143}"));
    /* A late report after a terminal state changes nothing. */
    ASSERT_OK(apply(&f, 46,
                    "{\"type\":\"task.status\",\"at\":1800,\"id\":\"web.1\","
                    "\"state\":\"running\"}"));
    ASSERT_INT_EQ(task_state(&f, "web.1"), CM_TASK_KILLED);
    ASSERT_OK(apply(&f, 47, "{\"type\":\"task.expunge\",\"ids\":[\"web.1\",\"web.2\"]}"));
    ASSERT_INT_EQ(tasks_of(&f, "/web", NULL), 1); /* web.2 is not terminal */
    ASSERT_OK(apply(&f, 48, "{\"type\":\"app.delete\",\"id\":\"/web\"}"));
    ASSERT_INT_EQ(task_state(&f, "web.2"), CM_TASK_KILLING);
    ASSERT_UINT_EQ(cm_state_applied_index(f.s), 48);
    fx_close(&f);
}

TEST(state_nodes_and_unreachable_tasks)
{
    struct fixture f;
    fx_open(&f);
    ASSERT_OK(apply(&f, 1, app_put));
    ASSERT_OK(apply(&f, 2, assign));
    ASSERT_OK(
        apply(&f, 3,
              "{\"type\":\"node.up\",\"at\":5,\"node\":{\"id\":\"n2\",\"address\":"
              "\"10.0.0.2\",\"attrs\":{\"rack\":\"r1\"},\"resources\":{\"cpus\":2}}}"));
    ASSERT_OK(apply(&f, 4,
                    "{\"type\":\"task.status\",\"at\":6,\"id\":\"web.2\",\"state\":"
                    "\"running\"}"));
    ASSERT_OK(apply(&f, 5,
                    "{\"type\":\"node.state\",\"at\":7,\"id\":\"n2\",\"state\":"
                    "\"unreachable\"}"));
    ASSERT_INT_EQ(task_state(&f, "web.2"), CM_TASK_UNREACHABLE);
    ASSERT_OK(apply(&f, 6,
                    "{\"type\":\"node.state\",\"at\":8,\"id\":\"n2\",\"state\":\"up\"}"));
    ASSERT_INT_EQ(task_state(&f, "web.2"), CM_TASK_RUNNING);
    ASSERT_OK(apply(
        &f, 7, "{\"type\":\"node.state\",\"at\":9,\"id\":\"n2\",\"state\":\"down\"}"));
    ASSERT_INT_EQ(task_state(&f, "web.2"), CM_TASK_LOST);
    fx_close(&f);
}

struct bad_cmd {
    const char *cmd;
    const char *want;
};

TEST(state_validate_names_the_field)
{
    static const struct bad_cmd cases[] = {
        {"not json", "not valid JSON"},
        {"[1]", "JSON object"},
        {"{}", "type: missing"},
        {"{\"type\":\"app.frob\"}", "unknown type 'app.frob'"},
        {"{\"type\":\"app.put\",\"version\":\"v\"}", "app.put: app: missing"},
        {"{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"rel\"}}", "absolute"},
        {"{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/"
         "a\",\"instances\":-1}}",
         "app.instances"},
        {"{\"type\":\"app.delete\",\"id\":\"/nope\"}", "does not exist"},
        {"{\"type\":\"task.assign\",\"at\":1,\"tasks\":[]}", "1 to"},
        {"{\"type\":\"task.assign\",\"at\":1,\"tasks\":[{\"id\":\"t\",\"app\":\"/web\","
         "\"version\":\"v\",\"node\":\"n\",\"host\":\"h\"}]}",
         "tasks[0].ports: missing"},
        {"{\"type\":\"task.assign\",\"at\":1,\"tasks\":[{\"id\":\"t\",\"app\":\"/web\","
         "\"version\":\"v\",\"node\":\"n\",\"host\":\"h\",\"ports\":[70000]}]}",
         "ports"},
        {"{\"type\":\"task.assign\",\"at\":1,\"tasks\":[{\"id\":\"t\",\"app\":\"/other\","
         "\"version\":\"v\",\"node\":\"n\",\"host\":\"h\",\"ports\":[]}]}",
         "app '/other' does not exist"},
        {"{\"type\":\"task.assign\",\"at\":1.5,\"tasks\":[]}", "at: must be an integer"},
        {"{\"type\":\"task.status\",\"at\":1,\"id\":\"web.1\",\"state\":\"dancing\"}",
         "unknown state"},
        {"{\"type\":\"task.status\",\"at\":1,\"id\":\"zzz\",\"state\":\"running\"}",
         "unknown task"},
        {"{\"type\":\"task.status\",\"at\":1,\"id\":\"web.1\",\"state\":\"running\","
         "\"health\":\"meh\"}",
         "health"},
        {"{\"type\":\"task.status\",\"at\":1,\"id\":\"web.1\",\"state\":\"running\","
         "\"ready\":1}",
         "task.status: ready: must be a boolean"},
        {"{\"type\":\"task.status\",\"at\":1,\"id\":\"web.1\",\"state\":\"running\","
         "\"checks\":[]}",
         "task.status: checks: must be an object"},
        {"{\"type\":\"task.kill\",\"at\":1,\"ids\":[1]}", "ids[0]"},
        {"{\"type\":\"node.up\",\"at\":1,\"node\":{\"id\":\"n\",\"address\":\"a\","
         "\"attrs\":[],\"resources\":{}}}",
         "node.attrs: must be an object"},
        {"{\"type\":\"node.state\",\"at\":1,\"id\":\"n\",\"state\":\"gone\"}", "state"},
    };
    struct fixture f;
    fx_open(&f);
    ASSERT_OK(apply(&f, 1, app_put));
    ASSERT_OK(apply(&f, 2, assign));
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        struct cm_errbuf eb;
        cm_errbuf_clear(&eb);
        int rv = cm_state_validate(f.s, cases[i].cmd, strlen(cases[i].cmd), &eb);
        if (rv != CM_EVALIDATION || strstr(eb.msg, cases[i].want) == NULL) {
            test__fail(__FILE__, __LINE__, "case %zu: rv %d msg '%s' (want '%s')", i, rv,
                       eb.msg, cases[i].want);
        }
    }
    /* Invalid commands that reach apply anyway change nothing but the index. */
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_apply(f.s, 3, "garbage", 7, &eb));
    ASSERT_UINT_EQ(cm_state_applied_index(f.s), 3);
    ASSERT_INT_EQ(tasks_of(&f, NULL, NULL), 2);
    fx_close(&f);
}

static int copy_row(void *data, const struct cm_task_row *row)
{
    struct cm_task_row *r = data;
    *r = *row;
    /* Strings are borrowed: keep copies of the two under test. */
    static char health[32], checks[256];
    snprintf(health, sizeof(health), "%s", row->health ? row->health : "(null)");
    snprintf(checks, sizeof(checks), "%s", row->checks ? row->checks : "(null)");
    r->health = health;
    r->checks = checks;
    return 0;
}

TEST(state_health_ready_and_checks_change_only_when_given)
{
    struct fixture f;
    fx_open(&f);
    ASSERT_OK(apply(&f, 1, app_put));
    ASSERT_OK(apply(&f, 2, assign));
    struct cm_task_row r;
    ASSERT_OK(cm_state_task(f.s, "web.1", copy_row, &r));
    ASSERT_FALSE(r.ready);
    ASSERT_STR_EQ(r.health, "(null)");
    ASSERT_STR_EQ(r.checks, "(null)");
    ASSERT_OK(apply(&f, 3,
                    "{\"type\":\"task.status\",\"at\":1500,\"id\":\"web.1\","
                    "\"state\":\"running\",\"ready\":true}"));
    ASSERT_OK(cm_state_task(f.s, "web.1", copy_row, &r));
    ASSERT_TRUE(r.ready);
    ASSERT_STR_EQ(r.health, "(null)");
    /* A health transition carries the check results. */
    ASSERT_OK(apply(&f, 4,
                    "{\"type\":\"task.status\",\"at\":1600,\"id\":\"web.1\","
                    "\"state\":\"running\",\"health\":\"unhealthy\","
                    "\"checks\":{\"health\":[{\"alive\":false}]}}"));
    ASSERT_OK(cm_state_task(f.s, "web.1", copy_row, &r));
    ASSERT_STR_EQ(r.health, "unhealthy");
    ASSERT_STR_EQ(r.checks, "{\"health\":[{\"alive\":false}]}");
    ASSERT_TRUE(r.ready);
    /* A report without them (the executor's "running" again) keeps them. */
    ASSERT_OK(apply(&f, 5,
                    "{\"type\":\"task.status\",\"at\":1700,\"id\":\"web.1\","
                    "\"state\":\"running\"}"));
    ASSERT_OK(cm_state_task(f.s, "web.1", copy_row, &r));
    ASSERT_STR_EQ(r.health, "unhealthy");
    ASSERT_STR_EQ(r.checks, "{\"health\":[{\"alive\":false}]}");
    ASSERT_TRUE(r.ready);
    /* An explicit null clears the verdict. */
    ASSERT_OK(apply(&f, 6,
                    "{\"type\":\"task.status\",\"at\":1800,\"id\":\"web.1\","
                    "\"state\":\"running\",\"health\":null}"));
    ASSERT_OK(cm_state_task(f.s, "web.1", copy_row, &r));
    ASSERT_STR_EQ(r.health, "(null)");
    fx_close(&f);
}

static int noop_app_cb(void *data, const struct cm_app_row *row)
{
    (void)data;
    (void)row;
    return 0;
}

/* Running out of memory while applying must stop the node (an error), never
 * skip the command as if it were invalid: that would advance the applied index
 * without the change and this replica would differ from the others. */
TEST(state_apply_out_of_memory_is_an_error_not_a_skip)
{
    struct fixture f;
    fx_open(&f);
    uint64_t index = 1;
    unsigned ooms = 0;
    for (int i = 0; i < 5000; i++) {
        char cmd[256], id[32];
        snprintf(id, sizeof(id), "/web%d", i);
        snprintf(cmd, sizeof(cmd),
                 "{\"type\":\"app.put\",\"version\":\"2026-11-22T14:00:00.000Z\","
                 "\"app\":{\"id\":\"%s\",\"cmd\":\"sleep 1000\",\"instances\":1}}",
                 id);
        struct cm_errbuf eb;
        cm_alloc_fault_set(i, 1);
        int rv = cm_state_apply(f.s, index, cmd, strlen(cmd), &eb);
        bool fired = cm_alloc_fault_fired();
        cm_alloc_fault_reset();
        if (rv != 0) {
            ASSERT_INT_EQ(rv, CM_ENOMEM);
            ASSERT_UINT_EQ(cm_state_applied_index(f.s), index - 1);
            ooms++;
            continue;
        }
        ASSERT_UINT_EQ(cm_state_applied_index(f.s), index);
        ASSERT_OK(cm_state_apps(f.s, id, noop_app_cb, NULL)); /* applied, not skipped */
        index++;
        if (!fired) {
            break;
        }
    }
    ASSERT_TRUE(ooms > 0);
    fx_close(&f);
}

TEST(state_applied_index_survives_reopen_and_replay_is_skipped)
{
    struct fixture f;
    fx_open(&f);
    ASSERT_OK(apply(&f, 1, app_put));
    ASSERT_OK(apply(&f, 2, assign));
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_apply_noop(f.s, 3, &eb));
    cm_state_close(f.s);
    ASSERT_OK(cm_state_open(f.path, &f.s, &eb));
    ASSERT_UINT_EQ(cm_state_applied_index(f.s), 3);
    /* Re-applying an old index (raft replays after a restart) is a no-op. */
    const char *kill = "{\"type\":\"task.kill\",\"at\":9,\"ids\":[\"web.1\"]}";
    ASSERT_OK(cm_state_apply(f.s, 2, kill, strlen(kill), &eb));
    ASSERT_INT_EQ(task_state(&f, "web.1"), CM_TASK_STAGING);
    fx_close(&f);
}

TEST(state_snapshot_and_restore)
{
    struct fixture a, b;
    fx_open(&a);
    fx_open(&b);
    ASSERT_OK(apply(&a, 1, app_put));
    ASSERT_OK(apply(&a, 2, assign));
    char snap[128];
    snprintf(snap, sizeof(snap), "%s/snap", a.dir);
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_snapshot(a.s, snap, &eb));
    ASSERT_OK(
        apply(&b, 1, "{\"type\":\"app.put\",\"version\":\"x\",\"app\":{\"id\":\"/z\"}}"));
    ASSERT_OK(cm_state_restore(b.s, snap, &eb));
    ASSERT_UINT_EQ(cm_state_applied_index(b.s), 2);
    ASSERT_INT_EQ(tasks_of(&b, "/web", NULL), 2);
    ASSERT_ERR(cm_state_apps(b.s, "/z", NULL, NULL), CM_ENOTFOUND);
    /* Applying goes on after a restore. */
    ASSERT_OK(apply(&b, 3, "{\"type\":\"task.kill\",\"at\":3,\"ids\":[\"web.2\"]}"));
    ASSERT_INT_EQ(task_state(&b, "web.2"), CM_TASK_KILLING);
    /* Garbage is refused and the state stays. */
    char bad[128];
    snprintf(bad, sizeof(bad), "%s/bad", a.dir);
    FILE *fp = fopen(bad, "w");
    fputs("not a database at all, not even close................................", fp);
    fclose(fp);
    ASSERT_TRUE(cm_state_restore(b.s, bad, &eb) != 0);
    ASSERT_TRUE(strstr(eb.msg, bad) != NULL);
    ASSERT_INT_EQ(tasks_of(&b, "/web", NULL), 2);
    fx_close(&a);
    fx_close(&b);
}

TEST(state_open_refuses_garbage_naming_the_file)
{
    char dir[] = "/tmp/cm-state-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    char path[96];
    snprintf(path, sizeof(path), "%s/state.db", dir);
    FILE *fp = fopen(path, "w");
    for (int i = 0; i < 200; i++) {
        fputs("garbage garbage garbage ", fp);
    }
    fclose(fp);
    struct cm_state *s;
    struct cm_errbuf eb;
    ASSERT_ERR(cm_state_open(path, &s, &eb), CM_ECORRUPT);
    ASSERT_TRUE(strstr(eb.msg, path) != NULL);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ASSERT_INT_EQ(system(cmd), 0);
}

TEST(task_state_names)
{
    enum cm_task_state st;
    for (unsigned i = 0; i < CM__TASK_STATE_COUNT; i++) {
        ASSERT_OK(cm_task_state_parse(cm_task_state_name((enum cm_task_state)i), &st));
        ASSERT_UINT_EQ(st, i);
    }
    ASSERT_NULL(cm_task_state_name(CM__TASK_STATE_COUNT));
    ASSERT_ERR(cm_task_state_parse("RUNNING", &st), CM_EINVAL);
    ASSERT_TRUE(cm_task_state_terminal(CM_TASK_LOST));
    ASSERT_FALSE(cm_task_state_terminal(CM_TASK_UNREACHABLE));
}

/* ---- named VIPs */

struct vip_list {
    char text[512];
};

static int vip_cb(void *data, const struct cm_vip_row *row)
{
    struct vip_list *l = data;
    size_t len = strlen(l->text);
    snprintf(l->text + len, sizeof(l->text) - len, "%s=%s;", row->name, row->address);
    return 0;
}

static const char *vips_text(struct fixture *f, struct vip_list *l)
{
    l->text[0] = '\0';
    ASSERT_OK(cm_state_vips(f->s, vip_cb, l));
    return l->text;
}

TEST(state_vip_put_and_delete)
{
    struct fixture f;
    fx_open(&f);
    struct vip_list l;
    ASSERT_OK(
        apply(&f, 1,
              "{\"type\":\"vip.put\",\"vips\":[{\"name\":\"web\",\"address\":"
              "\"198.18.0.7\"},{\"name\":\"shop/api\",\"address\":\"198.18.1.2\"}]}"));
    ASSERT_TRUE(cm_state_take_changes(f.s) & CM_STATE_CHANGED_VIPS);
    ASSERT_STR_EQ(vips_text(&f, &l), "shop/api=198.18.1.2;web=198.18.0.7;");
    /* Re-putting the same pair is a no-op; a name may move to a free address. */
    ASSERT_OK(apply(&f, 2,
                    "{\"type\":\"vip.put\",\"vips\":[{\"name\":\"web\",\"address\":"
                    "\"198.18.0.8\"}]}"));
    ASSERT_STR_EQ(vips_text(&f, &l), "shop/api=198.18.1.2;web=198.18.0.8;");
    ASSERT_OK(apply(&f, 3, "{\"type\":\"vip.delete\",\"names\":[\"web\",\"nope\"]}"));
    ASSERT_STR_EQ(vips_text(&f, &l), "shop/api=198.18.1.2;");
    ASSERT_TRUE(cm_state_take_changes(f.s) & CM_STATE_CHANGED_VIPS);
    fx_close(&f);
}

TEST(state_vip_validate_names_the_field)
{
    static const struct bad_cmd cases[] = {
        {"{\"type\":\"vip.put\"}", "vip.put: vips: missing"},
        {"{\"type\":\"vip.put\",\"vips\":[]}", "1 to"},
        {"{\"type\":\"vip.put\",\"vips\":[{\"address\":\"198.18.0.1\"}]}",
         "vips[0].name: missing"},
        {"{\"type\":\"vip.put\",\"vips\":[{\"name\":\"/"
         "web\",\"address\":\"198.18.0.1\"}]}",
         "vips[0].name: '/web' is not a VIP name"},
        {"{\"type\":\"vip.put\",\"vips\":[{\"name\":\"a "
         "b\",\"address\":\"198.18.0.1\"}]}",
         "vips[0].name"},
        {"{\"type\":\"vip.put\",\"vips\":[{\"name\":\"x\",\"address\":\"198.18.0\"}]}",
         "vips[0].address: '198.18.0' is not an IPv4 address"},
        {"{\"type\":\"vip.put\",\"vips\":[{\"name\":\"x\",\"address\":\"198.18.0.1\"},"
         "{\"name\":\"y\",\"address\":\"198.18.0.1\"}]}",
         "vips[1].: same address as vips[0]"},
        {"{\"type\":\"vip.put\",\"vips\":[{\"name\":\"other\",\"address\":\"198.18.0.7\"}"
         "]}",
         "vips[0].address: 198.18.0.7 already belongs to VIP 'web'"},
        {"{\"type\":\"vip.delete\",\"names\":[]}", "vip.delete: names: must hold"},
        {"{\"type\":\"vip.delete\",\"names\":[3]}", "vip.delete: names[0]"},
        /* An app's address VIP may not take a named VIP's address. */
        {"{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/b\","
         "\"portDefinitions\":[{\"port\":0,\"labels\":{}},{\"port\":0,\"labels\":"
         "{\"VIP_0\":\"198.18.0.7:80\"}}]}}",
         "app.put: app.portDefinitions[1].labels.VIP_0: address 198.18.0.7 is the "
         "address of the named VIP '/web'"},
        {"{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/b\","
         "\"container\":{\"portMappings\":[{\"labels\":{\"vip\":\"198.18.0.7:80\"}}]}}}",
         "app.container.portMappings[0].labels.vip"},
        {"{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/b\","
         "\"labels\":{\"VIP_PORT0\":\"tcp://198.18.0.7:80\"}}}",
         "app.labels.VIP_PORT0"},
    };
    struct fixture f;
    fx_open(&f);
    ASSERT_OK(apply(&f, 1,
                    "{\"type\":\"vip.put\",\"vips\":[{\"name\":\"web\",\"address\":"
                    "\"198.18.0.7\"}]}"));
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        struct cm_errbuf eb;
        cm_errbuf_clear(&eb);
        int rv = cm_state_validate(f.s, cases[i].cmd, strlen(cases[i].cmd), &eb);
        if (rv != CM_EVALIDATION || strstr(eb.msg, cases[i].want) == NULL) {
            test__fail(__FILE__, __LINE__, "case %zu: rv %d msg '%s' (want '%s')", i, rv,
                       eb.msg, cases[i].want);
        }
    }
    /* Other addresses, and the name itself, are fine. */
    ASSERT_OK(apply(&f, 2,
                    "{\"type\":\"app.put\",\"version\":\"v\",\"app\":{\"id\":\"/b\","
                    "\"portDefinitions\":[{\"port\":0,\"labels\":{\"VIP_0\":"
                    "\"198.18.0.9:80\",\"VIP_1\":\"/web:80\"}}]}}"));
    fx_close(&f);
}

TEST(state_vips_survive_snapshot_restore)
{
    struct fixture a, b;
    fx_open(&a);
    fx_open(&b);
    ASSERT_OK(apply(&a, 1,
                    "{\"type\":\"vip.put\",\"vips\":[{\"name\":\"web\",\"address\":"
                    "\"198.18.0.7\"}]}"));
    char snap[128];
    snprintf(snap, sizeof(snap), "%s/snap.db", a.dir);
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_snapshot(a.s, snap, &eb));
    cm_state_take_changes(b.s);
    ASSERT_OK(cm_state_restore(b.s, snap, &eb));
    ASSERT_TRUE(cm_state_take_changes(b.s) & CM_STATE_CHANGED_VIPS);
    struct vip_list l;
    ASSERT_STR_EQ(vips_text(&b, &l), "web=198.18.0.7;");
    fx_close(&a);
    fx_close(&b);
}
