/* Fuzz the whole HTTP API (lib/api) over a real replica: a real struct cm_state in a
 * private temp dir, a real cm_http_server on 127.0.0.1:0 with every route
 * cm_api_start registers, and ops like tests/unit/test_api_routes.c's (proposals
 * validated, then applied to the replica from the loop; a fixed leader; a clock
 * the input moves). One thread: the client here and the server share the libev
 * loop, which is driven with EVRUN_NOWAIT between non-blocking socket calls.
 *
 * Input: text, up to 12 requests separated by the line "===" ("\n===\n"). Each:
 *
 *     [!OPTIONS]                       zero or more lines starting with '!'
 *     METHOD TARGET                    raw bytes (no CR/LF); " HTTP/1.1" is added
 *     Name: value                      header lines, as given, until an empty line
 *
 *     BODY                             the rest of the block, bytes as given
 *
 * Host is added when the block has none, Content-Length when it has neither
 * Content-Length nor Transfer-Encoding (and a body, or POST/PUT/PATCH), and
 * "Connection: close" always (one request per connection). In the
 * target, headers and body, `~x` is replaced (not '$': app bodies say $PORT):
 * `~~` '~', `~d` the deployment id of the last answer that gave one, `~v` the
 * last app version an answer showed, `~0`..`~9` and `~A`..`~Z` fragments of
 * real routes and queries (frag[] below); any other `~x` stays.
 *
 * Options (characters after '!', for this request):
 *   k          deployments stay running (no controller) until the input ends
 *   t<digits>  advance the clock by that many ms (at most 10^9)
 *   n          no leader known
 *   r          proposals refused synchronously (CM_ENOTLEADER)
 *   l          proposals fail after being queued (leadership lost)
 *   c          the client leaves once the request is sent
 *   s          a streamed answer (events, logs) stays open, unread, until the
 *              input ends: later changes are published to it
 *
 * Baseline: nodes node-a and node-b, apps /sleepy (two versions) and /prod/{db,web}
 * (a dependency), tasks in several states with health results. Before every
 * input the replica is restored to it (cm_state_restore of a snapshot) and the
 * server and api are made anew, so that every input replays alone; ~v starts as
 * /sleepy's first version. FUZZ_API_VERBOSE=1 prints each request and the start of
 * its answer, =2 each whole answer.
 *
 * Oracles (abort = finding):
 *   - every request gets an answer (bounded loop turns; a streamed answer counts
 *     once its head came), status in [100, 599], and nothing after it;
 *   - never 500: that is for storage failures, and storage does not fail here;
 *   - a 4xx/5xx body (not HEAD) is JSON with a non-empty string "message";
 *   - a non-empty 2xx application/json body is JSON;
 *   - a GET/HEAD or an error answer changes nothing (the applied index stays);
 *   - every connection is gone once its client closed, the proposals drain;
 *   - after every input the replica reads back: every app spec and version
 *     parses with its id, an app's instances column is its spec's, task states
 *     are known, deployment JSON parses; and
 *     every CHECK_OPEN_EVERY inputs it opens on a second connection. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <ev.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api.h"
#include "base/base.h"
#include "fuzz.h"
#include "net/http.h"
#include "state/db.h"
#include "state/state.h"

#define NOW0             1767225600000LL /* 2026-01-01T00:00:00.000Z */
#define MAX_REQS         12
#define CHECK_OPEN_EVERY 32
#define MAX_TURNS        20000 /* loop turns for one answer */
#define STALL_TURNS      400   /* turns without a byte: a streamed answer is done */
#define MAX_HELD         4

struct pend {
    char *cmd; /* NULL: a read barrier */
    size_t len;
    cm_api_done_fn done;
    void *arg;
    bool fail;
    struct pend *next;
};

struct fz {
    char dir[64];
    char db[128];
    char base[128];
    struct ev_loop *loop;
    struct cm_http_server *srv;
    struct cm_state *st;
    struct cm_api *api;
    ev_timer apply_w;
    struct pend *q;
    struct pend **q_tail;
    char addr[32];
    uint16_t port;
    int64_t now;
    bool has_leader;
    bool keep_deploys;
    bool fail_async;
    int refuse;
    unsigned inputs;
    char last_dep[40];
    char last_ver[32];
    char base_ver[32];  /* ~v at the start of an input */
    int held[MAX_HELD]; /* streams kept open, unread, until the input ends */
    unsigned n_held;
};

static struct fz *g_fz;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A finding: say what, remove the temp dir (abort skips atexit), abort. */
static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_api: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    if (g_fz != NULL) {
        nftw(g_fz->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    }
    abort();
}

/* ------------------------------------------------------------------ ops */

static struct cm_state *op_state(void *data)
{
    return ((struct fz *)data)->st;
}

