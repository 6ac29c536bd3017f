/* HTTP/1.1 client on libev, one request per connection (contract in http.h).
 *
 * A call owns its socket/stream, one io watcher, a connect deadline and an
 * overall deadline. Every exit goes through call_end(), which stops all
 * watchers (clearing anything libev had pending for them), closes the stream
 * and frees the call after the user's last callback: libuv's close discipline
 * (STYLE.md rule 14). The done callback never runs from inside
 * cm_http_call_start(): failures after the connect started are reported from
 * the loop. Reads per wake-up are bounded (READS_PER_WAKEUP). */
#include <ev.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "net/http.h"
#include "net/net.h"

#define READS_PER_WAKEUP   16
#define READ_BUF_SIZE      (16u * 1024)
#define CONNECT_TIMEOUT_MS 5000
#define MAX_BODY_DEFAULT   (64u * 1024 * 1024)

enum call_state {
    CALL_CONNECTING = 0, /* [transient] non-blocking connect in progress */
    CALL_SENDING,        /* writing the request */
    CALL_RECEIVING,      /* reading the response */
};

struct cm_http_call {
    struct ev_loop *loop;
    enum call_state state;
    int fd; /* CALL_CONNECTING: the socket; then owned by s */
    struct cm_stream *s;
    ev_io io;
    ev_timer connect_timer;
    ev_timer timer; /* overall deadline */
    struct cm_buf out;
    size_t out_off;
    struct cm_http_parser *parser;
    cm_http_chunk_fn on_chunk;
    cm_http_done_fn on_done;
    void *user;
    int (*wrap)(void *wrap_data, int fd, bool server, struct cm_stream **ret);
    void *wrap_data;
    char rbuf[READ_BUF_SIZE];
};

static void io_set_events(struct ev_loop *loop, ev_io *w, int events)
{
    if (ev_is_active(w) && (w->events & (EV_READ | EV_WRITE)) == events) {
        return;
    }
    ev_io_stop(loop, w);
    ev_io_modify(w, events);
    ev_io_start(loop, w);
}

static void call_free(struct cm_http_call *call)
{
    ev_io_stop(call->loop, &call->io);
    ev_timer_stop(call->loop, &call->connect_timer);
    ev_timer_stop(call->loop, &call->timer);
    if (call->s != NULL) {
        cm_stream_close(call->s);
    } else if (call->fd >= 0) {
        (void)close(call->fd);
    }
    cm_http_parser_free(call->parser);
    cm_buf_done(&call->out);
    cm_free(&call);
}

/* Report the outcome and free the call. */
static void call_end(struct cm_http_call *call, int err)
{
    ev_io_stop(call->loop, &call->io);
    ev_timer_stop(call->loop, &call->connect_timer);
    ev_timer_stop(call->loop, &call->timer);
    const struct cm_http_response *resp =
        err == 0 ? cm_http_parser_response(call->parser) : NULL;
    call->on_done(call, err, resp, call->user);
    call_free(call);
}

/* A parser failure as the caller sees it. */
static int parse_err(const struct cm_http_parser *p, int rv)
{
    if (rv == CM_ENOMEM) {
        return rv;
    }
    return cm_http_parser_status(p) == 413 ? CM_ETOOBIG : CM_EPROTO;
}

static int call_flush(struct cm_http_call *call)
{
    while (call->out_off < call->out.len) {
        ssize_t n = cm_stream_write(call->s, call->out.data + call->out_off,
                                    call->out.len - call->out_off);
        if (n == CM_EAGAIN) {
            int ev = (call->s->want & CM_STREAM_WANT_READ) ? EV_READ : EV_WRITE;
            io_set_events(call->loop, &call->io, ev);
            return 0;
        }
        if (n < 0) {
            return (int)n;
        }
        call->out_off += (size_t)n;
    }
    cm_buf_done(&call->out);
    call->out_off = 0;
    call->state = CALL_RECEIVING;
    io_set_events(call->loop, &call->io, EV_READ);
    return 0;
}

