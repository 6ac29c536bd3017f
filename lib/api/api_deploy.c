/* Deployments (shared/specs/compat.md §1.10, §2.2; docs/deployments.md).
 *
 * Every change to apps becomes one deploy.start command that carries the changes
 * themselves and the plan: the steps in dependency order, each action with the
 * version it goes to and the one it comes from (for rollbacks). The leader's
 * controller advances the plan; these handlers list deployments, stop or roll
 * them back, promote canaries and roll an app back to a version.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

/* ------------------------------------------------------------------ building */

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

struct running {
    char **ids;
    char **apps; /* JSON arrays */
    size_t n;
};

static int collect_running(void *data, const struct cm_deploy_row *row)
{
    struct running *r = data;
    char **ids = cm_reallocarray(r->ids, r->n + 1, sizeof(*ids));
    if (ids == NULL) {
        return CM_ENOMEM;
    }
    r->ids = ids;
    char **apps = cm_reallocarray(r->apps, r->n + 1, sizeof(*apps));
    if (apps == NULL) {
        return CM_ENOMEM;
    }
    r->apps = apps;
    r->ids[r->n] = cm_strdup(row->id);
    r->apps[r->n] = cm_strdup(row->apps);
    if (r->ids[r->n] == NULL || r->apps[r->n] == NULL) {
        cm_free(&r->ids[r->n]);
        cm_free(&r->apps[r->n]);
        return CM_ENOMEM;
    }
    r->n++;
    return 0;
}

static void running_done(struct running *r)
{
    for (size_t i = 0; i < r->n; i++) {
        cm_free(&r->ids[i]);
        cm_free(&r->apps[i]);
    }
    cm_free(&r->ids);
    cm_free(&r->apps);
}

static bool json_has_str(const cJSON *arr, const char *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0) {
            return true;
        }
    }
    return false;
}

/* Marathon's 409 body (compat.md §2.3) when a running deployment touches @apps. */
static int check_locks(struct cm_api *api, const cJSON *apps, struct cm_buf *conflict)
{
    struct running r = {0};
    int rv = cm_state_deployments(api->ops.state(api->ops.data), NULL, true,
                                  collect_running, &r);
    size_t n_in_way = 0;
    for (size_t i = 0; rv == 0 && i < r.n; i++) {
        cJSON *da = cJSON_Parse(r.apps[i]);
        bool hit = false;
        const cJSON *e;
        cJSON_ArrayForEach(e, da)
        {
            hit |= cJSON_IsString(e) && json_has_str(apps, e->valuestring);
        }
        cJSON_Delete(da);
        if (!hit) {
            continue;
        }
        if (n_in_way == 0) {
            rv = cm_buf_printf(conflict,
                               "{\"message\":\"App is locked by one or more deployments. "
                               "Override with the option '?force=true'. View details at "
                               "'/v2/deployments/%s'.\",\"deployments\":[",
                               r.ids[i]);
        } else {
            rv = cm_buf_puts(conflict, ",");
        }
        rv = rv ? rv : cm_buf_printf(conflict, "{\"id\":\"%s\"}", r.ids[i]);
        n_in_way++;
    }
    if (rv == 0 && n_in_way > 0) {
        rv = cm_buf_puts(conflict, "]}");
        rv = rv ? rv : CM_ECONFLICT;
    }
    running_done(&r);
    return rv;
}

struct cur_app {
    bool found;
    char version[64];
    int64_t instances;
    cJSON *spec; /* for a stop: what a rollback brings back */
};

static int cur_row(void *data, const struct cm_app_row *row)
{
    struct cur_app *c = data;
    c->found = true;
    snprintf(c->version, sizeof(c->version), "%s", row->version);
    c->instances = row->instances;
    c->spec = cJSON_Parse(row->spec);
    return c->spec != NULL ? 0 : CM_ENOMEM;
}