static void apply_queue(struct fz *f)
{
    while (f->q != NULL) {
        struct pend *p = f->q;
        f->q = p->next;
        if (f->q == NULL) {
            f->q_tail = &f->q;
        }
        if (p->cmd == NULL) {
            p->done(p->arg, 0, cm_state_applied_index(f->st), NULL);
            cm_free(&p);
            continue;
        }
        if (p->fail) {
            p->done(p->arg, CM_ENOTLEADER, 0, "leadership lost");
            cm_free(&p->cmd);
            cm_free(&p);
            continue;
        }
        uint64_t idx = cm_state_applied_index(f->st) + 1;
        struct cm_errbuf eb;
        cm_errbuf_clear(&eb);
        int rv = cm_state_apply(f->st, idx, p->cmd, p->len, &eb);
        if (rv != 0) {
            fail("apply failed", eb.msg);
        }
        cJSON *c = cJSON_ParseWithLength(p->cmd, p->len);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(c, "type");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        if (!f->keep_deploys && cJSON_IsString(type) && cJSON_IsString(id) &&
            strcmp(type->valuestring, "deploy.start") == 0) {
            /* No controller: the deployment finishes at once. */
            struct cm_buf done = {0};
            cm_buf_printf(&done, "{\"type\":\"deploy.done\",\"at\":%lld,\"id\":\"%s\"}",
                          (long long)f->now, id->valuestring);
            idx++;
            if (cm_state_apply(f->st, idx, done.data, done.len, &eb) != 0) {
                fail("apply deploy.done failed", eb.msg);
            }
            cm_buf_done(&done);
        }
        cJSON_Delete(c);
        p->done(p->arg, 0, idx, NULL);
        cm_free(&p->cmd);
        cm_free(&p);
    }
    cm_api_publish_events(f->api);
}

static void apply_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    apply_queue(cm_container_of(w, struct fz, apply_w));
}

static void enqueue(struct fz *f, struct pend *p)
{
    *f->q_tail = p;
    f->q_tail = &p->next;
    ev_timer_stop(f->loop, &f->apply_w);
    ev_timer_set(&f->apply_w, 0.0, 0.0);
    ev_timer_start(f->loop, &f->apply_w);
}

