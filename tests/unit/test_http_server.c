/* lib/net/http_server.c and http_client.c on a real libev loop with real sockets
 * on 127.0.0.1 (port 0). Raw clients write exact bytes and read what comes
 * back; every wait is bounded by an ev_timer and a test that times out fails.
 * Timing only enters pass/fail through generous bounds. */
#include <ev.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"
#include "net/http.h"
#include "net/net.h"
#include "test.h"

#define WAIT_SECS 10.0

/* ------------------------------------------------------------------ loop helpers */

/* The condition is checked by a prepare watcher, i.e. after every callback of
 * the previous iteration (check watchers run before the iteration's own io
 * callbacks, so they would miss what those just did until the next wake-up). */
struct waiter {
    ev_prepare check;
    ev_timer timer;
    bool (*cond)(void *);
    void *arg;
    bool timed_out;
};

static void waiter_check_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct waiter *wt = cm_container_of(w, struct waiter, check);
    if (wt->cond != NULL && wt->cond(wt->arg)) {
        ev_break(loop, EVBREAK_ONE);
    }
}

static void waiter_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct waiter *wt = cm_container_of(w, struct waiter, timer);
    wt->timed_out = true;
    ev_break(loop, EVBREAK_ONE);
}

static bool wait_until(struct ev_loop *loop, bool (*cond)(void *), void *arg)
{
    if (cond(arg)) {
        return true;
    }
    struct waiter w = {.cond = cond, .arg = arg};
    ev_prepare_init(&w.check, waiter_check_cb);
    ev_timer_init(&w.timer, waiter_timer_cb, WAIT_SECS, 0.);
    ev_prepare_start(loop, &w.check);
    ev_timer_start(loop, &w.timer);
    ev_run(loop, 0);
    ev_prepare_stop(loop, &w.check);
    ev_timer_stop(loop, &w.timer);
    return cond(arg);
}

#define WAIT(loop, cond, arg) ASSERT_TRUE(wait_until((loop), (cond), (arg)))

static void run_for(struct ev_loop *loop, double secs)
{
    struct waiter w = {0};
    ev_timer_init(&w.timer, waiter_timer_cb, secs, 0.);
    ev_timer_start(loop, &w.timer);
    ev_run(loop, 0);
    ev_timer_stop(loop, &w.timer);
}

static bool flag_set(void *arg)
{
    return *(bool *)arg;
}

/* ------------------------------------------------------------------ fixture */

struct fx {
    struct ev_loop *loop;
    struct cm_http_server *srv;
    uint16_t port;
    char addr[32];
};

static void fx_start(struct fx *f, const struct cm_http_server_options *o)
{
    f->loop = ev_loop_new(EVFLAG_AUTO);
    ASSERT_NOT_NULL(f->loop);
    ASSERT_OK(cm_http_server_new(f->loop, o, &f->srv));
    struct cm_errbuf eb = {0};
    ASSERT_OK(cm_http_server_listen(f->srv, "127.0.0.1:0", &eb));
    f->port = cm_http_server_port(f->srv);
    ASSERT_TRUE(f->port != 0);
    snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%u", f->port);
}

/* Free the server and check that nothing is left on the loop. */
static void fx_end(struct fx *f)
{
    cm_http_server_free(f->srv);
    f->srv = NULL;
    ev_run(f->loop, EVRUN_NOWAIT);
    ASSERT_INT_EQ(ev_pending_count(f->loop), 0);
    ev_loop_destroy(f->loop);
}

static bool no_conns(void *arg)
{
    return cm_http_server_conns(((struct fx *)arg)->srv) == 0;
}

/* ------------------------------------------------------------------ raw client */

struct raw {
    struct ev_loop *loop;
    int fd;
    ev_io io;
    struct cm_buf in;
    bool eof;
    int err;
};

