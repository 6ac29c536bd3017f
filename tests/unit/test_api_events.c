/* GET /v2/events over a real HTTP server on 127.0.0.1 (port 0) and a real
 * state.db, all on the test's thread: the test applies commands to the replica
 * as raft would, hands the events over as the daemon does after each batch
 * (cm_api_publish_events), and reads the stream with raw sockets while it turns
 * the loop. Checks the SSE framing, Marathon's shapes, the event_type filter,
 * attach/detach, slow readers being dropped, disconnects and heartbeats. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "base/base.h"
#include "net/http.h"
#include "state/db.h"
#include "test.h"

#define V1 "2026-11-22T14:00:00.000Z"

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
    uint16_t port;
    ev_timer apply_w;
    struct pend *q;
    uint64_t index;
};

/* A raw client: what it sent, what it got. */
struct client {
    int fd;
    struct cm_buf in;
    bool eof;
};

/* ------------------------------------------------------------------ fake ops */

static struct cm_state *op_state(void *data)
{
    return ((struct fx *)data)->st;
}

static void apply_now(struct fx *f, const char *cmd)
{
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_validate(f->st, cmd, strlen(cmd), &eb));
    ASSERT_OK(cm_state_apply(f->st, ++f->index, cmd, strlen(cmd), &eb));
}

/* Proposals are applied from the loop, then the batch's events are published,
 * as the daemon does. */
static void apply_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct fx *f = cm_container_of(w, struct fx, apply_w);
    while (f->q != NULL) {
        struct pend *p = f->q;
        f->q = p->next;
        struct cm_errbuf eb;
        int rv = cm_state_apply(f->st, ++f->index, p->cmd, p->len, &eb);
        p->done(p->arg, rv, f->index, rv != 0 ? eb.msg : NULL);
        cm_free(&p->cmd);
        cm_free(&p);
    }
    cm_api_publish_events(f->api);
}

static int op_propose(void *data, const char *cmd, size_t len, cm_api_done_fn done,
                      void *arg, struct cm_errbuf *eb)
{
    struct fx *f = data;
    int rv = cm_state_validate(f->st, cmd, len, eb);
    if (rv != 0) {
        return rv;
    }
    struct pend *p = cm_calloc(1, sizeof(*p));
    ASSERT_NOT_NULL(p);
    p->cmd = cm_memdup(cmd, len);
    p->len = len;
    p->done = done;
    p->arg = arg;
    struct pend **tail = &f->q;
    while (*tail != NULL) {
        tail = &(*tail)->next;
    }
    *tail = p;
    ev_timer_stop(f->loop, &f->apply_w);
    ev_timer_set(&f->apply_w, 0.0, 0.0);
    ev_timer_start(f->loop, &f->apply_w);
    return 0;
}

static int64_t op_now(void *data)
{
    (void)data;
    return 1795356000000LL; /* 2026-11-22T14:00:00.000Z */
}

static bool op_leader(void *data, char *buf, size_t cap)
{
    struct fx *f = data;
    snprintf(buf, cap, "127.0.0.1:%u", f->port);
    return true;
}

static const char *op_node(void *data)
{
    (void)data;
    return "node-a";
}

static const char *op_http(void *data)
{
    (void)data;
    return "127.0.0.1";
}

/* ------------------------------------------------------------------ fixture */

static void fx_open(struct fx *f, size_t max_queued, unsigned heartbeat_ms)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/events-api-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(f->dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/state.db", f->dir);
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_open(path, &f->st, &eb));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    ASSERT_NOT_NULL(f->loop);
    ev_timer_init(&f->apply_w, apply_cb, 0., 0.);
    ASSERT_OK(cm_http_server_new(f->loop, NULL, &f->srv));
    ASSERT_OK(cm_http_server_listen(f->srv, "127.0.0.1:0", &eb));
    f->port = cm_http_server_port(f->srv);
    struct cm_api_ops ops = {
        .data = f,
        .state = op_state,
        .propose = op_propose,
        .now_ms = op_now,
        .leader = op_leader,
        .node_name = op_node,
        .http_address = op_http,
        .loop = f->loop,
        .events_max_queued = max_queued,
        .events_heartbeat_ms = heartbeat_ms,
    };
    ASSERT_OK(cm_api_start(f->srv, &ops, &f->api));
}