static int op_propose(void *data, const char *cmd, size_t len, cm_api_done_fn done,
                      void *arg, struct cm_errbuf *eb)
{
    struct fz *f = data;
    if (f->refuse != 0) {
        return cm_err_setf(eb, f->refuse, "no leader (fuzz)");
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
    if (p->cmd == NULL) {
        cm_free(&p);
        return CM_ENOMEM;
    }
    p->len = len;
    p->done = done;
    p->arg = arg;
    p->fail = f->fail_async;
    enqueue(f, p);
    return 0;
}

static int op_read_barrier(void *data, cm_api_done_fn done, void *arg)
{
    struct fz *f = data;
    struct pend *p = cm_calloc(1, sizeof(*p));
    if (p == NULL) {
        return CM_ENOMEM;
    }
    p->done = done;
    p->arg = arg;
    enqueue(f, p);
    return 0;
}

static int64_t op_now(void *data)
{
    return ((struct fz *)data)->now;
}

static bool op_leader(void *data, char *buf, size_t cap)
{
    struct fz *f = data;
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
    return ((struct fz *)data)->addr;
}

static const char *op_cluster_id(void *data)
{
    (void)data;
    return "fuzz-cluster";
}

static int op_task_log(void *data, const char *task, const char *stream, int64_t offset,
                       size_t max, struct cm_buf *out, int64_t *ret_next)
{
    (void)data;
    if (strcmp(task, "sleepy.3") == 0) {
        return CM_ENOTFOUND; /* no sandbox here */
    }
    char text[128];
    snprintf(text, sizeof(text), "%s of %s\n", stream, task);
    int64_t len = (int64_t)strlen(text);
    if (offset < 0) {
        offset = len + offset < 0 ? 0 : len + offset;
    }
    if (offset > len) {
        offset = len;
    }
    size_t n = CM_MIN((size_t)(len - offset), max);
    *ret_next = offset + (int64_t)n;
    return cm_buf_append(out, text + offset, n);
}

static bool op_queue_reason(void *data, const char *app, char *buf, size_t cap)
{
    (void)data;
    if (strcmp(app, "/sleepy") != 0) {
        return false;
    }
    snprintf(buf, cap, "1 of 2 nodes lack memory; 1 fails hostname:UNIQUE");
    return true;
}

static void op_metrics(void *data, struct cm_buf *out)
{
    (void)data;
    cm_buf_puts(out, "clusterctl_fuzz 1\n");
}

static int op_members(void *data, struct cm_buf *out)
{
    struct fz *f = data;
    return cm_buf_printf(out,
                         "[{\"id\":1,\"name\":\"node-a\",\"address\":\"%s\","
                         "\"voter\":true,\"leader\":true}]",
                         f->addr);
}

static int64_t op_node_heard(void *data, const char *node)
{
    struct fz *f = data;
    return strcmp(node, "node-a") == 0 ? f->now - 1500 : -1;
}

/* ------------------------------------------------------------------ the client */

struct answer {
    bool head; /* the request was HEAD */
    int status;
    bool done;
    bool streamed;
    bool closed_early;
    bool cut; /* the request was incomplete; the server closed at its end */
    char ctype[64];
    char dep[40];
    struct cm_buf body;
};

static bool drained(struct fz *f)
{
    return f->q == NULL && cm_http_server_conns(f->srv) <= f->n_held;
}

/* Turn the loop until the server has dropped every connection but the held
 * streams and no proposal waits. */
static void settle(struct fz *f)
{
    for (int i = 0; i < MAX_TURNS && !drained(f); i++) {
        ev_run(f->loop, EVRUN_NOWAIT);
    }
    if (f->q != NULL) {
        fail("proposals never applied", NULL);
    }
    if (cm_http_server_conns(f->srv) > f->n_held) {
        fail("a connection outlived its client", NULL);
    }
}

/* The held streams' clients leave (end of an input). The server may have
 * dropped some already (a subscriber that does not read is cut off). */
static void release_held(struct fz *f)
{
    for (unsigned i = 0; i < f->n_held; i++) {
        close(f->held[i]);
    }
    f->n_held = 0;
    settle(f);
}

static void take_head(const struct cm_http_response *r, struct answer *a)
{
    a->status = r->status;
    const char *ct = cm_http_response_header(r, "content-type");
    snprintf(a->ctype, sizeof(a->ctype), "%s", ct != NULL ? ct : "");
    const char *dep = cm_http_response_header(r, "marathon-deployment-id");
    snprintf(a->dep, sizeof(a->dep), "%s", dep != NULL ? dep : "");
}

/* Feed @n bytes to @p; false when the server sent something that is not HTTP. */
static void feed(struct cm_http_parser *p, const char *data, size_t n, struct answer *a)
{
    while (!a->done) {
        size_t used = 0;
        int rv = cm_http_parser_feed(p, data, n, &used);
        if (rv < 0) {
            fail("the answer is not HTTP", cm_http_parser_error(p));
        }
        data += used;
        n -= used;
        if (rv == CM_HTTP_PARSE_HEAD) {
            take_head(cm_http_parser_response(p), a);
            cm_http_parser_set_body_limit(p, 64u << 20);
            continue;
        }
        if (rv == CM_HTTP_PARSE_DONE) {
            const struct cm_http_response *r = cm_http_parser_response(p);
            take_head(r, a);
            cm_buf_append(&a->body, r->body, r->body_len);
            a->done = true;
            /* The server's own 400 for a start line it cannot parse has a
             * body even when the method was HEAD (it does not trust the
             * line) and closes the connection after it: allowed. */
            if (n > 0 && !(a->head && a->status == 400)) {
                fail("bytes after the answer", NULL);
            }
            return;
        }
        if (n == 0) {
            return;
        }
    }
}

/* Whether @req holds one whole request as our parser reads it (the server's
 * parser): an error counts, the server answers it at once. */
static bool request_complete(const struct cm_buf *req)
{
    struct cm_http_parser *p = NULL;
    if (cm_http_parser_new(CM_HTTP_PARSE_REQUEST, &p) != 0) {
        fail("parser", NULL);
    }
    const char *data = req->data;
    size_t n = req->len;
    int rv;
    for (;;) {
        size_t used = 0;
        rv = cm_http_parser_feed(p, data, n, &used);
        data += used;
        n -= used;
        if (rv == CM_HTTP_PARSE_HEAD) {
            cm_http_parser_set_body_limit(p, 64u << 20);
            continue;
        }
        break;
    }
    cm_http_parser_free(p);
    return rv != CM_HTTP_PARSE_AGAIN;
}

/* Send @req on a new connection and read the answer into @a. */
static void exchange(struct fz *f, const struct cm_buf *req, bool head, bool leave,
                     bool hold, struct answer *a)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail("socket", strerror(errno));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        fail("connect", strerror(errno));
    }
    struct cm_http_parser *p = NULL;
    if (cm_http_parser_new(CM_HTTP_PARSE_RESPONSE, &p) != 0) {
        fail("parser", NULL);
    }
    cm_http_parser_set_head_request(p, head);
    size_t sent = 0;
    bool write_shut = false, eof = false, partial = !request_complete(req);
    int stall = 0, left_after = -1;
    char buf[65536];
    for (int turn = 0; turn < MAX_TURNS && !a->done && !eof; turn++) {
        bool progress = false;
        if (!write_shut && sent < req->len) {
            ssize_t n = send(fd, req->data + sent, req->len - sent, MSG_NOSIGNAL);
            if (n > 0) {
                sent += (size_t)n;
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                       errno != EINPROGRESS && errno != ENOTCONN) {
                write_shut = true; /* the server answered early and closed */
            }
        }
        if (leave && sent == req->len && left_after < 0) {
            left_after = turn + 3; /* let the handler start, then go */
        }
        if (left_after >= 0 && turn >= left_after) {
            a->closed_early = true;
            break;
        }
        ev_run(f->loop, EVRUN_NOWAIT);
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof(buf), 0);
            if (n > 0) {
                progress = true;
                feed(p, buf, (size_t)n, a);
                if (a->done) {
                    break;
                }
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                           errno != ENOTCONN)) {
                eof = true;
            }
            break;
        }
        if (eof && !a->done) {
            int rv = cm_http_parser_eof(p);
            if (rv == CM_HTTP_PARSE_DONE) {
                const struct cm_http_response *r = cm_http_parser_response(p);
                take_head(r, a);
                cm_buf_append(&a->body, r->body, r->body_len);
                a->done = true;
            }
        }
        stall = progress ? 0 : stall + 1;
        if (!a->done && stall >= STALL_TURNS && a->status != 0) {
            /* The head came and the body goes on: a stream (events, logs). */
            a->streamed = true;
            break;
        }
        if (stall >= STALL_TURNS && a->status == 0 && sent == req->len && partial &&
            !write_shut) {
            /* The input sent a request that is not complete (a short chunked
             * body, a Content-Length past the body): the server rightly waits
             * for the rest. End it: the server may close without an answer. */
            shutdown(fd, SHUT_WR);
            write_shut = true;
            stall = 0;
        }
    }
    if (a->streamed && hold && f->n_held < MAX_HELD) {
        f->held[f->n_held++] = fd; /* read no more of it */
    } else {
        close(fd);
    }
    cm_http_parser_free(p);
    a->cut = !a->done && partial && eof;
    if (!a->done && !a->streamed && !a->closed_early && !a->cut) {
        fail(eof ? "the server closed without an answer" : "no answer (hang)", NULL);
    }
    settle(f);
}

