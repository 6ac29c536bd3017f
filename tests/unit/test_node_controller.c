/* The leader's controller against a real state.db: its proposals are applied
 * straight into the same replica (what raft would do on a one-node cluster), so
 * each test watches instance counts turn into tasks. */
#include <ev.h>
#include <stdlib.h>
#include <unistd.h>

#include "node/node_int.h"
#include "state/db.h"
#include "state/state.h"
#include "test.h"

struct fx {
    char dir[64];
    struct cm_state *state;
    struct ev_loop *loop;
    struct cm_controller *ctl;
    uint64_t index;
    int64_t now;
    unsigned proposals;
    unsigned rejected;
};

struct done_call {
    cm_api_done_fn done;
    void *arg;
    int status;
    uint64_t index;
    ev_idle w;
};

static void run_done(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    struct done_call *d = cm_container_of(w, struct done_call, w);
    ev_idle_stop(loop, w);
    d->done(d->arg, d->status, d->index, NULL);
    free(d);
}

static int fx_propose(void *data, const char *cmd, size_t len, cm_api_done_fn done,
                      void *arg, struct cm_errbuf *eb)
{
    struct fx *f = data;
    int rv = cm_state_validate(f->state, cmd, len, eb);
    if (rv != 0) {
        f->rejected++;
        printf("# rejected: %s\n", eb->msg);
        return rv;
    }
    rv = cm_state_apply(f->state, ++f->index, cmd, len, eb);
    if (rv != 0) {
        return rv;
    }
    f->proposals++;
    /* Completion later, from the loop, as raft_host does. */
    struct done_call *d = calloc(1, sizeof(*d));
    d->done = done;
    d->arg = arg;
    d->index = f->index;
    ev_idle_init(&d->w, run_done);
    ev_idle_start(f->loop, &d->w);
    cm_controller_kick(f->ctl);
    return 0;
}

static int64_t fx_now(void *data)
{
    return ((struct fx *)data)->now;
}

static void fx_apply(struct fx *f, const char *cmd)
{
    struct cm_errbuf eb;
    if (cm_state_validate(f->state, cmd, strlen(cmd), &eb) != 0) {
        test__fail(__FILE__, __LINE__, "invalid: %s", eb.msg);
    }
    ASSERT_OK(cm_state_apply(f->state, ++f->index, cmd, strlen(cmd), &eb));
    cm_controller_kick(f->ctl);
}

static void fx_open(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/cm-ctl-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(f->dir));
    char path[96];
    snprintf(path, sizeof(path), "%s/state.db", f->dir);
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_open(path, &f->state, &eb));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->now = 1795305600000;
    struct cm_node_ctl_ops ops = {f, f->state, fx_propose, fx_now, "n1"};
    ASSERT_OK(cm_controller_new(f->loop, &ops, &f->ctl));
    fx_apply(f,
             "{\"type\":\"node.up\",\"at\":1,\"node\":{\"id\":\"n1\",\"address\":"
             "\"10.0.0.1\",\"attrs\":{},\"resources\":{\"cpus\":4,\"mem\":4096,"
             "\"disk\":10000,\"ports\":[[31000,31009]]}}}");
    cm_controller_set_leader(f->ctl, true);
}

static void fx_close(struct fx *f)
{
    cm_controller_free(f->ctl);
    ev_run(f->loop, EVRUN_NOWAIT); /* flush pending completions */
    ev_loop_destroy(f->loop);
    cm_state_close(f->state);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    ASSERT_INT_EQ(system(cmd), 0);
}

/* Run the loop until the controller has nothing more to do. */
static void settle(struct fx *f)
{
    for (int i = 0; i < 200; i++) {
        unsigned before = f->proposals;
        ev_run(f->loop, EVRUN_NOWAIT); /* never blocks: a backoff timer may be far */
        usleep(6000);                  /* past the debounce */
        ev_run(f->loop, EVRUN_NOWAIT);
        if (f->proposals == before && i > 3) {
            return;
        }
    }
}

struct counts {
    int by_state[CM__TASK_STATE_COUNT];
    int total;
    char version[64];
    char ids[32][128];
    int n_ids;
};

static int count_cb(void *data, const struct cm_task_row *row)
{
    struct counts *c = data;
    c->by_state[row->state]++;
    c->total++;
    if (c->n_ids < 32) {
        snprintf(c->ids[c->n_ids++], sizeof(c->ids[0]), "%s", row->id);
    }
    return 0;
}

