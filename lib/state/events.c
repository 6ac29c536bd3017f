/* The event bus (db.h, "events"): Marathon's events (compat.md §2.4), built while
 * applying the log, so every node produces the same events in the same order.
 *
 * Shapes follow Marathon 1.x (core/event/Events.scala and the writers in
 * api/v2/json/Formats.scala): field names, value forms (TASK_* states, Condition
 * names, ISO-8601 times) and the order of the fields. An instance is one task
 * here, so instanceId is the task id.
 *
 * How changes are found: before a command's effects, events__before() notes the
 * state and health of every task the command may touch (the task of a
 * task.status, the ids of a task.kill, the tasks of a deleted app or of a node
 * that changed state) and the app an app.put replaces; after the commit,
 * events__after() reads them again and records an event for each difference.
 * One path for every cause of a change keeps the events consistent with the
 * tables whichever command moved a task. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/events_int.h"
#include "state/state.h"

enum health {
    HEALTH_NONE = 0, /* not checked, or no verdict yet */
    HEALTH_HEALTHY,
    HEALTH_UNHEALTHY,
};

struct ring_ev {
    uint64_t index;
    const char *type;
    char *json; /* cJSON_free */
    size_t len;
};

struct note_task {
    char *id;
    int state; /* enum cm_task_state; -1: the task did not exist */
    enum health health;
};

struct note_app {
    char *id;
    char *old_spec; /* canonical; NULL: the app is new */
};

struct note_dep {
    char *id;
    char *status; /* NULL: the deployment did not exist */
    int64_t step;
};

struct state_events {
    bool on;
    struct ring_ev *ring; /* CM_STATE_EVENTS_MAX slots */
    size_t head;          /* oldest */
    size_t n;
    size_t bytes;
    uint64_t dropped;
    /* Notes about the command being applied (before → after). */
    struct note_task *notes;
    size_t n_notes;
    size_t cap_notes;
    struct note_app *apps; /* the apps its app.puts replace */
    size_t n_apps;
    size_t cap_apps;
    struct note_dep *deps; /* the deployments it may move */
    size_t n_deps;
    size_t cap_deps;
    bool notes_failed; /* a note could not be taken: its events are lost */
};

/* ------------------------------------------------------------------ names */

static const char *const status_names[CM__TASK_STATE_COUNT] = {
    [CM_TASK_STAGING] = "TASK_STAGING",         [CM_TASK_STARTING] = "TASK_STARTING",
    [CM_TASK_RUNNING] = "TASK_RUNNING",         [CM_TASK_KILLING] = "TASK_KILLING",
    [CM_TASK_KILLED] = "TASK_KILLED",           [CM_TASK_FINISHED] = "TASK_FINISHED",
    [CM_TASK_FAILED] = "TASK_FAILED",           [CM_TASK_LOST] = "TASK_LOST",
    [CM_TASK_UNREACHABLE] = "TASK_UNREACHABLE",
};

/* Marathon's Condition for each state. A lost task (its node is down for good)
 * is Gone: Marathon maps TASK_LOST with an agent-removed reason there. */
static const char *const condition_names[CM__TASK_STATE_COUNT] = {
    [CM_TASK_STAGING] = "Staging",         [CM_TASK_STARTING] = "Starting",
    [CM_TASK_RUNNING] = "Running",         [CM_TASK_KILLING] = "Killing",
    [CM_TASK_KILLED] = "Killed",           [CM_TASK_FINISHED] = "Finished",
    [CM_TASK_FAILED] = "Failed",           [CM_TASK_LOST] = "Gone",
    [CM_TASK_UNREACHABLE] = "Unreachable",
};

static const char *name_of(const char *const *names, enum cm_task_state st)
{
    return (unsigned)st < CM__TASK_STATE_COUNT ? names[st] : "Unknown";
}

static enum health health_of(const char *s)
{
    if (s == NULL) {
        return HEALTH_NONE;
    }
    return strcmp(s, "healthy") == 0 ? HEALTH_HEALTHY : HEALTH_UNHEALTHY;
}

/* ------------------------------------------------------------------ the ring */

static void ring_pop(struct state_events *ev)
{
    struct ring_ev *e = &ev->ring[ev->head];
    ev->bytes -= e->len;
    cJSON_free(e->json);
    e->json = NULL;
    ev->head = (ev->head + 1) % CM_STATE_EVENTS_MAX;
    ev->n--;
}

static void ring_clear(struct state_events *ev)
{
    while (ev->n > 0) {
        ring_pop(ev);
    }
    ev->head = 0;
}