static void fx_close(struct fx *f)
{
    cm_http_server_free(f->srv);
    cm_api_free(f->api);
    ev_timer_stop(f->loop, &f->apply_w);
    while (f->q != NULL) {
        struct pend *p = f->q;
        f->q = p->next;
        cm_free(&p->cmd);
        cm_free(&p);
    }
    ev_loop_destroy(f->loop);
    cm_state_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    ASSERT_INT_EQ(system(cmd), 0);
}

/* ------------------------------------------------------------------ clients */

static void client_open(struct fx *f, struct client *c, const char *request, int rcvbuf)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_INT_OP(c->fd, >=, 0);
    if (rcvbuf > 0) {
        ASSERT_INT_EQ(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)),
                      0);
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_INT_EQ(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    size_t len = strlen(request);
    ASSERT_INT_EQ(send(c->fd, request, len, 0), (ssize_t)len);
}

static void client_get(struct fx *f, struct client *c, const char *target,
                       const char *accept)
{
    char req[1024];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n%s%s%s\r\n", target,
             accept ? "Accept: " : "", accept ? accept : "", accept ? "\r\n" : "");
    client_open(f, c, req, 0);
}

static void client_close(struct client *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    cm_buf_done(&c->in);
}

static void client_read(struct client *c)
{
    while (c->fd >= 0 && !c->eof) {
        char buf[65536];
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            ASSERT_OK(cm_buf_append(&c->in, buf, (size_t)n));
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            c->eof = true; /* end, or reset */
        } else {
            return;
        }
    }
}

/* The body so far, de-chunked; NULL before the head is complete. */
static char *client_body(const struct client *c, struct cm_buf *out)
{
    cm_buf_clear(out);
    const char *d = c->in.data;
    const char *head_end = d ? strstr(d, "\r\n\r\n") : NULL;
    if (head_end == NULL) {
        return NULL;
    }
    const char *p = head_end + 4;
    const char *end = d + c->in.len;
    while (p < end) {
        char *e;
        unsigned long n = strtoul(p, &e, 16);
        if (e == p || e + 2 > end || e[0] != '\r') {
            break;
        }
        p = e + 2;
        if (n == 0 || p + n + 2 > end) {
            break;
        }
        ASSERT_OK(cm_buf_append(out, p, n));
        p += n + 2;
    }
    ASSERT_OK(cm_buf_puts(out, ""));
    return out->data;
}

typedef bool (*cond_fn)(void *arg);

/* Turn the loop and read @cs until @cond holds; a guard against hanging, not a
 * timing check (generous on a busy machine). */
static void pump_until(struct fx *f, struct client **cs, size_t n, cond_fn cond,
                       void *arg)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        ev_run(f->loop, EVRUN_NOWAIT);
        for (size_t i = 0; i < n; i++) {
            client_read(cs[i]);
        }
        if (cond(arg)) {
            return;
        }
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        ASSERT_INT_OP(t.tv_sec - t0.tv_sec, <, 60);
        usleep(1000);
    }
}

struct wait_text {
    struct client *c;
    const char *needle;
    int times;
};

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; p != NULL && (p = strstr(p, needle)) != NULL; p++) {
        n++;
    }
    return n;
}

static bool has_text(void *arg)
{
    struct wait_text *w = arg;
    struct cm_buf b = {0};
    const char *body = client_body(w->c, &b);
    bool ok = body != NULL && count_of(body, w->needle) >= (w->times ? w->times : 1);
    cm_buf_done(&b);
    return ok;
}

static void wait_text(struct fx *f, struct client *c, const char *needle, int times)
{
    struct wait_text w = {c, needle, times};
    pump_until(f, &c, 1, has_text, &w);
}

static bool has_eof(void *arg)
{
    return ((struct client *)arg)->eof;
}

/* The frames of @body: "event: T\ndata: J\n\n" each; comments skipped. Checks
 * each frame's shape and that J is one JSON object whose eventType is T. */