static void raw_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct raw *r = cm_container_of(w, struct raw, io);
    char buf[8192];
    ssize_t n = recv(r->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
        ASSERT_OK(cm_buf_append(&r->in, buf, (size_t)n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        r->eof = true;
        r->err = n == 0 ? 0 : -errno;
        ev_io_stop(r->loop, &r->io);
    }
}

static void raw_connect(struct raw *r, struct fx *f)
{
    memset(r, 0, sizeof(*r));
    r->loop = f->loop;
    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_TRUE(r->fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(f->port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_INT_EQ(connect(r->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ev_io_init(&r->io, raw_io_cb, r->fd, EV_READ);
    ev_io_start(f->loop, &r->io);
}

static void raw_send(struct raw *r, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(r->fd, p, len, MSG_NOSIGNAL);
        ASSERT_TRUE(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void raw_sends(struct raw *r, const char *s)
{
    raw_send(r, s, strlen(s));
}

static void raw_close(struct raw *r)
{
    ev_io_stop(r->loop, &r->io);
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }
    cm_buf_done(&r->in);
}

static bool raw_eof(void *arg)
{
    return ((struct raw *)arg)->eof;
}

struct resp {
    int status;
    char body[512];
    char connection[32];
    char allow[64];
    char content_length[16];
    bool has_date;
};

/* Parse the complete responses received so far; @head: answers to HEAD. */
static int raw_parse(struct raw *r, struct resp *out, int max, bool head)
{
    struct cm_http_parser *p;
    ASSERT_OK(cm_http_parser_new(CM_HTTP_PARSE_RESPONSE, &p));
    size_t off = 0;
    int n = 0;
    while (n < max && off < r->in.len) {
        cm_http_parser_set_head_request(p, head);
        int rv;
        do {
            size_t used;
            rv = cm_http_parser_feed(p, r->in.data + off, r->in.len - off, &used);
            off += used;
        } while (rv == CM_HTTP_PARSE_HEAD);
        if (rv == CM_HTTP_PARSE_AGAIN && r->eof) {
            rv = cm_http_parser_eof(p);
        }
        if (rv != CM_HTTP_PARSE_DONE) {
            ASSERT_TRUE(rv >= 0);
            break;
        }
        const struct cm_http_response *resp = cm_http_parser_response(p);
        struct resp *o = &out[n++];
        memset(o, 0, sizeof(*o));
        o->status = resp->status;
        snprintf(o->body, sizeof(o->body), "%s", resp->body);
        const char *v = cm_http_response_header(resp, "connection");
        snprintf(o->connection, sizeof(o->connection), "%s", v != NULL ? v : "");
        v = cm_http_response_header(resp, "allow");
        snprintf(o->allow, sizeof(o->allow), "%s", v != NULL ? v : "");
        v = cm_http_response_header(resp, "content-length");
        snprintf(o->content_length, sizeof(o->content_length), "%s", v != NULL ? v : "");
        o->has_date = cm_http_response_header(resp, "date") != NULL;
        cm_http_parser_reset(p);
    }
    cm_http_parser_free(p);
    return n;
}

struct raw_wait {
    struct raw *r;
    int n;
    bool head;
};

static bool raw_has(void *arg)
{
    struct raw_wait *w = arg;
    static struct resp tmp[512];
    return raw_parse(w->r, tmp, (int)CM_ARRAY_SIZE(tmp), w->head) >= w->n;
}

struct raw_text {
    struct raw *r;
    const char *text;
};

static bool raw_contains(void *arg)
{
    struct raw_text *t = arg;
    return t->r->in.data != NULL && strstr(t->r->in.data, t->text) != NULL;
}

/* Wait for @n responses and parse them into @out. */
static void raw_expect(struct fx *f, struct raw *r, int n, struct resp *out, bool head)
{
    struct raw_wait w = {r, n, head};
    WAIT(f->loop, raw_has, &w);
    ASSERT_INT_EQ(raw_parse(r, out, n, head), n);
}

/* ------------------------------------------------------------------ handlers */

static void h_text(struct cm_http_req *req, void *data)
{
    const char *text = data;
    ASSERT_OK(cm_http_respond(req, 200, "text/plain", text, strlen(text)));
}

/* "METHOD path [name=value ...] body=<body>" */
static void h_echo(struct cm_http_req *req, void *data)
{
    (void)data;
    const struct cm_http_request *r = cm_http_req_request(req);
    struct cm_buf b = {0};
    ASSERT_OK(cm_buf_printf(&b, "%s %s", r->method_str, r->path));
    static const char *const names[] = {"id", "version", "name"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(names); i++) {
        const char *v = cm_http_req_param(req, names[i]);
        if (v != NULL) {
            ASSERT_OK(cm_buf_printf(&b, " %s=%s", names[i], v));
        }
    }
    ASSERT_OK(cm_buf_printf(&b, " body=%s", r->body));
    ASSERT_OK(cm_http_respond(req, 200, "text/plain", b.data, b.len));
    cm_buf_done(&b);
}

static void h_free_server(struct cm_http_req *req, void *data)
{
    struct fx *f = data;
    ASSERT_OK(cm_http_respond(req, 200, NULL, "", 0));
    cm_http_server_free(f->srv);
    f->srv = NULL;
}

/* Answers later, from a timer (as after a raft commit). */
struct later {
    struct ev_loop *loop;
    struct cm_http_req *req;
    ev_timer timer;
    double delay;
    int closed_cb;
    int answer_rv;
    bool answered;
    const char *body;
};

static void later_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct later *l = cm_container_of(w, struct later, timer);
    l->answer_rv = cm_http_respond(l->req, 200, "text/plain", l->body, strlen(l->body));
    l->req = NULL;
    l->answered = true;
}

static void later_close_cb(struct cm_http_req *req, void *data)
{
    struct later *l = data;
    ASSERT_TRUE(req == l->req);
    ASSERT_TRUE(cm_http_req_closed(req));
    l->closed_cb++;
}

static void h_later(struct cm_http_req *req, void *data)
{
    struct later *l = data;
    ASSERT_NULL(l->req);
    l->req = req;
    cm_http_req_set_close_cb(req, later_close_cb, l);
    if (l->delay > 0) {
        ev_timer_init(&l->timer, later_timer_cb, l->delay, 0.);
        ev_timer_start(l->loop, &l->timer);
    }
}

static bool later_answered(void *arg)
{
    return ((struct later *)arg)->answered;
}

static bool later_has_req(void *arg)
{
    return ((struct later *)arg)->req != NULL;
}

/* ------------------------------------------------------------------ tests */

TEST(server_get_and_head)
{
    struct fx f;
    fx_start(&f, NULL);
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/ping", 0, h_text, "pong"));
    struct raw r;
    raw_connect(&r, &f);
    raw_sends(&r, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    struct resp out[2];
    raw_expect(&f, &r, 1, out, false);
    ASSERT_INT_EQ(out[0].status, 200);
    ASSERT_STR_EQ(out[0].body, "pong");
    ASSERT_STR_EQ(out[0].content_length, "4");
    ASSERT_TRUE(out[0].has_date);
    raw_close(&r);

    /* HEAD uses the GET route: same Content-Length, no body. */
    raw_connect(&r, &f);
    raw_sends(
        &r,
        "HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\nHEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    raw_expect(&f, &r, 2, out, true);
    ASSERT_INT_EQ(out[0].status, 200);
    ASSERT_STR_EQ(out[0].content_length, "4");
    ASSERT_STR_EQ(out[0].body, "");
    ASSERT_INT_EQ(out[1].status, 404);
    ASSERT_STR_EQ(out[1].body, "");
    /* Nothing else came: the next bytes would be a third response. */
    run_for(f.loop, 0.05);
    struct resp more[3];
    ASSERT_INT_EQ(raw_parse(&r, more, 3, true), 2);
    raw_close(&r);
    fx_end(&f);
}

TEST(server_router)
{
    struct fx f;
    fx_start(&f, NULL);
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/v2/apps", 0, h_echo, NULL));
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/v2/apps/{id*}", 0, h_echo, NULL));
    ASSERT_OK(cm_http_server_route(f.srv, "PUT", "/v2/apps/{id*}", 0, h_echo, NULL));
    ASSERT_OK(
        cm_http_server_route(f.srv, "GET", "/v2/apps/{id*}/tasks", 0, h_echo, NULL));
    ASSERT_OK(
        cm_http_server_route(f.srv, "POST", "/v2/apps/{id*}/restart", 0, h_echo, NULL));
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/v2/apps/{id*}/versions/{version}", 0,
                                   h_echo, NULL));
    ASSERT_OK(cm_http_server_route(f.srv, NULL, "/any/{name}", 0, h_echo, NULL));
    ASSERT_ERR(cm_http_server_route(f.srv, "GET", "/a/{x*}/{y*}", 0, h_echo, NULL),
               CM_EINVAL);
    ASSERT_ERR(cm_http_server_route(f.srv, "GET", "a", 0, h_echo, NULL), CM_EINVAL);
    ASSERT_ERR(cm_http_server_route(f.srv, "GET", "/a/{x", 0, h_echo, NULL), CM_EINVAL);

    static const struct {
        const char *req;
        int status;
        const char *body;
    } cases[] = {
        {"GET /v2/apps", 200, "GET /v2/apps body="},
        {"GET /v2/apps/web", 200, "GET /v2/apps/web id=web body="},
        {"GET /v2/apps//shop/backend/api", 200,
         "GET /v2/apps/shop/backend/api id=shop/backend/api body="},
        {"GET /v2/apps/shop/web/tasks", 200,
         "GET /v2/apps/shop/web/tasks id=shop/web body="},
        {"GET /v2/apps/shop/web/versions/2024-01-01", 200,
         "GET /v2/apps/shop/web/versions/2024-01-01 id=shop/web version=2024-01-01 "
         "body="},
        {"GET /v2/apps/shop%20x/versions", 200,
         "GET /v2/apps/shop x/versions id=shop x/versions body="},
        {"POST /v2/apps/web/restart", 200, "POST /v2/apps/web/restart id=web body="},
        {"DELETE /any/thing", 200, "DELETE /any/thing name=thing body="},
        {"DELETE /v2/apps/web", 405, NULL},
        {"POST /v2/apps/web/tasks", 405, NULL},
        {"GET /v3", 404, "{\"message\": \"not found\"}"},
        {"BREW /v2/apps", 501, NULL},
        {"GET /v2/apps/../x", 400, NULL},
    };
    struct raw r;
    raw_connect(&r, &f);
    struct cm_buf b = {0};
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        ASSERT_OK(cm_buf_printf(&b, "%s HTTP/1.1\r\nHost: x\r\n\r\n", cases[i].req));
    }
    raw_send(&r, b.data, b.len);
    cm_buf_done(&b);
    struct resp out[CM_ARRAY_SIZE(cases)];
    raw_expect(&f, &r, (int)CM_ARRAY_SIZE(cases), out, false);
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        if (out[i].status != cases[i].status) {
            printf("# %s -> %d %s\n", cases[i].req, out[i].status, out[i].body);
        }
        ASSERT_INT_EQ(out[i].status, cases[i].status);
        if (cases[i].body != NULL) {
            ASSERT_STR_EQ(out[i].body, cases[i].body);
        }
    }
    ASSERT_STR_EQ(out[8].allow, "GET, HEAD, PUT");
    ASSERT_TRUE(strstr(out[9].allow, "GET") != NULL);
    /* The 400 closed the connection. */
    ASSERT_STR_EQ(out[12].connection, "close");
    WAIT(f.loop, raw_eof, &r);
    raw_close(&r);
    fx_end(&f);
}

/* The first request is answered late (async), the second at once: the answers
 * still come in request order, and the second request is not even parsed before
 * the first answer is queued. */
TEST(server_pipelined_in_order)
{
    struct fx f;
    fx_start(&f, NULL);
    struct later l = {.loop = f.loop, .delay = 0.1, .body = "slow"};
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/slow", 0, h_later, &l));
    ASSERT_OK(cm_http_server_route(f.srv, "POST", "/echo", 0, h_echo, NULL));
    struct raw r;
    raw_connect(&r, &f);
    raw_sends(&r,
              "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
              "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
              "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              "2\r\nxy\r\n0\r\n\r\n");
    struct resp out[3];
    raw_expect(&f, &r, 3, out, false);
    ASSERT_STR_EQ(out[0].body, "slow");
    ASSERT_STR_EQ(out[1].body, "POST /echo body=abc");
    ASSERT_STR_EQ(out[2].body, "POST /echo body=xy");
    ASSERT_OK(l.answer_rv);
    ASSERT_INT_EQ(l.closed_cb, 0);
    ASSERT_INT_EQ(cm_http_server_conns(f.srv), 1);
    raw_close(&r);
    WAIT(f.loop, no_conns, &f);
    fx_end(&f);
}

TEST(server_keep_alive_reuse)
{
    struct fx f;
    fx_start(&f, NULL);
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/ping", 0, h_text, "pong"));
    struct raw r;
    raw_connect(&r, &f);
    struct resp out[3];
    for (int i = 1; i <= 3; i++) {
        raw_sends(&r, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
        raw_expect(&f, &r, i, out, false);
        ASSERT_INT_EQ(out[i - 1].status, 200);
        ASSERT_INT_EQ(cm_http_server_conns(f.srv), 1);
    }
    /* HTTP/1.0 with keep-alive is kept; without it, closed. */
    raw_sends(&r, "GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    struct resp out4[4];
    raw_expect(&f, &r, 4, out4, false);
    ASSERT_STR_EQ(out4[3].connection, "keep-alive");
    raw_sends(&r, "GET /ping HTTP/1.0\r\n\r\n");
    WAIT(f.loop, raw_eof, &r);
    struct resp out5[5];
    ASSERT_INT_EQ(raw_parse(&r, out5, 5, false), 5);
    ASSERT_STR_EQ(out5[4].connection, "close");
    raw_close(&r);
    WAIT(f.loop, no_conns, &f);
    fx_end(&f);
}

TEST(server_limits)
{
    struct fx f;
    fx_start(&f, NULL);
    ASSERT_OK(cm_http_server_route(f.srv, "POST", "/small", 16, h_echo, NULL));
    ASSERT_OK(cm_http_server_route(f.srv, "POST", "/big", 4u << 20, h_echo, NULL));
    ASSERT_OK(cm_http_server_route(f.srv, "POST", "/default", 0, h_echo, NULL));
    struct resp out[1];
    struct raw r;
    struct cm_buf b = {0};

    /* 414 */
    raw_connect(&r, &f);
    ASSERT_OK(cm_buf_puts(&b, "GET /"));
    while (b.len < 9000) {
        ASSERT_OK(cm_buf_puts(&b, "aaaaaaaa"));
    }
    ASSERT_OK(cm_buf_puts(&b, " HTTP/1.1\r\nHost: x\r\n\r\n"));
    raw_send(&r, b.data, b.len);
    WAIT(f.loop, raw_eof, &r);
    ASSERT_INT_EQ(raw_parse(&r, out, 1, false), 1);
    ASSERT_INT_EQ(out[0].status, 414);
    ASSERT_TRUE(strstr(out[0].body, "\"message\"") != NULL);
    raw_close(&r);

    /* 431 */
    raw_connect(&r, &f);
    cm_buf_clear(&b);
    ASSERT_OK(cm_buf_puts(&b, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "));
    while (b.len < 70000) {
        ASSERT_OK(cm_buf_puts(&b, "bbbbbbbb"));
    }
    ASSERT_OK(cm_buf_puts(&b, "\r\n\r\n"));
    raw_send(&r, b.data, b.len);
    WAIT(f.loop, raw_eof, &r);
    ASSERT_INT_EQ(raw_parse(&r, out, 1, false), 1);
    ASSERT_INT_EQ(out[0].status, 431);
    raw_close(&r);

    /* 413 on the small route, from the declared length alone. */
    raw_connect(&r, &f);
    raw_sends(&r, "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n");
    WAIT(f.loop, raw_eof, &r);
    ASSERT_INT_EQ(raw_parse(&r, out, 1, false), 1);
    ASSERT_INT_EQ(out[0].status, 413);
    raw_close(&r);

    /* 16 bytes fit the small route. */
    raw_connect(&r, &f);
    raw_sends(
        &r,
        "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n0123456789abcdef");
    raw_expect(&f, &r, 1, out, false);
    ASSERT_INT_EQ(out[0].status, 200);
    raw_close(&r);

    /* 2 MiB: over the default (413), fine on the big route. */
    size_t big = 2u << 20;
    char *body = cm_malloc(big);
    ASSERT_NOT_NULL(body);
    memset(body, 'z', big);
    raw_connect(&r, &f);
    raw_sends(&r, "POST /default HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n");
    WAIT(f.loop, raw_eof, &r);
    ASSERT_INT_EQ(raw_parse(&r, out, 1, false), 1);
    ASSERT_INT_EQ(out[0].status, 413);
    raw_close(&r);

    raw_connect(&r, &f);
    raw_sends(&r, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n");
    /* The socket buffers do not hold 2 MiB: write as the server reads. */
    size_t off = 0;
    while (off < big) {
        ssize_t n = send(r.fd, body + off, big - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
        } else {
            ASSERT_TRUE(errno == EAGAIN);
            ev_run(f.loop, EVRUN_NOWAIT);
        }
    }
    raw_expect(&f, &r, 1, out, false);
    ASSERT_INT_EQ(out[0].status, 200);
    raw_close(&r);
    cm_free(&body);
    cm_buf_done(&b);
    WAIT(f.loop, no_conns, &f);
    fx_end(&f);
}

TEST(server_timeouts)
{
    struct fx f;
    struct cm_http_server_options o = {
        .read_timeout_ms = 100,
        .idle_timeout_ms = 150,
        .linger_ms = 100,
    };
    fx_start(&f, &o);
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/ping", 0, h_text, "pong"));
    struct resp out[2];

    /* A request that never completes: 408, then the connection closes. */
    struct raw r;
    raw_connect(&r, &f);
    ev_tstamp t0 = ev_time();
    raw_sends(&r, "GET /ping HTTP/1.1\r\nHost:");
    WAIT(f.loop, raw_eof, &r);
    ASSERT_TRUE(ev_time() - t0 >= 0.09);
    ASSERT_INT_EQ(raw_parse(&r, out, 1, false), 1);
    ASSERT_INT_EQ(out[0].status, 408);
    raw_close(&r);

    /* Idle keep-alive: closed after the idle timeout, without an answer. */
    raw_connect(&r, &f);
    raw_sends(&r, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    raw_expect(&f, &r, 1, out, false);
    t0 = ev_time();
    WAIT(f.loop, raw_eof, &r);
    ASSERT_TRUE(ev_time() - t0 >= 0.1);
    ASSERT_INT_EQ(raw_parse(&r, out, 2, false), 1);
    raw_close(&r);

    /* A connection that sends nothing at all. */
    raw_connect(&r, &f);
    WAIT(f.loop, raw_eof, &r);
    ASSERT_UINT_EQ(r.in.len, 0);
    raw_close(&r);
    WAIT(f.loop, no_conns, &f);
    fx_end(&f);
}

/* The client leaves while its request is being answered asynchronously: the
 * handler learns it, and its late answer is harmless. */
TEST(server_async_answer_after_close)
{
    struct fx f;
    fx_start(&f, NULL);
    struct later l = {.loop = f.loop, .body = "late"};
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/later", 0, h_later, &l));
    struct raw r;
    raw_connect(&r, &f);
    raw_sends(&r, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
    WAIT(f.loop, later_has_req, &l);
    raw_close(&r);
    WAIT(f.loop, no_conns, &f);
    ASSERT_INT_EQ(l.closed_cb, 1);
    ASSERT_TRUE(cm_http_req_closed(l.req));
    ASSERT_ERR(cm_http_req_add_header(l.req, "X", "y"), CM_ECLOSED);
    ASSERT_ERR(cm_http_respond(l.req, 200, NULL, "x", 1), CM_ECLOSED);
    l.req = NULL;

    /* Same with a streamed answer, and with the server freed first. */
    raw_connect(&r, &f);
    raw_sends(&r, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
    WAIT(f.loop, later_has_req, &l);
    ASSERT_OK(cm_http_stream_begin(l.req, 200, "text/plain"));
    ASSERT_OK(cm_http_stream_write(l.req, "a", 1));
    struct cm_http_req *held = l.req;
    cm_http_server_free(f.srv);
    f.srv = NULL;
    ASSERT_INT_EQ(l.closed_cb, 2);
    ASSERT_ERR(cm_http_stream_write(held, "b", 1), CM_ECLOSED);
    ASSERT_ERR(cm_http_stream_end(held), CM_ECLOSED);
    WAIT(f.loop, raw_eof, &r);
    raw_close(&r);
    ev_run(f.loop, EVRUN_NOWAIT);
    ASSERT_INT_EQ(ev_pending_count(f.loop), 0);
    ev_loop_destroy(f.loop);
}

TEST(server_connection_limits)
{
    struct fx f;
    struct cm_http_server_options o = {.max_conns = 3, .max_conns_per_ip = 2};
    fx_start(&f, &o);
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/ping", 0, h_text, "pong"));
    struct raw a, b, c;
    raw_connect(&a, &f);
    raw_connect(&b, &f);
    raw_sends(&a, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    raw_sends(&b, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    struct resp out[1];
    raw_expect(&f, &a, 1, out, false);
    raw_expect(&f, &b, 1, out, false);
    ASSERT_INT_EQ(cm_http_server_conns(f.srv), 2);
    /* The third from the same address is refused politely. */
    raw_connect(&c, &f);
    WAIT(f.loop, raw_eof, &c);
    ASSERT_INT_EQ(raw_parse(&c, out, 1, false), 1);
    ASSERT_INT_EQ(out[0].status, 503);
    ASSERT_STR_EQ(out[0].body, "{\"message\": \"too many connections\"}");
    raw_close(&c);
    ASSERT_INT_EQ(cm_http_server_conns(f.srv), 2);
    /* Room again once one leaves. */
    raw_close(&a);
    raw_close(&b);
    WAIT(f.loop, no_conns, &f);
    raw_connect(&c, &f);
    raw_sends(&c, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    raw_expect(&f, &c, 1, out, false);
    ASSERT_INT_EQ(out[0].status, 200);
    raw_close(&c);
    WAIT(f.loop, no_conns, &f);
    fx_end(&f);
}

TEST(server_expect_continue)
{
    struct fx f;
    fx_start(&f, NULL);
    ASSERT_OK(cm_http_server_route(f.srv, "PUT", "/echo", 16, h_echo, NULL));
    struct raw r;
    raw_connect(&r, &f);
    raw_sends(&r,
              "PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
              "Content-Length: 2\r\n\r\n");
    struct raw_text t = {&r, "HTTP/1.1 100 Continue\r\n\r\n"};
    WAIT(f.loop, raw_contains, &t);
    ASSERT_TRUE(strncmp(r.in.data, t.text, strlen(t.text)) == 0);
    raw_sends(&r, "{}");
    /* The final answer after the interim one. */
    struct resp out[1];
    raw_expect(&f, &r, 1, out, false);
    ASSERT_INT_EQ(out[0].status, 200);
    ASSERT_STR_EQ(out[0].body, "PUT /echo body={}");
    /* Too big: 413 at once, no 100. */
    raw_sends(&r,
              "PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
              "Content-Length: 17\r\n\r\n");
    WAIT(f.loop, raw_eof, &r);
    ASSERT_TRUE(strstr(r.in.data, "413 Content Too Large") != NULL);
    ASSERT_TRUE(strstr(r.in.data + 30, "100 Continue") == NULL);
    raw_close(&r);
    WAIT(f.loop, no_conns, &f);
    fx_end(&f);
}

TEST(server_free_inside_handler)
{
    struct fx f;
    fx_start(&f, NULL);
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/quit", 0, h_free_server, &f));
    struct raw r;
    raw_connect(&r, &f);
    raw_sends(
        &r, "GET /quit HTTP/1.1\r\nHost: x\r\n\r\nGET /quit HTTP/1.1\r\nHost: x\r\n\r\n");
    WAIT(f.loop, raw_eof, &r);
    ASSERT_NULL(f.srv);
    raw_close(&r);
    ev_run(f.loop, EVRUN_NOWAIT);
    ASSERT_INT_EQ(ev_pending_count(f.loop), 0);
    ev_loop_destroy(f.loop);
}

/* ------------------------------------------------------------------ shutdown */

static void on_shutdown(struct cm_http_server *srv, void *data)
{
    (void)srv;
    *(bool *)data = true;
}

TEST(server_graceful_shutdown)
{
    struct fx f;
    fx_start(&f, NULL);
    struct later l = {.loop = f.loop, .delay = 0.1, .body = "finished"};
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/later", 0, h_later, &l));
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/ping", 0, h_text, "pong"));
    struct raw busy, idle;
    raw_connect(&idle, &f);
    raw_sends(&idle, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    struct resp out[1];
    raw_expect(&f, &idle, 1, out, false);
    raw_connect(&busy, &f);
    raw_sends(&busy, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
    WAIT(f.loop, later_has_req, &l);

    bool done = false;
    cm_http_server_shutdown(f.srv, 5000, on_shutdown, &done);
    ASSERT_INT_EQ(cm_http_server_port(f.srv), 0);
    WAIT(f.loop, raw_eof, &idle); /* idle: closed at once */
    WAIT(f.loop, later_answered, &l);
    WAIT(f.loop, flag_set, &done);
    WAIT(f.loop, raw_eof, &busy);
    ASSERT_INT_EQ(raw_parse(&busy, out, 1, false), 1);
    ASSERT_STR_EQ(out[0].body, "finished");
    ASSERT_STR_EQ(out[0].connection, "close");
    raw_close(&idle);
    raw_close(&busy);

    /* A second server whose stream never ends: closed at the deadline. */
    fx_end(&f);
}

static void h_stream_forever(struct cm_http_req *req, void *data)
{
    struct later *l = data;
    l->req = req;
    cm_http_req_set_close_cb(req, later_close_cb, l);
    ASSERT_OK(cm_http_stream_begin(req, 200, "text/event-stream"));
    ASSERT_OK(cm_http_stream_write(req, "data: 1\n\n", 9));
}

TEST(server_shutdown_deadline)
{
    struct fx f;
    fx_start(&f, NULL);
    struct later l = {.loop = f.loop};
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/v2/events", 0, h_stream_forever, &l));
    struct raw r;
    raw_connect(&r, &f);
    raw_sends(&r, "GET /v2/events HTTP/1.1\r\nHost: x\r\n\r\n");
    WAIT(f.loop, later_has_req, &l);
    bool done = false;
    ev_tstamp t0 = ev_time();
    cm_http_server_shutdown(f.srv, 100, on_shutdown, &done);
    WAIT(f.loop, flag_set, &done);
    ASSERT_TRUE(ev_time() - t0 >= 0.09);
    ASSERT_INT_EQ(l.closed_cb, 1);
    ASSERT_ERR(cm_http_stream_end(l.req), CM_ECLOSED);
    WAIT(f.loop, raw_eof, &r);
    ASSERT_TRUE(strstr(r.in.data, "data: 1") != NULL);
    raw_close(&r);
    fx_end(&f);
}

/* ------------------------------------------------------------------ client */

struct result {
    bool done;
    int err;
    int status;
    struct cm_buf body;
    struct cm_buf chunks;
    int nchunks;
    char ctype[64];
};

static void on_done(struct cm_http_call *call, int err,
                    const struct cm_http_response *resp, void *user)
{
    (void)call;
    struct result *r = user;
    r->done = true;
    r->err = err;
    if (err == 0) {
        r->status = resp->status;
        ASSERT_OK(cm_buf_append(&r->body, resp->body, resp->body_len));
        const char *ct = cm_http_response_header(resp, "content-type");
        snprintf(r->ctype, sizeof(r->ctype), "%s", ct != NULL ? ct : "");
    }
}

static int on_chunk(struct cm_http_call *call, const struct cm_http_response *head,
                    const char *data, size_t len, void *user)
{
    (void)call;
    struct result *r = user;
    r->status = head->status;
    r->nchunks++;
    ASSERT_OK(cm_buf_append(&r->chunks, data, len));
    return 0;
}

static bool result_done(void *arg)
{
    return ((struct result *)arg)->done;
}

TEST(client_server_end_to_end)
{
    struct fx f;
    fx_start(&f, NULL);
    ASSERT_OK(cm_http_server_route(f.srv, NULL, "/v2/apps/{id*}", 0, h_echo, NULL));
    struct result res = {0};
    struct cm_http_header hdr = {"X-Trace", "1"};
    struct cm_http_call_options o = {
        .method = "PUT",
        .path = "/v2/apps/shop/web?force=true",
        .body = "{\"instances\":2}",
        .body_len = 15,
        .headers = &hdr,
        .nheaders = 1,
        .timeout_ms = 5000,
        .on_done = on_done,
        .user = &res,
    };
    ASSERT_OK(cm_http_call_start(f.loop, f.addr, &o, NULL));
    ASSERT_FALSE(res.done); /* never from inside start */
    WAIT(f.loop, result_done, &res);
    ASSERT_OK(res.err);
    ASSERT_INT_EQ(res.status, 200);
    ASSERT_STR_EQ(res.body.data,
                  "PUT /v2/apps/shop/web id=shop/web body={\"instances\":2}");
    cm_buf_done(&res.body);

    /* 404 with Marathon's error body. */
    memset(&res, 0, sizeof(res));
    o.method = "GET";
    o.path = "/nope";
    o.body = NULL;
    o.body_len = 0;
    ASSERT_OK(cm_http_call_start(f.loop, f.addr, &o, NULL));
    WAIT(f.loop, result_done, &res);
    ASSERT_OK(res.err);
    ASSERT_INT_EQ(res.status, 404);
    ASSERT_STR_EQ(res.ctype, "application/json");
    ASSERT_STR_EQ(res.body.data, "{\"message\": \"not found\"}");
    cm_buf_done(&res.body);

    /* A cancelled call leaves nothing behind. */
    memset(&res, 0, sizeof(res));
    struct cm_http_call *call;
    ASSERT_OK(cm_http_call_start(f.loop, f.addr, &o, &call));
    cm_http_call_cancel(call);
    run_for(f.loop, 0.05);
    ASSERT_FALSE(res.done);
    ASSERT_ERR(cm_http_call_start(f.loop, "nohost", &o, NULL), CM_EINVAL);
    o.path = "/bad path";
    ASSERT_ERR(cm_http_call_start(f.loop, f.addr, &o, NULL), CM_EINVAL);
    WAIT(f.loop, no_conns, &f);
    fx_end(&f);
}

/* Server-sent events: a streamed answer read piece by piece by the client. */
struct sse {
    struct ev_loop *loop;
    struct cm_http_req *req;
    ev_timer timer;
    int sent;
};

static void sse_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct sse *s = cm_container_of(w, struct sse, timer);
    char ev[64];
    int n = snprintf(ev, sizeof(ev), "event: status_update_event\ndata: {\"n\":%d}\n\n",
                     s->sent);
    ASSERT_OK(cm_http_stream_write(s->req, ev, (size_t)n));
    if (++s->sent == 3) {
        ASSERT_OK(cm_http_stream_end(s->req));
        s->req = NULL;
        ev_timer_stop(loop, w);
    }
}

static void h_events(struct cm_http_req *req, void *data)
{
    struct sse *s = data;
    s->req = req;
    ASSERT_OK(cm_http_req_add_header(req, "Cache-Control", "no-cache"));
    ASSERT_ERR(cm_http_req_add_header(req, "Bad\r\nName", "x"), CM_EINVAL);
    ASSERT_OK(cm_http_stream_begin(req, 200, "text/event-stream"));
    ev_timer_init(&s->timer, sse_timer_cb, 0.02, 0.02);
    ev_timer_start(s->loop, &s->timer);
}

TEST(client_server_sse)
{
    struct fx f;
    fx_start(&f, NULL);
    struct sse s = {.loop = f.loop};
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/v2/events", 0, h_events, &s));
    struct result res = {0};
    struct cm_http_call_options o = {
        .method = "GET",
        .path = "/v2/events",
        .on_chunk = on_chunk,
        .on_done = on_done,
        .user = &res,
    };
    ASSERT_OK(cm_http_call_start(f.loop, f.addr, &o, NULL));
    WAIT(f.loop, result_done, &res);
    ASSERT_OK(res.err);
    ASSERT_INT_EQ(res.status, 200);
    ASSERT_STR_EQ(res.ctype, "text/event-stream");
    ASSERT_INT_EQ(res.nchunks, 3);
    ASSERT_STR_EQ(res.chunks.data,
                  "event: status_update_event\ndata: {\"n\":0}\n\n"
                  "event: status_update_event\ndata: {\"n\":1}\n\n"
                  "event: status_update_event\ndata: {\"n\":2}\n\n");
    ASSERT_UINT_EQ(res.body.len, 0);
    cm_buf_done(&res.chunks);
    cm_buf_done(&res.body);

    /* A raw HTTP/1.0 client gets a close-delimited stream. */
    s.sent = 0;
    struct raw r;
    raw_connect(&r, &f);
    raw_sends(&r, "GET /v2/events HTTP/1.0\r\n\r\n");
    WAIT(f.loop, raw_eof, &r);
    struct resp out[1];
    ASSERT_INT_EQ(raw_parse(&r, out, 1, false), 1);
    ASSERT_TRUE(strstr(out[0].body, "{\"n\":2}\n\n") != NULL);
    ASSERT_TRUE(strstr(out[0].body, "0\r\n") == NULL); /* not chunked */
    raw_close(&r);
    WAIT(f.loop, no_conns, &f);
    fx_end(&f);
}

TEST(client_errors)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    /* A port nobody listens on. */
    int lfd;
    ASSERT_OK(cm_tcp_listen("127.0.0.1:0", 1, &lfd, NULL));
    uint16_t port;
    ASSERT_OK(cm_tcp_local_port(lfd, &port));
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
    close(lfd);
    struct result res = {0};
    struct cm_http_call_options o = {
        .method = "GET", .path = "/", .on_done = on_done, .user = &res};
    int rv = cm_http_call_start(loop, addr, &o, NULL);
    if (rv == 0) {
        WAIT(loop, result_done, &res);
        ASSERT_ERR(res.err, CM_ECONNREFUSED);
    } else {
        ASSERT_ERR(rv, CM_ECONNREFUSED);
    }

    /* A server that accepts and never answers: the call times out. */
    ASSERT_OK(cm_tcp_listen("127.0.0.1:0", 8, &lfd, NULL));
    ASSERT_OK(cm_tcp_local_port(lfd, &port));
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
    memset(&res, 0, sizeof(res));
    o.timeout_ms = 100;
    ASSERT_OK(cm_http_call_start(loop, addr, &o, NULL));
    WAIT(loop, result_done, &res);
    ASSERT_ERR(res.err, CM_ETIMEDOUT);
    close(lfd);
    ev_run(loop, EVRUN_NOWAIT);
    ASSERT_INT_EQ(ev_pending_count(loop), 0);
    ev_loop_destroy(loop);
}

/* The blocking helper against a server in a child process. */
TEST(client_sync_helper)
{
    int pfd[2];
    ASSERT_INT_EQ(pipe(pfd), 0);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        struct cm_http_server *srv;
        if (loop == NULL || cm_http_server_new(loop, NULL, &srv) != 0 ||
            cm_http_server_listen(srv, "127.0.0.1:0", NULL) != 0 ||
            cm_http_server_route(srv, NULL, "/v2/apps/{id*}", 0, h_echo, NULL) != 0) {
            _exit(1);
        }
        uint16_t port = cm_http_server_port(srv);
        if (write(pfd[1], &port, sizeof(port)) != sizeof(port)) {
            _exit(1);
        }
        ev_run(loop, 0);
        _exit(0);
    }
    close(pfd[1]);
    uint16_t port = 0;
    ASSERT_INT_EQ(read(pfd[0], &port, sizeof(port)), sizeof(port));
    close(pfd[0]);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
    int status = 0;
    char *body = NULL;
    struct cm_errbuf eb = {0};
    int rv = cm_http_request_sync(addr, "POST", "/v2/apps/web/restart", "{}", &status,
                                  &body, 5000, &eb);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ASSERT_OK(rv);
    ASSERT_INT_EQ(status, 200);
    ASSERT_STR_EQ(body, "POST /v2/apps/web/restart id=web/restart body={}");
    cm_free(&body);

    /* The same address now refuses: the error says what failed. */
    rv = cm_http_request_sync(addr, "GET", "/v2/apps", NULL, &status, &body, 1000, &eb);
    ASSERT_ERR(rv, CM_ECONNREFUSED);
    ASSERT_TRUE(strstr(eb.msg, "/v2/apps") != NULL);
    ASSERT_NULL(body);
}

/* Many pipelined requests in one write: more than the input buffer holds and
 * more than the per-wake-up budget, all answered in order. */
TEST(server_many_pipelined)
{
    struct fx f;
    fx_start(&f, NULL);
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/n/{name}", 0, h_echo, NULL));
    enum { N = 300 };
    struct cm_buf b = {0};
    for (int i = 0; i < N; i++) {
        ASSERT_OK(cm_buf_printf(&b,
                                "GET /n/%d HTTP/1.1\r\nHost: x\r\nX-Pad: "
                                "%0100d\r\n\r\n",
                                i, 0));
    }
    ASSERT_TRUE(b.len > 32 * 1024);
    struct raw r;
    raw_connect(&r, &f);
    raw_send(&r, b.data, b.len);
    cm_buf_done(&b);
    static struct resp out[N];
    raw_expect(&f, &r, N, out, false);
    for (int i = 0; i < N; i++) {
        char want[64];
        snprintf(want, sizeof(want), "GET /n/%d name=%d body=", i, i);
        ASSERT_STR_EQ(out[i].body, want);
    }
    raw_close(&r);
    WAIT(f.loop, no_conns, &f);
    fx_end(&f);
}

/* A streamed answer to a client that does not read is bounded by max_output. */
static void h_flood(struct cm_http_req *req, void *data)
{
    int *rv = data;
    char chunk[1024];
    memset(chunk, 'f', sizeof(chunk));
    ASSERT_OK(cm_http_stream_begin(req, 200, "application/octet-stream"));
    for (int i = 0; i < 1000; i++) {
        *rv = cm_http_stream_write(req, chunk, sizeof(chunk));
        if (*rv != 0) {
            break;
        }
    }
    ASSERT_ERR(cm_http_stream_write(req, chunk, 1), CM_ECLOSED);
    ASSERT_ERR(cm_http_stream_end(req), CM_ECLOSED);
}

TEST(server_output_limit)
{
    struct fx f;
    struct cm_http_server_options o = {.max_output = 64 * 1024};
    fx_start(&f, &o);
    int rv = 0;
    ASSERT_OK(cm_http_server_route(f.srv, "GET", "/flood", 0, h_flood, &rv));
    struct raw r;
    raw_connect(&r, &f);
    raw_sends(&r, "GET /flood HTTP/1.1\r\nHost: x\r\n\r\n");
    WAIT(f.loop, raw_eof, &r);
    ASSERT_ERR(rv, CM_ETOOBIG);
    raw_close(&r);
    WAIT(f.loop, no_conns, &f);
    fx_end(&f);
}