/* Record @obj (consumed) as an event of @type. */
static void push(struct state_events *ev, uint64_t index, const char *type, cJSON *obj)
{
    char *json = obj != NULL ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (json == NULL) {
        ev->dropped++;
        return;
    }
    size_t len = strlen(json);
    if (len > CM_STATE_EVENTS_MAX_BYTES) {
        cJSON_free(json);
        ev->dropped++;
        return;
    }
    while (ev->n > 0 && (ev->n == CM_STATE_EVENTS_MAX ||
                         ev->bytes + len > CM_STATE_EVENTS_MAX_BYTES)) {
        ring_pop(ev);
        ev->dropped++;
    }
    struct ring_ev *e = &ev->ring[(ev->head + ev->n) % CM_STATE_EVENTS_MAX];
    *e = (struct ring_ev){index, type, json, len};
    ev->n++;
    ev->bytes += len;
}

/* ------------------------------------------------------------------ public */

int cm_state_events_record(struct cm_state *s, bool on)
{
    struct state_events **pev = state__events(s);
    if (*pev == NULL) {
        if (!on) {
            return 0;
        }
        cm_state_json_init();
        struct state_events *ev = cm_calloc(1, sizeof(*ev));
        if (ev == NULL) {
            return CM_ENOMEM;
        }
        ev->ring = cm_calloc(CM_STATE_EVENTS_MAX, sizeof(*ev->ring));
        if (ev->ring == NULL) {
            cm_free(&ev);
            return CM_ENOMEM;
        }
        *pev = ev;
    }
    (*pev)->on = on;
    if (!on) {
        ring_clear(*pev);
    }
    return 0;
}

bool cm_state_events_recording(const struct cm_state *s)
{
    const struct state_events *ev = state__events_const(s);
    return ev != NULL && ev->on;
}

size_t cm_state_take_events(struct cm_state *s, cm_state_event_fn fn, void *data)
{
    struct state_events *ev = *state__events(s);
    size_t taken = 0;
    while (ev != NULL && ev->n > 0) {
        const struct ring_ev *e = &ev->ring[ev->head];
        struct cm_state_event out = {e->index, e->type, e->json, e->len};
        fn(data, &out);
        ring_pop(ev);
        taken++;
    }
    return taken;
}

uint64_t cm_state_events_dropped(const struct cm_state *s)
{
    const struct state_events *ev = state__events_const(s);
    return ev != NULL ? ev->dropped : 0;
}

static void notes_clear(struct state_events *ev)
{
    for (size_t i = 0; i < ev->n_notes; i++) {
        cm_free(&ev->notes[i].id);
    }
    ev->n_notes = 0;
    for (size_t i = 0; i < ev->n_apps; i++) {
        cm_free(&ev->apps[i].id);
        cm_free(&ev->apps[i].old_spec);
    }
    ev->n_apps = 0;
    for (size_t i = 0; i < ev->n_deps; i++) {
        cm_free(&ev->deps[i].id);
        cm_free(&ev->deps[i].status);
    }
    ev->n_deps = 0;
    ev->notes_failed = false;
}

void events__free(struct state_events *ev)
{
    if (ev == NULL) {
        return;
    }
    ring_clear(ev);
    notes_clear(ev);
    cm_free(&ev->notes);
    cm_free(&ev->apps);
    cm_free(&ev->deps);
    cm_free(&ev->ring);
    cm_free(&ev);
}

void events__abort(struct state_events *ev)
{
    if (ev != NULL) {
        notes_clear(ev);
    }
}

/* ------------------------------------------------------------------ notes */

static const char *str_of(const cJSON *obj, const char *name)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(f) ? f->valuestring : NULL;
}

/* Room for one more element in *@v (@n used of *@cap); false out of memory. */
static bool grow(void **v, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) {
        return true;
    }
    size_t c = *cap ? *cap * 2 : 16;
    void *nv = cm_reallocarray(*v, c, size);
    if (nv == NULL) {
        return false;
    }
    *v = nv;
    *cap = c;
    return true;
}

static void note_add(struct state_events *ev, const char *id, int state,
                     enum health health)
{
    char *copy = cm_strdup(id);
    if (copy == NULL ||
        !grow((void **)&ev->notes, &ev->cap_notes, ev->n_notes, sizeof(*ev->notes))) {
        cm_free(&copy);
        ev->notes_failed = true;
        return;
    }
    ev->notes[ev->n_notes++] = (struct note_task){copy, state, health};
}

static int note_row(void *data, const struct cm_task_row *row)
{
    struct state_events *ev = data;
    /* Terminal tasks never change again (apply keeps terminal states final). */
    if (!cm_task_state_terminal(row->state)) {
        note_add(ev, row->id, (int)row->state, health_of(row->health));
    }
    return 0;
}

static void note_task_id(struct state_events *ev, struct cm_state *s, const char *id)
{
    if (id != NULL && cm_state_task(s, id, note_row, ev) == CM_ENOMEM) {
        ev->notes_failed = true;
    }
}