struct frames {
    size_t n;
    char type[64][64];
    cJSON *data[64];
};

static void frames_parse(const char *body, struct frames *fr)
{
    memset(fr, 0, sizeof(*fr));
    const char *p = body;
    while (*p != '\0') {
        const char *end = strstr(p, "\n\n");
        ASSERT_NOT_NULL(end);
        if (p[0] == ':') { /* a comment (heartbeat) */
            p = end + 2;
            continue;
        }
        ASSERT_TRUE(strncmp(p, "event: ", 7) == 0);
        const char *nl = strchr(p, '\n');
        ASSERT_TRUE(strncmp(nl + 1, "data: ", 6) == 0);
        ASSERT_INT_OP(fr->n, <, 64);
        snprintf(fr->type[fr->n], sizeof(fr->type[0]), "%.*s", (int)(nl - p - 7), p + 7);
        const char *data = nl + 7;
        ASSERT_TRUE(memchr(data, '\n', (size_t)(end - data)) == NULL); /* one line */
        cJSON *j = cJSON_ParseWithLength(data, (size_t)(end - data));
        ASSERT_NOT_NULL(j);
        ASSERT_STR_EQ(cJSON_GetObjectItem(j, "eventType")->valuestring, fr->type[fr->n]);
        ASSERT_TRUE(cJSON_IsString(cJSON_GetObjectItem(j, "timestamp")));
        fr->data[fr->n++] = j;
        p = end + 2;
    }
}

static void frames_done(struct frames *fr)
{
    for (size_t i = 0; i < fr->n; i++) {
        cJSON_Delete(fr->data[i]);
    }
}

static void client_frames(struct client *c, struct frames *fr)
{
    struct cm_buf b = {0};
    const char *body = client_body(c, &b);
    ASSERT_NOT_NULL(body);
    frames_parse(body, fr);
    cm_buf_done(&b);
}

/* A metric's value from /metrics, fetched with a raw client while the loop
 * turns. */
struct wait_done {
    struct client *c;
};

static bool response_done(void *arg)
{
    struct client *c = arg;
    const char *d = c->in.data;
    const char *h = d ? strstr(d, "\r\n\r\n") : NULL;
    const char *cl = d ? strstr(d, "Content-Length: ") : NULL;
    return h != NULL && cl != NULL &&
           (size_t)(h + 4 - d) + strtoul(cl + 16, NULL, 10) <= c->in.len;
}

static long long metric(struct fx *f, const char *name)
{
    struct client c;
    client_open(f, &c, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                0);
    struct client *cs[] = {&c};
    pump_until(f, cs, 1, response_done, &c);
    char needle[128];
    snprintf(needle, sizeof(needle), "\n%s ", name);
    const char *p = strstr(c.in.data, needle);
    ASSERT_NOT_NULL(p);
    long long v = strtoll(p + strlen(needle), NULL, 10);
    client_close(&c);
    return v;
}

/* ------------------------------------------------------------------ commands */

static const char *web_put =
    "{\"type\":\"app.put\",\"at\":1795356000000,\"version\":\"" V1
    "\","
    "\"app\":{\"id\":\"/web\",\"cmd\":\"sleep 1000\",\"instances\":2}}";

static void assign(struct fx *f, unsigned first, unsigned n)
{
    struct cm_buf cmd = {0};
    ASSERT_OK(
        cm_buf_puts(&cmd, "{\"type\":\"task.assign\",\"at\":1795356001000,\"tasks\":["));
    for (unsigned i = 0; i < n; i++) {
        ASSERT_OK(
            cm_buf_printf(&cmd,
                          "%s{\"id\":\"web.%06u\",\"app\":\"/web\",\"version\":\"" V1
                          "\",\"node\":\"n1\",\"host\":\"10.0.0.1\",\"ports\":[31000]}",
                          i ? "," : "", first + i));
    }
    ASSERT_OK(cm_buf_puts(&cmd, "]}"));
    apply_now(f, cmd.data);
    cm_buf_done(&cmd);
}

/* ------------------------------------------------------------------ tests */

