/* HTTP/1.1 server on libev (contract in http.h).
 *
 * Objects and their watchers:
 *   struct cm_http_server  the listener (accept_io, pause_timer after EMFILE),
 *                          the shutdown deadline (shutdown_timer), the routes;
 *   struct conn            one per connection: io (EV_READ/EV_WRITE as needed),
 *                          timer (idle, read, write or linger deadline, by state)
 *                          and kick (a zero timer that resumes parsing of
 *                          pipelined input after an asynchronous answer).
 *   struct cm_http_req     the request handle, embedded in its conn: a conn
 *                          answers one request at a time, strictly in order.
 *
 * Close discipline (libuv's uv_close, STYLE.md rule 14): closing a conn stops
 * its watchers at once (which also clears anything libev had pending for them)
 * and closes the stream; its memory is freed only when none of our frames holds
 * it (c->busy) and no handler holds its request handle (req.active). The server
 * does the same with srv->depth, so a handler may free the server. After every
 * call into user code we check whether the conn was closed before touching it.
 *
 * Bounded work per wake-up (haproxy's maxaccept): ACCEPTS_PER_WAKEUP accepts,
 * READS_PER_WAKEUP reads and REQUESTS_PER_WAKEUP requests per connection, and
 * WRITES_PER_WAKEUP writes; the rest waits for the next loop iteration. Memory
 * per connection is bounded by IN_BUF_SIZE, the parser's limits and max_output;
 * while a request is being answered we read only into the fixed input buffer,
 * then stop reading (back-pressure on pipelining clients). */
#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "net/http.h"
#include "net/net.h"

#define ACCEPTS_PER_WAKEUP  16
#define READS_PER_WAKEUP    16
#define REQUESTS_PER_WAKEUP 16
#define WRITES_PER_WAKEUP   16
#define IN_BUF_SIZE         (16u * 1024)
#define OUT_KEEP_MAX        (64u * 1024) /* larger output buffers are freed when empty */
#define ACCEPT_PAUSE        0.1          /* seconds without accepting after EMFILE */
#define LINGER_MAX_BYTES    (1u << 20)   /* discarded after an error answer */
#define MAX_PARAMS          16
#define MAX_ALLOW           128

/* What c->timer is counting down. */
enum {
    TIMER_NONE = 0,
    TIMER_WRITE,  /* output pending without progress */
    TIMER_IDLE,   /* keep-alive without a request */
    TIMER_READ,   /* a request partly received */
    TIMER_LINGER, /* lingering close */
};

/* ------------------------------------------------------------------ lists */

struct link {
    struct link *prev;
    struct link *next;
};

static void list_init(struct link *l)
{
    l->prev = l;
    l->next = l;
}

static void list_push(struct link *head, struct link *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

static void list_remove(struct link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    list_init(l);
}

/* ------------------------------------------------------------------ types */

enum seg_kind {
    SEG_LIT = 0, /* literal text */
    SEG_PARAM,   /* {name}: one segment */
    SEG_TAIL,    /* {name*}: one or more segments */
};

struct pattern_seg {
    enum seg_kind kind;
    char *text; /* literal, or the parameter's name */
};

struct route {
    struct route *next;
    char *method; /* NULL: any */
    struct pattern_seg *segs;
    size_t nsegs;
    size_t nlit;
    size_t body_limit;
    cm_http_handler_fn fn;
    void *data;
};

enum conn_state {
    CONN_IDLE = 0,  /* waiting for a request (idle timeout) */
    CONN_READING,   /* a request partly received (read timeout: 408) */
    CONN_HANDLING,  /* the request is with its handler; nothing answered yet */
    CONN_STREAMING, /* a streamed answer is being produced */
    CONN_DRAINING,  /* [transient] the last answer is queued; close once written */
    CONN_LINGER,    /* error answered and write side shut: discard input a while */
    CONN_CLOSED,    /* watchers stopped, stream closed; memory may wait for req */
};

struct cm_http_req {
    bool active;         /* with a handler, not finished */
    bool closed;         /* the connection went away while active */
    bool answering;      /* respond/stream_begin called */
    bool head_only;      /* HEAD: no body in the answer */
    bool chunked;        /* streamed answer uses chunked coding */
    struct cm_buf extra; /* extra answer fields, "Name: value\r\n" */
    struct cm_buf pbuf;  /* route parameter names and values */
    struct cm_http_param params[MAX_PARAMS];
    size_t nparams;
    cm_http_close_fn close_cb;
    void *close_data;
};

struct conn {
    struct cm_http_server *srv; /* NULL once the server was freed */
    struct link link;           /* in srv->conns */
    enum conn_state state;
    struct cm_stream *s;
    struct sockaddr_storage peer;
    ev_io io;
    ev_timer timer;
    ev_timer kick;
    struct cm_http_parser *parser;
    const struct route *route; /* matched at HEAD; NULL: route_status */
    int route_status;          /* 404, 405, 501 */
    char allow[MAX_ALLOW];     /* 405: the Allow field */
    bool head_seen;            /* the current request's head was parsed */
    bool peer_eof;             /* the peer shut its write side */
    bool close_after;          /* close once the output is written */
    bool linger_after;         /* ... with a lingering close */
    bool dispatching;          /* a request is being dispatched (handler on the stack) */
    int timer_kind;            /* TIMER_*: which deadline c->timer runs */
    unsigned wwant;            /* CM_STREAM_WANT_* the last blocked write waits for */
    unsigned busy;             /* our frames on the stack holding the conn */
    size_t lingered;
    char in[IN_BUF_SIZE];
    size_t in_off;
    size_t in_len;
    struct cm_buf out;
    size_t out_off;
    struct cm_http_req req;
};

struct cm_http_server {
    struct ev_loop *loop;
    struct cm_http_server_options o;
    char *server_name;
    int lfd;
    uint16_t port;
    ev_io accept_io;
    ev_timer pause_timer;
    ev_timer shutdown_timer;
    struct link conns;
    unsigned nconns;
    struct route *routes;
    struct route **routes_tail;
    unsigned depth; /* our callbacks on the stack */
    bool freeing;
    bool shutting_down;
    bool shutdown_done;
    cm_http_shutdown_fn shutdown_cb;
    void *shutdown_data;
    ev_tstamp date_at;
    char date[40];
};

static void conn_close(struct conn *c, bool notify);
static void conn_after(struct conn *c);
static void conn_process(struct conn *c);
static void srv_free_now(struct cm_http_server *srv);

static inline struct conn *req_conn(const struct cm_http_req *req)
{
    return cm_container_of(req, struct conn, req);
}

/* ------------------------------------------------------------------ helpers */

static void io_set_events(struct ev_loop *loop, ev_io *w, int events)
{
    if (events == 0) {
        ev_io_stop(loop, w);
        return;
    }
    if (ev_is_active(w) && (w->events & (EV_READ | EV_WRITE)) == events) {
        return;
    }
    ev_io_stop(loop, w);
    ev_io_modify(w, events);
    ev_io_start(loop, w);
}

static void timer_arm(struct ev_loop *loop, ev_timer *t, unsigned ms)
{
    ev_timer_stop(loop, t);
    ev_timer_set(t, ms / 1e3, 0.);
    ev_timer_start(loop, t);
}

/* An IMF-fixdate (RFC 9110 §5.6.7) for the Date field, cached per second. Our
 * own name tables: strftime's %a and %b follow the locale. */
static const char *srv_date(struct cm_http_server *srv)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    ev_tstamp now = ev_now(srv->loop);
    if (srv->date[0] == '\0' || now - srv->date_at >= 1.0 || now < srv->date_at) {
        time_t t = (time_t)now;
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL) {
            return "Thu, 01 Jan 1970 00:00:00 GMT";
        }
        snprintf(srv->date, sizeof(srv->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        srv->date_at = (ev_tstamp)t;
    }
    return srv->date;
}

static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) {
        return false;
    }
    if (a->ss_family == AF_INET) {
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    }
    return false;
}

