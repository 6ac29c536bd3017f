/* Deployments: Marathon's upgrade arithmetic, dependency order, rollbacks
 * (docs/deployments.md). Pure functions, except cm_deploy_rollback_cmd which
 * reads the replica through the public queries. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "state/db.h"
#include "state/state.h"

/* TaskReplaceActor.computeRestartStrategy (Marathon 1.11): minHealthy =
 * ceil(instances * minimumHealthCapacity), maxCapacity = (instances * (1 +
 * maximumOverCapacity)).toInt, i.e. truncated. When the two are equal and the
 * old tasks fill maxCapacity nothing could ever start, so Marathon allows one
 * task over capacity (a resident app instead goes one under minHealthy). Then
 * each new task that is healthy and ready lets one old task go, and new tasks
 * start while old + new stay within maxCapacity. As a stateless round over the
 * tasks that exist now, that is what follows. */
void cm_upgrade_plan(const struct cm_upgrade *u, const struct cm_upgrade_state *st,
                     struct cm_upgrade_round *out)
{
    memset(out, 0, sizeof(*out));
    double inst = (double)u->instances;
    out->min_healthy = (uint32_t)ceil(inst * u->min_health);
    out->max_capacity = (uint32_t)(inst * (1.0 + u->max_over));
    uint32_t slack = 0; /* resident: one under the floor */
    if (out->min_healthy == out->max_capacity &&
        st->old_live + st->new_live >= out->max_capacity && st->old_live > 0) {
        if (u->resident) {
            slack = 1;
        } else {
            out->max_capacity++;
        }
    }
    uint64_t healthy = (uint64_t)st->old_live + st->new_ready + slack;
    uint64_t spare = healthy > out->min_healthy ? healthy - out->min_healthy : 0;
    out->kill_old = (uint32_t)CM_MIN(spare, (uint64_t)st->old_live);
    uint32_t old_left = st->old_live - out->kill_old;
    uint32_t want = u->instances > st->new_live ? u->instances - st->new_live : 0;
    uint64_t used = (uint64_t)old_left + st->new_live;
    uint32_t room = out->max_capacity > used ? (uint32_t)(out->max_capacity - used) : 0;
    out->launch = CM_MIN(want, room);
}

/* ------------------------------------------------------------------ order */

enum { WHITE = 0, GREY, BLACK };

struct order {
    const struct cm_deploy_node *apps;
    size_t n;
    unsigned char *color;
    uint32_t *step;
    size_t *stack; /* the path being visited, for the cycle's text */
    size_t depth;
    char *cycle;
    size_t cap;
};

static bool targets(const struct cm_deploy_node *a, const char *dep)
{
    return cm_app_path_within(a->id, dep);
}

static void cycle_text(struct order *o, size_t from)
{
    size_t start = 0;
    for (size_t k = 0; k < o->depth; k++) {
        if (o->stack[k] == from) {
            start = k;
        }
    }
    size_t len = 0;
    o->cycle[0] = '\0';
    for (size_t k = start; k < o->depth && len < o->cap; k++) {
        int w = snprintf(o->cycle + len, o->cap - len, "%s -> ", o->apps[o->stack[k]].id);
        len += w > 0 ? (size_t)w : 0;
    }
    if (len < o->cap) {
        snprintf(o->cycle + len, o->cap - len, "%s", o->apps[from].id);
    }
}

/* Depth-first; returns true on a cycle. */
static bool visit(struct order *o, size_t i)
{
    o->color[i] = GREY;
    o->stack[o->depth++] = i;
    uint32_t step = 0;
    const struct cm_deploy_node *a = &o->apps[i];
    for (size_t k = 0; k < a->n_deps; k++) {
        for (size_t t = 0; t < o->n; t++) {
            if (t == i || !targets(&o->apps[t], a->deps[k])) {
                continue;
            }
            if (o->color[t] == GREY) {
                if (o->cap > 0) {
                    cycle_text(o, t);
                }
                return true;
            }
            if (o->color[t] == WHITE && visit(o, t)) {
                return true;
            }
            step = CM_MAX(step, o->step[t] + 1);
        }
    }
    o->step[i] = step;
    o->color[i] = BLACK;
    o->depth--;
    return false;
}

