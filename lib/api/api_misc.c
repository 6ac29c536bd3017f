/* /ping, /v2/info, /v2/leader, /metrics, and the native /v1 task logs (the
 * node routes are in api_nodes.c, /v2/deployments in api_deploy.c). */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

/* ------------------------------------------------------------------ Marathon basics */

/* compat.md §2.2: "pong" as text, or as a JSON string when the client asks
 * for JSON only. */
static void h_ping(struct cm_http_req *req, void *data)
{
    (void)data;
    const char *accept = cm_http_request_header(cm_http_req_request(req), "accept");
    if (accept != NULL && strstr(accept, "application/json") != NULL &&
        strstr(accept, "text/plain") == NULL && strstr(accept, "*/*") == NULL) {
        cm_http_respond(req, 200, "application/json", "\"pong\"", 6);
        return;
    }
    cm_http_respond(req, 200, "text/plain", "pong", 4);
}

static void h_leader(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    char leader[256];
    if (api->ops.leader == NULL ||
        !api->ops.leader(api->ops.data, leader, sizeof(leader))) {
        cm_http_respond_error(req, 404, "There is no leader");
        return;
    }
    struct cm_buf b = {0};
    int rv = cm_buf_puts(&b, "{\"leader\":");
    rv = rv ? rv : api__json_str(&b, leader);
    rv = rv ? rv : cm_buf_puts(&b, "}");
    api__respond_ok_json(req, rv, &b);
}

static const char *str_or(const char *(*fn)(void *), void *data, const char *dflt)
{
    const char *s = fn != NULL ? fn(data) : NULL;
    return s != NULL ? s : dflt;
}

static void h_info(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    char leader[256];
    bool has_leader =
        api->ops.leader != NULL && api->ops.leader(api->ops.data, leader, sizeof(leader));
    const char *self = str_or(api->ops.http_address, api->ops.data, "");
    const char *name = str_or(api->ops.node_name, api->ops.data, "");
    const char *port = strrchr(self, ':');
    long http_port = port != NULL ? strtol(port + 1, NULL, 10) : 0;
    struct cm_buf b = {0};
    int rv = cm_buf_puts(&b, "{\"name\":\"clusterctl\",\"version\":");
    rv = rv ? rv
            : api__json_str(&b, api->ops.version != NULL ? api->ops.version : "unknown");
    rv = rv ? rv : cm_buf_puts(&b, ",\"buildref\":");
    rv = rv ? rv
            : api__json_str(&b, api->ops.version != NULL ? api->ops.version : "unknown");
    rv = rv ? rv
            : cm_buf_printf(&b, ",\"elected\":%s,\"leader\":",
                            has_leader && strcmp(leader, self) == 0 ? "true" : "false");
    rv = rv ? rv : api__json_str(&b, has_leader ? leader : NULL);
    /* Marathon's frameworkId names its Mesos framework registration; the
     * closest thing here is the cluster's identity. */
    rv = rv ? rv : cm_buf_puts(&b, ",\"frameworkId\":");
    rv = rv ? rv : api__json_str(&b, str_or(api->ops.cluster_id, api->ops.data, NULL));
    rv = rv ? rv : cm_buf_puts(&b, ",\"marathon_config\":{\"master\":null,\"hostname\":");
    rv = rv ? rv : api__json_str(&b, name);
    rv = rv ? rv
            : cm_buf_puts(&b,
                          ",\"framework_name\":\"clusterctl\",\"mesos_role\":\"*\","
                          "\"local_port_min\":10000,\"local_port_max\":20000,"
                          "\"features\":[]},\"zookeeper_config\":{},");
    rv =
        rv ? rv
           : cm_buf_printf(&b, "\"http_config\":{\"http_port\":%ld,\"https_port\":null}}",
                           http_port);
    api__respond_ok_json(req, rv, &b);
}

/* ------------------------------------------------------------------ /metrics */

