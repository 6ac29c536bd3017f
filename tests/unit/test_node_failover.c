/* Failure detection, replacement of unreachable tasks and drain (issue 8 items
 * 5-7): the failure detector's pure decisions table-driven, then the leader's
 * controller over a real state.db with three nodes, its proposals applied
 * straight into the replica (what raft does on one node), on a virtual clock
 * that the tests move. Heartbeats are calls to cm_controller_heartbeat, as the
 * node RPC makes them. At every step: no app has more live tasks than its
 * upgrade strategy allows. */
#include <ev.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "node/node_int.h"
#include "state/db.h"
#include "state/state.h"
#include "test.h"

#define T0 1795305600000LL

/* ------------------------------------------------------------------ detector */

struct det_step {
    const char *what;
    int64_t now;
    const char *state;  /* the node's state in the replica */
    int64_t updated_at; /* when it was set */
    int64_t heard;      /* a heartbeat at this time before the check (0: none) */
    const char *node;   /* NULL: "n2" */
    int want;           /* enum cm_liveness_action */
    int64_t want_next;  /* expected *next_ms (INT64_MAX: untouched) */
};

/* One leader from T0 on; steps run in order against the same memory. */
static const struct det_step det_steps[] = {
    {"new leader: a node counts as just heard", T0, "up", 1, 0, NULL, CM_LIVENESS_NONE,
     T0 + 5000},
    {"4.999 s of silence is fine", T0 + 4999, "up", 1, 0, NULL, CM_LIVENESS_NONE,
     T0 + 5000},
    {"a heartbeat moves the deadline", T0 + 4999, "up", 1, T0 + 3000, NULL,
     CM_LIVENESS_NONE, T0 + 8000},
    {"5 s of silence: unreachable", T0 + 8000, "up", 1, 0, NULL, CM_LIVENESS_UNREACHABLE,
     INT64_MAX},
    {"the leader itself is never silent", T0 + 60000, "up", 1, 0, "n1", CM_LIVENESS_NONE,
     T0 + 65000},
    {"unreachable, no news: stays", T0 + 8001, "unreachable", T0 + 8000, 0, NULL,
     CM_LIVENESS_NONE, INT64_MAX},
    {"a heartbeat from before it was declared: stays", T0 + 8002, "unreachable",
     T0 + 8000, T0 + 7999, NULL, CM_LIVENESS_NONE, INT64_MAX},
    {"heard after it was declared: up", T0 + 9000, "unreachable", T0 + 8000, T0 + 8500,
     NULL, CM_LIVENESS_UP, INT64_MAX},
    {"heard, but 5 s ago: stays", T0 + 13500, "unreachable", T0 + 8000, 0, NULL,
     CM_LIVENESS_NONE, INT64_MAX},
    {"draining and heard: fine", T0 + 20000, "draining", T0 + 19000, T0 + 20000, "n3",
     CM_LIVENESS_NONE, T0 + 25000},
    {"draining and silent: unreachable", T0 + 25000, "draining", T0 + 19000, 0, "n3",
     CM_LIVENESS_UNREACHABLE, INT64_MAX},
    {"back from unreachable: draining again", T0 + 26000, "unreachable", T0 + 25000,
     T0 + 25500, "n3", CM_LIVENESS_DRAINING, INT64_MAX},
    {"down is left to the operator", T0 + 90000, "down", T0, T0 + 89000, "n4",
     CM_LIVENESS_NONE, INT64_MAX},
};

TEST(detector_thresholds)
{
    struct cm_liveness *l = cm_liveness_new();
    ASSERT_NOT_NULL(l);
    cm_liveness_reset(l, T0);
    for (size_t i = 0; i < CM_ARRAY_SIZE(det_steps); i++) {
        const struct det_step *s = &det_steps[i];
        const char *node = s->node != NULL ? s->node : "n2";
        printf("# %s\n", s->what);
        if (s->heard != 0) {
            cm_liveness_heard(l, node, s->heard);
        }
        struct cm_liveness_node n = {node, s->state, s->updated_at};
        enum cm_liveness_action act;
        int64_t next = INT64_MAX;
        ASSERT_OK(cm_liveness_check(l, &n, "n1", s->now, &act, &next));
        ASSERT_INT_EQ(act, s->want);
        ASSERT_INT_EQ(next, s->want_next);
    }
    cm_liveness_free(l);
}