static int note_spec(void *data, const struct cm_app_row *row)
{
    struct note_app *a = data;
    a->old_spec = cm_strdup(row->spec);
    return a->old_spec == NULL ? CM_ENOMEM : 0;
}

static void note_app(struct state_events *ev, struct cm_state *s, const char *id)
{
    if (id == NULL ||
        !grow((void **)&ev->apps, &ev->cap_apps, ev->n_apps, sizeof(*ev->apps))) {
        ev->notes_failed = true;
        return;
    }
    struct note_app *a = &ev->apps[ev->n_apps];
    *a = (struct note_app){cm_strdup(id), NULL};
    int rv = a->id != NULL ? cm_state_apps(s, id, note_spec, a) : CM_ENOMEM;
    if (rv != 0 && rv != CM_ENOTFOUND) {
        cm_free(&a->id);
        cm_free(&a->old_spec);
        ev->notes_failed = true;
        return;
    }
    ev->n_apps++;
}

static int note_dep_row(void *data, const struct cm_deploy_row *row)
{
    struct state_events *ev = data;
    struct note_dep *d = &ev->deps[ev->n_deps - 1];
    d->status = cm_strdup(row->status);
    d->step = row->step;
    return d->status == NULL ? CM_ENOMEM : 0;
}

/* Note deployment @id as it is now (absent included). */
static void note_dep(struct state_events *ev, struct cm_state *s, const char *id)
{
    for (size_t i = 0; id != NULL && i < ev->n_deps; i++) {
        if (strcmp(ev->deps[i].id, id) == 0) {
            return;
        }
    }
    if (id == NULL ||
        !grow((void **)&ev->deps, &ev->cap_deps, ev->n_deps, sizeof(*ev->deps))) {
        ev->notes_failed = true;
        return;
    }
    ev->deps[ev->n_deps] = (struct note_dep){cm_strdup(id), NULL, 0};
    if (ev->deps[ev->n_deps].id == NULL) {
        ev->notes_failed = true;
        return;
    }
    ev->n_deps++;
    int rv = cm_state_deployments(s, id, false, note_dep_row, ev);
    if (rv != 0 && rv != CM_ENOTFOUND) {
        ev->notes_failed = true;
    }
}

struct note_dep_ctx {
    struct state_events *ev;
    struct cm_state *s;
};

static int note_running_dep(void *data, const struct cm_deploy_row *row)
{
    struct note_dep_ctx *c = data;
    note_dep(c->ev, c->s, row->id);
    return 0;
}

/* What an app or task command may change. */
static void note_change(struct state_events *ev, struct cm_state *s, const cJSON *cmd)
{
    const char *type = str_of(cmd, "type");
    int rv = 0;
    if (type == NULL) {
        return;
    }
    if (strcmp(type, "app.put") == 0) {
        note_app(ev, s, str_of(cJSON_GetObjectItemCaseSensitive(cmd, "app"), "id"));
    } else if (strcmp(type, "app.delete") == 0) {
        rv = cm_state_tasks(s, str_of(cmd, "id"), NULL, note_row, ev);
    } else if (strcmp(type, "task.status") == 0) {
        note_task_id(ev, s, str_of(cmd, "id"));
    } else if (strcmp(type, "task.kill") == 0) {
        const cJSON *id;
        cJSON_ArrayForEach(id, cJSON_GetObjectItemCaseSensitive(cmd, "ids"))
        {
            note_task_id(ev, s, cJSON_IsString(id) ? id->valuestring : NULL);
        }
    } else if (strcmp(type, "node.up") == 0) {
        const char *node = str_of(cJSON_GetObjectItemCaseSensitive(cmd, "node"), "id");
        rv = cm_state_tasks(s, NULL, node, note_row, ev);
    } else if (strcmp(type, "node.state") == 0) {
        rv = cm_state_tasks(s, NULL, str_of(cmd, "id"), note_row, ev);
    }
    if (rv != 0 && rv != CM_ENOTFOUND) {
        ev->notes_failed = true;
    }
}

void events__before(struct state_events *ev, struct cm_state *s, const cJSON *cmd)
{
    if (ev == NULL || !ev->on) {
        return;
    }
    notes_clear(ev);
    const char *type = str_of(cmd, "type");
    if (strcmp(type, "deploy.start") == 0) {
        /* Its changes, the deployments it replaces or fails, and itself. */
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(cmd, "changes"))
        {
            note_change(ev, s, c);
        }
        struct note_dep_ctx ctx = {ev, s};
        if (cm_state_deployments(s, NULL, true, note_running_dep, &ctx) != 0) {
            ev->notes_failed = true;
        }
        note_dep(ev, s, str_of(cmd, "id"));
    } else if (strncmp(type, "deploy.", 7) == 0) {
        note_dep(ev, s, str_of(cmd, "id"));
    } else {
        note_change(ev, s, cmd);
    }
}

