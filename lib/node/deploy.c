/* The leader's deployment follower (docs/deployments.md): reads the running
 * deployments from the replica, tells the controller which apps it may change
 * now (dependency order, canaries), and proposes deploy.step / deploy.promote /
 * deploy.done / deploy.failed (+ the rollback) when a step's condition holds.
 * Everything it knows is in the replica, so a new leader resumes where the old
 * one was. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "node/node_int.h"
#include "state/db.h"
#include "state/state.h"

struct dep_action {
    char *kind; /* StartApplication, ... */
    char *app;
    char *version; /* NULL for a stop */
    bool has_from;
};

struct dep {
    char *id;
    int64_t step;
    bool promoted;
    bool is_rollback;
    int64_t started_at;
    int64_t step_started_at;
    struct dep_action **steps; /* steps[i][0..n_acts[i]) */
    size_t *n_acts;
    size_t n_steps;
};

struct cm_deploys {
    struct dep *v;
    size_t n;
    char **gone_nodes; /* unreachable or down: kills there wait for the node */
    size_t n_gone;
};

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void dep_done(struct dep *d)
{
    for (size_t i = 0; i < d->n_steps; i++) {
        for (size_t k = 0; d->steps[i] != NULL && k < d->n_acts[i]; k++) {
            cm_free(&d->steps[i][k].kind);
            cm_free(&d->steps[i][k].app);
            cm_free(&d->steps[i][k].version);
        }
        cm_free(&d->steps[i]);
    }
    cm_free(&d->steps);
    cm_free(&d->n_acts);
    cm_free(&d->id);
}

void cm_deploys_free(struct cm_deploys *ds)
{
    if (ds == NULL) {
        return;
    }
    for (size_t i = 0; i < ds->n; i++) {
        dep_done(&ds->v[i]);
    }
    cm_free(&ds->v);
    for (size_t i = 0; i < ds->n_gone; i++) {
        cm_free(&ds->gone_nodes[i]);
    }
    cm_free(&ds->gone_nodes);
    cm_free(&ds);
}

static int load_dep(void *data, const struct cm_deploy_row *row)
{
    struct cm_deploys *ds = data;
    struct dep *v = cm_reallocarray(ds->v, ds->n + 1, sizeof(*v));
    if (v == NULL) {
        return CM_ENOMEM;
    }
    ds->v = v;
    struct dep *d = &ds->v[ds->n++];
    memset(d, 0, sizeof(*d));
    d->id = cm_strdup(row->id);
    d->step = row->step;
    d->promoted = row->promoted;
    d->is_rollback = row->rollback;
    d->started_at = row->started_at;
    d->step_started_at = row->step_started_at;
    cJSON *plan = cJSON_Parse(row->plan);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(plan, "steps");
    size_t n = (size_t)cJSON_GetArraySize(steps);
    d->steps = cm_calloc(n + 1, sizeof(*d->steps));
    d->n_acts = cm_calloc(n + 1, sizeof(*d->n_acts));
    int rv = d->id == NULL || plan == NULL || d->steps == NULL || d->n_acts == NULL
                 ? CM_ENOMEM
                 : 0;
    for (size_t i = 0; rv == 0 && i < n; i++) {
        const cJSON *acts = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(steps, (int)i), "actions");
        size_t na = (size_t)cJSON_GetArraySize(acts);
        d->steps[i] = cm_calloc(na + 1, sizeof(**d->steps));
        d->n_steps = i + 1;
        if (d->steps[i] == NULL) {
            rv = CM_ENOMEM;
            break;
        }
        const cJSON *a;
        cJSON_ArrayForEach(a, acts)
        {
            struct dep_action *da = &d->steps[i][d->n_acts[i]++];
            const char *v2 = jstr(a, "version");
            da->kind = cm_strdup(jstr(a, "action") ? jstr(a, "action") : "");
            da->app = cm_strdup(jstr(a, "app") ? jstr(a, "app") : "");
            da->version = v2 != NULL ? cm_strdup(v2) : NULL;
            da->has_from = jstr(a, "from") != NULL;
            if (da->kind == NULL || da->app == NULL ||
                (v2 != NULL && da->version == NULL)) {
                rv = CM_ENOMEM;
            }
        }
    }
    cJSON_Delete(plan);
    return rv;
}

