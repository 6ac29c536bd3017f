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