/* ------------------------------------------------------------------ requests */

static const char *const frag[36] = {
    /* ~0..~9 */
    "/v2/apps", "/v2/groups", "/v2/tasks", "/v2/deployments", "/v2/queue", "/v1/nodes",
    "/v1/apps", "/v1/tasks", "/v2/info", "/v1/deployments",
    /* ~A..~Z */
    "/restart", "/tasks", "/versions", "/apps", "/drain", "/undrain", "/promote",
    "/rollback", "/logs", "?embed=apps.tasks&embed=apps.counts&embed=apps.deployments",
    "?force=true", "?dryRun=true", "?scale=true", "?consistent=true", "/sleepy", "/prod",
    "/prod/web", "/metrics", "/ping", "/v2/leader", "/v1/members", "/v2/events",
    "?follow=1", "?partialUpdate=false", "&embed=group.groups&embed=group.apps",
    "?status[]=running&status[]=staging"};

static void subst(struct fz *f, const char *s, size_t n, struct cm_buf *out)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '~' || i + 1 == n) {
            cm_buf_append(out, &s[i], 1);
            continue;
        }
        char c = s[i + 1];
        const char *r = NULL;
        if (c == '~') {
            r = "~";
        } else if (c == 'd') {
            r = f->last_dep;
        } else if (c == 'v') {
            r = f->last_ver;
        } else if (c >= '0' && c <= '9') {
            r = frag[c - '0'];
        } else if (c >= 'A' && c <= 'Z') {
            r = frag[10 + c - 'A'];
        }
        if (r == NULL) {
            cm_buf_append(out, &s[i], 1);
            continue;
        }
        cm_buf_puts(out, r);
        i++;
    }
}

/* The next line of [*pos, end) without its CR LF; false at the end. */
static bool next_line(const char *s, size_t end, size_t *pos, size_t *ret_start,
                      size_t *ret_len)
{
    if (*pos >= end) {
        return false;
    }
    const char *nl = memchr(s + *pos, '\n', end - *pos);
    size_t stop = nl != NULL ? (size_t)(nl - s) : end;
    *ret_start = *pos;
    *ret_len = stop - *pos;
    if (*ret_len > 0 && s[stop - 1] == '\r') {
        (*ret_len)--;
    }
    *pos = nl != NULL ? stop + 1 : end;
    return true;
}

static bool has_prefix_ci(const char *s, size_t n, const char *p)
{
    size_t pl = strlen(p);
    return n >= pl && strncasecmp(s, p, pl) == 0;
}

