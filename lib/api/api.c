/* lib/api: set-up, answers, writes through the ops, and reading the replica. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_int.h"

/* ------------------------------------------------------------------ JSON output */

int api__json_str(struct cm_buf *b, const char *s)
{
    if (s == NULL) {
        return cm_buf_puts(b, "null");
    }
    if (cm_buf_reserve(b, strlen(s) + 2) != 0) {
        return CM_ENOMEM;
    }
    int rv = cm_buf_puts(b, "\"");
    const char *run = s;
    for (const char *p = s; rv == 0 && *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        rv = cm_buf_append(b, run, (size_t)(p - run));
        if (rv == 0) {
            switch (c) {
            case '"':
                rv = cm_buf_puts(b, "\\\"");
                break;
            case '\\':
                rv = cm_buf_puts(b, "\\\\");
                break;
            case '\n':
                rv = cm_buf_puts(b, "\\n");
                break;
            case '\r':
                rv = cm_buf_puts(b, "\\r");
                break;
            case '\t':
                rv = cm_buf_puts(b, "\\t");
                break;
            default:
                rv = cm_buf_printf(b, "\\u%04x", c);
                break;
            }
        }
        run = p + 1;
    }
    if (rv == 0) {
        rv = cm_buf_puts(b, run);
    }
    if (rv == 0) {
        rv = cm_buf_puts(b, "\"");
    }
    return rv;
}

int api__json_time(struct cm_buf *b, int64_t ms)
{
    if (ms <= 0) {
        return cm_buf_puts(b, "null");
    }
    char t[32];
    return cm_buf_printf(b, "\"%s\"", cm_time_iso8601(ms, t));
}

/* ------------------------------------------------------------------ answers */

int api__respond_json(struct cm_http_req *req, int status, const struct cm_buf *body)
{
    return cm_http_respond(req, status, "application/json", body->data ? body->data : "",
                           body->len);
}

/* The HTTP status of a failed proposal or read (compat.md §2.3). */
static int status_of(int code)
{
    switch (code) {
    case CM_ENOTFOUND:
        return 404;
    case CM_EVALIDATION:
        return 422;
    case CM_ECONFLICT:
    case CM_EEXIST:
        return 409;
    case CM_ETOOBIG:
        return 413;
    case CM_EMALFORMED:
    case CM_EINVAL:
        return 400;
    case CM_ENOTLEADER:
    case CM_ESHUTDOWN:
    case CM_ETIMEDOUT:
    case CM_ECONNREFUSED:
    case CM_ECONNRESET:
    case CM_ECLOSED:
        return 503;
    default:
        return 500;
    }
}

void api__respond_err(struct cm_http_req *req, int code, const char *msg)
{
    int status = status_of(code);
    if (code == CM_ENOTLEADER) {
        cm_http_respond_error(req, status,
                              "no leader can take the change now (%s); retry",
                              msg != NULL && msg[0] != '\0' ? msg : cm_strerror(code));
        return;
    }
    cm_http_respond_error(req, status, "%s",
                          msg != NULL && msg[0] != '\0' ? msg : cm_strerror(code));
}

void api__respond_internal(struct cm_http_req *req, int code)
{
    cm_http_respond_error(req, 500, "internal error: %s", cm_strerror(code));
}

void api__respond_ok_json(struct cm_http_req *req, int rv, struct cm_buf *body)
{
    if (rv == 0) {
        api__respond_json(req, 200, body);
    } else {
        api__respond_internal(req, rv);
    }
    cm_buf_done(body);
}

bool api__app_id(const char *param, char *out, size_t cap)
{
    return param != NULL && cm_app_path_normalize(param, "/", out, cap) == 0 &&
           strcmp(out, "/") != 0;
}

int64_t api__parse_time(const char *s)
{
    int y, mo, d, h, mi, sec, ms;
    char z;
    if (s == NULL ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &sec, &ms, &z) !=
            8 ||
        z != 'Z') {
        return -1;
    }
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1) {
        return -1;
    }
    return (int64_t)t * 1000 + ms;
}

