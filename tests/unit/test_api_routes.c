/* lib/api over a real HTTP server on 127.0.0.1 (port 0) and a real state.db.
 *
 * The fake ops close the loop without raft: propose validates the command like
 * the daemon, then applies it to the same state.db from the loop (never inside
 * the call) and reports it done. The server, its loop and the state live on a
 * thread of their own; the test thread talks to it with the blocking client
 * the CLI uses, and seeds tasks and nodes by handing commands to that thread
 * (one struct cm_state per thread). */
#include <cjson/cJSON.h>
#include <ev.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "base/base.h"
#include "net/http.h"
#include "state/db.h"
#include "state/state.h"
#include "test.h"

#define EXAMPLES "/work/shared/examples/marathon"
#define NOW0     1767225600000LL /* 2026-01-01T00:00:00.000Z */

struct pend {
    char *cmd;
    size_t len;
    cm_api_done_fn done;
    void *arg;
    struct pend *next;
};

struct fx {
    char dir[64];
    struct ev_loop *loop;
    struct cm_http_server *srv;
    struct cm_state *st;
    struct cm_api *api;
    pthread_t th;
    ev_async wake;
    ev_timer apply_w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* guarded by mu: work for the loop thread */
    bool stop;
    const char *seed_cmd; /* a command to apply now */
    int seed_rv;
    bool seed_done;
    bool free_api; /* cm_api_free now (the server stays) */
    /* loop thread only */
    struct pend *q;
    struct pend **q_tail;
    bool hold; /* keep proposals pending until released */
    bool release;
    int refuse; /* propose fails synchronously with this */
    /* Deployments stay running (else the fake, which has no controller,
     * finishes each at once so that the next change is not refused). */
    bool keep_deploys;
    int64_t now;
    bool has_leader;
    char addr[32];
    int proposals;
    /* the fake task log */
    char log_text[256];
};

/* ------------------------------------------------------------------ fake ops */

static struct cm_state *op_state(void *data)
{
    return ((struct fx *)data)->st;
}

static void apply_queue(struct fx *f)
{
    while (f->q != NULL) {
        struct pend *p = f->q;
        f->q = p->next;
        if (f->q == NULL) {
            f->q_tail = &f->q;
        }
        uint64_t idx = cm_state_applied_index(f->st) + 1;
        struct cm_errbuf eb;
        int rv = cm_state_apply(f->st, idx, p->cmd, p->len, &eb);
        cJSON *c = cJSON_ParseWithLength(p->cmd, p->len);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(c, "type");
        if (rv == 0 && !f->keep_deploys && cJSON_IsString(type) &&
            strcmp(type->valuestring, "deploy.start") == 0) {
            char done[160];
            snprintf(done, sizeof(done),
                     "{\"type\":\"deploy.done\",\"at\":%lld,\"id\":\"%s\"}",
                     (long long)f->now,
                     cJSON_GetObjectItemCaseSensitive(c, "id")->valuestring);
            rv = cm_state_apply(f->st, idx + 1, done, strlen(done), &eb);
            idx++;
        }
        cJSON_Delete(c);
        p->done(p->arg, rv, idx, rv != 0 ? eb.msg : NULL);
        cm_free(&p->cmd);
        cm_free(&p);
    }
}

static void apply_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct fx *f = cm_container_of(w, struct fx, apply_w);
    if (!f->hold) {
        apply_queue(f);
    }
}

static int op_propose(void *data, const char *cmd, size_t len, cm_api_done_fn done,
                      void *arg, struct cm_errbuf *eb)
{
    struct fx *f = data;
    if (f->refuse != 0) {
        return cm_err_setf(eb, f->refuse, "refused by the test");
    }
    int rv = cm_state_validate(f->st, cmd, len, eb);
    if (rv != 0) {
        return rv;
    }
    struct pend *p = cm_calloc(1, sizeof(*p));
    if (p == NULL) {
        return CM_ENOMEM;
    }
    p->cmd = cm_memdup(cmd, len);
    p->len = len;
    p->done = done;
    p->arg = arg;
    *f->q_tail = p;
    f->q_tail = &p->next;
    f->proposals++;
    ev_timer_stop(f->loop, &f->apply_w);
    ev_timer_set(&f->apply_w, 0.0, 0.0);
    ev_timer_start(f->loop, &f->apply_w);
    return 0;
}

static int64_t op_now(void *data)
{
    struct fx *f = data;
    return f->now;
}

static bool op_leader(void *data, char *buf, size_t cap)
{
    struct fx *f = data;
    if (!f->has_leader) {
        return false;
    }
    snprintf(buf, cap, "%s", f->addr);
    return true;
}

static const char *op_node(void *data)
{
    (void)data;
    return "node-a";
}

static const char *op_http(void *data)
{
    return ((struct fx *)data)->addr;
}

static int op_task_log(void *data, const char *task, const char *stream, int64_t offset,
                       size_t max, struct cm_buf *out, int64_t *ret_next)
{
    struct fx *f = data;
    if (strcmp(task, "nolog") == 0) {
        return CM_ENOTFOUND;
    }
    char text[300];
    snprintf(text, sizeof(text), "%s:%s", stream, f->log_text);
    int64_t len = (int64_t)strlen(text);
    if (offset < 0) {
        offset = len + offset < 0 ? 0 : len + offset;
    }
    if (offset > len) {
        offset = len;
    }
    size_t n = CM_MIN((size_t)(len - offset), max);
    int rv = cm_buf_append(out, text + offset, n);
    *ret_next = offset + (int64_t)n;
    return rv;
}

static void op_metrics(void *data, struct cm_buf *out)
{
    (void)data;
    cm_buf_puts(out, "clusterctl_test_metric 42\n");
}

/* ------------------------------------------------------------------ the loop thread */

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    struct fx *f = cm_container_of(w, struct fx, wake);
    pthread_mutex_lock(&f->mu);
    if (f->seed_cmd != NULL) {
        struct cm_errbuf eb;
        f->seed_rv = cm_state_apply(f->st, cm_state_applied_index(f->st) + 1, f->seed_cmd,
                                    strlen(f->seed_cmd), &eb);
        f->seed_cmd = NULL;
        f->seed_done = true;
    }
    if (f->release) {
        f->release = false;
        f->hold = false;
        apply_queue(f);
        f->seed_done = true;
    }
    if (f->free_api) {
        f->free_api = false;
        cm_api_free(f->api);
        f->api = NULL;
        f->seed_done = true;
    }
    if (f->stop) {
        ev_timer_stop(loop, &f->apply_w);
        ev_async_stop(loop, &f->wake);
        cm_http_server_free(f->srv);
        cm_api_free(f->api);
        apply_queue(f); /* held proposals complete into inert requests */
        ev_break(loop, EVBREAK_ALL);
    }
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void *loop_main(void *arg)
{
    struct fx *f = arg;
    ev_run(f->loop, 0);
    return NULL;
}