static bool has_output(const struct conn *c)
{
    return c->out_off < c->out.len;
}

static size_t output_queued(const struct conn *c)
{
    return c->out.len - c->out_off;
}

/* ------------------------------------------------------------------ routes */

static void route_free(struct route *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->nsegs; i++) {
        cm_free(&r->segs[i].text);
    }
    cm_free(&r->segs);
    cm_free(&r->method);
    cm_free(&r);
}

/* Split @pattern into segments; see cm_http_server_route(). */
static int route_parse(struct route *r, const char *pattern)
{
    if (pattern == NULL || pattern[0] != '/') {
        return CM_EINVAL;
    }
    size_t max = 1;
    for (const char *c = pattern; *c != '\0'; c++) {
        max += *c == '/';
    }
    r->segs = cm_calloc(max, sizeof(*r->segs));
    if (r->segs == NULL) {
        return CM_ENOMEM;
    }
    bool tail = false;
    const char *p = pattern;
    while (*p != '\0') {
        while (*p == '/') {
            p++;
        }
        const char *b = p;
        while (*p != '\0' && *p != '/') {
            p++;
        }
        size_t len = (size_t)(p - b);
        if (len == 0) {
            break;
        }
        struct pattern_seg *s = &r->segs[r->nsegs];
        if (b[0] == '{') {
            if (len < 3 || b[len - 1] != '}') {
                return CM_EINVAL;
            }
            b++;
            len -= 2;
            s->kind = SEG_PARAM;
            if (b[len - 1] == '*') {
                if (tail || len < 2) {
                    return CM_EINVAL;
                }
                tail = true;
                s->kind = SEG_TAIL;
                len--;
            }
            if (memchr(b, '{', len) != NULL || memchr(b, '}', len) != NULL) {
                return CM_EINVAL;
            }
        } else {
            if (memchr(b, '{', len) != NULL || memchr(b, '}', len) != NULL) {
                return CM_EINVAL;
            }
            s->kind = SEG_LIT;
            r->nlit++;
        }
        s->text = cm_strndup(b, len);
        if (s->text == NULL) {
            return CM_ENOMEM;
        }
        r->nsegs++;
    }
    size_t nparams = r->nsegs - r->nlit;
    return nparams > MAX_PARAMS ? CM_EINVAL : 0;
}

int cm_http_server_route(struct cm_http_server *srv, const char *method,
                         const char *pattern, size_t body_limit, cm_http_handler_fn fn,
                         void *data)
{
    if (fn == NULL) {
        return CM_EINVAL;
    }
    struct route *r = cm_calloc(1, sizeof(*r));
    if (r == NULL) {
        return CM_ENOMEM;
    }
    int rv = route_parse(r, pattern);
    if (rv != 0) {
        goto err_after_alloc;
    }
    if (method != NULL) {
        r->method = cm_strdup(method);
        if (r->method == NULL) {
            rv = CM_ENOMEM;
            goto err_after_alloc;
        }
    }
    r->body_limit = body_limit != 0 ? body_limit : srv->o.body_limit;
    r->fn = fn;
    r->data = data;
    *srv->routes_tail = r;
    srv->routes_tail = &r->next;
    return 0;

err_after_alloc:
    route_free(r);
    return rv;
}

/* Does @r's pattern match the request's segments? On a match with @req set, the
 * parameters are stored in it. */