/* Versions are the proposer's clock (DESIGN.md §1 principle 3). Two changes in
 * the same millisecond, or a clock that stepped back, must still give a new
 * version, or the controller would not see a restart as one. */
void api__new_version(struct cm_api *api, const char *after, char out[32])
{
    int64_t ms = api->ops.now_ms(api->ops.data);
    if (ms <= api->last_version_ms) {
        ms = api->last_version_ms + 1;
    }
    int64_t prev = api__parse_time(after);
    if (prev >= 0 && ms <= prev) {
        ms = prev + 1;
    }
    api->last_version_ms = ms;
    cm_time_iso8601(ms, out);
}

bool api__query_bool(const struct cm_http_request *r, const char *name, bool dflt)
{
    const char *v = cm_http_request_query(r, name);
    if (v == NULL) {
        return dflt;
    }
    return v[0] == '\0' || strcmp(v, "true") == 0 || strcmp(v, "1") == 0;
}

/* ------------------------------------------------------------------ writes */

struct api_write {
    struct cm_api *api; /* NULL once the api is freed */
    struct api_write *prev;
    struct api_write *next;
    struct cm_http_req *req;
    int status;
    struct cm_buf body;
    struct cm_http_header headers[4];
    size_t n_headers;
    unsigned in_flight;
    bool committed;
    int err;
    char errmsg[CM_ERRBUF_SIZE];
    /* A deployment (api__write_deploy): the proposals collected here become one
     * deploy.start at commit. */
    cJSON *changes;
    bool force;
    bool rollback;
    char dep_id[40];
    char dep_version[32];
};

struct api_write *api__write_new(struct cm_api *api, struct cm_http_req *req, int status)
{
    struct api_write *w = cm_calloc(1, sizeof(*w));
    if (w == NULL) {
        api__respond_internal(req, CM_ENOMEM);
        return NULL;
    }
    w->api = api;
    w->req = req;
    w->status = status;
    w->next = api->writes;
    if (w->next != NULL) {
        w->next->prev = w;
    }
    api->writes = w;
    return w;
}

struct cm_buf *api__write_body(struct api_write *w)
{
    return &w->body;
}

int api__write_header(struct api_write *w, const char *name, const char *value)
{
    if (w->n_headers == CM_ARRAY_SIZE(w->headers)) {
        return CM_EINVAL;
    }
    char *n = cm_strdup(name);
    char *v = cm_strdup(value);
    if (n == NULL || v == NULL) {
        cm_free(&n);
        cm_free(&v);
        if (w->err == 0) {
            w->err = CM_ENOMEM;
        }
        return CM_ENOMEM;
    }
    w->headers[w->n_headers].name = n;
    w->headers[w->n_headers].value = v;
    w->n_headers++;
    return 0;
}

static void write_free(struct api_write *w)
{
    if (w->api != NULL) {
        if (w->prev != NULL) {
            w->prev->next = w->next;
        } else {
            w->api->writes = w->next;
        }
        if (w->next != NULL) {
            w->next->prev = w->prev;
        }
    }
    for (size_t i = 0; i < w->n_headers; i++) {
        cm_free_raw((void *)w->headers[i].name);
        cm_free_raw((void *)w->headers[i].value);
    }
    cm_buf_done(&w->body);
    cJSON_Delete(w->changes);
    cm_free(&w);
}

/* Every proposal is applied (or refused): answer. A client that left meanwhile
 * has an inert handle, and the answer is dropped (cm_http_respond frees it). */
static void write_answer(struct api_write *w)
{
    if (w->err != 0) {
        api__respond_err(w->req, w->err, w->errmsg);
    } else {
        for (size_t i = 0; i < w->n_headers; i++) {
            if (cm_http_req_add_header(w->req, w->headers[i].name, w->headers[i].value) ==
                CM_ECLOSED) {
                break;
            }
        }
        api__respond_json(w->req, w->status, &w->body);
    }
    write_free(w);
}