static struct counts count(struct fx *f, const char *app)
{
    struct counts c;
    memset(&c, 0, sizeof(c));
    ASSERT_OK(cm_state_tasks(f->state, app, NULL, count_cb, &c));
    return c;
}

static void put_app(struct fx *f, const char *version, int instances, const char *extra)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"app.put\",\"version\":\"%s\",\"app\":{\"id\":\"/web\","
             "\"cmd\":\"sleep 1000\",\"cpus\":0.5,\"mem\":64,\"disk\":0,\"instances\":%d,"
             "\"portDefinitions\":[{\"port\":0,\"name\":\"http\"}]%s}}",
             version, instances, extra);
    fx_apply(f, cmd);
}

/* Every task of @app in staging becomes running (what the executor reports). */
static void all_running(struct fx *f, const char *app)
{
    struct counts c = count(f, app);
    for (int i = 0; i < c.n_ids; i++) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd),
                 "{\"type\":\"task.status\",\"at\":%lld,\"id\":\"%s\",\"state\":"
                 "\"running\"}",
                 (long long)f->now, c.ids[i]);
        struct cm_errbuf eb;
        ASSERT_OK(cm_state_apply(f->state, ++f->index, cmd, strlen(cmd), &eb));
    }
    cm_controller_kick(f->ctl);
}

/* Every task of @app in killing is reported killed. */
static void kills_done(struct fx *f, const char *app)
{
    struct counts c = count(f, app);
    for (int i = 0; i < c.n_ids; i++) {
        char cmd[256];
        snprintf(
            cmd, sizeof(cmd),
            "{\"type\":\"task.status\",\"at\":%lld,\"id\":\"%s\",\"state\":\"killed\"}",
            (long long)f->now, c.ids[i]);
        struct cm_errbuf eb;
        cm_state_apply(f->state, ++f->index, cmd, strlen(cmd), &eb);
    }
    cm_controller_kick(f->ctl);
}

TEST(controller_places_instances_and_scales)
{
    struct fx f;
    fx_open(&f);
    put_app(&f, "v1", 2, "");
    settle(&f);
    struct counts c = count(&f, "/web");
    ASSERT_INT_EQ(c.by_state[CM_TASK_STAGING], 2);
    ASSERT_TRUE(strncmp(c.ids[0], "web.", 4) == 0);
    all_running(&f, "/web");
    put_app(&f, "v1", 5, ""); /* same version: a scale */
    settle(&f);
    c = count(&f, "/web");
    ASSERT_INT_EQ(c.by_state[CM_TASK_RUNNING], 2);
    ASSERT_INT_EQ(c.by_state[CM_TASK_STAGING], 3);
    all_running(&f, "/web");
    put_app(&f, "v1", 0, "");
    settle(&f);
    c = count(&f, "/web");
    ASSERT_INT_EQ(c.by_state[CM_TASK_KILLING], 5);
    ASSERT_INT_EQ(f.rejected, 0);
    fx_close(&f);
}

TEST(controller_respects_capacity)
{
    struct fx f;
    fx_open(&f);
    /* 4 cpus / 0.5 = 8 tasks fit; 10 ports in the range would allow 10. */
    put_app(&f, "v1", 12, "");
    settle(&f);
    struct counts c = count(&f, "/web");
    ASSERT_INT_EQ(c.total, 8);
    /* The 4 that wait say why, in words. */
    char why[256];
    ASSERT_TRUE(cm_controller_waiting(f.ctl, "/web", why, sizeof(why)));
    printf("# /web waits: %s\n", why);
    ASSERT_STR_EQ(why, "1 of 1 node lacks cpus");
    ASSERT_FALSE(cm_controller_waiting(f.ctl, "/other", why, sizeof(why)));
    fx_close(&f);
}

TEST(controller_rolls_a_new_version)
{
    struct fx f;
    fx_open(&f);
    put_app(&f, "v1", 2, "");
    settle(&f);
    all_running(&f, "/web");
    settle(&f);
    put_app(&f, "v2", 2, "");
    settle(&f);
    /* Defaults minimumHealthCapacity 1, maximumOverCapacity 1: two new tasks
     * start first; the old ones stay until the new ones run. */
    struct counts c = count(&f, "/web");
    ASSERT_INT_EQ(c.by_state[CM_TASK_RUNNING], 2);
    ASSERT_INT_EQ(c.by_state[CM_TASK_STAGING], 2);
    all_running(&f, "/web");
    settle(&f);
    c = count(&f, "/web");
    ASSERT_INT_EQ(c.by_state[CM_TASK_RUNNING], 2);
    ASSERT_INT_EQ(c.by_state[CM_TASK_KILLING], 2);
    fx_close(&f);
}