static int count_node(void *data, const struct cm_node_row *row)
{
    int64_t *c = data;
    static const char *const states[] = {"up", "unreachable", "down", "draining"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(states); i++) {
        if (strcmp(row->state, states[i]) == 0) {
            c[i]++;
        }
    }
    return 0;
}

static void h_metrics(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    struct cm_state *st = api->ops.state(api->ops.data);
    struct api_apps apps;
    struct api_tasks tasks;
    int rv = api__apps_load(api, NULL, &apps);
    if (rv != 0) {
        api__respond_internal(req, rv);
        return;
    }
    rv = api__tasks_load(api, NULL, &tasks);
    if (rv != 0) {
        api__apps_done(&apps);
        api__respond_internal(req, rv);
        return;
    }
    int64_t nodes[4] = {0};
    rv = cm_state_nodes(st, count_node, nodes);
    int64_t wanted = 0;
    for (size_t i = 0; i < apps.n; i++) {
        wanted += apps.v[i].instances;
    }
    int64_t by_state[CM__TASK_STATE_COUNT] = {0};
    int64_t healthy = 0, unhealthy = 0;
    for (size_t i = 0; i < tasks.n; i++) {
        if ((unsigned)tasks.v[i].state < CM__TASK_STATE_COUNT) {
            by_state[tasks.v[i].state]++;
        }
        if (tasks.v[i].health != NULL && api__task_listed(&tasks.v[i])) {
            healthy += strcmp(tasks.v[i].health, "healthy") == 0;
            unhealthy += strcmp(tasks.v[i].health, "unhealthy") == 0;
        }
    }
    struct cm_buf b = {0};
    rv =
        rv ? rv
           : cm_buf_printf(&b,
                           "# HELP clusterctl_apps Apps defined.\n"
                           "# TYPE clusterctl_apps gauge\n"
                           "clusterctl_apps %zu\n"
                           "# HELP clusterctl_app_instances Instances the apps ask for.\n"
                           "# TYPE clusterctl_app_instances gauge\n"
                           "clusterctl_app_instances %lld\n"
                           "# HELP clusterctl_tasks Tasks in the replica by state.\n"
                           "# TYPE clusterctl_tasks gauge\n",
                           apps.n, (long long)wanted);
    for (int s = 0; rv == 0 && s < CM__TASK_STATE_COUNT; s++) {
        rv = cm_buf_printf(&b, "clusterctl_tasks{state=\"%s\"} %lld\n",
                           cm_task_state_name((enum cm_task_state)s),
                           (long long)by_state[s]);
    }
    rv = rv ? rv
            : cm_buf_printf(
                  &b,
                  "# HELP clusterctl_tasks_health Live tasks by health verdict.\n"
                  "# TYPE clusterctl_tasks_health gauge\n"
                  "clusterctl_tasks_health{health=\"healthy\"} %lld\n"
                  "clusterctl_tasks_health{health=\"unhealthy\"} %lld\n"
                  "# HELP clusterctl_nodes Nodes by state.\n"
                  "# TYPE clusterctl_nodes gauge\n"
                  "clusterctl_nodes{state=\"up\"} %lld\n"
                  "clusterctl_nodes{state=\"unreachable\"} %lld\n"
                  "clusterctl_nodes{state=\"down\"} %lld\n"
                  "clusterctl_nodes{state=\"draining\"} %lld\n",
                  (long long)healthy, (long long)unhealthy, (long long)nodes[0],
                  (long long)nodes[1], (long long)nodes[2], (long long)nodes[3]);
    rv = rv ? rv : api__events_metrics(api, &b);
    if (rv == 0 && api->ops.metrics != NULL) {
        api->ops.metrics(api->ops.data, &b);
    }
    if (rv == 0) {
        cm_http_respond(req, 200, "text/plain; version=0.0.4", b.data ? b.data : "",
                        b.len);
    } else {
        api__respond_internal(req, rv);
    }
    cm_buf_done(&b);
    api__apps_done(&apps);
    api__tasks_done(&tasks);
}

/* ------------------------------------------------------------------ task logs */