/* ------------------------------------------------------------------ builders */

/* Each builder returns the event object (NULL: out of memory). The field order
 * is Marathon's. */

/* Every step of a builder is checked: a lost field loses the whole event,
 * which is then counted as dropped, never sent incomplete. */
static cJSON *finish(cJSON *o, bool ok)
{
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *ip_addresses(const char *host)
{
    cJSON *arr = cJSON_CreateArray();
    if (arr == NULL || host == NULL || host[0] == '\0') {
        return arr;
    }
    cJSON *ip = cJSON_CreateObject();
    bool ok = ip != NULL && cJSON_AddItemToArray(arr, ip);
    if (!ok) {
        cJSON_Delete(ip);
    }
    ok = ok && cJSON_AddStringToObject(ip, "ipAddress", host) != NULL;
    ok = ok && cJSON_AddStringToObject(
                   ip, "protocol", strchr(host, ':') != NULL ? "IPv6" : "IPv4") != NULL;
    return finish(arr, ok);
}

static cJSON *status_update_event(const struct cm_task_row *r, const char *ts)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "slaveId", r->node) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "taskId", r->id) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "taskStatus", name_of(status_names, r->state));
    ok = ok && cJSON_AddStringToObject(o, "message", r->reason ? r->reason : "") != NULL;
    ok = ok && cJSON_AddStringToObject(o, "appId", r->app) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "host", r->host) != NULL;
    cJSON *ips = ok ? ip_addresses(r->host) : NULL;
    if (ips != NULL && !cJSON_AddItemToObject(o, "ipAddresses", ips)) {
        cJSON_Delete(ips);
        ips = NULL;
    }
    ok = ok && ips != NULL;
    /* The stored ports are a JSON array of integers written by apply. */
    ok = ok && cJSON_AddRawToObject(o, "ports", r->ports ? r->ports : "[]") != NULL;
    ok = ok && cJSON_AddStringToObject(o, "version", r->version) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "eventType", "status_update_event") != NULL;
    ok = ok && cJSON_AddStringToObject(o, "timestamp", ts) != NULL;
    return finish(o, ok);
}

static cJSON *instance_changed_event(const struct cm_task_row *r, const char *ts)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "instanceId", r->id) != NULL;
    ok =
        ok && cJSON_AddStringToObject(o, "condition", name_of(condition_names, r->state));
    ok = ok && cJSON_AddStringToObject(o, "runSpecId", r->app) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "agentId", r->node) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "host", r->host) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "runSpecVersion", r->version) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "timestamp", ts) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "eventType", "instance_changed_event") != NULL;
    return finish(o, ok);
}

/* Marathon 1.4+ names the task instanceId; taskId (the 1.3 name) is kept too for
 * the consumers written against it. */
static cJSON *health_status_changed_event(const struct cm_task_row *r, bool alive,
                                          const char *ts)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "appId", r->app) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "instanceId", r->id) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "taskId", r->id) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "version", r->version) != NULL;
    ok = ok && cJSON_AddBoolToObject(o, "alive", alive) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "eventType", "health_status_changed_event");
    ok = ok && cJSON_AddStringToObject(o, "timestamp", ts) != NULL;
    return finish(o, ok);
}

static cJSON *instance_health_changed_event(const struct cm_task_row *r, bool healthy,
                                            const char *ts)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "instanceId", r->id) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "runSpecId", r->app) != NULL;
    ok = ok && cJSON_AddBoolToObject(o, "healthy", healthy) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "runSpecVersion", r->version) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "timestamp", ts) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "eventType", "instance_health_changed_event");
    return finish(o, ok);
}

static cJSON *app_event(const char *type, const char *app, const char *ts)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "appId", app) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "eventType", type) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "timestamp", ts) != NULL;
    return finish(o, ok);
}

static cJSON *add_health_check_event(const char *app, const cJSON *check,
                                     const char *version, const char *ts)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *c = cJSON_Duplicate(check, true);
    bool ok = o != NULL && c != NULL;
    ok = ok && cJSON_AddStringToObject(o, "appId", app) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "eventType", "add_health_check_event") != NULL;
    ok = ok && cJSON_AddItemToObject(o, "healthCheck", c);
    if (!ok) {
        cJSON_Delete(c);
    }
    ok = ok && cJSON_AddStringToObject(o, "timestamp", ts) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "version", version) != NULL;
    return finish(o, ok);
}

/* ------------------------------------------------------------------ tasks */

struct task_ctx {
    struct state_events *ev;
    struct cm_state *s;
    const struct note_task *note;
    const char *ts;
    uint64_t index;
};