static void write_done(void *arg, int status, uint64_t index, const char *msg)
{
    (void)index;
    struct api_write *w = arg;
    CM_ASSERT(w->in_flight > 0);
    w->in_flight--;
    if (status != 0 && w->err == 0) {
        w->err = status;
        snprintf(w->errmsg, sizeof(w->errmsg), "%s",
                 msg != NULL && msg[0] != '\0' ? msg : cm_strerror(status));
    }
    if (w->in_flight == 0 && w->committed) {
        write_answer(w);
    }
}

/* Every command a request proposes says where the request came from, which
 * the replicas turn into Marathon's api_post_event (lib/state events):
 * {...} becomes {"origin":{"clientIp":..,"uri":..},...}. A bare app.put (as
 * api__app_put_cmd writes it, the only command without a stamped time) also
 * gets "at". Errors: CM_ENOMEM. */
static int stamp_origin(struct api_write *w, const char *cmd, size_t len,
                        struct cm_buf *out)
{
    static const char app_put[] = "{\"type\":\"app.put\"";
    if (len < 2 || cmd[0] != '{' || cm_http_req_closed(w->req)) {
        return 0;
    }
    struct cm_api *api = w->api;
    char peer[64];
    cm_http_req_peer(w->req, peer, sizeof(peer));
    int rv = 0;
    if (len >= sizeof(app_put) - 1 && memcmp(cmd, app_put, sizeof(app_put) - 1) == 0) {
        rv = cm_buf_printf(out, "{\"at\":%lld,",
                           (long long)api->ops.now_ms(api->ops.data));
    } else {
        rv = cm_buf_puts(out, "{");
    }
    rv = rv ? rv : cm_buf_puts(out, "\"origin\":{\"clientIp\":");
    rv = rv ? rv : api__json_str(out, peer);
    rv = rv ? rv : cm_buf_puts(out, ",\"uri\":");
    rv = rv ? rv : api__json_str(out, cm_http_req_request(w->req)->path);
    rv = rv ? rv : cm_buf_puts(out, cmd[1] == '}' ? "}" : "},");
    return rv ? rv : cm_buf_append(out, cmd + 1, len - 1);
}

void api__write_deploy(struct api_write *w, const char *id, const char *version,
                       bool dflt_force)
{
    bool force = api__query_bool(cm_http_req_request(w->req), "force", dflt_force);
    w->changes = cJSON_CreateArray();
    if (w->changes == NULL && w->err == 0) {
        w->err = CM_ENOMEM;
    }
    w->force = force;
    snprintf(w->dep_id, sizeof(w->dep_id), "%s", id);
    snprintf(w->dep_version, sizeof(w->dep_version), "%s", version);
}

void api__write_rollback(struct api_write *w)
{
    w->rollback = true;
}

void api__write_propose(struct api_write *w, const char *cmd, size_t len)
{
    if (w->err != 0) {
        return; /* all-or-nothing where we can: stop at the first refusal */
    }
    if (w->changes != NULL) {
        cJSON *c = cJSON_ParseWithLength(cmd, len);
        if (c == NULL || !cJSON_AddItemToArray(w->changes, c)) {
            cJSON_Delete(c);
            w->err = CM_ENOMEM;
        }
        return;
    }
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    struct cm_api *api = w->api;
    struct cm_buf stamped = {0};
    if (stamp_origin(w, cmd, len, &stamped) != 0) {
        cm_buf_done(&stamped);
        w->err = CM_ENOMEM;
        snprintf(w->errmsg, sizeof(w->errmsg), "%s", cm_strerror(CM_ENOMEM));
        return;
    }
    if (stamped.len > 0) {
        cmd = stamped.data;
        len = stamped.len;
    }
    int rv = api->ops.propose(api->ops.data, cmd, len, write_done, w, &eb);
    cm_buf_done(&stamped);
    if (rv != 0) {
        w->err = rv;
        snprintf(w->errmsg, sizeof(w->errmsg), "%s",
                 eb.msg[0] != '\0' ? eb.msg : cm_strerror(rv));
        return;
    }
    w->in_flight++;
}