/* One action of the plan for change @ch into *ret (NULL: none). */
static int action_for(struct cm_api *api, const cJSON *ch, cJSON **ret,
                      const char **ret_app)
{
    *ret = NULL;
    const char *type = jstr(ch, "type");
    const cJSON *app = cJSON_GetObjectItemCaseSensitive(ch, "app");
    const char *id = strcmp(type, "app.put") == 0 ? jstr(app, "id") : jstr(ch, "id");
    if (strcmp(type, "task.kill") == 0 || id == NULL) {
        return 0;
    }
    struct cur_app cur = {0};
    int rv = cm_state_apps(api->ops.state(api->ops.data), id, cur_row, &cur);
    if (rv != 0 && rv != CM_ENOTFOUND) {
        cJSON_Delete(cur.spec);
        return rv;
    }
    cJSON *a = cJSON_CreateObject();
    if (a == NULL) {
        cJSON_Delete(cur.spec);
        return CM_ENOMEM;
    }
    const char *kind;
    const char *version = jstr(ch, "version");
    if (strcmp(type, "app.delete") == 0) {
        kind = "StopApplication";
    } else if (!cur.found) {
        kind = "StartApplication";
    } else if (strcmp(cur.version, version) == 0) {
        kind = "ScaleApplication";
    } else {
        kind = "RestartApplication";
    }
    cJSON_AddStringToObject(a, "action", kind);
    cJSON_AddStringToObject(a, "app", id);
    if (version != NULL) {
        cJSON_AddStringToObject(a, "version", version);
    }
    if (cur.found) {
        cJSON_AddStringToObject(a, "from", cur.version);
        cJSON_AddNumberToObject(a, "fromInstances", (double)cur.instances);
    }
    /* app.delete drops the app's versions: the spec goes with the plan. */
    if (strcmp(kind, "StopApplication") == 0 && cur.spec != NULL) {
        cJSON_AddItemToObject(a, "spec", cur.spec);
        cur.spec = NULL;
    }
    cJSON_Delete(cur.spec);
    *ret = a;
    *ret_app = id;
    return 0;
}