/* Feed @n bytes; returns 1 when the call ended (freed), 0 to go on. */
static int call_feed(struct cm_http_call *call, const char *data, size_t n)
{
    while (true) {
        size_t used = 0;
        int rv = cm_http_parser_feed(call->parser, data, n, &used);
        data += used;
        n -= used;
        if (rv == CM_HTTP_PARSE_AGAIN) {
            return 0;
        }
        if (rv == CM_HTTP_PARSE_HEAD) {
            continue;
        }
        if (rv == CM_HTTP_PARSE_BODY) {
            const char *piece;
            size_t len;
            cm_http_parser_piece(call->parser, &piece, &len);
            if (call->on_chunk(call, cm_http_parser_response(call->parser), piece, len,
                               call->user) != 0) {
                call_free(call);
                return 1;
            }
            continue;
        }
        if (rv == CM_HTTP_PARSE_DONE) {
            call_end(call, 0);
            return 1;
        }
        call_end(call, parse_err(call->parser, rv));
        return 1;
    }
}

static void call_read(struct cm_http_call *call)
{
    for (int i = 0; i < READS_PER_WAKEUP; i++) {
        ssize_t n = cm_stream_read(call->s, call->rbuf, sizeof(call->rbuf));
        if (n == CM_EAGAIN) {
            return;
        }
        if (n < 0) {
            call_end(call, (int)n);
            return;
        }
        if (n == 0) {
            int rv = cm_http_parser_eof(call->parser);
            if (rv == CM_HTTP_PARSE_DONE) {
                call_end(call, 0);
            } else {
                call_end(call, rv == CM_ETRUNC || rv == 0 ? CM_ECONNRESET
                                                          : parse_err(call->parser, rv));
            }
            return;
        }
        if (call_feed(call, call->rbuf, (size_t)n) != 0) {
            return;
        }
    }
}

static void call_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct cm_http_call *call = cm_container_of(w, struct cm_http_call, io);
    if (call->state == CALL_CONNECTING) {
        int rv = cm_tcp_connect_result(call->fd);
        if (rv == 0) {
            rv = call->wrap != NULL
                     ? call->wrap(call->wrap_data, call->fd, false, &call->s)
                     : cm_stream_tcp_new(call->fd, &call->s);
        }
        if (rv != 0) {
            call_end(call, rv);
            return;
        }
        call->fd = -1;
        ev_timer_stop(call->loop, &call->connect_timer);
        call->state = CALL_SENDING;
    }
    if (call->state == CALL_SENDING) {
        int rv = call_flush(call);
        if (rv != 0) {
            call_end(call, rv);
        }
        return; /* read when the socket says so */
    }
    call_read(call);
}

static void call_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct cm_http_call *call = cm_container_of(w, struct cm_http_call, timer);
    call_end(call, CM_ETIMEDOUT);
}

static void call_connect_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct cm_http_call *call = cm_container_of(w, struct cm_http_call, connect_timer);
    call_end(call, CM_ETIMEDOUT);
}

static bool text_ok(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") == NULL;
}

static int format_request(struct cm_http_call *call, const char *addr,
                          const struct cm_http_call_options *o)
{
    struct cm_buf *b = &call->out;
    const char *host = o->host != NULL ? o->host : addr;
    int rv = cm_buf_printf(b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n",
                           o->method, o->path, host);
    for (size_t i = 0; rv == 0 && i < o->nheaders; i++) {
        rv = cm_buf_printf(b, "%s: %s\r\n", o->headers[i].name, o->headers[i].value);
    }
    bool has_body = o->body != NULL || o->body_len > 0;
    enum cm_http_method m = cm_http_method_parse(o->method, strlen(o->method));
    const char *ctype = o->content_type;
    if (ctype == NULL && has_body) {
        ctype = "application/json";
    }
    if (rv == 0 && ctype != NULL) {
        rv = cm_buf_printf(b, "Content-Type: %s\r\n", ctype);
    }
    if (rv == 0 &&
        (has_body || m == CM_HTTP_POST || m == CM_HTTP_PUT || m == CM_HTTP_PATCH)) {
        rv = cm_buf_printf(b, "Content-Length: %zu\r\n", o->body_len);
    }
    if (rv == 0) {
        rv = cm_buf_puts(b, "\r\n");
    }
    if (rv == 0 && o->body_len > 0) {
        rv = cm_buf_append(b, o->body, o->body_len);
    }
    return rv;
}