int cm_deploy_order(const struct cm_deploy_node *apps, size_t n, uint32_t *ret_step,
                    char *cycle, size_t cap)
{
    struct order o = {.apps = apps, .n = n, .step = ret_step, .cycle = cycle, .cap = cap};
    o.color = cm_calloc(n + 1, 1);
    o.stack = cm_calloc(n + 1, sizeof(*o.stack));
    if (o.color == NULL || o.stack == NULL) {
        cm_free(&o.color);
        cm_free(&o.stack);
        return CM_ENOMEM;
    }
    int rv = 0;
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (o.color[i] == WHITE && visit(&o, i)) {
            rv = CM_EVALIDATION;
        }
    }
    cm_free(&o.color);
    cm_free(&o.stack);
    return rv;
}

/* ------------------------------------------------------------------ rollback */

struct dep_load {
    cJSON *plan;
    char *version;
};

static int load_dep(void *data, const struct cm_deploy_row *row)
{
    struct dep_load *d = data;
    d->plan = cJSON_Parse(row->plan);
    d->version = cm_strdup(row->version);
    return d->plan != NULL && d->version != NULL ? 0 : CM_ENOMEM;
}

struct spec_find {
    const char *version;
    cJSON *spec;
};

static int find_spec(void *data, const struct cm_app_row *row)
{
    struct spec_find *f = data;
    if (strcmp(row->version, f->version) != 0) {
        return 0;
    }
    f->spec = cJSON_Parse(row->spec);
    return f->spec != NULL ? 1 : CM_ENOMEM;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int app_exists_cb(void *data, const struct cm_app_row *row)
{
    (void)data;
    (void)row;
    return 0;
}

/* The inverse of one action into @changes and @actions. */
static int undo_action(struct cm_state *s, const cJSON *act, int64_t at, cJSON *changes,
                       cJSON *actions, cJSON *apps)
{
    const char *kind = jstr(act, "action");
    const char *app = jstr(act, "app");
    const char *from = jstr(act, "from");
    if (kind == NULL || app == NULL) {
        return 0;
    }
    cJSON *ch = cJSON_CreateObject();
    cJSON *a = cJSON_CreateObject();
    if (ch == NULL || a == NULL || !cJSON_AddItemToArray(changes, ch) ||
        !cJSON_AddItemToArray(actions, a) ||
        !cJSON_AddItemToArray(apps, cJSON_CreateString(app))) {
        cJSON_Delete(ch);
        cJSON_Delete(a);
        return CM_ENOMEM;
    }
    cJSON_AddStringToObject(a, "app", app);
    if (from == NULL) { /* it started the app: stop it (if it is still there) */
        if (cm_state_apps(s, app, app_exists_cb, NULL) == CM_ENOTFOUND) {
            cJSON_DetachItemViaPointer(changes, ch);
            cJSON_Delete(ch);
            cJSON_AddStringToObject(a, "action", "StopApplication");
            return 0;
        }
        cJSON_AddStringToObject(ch, "type", "app.delete");
        cJSON_AddNumberToObject(ch, "at", (double)at);
        cJSON_AddStringToObject(ch, "id", app);
        cJSON_AddStringToObject(a, "action", "StopApplication");
        const char *to = jstr(act, "version");
        if (to != NULL) {
            cJSON_AddStringToObject(a, "from", to);
        }
        return 0;
    }
    struct spec_find f = {from, NULL};
    const cJSON *kept = cJSON_GetObjectItemCaseSensitive(act, "spec");
    int rv = 0;
    if (cJSON_IsObject(kept)) { /* a stopped app's versions are gone */
        f.spec = cJSON_Duplicate(kept, true);
        rv = f.spec != NULL ? 0 : CM_ENOMEM;
    } else {
        rv = cm_state_app_versions(s, app, find_spec, &f);
    }
    if (rv < 0) {
        return rv;
    }
    if (f.spec == NULL) {
        return CM_ENOTFOUND;
    }
    const cJSON *fi = cJSON_GetObjectItemCaseSensitive(act, "fromInstances");
    if (cJSON_IsNumber(fi)) {
        cJSON_DeleteItemFromObjectCaseSensitive(f.spec, "instances");
        cJSON_AddNumberToObject(f.spec, "instances", fi->valuedouble);
    }
    cJSON_AddStringToObject(ch, "type", "app.put");
    cJSON_AddStringToObject(ch, "version", from);
    cJSON_AddItemToObject(ch, "app", f.spec);
    /* The plan is data from the log: a change that would not validate (it
     * cannot come from the API) is left out, so the rollback always applies. */
    char *text = cJSON_PrintUnformatted(ch);
    struct cm_errbuf eb;
    rv = text != NULL ? cm_state_validate(s, text, strlen(text), &eb) : CM_ENOMEM;
    cJSON_free(text);
    if (rv != 0) {
        cJSON_DetachItemViaPointer(changes, ch);
        cJSON_Delete(ch);
        cJSON_DetachItemViaPointer(actions, a);
        cJSON_Delete(a);
        return rv == CM_ENOMEM ? rv : 0;
    }
    bool started = strcmp(kind, "StopApplication") == 0;
    bool scale = strcmp(kind, "ScaleApplication") == 0;
    cJSON_AddStringToObject(a, "action",
                            started ? "StartApplication"
                            : scale ? "ScaleApplication"
                                    : "RestartApplication");
    cJSON_AddStringToObject(a, "version", from);
    const char *to = jstr(act, "version");
    if (to != NULL && !started) {
        cJSON_AddStringToObject(a, "from", to);
    }
    return 0;
}

int cm_deploy_rollback_cmd(struct cm_state *s, const char *dep_id, const char *new_id,
                           const char *version, int64_t at, struct cm_buf *out)
{
    cm_state_json_init();
    struct dep_load d = {0};
    int rv = cm_state_deployments(s, dep_id, false, load_dep, &d);
    cJSON *cmd = cJSON_CreateObject();
    cJSON *changes = cJSON_CreateArray();
    cJSON *apps = cJSON_CreateArray();
    cJSON *plan = cJSON_CreateObject();
    cJSON *steps = cJSON_CreateArray();
    if (rv == 0 && (cmd == NULL || changes == NULL || apps == NULL || plan == NULL ||
                    steps == NULL)) {
        rv = CM_ENOMEM;
    }
    /* Undo step by step, the last step first (dependents before dependencies). */
    const cJSON *old_steps = cJSON_GetObjectItemCaseSensitive(d.plan, "steps");
    for (int i = cJSON_GetArraySize(old_steps) - 1; rv == 0 && i >= 0; i--) {
        const cJSON *acts =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(old_steps, i), "actions");
        cJSON *st = cJSON_CreateObject();
        cJSON *nacts = cJSON_AddArrayToObject(st, "actions");
        if (st == NULL || nacts == NULL || !cJSON_AddItemToArray(steps, st)) {
            cJSON_Delete(st);
            rv = CM_ENOMEM;
            break;
        }
        const cJSON *act;
        cJSON_ArrayForEach(act, acts)
        {
            rv = rv ? rv : undo_action(s, act, at, changes, nacts, apps);
        }
    }
    if (rv == 0) {
        cJSON_AddStringToObject(cmd, "type", "deploy.start");
        cJSON_AddNumberToObject(cmd, "at", (double)at);
        cJSON_AddStringToObject(cmd, "id", new_id);
        cJSON_AddStringToObject(cmd, "version", version);
        cJSON_AddStringToObject(cmd, "rollbackOf", dep_id);
        cJSON_AddBoolToObject(cmd, "rollback", true);
        cJSON_AddItemToObject(cmd, "apps", apps);
        apps = NULL;
        cJSON_AddItemToObject(plan, "steps", steps);
        steps = NULL;
        cJSON_AddItemToObject(cmd, "plan", plan);
        plan = NULL;
        cJSON_AddItemToObject(cmd, "changes", changes);
        changes = NULL;
        char *text = cJSON_PrintUnformatted(cmd);
        rv = text != NULL ? cm_buf_puts(out, text) : CM_ENOMEM;
        cJSON_free(text);
    }
    cJSON_Delete(cmd);
    cJSON_Delete(changes);
    cJSON_Delete(apps);
    cJSON_Delete(plan);
    cJSON_Delete(steps);
    cJSON_Delete(d.plan);
    cm_free(&d.version);
    return rv;
}