static int load_gone(void *data, const struct cm_node_row *row)
{
    struct cm_deploys *ds = data;
    if (strcmp(row->state, "unreachable") != 0 && strcmp(row->state, "down") != 0) {
        return 0;
    }
    char **v = cm_reallocarray(ds->gone_nodes, ds->n_gone + 1, sizeof(*v));
    if (v == NULL) {
        return CM_ENOMEM;
    }
    ds->gone_nodes = v;
    ds->gone_nodes[ds->n_gone] = cm_strdup(row->id);
    if (ds->gone_nodes[ds->n_gone] == NULL) {
        return CM_ENOMEM;
    }
    ds->n_gone++;
    return 0;
}

int cm_deploys_load(struct cm_state *st, struct cm_deploys **ret)
{
    struct cm_deploys *ds = cm_calloc(1, sizeof(*ds));
    if (ds == NULL) {
        return CM_ENOMEM;
    }
    int rv = cm_state_deployments(st, NULL, true, load_dep, ds);
    if (rv == 0 && ds->n > 0) {
        rv = cm_state_nodes(st, load_gone, ds);
    }
    if (rv != 0) {
        cm_deploys_free(ds);
        return rv;
    }
    *ret = ds;
    return 0;
}

static bool is_stop(const struct dep_action *a)
{
    return strcmp(a->kind, "StopApplication") == 0;
}

enum cm_deploy_gate cm_deploys_gate(const struct cm_deploys *ds, const char *app,
                                    const struct cm_app *spec, uint32_t *ret_canaries)
{
    *ret_canaries = 0;
    for (size_t i = 0; ds != NULL && i < ds->n; i++) {
        const struct dep *d = &ds->v[i];
        for (size_t s = 0; s < d->n_steps; s++) {
            for (size_t k = 0; k < d->n_acts[s]; k++) {
                const struct dep_action *a = &d->steps[s][k];
                if (is_stop(a) || strcmp(a->app, app) != 0) {
                    continue;
                }
                if ((int64_t)s > d->step) {
                    return CM_DEPLOY_HOLD; /* waits for the apps it depends on */
                }
                if ((int64_t)s == d->step && strcmp(a->kind, "RestartApplication") == 0 &&
                    spec != NULL && spec->canaries > 0 && !d->promoted &&
                    !d->is_rollback) {
                    *ret_canaries = (uint32_t)spec->canaries;
                    return CM_DEPLOY_CANARY;
                }
            }
        }
    }
    return CM_DEPLOY_FREE;
}

/* ------------------------------------------------------------------ advancing */

struct app_now {
    const struct cm_deploys *ds;
    const char *version; /* the action's target */
    bool hc;             /* the app has health checks: ready needs "healthy" */
    bool rc;             /* the app has a readiness check: ready needs `ready` */
    uint32_t new_live, new_ready, old_alive, killing;
    int64_t ready_since; /* the latest update of a ready new task */
};

static int count_task(void *data, const struct cm_task_row *row)
{
    struct app_now *n = data;
    if (cm_task_state_terminal(row->state)) {
        return 0;
    }
    /* A kill on a node that is gone completes only when the node is back (or
     * its tasks are expunged): the task no longer runs anywhere we can reach,
     * and its replacement is already counted, so it does not hold the step. */
    for (size_t i = 0; row->state == CM_TASK_KILLING && i < n->ds->n_gone; i++) {
        if (strcmp(row->node, n->ds->gone_nodes[i]) == 0) {
            return 0;
        }
    }
    bool is_new = n->version != NULL && strcmp(row->version, n->version) == 0;
    if (!is_new) {
        n->old_alive++;
        return 0;
    }
    if (row->state == CM_TASK_KILLING) {
        n->killing++;
        return 0;
    }
    n->new_live++;
    if (cm_deploy_task_ready(row, n->hc, n->rc)) {
        n->new_ready++;
        n->ready_since = CM_MAX(n->ready_since, row->updated_at);
    }
    return 0;
}