TEST(controller_replaces_failed_tasks_with_backoff)
{
    struct fx f;
    fx_open(&f);
    put_app(&f, "v1", 1, ",\"backoffSeconds\":60");
    settle(&f);
    struct counts c = count(&f, "/web");
    ASSERT_INT_EQ(c.total, 1);
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"task.status\",\"at\":%lld,\"id\":\"%s\",\"state\":\"failed\","
             "\"exit\":1}",
             (long long)f.now, c.ids[0]);
    fx_apply(&f, cmd);
    settle(&f);
    /* Within the 60 s backoff: no replacement yet. */
    c = count(&f, "/web");
    ASSERT_INT_EQ(c.total, 1);
    ASSERT_INT_EQ(c.by_state[CM_TASK_FAILED], 1);
    f.now += 61000;
    cm_controller_kick(f.ctl);
    settle(&f);
    c = count(&f, "/web");
    ASSERT_INT_EQ(c.by_state[CM_TASK_STAGING], 1);
    fx_close(&f);
}

TEST(controller_expunges_tasks_of_deleted_apps)
{
    struct fx f;
    fx_open(&f);
    put_app(&f, "v1", 2, "");
    settle(&f);
    all_running(&f, "/web");
    fx_apply(&f, "{\"type\":\"app.delete\",\"id\":\"/web\"}");
    settle(&f);
    kills_done(&f, "/web");
    settle(&f);
    ASSERT_INT_EQ(count(&f, "/web").total, 0);
    fx_close(&f);
}

TEST(backoff_delay_follows_marathon)
{
    struct cm_app a;
    memset(&a, 0, sizeof(a));
    a.backoff_s = 1;
    a.backoff_factor = 1.15;
    a.max_launch_delay_s = 300;
    ASSERT_INT_EQ(cm_backoff_delay_ms(&a, 0), 0);
    ASSERT_INT_EQ(cm_backoff_delay_ms(&a, 1), 1000);
    ASSERT_INT_EQ(cm_backoff_delay_ms(&a, 2), 1150);
    ASSERT_INT_EQ(cm_backoff_delay_ms(&a, 100), 300000);
}

/* ------------------------------------------------------------------ deployments */

struct dep_state {
    char status[16];
    int64_t step;
    char reason[160];
    int running;
};

static int dep_cb(void *data, const struct cm_deploy_row *row)
{
    struct dep_state *d = data;
    snprintf(d->status, sizeof(d->status), "%s", row->status);
    snprintf(d->reason, sizeof(d->reason), "%s", row->reason ? row->reason : "");
    d->step = row->step;
    d->running += strcmp(row->status, "running") == 0;
    return 0;
}

static struct dep_state dep(struct fx *f, const char *id)
{
    struct dep_state d;
    memset(&d, 0, sizeof(d));
    ASSERT_OK(cm_state_deployments(f->state, id, false, dep_cb, &d));
    return d;
}

struct vcount {
    const char *version;
    int running, staging, killing, live;
};

static int vcount_cb(void *data, const struct cm_task_row *row)
{
    struct vcount *v = data;
    if (strcmp(row->version, v->version) != 0) {
        return 0;
    }
    v->running += row->state == CM_TASK_RUNNING;
    v->staging += row->state == CM_TASK_STAGING;
    v->killing += row->state == CM_TASK_KILLING;
    v->live += !cm_task_state_terminal(row->state) && row->state != CM_TASK_KILLING;
    return 0;
}

static struct vcount vcount(struct fx *f, const char *app, const char *version)
{
    struct vcount v = {.version = version};
    ASSERT_OK(cm_state_tasks(f->state, app, NULL, vcount_cb, &v));
    return v;
}

#define APP_PUT(id, v, n, extra)                                        \
    "{\"type\":\"app.put\",\"version\":\"" v "\",\"app\":{\"id\":\"" id \
    "\",\"cmd\":"                                                       \
    "\"sleep 1000\",\"cpus\":0.1,\"mem\":16,\"instances\":" #n extra "}}"

struct ids {
    char v[32][128];
    int n;
};

static int killing_cb(void *data, const struct cm_task_row *row)
{
    struct ids *k = data;
    if (row->state == CM_TASK_KILLING && k->n < 32) {
        snprintf(k->v[k->n++], sizeof(k->v[0]), "%s", row->id);
    }
    return 0;
}