TEST(events_stream_frames_in_log_order)
{
    struct fx f;
    fx_open(&f, 0, 0);
    struct client c;
    client_get(&f, &c, "/v2/events", "text/event-stream");
    wait_text(&f, &c, "event: event_stream_attached\n", 1);
    ASSERT_TRUE(strncmp(c.in.data, "HTTP/1.1 200 OK\r\n", 17) == 0);
    ASSERT_NOT_NULL(strstr(c.in.data, "Content-Type: text/event-stream\r\n"));
    ASSERT_NOT_NULL(strstr(c.in.data, "Transfer-Encoding: chunked\r\n"));
    ASSERT_NOT_NULL(strstr(c.in.data, "Cache-Control: no-cache\r\n"));
    ASSERT_TRUE(cm_state_events_recording(f.st));

    apply_now(&f, web_put);
    assign(&f, 1, 1);
    apply_now(&f,
              "{\"type\":\"task.status\",\"at\":1795356002000,\"id\":\"web.000001\","
              "\"state\":\"running\",\"health\":\"healthy\"}");
    cm_api_publish_events(f.api);
    apply_now(&f, "{\"type\":\"app.delete\",\"at\":1795356003000,\"id\":\"/web\"}");
    cm_api_publish_events(f.api);
    wait_text(&f, &c, "event: app_terminated_event\n", 1);

    struct frames fr;
    client_frames(&c, &fr);
    static const char *const want[] = {
        "event_stream_attached",       "api_post_event",
        "status_update_event",         "instance_changed_event",
        "status_update_event",         "instance_changed_event",
        "health_status_changed_event", "instance_health_changed_event",
        "status_update_event",         "instance_changed_event",
        "app_terminated_event",
    };
    ASSERT_INT_EQ(fr.n, CM_ARRAY_SIZE(want));
    for (size_t i = 0; i < fr.n; i++) {
        ASSERT_STR_EQ(fr.type[i], want[i]);
    }
    ASSERT_STR_EQ(cJSON_GetObjectItem(fr.data[0], "remoteAddress")->valuestring,
                  "127.0.0.1");
    ASSERT_STR_EQ(cJSON_GetObjectItem(fr.data[4], "taskStatus")->valuestring,
                  "TASK_RUNNING");
    ASSERT_STR_EQ(cJSON_GetObjectItem(fr.data[8], "taskStatus")->valuestring,
                  "TASK_KILLING");
    ASSERT_STR_EQ(cJSON_GetObjectItem(fr.data[10], "appId")->valuestring, "/web");
    frames_done(&fr);
    ASSERT_INT_EQ(metric(&f, "clusterctl_events_subscribers"), 1);
    ASSERT_INT_EQ(metric(&f, "clusterctl_events_published_total"), 10);
    client_close(&c);
    fx_close(&f);
}

TEST(events_filter_by_type)
{
    struct fx f;
    fx_open(&f, 0, 0);
    struct client all, some;
    client_get(&f, &all, "/v2/events", NULL); /* no Accept: anything goes */
    wait_text(&f, &all, "event: event_stream_attached\n", 1);
    client_get(&f, &some,
               "/v2/events?event_type=status_update_event&plan-format=light"
               "&event_type=app_terminated_event",
               "text/event-stream");
    /* Its own attach reaches the unfiltered client, not itself. */
    wait_text(&f, &all, "event: event_stream_attached\n", 2);
    apply_now(&f, web_put);
    assign(&f, 1, 2);
    apply_now(&f, "{\"type\":\"app.delete\",\"at\":1795356003000,\"id\":\"/web\"}");
    cm_api_publish_events(f.api);
    wait_text(&f, &some, "event: app_terminated_event\n", 1);
    wait_text(&f, &all, "event: app_terminated_event\n", 1);
    struct frames fr;
    client_frames(&some, &fr);
    ASSERT_INT_EQ(fr.n, 5); /* 2 staging, 2 killing, the app's end */
    for (size_t i = 0; i < 4; i++) {
        ASSERT_STR_EQ(fr.type[i], "status_update_event");
    }
    ASSERT_STR_EQ(fr.type[4], "app_terminated_event");
    frames_done(&fr);
    client_frames(&all, &fr);
    ASSERT_INT_EQ(fr.n, 2 + 1 + 8 + 1);
    frames_done(&fr);
    client_close(&all);
    client_close(&some);
    fx_close(&f);
}