TEST(detector_new_leader_never_revives_nor_suspects)
{
    struct cm_liveness *l = cm_liveness_new();
    ASSERT_NOT_NULL(l);
    cm_liveness_reset(l, T0);
    cm_liveness_heard(l, "n2", T0 + 1000);
    /* Leadership moves away and back a minute later: what was heard is gone,
     * every node counts as heard at the first look, an unreachable one stays so. */
    cm_liveness_reset(l, T0 + 60000);
    struct cm_liveness_node up = {"n2", "up", T0};
    struct cm_liveness_node gone = {"n3", "unreachable", T0};
    enum cm_liveness_action act;
    int64_t next = INT64_MAX;
    ASSERT_OK(cm_liveness_check(l, &up, "n1", T0 + 60000, &act, &next));
    ASSERT_INT_EQ(act, CM_LIVENESS_NONE);
    ASSERT_OK(cm_liveness_check(l, &gone, "n1", T0 + 60000, &act, &next));
    ASSERT_INT_EQ(act, CM_LIVENESS_NONE);
    /* A heartbeat from the unreachable node asks for a pass and revives it. */
    ASSERT_TRUE(cm_liveness_heard(l, "n3", T0 + 60100));
    ASSERT_FALSE(cm_liveness_heard(l, "n2", T0 + 60100));
    ASSERT_OK(cm_liveness_check(l, &gone, "n1", T0 + 60200, &act, &next));
    ASSERT_INT_EQ(act, CM_LIVENESS_UP);
    cm_liveness_free(l);
}

struct timing_case {
    const char *strategy; /* unreachableStrategy JSON, NULL: absent */
    int64_t inactive_after_ms;
    int64_t expunge_after_ms; /* from the time it became unreachable */
};

static const struct timing_case timing_cases[] = {
    {NULL, 10000, 600000},
    {"{\"inactiveAfterSeconds\":3,\"expungeAfterSeconds\":7}", 3000, 7000},
    {"{\"inactiveAfterSeconds\":0,\"expungeAfterSeconds\":0}", 0, 0},
    {"{\"inactiveAfterSeconds\":5,\"expungeAfterSeconds\":5}", 5000, 5000},
    {"\"disabled\"", -1, -1},
};

TEST(replacement_and_expunge_timing)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(timing_cases); i++) {
        const struct timing_case *tc = &timing_cases[i];
        char json[512];
        snprintf(json, sizeof(json), "{\"id\":\"/t\",\"cmd\":\"true\"%s%s}",
                 tc->strategy ? ",\"unreachableStrategy\":" : "",
                 tc->strategy ? tc->strategy : "");
        struct cm_app *a = NULL;
        ASSERT_OK(cm_app_parse(json, strlen(json), NULL, &a, NULL));
        printf("# %s\n", json);
        int64_t since = T0 + 123;
        int64_t inactive = cm_unreachable_inactive_at(a, since);
        if (tc->inactive_after_ms < 0) {
            ASSERT_INT_EQ(inactive, INT64_MAX);
            ASSERT_INT_EQ(cm_unreachable_expunge_at(a, since), INT64_MAX);
        } else {
            ASSERT_INT_EQ(inactive, since + tc->inactive_after_ms);
            /* Killed when it became inactive; expunged at expungeAfter from
             * the time it became unreachable. */
            ASSERT_INT_EQ(cm_unreachable_expunge_at(a, inactive),
                          since + tc->expunge_after_ms);
        }
        cm_app_free(a);
    }
    /* A deleted app's tasks: the defaults. */
    ASSERT_INT_EQ(cm_unreachable_inactive_at(NULL, T0), T0 + 10000);
    ASSERT_INT_EQ(cm_unreachable_expunge_at(NULL, T0 + 10000), T0 + 600000);
    ASSERT_INT_EQ(cm_unreachable_inactive_at(NULL, INT64_MAX - 5), INT64_MAX);
}

/* ------------------------------------------------------------------ controller */

struct fx {
    char dir[64];
    struct cm_state *state;
    struct ev_loop *loop;
    struct cm_controller *ctl;
    uint64_t index;
    int64_t now;
    unsigned proposals;
    unsigned rejected;
    int max_over; /* live tasks an app may have at most (checked at each apply) */
};

struct done_call {
    cm_api_done_fn done;
    void *arg;
    uint64_t index;
    ev_idle w;
};

static void run_done(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    struct done_call *d = cm_container_of(w, struct done_call, w);
    ev_idle_stop(loop, w);
    d->done(d->arg, 0, d->index, NULL);
    free(d);
}

static int count_live(void *data, const struct cm_task_row *row)
{
    int *n = data;
    *n += row->state == CM_TASK_STAGING || row->state == CM_TASK_STARTING ||
          row->state == CM_TASK_RUNNING || row->state == CM_TASK_UNREACHABLE;
    return 0;
}