void api__write_commit(struct api_write *w)
{
    if (w->changes != NULL && w->err == 0 && cJSON_GetArraySize(w->changes) > 0) {
        cJSON *changes = w->changes;
        w->changes = NULL;
        struct cm_buf cmd = {0}, conflict = {0};
        int rv =
            api__deploy_cmd(w->api, changes, w->dep_id, w->dep_version, w->force,
                            w->rollback, &cmd, &conflict, w->errmsg, sizeof(w->errmsg));
        cJSON_Delete(changes);
        if (rv == CM_ECONFLICT) {
            api__respond_json(w->req, 409, &conflict);
            cm_buf_done(&cmd);
            cm_buf_done(&conflict);
            write_free(w);
            return;
        }
        if (rv == 0) {
            api__write_propose(w, cmd.data, cmd.len);
        } else {
            w->err = rv;
        }
        cm_buf_done(&cmd);
        cm_buf_done(&conflict);
    }
    w->committed = true;
    if (w->in_flight == 0) {
        write_answer(w);
    }
}

void api__write_fail(struct api_write *w, int code, const char *msg)
{
    CM_ASSERT(w->in_flight == 0);
    w->err = code;
    snprintf(w->errmsg, sizeof(w->errmsg), "%s", msg != NULL ? msg : cm_strerror(code));
    api__write_commit(w);
}

int api__app_put_cmd(const struct cm_app *app, const char *version, struct cm_buf *out)
{
    int rv = cm_buf_puts(out, "{\"type\":\"app.put\",\"version\":");
    if (rv == 0) {
        rv = api__json_str(out, version);
    }
    if (rv == 0) {
        rv = cm_buf_puts(out, ",\"app\":");
    }
    if (rv == 0) {
        rv = cm_app_canonical(app, out);
    }
    if (rv == 0) {
        rv = cm_buf_puts(out, "}");
    }
    return rv;
}

/* ------------------------------------------------------------------ the replica */

static int load_app_row(void *data, const struct cm_app_row *row)
{
    struct api_apps *apps = data;
    struct api_app *v = cm_reallocarray(apps->v, apps->n + 1, sizeof(*v));
    if (v == NULL) {
        return CM_ENOMEM;
    }
    apps->v = v;
    struct api_app *a = &apps->v[apps->n];
    memset(a, 0, sizeof(*a));
    a->id = cm_strdup(row->id);
    a->version = cm_strdup(row->version);
    a->spec_json = cm_strdup(row->spec);
    a->instances = row->instances;
    int rv = a->id == NULL || a->version == NULL || a->spec_json == NULL ? CM_ENOMEM : 0;
    if (rv == 0) {
        rv = cm_app_from_canonical(row->spec, strlen(row->spec), &a->spec);
        if (rv != 0 && rv != CM_ENOMEM) {
            /* Stored specs were validated before they were proposed; show the
             * app without its spec rather than hide it. */
            cm_warn("api", "app %s: stored spec unreadable: %s", row->id,
                    cm_strerror(rv));
            rv = 0;
        }
    }
    if (rv != 0) {
        cm_free(&a->id);
        cm_free(&a->version);
        cm_free(&a->spec_json);
        return rv;
    }
    apps->n++;
    return 0;
}

int api__apps_load(struct cm_api *api, const char *id, struct api_apps *out)
{
    memset(out, 0, sizeof(*out));
    int rv = cm_state_apps(api->ops.state(api->ops.data), id, load_app_row, out);
    if (rv != 0) {
        api__apps_done(out);
    }
    return rv;
}

void api__apps_done(struct api_apps *apps)
{
    for (size_t i = 0; i < apps->n; i++) {
        cm_free(&apps->v[i].id);
        cm_free(&apps->v[i].version);
        cm_free(&apps->v[i].spec_json);
        cm_app_free(apps->v[i].spec);
    }
    cm_free(&apps->v);
    apps->n = 0;
}