static bool response_head(void *arg)
{
    struct client *c = arg;
    return c->in.data != NULL && strstr(c->in.data, "\r\n\r\n") != NULL;
}

TEST(events_refusals)
{
    struct fx f;
    fx_open(&f, 0, 0);
    struct client c;
    client_get(&f, &c, "/v2/events", "application/json");
    struct client *cs[] = {&c};
    pump_until(&f, cs, 1, response_head, &c);
    ASSERT_TRUE(strncmp(c.in.data, "HTTP/1.1 406 ", 13) == 0);
    client_close(&c);

    char target[2048] = "/v2/events?";
    for (int i = 0; i < 33; i++) {
        snprintf(target + strlen(target), sizeof(target) - strlen(target),
                 "event_type=t%d&", i);
    }
    client_get(&f, &c, target, "text/event-stream");
    pump_until(&f, cs, 1, response_head, &c);
    ASSERT_TRUE(strncmp(c.in.data, "HTTP/1.1 400 ", 13) == 0);
    ASSERT_NOT_NULL(strstr(c.in.data, "event_type: at most 32 types"));
    client_close(&c);
    ASSERT_FALSE(cm_state_events_recording(f.st));
    fx_close(&f);
}

/* A write through the API: the api_post_event names the client and the URI. */
TEST(events_api_post_names_the_client)
{
    struct fx f;
    fx_open(&f, 0, 0);
    struct client c, post;
    client_get(&f, &c, "/v2/events?event_type=api_post_event", "text/event-stream");
    struct client *cs[] = {&c};
    pump_until(&f, cs, 1, response_head, &c);
    static const char body[] = "{\"id\":\"/shop/web\",\"cmd\":\"sleep 1000\",\"mem\":32}";
    char req[512];
    snprintf(req, sizeof(req),
             "POST /v2/apps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
             strlen(body), body);
    client_open(&f, &post, req, 0);
    struct client *both[] = {&c, &post};
    struct wait_text w = {&c, "event: api_post_event\n", 1};
    pump_until(&f, both, 2, has_text, &w);
    ASSERT_TRUE(strncmp(post.in.data, "HTTP/1.1 201 ", 13) == 0);
    struct frames fr;
    client_frames(&c, &fr);
    ASSERT_INT_EQ(fr.n, 1);
    ASSERT_STR_EQ(cJSON_GetObjectItem(fr.data[0], "clientIp")->valuestring, "127.0.0.1");
    ASSERT_STR_EQ(cJSON_GetObjectItem(fr.data[0], "uri")->valuestring, "/v2/apps");
    ASSERT_STR_EQ(cJSON_GetObjectItem(fr.data[0], "timestamp")->valuestring,
                  "2026-11-22T14:00:00.000Z");
    cJSON *app = cJSON_GetObjectItem(fr.data[0], "appDefinition");
    ASSERT_STR_EQ(cJSON_GetObjectItem(app, "id")->valuestring, "/shop/web");
    ASSERT_TRUE(cJSON_IsString(cJSON_GetObjectItem(app, "version")));
    frames_done(&fr);
    client_close(&post);
    client_close(&c);
    fx_close(&f);
}

struct slow_ctx {
    struct fx *f;
    struct client *fast;
    unsigned batches;
};

/* A subscriber that never reads is dropped once its backlog passes the cap; one
 * that reads keeps everything, and learns the other one left. */