/* "never more than allowed": live tasks of /web (unreachable ones count). */
static void check_invariant(struct fx *f)
{
    int live = 0;
    ASSERT_OK(cm_state_tasks(f->state, "/web", NULL, count_live, &live));
    if (f->max_over > 0 && live > f->max_over) {
        test__fail(__FILE__, __LINE__, "%d live tasks, at most %d allowed", live,
                   f->max_over);
    }
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
    printf("# proposed: %.*s\n", (int)CM_MIN(len, 200), cmd);
    rv = cm_state_apply(f->state, ++f->index, cmd, len, eb);
    if (rv != 0) {
        return rv;
    }
    f->proposals++;
    check_invariant(f);
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
    check_invariant(f);
    cm_controller_kick(f->ctl);
}

static void node_up(struct fx *f, const char *id, const char *attrs)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"node.up\",\"at\":%lld,\"node\":{\"id\":\"%s\",\"address\":"
             "\"10.0.0.%c\",\"attrs\":%s,\"resources\":{\"cpus\":4,\"mem\":4096,"
             "\"disk\":10000,\"ports\":[[31000,31009]]}}}",
             (long long)f->now, id, id[1], attrs);
    fx_apply(f, cmd);
}

static void fx_open(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/failover-ctl-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(f->dir));
    char path[96];
    snprintf(path, sizeof(path), "%s/state.db", f->dir);
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_open(path, &f->state, &eb));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->now = T0;
    struct cm_node_ctl_ops ops = {.data = f,
                                  .state = f->state,
                                  .propose = fx_propose,
                                  .now_ms = fx_now,
                                  .self = "n1"};
    ASSERT_OK(cm_controller_new(f->loop, &ops, &f->ctl));
    node_up(f, "n1", "{\"rack\":\"a\"}");
    node_up(f, "n2", "{\"rack\":\"b\"}");
    node_up(f, "n3", "{\"rack\":\"c\"}");
    cm_controller_set_leader(f->ctl, true);
}

static void fx_close(struct fx *f)
{
    cm_controller_free(f->ctl);
    ev_run(f->loop, EVRUN_NOWAIT);
    ev_loop_destroy(f->loop);
    cm_state_close(f->state);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    ASSERT_INT_EQ(system(cmd), 0);
}

static void settle(struct fx *f)
{
    for (int i = 0; i < 200; i++) {
        unsigned before = f->proposals;
        ev_run(f->loop, EVRUN_NOWAIT);
        usleep(6000); /* past the debounce */
        ev_run(f->loop, EVRUN_NOWAIT);
        if (f->proposals == before && i > 3) {
            return;
        }
    }
}

/* Move the clock by @ms, nodes in @alive ("n2,n3") heartbeating each second. */
static void elapse(struct fx *f, int64_t ms, const char *alive)
{
    int64_t end = f->now + ms;
    while (f->now < end) {
        f->now = CM_MIN(f->now + 1000, end);
        for (const char *p = alive; p != NULL && *p != '\0';) {
            char id[16];
            size_t n = strcspn(p, ",");
            snprintf(id, sizeof(id), "%.*s", (int)n, p);
            cm_controller_heartbeat(f->ctl, id, f->now);
            p += n + (p[n] == ',');
        }
        cm_controller_kick(f->ctl); /* the pass the controller's timer would run */
        settle(f);
    }
}

struct view {
    int n[4][CM__TASK_STATE_COUNT]; /* [node 1..3][state] */
    int live;
    char node_state[4][16];
    char ids[4][CM__TASK_STATE_COUNT][128]; /* one id per node and state */
};

static int view_task(void *data, const struct cm_task_row *row)
{
    struct view *v = data;
    int node = row->node[1] - '0';
    if (node < 1 || node > 3) {
        return 0;
    }
    v->n[node][row->state]++;
    snprintf(v->ids[node][row->state], sizeof(v->ids[0][0]), "%s", row->id);
    count_live(&v->live, row);
    return 0;
}

static int view_node(void *data, const struct cm_node_row *row)
{
    struct view *v = data;
    int node = row->id[1] - '0';
    if (node >= 1 && node <= 3) {
        snprintf(v->node_state[node], sizeof(v->node_state[0]), "%s", row->state);
    }
    return 0;
}