struct app_cur {
    bool found;
    char version[64];
    struct cm_app *spec;
};

static int cur_row(void *data, const struct cm_app_row *row)
{
    struct app_cur *c = data;
    c->found = true;
    snprintf(c->version, sizeof(c->version), "%s", row->version);
    return cm_app_from_canonical(row->spec, strlen(row->spec), &c->spec) == CM_ENOMEM
               ? CM_ENOMEM
               : 0;
}

bool cm_deploy_task_ready(const struct cm_task_row *row, bool has_health_checks,
                          bool has_readiness_checks)
{
    if (row->state != CM_TASK_RUNNING || (has_readiness_checks && !row->ready)) {
        return false;
    }
    if (has_health_checks) {
        return row->health != NULL && strcmp(row->health, "healthy") == 0;
    }
    return row->health == NULL || strcmp(row->health, "unhealthy") != 0;
}

enum action_state {
    ACT_WAIT = 0,  /* in progress */
    ACT_DONE,      /* its condition holds */
    ACT_PROMOTE,   /* canaries ready and due to promote themselves */
    ACT_CANARY_OK, /* canaries ready, waiting for `promote` */
};

static int action_state(const struct cm_deploys *ds, struct cm_state *st,
                        const struct dep *d, const struct dep_action *a, int64_t now,
                        enum action_state *ret, bool *ret_auto_rollback,
                        int64_t *ret_deadline_ms, int64_t *ret_recheck_ms)
{
    *ret = ACT_WAIT;
    struct app_cur cur = {0};
    int rv = cm_state_apps(st, a->app, cur_row, &cur);
    if (rv != 0 && rv != CM_ENOTFOUND) {
        return rv;
    }
    struct app_now n = {.ds = ds,
                        .version = is_stop(a) ? NULL : a->version,
                        .hc = cur.spec != NULL && cur.spec->n_health_checks > 0,
                        .rc = cur.spec != NULL && cur.spec->n_readiness_checks > 0};
    rv = cm_state_tasks(st, a->app, NULL, count_task, &n);
    if (rv != 0) {
        cm_app_free(cur.spec);
        return rv;
    }
    if (cur.spec != NULL && cur.spec->auto_rollback) {
        *ret_auto_rollback = true;
        int64_t dl = cur.spec->progress_deadline_s > 0 ? cur.spec->progress_deadline_s
                                                       : CM_APP_DEFAULT_PROGRESS_DEADLINE;
        *ret_deadline_ms = CM_MIN(*ret_deadline_ms, dl * 1000);
    }
    if (is_stop(a)) {
        *ret = !cur.found && n.old_alive == 0 ? ACT_DONE : ACT_WAIT;
    } else if (!cur.found || a->version == NULL || strcmp(cur.version, a->version) != 0) {
        /* Changed under us without replacing this deployment (cannot happen
         * through the API): nothing left to wait for. */
        *ret = ACT_DONE;
    } else {
        uint32_t inst = (uint32_t)CM_MAX(cur.spec != NULL ? cur.spec->instances : 0, 0);
        bool canary = strcmp(a->kind, "RestartApplication") == 0 &&
                      cur.spec->canaries > 0 && !d->promoted && !d->is_rollback;
        if (canary) {
            uint32_t want = CM_MIN((uint32_t)cur.spec->canaries, inst);
            if (n.new_ready >= want) {
                *ret = ACT_CANARY_OK;
                int64_t after = (int64_t)cur.spec->canary_promote_after_s * 1000;
                if (after > 0) {
                    int64_t due = n.ready_since + after;
                    *ret = now >= due ? ACT_PROMOTE : ACT_CANARY_OK;
                    if (now < due) {
                        *ret_recheck_ms = CM_MIN(*ret_recheck_ms, due - now);
                    }
                }
            }
        } else if (n.new_ready >= inst && n.new_live == inst && n.old_alive == 0 &&
                   n.killing == 0) {
            *ret = ACT_DONE;
        }
    }
    cm_app_free(cur.spec);
    return 0;
}

