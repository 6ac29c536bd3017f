/* lib/net, HTTP section: an HTTP/1.1 parser, server and client on libev.
 *
 * - Parser (http_parse.c): pure and incremental. Feed it bytes as they arrive, in
 *   any split; it copies what it keeps (the head, and the body unless asked to
 *   stream it), so the caller's buffer can be reused at once. Every resource is
 *   bounded: request line 8 KiB (414), head 64 KiB and 100 fields (431), body
 *   limit set by the caller (413).
 * - Server (http_server.c): a listener and its connections on one libev loop,
 *   with a router (method + path pattern with {param} and {tail*} segments),
 *   keep-alive, pipelining (answers strictly in request order; the next request
 *   is parsed only once the current answer is queued), asynchronous answers
 *   through a request handle, streaming (chunked) answers for long responses and
 *   server-sent events, timeouts, connection limits and a graceful shutdown.
 * - Client (http_client.c): one request per connection on libev (connect with a
 *   timeout, Content-Length, chunked or close-delimited bodies, streamed bodies
 *   through a callback), and a blocking helper for the CLI.
 *
 * Protocol choices (RFC 9112 / RFC 9110), enforced by the parser:
 * - Lines must end in CR LF. A bare LF (which RFC 9112 §2.2 lets a recipient
 *   accept) and a bare CR (§2.2: "MUST consider that element to be invalid") are
 *   rejected with 400: a lenient origin behind a strict proxy is the classic
 *   request-smuggling set-up, and every client we care about sends CR LF.
 *   Empty lines before the request line are skipped (§2.2, SHOULD).
 * - obs-fold (a field line starting with SP/HTAB) is rejected with 400 (§5.2),
 *   as is whitespace between a field name and its colon (§5.1).
 * - Content-Length: digits only; repeated or list values must all be equal, else
 *   400 (RFC 9110 §8.6). Transfer-Encoding must be exactly "chunked" (other
 *   codings: 501, chunked not last: 400), and is 400 together with
 *   Content-Length or in an HTTP/1.0 request (RFC 9112 §6.1, §6.3).
 * - HTTP/1.1 requests need exactly one valid Host (400 otherwise, §3.2).
 *   Versions HTTP/1.0 and HTTP/1.x are accepted (1.x for x > 1 is treated as
 *   1.1); any other major version is 505.
 * - request-target: origin-form ("/a/b?q"), absolute-form (scheme and authority
 *   dropped, §3.2.2) and "*" for OPTIONS. The path is percent-decoded into
 *   segments; empty segments are dropped ("//a/" is "/a"), and a segment that
 *   decodes to "." or "..", or contains NUL or '/', is 400.
 * - Expect: 100-continue is reported (the server answers "100 Continue" once
 *   the route accepts the body); any other expectation is 417.
 * - Chunk extensions are ignored; trailer fields are skipped (bounded like the
 *   head).
 *
 * Errors are negative cm_err codes (lib/base). Thread safety: none; every object
 * here belongs to the thread that runs its loop.
 */
#ifndef CM_HTTP_H
#define CM_HTTP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cm_errbuf;
struct cm_stream;
struct ev_loop;

/* ------------------------------------------------------------------ limits */

#define CM_HTTP_MAX_REQUEST_LINE   (8u * 1024)  /* start line, without CR LF: 414 */
#define CM_HTTP_MAX_HEAD           (64u * 1024) /* field lines in total: 431 */
#define CM_HTTP_MAX_FIELDS         100          /* field lines: 431 */
#define CM_HTTP_MAX_CHUNK_LINE     4096         /* chunk-size line with extensions */
#define CM_HTTP_DEFAULT_BODY_LIMIT (1u << 20)   /* server default: 413 above */

/* ------------------------------------------------------------------ messages */

enum cm_http_method {
    CM_HTTP_OTHER = 0, /* a syntactically valid method we do not implement */
    CM_HTTP_GET,
    CM_HTTP_HEAD,
    CM_HTTP_POST,
    CM_HTTP_PUT,
    CM_HTTP_DELETE,
    CM_HTTP_PATCH,
    CM_HTTP_OPTIONS,
};

/* A field line. Names are lower-cased by the parser; values have surrounding
 * whitespace removed. Both are NUL-terminated. */
