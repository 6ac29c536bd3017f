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
    char *old_spec;    /* app.put: the replaced app's canonical spec; NULL: new */
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
    cm_free(&ev->old_spec);
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

static void note_add(struct state_events *ev, const char *id, int state,
                     enum health health)
{
    if (ev->n_notes == ev->cap_notes) {
        size_t cap = ev->cap_notes ? ev->cap_notes * 2 : 16;
        struct note_task *v = cm_reallocarray(ev->notes, cap, sizeof(*v));
        if (v == NULL) {
            ev->notes_failed = true;
            return;
        }
        ev->notes = v;
        ev->cap_notes = cap;
    }
    char *copy = cm_strdup(id);
    if (copy == NULL) {
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
    struct state_events *ev = data;
    ev->old_spec = cm_strdup(row->spec);
    if (ev->old_spec == NULL) {
        ev->notes_failed = true;
    }
    return 0;
}

void events__before(struct state_events *ev, struct cm_state *s, const cJSON *cmd)
{
    if (ev == NULL || !ev->on) {
        return;
    }
    notes_clear(ev);
    const char *type = str_of(cmd, "type");
    int rv = 0;
    if (strcmp(type, "app.put") == 0) {
        const char *id = str_of(cJSON_GetObjectItemCaseSensitive(cmd, "app"), "id");
        rv = cm_state_apps(s, id, note_spec, ev);
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
    const struct note_task *note;
    const char *ts;
    uint64_t index;
};

static int task_changed(void *data, const struct cm_task_row *r)
{
    struct task_ctx *t = data;
    struct state_events *ev = t->ev;
    if (t->note->state != (int)r->state) {
        push(ev, t->index, "status_update_event", status_update_event(r, t->ts));
        push(ev, t->index, "instance_changed_event", instance_changed_event(r, t->ts));
    }
    enum health h = health_of(r->health);
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
    struct task_ctx t = {ev, note, ts, index};
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

static void app_put_events(struct state_events *ev, const cJSON *cmd, const char *ts,
                           uint64_t index)
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
    cJSON *old = ev->old_spec != NULL ? app_definition(ev->old_spec, version) : NULL;
    if (ev->old_spec != NULL && old == NULL) {
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

    /* The API writes where the request came from into the command; other
     * proposers leave it out. */
    const cJSON *origin = cJSON_GetObjectItemCaseSensitive(cmd, "origin");
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

/* ------------------------------------------------------------------ after */

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
    if (strcmp(type, "app.put") == 0) {
        app_put_events(ev, cmd, ts, index);
    } else if (strcmp(type, "task.assign") == 0) {
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(cmd, "tasks"))
        {
            struct note_task fresh = {(char *)str_of(t, "id"), -1, HEALTH_NONE};
            if (fresh.id != NULL) {
                task_events(ev, s, &fresh, ts, index);
            }
        }
    } else {
        for (size_t i = 0; i < ev->n_notes; i++) {
            task_events(ev, s, &ev->notes[i], ts, index);
        }
        if (strcmp(type, "app.delete") == 0) {
            push(ev, index, "app_terminated_event",
                 app_event("app_terminated_event", str_of(cmd, "id"), ts));
        }
    }
    notes_clear(ev);
}