int api__deploy_cmd(struct cm_api *api, const cJSON *changes, const char *id,
                    const char *version, bool force, bool rollback, struct cm_buf *out,
                    struct cm_buf *conflict, char *msg, size_t msg_cap)
{
    int n = cJSON_GetArraySize(changes);
    cJSON *cmd = cJSON_CreateObject();
    cJSON *apps = cJSON_AddArrayToObject(cmd, "apps");
    cJSON *acts = cJSON_CreateArray(); /* the put actions, in change order */
    cJSON *stops = cJSON_CreateArray();
    struct cm_deploy_node *nodes = cm_calloc((size_t)n + 1, sizeof(*nodes));
    const char ***deps = cm_calloc((size_t)n + 1, sizeof(*deps));
    uint32_t *step = cm_calloc((size_t)n + 1, sizeof(*step));
    size_t n_nodes = 0;
    int rv = cmd == NULL || apps == NULL || acts == NULL || stops == NULL ||
                     nodes == NULL || deps == NULL || step == NULL
                 ? CM_ENOMEM
                 : 0;
    const cJSON *ch;
    cJSON_ArrayForEach(ch, changes)
    {
        if (rv != 0) {
            break;
        }
        cJSON *a = NULL;
        const char *app = NULL;
        rv = action_for(api, ch, &a, &app);
        if (rv != 0 || a == NULL) {
            continue;
        }
        if (!json_has_str(apps, app)) {
            cJSON_AddItemToArray(apps, cJSON_CreateString(app));
        }
        if (strcmp(jstr(a, "action"), "StopApplication") == 0) {
            cJSON_AddItemToArray(stops, a);
            continue;
        }
        cJSON_AddItemToArray(acts, a);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(ch, "app"), "dependencies");
        int nd = cJSON_GetArraySize(d);
        deps[n_nodes] = cm_calloc((size_t)nd + 1, sizeof(char *));
        if (deps[n_nodes] == NULL) {
            rv = CM_ENOMEM;
            break;
        }
        size_t k = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, d)
        {
            if (cJSON_IsString(e)) {
                deps[n_nodes][k++] = e->valuestring;
            }
        }
        nodes[n_nodes] = (struct cm_deploy_node){jstr(a, "app"), deps[n_nodes], k};
        n_nodes++;
    }
    if (rv == 0) {
        char cycle[512] = "";
        rv = cm_deploy_order(nodes, n_nodes, step, cycle, sizeof(cycle));
        if (rv == CM_EVALIDATION) {
            snprintf(msg, msg_cap, "Dependency graph has cyclic dependencies: %s", cycle);
        }
    }
    if (rv == 0 && !force) {
        rv = check_locks(api, apps, conflict);
    }
    /* Steps: the stops first (they take effect with the command), then the
     * starts and upgrades level by level. */
    cJSON *plan = rv == 0 ? cJSON_AddObjectToObject(cmd, "plan") : NULL;
    cJSON *steps = plan != NULL ? cJSON_AddArrayToObject(plan, "steps") : NULL;
    if (rv == 0 && steps == NULL) {
        rv = CM_ENOMEM;
    }
    if (rv == 0 && cJSON_GetArraySize(stops) > 0) {
        cJSON *st = cJSON_CreateObject();
        cJSON_AddItemToArray(steps, st);
        cJSON_AddItemToObject(st, "actions", stops);
        stops = NULL;
    }
    uint32_t levels = 0;
    for (size_t i = 0; i < n_nodes; i++) {
        levels = CM_MAX(levels, step[i] + 1);
    }
    for (uint32_t l = 0; rv == 0 && l < levels; l++) {
        cJSON *st = cJSON_CreateObject();
        cJSON *sa = cJSON_AddArrayToObject(st, "actions");
        if (st == NULL || sa == NULL || !cJSON_AddItemToArray(steps, st)) {
            cJSON_Delete(st);
            rv = CM_ENOMEM;
            break;
        }
        for (size_t i = 0; i < n_nodes; i++) {
            if (step[i] == l) {
                cJSON_AddItemToArray(
                    sa, cJSON_Duplicate(cJSON_GetArrayItem(acts, (int)i), true));
            }
        }
    }
    if (rv == 0) {
        cJSON_AddStringToObject(cmd, "type", "deploy.start");
        cJSON_AddNumberToObject(cmd, "at", (double)api->ops.now_ms(api->ops.data));
        cJSON_AddStringToObject(cmd, "id", id);
        cJSON_AddStringToObject(cmd, "version", version);
        if (rollback) {
            cJSON_AddBoolToObject(cmd, "rollback", true);
        }
        cJSON *cc = cJSON_Duplicate(changes, true);
        if (cc == NULL || !cJSON_AddItemToObject(cmd, "changes", cc)) {
            cJSON_Delete(cc);
            rv = CM_ENOMEM;
        }
    }
    if (rv == 0) {
        char *text = cJSON_PrintUnformatted(cmd);
        rv = text != NULL ? cm_buf_puts(out, text) : CM_ENOMEM;
        cJSON_free(text);
    }
    for (size_t i = 0; deps != NULL && i < n_nodes + 1; i++) {
        cm_free(&deps[i]);
    }
    cm_free(&deps);
    cm_free(&nodes);
    cm_free(&step);
    cJSON_Delete(acts);
    cJSON_Delete(stops);
    cJSON_Delete(cmd);
    return rv;
}

/* ------------------------------------------------------------------ reading */

struct dep_list {
    struct cm_api *api;
    struct cm_buf *b;
    bool first;
    bool progress;
    int n;
};

/* A current action's readinessCheckResults (its app's tasks, api_health.c) and,
 * with @progress, its progress: instances wanted, new tasks ready and live, old
 * tasks left. */