static int add_cmd(cJSON *out, const char *type, const char *id, int64_t at)
{
    cJSON *c = cJSON_CreateObject();
    if (c == NULL || !cJSON_AddItemToArray(out, c)) {
        cJSON_Delete(c);
        return CM_ENOMEM;
    }
    cJSON_AddStringToObject(c, "type", type);
    cJSON_AddNumberToObject(c, "at", (double)at);
    cJSON_AddStringToObject(c, "id", id);
    return 0;
}

static int advance_one(const struct cm_deploys *ds, struct cm_state *st,
                       const struct dep *d, int64_t now, cJSON *out, int64_t *recheck_ms)
{
    if (d->step >= (int64_t)d->n_steps) {
        return add_cmd(out, "deploy.done", d->id, now);
    }
    bool all_done = true, promote = false, canary_ok = false, auto_rb = false;
    int64_t deadline_ms = INT64_MAX;
    size_t s = (size_t)d->step;
    for (size_t k = 0; k < d->n_acts[s]; k++) {
        enum action_state as;
        int rv = action_state(ds, st, d, &d->steps[s][k], now, &as, &auto_rb,
                              &deadline_ms, recheck_ms);
        if (rv != 0) {
            return rv;
        }
        all_done &= as == ACT_DONE;
        promote |= as == ACT_PROMOTE;
        canary_ok |= as == ACT_CANARY_OK || as == ACT_PROMOTE;
    }
    if (all_done) {
        if (s + 1 < d->n_steps) {
            int rv = add_cmd(out, "deploy.step", d->id, now);
            cJSON_AddNumberToObject(cJSON_GetArrayItem(out, cJSON_GetArraySize(out) - 1),
                                    "step", (double)(s + 1));
            return rv;
        }
        return add_cmd(out, "deploy.done", d->id, now);
    }
    if (promote) {
        return add_cmd(out, "deploy.promote", d->id, now);
    }
    /* Opt-in automatic rollback: the deployment did not finish in time. Canaries
     * that are ready and wait for a person are not late. */
    if (auto_rb && !d->is_rollback && !canary_ok) {
        int64_t due = d->started_at + deadline_ms;
        if (now >= due) {
            char id[37], version[32];
            if (cm_uuid4(id) != 0) {
                return CM_EIO;
            }
            cm_time_iso8601(now, version);
            struct cm_buf cmd = {0};
            int rv = cm_deploy_rollback_cmd(st, d->id, id, version, now, &cmd);
            if (rv == 0) {
                char reason[128];
                snprintf(reason, sizeof(reason),
                         "not finished within progressDeadlineSeconds (%lld s)",
                         (long long)(deadline_ms / 1000));
                rv = add_cmd(out, "deploy.failed", d->id, now);
                cJSON *f = cJSON_GetArrayItem(out, cJSON_GetArraySize(out) - 1);
                cJSON_AddStringToObject(f, "reason", reason);
                cJSON_AddStringToObject(f, "rollback", id);
                cJSON *rb = cJSON_Parse(cmd.data);
                if (rv == 0 && (rb == NULL || !cJSON_AddItemToArray(out, rb))) {
                    cJSON_Delete(rb);
                    rv = CM_ENOMEM;
                }
            } else if (rv == CM_ENOTFOUND) {
                rv = add_cmd(out, "deploy.failed", d->id, now);
                cJSON_AddStringToObject(
                    cJSON_GetArrayItem(out, cJSON_GetArraySize(out) - 1), "reason",
                    "not finished in time; nothing to roll back to");
            }
            cm_buf_done(&cmd);
            return rv;
        }
        *recheck_ms = CM_MIN(*recheck_ms, due - now);
    }
    return 0;
}

int cm_deploys_advance(const struct cm_deploys *ds, struct cm_state *st, int64_t now,
                       cJSON *out, int64_t *ret_recheck_ms)
{
    int64_t recheck = INT64_MAX;
    for (size_t i = 0; ds != NULL && i < ds->n; i++) {
        int rv = advance_one(ds, st, &ds->v[i], now, out, &recheck);
        if (rv != 0) {
            return rv;
        }
    }
    *ret_recheck_ms = recheck == INT64_MAX ? 0 : CM_MAX(recheck, 1);
    return 0;
}