static struct view look(struct fx *f)
{
    struct view v;
    memset(&v, 0, sizeof(v));
    ASSERT_OK(cm_state_tasks(f->state, "/web", NULL, view_task, &v));
    ASSERT_OK(cm_state_nodes(f->state, view_node, &v));
    return v;
}

static void put_app(struct fx *f, int instances, const char *extra)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"app.put\",\"version\":\"v1\",\"app\":{\"id\":\"/web\","
             "\"cmd\":\"sleep 1000\",\"cpus\":0.5,\"mem\":64,\"disk\":0,"
             "\"instances\":%d%s}}",
             instances, extra);
    fx_apply(f, cmd);
}

static int running_cb(void *data, const struct cm_task_row *row)
{
    struct fx *f = data;
    if (row->state == CM_TASK_STAGING || row->state == CM_TASK_STARTING) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd),
                 "{\"type\":\"task.status\",\"at\":%lld,\"id\":\"%s\",\"state\":"
                 "\"running\"}",
                 (long long)f->now, row->id);
        struct cm_errbuf eb;
        ASSERT_OK(cm_state_apply(f->state, ++f->index, cmd, strlen(cmd), &eb));
    }
    return 0;
}

/* What the agents report: every staging task of @node (NULL: any) runs. */
static void runs(struct fx *f, const char *node)
{
    ASSERT_OK(cm_state_tasks(f->state, "/web", node, running_cb, f));
    cm_controller_kick(f->ctl);
    settle(f);
}

static void place_on_n1_n2(struct fx *f, const char *extra)
{
    /* n3 full for a moment (a LIKE on rack), so the two land on n1 and n2. */
    char more[512];
    snprintf(more, sizeof(more),
             ",\"constraints\":[[\"rack\",\"LIKE\",\"[ab]\"],"
             "[\"hostname\",\"UNIQUE\"]]%s",
             extra);
    put_app(f, 2, more);
    settle(f);
    struct view v = look(f);
    ASSERT_INT_EQ(v.n[1][CM_TASK_STAGING], 1);
    ASSERT_INT_EQ(v.n[2][CM_TASK_STAGING], 1);
    runs(f, NULL);
    /* Now any node will do (same version string: a scale-like update). */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"app.put\",\"version\":\"v1\",\"app\":{\"id\":\"/web\","
             "\"cmd\":\"sleep 1000\",\"cpus\":0.5,\"mem\":64,\"disk\":0,"
             "\"instances\":2,\"constraints\":[[\"hostname\",\"UNIQUE\"]]%s}}",
             extra);
    fx_apply(f, cmd);
    settle(f);
}

TEST(silent_node_goes_unreachable_and_its_tasks_are_replaced_after_inactive)
{
    struct fx f;
    fx_open(&f);
    f.max_over = 2; /* maximumOverCapacity 0 below: never a third */
    place_on_n1_n2(&f,
                   ",\"upgradeStrategy\":{\"minimumHealthCapacity\":0.5,"
                   "\"maximumOverCapacity\":0}");
    /* n2 heard for 3 s, then silent. */
    elapse(&f, 3000, "n2,n3");
    struct view v = look(&f);
    ASSERT_STR_EQ(v.node_state[2], "up");
    elapse(&f, 4000, "n3"); /* 4 s since n2's last heartbeat */
    v = look(&f);
    ASSERT_STR_EQ(v.node_state[2], "up");
    elapse(&f, 1000, "n3"); /* 5 s */
    v = look(&f);
    ASSERT_STR_EQ(v.node_state[2], "unreachable");
    ASSERT_INT_EQ(v.n[2][CM_TASK_UNREACHABLE], 1);
    ASSERT_INT_EQ(v.live, 2); /* unreachable counts as live: no replacement yet */
    elapse(&f, 9000, "n3");   /* 9 s unreachable */
    v = look(&f);
    ASSERT_INT_EQ(v.n[2][CM_TASK_UNREACHABLE], 1);
    ASSERT_INT_EQ(v.n[3][CM_TASK_STAGING], 0);
    elapse(&f, 1000, "n3"); /* 10 s: inactive, replaced on n3, killed on n2 */
    v = look(&f);
    ASSERT_INT_EQ(v.n[2][CM_TASK_UNREACHABLE], 0);
    ASSERT_INT_EQ(v.n[2][CM_TASK_KILLING], 1);
    ASSERT_INT_EQ(v.n[3][CM_TASK_STAGING], 1);
    ASSERT_INT_EQ(v.live, 2);
    runs(&f, "n3");
    /* n2 comes back: up, and its superseded task stays killing (its agent
     * stops it); nothing else changes. */
    elapse(&f, 2000, "n2,n3");
    v = look(&f);
    ASSERT_STR_EQ(v.node_state[2], "up");
    ASSERT_INT_EQ(v.n[2][CM_TASK_KILLING], 1);
    ASSERT_INT_EQ(v.n[2][CM_TASK_RUNNING], 0);
    ASSERT_INT_EQ(v.n[1][CM_TASK_RUNNING], 1);
    ASSERT_INT_EQ(v.n[3][CM_TASK_RUNNING], 1);
    ASSERT_INT_EQ(f.rejected, 0);
    fx_close(&f);
}

