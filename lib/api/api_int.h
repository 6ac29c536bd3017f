/* lib/api internals shared by its .c files. Not an API. */
#ifndef CM_API_INT_H
#define CM_API_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "api/api.h"
#include "net/http.h"
#include "state/db.h"
#include "state/state.h"

/* Body limits per route (STYLE rule 13): app and group bodies share the app
 * model's limit; routes that take no body accept a small one ("{}" from some
 * clients) and refuse anything bigger with 413. */
#define API_BODY_LIMIT_APP  CM_APP_MAX_BODY
#define API_BODY_LIMIT_NONE 4096
/* Largest log slice one GET returns, and one follow poll forwards. */
#define API_LOG_MAX (1u << 20)
/* Follow polls the task's log this often (ms). */
#define API_LOG_POLL_MS 200
/* Live log followers at once (each holds a connection and a timer). */
#define API_MAX_FOLLOWS 256

struct api_write;
struct api_follow;
struct api_gate;
struct api_read;

struct cm_api {
    struct cm_api_ops ops;
    struct cm_http_server *srv;
    struct api_write *writes;   /* in flight, to detach them in cm_api_free */
    struct api_follow *follows; /* log followers */
    unsigned n_follows;
    int64_t last_version_ms;   /* versions are strictly increasing from this node */
    struct api_gate *gates;    /* GET routes behind the consistent-read gate */
    struct api_read *reads;    /* consistent reads waiting for their barrier */
    struct api_events *events; /* /v2/events (api_events.c) */
};

/* ---- JSON output */

/* Append @s as a JSON string (NULL: null). Errors: CM_ENOMEM. */
int api__json_str(struct cm_buf *b, const char *s);
/* Append an ISO-8601 timestamp string for @ms (<= 0: null). */
int api__json_time(struct cm_buf *b, int64_t ms);

/* ---- answers */

int api__respond_json(struct cm_http_req *req, int status, const struct cm_buf *body);
/* The end of a read handler: 200 with @body when @rv is 0, else 500 naming @rv;
 * @body is released either way. */
void api__respond_ok_json(struct cm_http_req *req, int rv, struct cm_buf *body);
/* Answer a failed write or read with the status that fits @code, @msg (may be
 * NULL) as Marathon's {"message"}. */
void api__respond_err(struct cm_http_req *req, int code, const char *msg);
/* Answer 500 for OOM and other internal failures. */
void api__respond_internal(struct cm_http_req *req, int code);

/* The normalised absolute app id from a route parameter into @out; false when
 * it is not a valid path (such an app cannot exist). */
bool api__app_id(const char *param, char *out, size_t cap);

/* A new version stamp, strictly after @after (may be NULL) and after every
 * stamp this node gave before. */
void api__new_version(struct cm_api *api, const char *after, char out[32]);
/* Parse an ISO-8601 stamp as written by cm_time_iso8601; -1 when invalid. */
int64_t api__parse_time(const char *s);

/* True when query parameter @name is "true" or "1" (or present without value). */
bool api__query_bool(const struct cm_http_request *r, const char *name, bool dflt);

/* ---- writes: one or more proposals, answered once all are applied */

/* A write for @req. On success the answer is @status with the body built in
 * *ret's body (filled by the caller) and, when deployment_id is set, the
 * Marathon-Deployment-Id header. Errors: CM_ENOMEM (then @req is answered). */
struct api_write *api__write_new(struct cm_api *api, struct cm_http_req *req, int status);
struct cm_buf *api__write_body(struct api_write *w);
/* Add a response header to the successful answer (copied). */
int api__write_header(struct api_write *w, const char *name, const char *value);
/* Propose one command (copied). A synchronous refusal is remembered and
 * answered when the write is committed. */
void api__write_propose(struct api_write *w, const char *cmd, size_t len);
/* No more proposals: answer when the last one is applied (now, when none is in
 * flight). @w must not be used afterwards. */
void api__write_commit(struct api_write *w);
/* Give up before committing (nothing proposed): answer @code/@msg. */
void api__write_fail(struct api_write *w, int code, const char *msg);
/* Make the write deployment @id at @version (docs/deployments.md): the commands
 * proposed next are collected and, at commit, proposed as one deploy.start
 * whose plan api__deploy_cmd builds; a conflict with a running deployment
 * answers 409 unless ?force=true (@dflt_force when the query does not say).
 * Call before the first proposal. */
void api__write_deploy(struct api_write *w, const char *id, const char *version,
                       bool dflt_force);
/* The deployment is a rollback (no canary phase, never rolled back itself). */
void api__write_rollback(struct api_write *w);

/* ---- deployments (api_deploy.c) */

/* The deploy.start command for @changes (app.put / app.delete / task.kill
 * commands, borrowed) into @out. Errors: CM_ECONFLICT (@conflict holds the 409
 * body: the deployments in the way), CM_EVALIDATION (a dependency cycle; @msg
 * names it), CM_ENOMEM, storage errors. */
int api__deploy_cmd(struct cm_api *api, const cJSON *changes, const char *id,
                    const char *version, bool force, bool rollback, struct cm_buf *out,
                    struct cm_buf *conflict, char *msg, size_t msg_cap);