/* Remember what later requests may refer to (~d, ~v). */
static void remember(struct fz *f, const struct answer *a)
{
    if (a->dep[0] != '\0') {
        snprintf(f->last_dep, sizeof(f->last_dep), "%s", a->dep);
    }
    cJSON *j = cJSON_ParseWithLength(a->body.data ? a->body.data : "", a->body.len);
    if (j == NULL) {
        return;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
    if (!cJSON_IsString(v)) {
        v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "app"),
                                             "version");
    }
    if (!cJSON_IsString(v)) {
        v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "versions"), 1);
    }
    if (cJSON_IsString(v)) {
        snprintf(f->last_ver, sizeof(f->last_ver), "%s", v->valuestring);
    }
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "deploymentId");
    if (!cJSON_IsString(d) && cJSON_IsArray(j)) {
        d = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(j, 0), "id");
    }
    if (cJSON_IsString(d) && strlen(d->valuestring) < sizeof(f->last_dep)) {
        snprintf(f->last_dep, sizeof(f->last_dep), "%s", d->valuestring);
    }
    cJSON_Delete(j);
}

static void check_answer(struct fz *f, const char *method, const char *target,
                         const struct answer *a, bool head, uint64_t before)
{
    char what[600];
    snprintf(what, sizeof(what), "%s %.400s -> %d %.120s", method, target, a->status,
             a->body.data ? a->body.data : "");
    const char *verbose = getenv("FUZZ_API_VERBOSE");
    if (verbose != NULL) {
        /* 1: the start of each answer; 2: all of it */
        fprintf(stderr, "%s%s\n",
                strcmp(verbose, "2") == 0 && a->body.data ? a->body.data : what,
                a->streamed ? " (streamed)" : "");
    }
    if (a->closed_early || a->cut) {
        return;
    }
    if (a->status < 100 || a->status > 599) {
        fail("status out of range", what);
    }
    if (a->status == 500) {
        fail("unexpected 500", what);
    }
    bool json = strncmp(a->ctype, "application/json", 16) == 0;
    if (a->status >= 400 && !head) {
        cJSON *j = cJSON_ParseWithLength(a->body.data ? a->body.data : "", a->body.len);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
        if (!json || j == NULL || !cJSON_IsString(m) || m->valuestring[0] == '\0') {
            fail("error answer without a JSON message", what);
        }
        cJSON_Delete(j);
    }
    /* An empty body is allowed: DELETE /v2/deployments/{id}?force=true gives 202
     * without one, as Marathon does. */
    if (a->status >= 200 && a->status < 300 && json && !head && !a->streamed &&
        a->body.len > 0) {
        cJSON *j = cJSON_ParseWithLength(a->body.data ? a->body.data : "", a->body.len);
        if (j == NULL) {
            fail("2xx answer with invalid JSON", what);
        }
        cJSON_Delete(j);
    }
    uint64_t after = cm_state_applied_index(f->st);
    if (after != before && (a->status >= 400 || strcmp(method, "GET") == 0 || head)) {
        fail("a refused request or a read changed the replica", what);
    }
}