TEST(node_back_before_inactive_keeps_its_tasks)
{
    struct fx f;
    fx_open(&f);
    f.max_over = 2;
    place_on_n1_n2(&f,
                   ",\"upgradeStrategy\":{\"minimumHealthCapacity\":0.5,"
                   "\"maximumOverCapacity\":0}");
    elapse(&f, 6000, "n3");
    struct view v = look(&f);
    ASSERT_STR_EQ(v.node_state[2], "unreachable");
    ASSERT_INT_EQ(v.n[2][CM_TASK_UNREACHABLE], 1);
    elapse(&f, 3000, "n2,n3");
    v = look(&f);
    ASSERT_STR_EQ(v.node_state[2], "up");
    ASSERT_INT_EQ(v.n[2][CM_TASK_RUNNING], 1);
    ASSERT_INT_EQ(v.live, 2);
    /* Long after: still no replacement, nothing killed. */
    elapse(&f, 20000, "n2,n3");
    v = look(&f);
    ASSERT_INT_EQ(v.n[1][CM_TASK_RUNNING] + v.n[2][CM_TASK_RUNNING], 2);
    ASSERT_INT_EQ(v.n[2][CM_TASK_KILLING] + v.n[3][CM_TASK_STAGING], 0);
    ASSERT_INT_EQ(f.rejected, 0);
    fx_close(&f);
}

TEST(superseded_task_is_expunged_after_expunge_after)
{
    struct fx f;
    fx_open(&f);
    f.max_over = 2;
    place_on_n1_n2(&f,
                   ",\"upgradeStrategy\":{\"minimumHealthCapacity\":0.5,"
                   "\"maximumOverCapacity\":0},\"unreachableStrategy\":"
                   "{\"inactiveAfterSeconds\":3,\"expungeAfterSeconds\":8}");
    elapse(&f, 5000, "n3"); /* unreachable at +5 s */
    struct view v = look(&f);
    ASSERT_INT_EQ(v.n[2][CM_TASK_UNREACHABLE], 1);
    elapse(&f, 3000, "n3"); /* inactive */
    v = look(&f);
    ASSERT_INT_EQ(v.n[2][CM_TASK_KILLING], 1);
    ASSERT_INT_EQ(v.n[3][CM_TASK_STAGING], 1);
    elapse(&f, 4000, "n3"); /* 7 s unreachable */
    v = look(&f);
    ASSERT_INT_EQ(v.n[2][CM_TASK_KILLING], 1);
    elapse(&f, 1000, "n3"); /* 8 s: expunged */
    v = look(&f);
    ASSERT_INT_EQ(v.n[2][CM_TASK_KILLING], 0);
    ASSERT_INT_EQ(v.n[2][CM_TASK_UNREACHABLE], 0);
    ASSERT_INT_EQ(v.live, 2);
    ASSERT_INT_EQ(f.rejected, 0);
    fx_close(&f);
}

TEST(unreachable_strategy_disabled_waits_for_the_node)
{
    struct fx f;
    fx_open(&f);
    f.max_over = 2;
    place_on_n1_n2(&f, ",\"unreachableStrategy\":\"disabled\"");
    elapse(&f, 60000, "n3");
    struct view v = look(&f);
    ASSERT_STR_EQ(v.node_state[2], "unreachable");
    ASSERT_INT_EQ(v.n[2][CM_TASK_UNREACHABLE], 1);
    ASSERT_INT_EQ(v.n[3][CM_TASK_STAGING], 0);
    elapse(&f, 2000, "n2,n3");
    v = look(&f);
    ASSERT_INT_EQ(v.n[2][CM_TASK_RUNNING], 1);
    fx_close(&f);
}