struct cm_http_header {
    const char *name;
    const char *value;
};

/* A name/value pair: a decoded query parameter or a route parameter. */
struct cm_http_param {
    const char *name;
    const char *value;
};

/* A parsed request. Every pointer is borrowed from the parser (or the server's
 * request handle) and valid until it is reset, freed, or the request answered. */
struct cm_http_request {
    /* read-only */
    enum cm_http_method method;
    const char *method_str; /* as received, e.g. "GET" */
    const char *target;     /* the request-target as received */
    const char *path;       /* decoded and normalised: "/" + segments joined by '/' */
    const char *query;      /* raw query after '?' (not decoded), "" when none */
    int version_minor;      /* 0 (HTTP/1.0) or 1 */
    const char *host;       /* Host field value, NULL when absent (HTTP/1.0) */
    bool keep_alive;        /* Connection semantics (1.1 default on, 1.0 off) */
    bool expect_continue;   /* "Expect: 100-continue" */
    bool chunked;           /* body in chunked transfer coding */
    int64_t content_length; /* -1 when absent */
    size_t nheaders;
    const struct cm_http_header *headers;
    size_t nsegments;
    const char *const *segments; /* decoded path segments */
    size_t nquery;
    const struct cm_http_param *query_params; /* decoded ('+' is a space) */
    const char *body;                         /* NUL-terminated for convenience */
    size_t body_len;
};

/* A parsed response (client side). Pointers as for cm_http_request. */
struct cm_http_response {
    /* read-only */
    int status;
    const char *reason;
    int version_minor;
    bool keep_alive;
    bool chunked;
    int64_t content_length; /* -1 when absent */
    size_t nheaders;
    const struct cm_http_header *headers;
    const char *body; /* NUL-terminated; empty when the body was streamed */
    size_t body_len;
};

/* Case-insensitive lookup of the first field named @name; NULL when absent. */
const char *cm_http_request_header(const struct cm_http_request *r, const char *name);
const char *cm_http_response_header(const struct cm_http_response *r, const char *name);
/* The first decoded value of query parameter @name ("" for "?flag"); NULL when
 * absent. */
const char *cm_http_request_query(const struct cm_http_request *r, const char *name);

/* "GET" → CM_HTTP_GET; unknown → CM_HTTP_OTHER. @name need not be NUL-terminated. */
enum cm_http_method cm_http_method_parse(const char *name, size_t len);
/* The standard reason phrase of @status ("Not Found"); "Unknown" otherwise. */
const char *cm_http_reason(int status);

/* ------------------------------------------------------------------ parser */

enum cm_http_parser_kind {
    CM_HTTP_PARSE_REQUEST = 0, /* server side */
    CM_HTTP_PARSE_RESPONSE,    /* client side */
};

/* What cm_http_parser_feed() stopped at (non-negative results). */
enum cm_http_parse_result {
    CM_HTTP_PARSE_AGAIN = 0, /* all input consumed; the message is not complete */
    CM_HTTP_PARSE_HEAD,      /* head complete (once per message): inspect it, set the
                              * body limit, then feed again, even with no bytes */
    CM_HTTP_PARSE_BODY,      /* streaming mode: a body piece, see cm_http_parser_piece */
    CM_HTTP_PARSE_DONE,      /* the message is complete; the rest of the input (if
                              * any) belongs to the next message */
};

struct cm_http_parser;

/* A new parser. Errors: CM_ENOMEM. */
int cm_http_parser_new(enum cm_http_parser_kind kind, struct cm_http_parser **ret);
/* Accepts NULL. */
void cm_http_parser_free(struct cm_http_parser *p);
/* Forget the current message (keeping memory) and expect the next one. */
void cm_http_parser_reset(struct cm_http_parser *p);

/* Body limit for the current message, in bytes; default
 * CM_HTTP_DEFAULT_BODY_LIMIT. Set it before the body starts (when feed returned
 * CM_HTTP_PARSE_HEAD); a declared Content-Length above it fails at once. */
void cm_http_parser_set_body_limit(struct cm_http_parser *p, size_t limit);
/* Streaming mode: body bytes are not buffered but handed out one piece at a time
 * (CM_HTTP_PARSE_BODY); the limit then does not apply. */