static int route_match(const struct route *r, const struct cm_http_request *hr,
                       struct cm_http_req *req, bool *ret_match)
{
    size_t n = hr->nsegments, np = r->nsegs;
    size_t t = np; /* index of the tail segment, np when none */
    for (size_t i = 0; i < np; i++) {
        if (r->segs[i].kind == SEG_TAIL) {
            t = i;
        }
    }
    *ret_match = false;
    if (t == np ? n != np : n < np) {
        return 0;
    }
    size_t post = t == np ? 0 : np - t - 1;
    /* Pattern index i matches request segment map(i). */
    for (size_t i = 0; i < np; i++) {
        if (i == t) {
            continue;
        }
        size_t k = i < t ? i : n - (np - i);
        if (r->segs[i].kind == SEG_LIT && strcmp(r->segs[i].text, hr->segments[k]) != 0) {
            return 0;
        }
    }
    *ret_match = true;
    if (req == NULL) {
        return 0;
    }
    /* Two passes: append everything, then take pointers (the buffer may move). */
    cm_buf_clear(&req->pbuf);
    size_t offs[MAX_PARAMS][2];
    size_t np_out = 0;
    for (size_t i = 0; i < np; i++) {
        if (r->segs[i].kind == SEG_LIT) {
            continue;
        }
        offs[np_out][0] = req->pbuf.len;
        int rv = cm_buf_append(&req->pbuf, r->segs[i].text, strlen(r->segs[i].text) + 1);
        offs[np_out][1] = req->pbuf.len;
        if (rv == 0 && i == t) {
            size_t end = n - post;
            for (size_t k = i; k < end && rv == 0; k++) {
                rv = cm_buf_puts(&req->pbuf, hr->segments[k]);
                if (rv == 0 && k + 1 < end) {
                    rv = cm_buf_append(&req->pbuf, "/", 1);
                }
            }
            if (rv == 0) {
                rv = cm_buf_append(&req->pbuf, "", 1);
            }
        } else if (rv == 0) {
            size_t k = i < t ? i : n - (np - i);
            rv = cm_buf_append(&req->pbuf, hr->segments[k], strlen(hr->segments[k]) + 1);
        }
        if (rv != 0) {
            return rv;
        }
        np_out++;
    }
    for (size_t i = 0; i < np_out; i++) {
        req->params[i].name = req->pbuf.data + offs[i][0];
        req->params[i].value = req->pbuf.data + offs[i][1];
    }
    req->nparams = np_out;
    return 0;
}

static bool method_ok(const struct route *r, const struct cm_http_request *hr)
{
    if (r->method == NULL || strcmp(r->method, hr->method_str) == 0) {
        return true;
    }
    return hr->method == CM_HTTP_HEAD && strcmp(r->method, "GET") == 0;
}

static void allow_add(char *allow, const char *m)
{
    size_t len = strlen(allow);
    /* Skip duplicates: compare against each listed method. */
    const char *cur = allow;
    size_t mlen = strlen(m);
    while (*cur != '\0') {
        const char *e = strchr(cur, ',');
        size_t l = e != NULL ? (size_t)(e - cur) : strlen(cur);
        if (l == mlen && memcmp(cur, m, l) == 0) {
            return;
        }
        cur += l;
        while (*cur == ',' || *cur == ' ') {
            cur++;
        }
    }
    if (len + mlen + 3 >= MAX_ALLOW) {
        return;
    }
    snprintf(allow + len, MAX_ALLOW - len, "%s%s", len > 0 ? ", " : "", m);
}

/* Route the request whose head was just parsed. */
static int conn_route(struct conn *c, const struct cm_http_request *hr)
{
    const struct route *best = NULL;
    bool path_match = false;
    c->allow[0] = '\0';
    for (const struct route *r = c->srv->routes; r != NULL; r = r->next) {
        bool match;
        (void)route_match(r, hr, NULL, &match);
        if (!match) {
            continue;
        }
        path_match = true;
        if (r->method != NULL) {
            allow_add(c->allow, r->method);
            if (strcmp(r->method, "GET") == 0) {
                allow_add(c->allow, "HEAD");
            }
        }
        if (method_ok(r, hr) && (best == NULL || r->nlit > best->nlit)) {
            best = r;
        }
    }
    c->route = best;
    c->route_status = 0;
    if (best == NULL) {
        c->route_status = hr->method == CM_HTTP_OTHER ? 501 : path_match ? 405 : 404;
        return 0;
    }
    bool match;
    return route_match(best, hr, &c->req, &match);
}

/* ------------------------------------------------------------------ output */

static int out_head(struct conn *c, int status, const char *ctype, bool keep,
                    bool streaming, size_t len)
{
    struct cm_http_server *srv = c->srv;
    const struct cm_http_request *hr = cm_http_parser_request(c->parser);
    struct cm_buf *b = &c->out;
    int rv = cm_buf_printf(b, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status,
                           cm_http_reason(status), srv_date(srv));
    if (rv == 0 && srv->server_name != NULL) {
        rv = cm_buf_printf(b, "Server: %s\r\n", srv->server_name);
    }
    if (rv == 0 && ctype != NULL) {
        rv = cm_buf_printf(b, "Content-Type: %s\r\n", ctype);
    }
    bool no_body = status < 200 || status == 204 || status == 304;
    if (rv == 0 && !no_body) {
        if (!streaming) {
            rv = cm_buf_printf(b, "Content-Length: %zu\r\n", len);
        } else if (c->req.chunked) {
            rv = cm_buf_puts(b, "Transfer-Encoding: chunked\r\n");
        }
    }
    if (rv == 0) {
        if (!keep) {
            rv = cm_buf_puts(b, "Connection: close\r\n");
        } else if (hr->version_minor == 0) {
            rv = cm_buf_puts(b, "Connection: keep-alive\r\n");
        }
    }
    if (rv == 0 && c->req.extra.len > 0) {
        rv = cm_buf_append(b, c->req.extra.data, c->req.extra.len);
    }
    if (rv == 0) {
        rv = cm_buf_puts(b, "\r\n");
    }
    return rv;
}

/* JSON-escape @msg into @b as {"message": "..."} (Marathon's error shape). */
static int json_message(struct cm_buf *b, const char *msg)
{
    int rv = cm_buf_puts(b, "{\"message\": \"");
    for (const unsigned char *p = (const unsigned char *)msg; rv == 0 && *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            rv = cm_buf_append(b, e, 2);
        } else if (*p < 0x20) {
            rv = cm_buf_printf(b, "\\u%04x", *p);
        } else {
            rv = cm_buf_append(b, p, 1);
        }
    }
    if (rv == 0) {
        rv = cm_buf_puts(b, "\"}");
    }
    return rv;
}

/* Queue an error answer produced by the server itself (not a handler), and close
 * the connection after it (lingering) unless @keep. */