static int action_progress(struct cm_api *api, const cJSON *act, bool progress,
                           struct cm_buf *b)
{
    const char *app = jstr(act, "app");
    const char *version = jstr(act, "version");
    struct api_apps apps;
    int64_t instances = 0;
    bool hc = false, rc = false;
    int rv = api__apps_load(api, app, &apps);
    if (rv == 0) {
        instances = apps.v[0].instances;
        hc = apps.v[0].spec != NULL && apps.v[0].spec->n_health_checks > 0;
        rc = apps.v[0].spec != NULL && apps.v[0].spec->n_readiness_checks > 0;
        api__apps_done(&apps);
    } else if (rv != CM_ENOTFOUND) {
        return rv;
    }
    struct api_tasks t;
    rv = api__tasks_load(api, app, &t);
    if (rv != 0) {
        return rv;
    }
    rv = cm_buf_puts(b, ",\"readinessCheckResults\":");
    rv = rv ? rv : api__readiness_results(&t, 0, t.n, b);
    if (rv != 0 || !progress) {
        api__tasks_done(&t);
        return rv;
    }
    int64_t ready = 0, live = 0, old = 0;
    for (size_t i = 0; i < t.n; i++) {
        const struct api_task *k = &t.v[i];
        bool alive = !cm_task_state_terminal(k->state);
        bool is_new = version != NULL && strcmp(k->version, version) == 0;
        if (!alive) {
            continue;
        }
        if (!is_new || k->state == CM_TASK_KILLING) {
            old += !is_new;
            continue;
        }
        live++;
        ready += k->state == CM_TASK_RUNNING && (!rc || k->ready) &&
                 (hc ? k->health != NULL && strcmp(k->health, "healthy") == 0
                     : k->health == NULL || strcmp(k->health, "unhealthy") != 0);
    }
    api__tasks_done(&t);
    return cm_buf_printf(b,
                         ",\"instances\":%lld,\"newReady\":%lld,\"newLive\":%lld,"
                         "\"oldRemaining\":%lld",
                         (long long)instances, (long long)ready, (long long)live,
                         (long long)old);
}

static int put_actions(struct dep_list *l, const cJSON *acts, bool current)
{
    int rv = cm_buf_puts(l->b, "[");
    int i = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, acts)
    {
        rv = rv ? rv : cm_buf_puts(l->b, i++ ? ",{\"action\":" : "{\"action\":");
        rv = rv ? rv : api__json_str(l->b, jstr(a, "action"));
        rv = rv ? rv : cm_buf_puts(l->b, ",\"app\":");
        rv = rv ? rv : api__json_str(l->b, jstr(a, "app"));
        if (current) {
            rv = rv ? rv : action_progress(l->api, a, l->progress, l->b);
        }
        rv = rv ? rv : cm_buf_puts(l->b, "}");
    }
    return rv ? rv : cm_buf_puts(l->b, "]");
}

/* One deployment in Marathon's shape (compat.md §2.2) plus ours: status,
 * promoted, reason, rollback, rollbackOf. */
static int dep_json(void *data, const struct cm_deploy_row *row)
{
    struct dep_list *l = data;
    cJSON *plan = cJSON_Parse(row->plan);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(plan, "steps");
    int total = cJSON_GetArraySize(steps);
    struct cm_buf *b = l->b;
    int rv = cm_buf_puts(b, l->first ? "{\"id\":" : ",{\"id\":");
    l->first = false;
    l->n++;
    rv = rv ? rv : api__json_str(b, row->id);
    rv = rv ? rv : cm_buf_puts(b, ",\"version\":");
    rv = rv ? rv : api__json_str(b, row->version);
    rv =
        rv ? rv : cm_buf_printf(b, ",\"affectedApps\":%s,\"affectedPods\":[]", row->apps);
    rv = rv ? rv : cm_buf_puts(b, ",\"steps\":[");
    for (int i = 0; rv == 0 && i < total; i++) {
        rv = cm_buf_puts(b, i ? ",{\"actions\":" : "{\"actions\":");
        rv = rv ? rv
                : put_actions(l,
                              cJSON_GetObjectItemCaseSensitive(
                                  cJSON_GetArrayItem(steps, i), "actions"),
                              false);
        rv = rv ? rv : cm_buf_puts(b, "}");
    }
    rv = rv ? rv : cm_buf_puts(b, "],\"currentActions\":");
    const cJSON *cur = row->step < total
                           ? cJSON_GetObjectItemCaseSensitive(
                                 cJSON_GetArrayItem(steps, (int)row->step), "actions")
                           : NULL;
    if (rv == 0 && strcmp(row->status, "running") == 0 && cur != NULL) {
        rv = put_actions(l, cur, true);
    } else if (rv == 0) {
        rv = cm_buf_puts(b, "[]");
    }
    rv = rv ? rv
            : cm_buf_printf(b, ",\"currentStep\":%lld,\"totalSteps\":%d,\"status\":",
                            (long long)CM_MIN(row->step + 1, (int64_t)total), total);
    rv = rv ? rv : api__json_str(b, row->status);
    rv = rv ? rv
            : cm_buf_printf(
                  b, ",\"promoted\":%s,\"reason\":", row->promoted ? "true" : "false");
    rv = rv ? rv : api__json_str(b, row->reason);
    rv =
        rv ? rv
           : cm_buf_printf(
                 b, ",\"rollback\":%s,\"rollbackOf\":", row->rollback ? "true" : "false");
    rv = rv ? rv : api__json_str(b, row->rollback_of);
    rv = rv ? rv : cm_buf_puts(b, ",\"startedAt\":");
    rv = rv ? rv : api__json_time(b, row->started_at);
    rv = rv ? rv : cm_buf_puts(b, "}");
    cJSON_Delete(plan);
    return rv;
}