static void fx_start(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_api_XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(f->dir));
    char db[128];
    snprintf(db, sizeof(db), "%s/state.db", f->dir);
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_open(db, &f->st, &eb));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    ASSERT_NOT_NULL(f->loop);
    ASSERT_OK(cm_http_server_new(f->loop, NULL, &f->srv));
    ASSERT_OK(cm_http_server_listen(f->srv, "127.0.0.1:0", &eb));
    snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%u", cm_http_server_port(f->srv));
    f->q_tail = &f->q;
    f->now = NOW0;
    f->has_leader = true;
    snprintf(f->log_text, sizeof(f->log_text), "hello\n");
    struct cm_api_ops ops = {
        .data = f,
        .state = op_state,
        .propose = op_propose,
        .now_ms = op_now,
        .leader = op_leader,
        .node_name = op_node,
        .http_address = op_http,
        .task_log = op_task_log,
        .metrics = op_metrics,
        .loop = f->loop,
        .version = "0.1.0-test",
    };
    ASSERT_OK(cm_api_start(f->srv, &ops, &f->api));
    ev_timer_init(&f->apply_w, apply_cb, 0.0, 0.0);
    ev_async_init(&f->wake, wake_cb);
    ev_async_start(f->loop, &f->wake);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    ASSERT_INT_EQ(pthread_create(&f->th, NULL, loop_main, f), 0);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void fx_stop(struct fx *f)
{
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_mutex_unlock(&f->mu);
    ev_async_send(f->loop, &f->wake);
    pthread_join(f->th, NULL);
    /* A clean teardown: no proposal left behind. */
    ASSERT_NULL(f->q);
    ev_loop_destroy(f->loop);
    cm_state_close(f->st);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Run something on the loop thread and wait for it. */
static void fx_sync(struct fx *f)
{
    ev_async_send(f->loop, &f->wake);
    while (!f->seed_done) {
        pthread_cond_wait(&f->cv, &f->mu);
    }
    f->seed_done = false;
    pthread_mutex_unlock(&f->mu);
}

/* Apply @cmd to the replica directly, as if another node's proposal. */
static void fx_apply(struct fx *f, const char *cmd)
{
    pthread_mutex_lock(&f->mu);
    f->seed_cmd = cmd;
    fx_sync(f);
    ASSERT_OK(f->seed_rv);
}

static void fx_release(struct fx *f)
{
    pthread_mutex_lock(&f->mu);
    f->release = true;
    fx_sync(f);
}

/* ------------------------------------------------------------------ requests */

static int http(struct fx *f, const char *method, const char *path, const char *body,
                char **ret_body)
{
    int status = 0;
    char *out = NULL;
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    int rv = cm_http_request_sync(f->addr, method, path, body, &status, &out, 5000, &eb);
    if (rv != 0) {
        test__fail(__FILE__, __LINE__, "%s %s: %s", method, path, eb.msg);
    }
    if (ret_body != NULL) {
        *ret_body = out;
    } else {
        cm_free(&out);
    }
    return status;
}

/* A request whose answer is JSON: returns it parsed (NULL for an empty body). */
static cJSON *httpj(struct fx *f, const char *method, const char *path, const char *body,
                    int *ret_status)
{
    char *out = NULL;
    *ret_status = http(f, method, path, body, &out);
    cJSON *j = out != NULL && out[0] != '\0' ? cJSON_Parse(out) : NULL;
    if (out != NULL && out[0] != '\0' && j == NULL) {
        test__fail(__FILE__, __LINE__, "%s %s: not JSON: %s", method, path, out);
    }
    cm_free(&out);
    return j;
}

static const cJSON *get(const cJSON *j, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(j, key);
}

static const char *gets(const cJSON *j, const char *key)
{
    const cJSON *v = get(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double getn(const cJSON *j, const char *key)
{
    const cJSON *v = get(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -12345;
}

static char *read_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        return NULL;
    }
    struct cm_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        cm_buf_append(&b, chunk, n);
    }
    fclose(fp);
    return cm_buf_steal(&b);
}

/* True when the 422/400 body has a detail entry for @path. */
static bool has_detail(const cJSON *j, const char *path)
{
    const cJSON *d;
    cJSON_ArrayForEach(d, get(j, "details"))
    {
        const char *p = gets(d, "path");
        if (p != NULL && strcmp(p, path) == 0) {
            return true;
        }
    }
    return false;
}

static int app_count(struct fx *f)
{
    int st;
    cJSON *j = httpj(f, "GET", "/v2/apps", NULL, &st);
    int n = cJSON_GetArraySize(get(j, "apps"));
    cJSON_Delete(j);
    return n;
}

#define SLEEPY                             \
    "{\"id\":\"/sleepy\",\"cmd\":\"sleep " \
    "1000\",\"instances\":2,\"cpus\":0.1,\"mem\":16}"

static void create_sleepy(struct fx *f)
{
    int st;
    cJSON *j = httpj(f, "POST", "/v2/apps", SLEEPY, &st);
    ASSERT_INT_EQ(st, 201);
    cJSON_Delete(j);
}

static char *app_version(struct fx *f, const char *id)
{
    char path[256];
    snprintf(path, sizeof(path), "/v2/apps%s", id);
    int st;
    cJSON *j = httpj(f, "GET", path, NULL, &st);
    ASSERT_INT_EQ(st, 200);
    char *v = cm_strdup(gets(get(j, "app"), "version"));
    cJSON_Delete(j);
    return v;
}

/* A running task of /sleepy on node-a, at the app's current version. */
static void seed_task(struct fx *f, const char *tid, const char *version,
                      const char *state)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"task.assign\",\"at\":%lld,\"tasks\":[{\"id\":\"%s\",\"app\":"
             "\"/sleepy\",\"version\":\"%s\",\"node\":\"node-a\",\"host\":\"127.0.0.1\","
             "\"ports\":[31001]}]}",
             (long long)NOW0, tid, version);
    fx_apply(f, cmd);
    if (state != NULL) {
        snprintf(cmd, sizeof(cmd),
                 "{\"type\":\"task.status\",\"at\":%lld,\"id\":\"%s\",\"state\":\"%s\"}",
                 (long long)NOW0 + 5, tid, state);
        fx_apply(f, cmd);
    }
}

/* ------------------------------------------------------------------ basics */

TEST(ping_info_leader_deployments)
{
    struct fx f;
    fx_start(&f);
    char *body = NULL;
    ASSERT_INT_EQ(http(&f, "GET", "/ping", NULL, &body), 200);
    ASSERT_STR_EQ(body, "pong");
    cm_free(&body);

    int st;
    cJSON *j = httpj(&f, "GET", "/v2/info", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "name"), "clusterctl");
    ASSERT_STR_EQ(gets(j, "version"), "0.1.0-test");
    ASSERT_STR_EQ(gets(j, "leader"), f.addr);
    ASSERT_TRUE(cJSON_IsTrue(get(j, "elected")));
    ASSERT_STR_EQ(gets(get(j, "marathon_config"), "hostname"), "node-a");
    cJSON_Delete(j);

    j = httpj(&f, "GET", "/v2/leader", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "leader"), f.addr);
    cJSON_Delete(j);
    f.has_leader = false; /* read by the loop thread at the next request only */
    j = httpj(&f, "GET", "/v2/leader", NULL, &st);
    ASSERT_INT_EQ(st, 404);
    ASSERT_STR_EQ(gets(j, "message"), "There is no leader");
    cJSON_Delete(j);

    ASSERT_INT_EQ(http(&f, "GET", "/v2/deployments", NULL, &body), 200);
    ASSERT_STR_EQ(body, "[]");
    cm_free(&body);
    ASSERT_INT_EQ(http(&f, "GET", "/v2/nothing", NULL, NULL), 404);
    ASSERT_INT_EQ(http(&f, "POST", "/v2/info", "{}", NULL), 405);
    fx_stop(&f);
}

/* ------------------------------------------------------------------ POST /v2/apps */