TEST(events_slow_reader_dropped_fast_one_kept)
{
    struct fx f;
    fx_open(&f, 1024 * 1024, 0);
    struct client fast, slow;
    client_get(&f, &fast, "/v2/events", "text/event-stream");
    wait_text(&f, &fast, "event: event_stream_attached\n", 1);
    client_open(&f, &slow, "GET /v2/events HTTP/1.1\r\nHost: x\r\n\r\n", 4096);
    wait_text(&f, &fast, "event: event_stream_attached\n", 2);
    apply_now(&f, web_put);
    cm_api_publish_events(f.api);
    /* Batches of 500 tasks (1000 events, ~400 KiB, read by the fast one before
     * the next) until the kernel's buffers toward the slow reader are full and
     * its backlog would pass 1 MiB. */
    unsigned batches = 0;
    while (metric(&f, "clusterctl_events_slow_dropped_total") == 0) {
        ASSERT_INT_OP(batches, <, 200);
        assign(&f, batches * 500, 500);
        cm_api_publish_events(f.api);
        batches++;
        char needle[64];
        snprintf(needle, sizeof(needle), "\"taskId\":\"web.%06u\"", batches * 500 - 1);
        wait_text(&f, &fast, needle, 1);
    }
    wait_text(&f, &fast, "event: event_stream_detached\n", 1);
    ASSERT_INT_EQ(metric(&f, "clusterctl_events_subscribers"), 1);
    /* The fast reader got every event of every batch. */
    struct cm_buf b = {0};
    const char *body = client_body(&fast, &b);
    ASSERT_INT_EQ(count_of(body, "event: status_update_event\n"), (int)(batches * 500));
    cm_buf_done(&b);
    /* The slow one's connection was closed: it reads what was sent, then EOF. */
    struct client *cs[] = {&slow};
    pump_until(&f, cs, 1, has_eof, &slow);
    client_close(&slow);
    client_close(&fast);
    fx_close(&f);
}

static bool no_subscribers(void *arg)
{
    struct fx *f = arg;
    return !cm_state_events_recording(f->st);
}

TEST(events_disconnects_are_freed_and_announced)
{
    struct fx f;
    fx_open(&f, 0, 0);
    struct client a, b;
    client_get(&f, &a, "/v2/events", "text/event-stream");
    wait_text(&f, &a, "event: event_stream_attached\n", 1);
    client_get(&f, &b, "/v2/events", "text/event-stream");
    wait_text(&f, &b, "event: event_stream_attached\n", 1);
    ASSERT_INT_EQ(metric(&f, "clusterctl_events_subscribers"), 2);
    client_close(&b);
    wait_text(&f, &a, "event: event_stream_detached\n", 1);
    ASSERT_INT_EQ(metric(&f, "clusterctl_events_subscribers"), 1);
    ASSERT_TRUE(cm_state_events_recording(f.st));
    client_close(&a);
    struct client *none[] = {NULL};
    pump_until(&f, none, 0, no_subscribers, &f);
    ASSERT_INT_EQ(metric(&f, "clusterctl_events_subscribers"), 0);
    ASSERT_INT_EQ(metric(&f, "clusterctl_events_attached_total"), 2);
    /* Nobody listens: nothing is recorded or kept. */
    apply_now(&f, web_put);
    cm_api_publish_events(f.api);
    ASSERT_FALSE(cm_state_events_recording(f.st));
    fx_close(&f);
}

TEST(events_heartbeats_keep_quiet_streams_alive)
{
    struct fx f;
    fx_open(&f, 0, 20);
    struct client c;
    client_get(&f, &c, "/v2/events", "text/event-stream");
    wait_text(&f, &c, ":\n\n", 3);
    struct frames fr;
    client_frames(&c, &fr); /* comments skipped; the frames still parse */
    ASSERT_INT_EQ(fr.n, 1);
    frames_done(&fr);
    client_close(&c);
    fx_close(&f);
}

/* Closing the server and the api with subscribers attached ends their streams
 * and frees everything (ASan builds check the leaks). */
TEST(events_teardown_with_subscribers)
{
    struct fx f;
    fx_open(&f, 0, 0);
    struct client a, b;
    client_get(&f, &a, "/v2/events", "text/event-stream");
    wait_text(&f, &a, "event: event_stream_attached\n", 1);
    client_get(&f, &b, "/v2/events?event_type=status_update_event", "text/event-stream");
    wait_text(&f, &a, "event: event_stream_attached\n", 2);
    apply_now(&f, web_put);
    fx_close(&f);
    client_read(&a);
    ASSERT_TRUE(a.eof);
    client_close(&a);
    client_close(&b);
}