/* GET /v2/deployments: those in progress (Marathon lists no finished ones). */
static void h_deployments(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    struct cm_buf b = {0};
    struct dep_list l = {api, &b, true, false, 0};
    int rv = cm_buf_puts(&b, "[");
    rv = rv ? rv
            : cm_state_deployments(api->ops.state(api->ops.data), NULL, true, dep_json,
                                   &l);
    rv = rv ? rv : cm_buf_puts(&b, "]");
    api__respond_ok_json(req, rv, &b);
}

/* GET /v1/deployments/{id}: one deployment, finished ones too (for an hour),
 * with the progress of its current actions (what `clusterctl run` shows). */
static void h_deployment_get(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    const char *id = cm_http_req_param(req, "id");
    struct cm_buf b = {0};
    struct dep_list l = {api, &b, true, true, 0};
    int rv = cm_state_deployments(api->ops.state(api->ops.data), id, false, dep_json, &l);
    if (rv == CM_ENOTFOUND) {
        cm_buf_done(&b);
        cm_http_respond_error(req, 404, "DeploymentPlan %s does not exist", id);
        return;
    }
    api__respond_ok_json(req, rv, &b);
}

/* ------------------------------------------------------------------ changing */

struct one_dep {
    bool found;
    bool running;
};

static int dep_state(void *data, const struct cm_deploy_row *row)
{
    struct one_dep *d = data;
    d->found = true;
    d->running = strcmp(row->status, "running") == 0;
    return 0;
}

static void propose_simple(struct cm_api *api, struct cm_http_req *req, int status,
                           const char *type, const char *id, const char *body)
{
    struct api_write *w = api__write_new(api, req, status);
    if (w == NULL) {
        return;
    }
    struct cm_buf cmd = {0};
    int rv = cm_buf_printf(&cmd, "{\"type\":\"%s\",\"at\":%lld,\"id\":", type,
                           (long long)api->ops.now_ms(api->ops.data));
    rv = rv ? rv : api__json_str(&cmd, id);
    rv = rv ? rv : cm_buf_puts(&cmd, "}");
    rv = rv ? rv : cm_buf_puts(api__write_body(w), body);
    if (rv == 0) {
        api__write_propose(w, cmd.data, cmd.len);
        api__write_commit(w);
    } else {
        api__write_fail(w, rv, NULL);
    }
    cm_buf_done(&cmd);
}

/* Propose the rollback of running deployment @id (answered on @req). */
static void rollback_deployment(struct cm_api *api, struct cm_http_req *req,
                                const char *id)
{
    char version[32], dep[37];
    api__new_version(api, NULL, version);
    struct cm_buf cmd = {0};
    int rv = cm_uuid4(dep);
    rv = rv ? rv
            : cm_deploy_rollback_cmd(api->ops.state(api->ops.data), id, dep, version,
                                     api->ops.now_ms(api->ops.data), &cmd);
    if (rv == CM_ENOTFOUND) {
        cm_http_respond_error(req, 409,
                              "deployment %s cannot be rolled back: a version it "
                              "replaced is no longer stored",
                              id);
        cm_buf_done(&cmd);
        return;
    }
    if (rv != 0) {
        api__respond_internal(req, rv);
        cm_buf_done(&cmd);
        return;
    }
    struct api_write *w = api__write_new(api, req, 200);
    if (w != NULL) {
        rv = cm_buf_printf(api__write_body(w),
                           "{\"version\":\"%s\",\"deploymentId\":\"%s\"}", version, dep);
        rv = rv ? rv : api__write_header(w, "Marathon-Deployment-Id", dep);
        if (rv == 0) {
            api__write_propose(w, cmd.data, cmd.len);
            api__write_commit(w);
        } else {
            api__write_fail(w, rv, NULL);
        }
    }
    cm_buf_done(&cmd);
}