int cm_http_call_start(struct ev_loop *loop, const char *addr,
                       const struct cm_http_call_options *o, struct cm_http_call **ret)
{
    if (o == NULL || o->on_done == NULL || !text_ok(o->method) || !text_ok(o->path) ||
        strpbrk(o->method, " \t") != NULL || strpbrk(o->path, " \t") != NULL ||
        o->method[0] == '\0' || o->path[0] == '\0' ||
        (o->host != NULL && !text_ok(o->host)) ||
        (o->content_type != NULL && !text_ok(o->content_type)) ||
        (o->body == NULL && o->body_len > 0)) {
        return CM_EINVAL;
    }
    for (size_t i = 0; i < o->nheaders; i++) {
        if (!text_ok(o->headers[i].name) || !text_ok(o->headers[i].value)) {
            return CM_EINVAL;
        }
    }
    struct cm_http_call *call = cm_calloc(1, sizeof(*call));
    if (call == NULL) {
        return CM_ENOMEM;
    }
    call->loop = loop;
    call->fd = -1;
    call->on_chunk = o->on_chunk;
    call->on_done = o->on_done;
    call->user = o->user;
    call->wrap = o->wrap;
    call->wrap_data = o->wrap_data;
    int rv = cm_http_parser_new(CM_HTTP_PARSE_RESPONSE, &call->parser);
    if (rv != 0) {
        goto err_after_alloc;
    }
    cm_http_parser_set_body_limit(call->parser,
                                  o->max_body != 0 ? o->max_body : MAX_BODY_DEFAULT);
    cm_http_parser_set_stream_body(call->parser, o->on_chunk != NULL);
    cm_http_parser_set_head_request(call->parser, strcmp(o->method, "HEAD") == 0);
    rv = format_request(call, addr, o);
    if (rv != 0) {
        goto err_after_alloc;
    }
    rv = cm_tcp_connect(addr, &call->fd);
    if (rv != 0) {
        goto err_after_alloc;
    }
    call->state = CALL_CONNECTING;
    ev_io_init(&call->io, call_io_cb, call->fd, EV_WRITE);
    ev_io_start(loop, &call->io);
    unsigned cto =
        o->connect_timeout_ms != 0 ? o->connect_timeout_ms : CONNECT_TIMEOUT_MS;
    ev_timer_init(&call->connect_timer, call_connect_timeout_cb, cto / 1e3, 0.);
    ev_timer_start(loop, &call->connect_timer);
    ev_timer_init(&call->timer, call_timeout_cb, o->timeout_ms / 1e3, 0.);
    if (o->timeout_ms != 0) {
        ev_timer_start(loop, &call->timer);
    }
    if (ret != NULL) {
        *ret = call;
    }
    return 0;

err_after_alloc:
    call_free(call);
    return rv;
}

void cm_http_call_cancel(struct cm_http_call *call)
{
    if (call != NULL) {
        call_free(call);
    }
}

/* ------------------------------------------------------------------ blocking */

struct sync_result {
    bool done;
    int err;
    int status;
    char *body;
};

static void sync_done(struct cm_http_call *call, int err,
                      const struct cm_http_response *resp, void *user)
{
    (void)call;
    struct sync_result *r = user;
    r->done = true;
    r->err = err;
    if (err == 0) {
        r->status = resp->status;
        r->body = cm_memdup(resp->body, resp->body_len + 1);
        if (r->body == NULL) {
            r->err = CM_ENOMEM;
        }
    }
}

int cm_http_request_sync(const char *addr, const char *method, const char *path,
                         const char *body, int *ret_status, char **ret_body,
                         unsigned timeout_ms, struct cm_errbuf *eb)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (loop == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "cannot create an event loop");
    }
    struct sync_result r = {0};
    struct cm_http_call_options o = {
        .method = method,
        .path = path,
        .body = body,
        .body_len = body != NULL ? strlen(body) : 0,
        .timeout_ms = timeout_ms,
        .on_done = sync_done,
        .user = &r,
    };
    int rv = cm_http_call_start(loop, addr, &o, NULL);
    if (rv != 0) {
        ev_loop_destroy(loop);
        return cm_err_sys(eb, rv, "%s %s on %s", method != NULL ? method : "(null)",
                          path != NULL ? path : "(null)", addr != NULL ? addr : "(null)");
    }
    while (!r.done) {
        ev_run(loop, EVRUN_ONCE);
    }
    ev_loop_destroy(loop);
    if (r.err != 0) {
        return cm_err_sys(eb, r.err, "%s %s on %s", method, path, addr);
    }
    *ret_status = r.status;
    *ret_body = r.body;
    return 0;
}