static void task_done(struct api_task *t)
{
    cm_free(&t->id);
    cm_free(&t->app);
    cm_free(&t->version);
    cm_free(&t->node);
    cm_free(&t->host);
    cm_free(&t->ports);
    cm_free(&t->health);
    cm_free(&t->reason);
    cm_free(&t->checks);
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (s == NULL) {
        return NULL;
    }
    char *d = cm_strdup(s);
    if (d == NULL) {
        *oom = true;
    }
    return d;
}

static int load_task_row(void *data, const struct cm_task_row *row)
{
    struct api_tasks *ts = data;
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? 2 * ts->cap : 16;
        struct api_task *v = cm_reallocarray(ts->v, cap, sizeof(*v));
        if (v == NULL) {
            return CM_ENOMEM;
        }
        ts->v = v;
        ts->cap = cap;
    }
    struct api_task *t = &ts->v[ts->n];
    memset(t, 0, sizeof(*t));
    bool oom = false;
    t->id = dup_or_null(row->id, &oom);
    t->app = dup_or_null(row->app, &oom);
    t->version = dup_or_null(row->version, &oom);
    t->node = dup_or_null(row->node, &oom);
    t->host = dup_or_null(row->host, &oom);
    t->ports = dup_or_null(row->ports, &oom);
    t->health = dup_or_null(row->health, &oom);
    t->reason = dup_or_null(row->reason, &oom);
    t->checks = dup_or_null(row->checks, &oom);
    t->ready = row->ready;
    if (oom || t->id == NULL || t->app == NULL) {
        task_done(t);
        return CM_ENOMEM;
    }
    t->state = row->state;
    t->exit_status = row->exit_status;
    t->staged_at = row->staged_at;
    t->started_at = row->started_at;
    t->updated_at = row->updated_at;
    ts->n++;
    return 0;
}

static int cmp_task(const void *x, const void *y)
{
    const struct api_task *a = x, *b = y;
    int c = strcmp(a->app, b->app);
    return c != 0 ? c : strcmp(a->id, b->id);
}

int api__tasks_load(struct cm_api *api, const char *app, struct api_tasks *out)
{
    memset(out, 0, sizeof(*out));
    int rv = cm_state_tasks(api->ops.state(api->ops.data), app, NULL, load_task_row, out);
    if (rv != 0) {
        api__tasks_done(out);
        return rv;
    }
    if (out->n > 1) {
        qsort(out->v, out->n, sizeof(*out->v), cmp_task);
    }
    return 0;
}

int api__task_load(struct cm_api *api, const char *id, struct api_tasks *out)
{
    memset(out, 0, sizeof(*out));
    int rv = cm_state_task(api->ops.state(api->ops.data), id, load_task_row, out);
    if (rv != 0) {
        api__tasks_done(out);
    }
    return rv;
}

void api__tasks_done(struct api_tasks *tasks)
{
    for (size_t i = 0; i < tasks->n; i++) {
        task_done(&tasks->v[i]);
    }
    cm_free(&tasks->v);
    tasks->n = 0;
    tasks->cap = 0;
}

void api__tasks_of(const struct api_tasks *t, const char *app, size_t *ret_begin,
                   size_t *ret_end)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(t->v[mid].app, app) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    size_t end = lo;
    while (end < t->n && strcmp(t->v[end].app, app) == 0) {
        end++;
    }
    *ret_begin = lo;
    *ret_end = end;
}

bool api__task_listed(const struct api_task *t)
{
    return !cm_task_state_terminal(t->state);
}

void api__counts(const struct api_tasks *t, size_t begin, size_t end, const char *version,
                 struct api_counts *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = begin; i < end; i++) {
        const struct api_task *k = &t->v[i];
        bool current =
            version != NULL && k->version != NULL && strcmp(k->version, version) == 0;
        switch (k->state) {
        case CM_TASK_STAGING:
        case CM_TASK_STARTING:
            c->staged++;
            c->live_current += current;
            break;
        case CM_TASK_RUNNING:
            c->running++;
            c->live_current += current;
            c->running_current += current;
            break;
        default:
            break;
        }
        if (api__task_listed(k) && k->health != NULL) {
            if (strcmp(k->health, "healthy") == 0) {
                c->healthy++;
            } else {
                c->unhealthy++;
            }
        }
    }
}