TEST(post_app_created)
{
    struct fx f;
    fx_start(&f);
    int st;
    cJSON *j = httpj(&f, "POST", "/v2/apps", SLEEPY, &st);
    ASSERT_INT_EQ(st, 201);
    ASSERT_STR_EQ(gets(j, "id"), "/sleepy");
    ASSERT_STR_EQ(gets(j, "version"), "2026-01-01T00:00:00.000Z");
    ASSERT_INT_EQ(getn(j, "instances"), 2);
    ASSERT_INT_EQ(getn(j, "tasksRunning"), 0);
    const cJSON *dep = cJSON_GetArrayItem(get(j, "deployments"), 0);
    ASSERT_NOT_NULL(gets(dep, "id"));
    ASSERT_INT_EQ(strlen(gets(dep, "id")), 36);
    cJSON_Delete(j);
    ASSERT_INT_EQ(f.proposals, 1);

    /* GET shape: {"app": {...}} with tasks, counts and deployments. */
    j = httpj(&f, "GET", "/v2/apps/sleepy", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    const cJSON *app = get(j, "app");
    ASSERT_STR_EQ(gets(app, "id"), "/sleepy");
    ASSERT_STR_EQ(gets(app, "cmd"), "sleep 1000");
    ASSERT_TRUE(cJSON_IsArray(get(app, "tasks")));
    ASSERT_TRUE(cJSON_IsArray(get(app, "deployments")));
    ASSERT_INT_EQ(getn(app, "tasksStaged"), 0);
    ASSERT_INT_EQ(getn(app, "tasksHealthy"), 0);
    ASSERT_NOT_NULL(get(app, "versionInfo"));
    cJSON_Delete(j);

    /* The same id again: 409 with Marathon's message, nothing proposed. */
    j = httpj(&f, "POST", "/v2/apps", SLEEPY, &st);
    ASSERT_INT_EQ(st, 409);
    ASSERT_STR_EQ(gets(j, "message"), "An app with id [/sleepy] already exists.");
    cJSON_Delete(j);
    ASSERT_INT_EQ(f.proposals, 1);
    fx_stop(&f);
}

TEST(post_app_invalid_422_names_fields)
{
    struct fx f;
    fx_start(&f);
    int st;
    cJSON *j =
        httpj(&f, "POST", "/v2/apps",
              "{\"id\":\"/bad\",\"cmd\":\"sleep 1\",\"cpus\":-1,\"instances\":-2}", &st);
    ASSERT_INT_EQ(st, 422);
    ASSERT_STR_EQ(gets(j, "message"), "Object is not valid");
    ASSERT_TRUE(has_detail(j, "/cpus"));
    ASSERT_TRUE(has_detail(j, "/instances"));
    cJSON_Delete(j);

    /* Both cmd and args. */
    j = httpj(&f, "POST", "/v2/apps", "{\"id\":\"/x\",\"cmd\":\"a b\",\"args\":[\"a\"]}",
              &st);
    ASSERT_INT_EQ(st, 422);
    cJSON_Delete(j);

    /* The kitchen-sink example is invalid as in Marathon. */
    char *text = read_file(EXAMPLES "/app-kitchen-sink-rest-api-doc-example.json");
    if (text != NULL) {
        j = httpj(&f, "POST", "/v2/apps", text, &st);
        ASSERT_INT_EQ(st, 422);
        ASSERT_TRUE(has_detail(j, "/env/PASSWORD"));
        cJSON_Delete(j);
        cm_free(&text);
    }
    ASSERT_INT_EQ(f.proposals, 0);
    ASSERT_INT_EQ(app_count(&f), 0);
    fx_stop(&f);
}

TEST(post_app_unsupported_feature)
{
    struct fx f;
    fx_start(&f);
    int st;
    cJSON *j = httpj(&f, "POST", "/v2/apps",
                     "{\"id\":\"/web\",\"container\":{\"type\":\"DOCKER\",\"docker\":"
                     "{\"image\":\"nginx\"}}}",
                     &st);
    ASSERT_INT_EQ(st, 422);
    ASSERT_TRUE(strstr(gets(j, "message"),
                       "unsupported feature: container.docker.image") != NULL);
    ASSERT_TRUE(has_detail(j, "/container/docker/image"));
    cJSON_Delete(j);

    char *text = read_file(EXAMPLES "/app-rails-uris-env.json");
    if (text != NULL) {
        j = httpj(&f, "POST", "/v2/apps", text, &st);
        ASSERT_INT_EQ(st, 422);
        ASSERT_TRUE(strstr(gets(j, "message"), "fetch") != NULL);
        cJSON_Delete(j);
        cm_free(&text);
    }
    ASSERT_INT_EQ(app_count(&f), 0);
    fx_stop(&f);
}

TEST(bad_bodies_change_nothing)
{
    struct fx f;
    fx_start(&f);
    create_sleepy(&f);
    int before = f.proposals;
    int st;
    /* Not JSON. */
    cJSON *j = httpj(&f, "POST", "/v2/apps", "{\"id\": \"/x\", ", &st);
    ASSERT_INT_EQ(st, 400);
    ASSERT_STR_EQ(gets(j, "message"), "Invalid JSON");
    cJSON_Delete(j);
    /* Wrong types name the field. */
    j = httpj(&f, "POST", "/v2/apps",
              "{\"id\":\"/x\",\"cmd\":\"a b\",\"instances\":\"two\"}", &st);
    ASSERT_INT_EQ(st, 400);
    ASSERT_TRUE(has_detail(j, "/instances"));
    cJSON_Delete(j);
    j = httpj(&f, "PUT", "/v2/apps/sleepy", "{\"cpus\":\"lots\"}", &st);
    ASSERT_INT_EQ(st, 400);
    ASSERT_TRUE(has_detail(j, "/cpus"));
    cJSON_Delete(j);
    j = httpj(&f, "PUT", "/v2/apps/sleepy", "[1,2]", &st);
    ASSERT_INT_EQ(st, 400);
    cJSON_Delete(j);
    j = httpj(&f, "PUT", "/v2/apps/sleepy", "", &st);
    ASSERT_INT_EQ(st, 400);
    cJSON_Delete(j);
    j = httpj(&f, "PUT", "/v2/groups", "{\"id\":\"/g\",\"apps\":{}}", &st);
    ASSERT_INT_EQ(st, 400);
    cJSON_Delete(j);
    /* Huge bodies: refused by the route's limit before any handler runs. */
    size_t big = CM_APP_MAX_BODY + 100;
    char *huge = cm_malloc(big + 1);
    ASSERT_NOT_NULL(huge);
    memset(huge, ' ', big);
    memcpy(huge, "{\"id\":\"/huge\",\"cmd\":\"x\"", 23);
    huge[big - 1] = '}';
    huge[big] = '\0';
    ASSERT_INT_EQ(http(&f, "POST", "/v2/apps", huge, NULL), 413);
    ASSERT_INT_EQ(http(&f, "PUT", "/v2/apps/huge", huge, NULL), 413);
    cm_free(&huge);
    /* Body-less routes take small bodies only. */
    char mid[8192];
    memset(mid, ' ', sizeof(mid) - 1);
    mid[0] = '{';
    mid[sizeof(mid) - 2] = '}';
    mid[sizeof(mid) - 1] = '\0';
    ASSERT_INT_EQ(http(&f, "POST", "/v2/apps/sleepy/restart", mid, NULL), 413);
    ASSERT_INT_EQ(f.proposals, before);
    ASSERT_INT_EQ(app_count(&f), 1);
    fx_stop(&f);
}

/* ------------------------------------------------------------------ PUT /v2/apps/{id} */

TEST(put_creates_then_partial_update)
{
    struct fx f;
    fx_start(&f);
    int st;
    /* Create: 201 with a deployment result; the URL id wins over the body's. */
    cJSON *j = httpj(&f, "PUT", "/v2/apps/shop/web",
                     "{\"id\":\"/other\",\"cmd\":\"sleep 100\",\"mem\":32}", &st);
    ASSERT_INT_EQ(st, 201);
    ASSERT_STR_EQ(gets(j, "version"), "2026-01-01T00:00:00.000Z");
    ASSERT_INT_EQ(strlen(gets(j, "deploymentId")), 36);
    cJSON_Delete(j);
    ASSERT_INT_EQ(http(&f, "GET", "/v2/apps/other", NULL, NULL), 404);

    /* A partial update merges into the current spec, with a new version. */
    f.now += 1000;
    j = httpj(&f, "PUT", "/v2/apps/shop/web", "{\"cpus\":0.5}", &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "version"), "2026-01-01T00:00:01.000Z");
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps/shop/web", NULL, &st);
    const cJSON *app = get(j, "app");
    ASSERT_TRUE(getn(app, "cpus") == 0.5);
    ASSERT_TRUE(getn(app, "mem") == 32);
    ASSERT_STR_EQ(gets(app, "cmd"), "sleep 100");
    ASSERT_STR_EQ(gets(app, "version"), "2026-01-01T00:00:01.000Z");
    cJSON_Delete(j);

    /* Legacy ports in an update replace the current portDefinitions. */
    j = httpj(&f, "PUT", "/v2/apps/shop/web", "{\"ports\":[0,0]}", &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps/shop/web", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(get(j, "app"), "portDefinitions")), 2);
    cJSON_Delete(j);

    /* partialUpdate=false: the body is the whole app (here: no cmd). */
    j = httpj(&f, "PUT", "/v2/apps/shop/web?partialUpdate=false", "{\"instances\":3}",
              &st);
    ASSERT_INT_EQ(st, 422);
    cJSON_Delete(j);
    /* An invalid URL id is named. */
    j = httpj(&f, "PUT", "/v2/apps/Bad_Id", "{\"cmd\":\"sleep 1\"}", &st);
    ASSERT_INT_EQ(st, 422);
    ASSERT_TRUE(has_detail(j, "/id"));
    cJSON_Delete(j);
    /* PATCH does not create. */
    j = httpj(&f, "PATCH", "/v2/apps/nope", "{\"cpus\":1}", &st);
    ASSERT_INT_EQ(st, 404);
    cJSON_Delete(j);
    fx_stop(&f);
}

TEST(put_scale_keeps_version_and_unchanged_proposes_nothing)
{
    struct fx f;
    fx_start(&f);
    create_sleepy(&f);
    char *v0 = app_version(&f, "/sleepy");
    f.now += 1000;
    int st;
    cJSON *j = httpj(&f, "PUT", "/v2/apps/sleepy", "{\"instances\":5}", &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "version"), v0);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps/sleepy", NULL, &st);
    ASSERT_INT_EQ(getn(get(j, "app"), "instances"), 5);
    ASSERT_STR_EQ(gets(get(j, "app"), "version"), v0);
    cJSON_Delete(j);
    /* To zero: suspended, still the same version. */
    j = httpj(&f, "PUT", "/v2/apps/sleepy", "{\"instances\":0}", &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps/sleepy", NULL, &st);
    ASSERT_INT_EQ(getn(get(j, "app"), "instances"), 0);
    cJSON_Delete(j);
    int before = f.proposals;
    j = httpj(&f, "PUT", "/v2/apps/sleepy", "{\"instances\":0}", &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "version"), v0);
    cJSON_Delete(j);
    ASSERT_INT_EQ(f.proposals, before);
    cm_free(&v0);
    fx_stop(&f);
}