static void conn_error(struct conn *c, int status, const char *msg, bool keep)
{
    struct cm_buf body = {0};
    bool head_only = false;
    if (c->head_seen) {
        head_only = cm_http_parser_request(c->parser)->method == CM_HTTP_HEAD;
    }
    if (json_message(&body, msg) != 0) {
        cm_buf_done(&body);
        conn_close(c, true);
        return;
    }
    cm_buf_clear(&c->req.extra);
    if (status == 405 && c->allow[0] != '\0' &&
        cm_buf_printf(&c->req.extra, "Allow: %s\r\n", c->allow) != 0) {
        cm_buf_done(&body);
        conn_close(c, true);
        return;
    }
    int rv = out_head(c, status, "application/json", keep, false, body.len);
    if (rv == 0 && !head_only) {
        rv = cm_buf_append(&c->out, body.data, body.len);
    }
    cm_buf_done(&body);
    cm_buf_clear(&c->req.extra);
    if (rv != 0) {
        conn_close(c, true);
        return;
    }
    if (!keep) {
        c->close_after = true;
        c->linger_after = true;
        c->state = CONN_DRAINING;
    }
}

/* Write queued output until done, EAGAIN or the budget. Errors: from the stream
 * (the caller closes). */
static int conn_flush(struct conn *c)
{
    for (int i = 0; i < WRITES_PER_WAKEUP && has_output(c); i++) {
        ssize_t n = cm_stream_write(c->s, c->out.data + c->out_off, output_queued(c));
        if (n == CM_EAGAIN) {
            c->wwant = c->s->want; /* TLS may need the fd readable to write */
            return 0;
        }
        if (n < 0) {
            return (int)n;
        }
        c->out_off += (size_t)n;
        c->wwant = CM_STREAM_WANT_WRITE;
        if (c->timer_kind == TIMER_WRITE) {
            /* Progress: the write deadline starts again (re-armed in conn_after). */
            ev_timer_stop(c->srv->loop, &c->timer);
            c->timer_kind = TIMER_NONE;
        }
    }
    if (!has_output(c)) {
        c->out_off = 0;
        if (c->out.cap > OUT_KEEP_MAX) {
            cm_buf_done(&c->out);
        } else {
            cm_buf_clear(&c->out);
        }
    } else if (c->out_off >= OUT_KEEP_MAX) {
        cm_buf_consume(&c->out, c->out_off);
        c->out_off = 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ lifecycle */

static void conn_free(struct conn *c)
{
    cm_http_parser_free(c->parser);
    cm_buf_done(&c->out);
    cm_buf_done(&c->req.extra);
    cm_buf_done(&c->req.pbuf);
    cm_free(&c);
}

/* Free @c if it is closed and nobody holds it. */
static void conn_release(struct conn *c)
{
    if (c->state == CONN_CLOSED && c->busy == 0 && !c->req.active) {
        conn_free(c);
    }
}

static void srv_check_shutdown(struct cm_http_server *srv)
{
    if (srv->shutting_down && !srv->shutdown_done && srv->nconns == 0) {
        /* Report from the timer callback, never from inside a conn's frames. */
        ev_timer_stop(srv->loop, &srv->shutdown_timer);
        ev_timer_set(&srv->shutdown_timer, 0., 0.);
        ev_timer_start(srv->loop, &srv->shutdown_timer);
    }
}

/* Stop everything of @c; @notify: tell the handler holding the request (not when
 * the close comes from that handler's own call). Does not free; callers
 * conn_release() when they are done with @c. */
static void conn_close(struct conn *c, bool notify)
{
    if (c->state == CONN_CLOSED) {
        return;
    }
    struct cm_http_server *srv = c->srv;
    if (srv != NULL) {
        ev_io_stop(srv->loop, &c->io);
        ev_timer_stop(srv->loop, &c->timer);
        ev_timer_stop(srv->loop, &c->kick);
        list_remove(&c->link);
        srv->nconns--;
        c->srv = NULL;
        srv_check_shutdown(srv);
    }
    cm_stream_close(c->s);
    c->s = NULL;
    c->state = CONN_CLOSED;
    if (c->req.active && !c->req.closed) {
        c->req.closed = true;
        if (notify && c->req.close_cb != NULL) {
            c->busy++;
            c->req.close_cb(&c->req, c->req.close_data);
            c->busy--;
        }
    }
}

/* The current request is answered (queued): get ready for the next one. */
static void req_finish(struct conn *c)
{
    struct cm_http_req *req = &c->req;
    req->active = false;
    req->answering = false;
    req->close_cb = NULL;
    req->close_data = NULL;
    req->nparams = 0;
    cm_buf_clear(&req->extra);
    cm_buf_clear(&req->pbuf);
    if (c->state == CONN_CLOSED) {
        return;
    }
    cm_http_parser_reset(c->parser);
    /* The idle deadline counts from this answer, not from an older state. */
    ev_timer_stop(c->srv->loop, &c->timer);
    c->timer_kind = TIMER_NONE;
    c->head_seen = false;
    c->route = NULL;
    c->route_status = 0;
    c->state = c->close_after ? CONN_DRAINING : CONN_IDLE;
    if (!c->dispatching) {
        /* An asynchronous answer: resume pipelined input from the loop, not from
         * inside the caller. */
        if (c->in_off < c->in_len) {
            ev_timer_stop(c->srv->loop, &c->kick);
            ev_timer_start(c->srv->loop, &c->kick);
        }
        conn_after(c);
        conn_release(c);
    }
}

/* Pick watchers and the deadline for @c's state; close when nothing is left to
 * do. */
static void conn_after(struct conn *c)
{
    if (c->state == CONN_CLOSED) {
        return;
    }
    struct cm_http_server *srv = c->srv;
    bool buffered = c->in_off < c->in_len;
    if (c->peer_eof && !buffered && (c->state == CONN_IDLE || c->state == CONN_READING)) {
        c->state = CONN_DRAINING; /* nothing more will come */
        c->close_after = true;
    }
    if (!has_output(c) && c->state == CONN_DRAINING) {
        if (c->linger_after && !c->peer_eof) {
            (void)cm_stream_shutdown(c->s);
            c->state = CONN_LINGER;
            c->in_off = c->in_len = 0;
        } else {
            conn_close(c, true);
            return;
        }
    }
    int ev = 0;
    bool room = c->in_len < IN_BUF_SIZE || c->in_off > 0;
    if (!c->peer_eof && room && c->state != CONN_DRAINING) {
        ev |= EV_READ;
    }
    if (has_output(c)) {
        ev |= (c->wwant & CM_STREAM_WANT_READ) ? EV_READ : EV_WRITE;
    }
    io_set_events(srv->loop, &c->io, ev);

    /* Deadlines: write progress first, then by state. A running deadline of the
     * same kind is kept: the read deadline covers the whole head (slow-loris),
     * body progress restarts it (conn_read), write progress restarts the write
     * deadline (conn_flush). Handlers and streams have none. */
    unsigned ms = 0;
    int kind = TIMER_NONE;
    if (has_output(c)) {
        kind = TIMER_WRITE;
        ms = srv->o.write_timeout_ms;
    } else if (c->state == CONN_IDLE) {
        kind = TIMER_IDLE;
        ms = srv->o.idle_timeout_ms;
    } else if (c->state == CONN_READING) {
        kind = TIMER_READ;
        ms = srv->o.read_timeout_ms;
    } else if (c->state == CONN_LINGER) {
        kind = TIMER_LINGER;
        ms = srv->o.linger_ms;
    }
    if (kind == TIMER_NONE) {
        ev_timer_stop(srv->loop, &c->timer);
    } else if (kind != c->timer_kind || !ev_is_active(&c->timer)) {
        timer_arm(srv->loop, &c->timer, ms);
    }
    c->timer_kind = kind;
}

/* ------------------------------------------------------------------ requests */

/* The head is parsed: route it, set the body limit, and answer 100-continue. */
static bool conn_on_head(struct conn *c)
{
    const struct cm_http_request *hr = cm_http_parser_request(c->parser);
    c->head_seen = true;
    c->req.head_only = hr->method == CM_HTTP_HEAD;
    if (conn_route(c, hr) != 0) {
        conn_error(c, 500, "out of memory", false);
        return false;
    }
    size_t limit = c->route != NULL ? c->route->body_limit : c->srv->o.body_limit;
    cm_http_parser_set_body_limit(c->parser, limit);
    bool has_body = hr->chunked || hr->content_length > 0;
    if (hr->expect_continue && has_body) {
        if (c->route == NULL) {
            /* Answer now; the client will not send the body (RFC 9110 §10.1.1). */
            conn_error(c, c->route_status, cm_http_reason(c->route_status), false);
            return false;
        }
        if (hr->content_length > 0 && (uint64_t)hr->content_length > limit) {
            return true; /* the parser fails with 413 next */
        }
        if (c->in_off == c->in_len &&
            cm_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n") != 0) {
            conn_close(c, true);
            return false;
        }
    }
    return true;
}

/* The request is complete: hand it to its handler (or answer the routing
 * error). Returns false when @c was closed. */
static bool conn_dispatch(struct conn *c)
{
    struct cm_http_server *srv = c->srv;
    const struct cm_http_request *hr = cm_http_parser_request(c->parser);
    if (!hr->keep_alive || srv->shutting_down) {
        c->close_after = true;
    }
    c->req.active = true;
    c->req.closed = false;
    c->req.answering = false;
    c->req.chunked = false;
    c->state = CONN_HANDLING;
    c->dispatching = true;
    c->busy++;
    if (c->route == NULL) {
        int status = c->route_status;
        conn_error(c, status, status == 404 ? "not found" : cm_http_reason(status),
                   !c->close_after);
        req_finish(c);
    } else {
        c->route->fn(&c->req, c->route->data);
    }
    c->busy--;
    c->dispatching = false;
    return c->state != CONN_CLOSED;
}

/* Parse buffered input and dispatch complete requests, in order, while the
 * previous answer is queued. */
static void conn_process(struct conn *c)
{
    for (int budget = REQUESTS_PER_WAKEUP; budget > 0;) {
        if (c->state != CONN_IDLE && c->state != CONN_READING) {
            return;
        }
        size_t used = 0;
        int rv = cm_http_parser_feed(c->parser, c->in + c->in_off, c->in_len - c->in_off,
                                     &used);
        c->in_off += used;
        if (c->in_off == c->in_len) {
            c->in_off = c->in_len = 0;
        }
        if (rv == CM_HTTP_PARSE_AGAIN) {
            if (cm_http_parser_started(c->parser)) {
                c->state = CONN_READING;
            }
            return;
        }
        if (rv == CM_HTTP_PARSE_HEAD) {
            c->state = CONN_READING;
            if (!conn_on_head(c)) {
                return;
            }
            continue;
        }
        if (rv == CM_HTTP_PARSE_DONE) {
            budget--;
            if (!conn_dispatch(c)) {
                return;
            }
            continue;
        }
        if (rv == CM_ENOMEM) {
            conn_close(c, true);
            return;
        }
        c->state = CONN_READING;
        conn_error(c, cm_http_parser_status(c->parser), cm_http_parser_error(c->parser),
                   false);
        return;
    }
    /* Budget spent with input left: continue on the next iteration. */
    if (c->state != CONN_CLOSED && c->in_off < c->in_len) {
        ev_timer_stop(c->srv->loop, &c->kick);
        ev_timer_start(c->srv->loop, &c->kick);
    }
}

static void conn_read(struct conn *c)
{
    for (int i = 0; i < READS_PER_WAKEUP; i++) {
        if (c->in_len == IN_BUF_SIZE && c->in_off > 0) {
            memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
            c->in_len -= c->in_off;
            c->in_off = 0;
        }
        if (c->in_len == IN_BUF_SIZE) {
            return; /* back-pressure until the request in progress is answered */
        }
        ssize_t n = cm_stream_read(c->s, c->in + c->in_len, IN_BUF_SIZE - c->in_len);
        if (n == CM_EAGAIN) {
            return;
        }
        if (n <= 0) {
            /* An error, or the end of the input. A client that shuts its side
             * while its request is handled or streamed is taken as gone (as
             * Go's net/http and nginx do), so the handler learns it through the
             * close callback. Complete requests already buffered are still
             * answered, then the connection closes (conn_after). */
            c->peer_eof = true;
            if (n < 0 || c->state == CONN_HANDLING || c->state == CONN_STREAMING ||
                c->state == CONN_LINGER || c->state == CONN_READING) {
                conn_close(c, true);
            }
            return;
        }
        if (c->state == CONN_LINGER) {
            c->lingered += (size_t)n;
            if (c->lingered > LINGER_MAX_BYTES) {
                conn_close(c, true);
                return;
            }
            continue;
        }
        c->in_len += (size_t)n;
        if (c->state == CONN_READING && c->head_seen && c->timer_kind == TIMER_READ) {
            /* Body progress restarts the read deadline. */
            ev_timer_stop(c->srv->loop, &c->timer);
            c->timer_kind = TIMER_NONE;
        }
        conn_process(c);
        if (c->state == CONN_CLOSED) {
            return;
        }
        if (cm_stream_pending(c->s)) {
            continue;
        }
    }
}

/* Enter/leave one of our callbacks. */
static void srv_enter(struct cm_http_server *srv, struct conn *c)
{
    srv->depth++;
    if (c != NULL) {
        c->busy++;
    }
}

static void srv_leave(struct cm_http_server *srv, struct conn *c)
{
    if (c != NULL) {
        c->busy--;
        if (c->state != CONN_CLOSED) {
            conn_after(c);
        }
        conn_release(c);
    }
    if (--srv->depth == 0 && srv->freeing) {
        srv_free_now(srv);
    }
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct conn *c = cm_container_of(w, struct conn, io);
    struct cm_http_server *srv = c->srv;
    srv_enter(srv, c);
    if ((revents & EV_READ) != 0) {
        conn_read(c);
    }
    if (c->state != CONN_CLOSED && has_output(c) && conn_flush(c) != 0) {
        conn_close(c, true);
    }
    srv_leave(srv, c);
}

static void conn_kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = cm_container_of(w, struct conn, kick);
    struct cm_http_server *srv = c->srv;
    srv_enter(srv, c);
    conn_process(c);
    if (c->state != CONN_CLOSED && has_output(c) && conn_flush(c) != 0) {
        conn_close(c, true);
    }
    srv_leave(srv, c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = cm_container_of(w, struct conn, timer);
    struct cm_http_server *srv = c->srv;
    srv_enter(srv, c);
    if (has_output(c) || c->state != CONN_READING) {
        /* Stuck writer, idle keep-alive, or linger over. */
        conn_close(c, true);
    } else {
        conn_error(c, 408, "request timeout", false);
        if (c->state != CONN_CLOSED && conn_flush(c) != 0) {
            conn_close(c, true);
        }
    }
    srv_leave(srv, c);
}

/* ------------------------------------------------------------------ accept */

/* Over a limit: answer 503 with one best-effort write and close. */
static void refuse(struct cm_http_server *srv, int fd)
{
    static const char body[] = "{\"message\": \"too many connections\"}";
    char msg[256];
    int len = snprintf(msg, sizeof(msg),
                       "HTTP/1.1 503 Service Unavailable\r\n"
                       "Date: %s\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: %zu\r\n"
                       "Connection: close\r\n\r\n%s",
                       srv_date(srv), sizeof(body) - 1, body);
    struct cm_stream *s;
    int rv = srv->o.wrap != NULL ? srv->o.wrap(srv->o.wrap_data, fd, true, &s)
                                 : cm_stream_tcp_new(fd, &s);
    if (rv != 0) {
        (void)close(fd);
        return;
    }
    (void)cm_stream_write(s, msg, (size_t)len);
    cm_stream_close(s);
}

static unsigned conns_from(const struct cm_http_server *srv,
                           const struct sockaddr_storage *ss)
{
    unsigned n = 0;
    for (const struct link *l = srv->conns.next; l != &srv->conns; l = l->next) {
        const struct conn *c = cm_container_of(l, struct conn, link);
        n += same_ip(&c->peer, ss);
    }
    return n;
}

static int conn_new(struct cm_http_server *srv, int fd, const struct sockaddr_storage *ss)
{
    struct conn *c = cm_calloc(1, sizeof(*c));
    if (c == NULL) {
        return CM_ENOMEM;
    }
    int rv = cm_http_parser_new(CM_HTTP_PARSE_REQUEST, &c->parser);
    if (rv != 0) {
        goto err_after_alloc;
    }
    cm_http_parser_set_body_limit(c->parser, srv->o.body_limit);
    rv = srv->o.wrap != NULL ? srv->o.wrap(srv->o.wrap_data, fd, true, &c->s)
                             : cm_stream_tcp_new(fd, &c->s);
    if (rv != 0) {
        goto err_after_parser;
    }
    c->srv = srv;
    c->peer = *ss;
    c->state = CONN_IDLE;
    c->wwant = CM_STREAM_WANT_WRITE;
    ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
    ev_timer_init(&c->timer, conn_timer_cb, 1., 0.);
    ev_timer_init(&c->kick, conn_kick_cb, 0., 0.);
    list_push(&srv->conns, &c->link);
    srv->nconns++;
    conn_after(c);
    return 0;

err_after_parser:
    cm_http_parser_free(c->parser);
err_after_alloc:
    cm_free(&c);
    return rv;
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct cm_http_server *srv = cm_container_of(w, struct cm_http_server, accept_io);
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        int fd;
        int rv = cm_tcp_accept(srv->lfd, &fd);
        if (rv == CM_EAGAIN) {
            return;
        }
        if (rv == CM_ECONNRESET) {
            continue;
        }
        if (rv != 0) {
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM: pause instead of spinning. */
            ev_io_stop(loop, &srv->accept_io);
            ev_timer_set(&srv->pause_timer, ACCEPT_PAUSE, 0.);
            ev_timer_start(loop, &srv->pause_timer);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) {
            (void)close(fd);
            continue;
        }
        if (srv->nconns >= srv->o.max_conns ||
            conns_from(srv, &ss) >= srv->o.max_conns_per_ip) {
            refuse(srv, fd);
            continue;
        }
        if (conn_new(srv, fd, &ss) != 0) {
            (void)close(fd);
        }
    }
}

static void pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct cm_http_server *srv = cm_container_of(w, struct cm_http_server, pause_timer);
    if (srv->lfd >= 0 && !srv->shutting_down) {
        ev_io_start(loop, &srv->accept_io);
    }
}