unsigned api__embed(const struct cm_http_request *r, const char *prefix)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {
        {"tasks", API_EMBED_TASKS},
        {"counts", API_EMBED_COUNTS},
        {"deployments", API_EMBED_DEPLOYMENTS},
        {"lastTaskFailure", API_EMBED_LAST_FAILURE},
    };
    size_t plen = strlen(prefix);
    unsigned embed = 0;
    for (size_t i = 0; i < r->nquery; i++) {
        const struct cm_http_param *p = &r->query_params[i];
        if (strcmp(p->name, "embed") != 0 && strcmp(p->name, "embed[]") != 0) {
            continue;
        }
        if (strncmp(p->value, prefix, plen) != 0) {
            continue;
        }
        for (size_t k = 0; k < CM_ARRAY_SIZE(names); k++) {
            if (strcmp(p->value + plen, names[k].name) == 0) {
                embed |= names[k].bit;
            }
        }
    }
    return embed;
}

const char *api__task_state(enum cm_task_state st)
{
    static const char *const names[] = {
        [CM_TASK_STAGING] = "TASK_STAGING",         [CM_TASK_STARTING] = "TASK_STARTING",
        [CM_TASK_RUNNING] = "TASK_RUNNING",         [CM_TASK_KILLING] = "TASK_KILLING",
        [CM_TASK_KILLED] = "TASK_KILLED",           [CM_TASK_FINISHED] = "TASK_FINISHED",
        [CM_TASK_FAILED] = "TASK_FAILED",           [CM_TASK_LOST] = "TASK_LOST",
        [CM_TASK_UNREACHABLE] = "TASK_UNREACHABLE",
    };
    if ((unsigned)st < CM_ARRAY_SIZE(names) && names[st] != NULL) {
        return names[st];
    }
    return "TASK_UNKNOWN";
}

int api__task_json(const struct api_task *t, const struct cm_app *spec,
                   struct cm_buf *out)
{
    int rv = cm_buf_puts(out, "{\"id\":");
    rv = rv ? rv : api__json_str(out, t->id);
    rv = rv ? rv : cm_buf_puts(out, ",\"appId\":");
    rv = rv ? rv : api__json_str(out, t->app);
    rv = rv ? rv : cm_buf_puts(out, ",\"host\":");
    rv = rv ? rv : api__json_str(out, t->host);
    rv = rv ? rv : cm_buf_puts(out, ",\"slaveId\":");
    rv = rv ? rv : api__json_str(out, t->node);
    rv = rv ? rv : cm_buf_puts(out, ",\"state\":");
    rv = rv ? rv : api__json_str(out, api__task_state(t->state));
    rv = rv ? rv : cm_buf_puts(out, ",\"stagedAt\":");
    rv = rv ? rv : api__json_time(out, t->staged_at);
    rv = rv ? rv : cm_buf_puts(out, ",\"startedAt\":");
    rv = rv ? rv : api__json_time(out, t->started_at);
    rv = rv ? rv : cm_buf_puts(out, ",\"version\":");
    rv = rv ? rv : api__json_str(out, t->version);
    /* The stored ports are a JSON array written by the leader (validated). */
    rv =
        rv ? rv : cm_buf_printf(out, ",\"ports\":%s", t->ports != NULL ? t->ports : "[]");
    rv = rv ? rv : cm_buf_puts(out, ",\"servicePorts\":[");
    for (size_t i = 0; rv == 0 && spec != NULL && i < spec->n_port_defs; i++) {
        rv = cm_buf_printf(out, "%s%d", i ? "," : "", (int)spec->port_defs[i].port);
    }
    for (size_t i = 0; rv == 0 && spec != NULL && i < spec->container.n_port_mappings;
         i++) {
        rv = cm_buf_printf(out, "%s%d", i ? "," : "",
                           (int)spec->container.port_mappings[i].service_port);
    }
    rv = rv ? rv : cm_buf_puts(out, "],\"ipAddresses\":[");
    if (rv == 0 && t->host != NULL && t->host[0] != '\0') {
        rv = cm_buf_puts(out, "{\"ipAddress\":");
        rv = rv ? rv : api__json_str(out, t->host);
        rv = rv ? rv
                : cm_buf_printf(out, ",\"protocol\":\"%s\"}",
                                strchr(t->host, ':') != NULL ? "IPv6" : "IPv4");
    }
    /* Per-check results as of the task's last health transition (DESIGN §7:
     * only transitions go through the log). */
    rv = rv ? rv : cm_buf_puts(out, "],\"healthCheckResults\":[");
    rv = rv ? rv : api__health_results(t, out);
    rv = rv ? rv : cm_buf_puts(out, "]");
    if (rv == 0 && spec != NULL) {
        rv = cm_buf_puts(out, ",\"role\":");
        rv = rv ? rv : api__json_str(out, spec->role);
    }
    rv = rv ? rv : cm_buf_puts(out, "}");
    return rv;
}

