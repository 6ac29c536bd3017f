/* The native node routes (issue 8 item 7):
 *
 *   GET  /v1/nodes              every node: address, state, attributes, resources
 *                               total and used, live task count, and the age of
 *                               its last heartbeat where this node knows it (the
 *                               leader hears them)
 *   POST /v1/nodes/{id}/drain   up -> draining: nothing new is placed there and
 *                               its tasks are replaced elsewhere, then stopped
 *   POST /v1/nodes/{id}/undrain draining -> up
 *
 * Drain and undrain answer 200 with {"id", "state"} once the change is applied
 * here (at once when the node is already in that state), 404 for an unknown
 * node, 409 when the node is unreachable or down (its state belongs to the
 * failure detector then).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

/* Resources held on one node: tasks that are not terminal (live, killing,
 * unreachable) hold their app's resources, as the scheduler counts them. */
struct node_use {
    double cpus, mem, disk;
    int64_t tasks; /* not terminal */
};

static const struct api_app *app_of(const struct api_apps *apps, const char *id)
{
    size_t lo = 0, hi = apps->n; /* cm_state_apps: id order */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(apps->v[mid].id, id);
        if (c == 0) {
            return &apps->v[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

struct nodes_out {
    struct cm_api *api;
    struct cm_buf *b;
    struct api_apps apps;
    struct api_tasks tasks;
    int64_t now;
};

static void node_use(const struct nodes_out *o, const char *node, struct node_use *u)
{
    memset(u, 0, sizeof(*u));
    for (size_t i = 0; i < o->tasks.n; i++) {
        const struct api_task *t = &o->tasks.v[i];
        if (strcmp(t->node, node) != 0 || cm_task_state_terminal(t->state)) {
            continue;
        }
        u->tasks++;
        const struct api_app *a = app_of(&o->apps, t->app);
        if (a != NULL && a->spec != NULL) {
            u->cpus += a->spec->cpus;
            u->mem += a->spec->mem;
            u->disk += a->spec->disk;
        }
    }
}

static int node_json(void *data, const struct cm_node_row *row)
{
    struct nodes_out *o = data;
    struct cm_buf *b = o->b;
    struct node_use u;
    node_use(o, row->id, &u);
    int rv = b->data[b->len - 1] == '[' ? 0 : cm_buf_puts(b, ",");
    rv = rv ? rv : cm_buf_puts(b, "{\"id\":");
    rv = rv ? rv : api__json_str(b, row->id);
    rv = rv ? rv : cm_buf_puts(b, ",\"address\":");
    rv = rv ? rv : api__json_str(b, row->address);
    rv = rv ? rv : cm_buf_puts(b, ",\"state\":");
    rv = rv ? rv : api__json_str(b, row->state);
    /* attrs and resources are JSON written by apply from validated commands. */
    rv = rv ? rv
            : cm_buf_printf(b,
                            ",\"attributes\":%s,\"resources\":%s,\"used\":{\"cpus\":%g,"
                            "\"mem\":%g,\"disk\":%g},\"tasks\":%lld,\"updatedAt\":",
                            row->attrs != NULL ? row->attrs : "{}",
                            row->resources != NULL ? row->resources : "{}", u.cpus, u.mem,
                            u.disk, (long long)u.tasks);
    rv = rv ? rv : api__json_time(b, row->updated_at);
    int64_t heard = o->api->ops.node_heard_ms != NULL
                        ? o->api->ops.node_heard_ms(o->api->ops.data, row->id)
                        : -1;
    if (rv == 0 && heard >= 0) {
        rv = cm_buf_printf(b, ",\"lastHeartbeatAgeMs\":%lld",
                           (long long)CM_MAX(o->now - heard, 0));
    }
    return rv ? rv : cm_buf_puts(b, "}");
}

static void h_nodes(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    struct cm_buf b = {0};
    struct nodes_out o = {.api = api, .b = &b, .now = api->ops.now_ms(api->ops.data)};
    int rv = api__apps_load(api, NULL, &o.apps);
    rv = rv ? rv : api__tasks_load(api, NULL, &o.tasks);
    rv = rv ? rv : cm_buf_puts(&b, "{\"nodes\":[");
    rv = rv ? rv : cm_state_nodes(api->ops.state(api->ops.data), node_json, &o);
    rv = rv ? rv : cm_buf_puts(&b, "]}");
    api__respond_ok_json(req, rv, &b);
    api__apps_done(&o.apps);
    api__tasks_done(&o.tasks);
}

/* ------------------------------------------------------------------ drain */

struct find_node {
    const char *id;
    char state[32];
    bool found;
};

static int find_node(void *data, const struct cm_node_row *row)
{
    struct find_node *f = data;
    if (strcmp(row->id, f->id) == 0) {
        snprintf(f->state, sizeof(f->state), "%s", row->state);
        f->found = true;
    }
    return 0;
}

/* Move node {id} from @from to @to. */
static void set_state(struct cm_http_req *req, struct cm_api *api, const char *from,
                      const char *to)
{
    const char *id = cm_http_req_param(req, "id");
    struct find_node f = {.id = id != NULL ? id : ""};
    int rv = cm_state_nodes(api->ops.state(api->ops.data), find_node, &f);
    if (rv != 0) {
        api__respond_internal(req, rv);
        return;
    }
    char msg[300];
    if (!f.found) {
        snprintf(msg, sizeof(msg), "node '%.200s' does not exist", f.id);
        api__respond_err(req, CM_ENOTFOUND, msg);
        return;
    }
    if (strcmp(f.state, to) != 0 && strcmp(f.state, from) != 0) {
        snprintf(msg, sizeof(msg), "node '%.200s' is %s, not %s", f.id, f.state, from);
        api__respond_err(req, CM_ECONFLICT, msg);
        return;
    }
    struct api_write *w = api__write_new(api, req, 200);
    if (w == NULL) {
        return;
    }
    struct cm_buf *b = api__write_body(w);
    rv = cm_buf_puts(b, "{\"id\":");
    rv = rv ? rv : api__json_str(b, f.id);
    rv = rv ? rv : cm_buf_printf(b, ",\"state\":\"%s\"}", to);
    if (rv != 0) {
        api__write_fail(w, rv, NULL);
        return;
    }
    if (strcmp(f.state, to) != 0) {
        struct cm_buf cmd = {0};
        rv = cm_buf_printf(&cmd, "{\"type\":\"node.state\",\"at\":%lld,\"id\":",
                           (long long)api->ops.now_ms(api->ops.data));
        rv = rv ? rv : api__json_str(&cmd, f.id);
        rv = rv ? rv : cm_buf_printf(&cmd, ",\"state\":\"%s\"}", to);
        if (rv != 0) {
            cm_buf_done(&cmd);
            api__write_fail(w, rv, NULL);
            return;
        }
        api__write_propose(w, cmd.data, cmd.len);
        cm_buf_done(&cmd);
    }
    api__write_commit(w);
}

static void h_drain(struct cm_http_req *req, void *data)
{
    set_state(req, data, "up", "draining");
}

static void h_undrain(struct cm_http_req *req, void *data)
{
    set_state(req, data, "draining", "up");
}

int api__routes_nodes(struct cm_api *api)
{
    static const struct {
        const char *method;
        const char *pattern;
        cm_http_handler_fn fn;
    } routes[] = {
        {"GET", "/v1/nodes", h_nodes},
        {"POST", "/v1/nodes/{id}/drain", h_drain},
        {"POST", "/v1/nodes/{id}/undrain", h_undrain},
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