TEST(leader_change_marks_nothing)
{
    struct fx f;
    fx_open(&f);
    place_on_n1_n2(&f, "");
    elapse(&f, 2000, "n2,n3");
    /* Leadership lost for a minute (no heartbeats reach us), then regained. */
    cm_controller_set_leader(f.ctl, false);
    f.now += 60000;
    cm_controller_set_leader(f.ctl, true);
    settle(&f);
    struct view v = look(&f);
    ASSERT_STR_EQ(v.node_state[2], "up");
    ASSERT_STR_EQ(v.node_state[3], "up");
    ASSERT_INT_EQ(v.n[1][CM_TASK_RUNNING] + v.n[2][CM_TASK_RUNNING], 2);
    elapse(&f, 4000, "n2,n3");
    v = look(&f);
    ASSERT_STR_EQ(v.node_state[2], "up");
    /* A node that stays silent under the new leader goes after 5 s of it. */
    elapse(&f, 5000, "n2");
    v = look(&f);
    ASSERT_STR_EQ(v.node_state[3], "unreachable");
    ASSERT_STR_EQ(v.node_state[2], "up");
    ASSERT_INT_EQ(f.rejected, 0);
    fx_close(&f);
}

TEST(new_leader_does_not_revive_an_unreachable_node)
{
    struct fx f;
    fx_open(&f);
    place_on_n1_n2(&f, "");
    elapse(&f, 6000, "n3");
    ASSERT_STR_EQ(look(&f).node_state[2], "unreachable");
    cm_controller_set_leader(f.ctl, false);
    f.now += 1000;
    cm_controller_set_leader(f.ctl, true);
    elapse(&f, 2000, "n3");
    struct view v = look(&f);
    ASSERT_STR_EQ(v.node_state[2], "unreachable");
    ASSERT_INT_EQ(v.n[2][CM_TASK_UNREACHABLE], 1);
    fx_close(&f);
}

/* ------------------------------------------------------------------ drain */

static void set_node_state(struct fx *f, const char *id, const char *state)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"node.state\",\"at\":%lld,\"id\":\"%s\",\"state\":\"%s\"}",
             (long long)f->now, id, state);
    fx_apply(f, cmd);
    settle(f);
}

struct drain_case {
    const char *what;
    const char *strategy; /* upgradeStrategy, or "" */
    int max_live;         /* instances + ceil(maximumOverCapacity * instances) */
    int first_wave;       /* replacements started before any kill */
    int killed_at_once;   /* old tasks killed before any replacement runs */
};

static const struct drain_case drain_cases[] = {
    {"defaults (1, 1): both replacements first", "", 4, 2, 0},
    {"(1, 0.5): one at a time, replacement first",
     ",\"upgradeStrategy\":{\"minimumHealthCapacity\":1,\"maximumOverCapacity\":0.5}", 3,
     1, 0},
    {"(0.5, 0): one killed first (no room above 2)",
     ",\"upgradeStrategy\":{\"minimumHealthCapacity\":0.5,\"maximumOverCapacity\":0}", 2,
     1, 1},
};

TEST(drain_replaces_first_then_kills_within_the_upgrade_strategy)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(drain_cases); i++) {
        const struct drain_case *dc = &drain_cases[i];
        printf("# %s\n", dc->what);
        struct fx f;
        fx_open(&f);
        f.max_over = dc->max_live;
        /* Both instances on n2. */
        char more[512];
        snprintf(more, sizeof(more), ",\"constraints\":[[\"rack\",\"LIKE\",\"b\"]]%s",
                 dc->strategy);
        put_app(&f, 2, more);
        settle(&f);
        runs(&f, NULL);
        ASSERT_INT_EQ(look(&f).n[2][CM_TASK_RUNNING], 2);
        /* Lift the constraint (same version: nothing restarts). */
        put_app(&f, 2, dc->strategy);
        settle(&f);
        set_node_state(&f, "n2", "draining");
        struct view v = look(&f);
        ASSERT_STR_EQ(v.node_state[2], "draining");
        ASSERT_INT_EQ(v.n[2][CM_TASK_STAGING], 0); /* nothing new there */
        ASSERT_INT_EQ(v.n[1][CM_TASK_STAGING] + v.n[3][CM_TASK_STAGING], dc->first_wave);
        ASSERT_INT_EQ(v.n[2][CM_TASK_KILLING], dc->killed_at_once);
        ASSERT_INT_EQ(v.n[2][CM_TASK_RUNNING], 2 - dc->killed_at_once);
        /* Replacements run, old ones go, until n2 is empty. */
        for (int round = 0; round < 4; round++) {
            runs(&f, "n1");
            runs(&f, "n3");
        }
        v = look(&f);
        ASSERT_INT_EQ(v.n[2][CM_TASK_RUNNING], 0);
        ASSERT_INT_EQ(v.n[2][CM_TASK_KILLING], 2);
        ASSERT_INT_EQ(v.n[1][CM_TASK_RUNNING] + v.n[3][CM_TASK_RUNNING], 2);
        ASSERT_INT_EQ(f.rejected, 0);
        fx_close(&f);
    }
}