/* The executor ends a task its health checks condemned with this reason
 * (lib/agent/health.c): Marathon announces such kills. */
#define HEALTH_KILL_REASON "health check failed"

static cJSON *unhealthy_instance_kill_event(const struct cm_task_row *r, const char *ts)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "appId", r->app) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "taskId", r->id) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "instanceId", r->id) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "version", r->version) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "reason", r->reason) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "host", r->host) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "slaveId", r->node) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "eventType", "unhealthy_instance_kill_event");
    ok = ok && cJSON_AddStringToObject(o, "timestamp", ts) != NULL;
    return finish(o, ok);
}

static cJSON *app_definition(const char *spec, const char *version);

struct version_ctx {
    const char *version;
    char *spec; /* the app's spec at that version */
};

static int find_version(void *data, const struct cm_app_row *row)
{
    struct version_ctx *v = data;
    if (v->spec == NULL && strcmp(row->version, v->version) == 0) {
        v->spec = cm_strdup(row->spec);
        return v->spec == NULL ? CM_ENOMEM : 0;
    }
    return 0;
}

/* The task turned unhealthy: one failed_health_check_event per check that is
 * failing in its results (lib/agent/health.c writes them with the transition),
 * with the check's definition from the app at the task's version. Marathon sends
 * one per failed probe; only the transitions reach the log here. */
static void failed_check_events(struct task_ctx *t, const struct cm_task_row *r)
{
    struct state_events *ev = t->ev;
    cJSON *results = r->checks != NULL ? cJSON_Parse(r->checks) : NULL;
    const cJSON *health = cJSON_GetObjectItemCaseSensitive(results, "health");
    if (!cJSON_IsArray(health)) {
        cJSON_Delete(results);
        return; /* no per-check results: nothing to name */
    }
    struct version_ctx v = {r->version, NULL};
    int rv = cm_state_app_versions(t->s, r->app, find_version, &v);
    cJSON *def = rv == 0 && v.spec != NULL ? app_definition(v.spec, r->version) : NULL;
    cm_free(&v.spec);
    const cJSON *defs = cJSON_GetObjectItemCaseSensitive(def, "healthChecks");
    int i = 0;
    const cJSON *res;
    cJSON_ArrayForEach(res, health)
    {
        const cJSON *check = cJSON_GetArrayItem(defs, i++);
        if (!cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(res, "alive"))) {
            continue;
        }
        if (check == NULL) {
            ev->dropped++; /* the definition is gone (or out of memory) */
            continue;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON *c = cJSON_Duplicate(check, true);
        bool ok = o != NULL && c != NULL;
        ok = ok && cJSON_AddStringToObject(o, "appId", r->app) != NULL;
        ok = ok && cJSON_AddStringToObject(o, "eventType", "failed_health_check_event");
        ok = ok && cJSON_AddItemToObject(o, "healthCheck", c);
        if (!ok) {
            cJSON_Delete(c);
        }
        ok = ok && cJSON_AddStringToObject(o, "taskId", r->id) != NULL;
        ok = ok && cJSON_AddStringToObject(o, "instanceId", r->id) != NULL;
        ok = ok && cJSON_AddStringToObject(o, "timestamp", t->ts) != NULL;
        push(ev, t->index, "failed_health_check_event", finish(o, ok));
    }
    cJSON_Delete(def);
    cJSON_Delete(results);
}

static int task_changed(void *data, const struct cm_task_row *r)
{
    struct task_ctx *t = data;
    struct state_events *ev = t->ev;
    if (t->note->state != (int)r->state && cm_task_state_terminal(r->state) &&
        r->reason != NULL &&
        strncmp(r->reason, HEALTH_KILL_REASON, sizeof(HEALTH_KILL_REASON) - 1) == 0) {
        push(ev, t->index, "unhealthy_instance_kill_event",
             unhealthy_instance_kill_event(r, t->ts));
    }
    if (t->note->state != (int)r->state) {
        push(ev, t->index, "status_update_event", status_update_event(r, t->ts));
        push(ev, t->index, "instance_changed_event", instance_changed_event(r, t->ts));
    }
    enum health h = health_of(r->health);
    if (h == HEALTH_UNHEALTHY && h != t->note->health) {
        failed_check_events(t, r);
    }
    if (h != HEALTH_NONE && h != t->note->health) {
        bool alive = h == HEALTH_HEALTHY;
        push(ev, t->index, "health_status_changed_event",
             health_status_changed_event(r, alive, t->ts));
        push(ev, t->index, "instance_health_changed_event",
             instance_health_changed_event(r, alive, t->ts));
    }
    return 0;
}

static void task_events(struct state_events *ev, struct cm_state *s,
                        const struct note_task *note, const char *ts, uint64_t index)
{
    struct task_ctx t = {ev, s, note, ts, index};
    int rv = cm_state_task(s, note->id, task_changed, &t);
    if (rv != 0 && rv != CM_ENOTFOUND) {
        ev->dropped++;
    }
}