/* DELETE /v2/deployments/{id}: roll back (a new deployment to the versions it
 * replaced); ?force=true only stops it (202, compat.md §2.2). */
static void h_deployment_delete(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    const char *id = cm_http_req_param(req, "id");
    struct one_dep d = {0};
    int rv =
        cm_state_deployments(api->ops.state(api->ops.data), id, false, dep_state, &d);
    if (rv == CM_ENOTFOUND || (rv == 0 && !d.running)) {
        cm_http_respond_error(req, 404, "DeploymentPlan %s does not exist", id);
        return;
    }
    if (rv != 0) {
        api__respond_internal(req, rv);
        return;
    }
    if (api__query_bool(cm_http_req_request(req), "force", false)) {
        propose_simple(api, req, 202, "deploy.cancel", id, "");
        return;
    }
    rollback_deployment(api, req, id);
}

struct app_dep {
    const char *app;
    char id[64];
};

static int find_app_dep(void *data, const struct cm_deploy_row *row)
{
    struct app_dep *d = data;
    cJSON *apps = cJSON_Parse(row->apps);
    bool hit = json_has_str(apps, d->app);
    cJSON_Delete(apps);
    if (hit) {
        snprintf(d->id, sizeof(d->id), "%s", row->id);
    }
    return 0;
}

/* The running deployment of the app named by the route into @d; false when
 * answered (404/500). */
static bool route_app_dep(struct cm_http_req *req, struct cm_api *api, char *app,
                          size_t cap, struct app_dep *d)
{
    const char *raw = cm_http_req_param(req, "id");
    if (!api__app_id(raw, app, cap)) {
        cm_http_respond_error(req, 404, "App '%s' does not exist", raw);
        return false;
    }
    d->app = app;
    d->id[0] = '\0';
    int rv =
        cm_state_deployments(api->ops.state(api->ops.data), NULL, true, find_app_dep, d);
    if (rv != 0) {
        api__respond_internal(req, rv);
        return false;
    }
    return true;
}

struct app_deps_out {
    const char *app;
    struct cm_buf *out;
    int n;
};

static int app_dep_json(void *data, const struct cm_deploy_row *row)
{
    struct app_deps_out *o = data;
    cJSON *apps = cJSON_Parse(row->apps);
    bool hit = json_has_str(apps, o->app);
    cJSON_Delete(apps);
    if (!hit) {
        return 0;
    }
    int rv = cm_buf_puts(o->out, o->n++ ? ",{\"id\":" : "{\"id\":");
    rv = rv ? rv : api__json_str(o->out, row->id);
    return rv ? rv : cm_buf_puts(o->out, "}");
}

int api__app_deployments(struct cm_api *api, const char *app, struct cm_buf *out)
{
    struct app_deps_out o = {app, out, 0};
    int rv = cm_buf_puts(out, "[");
    rv = rv ? rv
            : cm_state_deployments(api->ops.state(api->ops.data), NULL, true,
                                   app_dep_json, &o);
    return rv ? rv : cm_buf_puts(out, "]");
}

/* POST /v1/apps/{id}/promote: the app's canaries are good, go on. */
static void h_app_promote(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    char app[CM_APP_MAX_ID + 1];
    struct app_dep d;
    if (!route_app_dep(req, api, app, sizeof(app), &d)) {
        return;
    }
    if (d.id[0] == '\0') {
        cm_http_respond_error(req, 404, "App '%s' has no deployment in progress", app);
        return;
    }
    char body[128];
    snprintf(body, sizeof(body), "{\"deploymentId\":\"%s\"}", d.id);
    propose_simple(api, req, 200, "deploy.promote", d.id, body);
}

struct prev_version {
    const char *current;
    char prev[64];
};

static int find_prev(void *data, const struct cm_app_row *row)
{
    struct prev_version *p = data;
    if (strcmp(row->version, p->current) < 0) {
        snprintf(p->prev, sizeof(p->prev), "%s", row->version); /* oldest first */
    }
    return 0;
}

struct spec_at {
    const char *version;
    char *spec;
};