TEST(drain_waits_for_health_and_room)
{
    struct fx f;
    fx_open(&f);
    f.max_over = 4;
    /* Both on n2; n1 and n3 cannot take them (LIKE b keeps them off). */
    put_app(&f, 2, ",\"constraints\":[[\"rack\",\"LIKE\",\"b\"]]");
    settle(&f);
    runs(&f, NULL);
    set_node_state(&f, "n2", "draining");
    struct view v = look(&f);
    ASSERT_INT_EQ(v.n[2][CM_TASK_RUNNING], 2); /* nowhere to go: they stay */
    ASSERT_INT_EQ(v.n[2][CM_TASK_KILLING], 0);
    char why[256];
    ASSERT_TRUE(cm_controller_waiting(f.ctl, "/web", why, sizeof(why)));
    printf("# waits: %s\n", why);
    /* Undrain: schedulable again, nothing to do. */
    set_node_state(&f, "n2", "up");
    v = look(&f);
    ASSERT_INT_EQ(v.n[2][CM_TASK_RUNNING], 2);
    ASSERT_INT_EQ(v.live, 2);
    ASSERT_FALSE(cm_controller_waiting(f.ctl, "/web", why, sizeof(why)));
    /* Scaling up may use n2 again. */
    put_app(&f, 3, ",\"constraints\":[[\"rack\",\"LIKE\",\"b\"]]");
    settle(&f);
    ASSERT_INT_EQ(look(&f).n[2][CM_TASK_STAGING], 1);
    ASSERT_INT_EQ(f.rejected, 0);
    fx_close(&f);
}

TEST(drain_counts_only_healthy_replacements)
{
    struct fx f;
    fx_open(&f);
    f.max_over = 4;
    put_app(&f, 1, ",\"constraints\":[[\"rack\",\"LIKE\",\"b\"]]");
    settle(&f);
    runs(&f, NULL);
    put_app(&f, 1, "");
    settle(&f);
    set_node_state(&f, "n2", "draining");
    struct view v = look(&f);
    int elsewhere = v.n[1][CM_TASK_STAGING] ? 1 : 3;
    ASSERT_INT_EQ(v.n[elsewhere][CM_TASK_STAGING], 1);
    /* The replacement runs but its health check fails: the old one stays. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"task.status\",\"at\":%lld,\"id\":\"%s\",\"state\":"
             "\"running\",\"health\":\"unhealthy\"}",
             (long long)f.now, v.ids[elsewhere][CM_TASK_STAGING]);
    fx_apply(&f, cmd);
    settle(&f);
    v = look(&f);
    ASSERT_INT_EQ(v.n[2][CM_TASK_RUNNING], 1);
    ASSERT_INT_EQ(v.n[2][CM_TASK_KILLING], 0);
    char id[128];
    snprintf(id, sizeof(id), "%s", v.ids[elsewhere][CM_TASK_RUNNING]);
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"task.status\",\"at\":%lld,\"id\":\"%s\",\"state\":"
             "\"running\",\"health\":\"healthy\"}",
             (long long)f.now, id);
    fx_apply(&f, cmd);
    settle(&f);
    v = look(&f);
    ASSERT_INT_EQ(v.n[2][CM_TASK_KILLING], 1);
    fx_close(&f);
}

TEST(drained_node_falling_silent_costs_its_tasks_not_the_replacements)
{
    struct fx f;
    fx_open(&f);
    f.max_over = 4;
    put_app(&f, 2, ",\"constraints\":[[\"rack\",\"LIKE\",\"b\"]]");
    settle(&f);
    runs(&f, NULL);
    put_app(&f, 2, "");
    settle(&f);
    elapse(&f, 2000, "n2,n3"); /* the replacements are the youngest tasks */
    set_node_state(&f, "n2", "draining");
    struct view v = look(&f);
    ASSERT_INT_EQ(v.n[1][CM_TASK_STAGING] + v.n[3][CM_TASK_STAGING], 2);
    ASSERT_INT_EQ(v.n[2][CM_TASK_RUNNING], 2);
    /* n2 falls silent before the replacements run: its tasks become
     * unreachable, and count as current again (the node is no longer draining
     * in the replica): four for two instances. The surplus is theirs. */
    elapse(&f, 5000, "n3");
    v = look(&f);
    ASSERT_STR_EQ(v.node_state[2], "unreachable");
    ASSERT_INT_EQ(v.n[2][CM_TASK_KILLING], 2);
    ASSERT_INT_EQ(v.n[1][CM_TASK_STAGING] + v.n[3][CM_TASK_STAGING], 2);
    /* Back: draining again (leader memory), nothing else changes. */
    elapse(&f, 1000, "n2,n3");
    v = look(&f);
    ASSERT_STR_EQ(v.node_state[2], "draining");
    ASSERT_INT_EQ(v.n[2][CM_TASK_KILLING], 2);
    ASSERT_INT_EQ(v.n[1][CM_TASK_STAGING] + v.n[3][CM_TASK_STAGING], 2);
    ASSERT_INT_EQ(f.rejected, 0);
    fx_close(&f);
}