/* Bring the deployment on: report every task running and the tasks being
 * killed killed, until nothing moves. */
static void drive(struct fx *f, const char *app)
{
    for (int i = 0; i < 20; i++) {
        settle(f);
        all_running(f, app);
        struct ids k = {.n = 0};
        ASSERT_OK(cm_state_tasks(f->state, app, NULL, killing_cb, &k));
        for (int j = 0; j < k.n; j++) {
            char cmd[256];
            snprintf(cmd, sizeof(cmd),
                     "{\"type\":\"task.status\",\"at\":%lld,\"id\":\"%s\","
                     "\"state\":\"killed\"}",
                     (long long)f->now, k.v[j]);
            struct cm_errbuf eb;
            ASSERT_OK(cm_state_apply(f->state, ++f->index, cmd, strlen(cmd), &eb));
        }
        cm_controller_kick(f->ctl);
    }
    settle(f);
}

/* deploy.start stamped with the fixture's clock. */
static void start_dep(struct fx *f, const char *rest)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "{\"type\":\"deploy.start\",\"at\":%lld,%s",
             (long long)f->now, rest);
    fx_apply(f, cmd);
}

TEST(controller_deploys_in_dependency_order)
{
    struct fx f;
    fx_open(&f);
    start_dep(&f,
              "\"id\":\"d1\",\"version\":\"v1\","
              "\"apps\":[\"/db\",\"/web\"],\"plan\":{\"steps\":[{\"actions\":[{"
              "\"action\":\"StartApplication\",\"app\":\"/db\",\"version\":\"v1\"}]},{"
              "\"actions\":[{\"action\":\"StartApplication\",\"app\":\"/web\","
              "\"version\":\"v1\"}]}]},\"changes\":[" APP_PUT(
                  "/web", "v1", 2, "") "," APP_PUT("/db", "v1", 1, "") "]}");
    settle(&f);
    /* Step 1: only the dependency starts; /web is held. */
    ASSERT_INT_EQ(count(&f, "/db").total, 1);
    ASSERT_INT_EQ(count(&f, "/web").total, 0);
    ASSERT_INT_EQ(dep(&f, "d1").step, 0);
    all_running(&f, "/db");
    settle(&f);
    ASSERT_INT_EQ(dep(&f, "d1").step, 1);
    ASSERT_INT_EQ(count(&f, "/web").total, 2);
    ASSERT_STR_EQ(dep(&f, "d1").status, "running");
    all_running(&f, "/web");
    settle(&f);
    ASSERT_STR_EQ(dep(&f, "d1").status, "success");
    fx_close(&f);
}

TEST(controller_canaries_wait_for_promotion)
{
    struct fx f;
    fx_open(&f);
    fx_apply(&f, APP_PUT("/web", "v1", 3, ""));
    drive(&f, "/web");
    ASSERT_INT_EQ(vcount(&f, "/web", "v1").running, 3);
    start_dep(&f,
              "\"id\":\"d2\",\"version\":\"v2\","
              "\"apps\":[\"/web\"],\"plan\":{\"steps\":[{\"actions\":[{\"action\":"
              "\"RestartApplication\",\"app\":\"/web\",\"version\":\"v2\",\"from\":"
              "\"v1\",\"fromInstances\":3}]}]},\"changes\":[" APP_PUT(
                  "/web", "v2", 3,
                  ",\"upgradeStrategy\":{\"minimumHealthCapacity\":0.5,"
                  "\"maximumOverCapacity\":0,\"canaries\":1}") "]}");
    drive(&f, "/web");
    /* One canary, running; the old tasks untouched, whatever the arithmetic says. */
    ASSERT_INT_EQ(vcount(&f, "/web", "v2").running, 1);
    ASSERT_INT_EQ(vcount(&f, "/web", "v2").live, 1);
    ASSERT_INT_EQ(vcount(&f, "/web", "v1").running, 3);
    ASSERT_STR_EQ(dep(&f, "d2").status, "running");
    fx_apply(&f, "{\"type\":\"deploy.promote\",\"at\":2,\"id\":\"d2\"}");
    drive(&f, "/web");
    ASSERT_INT_EQ(vcount(&f, "/web", "v2").running, 3);
    ASSERT_INT_EQ(vcount(&f, "/web", "v1").live, 0);
    ASSERT_STR_EQ(dep(&f, "d2").status, "success");
    fx_close(&f);
}