void cm_http_parser_set_stream_body(struct cm_http_parser *p, bool on);
/* Response parsing: the request was HEAD, so the response has no body whatever
 * its fields say (RFC 9112 §6.3). Set before feeding the response. */
void cm_http_parser_set_head_request(struct cm_http_parser *p, bool on);

/* Parse up to @len bytes of @data; *ret_consumed says how many were used (the
 * rest belongs to the next message or must be fed again after HEAD/BODY).
 * Returns a cm_http_parse_result or, on failure, a negative cm_err; the parser
 * then stays failed until reset and cm_http_parser_status() gives the HTTP
 * status to answer with.
 * Errors: CM_EMALFORMED (400, 417, 505), CM_ETOOBIG (413, 414, 431),
 * CM_EUNSUPPORTED (501), CM_ENOMEM. */
int cm_http_parser_feed(struct cm_http_parser *p, const void *data, size_t len,
                        size_t *ret_consumed);
/* The peer closed the stream: completes a close-delimited response body.
 * Returns CM_HTTP_PARSE_DONE, or CM_ETRUNC when the message is incomplete, or 0
 * (CM_HTTP_PARSE_AGAIN) when no message had started. */
int cm_http_parser_eof(struct cm_http_parser *p);

/* After an error: the HTTP status (400, 413, 414, 417, 431, 501, 505) and a short
 * static text saying why. 0 and "" when there is no error. */
int cm_http_parser_status(const struct cm_http_parser *p);
const char *cm_http_parser_error(const struct cm_http_parser *p);

/* After CM_HTTP_PARSE_HEAD or _DONE: the message (borrowed from the parser). */
const struct cm_http_request *cm_http_parser_request(const struct cm_http_parser *p);
const struct cm_http_response *cm_http_parser_response(const struct cm_http_parser *p);
/* After CM_HTTP_PARSE_BODY: the piece, borrowed from the input just fed. */
void cm_http_parser_piece(const struct cm_http_parser *p, const char **ret_data,
                          size_t *ret_len);
/* True once any byte of a message (other than skipped empty lines) arrived. */
bool cm_http_parser_started(const struct cm_http_parser *p);

/* ------------------------------------------------------------------ server */

struct cm_http_server;
/* The handle of one request being answered. It stays valid until the answer is
 * complete (cm_http_respond*, cm_http_stream_end) or cm_http_req_abort() is
 * called, even if the connection closes first: then it is inert, the answer
 * calls return CM_ECLOSED, and the last of them frees it. A handler must
 * therefore finish every request it is given, exactly once. */
struct cm_http_req;

/* Called for each routed request; answer now or later through @req. */
typedef void (*cm_http_handler_fn)(struct cm_http_req *req, void *data);
/* Called once when the connection of a request still being answered closes:
 * the client left (a client that shuts down its sending side while its request
 * is handled counts as gone), a write failed or timed out, or the server shut
 * down. @req stays valid (inert) until finished. Not called when the close comes
 * from the handler's own call (cm_http_req_abort, a failed stream write). */
typedef void (*cm_http_close_fn)(struct cm_http_req *req, void *data);
/* Called once when a graceful shutdown has closed every connection. */
typedef void (*cm_http_shutdown_fn)(struct cm_http_server *srv, void *data);

struct cm_http_server_options {
    unsigned max_conns;        /* all clients; 0: 1024 */
    unsigned max_conns_per_ip; /* 0: 256 */
    size_t body_limit;         /* default per route; 0: CM_HTTP_DEFAULT_BODY_LIMIT */
    size_t max_output;         /* queued answer bytes per connection before a
                                * stream write fails; 0: 8 MiB */
    unsigned read_timeout_ms;  /* a request partly received: its head must arrive
                                * within this, then its body must progress within
                                * this, else 408; 0: 10000 */
    unsigned idle_timeout_ms;  /* keep-alive with no request: close; 0: 60000 */
    unsigned write_timeout_ms; /* output pending without progress; 0: 30000 */
    unsigned linger_ms;        /* reading and discarding after an error answer
                                * before closing; 0: 2000 */
    const char *server_name;   /* "Server" field, copied; NULL: none */
    /* Turns each accepted socket into a stream, as cm_stream_wrap_fn in net.h
     * (TLS plugs in here); NULL: plain TCP. */
    int (*wrap)(void *wrap_data, int fd, bool server, struct cm_stream **ret);
    void *wrap_data;
};