TEST(restart_versions_and_rollback)
{
    struct fx f;
    fx_start(&f);
    create_sleepy(&f);
    char *v0 = app_version(&f, "/sleepy");
    int st;
    /* Same millisecond: the version still changes. */
    cJSON *j = httpj(&f, "POST", "/v2/apps/sleepy/restart", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_NOT_NULL(gets(j, "deploymentId"));
    char *v1 = cm_strdup(gets(j, "version"));
    cJSON_Delete(j);
    ASSERT_TRUE(strcmp(v1, v0) > 0);
    char *now = app_version(&f, "/sleepy");
    ASSERT_STR_EQ(now, v1);
    cm_free(&now);

    f.now += 5000;
    j = httpj(&f, "PUT", "/v2/apps/sleepy", "{\"cmd\":\"sleep 2000\"}", &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps/sleepy/versions", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "versions")), 3);
    ASSERT_STR_EQ(cJSON_GetArrayItem(get(j, "versions"), 2)->valuestring, v0);
    cJSON_Delete(j);

    char path[128];
    snprintf(path, sizeof(path), "/v2/apps/sleepy/versions/%s", v0);
    j = httpj(&f, "GET", path, NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "cmd"), "sleep 1000");
    ASSERT_STR_EQ(gets(j, "version"), v0);
    cJSON_Delete(j);
    ASSERT_INT_EQ(
        http(&f, "GET", "/v2/apps/sleepy/versions/2001-01-01T00:00:00.000Z", NULL, NULL),
        404);

    /* {"version": v0} rolls back: the old spec at a new version. */
    char body[128];
    snprintf(body, sizeof(body), "{\"version\":\"%s\"}", v0);
    j = httpj(&f, "PUT", "/v2/apps/sleepy", body, &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps/sleepy", NULL, &st);
    ASSERT_STR_EQ(gets(get(j, "app"), "cmd"), "sleep 1000");
    ASSERT_TRUE(strcmp(gets(get(j, "app"), "version"), v1) > 0);
    cJSON_Delete(j);
    ASSERT_INT_EQ(http(&f, "POST", "/v2/apps/nope/restart", NULL, NULL), 404);
    cm_free(&v0);
    cm_free(&v1);
    fx_stop(&f);
}

TEST(delete_app)
{
    struct fx f;
    fx_start(&f);
    create_sleepy(&f);
    int st;
    cJSON *j = httpj(&f, "DELETE", "/v2/apps/sleepy", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_NOT_NULL(gets(j, "version"));
    ASSERT_NOT_NULL(gets(j, "deploymentId"));
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps/sleepy", NULL, &st);
    ASSERT_INT_EQ(st, 404);
    ASSERT_STR_EQ(gets(j, "message"), "App '/sleepy' does not exist");
    cJSON_Delete(j);
    ASSERT_INT_EQ(http(&f, "DELETE", "/v2/apps/sleepy", NULL, NULL), 404);
    ASSERT_INT_EQ(http(&f, "GET", "/v2/apps/sleepy/tasks", NULL, NULL), 404);
    ASSERT_INT_EQ(http(&f, "GET", "/v2/apps/sleepy/versions", NULL, NULL), 404);
    fx_stop(&f);
}

/* ------------------------------------------------------------------ lists and tasks */

TEST(apps_list_filters_and_embeds)
{
    struct fx f;
    fx_start(&f);
    create_sleepy(&f);
    int st;
    cJSON *j = httpj(&f, "POST", "/v2/apps",
                     "{\"id\":\"/shop/api\",\"cmd\":\"python3 -m http.server\","
                     "\"labels\":{\"tier\":\"web\"}}",
                     &st);
    ASSERT_INT_EQ(st, 201);
    cJSON_Delete(j);
    char *v = app_version(&f, "/sleepy");
    seed_task(&f, "sleepy.t1", v, "running");
    seed_task(&f, "sleepy.t2", v, NULL);
    cm_free(&v);

    j = httpj(&f, "GET", "/v2/apps", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "apps")), 2);
    const cJSON *a0 = cJSON_GetArrayItem(get(j, "apps"), 1);
    ASSERT_STR_EQ(gets(a0, "id"), "/sleepy");
    ASSERT_INT_EQ(getn(a0, "tasksRunning"), 1);
    ASSERT_INT_EQ(getn(a0, "tasksStaged"), 1);
    ASSERT_NULL(get(a0, "tasks"));
    cJSON_Delete(j);

    j = httpj(&f, "GET", "/v2/apps?embed=apps.tasks&embed=apps.lastTaskFailure", NULL,
              &st);
    a0 = cJSON_GetArrayItem(get(j, "apps"), 1);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(a0, "tasks")), 2);
    cJSON_Delete(j);

    j = httpj(&f, "GET", "/v2/apps?id=shop", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "apps")), 1);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps?cmd=PYTHON", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "apps")), 1);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps?label=tier==web", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "apps")), 1);
    cJSON_Delete(j);
    /* As Marathon's LabelSelector: every form needs the label to be there. */
    j = httpj(&f, "GET", "/v2/apps?label=tier!=web", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "apps")), 0);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps?label=tier!=db", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "apps")), 1);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps?label=tier%20in%20(db,%20web),tier", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "apps")), 1);
    ASSERT_STR_EQ(gets(cJSON_GetArrayItem(get(j, "apps"), 0), "id"), "/shop/api");
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps?label=tier%20notin%20(web)", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "apps")), 0);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps?label=tier%20notin%20(db,x)", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "apps")), 1);
    cJSON_Delete(j);
    ASSERT_INT_EQ(http(&f, "GET", "/v2/apps?label=tier%20in%20db", NULL, NULL), 400);
    ASSERT_INT_EQ(http(&f, "GET", "/v2/apps?label=%3D%3Dx", NULL, NULL), 400);
    fx_stop(&f);
}

TEST(tasks_shape_kill_and_scale)
{
    struct fx f;
    fx_start(&f);
    create_sleepy(&f);
    char *v = app_version(&f, "/sleepy");
    seed_task(&f, "sleepy.t1", v, "running");
    seed_task(&f, "sleepy.t2", v, "running");
    seed_task(&f, "sleepy.t3", v, "failed");
    int st;
    cJSON *j = httpj(&f, "GET", "/v2/apps/sleepy/tasks", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "tasks")), 2); /* terminal ones hidden */
    const cJSON *t = cJSON_GetArrayItem(get(j, "tasks"), 0);
    ASSERT_STR_EQ(gets(t, "id"), "sleepy.t1");
    ASSERT_STR_EQ(gets(t, "appId"), "/sleepy");
    ASSERT_STR_EQ(gets(t, "host"), "127.0.0.1");
    ASSERT_STR_EQ(gets(t, "state"), "TASK_RUNNING");
    ASSERT_STR_EQ(gets(t, "version"), v);
    ASSERT_STR_EQ(gets(t, "stagedAt"), "2026-01-01T00:00:00.000Z");
    ASSERT_NOT_NULL(gets(t, "startedAt"));
    ASSERT_INT_EQ(getn(cJSON_GetArrayItem(get(t, "ports"), 0), "x"), -12345);
    ASSERT_INT_EQ(cJSON_GetArrayItem(get(t, "ports"), 0)->valueint, 31001);
    ASSERT_TRUE(cJSON_IsArray(get(t, "healthCheckResults")));
    cJSON_Delete(j);

    j = httpj(&f, "GET", "/v2/tasks", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "tasks")), 2);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/tasks?status=staging", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "tasks")), 0);
    cJSON_Delete(j);

    /* lastTaskFailure from the failed task. */
    j = httpj(&f, "GET", "/v2/apps/sleepy", NULL, &st);
    ASSERT_STR_EQ(gets(get(get(j, "app"), "lastTaskFailure"), "taskId"), "sleepy.t3");
    ASSERT_STR_EQ(gets(get(get(j, "app"), "lastTaskFailure"), "state"), "TASK_FAILED");
    cJSON_Delete(j);

    /* Kill one: {"task": ...}; it is killing in the replica. */
    j = httpj(&f, "DELETE", "/v2/apps/sleepy/tasks/sleepy.t1", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(get(j, "task"), "id"), "sleepy.t1");
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps/sleepy/tasks", NULL, &st);
    ASSERT_STR_EQ(gets(cJSON_GetArrayItem(get(j, "tasks"), 0), "state"), "TASK_KILLING");
    cJSON_Delete(j);

    /* Kill with scale=true lowers the instances, same version. */
    j = httpj(&f, "DELETE", "/v2/apps/sleepy/tasks/sleepy.t2?scale=true", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "version"), v);
    ASSERT_NOT_NULL(gets(j, "deploymentId"));
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps/sleepy", NULL, &st);
    ASSERT_INT_EQ(getn(get(j, "app"), "instances"), 1);
    ASSERT_STR_EQ(gets(get(j, "app"), "version"), v);
    cJSON_Delete(j);

    j = httpj(&f, "DELETE", "/v2/apps/sleepy/tasks/sleepy.nope", NULL, &st);
    ASSERT_INT_EQ(st, 404);
    ASSERT_STR_EQ(gets(j, "message"), "Task 'sleepy.nope' does not exist");
    cJSON_Delete(j);
    ASSERT_INT_EQ(http(&f, "DELETE", "/v2/apps/sleepy/tasks/sleepy.t3", NULL, NULL), 404);
    cm_free(&v);
    fx_stop(&f);
}