TEST(controller_canaries_promote_themselves)
{
    struct fx f;
    fx_open(&f);
    fx_apply(&f, APP_PUT("/web", "v1", 2, ""));
    drive(&f, "/web");
    start_dep(&f,
              "\"id\":\"d2\",\"version\":\"v2\","
              "\"apps\":[\"/web\"],\"plan\":{\"steps\":[{\"actions\":[{\"action\":"
              "\"RestartApplication\",\"app\":\"/web\",\"version\":\"v2\",\"from\":"
              "\"v1\",\"fromInstances\":2}]}]},\"changes\":[" APP_PUT(
                  "/web", "v2", 2,
                  ",\"upgradeStrategy\":{\"canaries\":1,"
                  "\"canaryPromoteAfterSeconds\":30}") "]}");
    drive(&f, "/web");
    ASSERT_INT_EQ(vcount(&f, "/web", "v2").running, 1);
    /* Ready since the last report; (only transitions are reported, so settle
     * here, not drive, which would report "running" again). */
    f.now += 10000;
    cm_controller_kick(f.ctl);
    settle(&f);
    ASSERT_INT_EQ(vcount(&f, "/web", "v2").live, 1); /* not yet */
    f.now += 21000;
    cm_controller_kick(f.ctl);
    drive(&f, "/web");
    ASSERT_INT_EQ(vcount(&f, "/web", "v2").running, 2);
    ASSERT_STR_EQ(dep(&f, "d2").status, "success");
    fx_close(&f);
}

TEST(controller_rolls_back_after_the_deadline)
{
    struct fx f;
    fx_open(&f);
    fx_apply(&f, APP_PUT("/web", "v1", 2, ""));
    drive(&f, "/web");
    start_dep(&f,
              "\"id\":\"d2\",\"version\":\"v2\","
              "\"apps\":[\"/web\"],\"plan\":{\"steps\":[{\"actions\":[{\"action\":"
              "\"RestartApplication\",\"app\":\"/web\",\"version\":\"v2\",\"from\":"
              "\"v1\",\"fromInstances\":2}]}]},\"changes\":[" APP_PUT(
                  "/web", "v2", 2,
                  ",\"upgradeStrategy\":{\"autoRollback\":true,"
                  "\"progressDeadlineSeconds\":60}") "]}");
    settle(&f); /* the new tasks never run */
    ASSERT_INT_EQ(vcount(&f, "/web", "v2").staging, 2);
    ASSERT_STR_EQ(dep(&f, "d2").status, "running");
    f.now += 61000;
    cm_controller_kick(f.ctl);
    drive(&f, "/web");
    struct dep_state d = dep(&f, "d2");
    ASSERT_STR_EQ(d.status, "failed");
    ASSERT_TRUE(strstr(d.reason, "progressDeadlineSeconds (60 s); rolled back by") !=
                NULL);
    ASSERT_INT_EQ(vcount(&f, "/web", "v1").running, 2);
    ASSERT_INT_EQ(vcount(&f, "/web", "v2").live, 0);
    struct dep_state all;
    memset(&all, 0, sizeof(all));
    ASSERT_OK(cm_state_deployments(f.state, NULL, true, dep_cb, &all));
    ASSERT_INT_EQ(all.running, 0); /* the rollback finished too */
    fx_close(&f);
}

TEST(controller_waits_for_health_when_the_app_has_checks)
{
    struct fx f;
    fx_open(&f);
    const char *hc =
        ",\"healthChecks\":[{\"protocol\":\"COMMAND\",\"command\":{\"value\":"
        "\"true\"}}],\"upgradeStrategy\":{\"minimumHealthCapacity\":1,"
        "\"maximumOverCapacity\":0}";
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"app.put\",\"version\":\"v1\",\"app\":{\"id\":\"/web\",\"cmd\":"
             "\"sleep 1000\",\"cpus\":0.1,\"mem\":16,\"instances\":1%s}}",
             hc);
    fx_apply(&f, cmd);
    drive(&f, "/web");
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"app.put\",\"version\":\"v2\",\"app\":{\"id\":\"/web\",\"cmd\":"
             "\"sleep 2000\",\"cpus\":0.1,\"mem\":16,\"instances\":1%s}}",
             hc);
    fx_apply(&f, cmd);
    drive(&f, "/web");
    /* 1 / 1 / 0: one over capacity; the new task runs but has no health yet,
     * so the old one stays. */
    ASSERT_INT_EQ(vcount(&f, "/web", "v2").running, 1);
    ASSERT_INT_EQ(vcount(&f, "/web", "v1").running, 1);
    struct counts c = count(&f, "/web");
    for (int i = 0; i < c.n_ids; i++) {
        snprintf(cmd, sizeof(cmd),
                 "{\"type\":\"task.status\",\"at\":%lld,\"id\":\"%s\",\"state\":"
                 "\"running\",\"health\":\"healthy\"}",
                 (long long)f.now, c.ids[i]);
        struct cm_errbuf eb;
        cm_state_apply(f.state, ++f.index, cmd, strlen(cmd), &eb);
    }
    cm_controller_kick(f.ctl);
    settle(&f);
    ASSERT_INT_EQ(vcount(&f, "/web", "v1").killing, 1);
    fx_close(&f);
}