struct api_follow {
    struct cm_api *api;
    struct api_follow *prev;
    struct api_follow *next;
    struct cm_http_req *req;
    ev_timer timer;
    char *task;
    const char *stream; /* static */
    int64_t offset;
    bool gone; /* the client left */
};

static void follow_unlink(struct api_follow *f)
{
    struct cm_api *api = f->api;
    if (f->prev != NULL) {
        f->prev->next = f->next;
    } else {
        api->follows = f->next;
    }
    if (f->next != NULL) {
        f->next->prev = f->prev;
    }
    api->n_follows--;
}

/* Stop following; ending the stream also ends the handle of a client that
 * left or whose connection a failed write closed. */
static void follow_end(struct api_follow *f)
{
    ev_timer_stop(f->api->ops.loop, &f->timer);
    follow_unlink(f);
    cm_http_stream_end(f->req);
    cm_free(&f->task);
    cm_free(&f);
}

static void follow_closed(struct cm_http_req *req, void *data)
{
    (void)req;
    struct api_follow *f = data;
    f->gone = true; /* finished from the timer, outside the server's close path */
}

static int task_state(struct cm_api *api, const char *id, enum cm_task_state *ret,
                      char *node, size_t cap)
{
    struct api_tasks t;
    int rv = api__task_load(api, id, &t);
    if (rv != 0) {
        return rv;
    }
    *ret = t.v[0].state;
    if (node != NULL) {
        snprintf(node, cap, "%s", t.v[0].node != NULL ? t.v[0].node : "");
    }
    api__tasks_done(&t);
    return 0;
}

/* One poll: forward what the log gained; end once the task is over and its
 * log drained, or when the sandbox is gone. */
static void follow_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct api_follow *f = cm_container_of(w, struct api_follow, timer);
    struct cm_api *api = f->api;
    if (f->gone || cm_http_req_closed(f->req)) {
        follow_end(f);
        return;
    }
    enum cm_task_state st = CM_TASK_RUNNING;
    bool known = task_state(api, f->task, &st, NULL, 0) == 0;
    struct cm_buf out = {0};
    int64_t next = f->offset;
    int rv = api->ops.task_log(api->ops.data, f->task, f->stream, f->offset, API_LOG_MAX,
                               &out, &next);
    if (rv == 0 && out.len > 0) {
        f->offset = next;
        rv = cm_http_stream_write(f->req, out.data, out.len);
        if (rv != 0) {
            cm_buf_done(&out);
            follow_end(f);
            return;
        }
    }
    bool drained = rv == 0 && out.len == 0;
    cm_buf_done(&out);
    if (rv != 0 || !known || (cm_task_state_terminal(st) && drained)) {
        follow_end(f);
    }
}

void api__follows_close(struct cm_api *api)
{
    while (api->follows != NULL) {
        follow_end(api->follows);
    }
}