/* ------------------------------------------------------------------ apps */

/* @spec (the canonical text stored by app.put) in Marathon's GET shape with
 * @version, parsed. A spec that is not canonical (written by hand, or by an
 * older proposer) is given as stored, with the version. NULL: out of memory. */
static cJSON *app_definition(const char *spec, const char *version)
{
    struct cm_app *app = NULL;
    int rv = cm_app_from_canonical(spec, strlen(spec), &app);
    if (rv == CM_ENOMEM) {
        return NULL;
    }
    cJSON *j = NULL;
    if (rv == 0) {
        struct cm_buf out = {0};
        struct cm_app_out_opts opts = {.version = version};
        if (cm_app_to_json(app, &opts, &out) == 0) {
            j = cJSON_ParseWithLength(out.data, out.len);
        }
        cm_buf_done(&out);
        cm_app_free(app);
        return j;
    }
    j = cJSON_Parse(spec);
    if (j != NULL && cJSON_IsObject(j)) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, "version");
        if (cJSON_AddStringToObject(j, "version", version != NULL ? version : "") !=
            NULL) {
            return j;
        }
    }
    cJSON_Delete(j);
    return NULL;
}

static bool has_check(const cJSON *checks, const cJSON *check)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, checks)
    {
        if (cJSON_Compare(c, check, true)) {
            return true;
        }
    }
    return false;
}

static const char *old_spec_of(const struct state_events *ev, const char *id)
{
    for (size_t i = 0; id != NULL && i < ev->n_apps; i++) {
        if (strcmp(ev->apps[i].id, id) == 0) {
            return ev->apps[i].old_spec;
        }
    }
    return NULL;
}

/* The events of one app.put: the health checks it adds or removes and, when
 * @post, api_post_event (with @origin, the request it came from; may be NULL). */
static void app_put_events(struct state_events *ev, const cJSON *cmd, const cJSON *origin,
                           bool post, const char *ts, uint64_t index)
{
    const cJSON *app = cJSON_GetObjectItemCaseSensitive(cmd, "app");
    const char *id = str_of(app, "id");
    const char *version = str_of(cmd, "version");
    char *spec = cJSON_PrintUnformatted(app);
    cJSON *def = spec != NULL ? app_definition(spec, version) : NULL;
    cJSON_free(spec);
    if (def == NULL) {
        ev->dropped++;
        return;
    }
    /* Added and removed checks first: the api_post_event below takes @def. */
    const cJSON *checks = cJSON_GetObjectItemCaseSensitive(def, "healthChecks");
    const char *old_spec = old_spec_of(ev, id);
    cJSON *old = old_spec != NULL ? app_definition(old_spec, version) : NULL;
    if (old_spec != NULL && old == NULL) {
        /* Which checks changed is unknown: lose those events, not invent them. */
        ev->dropped++;
        checks = NULL;
    }
    const cJSON *old_checks = cJSON_GetObjectItemCaseSensitive(old, "healthChecks");
    bool removed = false;
    const cJSON *c;
    cJSON_ArrayForEach(c, old_checks)
    {
        removed = removed || !has_check(checks, c);
    }
    if (removed) {
        /* Marathon's RemoveHealthCheck names the app only. */
        push(ev, index, "remove_health_check_event",
             app_event("remove_health_check_event", id, ts));
    }
    cJSON_ArrayForEach(c, checks)
    {
        if (!has_check(old_checks, c)) {
            push(ev, index, "add_health_check_event",
                 add_health_check_event(id, c, version, ts));
        }
    }
    cJSON_Delete(old);
    if (!post) {
        cJSON_Delete(def);
        return;
    }
    const char *ip = str_of(origin, "clientIp");
    const char *uri = str_of(origin, "uri");
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "clientIp", ip ? ip : "") != NULL;
    ok = ok && cJSON_AddStringToObject(o, "uri", uri ? uri : "") != NULL;
    ok = ok && cJSON_AddItemToObject(o, "appDefinition", def);
    if (!ok) {
        cJSON_Delete(def);
    }
    ok = ok && cJSON_AddStringToObject(o, "eventType", "api_post_event") != NULL;
    ok = ok && cJSON_AddStringToObject(o, "timestamp", ts) != NULL;
    push(ev, index, "api_post_event", finish(o, ok));
}

/* ------------------------------------------------------------------ deployments */

/* Marathon's DeploymentStep: {"actions": [{"action", "app"}]} from a stored step
 * (whose actions also carry versions). */