TEST(draining_node_stays_draining_when_it_registers_again)
{
    struct fx f;
    fx_open(&f);
    set_node_state(&f, "n2", "draining");
    node_up(&f, "n2", "{\"rack\":\"b\"}");
    ASSERT_STR_EQ(look(&f).node_state[2], "draining");
    set_node_state(&f, "n2", "up");
    node_up(&f, "n2", "{\"rack\":\"b\"}");
    ASSERT_STR_EQ(look(&f).node_state[2], "up");
    fx_close(&f);
}

TEST(state_commands_for_failover_validate)
{
    struct fx f;
    fx_open(&f);
    struct cm_errbuf eb;
    const char *bad =
        "{\"type\":\"node.state\",\"at\":1,\"id\":\"nope\",\"state\":\"draining\"}";
    ASSERT_ERR(cm_state_validate(f.state, bad, strlen(bad), &eb), CM_EVALIDATION);
    ASSERT_STR_EQ(eb.msg, "node.state: id: unknown node 'nope'");
    bad = "{\"type\":\"node.state\",\"at\":1,\"id\":\"n2\",\"state\":\"gone\"}";
    ASSERT_ERR(cm_state_validate(f.state, bad, strlen(bad), &eb), CM_EVALIDATION);
    ASSERT_STR_EQ(eb.msg, "node.state: state: must be up, unreachable, down or draining");
    /* task.expunge of a killing task on a node that is up changes nothing; on an
     * unreachable node it removes it. */
    put_app(&f, 1, ",\"constraints\":[[\"rack\",\"LIKE\",\"b\"]]");
    settle(&f);
    struct view v = look(&f);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "{\"type\":\"task.kill\",\"at\":1,\"ids\":[\"%s\"]}",
             v.ids[2][CM_TASK_STAGING]);
    cm_controller_set_leader(f.ctl, false); /* hands off */
    fx_apply(&f, cmd);
    snprintf(cmd, sizeof(cmd), "{\"type\":\"task.expunge\",\"ids\":[\"%s\"]}",
             v.ids[2][CM_TASK_STAGING]);
    fx_apply(&f, cmd);
    ASSERT_INT_EQ(look(&f).n[2][CM_TASK_KILLING], 1);
    set_node_state(&f, "n2", "unreachable");
    fx_apply(&f, cmd);
    ASSERT_INT_EQ(look(&f).n[2][CM_TASK_KILLING], 0);
    fx_close(&f);
}

TEST(node_attributes_feed_constraints)
{
    struct fx f;
    fx_open(&f);
    /* rack is an attribute of each node (node.up attrs, from --attr), hostname is
     * implicit (the node id). */
    put_app(&f, 1, ",\"constraints\":[[\"rack\",\"IS\",\"c\"]]");
    settle(&f);
    ASSERT_INT_EQ(look(&f).n[3][CM_TASK_STAGING], 1);
    put_app(&f, 3, ",\"constraints\":[[\"rack\",\"LIKE\",\"[ab]\"]]");
    settle(&f);
    struct view v = look(&f);
    ASSERT_INT_EQ(v.n[1][CM_TASK_STAGING] + v.n[2][CM_TASK_STAGING], 2);
    ASSERT_INT_EQ(v.n[3][CM_TASK_STAGING], 1);
    int on_n2 = v.n[2][CM_TASK_STAGING];
    put_app(&f, 4, ",\"constraints\":[[\"hostname\",\"IS\",\"n2\"]]");
    settle(&f);
    v = look(&f);
    ASSERT_INT_EQ(v.n[2][CM_TASK_STAGING], on_n2 + 1);
    ASSERT_INT_EQ(v.live, 4);
    fx_close(&f);
}