/* ------------------------------------------------------------------ server */

int cm_http_server_new(struct ev_loop *loop, const struct cm_http_server_options *opts,
                       struct cm_http_server **ret)
{
    struct cm_http_server *srv = cm_calloc(1, sizeof(*srv));
    if (srv == NULL) {
        return CM_ENOMEM;
    }
    if (opts != NULL) {
        srv->o = *opts;
    }
    if (srv->o.server_name != NULL) {
        srv->server_name = cm_strdup(srv->o.server_name);
        if (srv->server_name == NULL) {
            cm_free(&srv);
            return CM_ENOMEM;
        }
    }
    srv->o.server_name = NULL;
#define DEFAULT(f, v)    \
    if (srv->o.f == 0) { \
        srv->o.f = (v);  \
    }
    DEFAULT(max_conns, 1024);
    DEFAULT(max_conns_per_ip, 256);
    DEFAULT(body_limit, CM_HTTP_DEFAULT_BODY_LIMIT);
    DEFAULT(max_output, 8u << 20);
    DEFAULT(read_timeout_ms, 10000);
    DEFAULT(idle_timeout_ms, 60000);
    DEFAULT(write_timeout_ms, 30000);
    DEFAULT(linger_ms, 2000);
#undef DEFAULT
    srv->loop = loop;
    srv->lfd = -1;
    list_init(&srv->conns);
    srv->routes_tail = &srv->routes;
    ev_io_init(&srv->accept_io, accept_cb, -1, EV_READ);
    ev_timer_init(&srv->pause_timer, pause_cb, ACCEPT_PAUSE, 0.);
    *ret = srv;
    return 0;
}