static cJSON *marathon_step(const cJSON *step)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *acts = o != NULL ? cJSON_AddArrayToObject(o, "actions") : NULL;
    bool ok = acts != NULL;
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(step, "actions"))
    {
        cJSON *m = ok ? cJSON_CreateObject() : NULL;
        ok = m != NULL && cJSON_AddItemToArray(acts, m);
        if (!ok) {
            cJSON_Delete(m);
        }
        const char *action = str_of(a, "action");
        const char *app = str_of(a, "app");
        ok = ok && cJSON_AddStringToObject(m, "action", action ? action : "") != NULL;
        ok = ok && cJSON_AddStringToObject(m, "app", app ? app : "") != NULL;
    }
    return finish(o, ok);
}

/* Marathon's DeploymentPlan as events carry it: {"id", "steps", "version"}. */
static cJSON *marathon_plan(const struct cm_deploy_row *r, const cJSON *steps)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && cJSON_AddStringToObject(o, "id", r->id) != NULL;
    cJSON *arr = ok ? cJSON_AddArrayToObject(o, "steps") : NULL;
    ok = ok && arr != NULL;
    const cJSON *st;
    cJSON_ArrayForEach(st, steps)
    {
        cJSON *m = ok ? marathon_step(st) : NULL;
        ok = m != NULL && cJSON_AddItemToArray(arr, m);
        if (!ok) {
            cJSON_Delete(m);
        }
    }
    ok = ok && cJSON_AddStringToObject(o, "version", r->version) != NULL;
    return finish(o, ok);
}

/* deployment_info, deployment_step_success, deployment_step_failure:
 * {"plan", "currentStep", "eventType", "timestamp"}. */
static cJSON *deployment_step_event(const char *type, const struct cm_deploy_row *r,
                                    const cJSON *steps, int64_t k, const char *ts)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *plan = marathon_plan(r, steps);
    bool ok = o != NULL && plan != NULL && cJSON_AddItemToObject(o, "plan", plan);
    if (!ok) {
        cJSON_Delete(plan);
    }
    const cJSON *step =
        k >= 0 && k < INT32_MAX ? cJSON_GetArrayItem(steps, (int)k) : NULL;
    cJSON *cur = ok ? marathon_step(step) : NULL;
    if (cur != NULL && !cJSON_AddItemToObject(o, "currentStep", cur)) {
        cJSON_Delete(cur);
        cur = NULL;
    }
    ok = ok && cur != NULL;
    ok = ok && cJSON_AddStringToObject(o, "eventType", type) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "timestamp", ts) != NULL;
    return finish(o, ok);
}

/* deployment_success, deployment_failed: {"id", "plan", "eventType",
 * "timestamp"[, "reason"]}. */
static cJSON *deployment_end_event(const char *type, const struct cm_deploy_row *r,
                                   const cJSON *steps, const char *ts)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && cJSON_AddStringToObject(o, "id", r->id) != NULL;
    cJSON *plan = ok ? marathon_plan(r, steps) : NULL;
    if (plan != NULL && !cJSON_AddItemToObject(o, "plan", plan)) {
        cJSON_Delete(plan);
        plan = NULL;
    }
    ok = ok && plan != NULL;
    ok = ok && cJSON_AddStringToObject(o, "eventType", type) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "timestamp", ts) != NULL;
    if (ok && r->reason != NULL && strcmp(type, "deployment_failed") == 0) {
        ok = cJSON_AddStringToObject(o, "reason", r->reason) != NULL;
    }
    return finish(o, ok);
}

struct dep_ctx {
    struct state_events *ev;
    const struct note_dep *note;
    const char *ts;
    uint64_t index;
};

/* Marathon's sequence for what happened to one deployment: a new one is
 * deployment_info; each finished step deployment_step_success, then
 * deployment_info for the next; the end deployment_step_success +
 * deployment_success, or deployment_step_failure + deployment_failed (a
 * cancelled or replaced deployment fails too, as in Marathon). */
static int dep_changed(void *data, const struct cm_deploy_row *r)
{
    struct dep_ctx *c = data;
    struct state_events *ev = c->ev;
    const struct note_dep *n = c->note;
    bool was_running = n->status != NULL && strcmp(n->status, "running") == 0;
    bool running = strcmp(r->status, "running") == 0;
    if ((n->status == NULL && !running) || (n->status != NULL && !was_running)) {
        return 0; /* not one that moved here */
    }
    cJSON *plan = cJSON_Parse(r->plan);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(plan, "steps");
    if (plan == NULL) {
        ev->dropped++;
        return 0;
    }
    if (n->status == NULL) {
        push(ev, c->index, "deployment_info",
             deployment_step_event("deployment_info", r, steps, r->step, c->ts));
    } else if (running) {
        for (int64_t k = n->step; k < r->step; k++) {
            push(ev, c->index, "deployment_step_success",
                 deployment_step_event("deployment_step_success", r, steps, k, c->ts));
        }
        if (r->step != n->step) {
            push(ev, c->index, "deployment_info",
                 deployment_step_event("deployment_info", r, steps, r->step, c->ts));
        }
    } else {
        bool ok = strcmp(r->status, "success") == 0;
        const char *step_type =
            ok ? "deployment_step_success" : "deployment_step_failure";
        const char *end_type = ok ? "deployment_success" : "deployment_failed";
        if (r->step < cJSON_GetArraySize(steps)) {
            push(ev, c->index, step_type,
                 deployment_step_event(step_type, r, steps, r->step, c->ts));
        }
        push(ev, c->index, end_type, deployment_end_event(end_type, r, steps, c->ts));
    }
    cJSON_Delete(plan);
    return 0;
}