/* A server on @loop with no listener yet. @opts may be NULL (defaults); it is
 * copied. Errors: CM_ENOMEM. */
int cm_http_server_new(struct ev_loop *loop, const struct cm_http_server_options *opts,
                       struct cm_http_server **ret);

/* Listen on @hostport ("127.0.0.1:0" picks a port) with cm_tcp_listen. Errors:
 * those of cm_tcp_listen, CM_EBUSY (already listening); @eb names the address. */
int cm_http_server_listen(struct cm_http_server *srv, const char *hostport,
                          struct cm_errbuf *eb);
/* Serve the listening socket @fd instead (non-blocking); it transfers on success
 * only. Errors: CM_EBUSY. */
int cm_http_server_listen_fd(struct cm_http_server *srv, int fd);
/* The bound port, 0 when not listening. */
uint16_t cm_http_server_port(const struct cm_http_server *srv);
/* Connections currently open (for tests and metrics). */
unsigned cm_http_server_conns(const struct cm_http_server *srv);

/* Route @method ("GET", ...; NULL: any method) and @pattern to @fn.
 * Pattern segments are literals, "{name}" (exactly one segment) or, at most once
 * per pattern, "{name*}" (one or more segments, joined by '/'), which may be
 * followed by more segments: "/v2/apps/{id*}/versions/{version}". A request
 * matching several patterns goes to the one with the most literal segments,
 * then the earliest added. HEAD requests use GET routes (the body is dropped).
 * A path that matches only other methods gets 405 with Allow; none: 404.
 * @body_limit: 0 uses the server's. @pattern and @method are copied.
 * Errors: CM_EINVAL (bad pattern), CM_ENOMEM. */
int cm_http_server_route(struct cm_http_server *srv, const char *method,
                         const char *pattern, size_t body_limit, cm_http_handler_fn fn,
                         void *data);

/* Graceful shutdown: stop accepting and close the listener, close idle
 * connections, let requests in progress finish (answers then close the
 * connection) until @deadline_ms, then close everything. @cb (may be NULL) runs
 * once every connection is gone, from the loop (never from inside this call). */
void cm_http_server_shutdown(struct cm_http_server *srv, unsigned deadline_ms,
                             cm_http_shutdown_fn cb, void *data);

/* Close everything at once and free the server. Request handles still held by
 * handlers become inert. Safe from inside a handler. Accepts NULL. */
void cm_http_server_free(struct cm_http_server *srv);

/* The request (borrowed until the answer is complete). */
const struct cm_http_request *cm_http_req_request(const struct cm_http_req *req);
/* A route parameter's decoded value; NULL when the route has no such name. */
const char *cm_http_req_param(const struct cm_http_req *req, const char *name);
/* True when the connection is gone (the handle is inert). */
bool cm_http_req_closed(const struct cm_http_req *req);
/* Register @cb to learn when the connection closes before the answer completes. */
void cm_http_req_set_close_cb(struct cm_http_req *req, cm_http_close_fn cb, void *data);
/* The client's IP address as text ("127.0.0.1", "::1") into @buf (at least 46
 * bytes for any IPv6 address); "" when the connection is gone or not IP. */
void cm_http_req_peer(const struct cm_http_req *req, char *buf, size_t cap);
/* Answer bytes queued for the client and not yet written (0 once the connection
 * is gone): how far behind a streamed answer's reader is. */
size_t cm_http_req_queued(const struct cm_http_req *req);

/* Add a field to the answer (before respond or stream_begin); both copied.
 * Errors: CM_EINVAL (CR/LF in them, or already answering), CM_ENOMEM,
 * CM_ECLOSED. */
int cm_http_req_add_header(struct cm_http_req *req, const char *name, const char *value);

/* Answer with @status and a body of @len bytes (copied), with Content-Length.
 * @content_type may be NULL (then no Content-Type). Ends the handle.
 * Errors: CM_ECLOSED (connection gone; the handle is freed all the same),
 * CM_ENOMEM (the connection is closed), CM_EINVAL (already answering). */