int cm_http_server_listen_fd(struct cm_http_server *srv, int fd)
{
    if (srv->lfd >= 0 || srv->shutting_down) {
        return CM_EBUSY;
    }
    srv->lfd = fd;
    (void)cm_tcp_local_port(fd, &srv->port);
    ev_io_set(&srv->accept_io, fd, EV_READ);
    ev_io_start(srv->loop, &srv->accept_io);
    return 0;
}

int cm_http_server_listen(struct cm_http_server *srv, const char *hostport,
                          struct cm_errbuf *eb)
{
    if (srv->lfd >= 0 || srv->shutting_down) {
        return cm_err_setf(eb, CM_EBUSY, "HTTP server already listening");
    }
    int fd;
    int rv = cm_tcp_listen(hostport, 512, &fd, eb);
    if (rv != 0) {
        return rv;
    }
    return cm_http_server_listen_fd(srv, fd);
}

uint16_t cm_http_server_port(const struct cm_http_server *srv)
{
    return srv->lfd >= 0 ? srv->port : 0;
}

unsigned cm_http_server_conns(const struct cm_http_server *srv)
{
    return srv->nconns;
}

static void srv_stop_listening(struct cm_http_server *srv)
{
    ev_io_stop(srv->loop, &srv->accept_io);
    ev_timer_stop(srv->loop, &srv->pause_timer);
    if (srv->lfd >= 0) {
        (void)close(srv->lfd);
        srv->lfd = -1;
    }
}