static void dep_events(struct state_events *ev, struct cm_state *s, const char *ts,
                       uint64_t index)
{
    for (size_t i = 0; i < ev->n_deps; i++) {
        struct dep_ctx c = {ev, &ev->deps[i], ts, index};
        int rv = cm_state_deployments(s, ev->deps[i].id, false, dep_changed, &c);
        if (rv != 0 && rv != CM_ENOTFOUND) {
            ev->dropped++;
        }
    }
}

/* ------------------------------------------------------------------ after */

static int note_cmp(const void *a, const void *b)
{
    return strcmp(((const struct note_task *)a)->id, ((const struct note_task *)b)->id);
}

/* Every noted task that changed, once each (a deploy.start may note a task
 * twice), in id order. */
static void task_notes_events(struct state_events *ev, struct cm_state *s, const char *ts,
                              uint64_t index)
{
    if (ev->n_notes > 1) {
        qsort(ev->notes, ev->n_notes, sizeof(*ev->notes), note_cmp);
    }
    for (size_t i = 0; i < ev->n_notes; i++) {
        if (i > 0 && strcmp(ev->notes[i].id, ev->notes[i - 1].id) == 0) {
            continue;
        }
        task_events(ev, s, &ev->notes[i], ts, index);
    }
}

void events__after(struct state_events *ev, struct cm_state *s, const cJSON *cmd,
                   uint64_t index)
{
    if (ev == NULL || !ev->on) {
        return;
    }
    const char *type = str_of(cmd, "type");
    /* The command's stamped time; an app.put carries its version instead when
     * its proposer did not stamp it. */
    char ts[32];
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(cmd, "at");
    const char *version = str_of(cmd, "version");
    if (cJSON_IsNumber(at)) {
        cm_time_iso8601((int64_t)at->valuedouble, ts);
    } else {
        snprintf(ts, sizeof(ts), "%s", version != NULL ? version : "");
    }
    if (ev->notes_failed) {
        ev->dropped++; /* at least one; which ones is unknown */
    }
    /* The API writes where the request came from into the command; other
     * proposers (the controller) leave it out. */
    const cJSON *origin = cJSON_GetObjectItemCaseSensitive(cmd, "origin");
    if (strcmp(type, "app.put") == 0) {
        app_put_events(ev, cmd, origin, true, ts, index);
    } else if (strcmp(type, "task.assign") == 0) {
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(cmd, "tasks"))
        {
            struct note_task fresh = {(char *)str_of(t, "id"), -1, HEALTH_NONE};
            if (fresh.id != NULL) {
                task_events(ev, s, &fresh, ts, index);
            }
        }
    } else if (strcmp(type, "deploy.start") == 0) {
        /* Marathon's order: the request, the deployment, what it did to the
         * tasks, the apps it ended. Only a request posts (not a rollback the
         * controller started). */
        const cJSON *changes = cJSON_GetObjectItemCaseSensitive(cmd, "changes");
        const cJSON *c;
        cJSON_ArrayForEach(c, changes)
        {
            if (strcmp(str_of(c, "type") ? str_of(c, "type") : "", "app.put") == 0) {
                app_put_events(ev, c, origin, origin != NULL, ts, index);
            }
        }
        dep_events(ev, s, ts, index);
        task_notes_events(ev, s, ts, index);
        cJSON_ArrayForEach(c, changes)
        {
            if (strcmp(str_of(c, "type") ? str_of(c, "type") : "", "app.delete") == 0) {
                push(ev, index, "app_terminated_event",
                     app_event("app_terminated_event", str_of(c, "id"), ts));
            }
        }
    } else if (strncmp(type, "deploy.", 7) == 0) {
        dep_events(ev, s, ts, index);
    } else {
        task_notes_events(ev, s, ts, index);
        if (strcmp(type, "app.delete") == 0) {
            push(ev, index, "app_terminated_event",
                 app_event("app_terminated_event", str_of(cmd, "id"), ts));
        }
    }
    notes_clear(ev);
}