TEST(controller_waits_for_readiness_when_the_app_has_a_check)
{
    struct fx f;
    fx_open(&f);
    const char *rc =
        ",\"portDefinitions\":[{\"port\":0,\"name\":\"http\"}],"
        "\"readinessChecks\":[{\"portName\":\"http\"}],\"upgradeStrategy\":{"
        "\"minimumHealthCapacity\":1,\"maximumOverCapacity\":0}";
    char cmd[1024];
    for (int v = 1; v <= 2; v++) {
        snprintf(cmd, sizeof(cmd),
                 "{\"type\":\"app.put\",\"version\":\"v%d\",\"app\":{\"id\":\"/web\","
                 "\"cmd\":\"sleep %d\",\"cpus\":0.1,\"mem\":16,\"instances\":1%s}}",
                 v, v, rc);
        fx_apply(&f, cmd);
        drive(&f, "/web");
    }
    /* Running, not ready: the old task stays. */
    ASSERT_INT_EQ(vcount(&f, "/web", "v2").running, 1);
    ASSERT_INT_EQ(vcount(&f, "/web", "v1").running, 1);
    struct counts c = count(&f, "/web");
    for (int i = 0; i < c.n_ids; i++) {
        snprintf(cmd, sizeof(cmd),
                 "{\"type\":\"task.status\",\"at\":%lld,\"id\":\"%s\",\"state\":"
                 "\"running\",\"ready\":true}",
                 (long long)f.now, c.ids[i]);
        struct cm_errbuf eb;
        cm_state_apply(f.state, ++f.index, cmd, strlen(cmd), &eb);
    }
    cm_controller_kick(f.ctl);
    settle(&f);
    ASSERT_INT_EQ(vcount(&f, "/web", "v1").killing, 1);
    fx_close(&f);
}

TEST(controller_does_not_wait_for_kills_on_a_node_that_is_gone)
{
    struct fx f;
    fx_open(&f);
    fx_apply(&f,
             "{\"type\":\"node.up\",\"at\":1,\"node\":{\"id\":\"n2\",\"address\":"
             "\"10.0.0.2\",\"attrs\":{},\"resources\":{\"cpus\":4,\"mem\":4096,"
             "\"disk\":10000,\"ports\":[[31000,31009]]}}}");
    fx_apply(&f, APP_PUT("/web", "v1", 1,
                         ",\"constraints\":[[\"hostname\",\"LIKE\",\"n1\"]]"));
    drive(&f, "/web");
    start_dep(&f,
              "\"id\":\"d2\",\"version\":\"v2\",\"apps\":[\"/web\"],\"plan\":{"
              "\"steps\":[{\"actions\":[{\"action\":\"RestartApplication\",\"app\":"
              "\"/web\",\"version\":\"v2\",\"from\":\"v1\",\"fromInstances\":1}]}]},"
              "\"changes\":[" APP_PUT("/web", "v2", 1,
                                      ",\"constraints\":[[\"hostname\",\"LIKE\","
                                      "\"n2\"]]") "]}");
    settle(&f);
    all_running(&f, "/web");
    settle(&f);
    /* The old task on n1 is being killed when n1 goes silent: its kill cannot
     * complete, and the deployment does not wait for it. */
    ASSERT_INT_EQ(vcount(&f, "/web", "v1").killing, 1);
    ASSERT_STR_EQ(dep(&f, "d2").status, "running");
    char cmd[160];
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"node.state\",\"at\":%lld,\"id\":\"n1\",\"state\":"
             "\"unreachable\"}",
             (long long)f.now);
    fx_apply(&f, cmd);
    settle(&f);
    ASSERT_INT_EQ(vcount(&f, "/web", "v1").killing, 1);
    ASSERT_STR_EQ(dep(&f, "d2").status, "success");
    fx_close(&f);
}