static void run_block(struct fz *f, const char *s, size_t end)
{
    size_t pos = 0, ls, ll;
    bool leave = false, hold = false;
    f->refuse = 0;
    f->fail_async = false;
    f->has_leader = true;
    /* options */
    while (pos < end && s[pos] == '!') {
        next_line(s, end, &pos, &ls, &ll);
        for (size_t i = ls + 1; i < ls + ll; i++) {
            switch (s[i]) {
            case 'k':
                f->keep_deploys = true;
                break;
            case 'n':
                f->has_leader = false;
                break;
            case 'r':
                f->refuse = CM_ENOTLEADER;
                break;
            case 'l':
                f->fail_async = true;
                break;
            case 'c':
                leave = true;
                break;
            case 's':
                hold = true;
                break;
            case 't': {
                int64_t ms = 0;
                while (i + 1 < ls + ll && s[i + 1] >= '0' && s[i + 1] <= '9' &&
                       ms < 1000000000) {
                    ms = ms * 10 + (s[++i] - '0');
                }
                f->now += ms;
                break;
            }
            default:
                break;
            }
        }
    }
    if (!next_line(s, end, &pos, &ls, &ll)) {
        return;
    }
    const char *sp = memchr(s + ls, ' ', ll);
    size_t mlen = sp != NULL ? (size_t)(sp - (s + ls)) : ll;
    char method[64];
    snprintf(method, sizeof(method), "%.*s", (int)CM_MIN(mlen, sizeof(method) - 1),
             s + ls);
    struct cm_buf target = {0}, req = {0};
    if (sp != NULL) {
        subst(f, sp + 1, ll - mlen - 1, &target);
    } else {
        cm_buf_puts(&target, "/");
    }
    cm_buf_append(&req, s + ls, mlen);
    cm_buf_puts(&req, " ");
    cm_buf_append(&req, target.data, target.len);
    cm_buf_puts(&req, " HTTP/1.1\r\n");
    bool host = false, length = false;
    while (next_line(s, end, &pos, &ls, &ll) && ll > 0) {
        host |= has_prefix_ci(s + ls, ll, "host:");
        length |= has_prefix_ci(s + ls, ll, "content-length:") ||
                  has_prefix_ci(s + ls, ll, "transfer-encoding:");
        subst(f, s + ls, ll, &req);
        cm_buf_puts(&req, "\r\n");
    }
    struct cm_buf body = {0};
    if (pos < end) {
        subst(f, s + pos, end - pos, &body);
    }
    if (!host) {
        cm_buf_puts(&req, "Host: fuzz\r\n");
    }
    bool writes = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                  strcmp(method, "PATCH") == 0;
    if (!length && (body.len > 0 || writes)) {
        cm_buf_printf(&req, "Content-Length: %zu\r\n", body.len);
    }
    /* One request per connection: bytes after the body (a pipelined request
     * the body spelled out) are never served, so the answer read is this
     * request's and nothing else changes the replica. */
    cm_buf_puts(&req, "Connection: close\r\n\r\n");
    cm_buf_append(&req, body.data, body.len);
    cm_buf_done(&body);

    bool head = strcmp(method, "HEAD") == 0;
    uint64_t before = cm_state_applied_index(f->st);
    struct answer a = {.head = head};
    if (req.data != NULL) {
        exchange(f, &req, head, leave, hold, &a);
        check_answer(f, method, target.data ? target.data : "", &a, head, before);
        remember(f, &a);
    }
    cm_buf_done(&a.body);
    cm_buf_done(&req);
    cm_buf_done(&target);
    f->refuse = 0;
    f->fail_async = false;
    f->has_leader = true;
}

/* ------------------------------------------------------------------ the replica */

static int check_app_row(void *data, const struct cm_app_row *row)
{
    (void)data;
    struct cm_app *app = NULL;
    if (cm_app_from_canonical(row->spec, strlen(row->spec), &app) != 0) {
        fail("a stored app spec does not read back", row->id);
    }
    if (strcmp(app->id, row->id) != 0) {
        fail("a stored app spec has another id", row->id);
    }
    if (data != NULL && app->instances != row->instances) {
        fail("an app's instances differ from its spec's", row->id);
    }
    cm_app_free(app);
    return 0;
}

static int check_app_versions(void *data, const struct cm_app_row *row)
{
    struct fz *f = data;
    check_app_row(f, row); /* the current app: its instances column too */
    return cm_state_app_versions(f->st, row->id, check_app_row, NULL);
}

static int check_task_row(void *data, const struct cm_task_row *row)
{
    (void)data;
    if (cm_task_state_name(row->state) == NULL) {
        fail("a task with an unknown state", row->id);
    }
    if (row->ports != NULL) {
        cJSON *j = cJSON_Parse(row->ports);
        if (!cJSON_IsArray(j)) {
            fail("a task's ports are not a JSON array", row->id);
        }
        cJSON_Delete(j);
    }
    return 0;
}

static int check_deploy_row(void *data, const struct cm_deploy_row *row)
{
    (void)data;
    cJSON *apps = cJSON_Parse(row->apps);
    cJSON *plan = cJSON_Parse(row->plan);
    if (!cJSON_IsArray(apps) || !cJSON_IsObject(plan)) {
        fail("a deployment's apps or plan are not JSON", row->id);
    }
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(plan, "steps");
    if (row->step < 0 ||
        (cJSON_IsArray(steps) && row->step > cJSON_GetArraySize(steps))) {
        fail("a deployment's step is out of its plan", row->id);
    }
    cJSON_Delete(apps);
    cJSON_Delete(plan);
    return 0;
}

static void check_replica(struct fz *f, struct cm_state *s)
{
    struct cm_state *saved = f->st;
    f->st = s;
    if (cm_state_apps(s, NULL, check_app_versions, f) != 0 ||
        cm_state_tasks(s, NULL, NULL, check_task_row, NULL) != 0 ||
        cm_state_deployments(s, NULL, false, check_deploy_row, NULL) != 0) {
        fail("the replica cannot be read", NULL);
    }
    f->st = saved;
}

/* ------------------------------------------------------------------ set-up */

static void apply_now(struct fz *f, const char *cmd)
{
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    if (cm_state_validate(f->st, cmd, strlen(cmd), &eb) != 0 ||
        cm_state_apply(f->st, cm_state_applied_index(f->st) + 1, cmd, strlen(cmd), &eb) !=
            0) {
        fail("baseline command", eb.msg);
    }
}