/* Marathon's lastTaskFailure: the newest failed task kept in the replica. */
static int last_failure(const struct api_tasks *t, size_t begin, size_t end,
                        struct cm_buf *out, bool *ret_any)
{
    const struct api_task *last = NULL;
    for (size_t i = begin; i < end; i++) {
        const struct api_task *k = &t->v[i];
        if ((k->state == CM_TASK_FAILED || k->state == CM_TASK_LOST) &&
            (last == NULL || k->updated_at > last->updated_at)) {
            last = k;
        }
    }
    *ret_any = last != NULL;
    if (last == NULL) {
        return 0;
    }
    char msg[320];
    /* The executor's reason already says how the task ended. */
    if (last->reason != NULL) {
        snprintf(msg, sizeof(msg), "%s", last->reason);
    } else if (last->exit_status >= 0) {
        snprintf(msg, sizeof(msg), "exited with status %lld",
                 (long long)last->exit_status);
    } else {
        snprintf(msg, sizeof(msg), "%s",
                 last->state == CM_TASK_LOST ? "task lost" : "task failed");
    }
    int rv = cm_buf_puts(out, "{\"appId\":");
    rv = rv ? rv : api__json_str(out, last->app);
    rv = rv ? rv : cm_buf_puts(out, ",\"host\":");
    rv = rv ? rv : api__json_str(out, last->host);
    rv = rv ? rv : cm_buf_puts(out, ",\"message\":");
    rv = rv ? rv : api__json_str(out, msg);
    rv = rv ? rv : cm_buf_puts(out, ",\"state\":");
    rv = rv ? rv : api__json_str(out, api__task_state(last->state));
    rv = rv ? rv : cm_buf_puts(out, ",\"taskId\":");
    rv = rv ? rv : api__json_str(out, last->id);
    rv = rv ? rv : cm_buf_puts(out, ",\"timestamp\":");
    rv = rv ? rv : api__json_time(out, last->updated_at);
    rv = rv ? rv : cm_buf_puts(out, ",\"version\":");
    rv = rv ? rv : api__json_str(out, last->version);
    rv = rv ? rv : cm_buf_puts(out, ",\"slaveId\":");
    rv = rv ? rv : api__json_str(out, last->node);
    rv = rv ? rv : cm_buf_puts(out, "}");
    return rv;
}