static void close_all(struct cm_http_server *srv, bool idle_only)
{
    if (!idle_only) {
        /* Close callbacks may close other conns: always take the first. */
        while (srv->conns.next != &srv->conns) {
            struct conn *c = cm_container_of(srv->conns.next, struct conn, link);
            c->busy++;
            conn_close(c, true);
            c->busy--;
            conn_release(c);
        }
        return;
    }
    /* Idle conns hold no request, so closing them calls no user code. */
    struct link *l = srv->conns.next;
    while (l != &srv->conns) {
        struct conn *c = cm_container_of(l, struct conn, link);
        l = l->next;
        bool idle = (c->state == CONN_IDLE || c->state == CONN_READING ||
                     c->state == CONN_LINGER) &&
                    !has_output(c);
        if (!idle_only || idle) {
            c->busy++;
            conn_close(c, true);
            c->busy--;
            conn_release(c);
        } else {
            c->close_after = true;
            if (c->state == CONN_IDLE || c->state == CONN_READING) {
                c->state = CONN_DRAINING; /* output pending: write it, then close */
            }
            conn_after(c);
        }
    }
}

static void shutdown_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct cm_http_server *srv =
        cm_container_of(w, struct cm_http_server, shutdown_timer);
    srv_enter(srv, NULL);
    close_all(srv, false);
    if (!srv->shutdown_done && srv->nconns == 0) {
        srv->shutdown_done = true;
        ev_timer_stop(srv->loop, &srv->shutdown_timer);
        if (srv->shutdown_cb != NULL) {
            srv->shutdown_cb(srv, srv->shutdown_data);
        }
    }
    srv_leave(srv, NULL);
}

void cm_http_server_shutdown(struct cm_http_server *srv, unsigned deadline_ms,
                             cm_http_shutdown_fn cb, void *data)
{
    if (srv->shutting_down) {
        return;
    }
    srv->shutting_down = true;
    srv->shutdown_cb = cb;
    srv->shutdown_data = data;
    srv_stop_listening(srv);
    ev_timer_init(&srv->shutdown_timer, shutdown_cb, deadline_ms / 1e3, 0.);
    ev_timer_start(srv->loop, &srv->shutdown_timer);
    srv->depth++;
    close_all(srv, true);
    srv->depth--;
    srv_check_shutdown(srv);
}

static void srv_free_now(struct cm_http_server *srv)
{
    struct route *r = srv->routes;
    while (r != NULL) {
        struct route *next = r->next;
        route_free(r);
        r = next;
    }
    cm_free(&srv->server_name);
    cm_free(&srv);
}

void cm_http_server_free(struct cm_http_server *srv)
{
    if (srv == NULL || srv->freeing) {
        return;
    }
    srv->freeing = true;
    srv_stop_listening(srv);
    if (srv->shutting_down) {
        ev_timer_stop(srv->loop, &srv->shutdown_timer);
    }
    srv->depth++;
    close_all(srv, false);
    srv->depth--;
    /* close_all() may have re-armed the shutdown timer. */
    ev_timer_stop(srv->loop, &srv->shutdown_timer);
    if (srv->depth == 0) {
        srv_free_now(srv);
    }
}

/* ------------------------------------------------------------------ handle */