static void baseline_request(struct fz *f, const char *text)
{
    run_block(f, text, strlen(text));
}

static void build_baseline(struct fz *f)
{
    apply_now(f,
              "{\"type\":\"node.up\",\"at\":1767225600000,\"node\":{\"id\":\"node-a\","
              "\"address\":\"127.0.0.1\",\"attrs\":{\"rack\":\"r1\"},\"resources\":"
              "{\"cpus\":4,\"mem\":4096}}}");
    apply_now(f,
              "{\"type\":\"node.up\",\"at\":1767225600000,\"node\":{\"id\":\"node-b\","
              "\"address\":\"127.0.0.2\",\"attrs\":{\"rack\":\"r2\"},\"resources\":"
              "{\"cpus\":2,\"mem\":2048}}}");
    baseline_request(f,
                     "POST /v2/apps\n\n"
                     "{\"id\":\"/sleepy\",\"cmd\":\"sleep 1000\",\"instances\":2,"
                     "\"cpus\":0.1,\"mem\":16,\"labels\":{\"team\":\"a\"},"
                     "\"portDefinitions\":[{\"port\":0,\"name\":\"http\"}],"
                     "\"healthChecks\":[{\"protocol\":\"HTTP\",\"path\":\"/\","
                     "\"portIndex\":0}]}");
    char v1[32];
    snprintf(v1, sizeof(v1), "%s", f->last_ver);
    f->now += 1000;
    baseline_request(f, "PUT /v2/apps/sleepy\n\n{\"cmd\":\"sleep 2000\"}");
    char v2[32];
    snprintf(v2, sizeof(v2), "%s", f->last_ver);
    baseline_request(f,
                     "PUT /v2/groups/prod\n\n"
                     "{\"id\":\"/prod\",\"apps\":[{\"id\":\"db\",\"cmd\":\"sleep 1\","
                     "\"mem\":32,\"cpus\":0.1},{\"id\":\"web\",\"cmd\":\"sleep 1\","
                     "\"mem\":32,\"cpus\":0.1,\"instances\":2,"
                     "\"dependencies\":[\"/prod/db\"]}]}");
    if (v1[0] == '\0' || v2[0] == '\0' || strcmp(v1, v2) == 0) {
        fail("baseline: no app versions", NULL);
    }
    char cmd[1024];
    static const struct {
        const char *id, *app, *node, *state, *extra;
        bool old;
    } tasks[] = {
        {"sleepy.1", "/sleepy", "node-a", "running",
         ",\"health\":\"healthy\",\"ready\":true,\"checks\":{\"health\":[{\"alive\":true,"
         "\"consecutiveFailures\":0,\"firstSuccess\":1767225601000,\"lastSuccess\":"
         "1767225602000,\"lastFailure\":0,\"lastFailureCause\":null}]}",
         false},
        {"sleepy.2", "/sleepy", "node-a", "staging", "", false},
        {"sleepy.3", "/sleepy", "node-a", "failed",
         ",\"exit\":2,\"reason\":\"exited with status 2\"", true},
        {"sleepy.4", "/sleepy", "node-b", "running", ",\"health\":\"unhealthy\"", true},
        {"prod_web.1", "/prod/web", "node-b", "running", "", false},
        {"prod_db.1", "/prod/db", "node-a", "killing", "", false},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(tasks); i++) {
        const char *ver = strcmp(tasks[i].app, "/sleepy") != 0 ? f->last_ver
                          : tasks[i].old                       ? v1
                                                               : v2;
        snprintf(cmd, sizeof(cmd),
                 "{\"type\":\"task.assign\",\"at\":%lld,\"tasks\":[{\"id\":\"%s\","
                 "\"app\":\"%s\",\"version\":\"%s\",\"node\":\"%s\",\"host\":"
                 "\"127.0.0.1\",\"ports\":[%d]}]}",
                 (long long)f->now, tasks[i].id, tasks[i].app, ver, tasks[i].node,
                 31000 + (int)i);
        apply_now(f, cmd);
        if (strcmp(tasks[i].state, "staging") != 0) {
            snprintf(cmd, sizeof(cmd),
                     "{\"type\":\"task.status\",\"at\":%lld,\"id\":\"%s\",\"state\":"
                     "\"%s\"%s}",
                     (long long)f->now + 5, tasks[i].id,
                     strcmp(tasks[i].state, "killing") == 0 ? "running" : tasks[i].state,
                     tasks[i].extra);
            apply_now(f, cmd);
        }
    }
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"task.kill\",\"at\":%lld,\"ids\":[\"prod_db.1\"]}",
             (long long)f->now + 10);
    apply_now(f, cmd);
    check_replica(f, f->st);
    struct cm_errbuf eb;
    if (cm_state_snapshot(f->st, f->base, &eb) != 0) {
        fail("baseline snapshot", eb.msg);
    }
    /* As reset() leaves things: the first input runs like every other. */
    snprintf(f->base_ver, sizeof(f->base_ver), "%s", v1);
    snprintf(f->last_ver, sizeof(f->last_ver), "%s", v1);
    f->last_dep[0] = '\0';
    f->now = NOW0 + 10000;
}