int cm_http_respond(struct cm_http_req *req, int status, const char *content_type,
                    const void *body, size_t len);
/* Answer with Marathon's error shape {"message": "<formatted text>"}. */
int cm_http_respond_error(struct cm_http_req *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Start a streamed answer: chunked for HTTP/1.1, close-delimited for 1.0.
 * Errors: as cm_http_respond (CM_ECLOSED frees the handle). */
int cm_http_stream_begin(struct cm_http_req *req, int status, const char *content_type);
/* Queue @len bytes (copied) as one chunk; 0 bytes is a no-op. Errors: CM_ECLOSED
 * (the handle stays until stream_end), CM_ETOOBIG (the client does not read
 * fast enough: the connection is closed), CM_ENOMEM, CM_EINVAL. */
int cm_http_stream_write(struct cm_http_req *req, const void *data, size_t len);
/* Finish the streamed answer and end the handle. Errors: CM_ECLOSED. */
int cm_http_stream_end(struct cm_http_req *req);
/* Give up on the request: close its connection without an answer (or cut a
 * streamed one short) and end the handle. */
void cm_http_req_abort(struct cm_http_req *req);

/* ------------------------------------------------------------------ client */

struct cm_http_call;

/* Streaming: a piece of the response body. Return 0 to go on, anything else to
 * cancel the call (then no done callback runs). */
typedef int (*cm_http_chunk_fn)(struct cm_http_call *call,
                                const struct cm_http_response *head, const char *data,
                                size_t len, void *user);
/* The call ended: @err is 0 with @resp complete, or a cm_err (CM_ETIMEDOUT,
 * CM_ECONNREFUSED, CM_EPROTO for an unparseable response, CM_ETOOBIG, ...) with
 * @resp NULL. @resp is borrowed for the callback only. The call is freed when the
 * callback returns. */
typedef void (*cm_http_done_fn)(struct cm_http_call *call, int err,
                                const struct cm_http_response *resp, void *user);

struct cm_http_call_options {
    const char *method;       /* required */
    const char *path;         /* request-target, already percent-encoded; required */
    const char *host;         /* Host field; NULL: the address */
    const char *content_type; /* NULL: none (application/json when body != NULL) */
    const void *body;         /* copied; NULL with body_len 0: no body */
    size_t body_len;
    const struct cm_http_header *headers; /* extra fields, copied */
    size_t nheaders;
    unsigned timeout_ms;         /* whole call, 0: none (connect still times out) */
    unsigned connect_timeout_ms; /* 0: 5000 */
    size_t max_body;             /* buffered body limit; 0: 64 MiB */
    cm_http_chunk_fn on_chunk;   /* NULL: buffer the body */
    cm_http_done_fn on_done;     /* required */
    void *user;
    /* As in cm_http_server_options (TLS later); NULL: plain TCP. */
    int (*wrap)(void *wrap_data, int fd, bool server, struct cm_stream **ret);
    void *wrap_data;
};

/* Send one request to the numeric @addr ("127.0.0.1:7070") on its own
 * connection ("Connection: close") and call @o->on_done once, never from inside
 * this function. Errors (then no callback): CM_EINVAL (address or options),
 * CM_ENOMEM, connect errors from the OS. */
int cm_http_call_start(struct ev_loop *loop, const char *addr,
                       const struct cm_http_call_options *o, struct cm_http_call **ret);
/* Stop the call; no callback runs after this. Not from inside its callbacks
 * (return non-zero from on_chunk instead). Accepts NULL. */
void cm_http_call_cancel(struct cm_http_call *call);

/* Blocking helper for the CLI: one request on a private loop. @body (may be
 * NULL) is sent as application/json. On success *ret_status is the status and
 * *ret_body a NUL-terminated copy of the body (free with cm_free), whatever the
 * status. @timeout_ms 0: none. Errors: as cm_http_done_fn, with @eb saying what
 * failed. */
int cm_http_request_sync(const char *addr, const char *method, const char *path,
                         const char *body, int *ret_status, char **ret_body,
                         unsigned timeout_ms, struct cm_errbuf *eb);

#endif /* CM_HTTP_H */