const struct cm_http_request *cm_http_req_request(const struct cm_http_req *req)
{
    return cm_http_parser_request(req_conn(req)->parser);
}

const char *cm_http_req_param(const struct cm_http_req *req, const char *name)
{
    for (size_t i = 0; i < req->nparams; i++) {
        if (strcmp(req->params[i].name, name) == 0) {
            return req->params[i].value;
        }
    }
    return NULL;
}

bool cm_http_req_closed(const struct cm_http_req *req)
{
    return req->closed;
}

void cm_http_req_set_close_cb(struct cm_http_req *req, cm_http_close_fn cb, void *data)
{
    req->close_cb = cb;
    req->close_data = data;
}

static bool field_ok(const char *s, bool name)
{
    if (s == NULL || (name && *s == '\0')) {
        return false;
    }
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\r' || c == '\n' || (name && (c == ':' || c <= ' '))) {
            return false;
        }
    }
    return true;
}

int cm_http_req_add_header(struct cm_http_req *req, const char *name, const char *value)
{
    if (!req->active) {
        return CM_EINVAL;
    }
    if (req->closed) {
        return CM_ECLOSED;
    }
    if (req->answering || !field_ok(name, true) || !field_ok(value, false)) {
        return CM_EINVAL;
    }
    return cm_buf_printf(&req->extra, "%s: %s\r\n", name, value);
}

/* The handle of a closed connection is finished: free what is left. */
static int req_end_inert(struct cm_http_req *req)
{
    struct conn *c = req_conn(req);
    req_finish(c);
    conn_release(c);
    return CM_ECLOSED;
}

int cm_http_respond(struct cm_http_req *req, int status, const char *content_type,
                    const void *body, size_t len)
{
    if (!req->active || req->answering || status < 200 || status > 999) {
        return CM_EINVAL;
    }
    if (req->closed) {
        return req_end_inert(req);
    }
    struct conn *c = req_conn(req);
    bool keep = !c->close_after && !c->srv->shutting_down;
    if (!keep) {
        c->close_after = true;
    }
    int rv = out_head(c, status, content_type, keep, false, len);
    if (rv == 0 && !req->head_only && status != 204 && status != 304 && len > 0) {
        rv = cm_buf_append(&c->out, body, len);
    }
    if (rv != 0) {
        conn_close(c, false);
        req_finish(c);
        conn_release(c);
        return rv;
    }
    req_finish(c);
    return 0;
}

int cm_http_respond_error(struct cm_http_req *req, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct cm_buf body = {0};
    int rv = json_message(&body, msg);
    if (rv != 0) {
        cm_buf_done(&body);
        cm_http_req_abort(req);
        return rv;
    }
    rv = cm_http_respond(req, status, "application/json", body.data, body.len);
    cm_buf_done(&body);
    return rv;
}

void cm_http_req_peer(const struct cm_http_req *req, char *buf, size_t cap)
{
    if (cap == 0) {
        return;
    }
    buf[0] = '\0';
    if (req->closed) {
        return;
    }
    const struct conn *c = req_conn(req);
    const struct sockaddr_storage *sa = &c->peer;
    const void *addr = NULL;
    if (sa->ss_family == AF_INET) {
        addr = &((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->ss_family == AF_INET6) {
        addr = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    }
    if (addr == NULL || inet_ntop(sa->ss_family, addr, buf, (socklen_t)cap) == NULL) {
        buf[0] = '\0';
    }
}

size_t cm_http_req_queued(const struct cm_http_req *req)
{
    return req->closed ? 0 : output_queued(req_conn(req));
}

int cm_http_stream_begin(struct cm_http_req *req, int status, const char *content_type)
{
    if (!req->active || req->answering || status < 200 || status > 999) {
        return CM_EINVAL;
    }
    if (req->closed) {
        return req_end_inert(req);
    }
    struct conn *c = req_conn(req);
    const struct cm_http_request *hr = cm_http_parser_request(c->parser);
    req->chunked = hr->version_minor >= 1;
    bool keep = !c->close_after && !c->srv->shutting_down;
    if (!req->chunked && !req->head_only) {
        keep = false; /* close-delimited (RFC 9112 §6.3 rule 8) */
    }
    if (!keep) {
        c->close_after = true;
    }
    int rv = out_head(c, status, content_type, keep, true, 0);
    if (rv != 0) {
        conn_close(c, false);
        (void)req_end_inert(req);
        return rv;
    }
    req->answering = true;
    c->state = CONN_STREAMING;
    if (!c->dispatching) {
        conn_after(c);
    }
    return 0;
}

int cm_http_stream_write(struct cm_http_req *req, const void *data, size_t len)
{
    if (!req->active || !req->answering) {
        return CM_EINVAL;
    }
    if (req->closed) {
        return CM_ECLOSED;
    }
    struct conn *c = req_conn(req);
    if (len == 0 || req->head_only) {
        return 0;
    }
    if (output_queued(c) + len > c->srv->o.max_output) {
        conn_close(c, false);
        return CM_ETOOBIG;
    }
    int rv = 0;
    if (req->chunked) {
        rv = cm_buf_printf(&c->out, "%zx\r\n", len);
    }
    if (rv == 0) {
        rv = cm_buf_append(&c->out, data, len);
    }
    if (rv == 0 && req->chunked) {
        rv = cm_buf_puts(&c->out, "\r\n");
    }
    if (rv != 0) {
        conn_close(c, false);
        return rv;
    }
    if (!c->dispatching) {
        conn_after(c);
    }
    return 0;
}

int cm_http_stream_end(struct cm_http_req *req)
{
    if (!req->active || !req->answering) {
        return CM_EINVAL;
    }
    if (req->closed) {
        return req_end_inert(req);
    }
    struct conn *c = req_conn(req);
    if (req->chunked && !req->head_only && cm_buf_puts(&c->out, "0\r\n\r\n") != 0) {
        conn_close(c, false);
        (void)req_end_inert(req);
        return CM_ENOMEM;
    }
    req_finish(c);
    return 0;
}

void cm_http_req_abort(struct cm_http_req *req)
{
    if (!req->active) {
        return;
    }
    struct conn *c = req_conn(req);
    if (!req->closed) {
        conn_close(c, false);
    }
    (void)req_end_inert(req);
}