static int find_spec(void *data, const struct cm_app_row *row)
{
    struct spec_at *s = data;
    if (strcmp(row->version, s->version) == 0) {
        s->spec = cm_strdup(row->spec);
        return s->spec != NULL ? 1 : CM_ENOMEM;
    }
    return 0;
}

/* POST /v1/apps/{id}/rollback [{"version": V}]: without a version, roll back the
 * app's deployment in progress, or else go to the version before the current
 * one; with one, go to that version. The app takes the stored version as it
 * was (same version string), so its tasks still running it are kept. */
static void h_app_rollback(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    const struct cm_http_request *r = cm_http_req_request(req);
    char app[CM_APP_MAX_ID + 1];
    struct app_dep d;
    if (!route_app_dep(req, api, app, sizeof(app), &d)) {
        return;
    }
    cJSON *body = r->body_len > 0 ? cJSON_ParseWithLength(r->body, r->body_len) : NULL;
    const char *want = jstr(body, "version");
    if (want == NULL && d.id[0] != '\0') {
        cJSON_Delete(body);
        rollback_deployment(api, req, d.id);
        return;
    }
    struct api_apps cur;
    int rv = api__apps_load(api, app, &cur);
    if (rv == CM_ENOTFOUND) {
        cJSON_Delete(body);
        cm_http_respond_error(req, 404, "App '%s' does not exist", app);
        return;
    }
    if (rv != 0) {
        cJSON_Delete(body);
        api__respond_internal(req, rv);
        return;
    }
    struct cm_state *st = api->ops.state(api->ops.data);
    struct prev_version pv = {cur.v[0].version, ""};
    if (want == NULL) {
        rv = cm_state_app_versions(st, app, find_prev, &pv);
        want = pv.prev[0] != '\0' ? pv.prev : NULL;
    }
    struct spec_at sa = {want, NULL};
    if (rv == 0 && want != NULL) {
        rv = cm_state_app_versions(st, app, find_spec, &sa);
        rv = rv < 0 ? rv : 0;
    }
    if (rv != 0) {
        api__respond_internal(req, rv);
    } else if (sa.spec == NULL) {
        cm_http_respond_error(req, 404,
                              want == NULL ? "App '%s' has no earlier version"
                                           : "App '%s' has no version '%s'",
                              app, want != NULL ? want : "");
    } else if (strcmp(want, cur.v[0].version) == 0) {
        cm_http_respond_error(req, 409, "App '%s' is already at version %s", app, want);
    } else {
        struct api_write *w = api__write_new(api, req, 200);
        char dep[37];
        struct cm_buf cmd = {0};
        if (w != NULL) {
            rv = cm_uuid4(dep);
            api__write_deploy(w, dep, want, true);
            api__write_rollback(w);
            rv = rv ? rv
                    : cm_buf_printf(api__write_body(w),
                                    "{\"version\":\"%s\",\"deploymentId\":\"%s\"}", want,
                                    dep);
            rv = rv ? rv : api__write_header(w, "Marathon-Deployment-Id", dep);
            rv = rv ? rv : cm_buf_puts(&cmd, "{\"type\":\"app.put\",\"version\":");
            rv = rv ? rv : api__json_str(&cmd, want);
            rv = rv ? rv : cm_buf_printf(&cmd, ",\"app\":%s}", sa.spec);
            if (rv == 0) {
                api__write_propose(w, cmd.data, cmd.len);
                api__write_commit(w);
            } else {
                api__write_fail(w, rv, NULL);
            }
        }
        cm_buf_done(&cmd);
    }
    cm_free(&sa.spec);
    cJSON_Delete(body);
    api__apps_done(&cur);
}

int api__routes_deploy(struct cm_api *api)
{
    static const struct {
        const char *method;
        const char *pattern;
        cm_http_handler_fn fn;
    } routes[] = {
        {"GET", "/v2/deployments", h_deployments},
        {"DELETE", "/v2/deployments/{id}", h_deployment_delete},
        {"GET", "/v1/deployments/{id}", h_deployment_get},
        {"POST", "/v1/apps/{id*}/promote", h_app_promote},
        {"POST", "/v1/apps/{id*}/rollback", h_app_rollback},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(routes); i++) {
        int rv = api__route(api, routes[i].method, routes[i].pattern, API_BODY_LIMIT_NONE,
                            routes[i].fn);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}