TEST(queue_lists_apps_short_of_instances)
{
    struct fx f;
    fx_start(&f);
    create_sleepy(&f);
    char *v = app_version(&f, "/sleepy");
    seed_task(&f, "sleepy.t1", v, "running");
    seed_task(&f, "sleepy.t2", v, "failed");
    int st;
    cJSON *j = httpj(&f, "GET", "/v2/queue", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "queue")), 1);
    const cJSON *q = cJSON_GetArrayItem(get(j, "queue"), 0);
    ASSERT_STR_EQ(gets(get(q, "app"), "id"), "/sleepy");
    ASSERT_INT_EQ(getn(q, "count"), 1);
    ASSERT_STR_EQ(gets(q, "role"), "*");
    ASSERT_NOT_NULL(get(get(q, "delay"), "timeLeftSeconds"));
    cJSON_Delete(j);
    seed_task(&f, "sleepy.t3", v, "running");
    j = httpj(&f, "GET", "/v2/queue", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(get(j, "queue")), 0);
    cJSON_Delete(j);
    cm_free(&v);
    fx_stop(&f);
}

TEST(put_app_array)
{
    struct fx f;
    fx_start(&f);
    char *text = read_file(EXAMPLES "/apps-array-put-with-dependencies.json");
    if (text == NULL) {
        fx_stop(&f);
        test_skip("no shared examples");
    }
    int st;
    cJSON *j = httpj(&f, "PUT", "/v2/apps", text, &st);
    cm_free(&text);
    ASSERT_INT_EQ(st, 200);
    ASSERT_NOT_NULL(gets(j, "deploymentId"));
    cJSON_Delete(j);
    ASSERT_INT_EQ(app_count(&f), 2);
    /* One bad element: nothing changes, the path names the element. */
    j = httpj(&f, "PUT", "/v2/apps",
              "[{\"id\":\"/a\",\"cmd\":\"sleep 1\"},{\"id\":\"/b\",\"cmd\":\"sleep 1\","
              "\"mem\":-5}]",
              &st);
    ASSERT_INT_EQ(st, 422);
    ASSERT_TRUE(has_detail(j, "(1)/mem"));
    cJSON_Delete(j);
    ASSERT_INT_EQ(app_count(&f), 2);
    fx_stop(&f);
}

/* An element with a field the model does not know: accepted (Marathon ignores
 * unknown fields) and its warnings freed; they leaked, which ASan reports at
 * exit (found by fuzz_api). */