int api__app_info(struct cm_api *api, const struct api_app *a, const struct api_tasks *t,
                  size_t begin, size_t end, unsigned embed, struct cm_buf *out)
{
    (void)api;
    size_t start = out->len;
    int rv;
    if (a->spec != NULL) {
        struct cm_app_out_opts o = {.version = a->version};
        rv = cm_app_to_json(a->spec, &o, out);
    } else {
        rv = cm_buf_puts(out, "{\"id\":");
        rv = rv ? rv : api__json_str(out, a->id);
        rv = rv ? rv : cm_buf_puts(out, ",\"version\":");
        rv = rv ? rv : api__json_str(out, a->version);
        rv = rv ? rv : cm_buf_puts(out, "}");
    }
    if (rv != 0) {
        return rv;
    }
    /* Reopen the object to add AppInfo's parts. */
    CM_ASSERT(out->len > start + 2 && out->data[out->len - 1] == '}');
    out->len--;
    out->data[out->len] = '\0';
    if (embed & API_EMBED_COUNTS) {
        struct api_counts c;
        api__counts(t, begin, end, a->version, &c);
        rv = cm_buf_printf(out,
                           ",\"tasksStaged\":%lld,\"tasksRunning\":%lld,"
                           "\"tasksHealthy\":%lld,\"tasksUnhealthy\":%lld",
                           (long long)c.staged, (long long)c.running,
                           (long long)c.healthy, (long long)c.unhealthy);
    }
    if (rv == 0 && (embed & API_EMBED_DEPLOYMENTS)) {
        rv = cm_buf_puts(out, ",\"deployments\":");
        rv = rv ? rv : api__app_deployments(api, a->id, out);
    }
    if (rv == 0 && (embed & API_EMBED_TASKS) && a->spec != NULL &&
        a->spec->n_readiness_checks > 0) {
        rv = cm_buf_puts(out, ",\"readinessCheckResults\":");
        rv = rv ? rv : api__readiness_results(t, begin, end, out);
    }
    if (rv == 0 && (embed & API_EMBED_TASKS)) {
        rv = cm_buf_puts(out, ",\"tasks\":[");
        bool first = true;
        for (size_t i = begin; rv == 0 && i < end; i++) {
            if (!api__task_listed(&t->v[i])) {
                continue;
            }
            rv = first ? 0 : cm_buf_puts(out, ",");
            first = false;
            rv = rv ? rv : api__task_json(&t->v[i], a->spec, out);
        }
        rv = rv ? rv : cm_buf_puts(out, "]");
    }
    if (rv == 0 && (embed & API_EMBED_LAST_FAILURE)) {
        size_t mark = out->len;
        bool any = false;
        rv = cm_buf_puts(out, ",\"lastTaskFailure\":");
        rv = rv ? rv : last_failure(t, begin, end, out, &any);
        if (rv == 0 && !any) {
            out->len = mark;
            out->data[mark] = '\0';
        }
    }
    return rv ? rv : cm_buf_puts(out, "}");
}

/* ------------------------------------------------------------------ life cycle */

int cm_api_start(struct cm_http_server *srv, const struct cm_api_ops *ops,
                 struct cm_api **ret)
{
    cm_state_json_init();
    struct cm_api *api = cm_calloc(1, sizeof(*api));
    if (api == NULL) {
        return CM_ENOMEM;
    }
    api->ops = *ops;
    api->srv = srv;
    int rv = api__routes_misc(api);
    if (rv == 0) {
        rv = api__routes_apps(api);
    }
    if (rv == 0) {
        rv = api__routes_groups(api);
    }
    if (rv == 0) {
        rv = api__routes_events(api);
    }
    if (rv == 0) {
        rv = api__routes_deploy(api);
    }
    if (rv == 0) {
        rv = api__routes_cluster(api);
    }
    if (rv == 0) {
        rv = api__routes_nodes(api);
    }
    if (rv == 0) {
        rv = api__routes_vips(api);
    }
    if (rv != 0) {
        /* Routes cannot be removed from the server: the caller frees it. */
        api__events_close(api);
        api__gates_free(api);
        cm_free(&api);
        return rv;
    }
    *ret = api;
    return 0;
}

void cm_api_free(struct cm_api *api)
{
    if (api == NULL) {
        return;
    }
    /* Writes still in flight complete later into their (by then probably
     * inert) requests; they must not touch the api any more. */
    for (struct api_write *w = api->writes; w != NULL; w = w->next) {
        w->api = NULL;
    }
    api__follows_close(api);
    api__events_close(api);
    api__gates_free(api);
    cm_free(&api);
}