int api__routes_deploy(struct cm_api *api);
/* Append the running deployments of @app as Marathon's AppInfo.deployments:
 * [{"id": ...}]. Errors: CM_ENOMEM, storage errors. */
int api__app_deployments(struct cm_api *api, const char *app, struct cm_buf *out);

/* ---- the replica */

struct api_app {
    char *id;
    char *version;
    int64_t instances;
    char *spec_json;     /* canonical */
    struct cm_app *spec; /* NULL when the stored spec is unreadable */
};

struct api_apps {
    struct api_app *v;
    size_t n;
};

/* Apps of the replica; @id non-NULL: only that one (CM_ENOTFOUND when absent).
 * Errors: CM_ENOMEM, storage errors. */
int api__apps_load(struct cm_api *api, const char *id, struct api_apps *out);
void api__apps_done(struct api_apps *apps);

struct api_task {
    char *id;
    char *app;
    char *version;
    char *node;
    char *host;
    char *ports; /* JSON array */
    char *health;
    char *reason;
    char *checks; /* JSON: per-check results (state/db.h), NULL when none */
    bool ready;
    enum cm_task_state state;
    int64_t exit_status;
    int64_t staged_at;
    int64_t started_at;
    int64_t updated_at;
};

struct api_tasks {
    struct api_task *v;
    size_t n;
    size_t cap;
};

/* api_health.c: the elements of a task's healthCheckResults array (without the
 * brackets), and an app's readinessCheckResults array for its tasks in
 * [begin, end). Errors: CM_ENOMEM. */
int api__health_results(const struct api_task *t, struct cm_buf *out);
int api__readiness_results(const struct api_tasks *t, size_t begin, size_t end,
                           struct cm_buf *out);

/* Tasks of @app (NULL: all), sorted by app then id. */
int api__tasks_load(struct cm_api *api, const char *app, struct api_tasks *out);
/* One task; CM_ENOTFOUND when absent. */
int api__task_load(struct cm_api *api, const char *id, struct api_tasks *out);
void api__tasks_done(struct api_tasks *tasks);
/* The index range [*ret_begin, *ret_end) of @app's tasks in a sorted list. */
void api__tasks_of(const struct api_tasks *t, const char *app, size_t *ret_begin,
                   size_t *ret_end);
/* Marathon lists only tasks that are not terminal. */
bool api__task_listed(const struct api_task *t);

struct api_counts {
    int64_t staged;
    int64_t running;
    int64_t healthy;
    int64_t unhealthy;
    int64_t running_current; /* running tasks of the app's current version */
    int64_t live_current;    /* staging, starting, running of the current version */
};

void api__counts(const struct api_tasks *t, size_t begin, size_t end, const char *version,
                 struct api_counts *c);

/* What GET /v2/apps embeds (compat.md §2.2). */
enum api_embed {
    API_EMBED_TASKS = 1u << 0,
    API_EMBED_COUNTS = 1u << 1,
    API_EMBED_DEPLOYMENTS = 1u << 2,
    API_EMBED_LAST_FAILURE = 1u << 3,
};

/* Parse the `embed` query parameters with prefix @prefix ("apps.", "app.",
 * "group.apps."). */
unsigned api__embed(const struct cm_http_request *r, const char *prefix);

/* Append @a as Marathon's AppInfo: the app, version, versionInfo and the embedded
 * parts taken from @t[begin, end). */
int api__app_info(struct cm_api *api, const struct api_app *a, const struct api_tasks *t,
                  size_t begin, size_t end, unsigned embed, struct cm_buf *out);
/* Append one task in Marathon's shape. @spec (may be NULL) gives servicePorts. */
int api__task_json(const struct api_task *t, const struct cm_app *spec,
                   struct cm_buf *out);
/* Marathon's task state name: "TASK_RUNNING", ... */
const char *api__task_state(enum cm_task_state st);

/* ---- route registration, one function per file */

/* Register a route like cm_http_server_route with @api as data; GET routes
 * honour ?consistent=true (a read barrier first, api_cluster.c). */
int api__route(struct cm_api *api, const char *method, const char *pattern, size_t limit,
               cm_http_handler_fn fn);
int api__routes_cluster(struct cm_api *api);
/* Free the gates and detach waiting reads (cm_api_free). */
void api__gates_free(struct cm_api *api);

int api__routes_apps(struct cm_api *api);
int api__routes_groups(struct cm_api *api);
int api__routes_misc(struct cm_api *api);
int api__routes_nodes(struct cm_api *api);
int api__routes_vips(struct cm_api *api);
/* Stop and free every log follower (cm_api_free). */
void api__follows_close(struct cm_api *api);
/* /v2/events (api_events.c): the route and its state; close ends every
 * subscriber's stream; metrics appends the Prometheus lines. */
int api__routes_events(struct cm_api *api);
void api__events_close(struct cm_api *api);
int api__events_metrics(const struct cm_api *api, struct cm_buf *out);

/* ---- shared by apps and groups: store a parsed app */

/* The app.put command for @app at @version into @out; it starts with
 * {"type":"app.put", which api__write_propose looks for to stamp the time into
 * a bare one. Errors: CM_ENOMEM. */
int api__app_put_cmd(const struct cm_app *app, const char *version, struct cm_buf *out);

#endif /* CM_API_INT_H */