TEST(put_app_array_unknown_field)
{
    struct fx f;
    fx_start(&f);
    int st;
    cJSON *j = httpj(&f, "PUT", "/v2/apps",
                     "[{\"id\":\"/u\",\"cmd\":\"sleep 1\",\"notAField\":1}]", &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    ASSERT_INT_EQ(app_count(&f), 1);
    fx_stop(&f);
}

/* Field names are case-sensitive in updates too (found by fuzz_api): "PORTS"
 * is an unknown field, not the legacy "ports", so the portDefinitions stay; and
 * "Instances" changes nothing (its copy leaked, which ASan reports). */
TEST(put_update_field_names_are_case_sensitive)
{
    struct fx f;
    fx_start(&f);
    int st;
    cJSON *j = httpj(&f, "POST", "/v2/apps",
                     "{\"id\":\"/p\",\"cmd\":\"sleep 1\",\"instances\":2,"
                     "\"portDefinitions\":[{\"port\":0,\"name\":\"http\"}]}",
                     &st);
    ASSERT_INT_EQ(st, 201);
    cJSON_Delete(j);
    j = httpj(&f, "PUT", "/v2/apps/p", "{\"PORTS\":[5],\"Instances\":3}", &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps/p", NULL, &st);
    const cJSON *app = get(j, "app");
    ASSERT_STR_EQ(gets(cJSON_GetArrayItem(get(app, "portDefinitions"), 0), "name"),
                  "http");
    ASSERT_INT_EQ(getn(app, "instances"), 2);
    cJSON_Delete(j);
    fx_stop(&f);
}

/* ------------------------------------------------------------------ groups */

TEST(groups_put_get_post_delete)
{
    struct fx f;
    fx_start(&f);
    int st;
    const char *group =
        "{\"id\":\"/dept\",\"apps\":[{\"id\":\"web\",\"cmd\":\"sleep 9\"}],"
        "\"groups\":[{\"id\":\"db\",\"apps\":[{\"id\":\"pg\",\"cmd\":"
        "\"sleep 9\"}]}]}";
    cJSON *j = httpj(&f, "PUT", "/v2/groups", group, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_NOT_NULL(gets(j, "deploymentId"));
    cJSON_Delete(j);
    ASSERT_INT_EQ(app_count(&f), 2);
    ASSERT_INT_EQ(http(&f, "GET", "/v2/apps/dept/db/pg", NULL, NULL), 200);

    j = httpj(&f, "GET", "/v2/groups", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "id"), "/");
    const cJSON *dept = cJSON_GetArrayItem(get(j, "groups"), 0);
    ASSERT_STR_EQ(gets(dept, "id"), "/dept");
    ASSERT_STR_EQ(gets(cJSON_GetArrayItem(get(dept, "apps"), 0), "id"), "/dept/web");
    const cJSON *db = cJSON_GetArrayItem(get(dept, "groups"), 0);
    ASSERT_STR_EQ(gets(db, "id"), "/dept/db");
    ASSERT_STR_EQ(gets(cJSON_GetArrayItem(get(db, "apps"), 0), "id"), "/dept/db/pg");
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/groups/dept/db", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "id"), "/dept/db");
    cJSON_Delete(j);
    ASSERT_INT_EQ(http(&f, "GET", "/v2/groups/nope", NULL, NULL), 404);

    /* POST of an existing group: 409. */
    j = httpj(&f, "POST", "/v2/groups", group, &st);
    ASSERT_INT_EQ(st, 409);
    cJSON_Delete(j);
    /* All-or-nothing: one bad app, nothing created. */
    j = httpj(
        &f, "POST", "/v2/groups",
        "{\"id\":\"/g2\",\"apps\":[{\"id\":\"ok\",\"cmd\":\"sleep 1\"},{\"id\":\"bad\","
        "\"cmd\":\"sleep 1\",\"cpus\":-1}]}",
        &st);
    ASSERT_INT_EQ(st, 422);
    ASSERT_TRUE(has_detail(j, "/apps(1)/cpus"));
    cJSON_Delete(j);
    ASSERT_INT_EQ(app_count(&f), 2);
    /* scaleBy multiplies every app under the group. */
    j = httpj(&f, "PUT", "/v2/groups/dept", "{\"scaleBy\":3}", &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps/dept/web", NULL, &st);
    ASSERT_INT_EQ(getn(get(j, "app"), "instances"), 3);
    cJSON_Delete(j);
    /* dryRun changes nothing. */
    int before = f.proposals;
    j = httpj(&f, "PUT", "/v2/groups?dryRun=true",
              "{\"id\":\"/dept\",\"apps\":[{\"id\":\"web\",\"cmd\":\"sleep 10\"}]}", &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_NOT_NULL(get(j, "steps"));
    cJSON_Delete(j);
    ASSERT_INT_EQ(f.proposals, before);

    j = httpj(&f, "DELETE", "/v2/groups/dept", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    ASSERT_INT_EQ(app_count(&f), 0);
    ASSERT_INT_EQ(http(&f, "DELETE", "/v2/groups/dept", NULL, NULL), 404);
    fx_stop(&f);
}

/* scaleBy must leave every app valid, and a huge factor is capped (found by
 * fuzz_api): a single-instance app scaled past 1 was stored and no longer read
 * back, and a factor past INT32_MAX converted to a negative count. */
TEST(group_scale_by_keeps_apps_valid)
{
    struct fx f;
    fx_start(&f);
    int st;
    cJSON *j = httpj(&f, "PUT", "/v2/groups/g",
                     "{\"id\":\"/g\",\"apps\":[{\"id\":\"one\",\"cmd\":\"sleep 1\","
                     "\"labels\":{\"MARATHON_SINGLE_INSTANCE_APP\":\"true\"},"
                     "\"upgradeStrategy\":{\"minimumHealthCapacity\":0,"
                     "\"maximumOverCapacity\":0}},{\"id\":\"web\",\"cmd\":\"sleep 1\"}]}",
                     &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    int before = f.proposals;
    j = httpj(&f, "PUT", "/v2/groups/g", "{\"scaleBy\":2}", &st);
    ASSERT_INT_EQ(st, 422);
    ASSERT_TRUE(has_detail(j, "/g/one/instances"));
    cJSON_Delete(j);
    ASSERT_INT_EQ(f.proposals, before);
    /* A group id that cannot be one: 422 naming the id (was 404 "does not
     * exist", which a PUT that creates cannot mean). */
    j = httpj(&f, "PUT", "/v2/groups/Bad_Name", "{\"apps\":[]}", &st);
    ASSERT_INT_EQ(st, 422);
    ASSERT_TRUE(strstr(gets(j, "message"), "id: '/Bad_Name'") != NULL);
    cJSON_Delete(j);
    ASSERT_INT_EQ(f.proposals, before);
    j = httpj(&f, "GET", "/v2/apps/g/one", NULL, &st);
    ASSERT_INT_EQ(getn(get(j, "app"), "instances"), 1);
    ASSERT_STR_EQ(gets(get(j, "app"), "cmd"), "sleep 1");
    cJSON_Delete(j);

    j = httpj(&f, "DELETE", "/v2/apps/g/one", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    j = httpj(&f, "PUT", "/v2/groups/g", "{\"scaleBy\":1e300}", &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/apps/g/web", NULL, &st);
    ASSERT_INT_EQ(getn(get(j, "app"), "instances"), 100000);
    cJSON_Delete(j);
    fx_stop(&f);
}

/* <g>/apps, <g>/versions, <g>/versions/<v>: versions come from the apps'. */
TEST(group_apps_and_versions)
{
    struct fx f;
    fx_start(&f);
    int st;
    cJSON *j = httpj(&f, "PUT", "/v2/groups",
                     "{\"id\":\"/dept\",\"apps\":[{\"id\":\"web\",\"cmd\":\"sleep 9\"}],"
                     "\"groups\":[{\"id\":\"db\",\"apps\":[{\"id\":\"pg\",\"cmd\":"
                     "\"sleep 9\"}]}]}",
                     &st);
    ASSERT_INT_EQ(st, 200);
    char *v1 = cm_strdup(gets(j, "version"));
    cJSON_Delete(j);
    f.now += 5000;
    j = httpj(&f, "PUT", "/v2/apps/dept/web", "{\"cmd\":\"sleep 10\"}", &st);
    ASSERT_INT_EQ(st, 200);
    char *v2 = cm_strdup(gets(j, "version"));
    cJSON_Delete(j);
    ASSERT_TRUE(strcmp(v2, v1) > 0);

    /* Every app under the group, nested ones too. */
    j = httpj(&f, "GET", "/v2/groups/dept/apps", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_INT_EQ(cJSON_GetArraySize(j), 2);
    ASSERT_STR_EQ(gets(cJSON_GetArrayItem(j, 0), "id"), "/dept/db/pg");
    ASSERT_STR_EQ(gets(cJSON_GetArrayItem(j, 1), "id"), "/dept/web");
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/groups/apps", NULL, &st); /* the root's */
    ASSERT_INT_EQ(cJSON_GetArraySize(j), 2);
    cJSON_Delete(j);

    /* Newest first, each change once. */
    j = httpj(&f, "GET", "/v2/groups/dept/versions", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_INT_EQ(cJSON_GetArraySize(j), 2);
    ASSERT_STR_EQ(cJSON_GetArrayItem(j, 0)->valuestring, v2);
    ASSERT_STR_EQ(cJSON_GetArrayItem(j, 1)->valuestring, v1);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/groups/dept/db/versions", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(j), 1);
    ASSERT_STR_EQ(cJSON_GetArrayItem(j, 0)->valuestring, v1);
    cJSON_Delete(j);

    /* The group as it was at v1: web's first spec, pg under db. */
    char path[160];
    snprintf(path, sizeof(path), "/v2/groups/dept/versions/%s", v1);
    j = httpj(&f, "GET", path, NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "id"), "/dept");
    ASSERT_STR_EQ(gets(j, "version"), v1);
    const cJSON *web = cJSON_GetArrayItem(get(j, "apps"), 0);
    ASSERT_STR_EQ(gets(web, "cmd"), "sleep 9");
    ASSERT_NULL(get(web, "tasks"));
    const cJSON *db = cJSON_GetArrayItem(get(j, "groups"), 0);
    ASSERT_STR_EQ(gets(cJSON_GetArrayItem(get(db, "apps"), 0), "id"), "/dept/db/pg");
    cJSON_Delete(j);
    snprintf(path, sizeof(path), "/v2/groups/dept/versions/%s", v2);
    j = httpj(&f, "GET", path, NULL, &st);
    ASSERT_STR_EQ(gets(cJSON_GetArrayItem(get(j, "apps"), 0), "cmd"), "sleep 10");
    cJSON_Delete(j);

    ASSERT_INT_EQ(
        http(&f, "GET", "/v2/groups/dept/versions/2001-01-01T00:00:00.000Z", NULL, NULL),
        404);
    /* Not a version stamp (fuzz_api): sorts after every stamp, and was 200
     * with the group as it is now. */
    ASSERT_INT_EQ(http(&f, "GET", "/v2/groups/dept/versions/nope", NULL, NULL), 404);
    ASSERT_INT_EQ(http(&f, "GET", "/v2/groups/nope/versions", NULL, NULL), 404);
    ASSERT_INT_EQ(http(&f, "GET", "/v2/groups/nope/apps", NULL, NULL), 404);
    cm_free(&v1);
    cm_free(&v2);
    fx_stop(&f);
}

/* ------------------------------------------------------------------ native routes */

TEST(metrics_and_nodes)
{
    struct fx f;
    fx_start(&f);
    create_sleepy(&f);
    fx_apply(&f,
             "{\"type\":\"node.up\",\"at\":1767225600000,\"node\":{\"id\":\"node-a\","
             "\"address\":\"127.0.0.1\",\"attrs\":{\"rack\":\"r1\"},\"resources\":"
             "{\"cpus\":4}}}");
    char *body = NULL;
    ASSERT_INT_EQ(http(&f, "GET", "/metrics", NULL, &body), 200);
    ASSERT_TRUE(strstr(body, "clusterctl_apps 1\n") != NULL);
    ASSERT_TRUE(strstr(body, "clusterctl_app_instances 2\n") != NULL);
    ASSERT_TRUE(strstr(body, "clusterctl_tasks{state=\"running\"} 0\n") != NULL);
    ASSERT_TRUE(strstr(body, "clusterctl_nodes{state=\"up\"} 1\n") != NULL);
    ASSERT_TRUE(strstr(body, "clusterctl_test_metric 42\n") != NULL);
    cm_free(&body);
    int st;
    cJSON *j = httpj(&f, "GET", "/v1/nodes", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    const cJSON *n = cJSON_GetArrayItem(get(j, "nodes"), 0);
    ASSERT_STR_EQ(gets(n, "id"), "node-a");
    ASSERT_STR_EQ(gets(get(n, "attributes"), "rack"), "r1");
    ASSERT_STR_EQ(gets(n, "state"), "up");
    cJSON_Delete(j);
    fx_stop(&f);
}

/* The node answers /v1/vips from its VIP runner (tests/unit/test_node_vips.c,
 * tests/system/test_vip_ops.py); without that op the route says so. */
TEST(vips_without_the_node_op)
{
    struct fx f;
    fx_start(&f);
    int st;
    cJSON *j = httpj(&f, "GET", "/v1/vips", NULL, &st);
    ASSERT_INT_EQ(st, 503);
    ASSERT_TRUE(strstr(gets(j, "message"), "VIPs") != NULL);
    cJSON_Delete(j);
    fx_stop(&f);
}

TEST(nodes_usage_drain_undrain)
{
    struct fx f;
    fx_start(&f);
    create_sleepy(&f);
    fx_apply(&f,
             "{\"type\":\"node.up\",\"at\":1767225600000,\"node\":{\"id\":\"node-a\","
             "\"address\":\"127.0.0.1\",\"attrs\":{},\"resources\":{\"cpus\":4,"
             "\"mem\":1024}}}");
    char *version = app_version(&f, "/sleepy");
    seed_task(&f, "sleepy.1", version, "running");
    seed_task(&f, "sleepy.2", version, "killed"); /* terminal: holds nothing */
    cm_free(&version);
    int st;
    cJSON *j = httpj(&f, "GET", "/v1/nodes", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    const cJSON *n = cJSON_GetArrayItem(get(j, "nodes"), 0);
    ASSERT_INT_EQ((int)getn(n, "tasks"), 1);
    ASSERT_TRUE(fabs(getn(get(n, "used"), "cpus") - 0.1) < 1e-9);
    ASSERT_INT_EQ((int)getn(get(n, "used"), "mem"), 16);
    ASSERT_INT_EQ((int)getn(get(n, "resources"), "cpus"), 4);
    ASSERT_NULL(get(n, "lastHeartbeatAgeMs")); /* only a leader knows */
    cJSON_Delete(j);

    j = httpj(&f, "POST", "/v1/nodes/node-a/drain", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "state"), "draining");
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v1/nodes", NULL, &st);
    ASSERT_STR_EQ(gets(cJSON_GetArrayItem(get(j, "nodes"), 0), "state"), "draining");
    cJSON_Delete(j);
    ASSERT_INT_EQ(http(&f, "POST", "/v1/nodes/node-a/drain", NULL, NULL), 200);
    j = httpj(&f, "POST", "/v1/nodes/node-a/undrain", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "state"), "up");
    cJSON_Delete(j);
    ASSERT_INT_EQ(http(&f, "POST", "/v1/nodes/node-a/undrain", NULL, NULL), 200);

    j = httpj(&f, "POST", "/v1/nodes/nope/drain", NULL, &st);
    ASSERT_INT_EQ(st, 404);
    ASSERT_STR_EQ(gets(j, "message"), "node 'nope' does not exist");
    cJSON_Delete(j);
    fx_apply(&f,
             "{\"type\":\"node.state\",\"at\":1767225600001,\"id\":\"node-a\","
             "\"state\":\"unreachable\"}");
    j = httpj(&f, "POST", "/v1/nodes/node-a/drain", NULL, &st);
    ASSERT_INT_EQ(st, 409);
    ASSERT_STR_EQ(gets(j, "message"), "node 'node-a' is unreachable, not up");
    cJSON_Delete(j);
    ASSERT_INT_EQ(http(&f, "POST", "/v1/nodes/node-a/undrain", NULL, NULL), 409);
    fx_stop(&f);
}

TEST(task_logs)
{
    struct fx f;
    fx_start(&f);
    create_sleepy(&f);
    char *v = app_version(&f, "/sleepy");
    seed_task(&f, "sleepy.t1", v, "running");
    seed_task(&f, "sleepy.done", v, "finished");
    fx_apply(&f,
             "{\"type\":\"task.assign\",\"at\":1767225600000,\"tasks\":[{\"id\":"
             "\"sleepy.far\",\"app\":\"/sleepy\",\"version\":\"x\",\"node\":\"node-b\","
             "\"host\":\"10.0.0.2\",\"ports\":[]}]}");
    char *body = NULL;
    ASSERT_INT_EQ(http(&f, "GET", "/v1/tasks/sleepy.t1/logs", NULL, &body), 200);
    ASSERT_STR_EQ(body, "stdout:hello\n");
    cm_free(&body);
    ASSERT_INT_EQ(
        http(&f, "GET", "/v1/tasks/sleepy.t1/logs?stream=stderr&offset=-3", NULL, &body),
        200);
    ASSERT_STR_EQ(body, "lo\n");
    cm_free(&body);
    ASSERT_INT_EQ(http(&f, "GET", "/v1/tasks/sleepy.t1/logs?stream=stdin", NULL, NULL),
                  400);
    ASSERT_INT_EQ(http(&f, "GET", "/v1/tasks/sleepy.t1/logs?offset=abc", NULL, NULL),
                  400);
    ASSERT_INT_EQ(http(&f, "GET", "/v1/tasks/nope/logs", NULL, NULL), 404);
    int st;
    cJSON *j = httpj(&f, "GET", "/v1/tasks/sleepy.far/logs", NULL, &st);
    ASSERT_INT_EQ(st, 404);
    ASSERT_TRUE(strstr(gets(j, "message"), "node-b") != NULL);
    cJSON_Delete(j);
    /* Follow a task that has ended: the log, then the stream ends. */
    ASSERT_INT_EQ(http(&f, "GET", "/v1/tasks/sleepy.done/logs?follow=1", NULL, &body),
                  200);
    ASSERT_STR_EQ(body, "stdout:hello\n");
    cm_free(&body);
    cm_free(&v);
    fx_stop(&f);
}

/* A follower of a running task whose client leaves: the stream ends without
 * harm at the next poll, and the teardown is clean. */
TEST(task_logs_follow_client_leaves)
{
    struct fx f;
    fx_start(&f);
    create_sleepy(&f);
    char *v = app_version(&f, "/sleepy");
    seed_task(&f, "sleepy.t1", v, "running");
    int status = 0;
    char *body = NULL;
    struct cm_errbuf eb;
    int rv = cm_http_request_sync(f.addr, "GET", "/v1/tasks/sleepy.t1/logs?follow=1",
                                  NULL, &status, &body, 500, &eb);
    ASSERT_ERR(rv, CM_ETIMEDOUT);
    cm_free(&body);
    usleep(300 * 1000);
    ASSERT_INT_EQ(http(&f, "GET", "/ping", NULL, NULL), 200);
    cm_free(&v);
    fx_stop(&f);
}

/* ------------------------------------------------------------------ deployments */

TEST(deployments_lock_force_list_rollback_promote)
{
    struct fx f;
    fx_start(&f);
    f.keep_deploys = true; /* no controller here: deployments stay running */
    create_sleepy(&f);
    char *v0 = app_version(&f, "/sleepy");
    int st;
    cJSON *j = httpj(&f, "GET", "/v2/deployments", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_INT_EQ(cJSON_GetArraySize(j), 1);
    const cJSON *d = cJSON_GetArrayItem(j, 0);
    char *d1 = cm_strdup(gets(d, "id"));
    ASSERT_STR_EQ(gets(d, "version"), v0);
    ASSERT_STR_EQ(cJSON_GetArrayItem(get(d, "affectedApps"), 0)->valuestring, "/sleepy");
    ASSERT_INT_EQ(getn(d, "currentStep"), 1);
    ASSERT_INT_EQ(getn(d, "totalSteps"), 1);
    const cJSON *act = cJSON_GetArrayItem(get(d, "currentActions"), 0);
    ASSERT_STR_EQ(gets(act, "action"), "StartApplication");
    ASSERT_STR_EQ(gets(act, "app"), "/sleepy");
    cJSON_Delete(j);

    /* The app names its deployment (AppInfo.deployments). */
    j = httpj(&f, "GET", "/v2/apps/sleepy", NULL, &st);
    ASSERT_STR_EQ(gets(cJSON_GetArrayItem(get(get(j, "app"), "deployments"), 0), "id"),
                  d1);
    cJSON_Delete(j);

    /* A change while it runs: 409 naming the deployment, nothing proposed. */
    f.now += 1000;
    int before = f.proposals;
    j = httpj(&f, "PUT", "/v2/apps/sleepy", "{\"cmd\":\"sleep 2000\"}", &st);
    ASSERT_INT_EQ(st, 409);
    ASSERT_STR_EQ(gets(cJSON_GetArrayItem(get(j, "deployments"), 0), "id"), d1);
    ASSERT_TRUE(strstr(gets(j, "message"), "?force=true") != NULL);
    cJSON_Delete(j);
    ASSERT_INT_EQ(f.proposals, before);
    ASSERT_INT_EQ(http(&f, "POST", "/v2/apps/sleepy/restart", NULL, NULL), 409);

    /* force=true replaces it: one running deployment, a RestartApplication. */
    j = httpj(&f, "PUT", "/v2/apps/sleepy?force=true", "{\"cmd\":\"sleep 2000\"}", &st);
    ASSERT_INT_EQ(st, 200);
    char *d2 = cm_strdup(gets(j, "deploymentId"));
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/deployments", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(j), 1);
    ASSERT_STR_EQ(gets(cJSON_GetArrayItem(j, 0), "id"), d2);
    ASSERT_STR_EQ(
        gets(cJSON_GetArrayItem(get(cJSON_GetArrayItem(j, 0), "currentActions"), 0),
             "action"),
        "RestartApplication");
    cJSON_Delete(j);
    char path[128];
    snprintf(path, sizeof(path), "/v1/deployments/%s", d1);
    j = httpj(&f, "GET", path, NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "status"), "cancelled");
    cJSON_Delete(j);

    /* Promote: the app's running deployment. */
    j = httpj(&f, "POST", "/v1/apps/sleepy/promote", NULL, &st);
    ASSERT_INT_EQ(st, 200);
    ASSERT_STR_EQ(gets(j, "deploymentId"), d2);
    cJSON_Delete(j);
    ASSERT_INT_EQ(http(&f, "POST", "/v1/apps/nope/promote", NULL, NULL), 404);

    /* DELETE rolls back: the app returns to v0 (same version, same spec). */
    snprintf(path, sizeof(path), "/v2/deployments/%s", d2);
    j = httpj(&f, "DELETE", path, NULL, &st);
    ASSERT_INT_EQ(st, 200);
    char *d3 = cm_strdup(gets(j, "deploymentId"));
    cJSON_Delete(j);
    char *v = app_version(&f, "/sleepy");
    ASSERT_STR_EQ(v, v0);
    cm_free(&v);
    j = httpj(&f, "GET", "/v2/apps/sleepy", NULL, &st);
    ASSERT_STR_EQ(gets(get(j, "app"), "cmd"), "sleep 1000");
    cJSON_Delete(j);
    snprintf(path, sizeof(path), "/v1/deployments/%s", d2);
    j = httpj(&f, "GET", path, NULL, &st);
    ASSERT_STR_EQ(gets(j, "status"), "failed");
    cJSON_Delete(j);
    /* ?force=true only stops (202); a finished one is 404. */
    snprintf(path, sizeof(path), "/v2/deployments/%s?force=true", d3);
    ASSERT_INT_EQ(http(&f, "DELETE", path, NULL, NULL), 202);
    ASSERT_INT_EQ(http(&f, "DELETE", path, NULL, NULL), 404);
    ASSERT_INT_EQ(http(&f, "DELETE", "/v2/deployments/nope", NULL, NULL), 404);
    j = httpj(&f, "GET", "/v2/deployments", NULL, &st);
    ASSERT_INT_EQ(cJSON_GetArraySize(j), 0);
    cJSON_Delete(j);

    /* rollback APP VERSION: to a stored version, keeping its version string. */
    f.now += 1000;
    j = httpj(&f, "PUT", "/v2/apps/sleepy", "{\"cmd\":\"sleep 3000\"}", &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    char body[128];
    snprintf(body, sizeof(body), "{\"version\":\"%s\"}", v0);
    j = httpj(&f, "POST", "/v1/apps/sleepy/rollback", body, &st);
    ASSERT_INT_EQ(st, 200); /* overrides the running deployment */
    ASSERT_STR_EQ(gets(j, "version"), v0);
    cJSON_Delete(j);
    j = httpj(&f, "POST", "/v1/apps/sleepy/rollback", "{\"version\":\"1999\"}", &st);
    ASSERT_INT_EQ(st, 404);
    cJSON_Delete(j);
    /* DELETE /v2/apps overrides locks by default (compat.md §7.1). */
    ASSERT_INT_EQ(http(&f, "DELETE", "/v2/apps/sleepy", NULL, NULL), 200);
    cm_free(&d1);
    cm_free(&d2);
    cm_free(&d3);
    cm_free(&v0);
    fx_stop(&f);
}

TEST(group_dependencies_order_the_plan_and_cycles_are_named)
{
    struct fx f;
    fx_start(&f);
    f.keep_deploys = true;
    int st;
    cJSON *j = httpj(&f, "PUT", "/v2/groups",
                     "{\"id\":\"/shop\",\"apps\":[{\"id\":\"web\",\"cmd\":\"sleep 1\","
                     "\"dependencies\":[\"backend\"]}],\"groups\":[{\"id\":\"backend\","
                     "\"dependencies\":[\"/shop/db\"],\"apps\":[{\"id\":\"api\",\"cmd\":"
                     "\"sleep 1\"}]},{\"id\":\"db\",\"apps\":[{\"id\":\"pg\",\"cmd\":"
                     "\"sleep 1\"}]}]}",
                     &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    j = httpj(&f, "GET", "/v2/deployments", NULL, &st);
    const cJSON *steps = get(cJSON_GetArrayItem(j, 0), "steps");
    ASSERT_INT_EQ(cJSON_GetArraySize(steps), 3);
    const char *want[] = {"/shop/db/pg", "/shop/backend/api", "/shop/web"};
    for (int i = 0; i < 3; i++) {
        const cJSON *a =
            cJSON_GetArrayItem(get(cJSON_GetArrayItem(steps, i), "actions"), 0);
        ASSERT_STR_EQ(gets(a, "app"), want[i]);
        ASSERT_STR_EQ(gets(a, "action"), "StartApplication");
    }
    cJSON_Delete(j);
    /* A cycle is refused with Marathon's message and the cycle named. */
    j = httpj(&f, "PUT", "/v2/groups?force=true",
              "{\"id\":\"/c\",\"apps\":[{\"id\":\"a\",\"cmd\":\"sleep 1\","
              "\"dependencies\":[\"b\"]},{\"id\":\"b\",\"cmd\":\"sleep 1\","
              "\"dependencies\":[\"a\"]}]}",
              &st);
    ASSERT_INT_EQ(st, 422);
    char *text = cJSON_PrintUnformatted(j);
    ASSERT_TRUE(strstr(text, "cycle: /c/a -> /c/b -> /c/a") != NULL);
    cJSON_free(text);
    cJSON_Delete(j);
    /* PUT replaces the group: an app left out is stopped. */
    j = httpj(&f, "PUT", "/v2/groups?force=true",
              "{\"id\":\"/shop\",\"apps\":[{\"id\":\"web\",\"cmd\":\"sleep 1\","
              "\"dependencies\":[\"backend\"]}],\"groups\":[{\"id\":\"backend\","
              "\"dependencies\":[\"/shop/db\"],\"apps\":[{\"id\":\"api\",\"cmd\":"
              "\"sleep 1\"}]}]}",
              &st);
    ASSERT_INT_EQ(st, 200);
    cJSON_Delete(j);
    ASSERT_INT_EQ(http(&f, "GET", "/v2/apps/shop/db/pg", NULL, NULL), 404);
    ASSERT_INT_EQ(http(&f, "GET", "/v2/apps/shop/backend/api", NULL, NULL), 200);
    fx_stop(&f);
}

/* ------------------------------------------------------------------ proposals */

TEST(refused_proposal_is_an_error_and_changes_nothing)
{
    struct fx f;
    fx_start(&f);
    f.refuse = CM_ENOTLEADER;
    int st;
    cJSON *j = httpj(&f, "POST", "/v2/apps", SLEEPY, &st);
    ASSERT_INT_EQ(st, 503);
    ASSERT_TRUE(strstr(gets(j, "message"), "no leader") != NULL);
    cJSON_Delete(j);
    f.refuse = 0;
    ASSERT_INT_EQ(app_count(&f), 0);
    fx_stop(&f);
}

/* The client leaves before its write is applied: the answer is dropped. Then
 * the api is freed with a write still in flight: it completes harmlessly. */
TEST(write_outlives_client_and_api)
{
    struct fx f;
    fx_start(&f);
    f.hold = true;
    int status = 0;
    char *body = NULL;
    struct cm_errbuf eb;
    int rv = cm_http_request_sync(f.addr, "POST", "/v2/apps", SLEEPY, &status, &body, 300,
                                  &eb);
    ASSERT_ERR(rv, CM_ETIMEDOUT);
    cm_free(&body);
    fx_release(&f);
    ASSERT_INT_EQ(app_count(&f), 1);

    f.hold = true;
    rv = cm_http_request_sync(f.addr, "DELETE", "/v2/apps/sleepy", NULL, &status, &body,
                              300, &eb);
    ASSERT_ERR(rv, CM_ETIMEDOUT);
    pthread_mutex_lock(&f.mu);
    f.free_api = true;
    fx_sync(&f);
    fx_release(&f);
    fx_stop(&f);
}