/* A new server on a new port and a new api (its version stamps start again):
 * nothing carries over from the previous input but the replica. */
static void start_api(struct fz *f)
{
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    struct cm_http_server_options so = {.server_name = "clusterctl"};
    if (cm_http_server_new(f->loop, &so, &f->srv) != 0 ||
        cm_http_server_listen(f->srv, "127.0.0.1:0", &eb) != 0) {
        fail("http server", eb.msg);
    }
    f->port = cm_http_server_port(f->srv);
    snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%u", f->port);
    struct cm_api_ops ops = {
        .data = f,
        .state = op_state,
        .propose = op_propose,
        .now_ms = op_now,
        .leader = op_leader,
        .node_name = op_node,
        .http_address = op_http,
        .task_log = op_task_log,
        .queue_reason = op_queue_reason,
        .metrics = op_metrics,
        .loop = f->loop,
        .version = "0.1.0-fuzz",
        .cluster_id = op_cluster_id,
        .read_barrier = op_read_barrier,
        .members = op_members,
        .node_heard_ms = op_node_heard,
    };
    if (cm_api_start(f->srv, &ops, &f->api) != 0) {
        fail("cm_api_start", NULL);
    }
}

static void stop_api(struct fz *f)
{
    cm_http_server_free(f->srv);
    f->srv = NULL;
    apply_queue(f); /* into inert requests */
    cm_api_free(f->api);
    f->api = NULL;
}

static void cleanup(void)
{
    struct fz *f = g_fz;
    if (f == NULL) {
        return;
    }
    /* Free what the loop holds; the temp dir goes in every case. */
    stop_api(f);
    ev_timer_stop(f->loop, &f->apply_w);
    ev_loop_destroy(f->loop);
    cm_state_close(f->st);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    cm_free(&f);
    g_fz = NULL;
}

static struct fz *setup(void)
{
    struct fz *f = cm_calloc(1, sizeof(*f));
    if (f == NULL) {
        abort();
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/apifuzz-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        fail("mkdtemp", strerror(errno));
    }
    snprintf(f->db, sizeof(f->db), "%s/state.db", f->dir);
    snprintf(f->base, sizeof(f->base), "%s/baseline.db", f->dir);
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    cm_log_set_level(CM_LOG_ERROR);
    if (cm_state_open(f->db, &f->st, &eb) != 0) {
        fail("state open", eb.msg);
    }
    f->loop = ev_loop_new(EVFLAG_AUTO);
    if (f->loop == NULL) {
        fail("ev_loop_new", NULL);
    }
    f->q_tail = &f->q;
    f->now = NOW0;
    f->has_leader = true;
    ev_timer_init(&f->apply_w, apply_cb, 0.0, 0.0);
    g_fz = f;
    atexit(cleanup);
    start_api(f);
    build_baseline(f);
    return f;
}

/* Back to the baseline before every input, so that an input found by the
 * fuzzer replays alone. Every CHECK_OPEN_EVERY inputs, first check that the
 * replica still opens and reads on a second connection. */
static void reset(struct fz *f)
{
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    stop_api(f);
    if (++f->inputs % CHECK_OPEN_EVERY == 0) {
        struct cm_state *again = NULL;
        if (cm_state_open(f->db, &again, &eb) != 0) {
            fail("the replica no longer opens", eb.msg);
        }
        check_replica(f, again);
        cm_state_close(again);
    }
    if (cm_state_restore(f->st, f->base, &eb) != 0) {
        fail("restore", eb.msg);
    }
    cm_state_take_changes(f->st);
    f->keep_deploys = false;
    f->now = NOW0 + 10000;
    f->last_dep[0] = '\0';
    snprintf(f->last_ver, sizeof(f->last_ver), "%s", f->base_ver);
    start_api(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz *f = g_fz;
    if (f == NULL) {
        f = setup();
    } else {
        reset(f);
    }
    const char *s = (const char *)data;
    static const char sep[] = "\n===\n";
    size_t pos = 0;
    for (int n = 0; n < MAX_REQS && pos < size; n++) {
        const char *hit = memmem(s + pos, size - pos, sep, sizeof(sep) - 1);
        size_t end = hit != NULL ? (size_t)(hit - s) : size;
        run_block(f, s + pos, end - pos);
        pos = hit != NULL ? end + sizeof(sep) - 1 : size;
    }
    release_held(f);
    check_replica(f, f->st);
    return 0;
}