static void h_task_logs(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    const struct cm_http_request *r = cm_http_req_request(req);
    const char *id = cm_http_req_param(req, "id");
    const char *stream = cm_http_request_query(r, "stream");
    const char *off = cm_http_request_query(r, "offset");
    bool follow = api__query_bool(r, "follow", false);
    if (stream == NULL || strcmp(stream, "stdout") == 0) {
        stream = "stdout";
    } else if (strcmp(stream, "stderr") == 0) {
        stream = "stderr";
    } else {
        cm_http_respond_error(req, 400, "stream: must be stdout or stderr, not '%s'",
                              stream);
        return;
    }
    int64_t offset = 0;
    if (off != NULL && cm_parse_i64(off, INT64_MIN / 2, INT64_MAX / 2, &offset) != 0) {
        cm_http_respond_error(req, 400,
                              "offset: must be an integer (bytes from the start, or "
                              "negative: from the end), not '%s'",
                              off);
        return;
    }
    enum cm_task_state st;
    char node[256];
    int rv = task_state(api, id, &st, node, sizeof(node));
    if (rv == CM_ENOTFOUND) {
        cm_http_respond_error(req, 404, "Task '%s' does not exist", id);
        return;
    }
    if (rv != 0) {
        api__respond_internal(req, rv);
        return;
    }
    const char *self = str_or(api->ops.node_name, api->ops.data, "");
    if (strcmp(node, self) != 0) {
        cm_http_respond_error(
            req, 404,
            "the sandbox of task '%s' is on node '%s', not on this node "
            "('%s'): ask the API of node '%s'",
            id, node, self, node);
        return;
    }
    if (api->ops.task_log == NULL) {
        cm_http_respond_error(req, 501, "task logs are not available on this node");
        return;
    }
    struct cm_buf out = {0};
    int64_t next = offset;
    rv = api->ops.task_log(api->ops.data, id, stream, offset, API_LOG_MAX, &out, &next);
    if (rv == CM_ENOTFOUND) {
        cm_buf_done(&out);
        cm_http_respond_error(req, 404, "task '%s' has no sandbox on this node (yet)",
                              id);
        return;
    }
    if (rv != 0) {
        cm_buf_done(&out);
        api__respond_internal(req, rv);
        return;
    }
    char nbuf[32];
    snprintf(nbuf, sizeof(nbuf), "%lld", (long long)next);
    if (cm_http_req_add_header(req, "X-Log-Next-Offset", nbuf) == CM_ECLOSED) {
        cm_http_respond(req, 200, NULL, NULL, 0); /* frees the inert handle */
        cm_buf_done(&out);
        return;
    }
    if (!follow) {
        cm_http_respond(req, 200, "text/plain; charset=utf-8", out.data ? out.data : "",
                        out.len);
        cm_buf_done(&out);
        return;
    }
    if (api->ops.loop == NULL || api->n_follows >= API_MAX_FOLLOWS) {
        cm_buf_done(&out);
        cm_http_respond_error(req, 503, "%s",
                              api->ops.loop == NULL
                                  ? "following logs is not available on this node"
                                  : "too many log followers on this node; retry later");
        return;
    }
    struct api_follow *f = cm_calloc(1, sizeof(*f));
    char *task = cm_strdup(id);
    if (f == NULL || task == NULL) {
        cm_free(&f);
        cm_free(&task);
        cm_buf_done(&out);
        api__respond_internal(req, CM_ENOMEM);
        return;
    }
    f->api = api;
    f->req = req;
    f->task = task;
    f->stream = stream;
    f->offset = next;
    rv = cm_http_stream_begin(req, 200, "text/plain; charset=utf-8");
    if (rv != 0) {
        /* A failed begin has ended the handle. */
        cm_buf_done(&out);
        cm_free(&f->task);
        cm_free(&f);
        return;
    }
    rv = out.len > 0 ? cm_http_stream_write(req, out.data, out.len) : 0;
    cm_buf_done(&out);
    if (rv != 0) {
        /* The connection is closed; ending the stream ends the handle. */
        cm_http_stream_end(req);
        cm_free(&f->task);
        cm_free(&f);
        return;
    }
    cm_http_req_set_close_cb(req, follow_closed, f);
    f->next = api->follows;
    if (f->next != NULL) {
        f->next->prev = f;
    }
    api->follows = f;
    api->n_follows++;
    double every = API_LOG_POLL_MS / 1000.0;
    ev_timer_init(&f->timer, follow_poll, every, every);
    ev_timer_start(api->ops.loop, &f->timer);
}

/* ------------------------------------------------------------------ routes */

int api__routes_misc(struct cm_api *api)
{
    static const struct {
        const char *method;
        const char *pattern;
        cm_http_handler_fn fn;
    } routes[] = {
        {"GET", "/ping", h_ping},
        {"GET", "/v2/info", h_info},
        {"GET", "/v2/leader", h_leader},
        /* /v2/deployments: api_deploy.c */
        {"GET", "/metrics", h_metrics},
        {"GET", "/v1/tasks/{id}/logs", h_task_logs},
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
