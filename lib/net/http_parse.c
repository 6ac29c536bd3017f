/* HTTP/1.1 message parser (contract and protocol choices in http.h).
 *
 * Input is consumed through a cm_wire cursor, so no read can leave the caller's
 * buffer. The head (start line and field lines) is copied line by line into
 * p->head, validated as each line completes, and never grows beyond its limits:
 * a line is only copied as far as the room left under the limit, so a peer that
 * never sends LF costs at most CM_HTTP_MAX_REQUEST_LINE + CM_HTTP_MAX_HEAD bytes.
 * Offsets are kept while the head grows (it may move) and turned into pointers
 * once it is complete; the decoded path, segments and query parameters go into
 * p->arena, reserved at once so pointers into it stay put. The body goes into
 * p->body (bounded by the limit) or is handed out in pieces (streaming mode).
 * Chunked framing is decoded by a byte-level state machine that keeps nothing
 * but counters. Both buffers are kept across messages (the per-request arena of
 * STYLE.md rule 12) unless a large message made them big. */
#include <string.h>
#include <sys/types.h>

#include "base/base.h"
#include "net/http.h"

#define KEEP_BUF_MAX          (16u * 1024) /* larger buffers are freed on reset */
#define SKIP_MAX              1024         /* empty lines before a request line */
#define CHUNK_DIGITS          16           /* hex digits of a chunk size */
#define RESPONSE_BODY_DEFAULT (64u * 1024 * 1024)

enum phase {
    PH_START = 0,      /* nothing yet: empty lines are skipped */
    PH_START_LINE,     /* collecting the start line */
    PH_FIELDS,         /* collecting field lines */
    PH_HEAD_DONE,      /* [transient] head returned; framing decided on next feed */
    PH_LENGTH,         /* Content-Length body */
    PH_CHUNK_SIZE,     /* chunk-size [ext] CR LF */
    PH_CHUNK_DATA,     /* chunk data */
    PH_CHUNK_DATA_END, /* CR LF after chunk data */
    PH_TRAILER,        /* trailer section lines, up to an empty line */
    PH_EOF_BODY,       /* response body delimited by the end of the stream */
    PH_DONE,           /* message complete */
    PH_ERROR,          /* failed; only reset helps */
};

/* Sub-states of the chunk-size line and of CR LF pairs. */
enum chunk_sub {
    CS_DIGITS = 0, /* hex digits */
    CS_EXT,        /* BWS, extensions: ignored */
    CS_LF,         /* CR seen, LF expected */
};

struct field_off {
    uint32_t name;
    uint32_t value;
};

struct cm_http_parser {
    enum cm_http_parser_kind kind;
    enum phase phase;
    int status;        /* HTTP status after an error */
    const char *error; /* static text after an error */
    size_t body_limit;
    bool stream_body;
    bool head_request;

    struct cm_buf head;  /* start line and field lines as received */
    size_t line_start;   /* offset in head of the line being collected */
    size_t fields_start; /* offset of the first field line */
    size_t skipped;      /* empty lines skipped before the start line */
    /* start line pieces (offsets into head) */
    uint32_t sl[3];
    uint32_t sl_len[3];
    size_t nfields;
    struct field_off foff[CM_HTTP_MAX_FIELDS];
    struct cm_http_header fields[CM_HTTP_MAX_FIELDS];

    struct cm_buf arena; /* decoded path, segments, query parameters */
    const char **segs;
    size_t segs_cap;
    struct cm_http_param *qp;
    size_t qp_cap;

    struct cm_buf body;
    uint64_t remaining; /* PH_LENGTH, PH_CHUNK_DATA */
    enum chunk_sub sub;
    uint64_t chunk_size;
    unsigned chunk_digits;
    size_t line_len;      /* chunk-size or trailer line so far */
    size_t trailer_bytes; /* trailer section so far */
    const char *piece;
    size_t piece_len;

    struct cm_http_request req;
    struct cm_http_response resp;
};

/* ------------------------------------------------------------------ tables */

static bool is_tchar(unsigned char c)
{
    /* RFC 9110 §5.6.2 */
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        return true;
    }
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field-value characters (RFC 9110 §5.5): VCHAR, SP, HTAB, obs-text. */
static bool is_vchar_ws(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static bool ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen) {
        return false;
    }
    for (size_t i = 0; i < alen; i++) {
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) {
            return false;
        }
    }
    return true;
}

enum cm_http_method cm_http_method_parse(const char *name, size_t len)
{
    static const struct {
        const char *s;
        enum cm_http_method m;
    } tab[] = {
        {"GET", CM_HTTP_GET},         {"HEAD", CM_HTTP_HEAD},
        {"POST", CM_HTTP_POST},       {"PUT", CM_HTTP_PUT},
        {"DELETE", CM_HTTP_DELETE},   {"PATCH", CM_HTTP_PATCH},
        {"OPTIONS", CM_HTTP_OPTIONS},
    };
    /* Methods are case-sensitive (RFC 9110 §9.1). */
    for (size_t i = 0; i < CM_ARRAY_SIZE(tab); i++) {
        if (strlen(tab[i].s) == len && memcmp(tab[i].s, name, len) == 0) {
            return tab[i].m;
        }
    }
    return CM_HTTP_OTHER;
}

const char *cm_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* ------------------------------------------------------------------ lookups */

static const char *header_find(const struct cm_http_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (ieq(h[i].name, strlen(h[i].name), name)) {
            return h[i].value;
        }
    }
    return NULL;
}

const char *cm_http_request_header(const struct cm_http_request *r, const char *name)
{
    return header_find(r->headers, r->nheaders, name);
}

const char *cm_http_response_header(const struct cm_http_response *r, const char *name)
{
    return header_find(r->headers, r->nheaders, name);
}

const char *cm_http_request_query(const struct cm_http_request *r, const char *name)
{
    for (size_t i = 0; i < r->nquery; i++) {
        if (strcmp(r->query_params[i].name, name) == 0) {
            return r->query_params[i].value;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ lifecycle */

int cm_http_parser_new(enum cm_http_parser_kind kind, struct cm_http_parser **ret)
{
    struct cm_http_parser *p = cm_calloc(1, sizeof(*p));
    if (p == NULL) {
        return CM_ENOMEM;
    }
    p->kind = kind;
    cm_http_parser_reset(p);
    *ret = p;
    return 0;
}

void cm_http_parser_free(struct cm_http_parser *p)
{
    if (p == NULL) {
        return;
    }
    cm_buf_done(&p->head);
    cm_buf_done(&p->arena);
    cm_buf_done(&p->body);
    cm_free(&p->segs);
    cm_free(&p->qp);
    cm_free(&p);
}

static void buf_recycle(struct cm_buf *b)
{
    if (b->cap > KEEP_BUF_MAX) {
        cm_buf_done(b);
    } else {
        cm_buf_clear(b);
    }
}

void cm_http_parser_reset(struct cm_http_parser *p)
{
    buf_recycle(&p->head);
    buf_recycle(&p->arena);
    buf_recycle(&p->body);
    p->phase = PH_START;
    p->status = 0;
    p->error = "";
    p->body_limit = p->kind == CM_HTTP_PARSE_REQUEST ? CM_HTTP_DEFAULT_BODY_LIMIT
                                                     : RESPONSE_BODY_DEFAULT;
    p->line_start = 0;
    p->fields_start = 0;
    p->skipped = 0;
    p->nfields = 0;
    p->remaining = 0;
    p->sub = CS_DIGITS;
    p->chunk_size = 0;
    p->chunk_digits = 0;
    p->line_len = 0;
    p->trailer_bytes = 0;
    p->piece = NULL;
    p->piece_len = 0;
    memset(&p->req, 0, sizeof(p->req));
    memset(&p->resp, 0, sizeof(p->resp));
    p->req.content_length = -1;
    p->resp.content_length = -1;
}

void cm_http_parser_set_body_limit(struct cm_http_parser *p, size_t limit)
{
    p->body_limit = limit;
}

void cm_http_parser_set_stream_body(struct cm_http_parser *p, bool on)
{
    p->stream_body = on;
}

void cm_http_parser_set_head_request(struct cm_http_parser *p, bool on)
{
    p->head_request = on;
}

int cm_http_parser_status(const struct cm_http_parser *p)
{
    return p->phase == PH_ERROR ? p->status : 0;
}

const char *cm_http_parser_error(const struct cm_http_parser *p)
{
    return p->phase == PH_ERROR ? p->error : "";
}

const struct cm_http_request *cm_http_parser_request(const struct cm_http_parser *p)
{
    return &p->req;
}

const struct cm_http_response *cm_http_parser_response(const struct cm_http_parser *p)
{
    return &p->resp;
}

void cm_http_parser_piece(const struct cm_http_parser *p, const char **ret_data,
                          size_t *ret_len)
{
    *ret_data = p->piece;
    *ret_len = p->piece_len;
}

bool cm_http_parser_started(const struct cm_http_parser *p)
{
    return p->phase != PH_START || p->head.len > 0;
}

static int fail(struct cm_http_parser *p, int code, int status, const char *why)
{
    p->phase = PH_ERROR;
    p->status = status;
    p->error = why;
    return code;
}

#define BAD(p, why) fail((p), CM_EMALFORMED, 400, (why))

/* ------------------------------------------------------------------ start line */

static int parse_version(struct cm_http_parser *p, const char *v, size_t len, int *minor)
{
    if (len != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' ||
        v[5] > '9' || v[7] < '0' || v[7] > '9') {
        return BAD(p, "malformed HTTP version");
    }
    if (v[5] != '1') {
        return fail(p, CM_EMALFORMED, 505, "unsupported HTTP version");
    }
    *minor = v[7] == '0' ? 0 : 1;
    return 0;
}

/* method SP request-target SP HTTP-version (RFC 9112 §3), single spaces. */
static int parse_request_line(struct cm_http_parser *p, char *line, size_t len)
{
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)line[i])) {
        i++;
    }
    if (i == 0 || i >= len || line[i] != ' ') {
        return BAD(p, "malformed request line");
    }
    size_t mlen = i;
    size_t t0 = ++i;
    while (i < len && (unsigned char)line[i] > 0x20 && (unsigned char)line[i] < 0x7f) {
        i++;
    }
    if (i == t0 || i >= len || line[i] != ' ') {
        return BAD(p, "malformed request target");
    }
    size_t tlen = i - t0;
    size_t v0 = ++i;
    int rv = parse_version(p, line + v0, len - v0, &p->req.version_minor);
    if (rv != 0) {
        return rv;
    }
    size_t base = (size_t)(line - p->head.data);
    p->sl[0] = (uint32_t)base;
    p->sl_len[0] = (uint32_t)mlen;
    p->sl[1] = (uint32_t)(base + t0);
    p->sl_len[1] = (uint32_t)tlen;
    line[mlen] = '\0';
    line[t0 + tlen] = '\0';
    return 0;
}

/* HTTP-version SP status-code SP [reason-phrase] (RFC 9112 §4); a missing
 * second SP is tolerated. */
static int parse_status_line(struct cm_http_parser *p, char *line, size_t len)
{
    if (len < 12 || line[8] != ' ') {
        return BAD(p, "malformed status line");
    }
    int rv = parse_version(p, line, 8, &p->resp.version_minor);
    if (rv != 0) {
        return rv;
    }
    int status = 0;
    for (size_t i = 9; i < 12; i++) {
        if (line[i] < '0' || line[i] > '9') {
            return BAD(p, "malformed status code");
        }
        status = status * 10 + (line[i] - '0');
    }
    if (status < 100) {
        return BAD(p, "malformed status code");
    }
    if (len > 12 && line[12] != ' ') {
        return BAD(p, "malformed status line");
    }
    for (size_t i = 13; i < len; i++) {
        if (!is_vchar_ws((unsigned char)line[i])) {
            return BAD(p, "invalid character in reason phrase");
        }
    }
    p->resp.status = status;
    p->sl[2] = (uint32_t)((size_t)(line - p->head.data) + (len > 12 ? 13 : 12));
    p->sl_len[2] = (uint32_t)(len > 12 ? len - 13 : 0);
    return 0;
}

/* ------------------------------------------------------------------ field lines */

/* field-name ":" OWS field-value OWS (RFC 9112 §5). */
static int parse_field_line(struct cm_http_parser *p, char *line, size_t len)
{
    if (line[0] == ' ' || line[0] == '\t') {
        return BAD(p, "obsolete line folding");
    }
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)line[i])) {
        line[i] = (char)lower((unsigned char)line[i]);
        i++;
    }
    if (i == 0 || i >= len || line[i] != ':') {
        return BAD(p, "malformed field line");
    }
    if (p->nfields == CM_HTTP_MAX_FIELDS) {
        return fail(p, CM_ETOOBIG, 431, "too many header fields");
    }
    line[i] = '\0';
    size_t v = i + 1;
    while (v < len && (line[v] == ' ' || line[v] == '\t')) {
        v++;
    }
    size_t e = len;
    while (e > v && (line[e - 1] == ' ' || line[e - 1] == '\t')) {
        e--;
    }
    for (size_t k = v; k < e; k++) {
        if (!is_vchar_ws((unsigned char)line[k])) {
            return BAD(p, "invalid character in field value");
        }
    }
    line[e] = '\0'; /* e <= len: at worst the CR */
    size_t base = (size_t)(line - p->head.data);
    p->foff[p->nfields].name = (uint32_t)base;
    p->foff[p->nfields].value = (uint32_t)(base + v);
    p->nfields++;
    return 0;
}

/* Iterate the comma-separated elements of a list field value (RFC 9110 §5.6.1),
 * skipping empty ones. Returns false at the end. */
static bool list_next(const char **cur, const char **ret, size_t *ret_len)
{
    const char *s = *cur;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == ',') {
            s++;
        }
        if (*s == '\0') {
            *cur = s;
            return false;
        }
        const char *b = s;
        while (*s != '\0' && *s != ',') {
            s++;
        }
        const char *e = s;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }
        *cur = s;
        *ret = b;
        *ret_len = (size_t)(e - b);
        return true;
    }
}

/* Content-Length (RFC 9110 §8.6, RFC 9112 §6.3 rule 5): every element of every
 * field line must be the same run of digits. */
static int parse_content_length(struct cm_http_parser *p, int64_t *ret)
{
    int64_t cl = -1;
    for (size_t i = 0; i < p->nfields; i++) {
        if (strcmp(p->fields[i].name, "content-length") != 0) {
            continue;
        }
        const char *cur = p->fields[i].value, *el;
        size_t len;
        bool any = false;
        while (list_next(&cur, &el, &len)) {
            any = true;
            uint64_t v = 0;
            for (size_t k = 0; k < len; k++) {
                if (el[k] < '0' || el[k] > '9') {
                    return BAD(p, "invalid Content-Length");
                }
                if (v > (uint64_t)INT64_MAX / 10) {
                    return fail(p, CM_ETOOBIG, 413, "Content-Length too large");
                }
                v = v * 10 + (uint64_t)(el[k] - '0');
                if (v > (uint64_t)INT64_MAX) {
                    return fail(p, CM_ETOOBIG, 413, "Content-Length too large");
                }
            }
            if (cl >= 0 && (uint64_t)cl != v) {
                return BAD(p, "conflicting Content-Length values");
            }
            cl = (int64_t)v;
        }
        if (!any) {
            return BAD(p, "empty Content-Length");
        }
    }
    *ret = cl;
    return 0;
}

/* Transfer-Encoding (RFC 9112 §6.1): *ret_chunked when chunked is the final
 * coding; *ret_present when the field is there at all. */
static int parse_transfer_encoding(struct cm_http_parser *p, bool *ret_present,
                                   bool *ret_chunked)
{
    bool present = false, last_chunked = false, other = false;
    for (size_t i = 0; i < p->nfields; i++) {
        if (strcmp(p->fields[i].name, "transfer-encoding") != 0) {
            continue;
        }
        present = true;
        const char *cur = p->fields[i].value, *el;
        size_t len;
        while (list_next(&cur, &el, &len)) {
            if (last_chunked) {
                /* Nothing may follow chunked, not even chunked again. */
                return BAD(p, "chunked is not the final transfer coding");
            }
            if (ieq(el, len, "chunked")) {
                last_chunked = true;
            } else {
                other = true;
            }
        }
    }
    if (present && p->kind == CM_HTTP_PARSE_REQUEST) {
        if (!last_chunked && !other) {
            return BAD(p, "empty Transfer-Encoding");
        }
        if (!last_chunked) {
            return BAD(p, "chunked is not the final transfer coding");
        }
        if (other) {
            return fail(p, CM_EUNSUPPORTED, 501, "unsupported transfer coding");
        }
    }
    *ret_present = present;
    *ret_chunked = last_chunked;
    return 0;
}

/* Connection options "close" and "keep-alive" (RFC 9112 §9.3). */
static bool connection_keep_alive(struct cm_http_parser *p, int minor)
{
    bool close = false, keep = false;
    for (size_t i = 0; i < p->nfields; i++) {
        if (strcmp(p->fields[i].name, "connection") != 0) {
            continue;
        }
        const char *cur = p->fields[i].value, *el;
        size_t len;
        while (list_next(&cur, &el, &len)) {
            if (ieq(el, len, "close")) {
                close = true;
            } else if (ieq(el, len, "keep-alive")) {
                keep = true;
            }
        }
    }
    if (close) {
        return false;
    }
    return minor >= 1 || keep;
}

/* ------------------------------------------------------------------ target */

static bool is_host_char(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        return true;
    }
    return c != 0 && strchr("-._~%!$&'()*+,;=:[]", c) != NULL;
}

/* Percent-decode @len bytes of @s into @out; '+' is a space when @plus. Returns
 * the decoded length or -1 on a bad escape or a decoded NUL. */
static ssize_t pct_decode(const char *s, size_t len, char *out, bool plus)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= len) {
                return -1;
            }
            int hi = hexval((unsigned char)s[i + 1]);
            int lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0) {
                return -1;
            }
            c = (unsigned char)(hi * 16 + lo);
            if (c == 0) {
                return -1;
            }
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        }
        out[o++] = (char)c;
    }
    return (ssize_t)o;
}

static int grow_array(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) {
        return 0;
    }
    void *n = cm_reallocarray(*arr, need, elem);
    if (n == NULL) {
        return CM_ENOMEM;
    }
    *arr = n;
    *cap = need;
    return 0;
}

/* Split the target into path segments and query parameters (RFC 9112 §3.2,
 * RFC 3986 §3.3-3.4), decoded into the arena. */
static int parse_target(struct cm_http_parser *p)
{
    const char *t = p->req.target;
    size_t tlen = strlen(t);
    const char *path = t;

    if (strchr(t, '#') != NULL) {
        return BAD(p, "fragment in request target");
    }
    if (strcmp(t, "*") == 0) {
        if (p->req.method != CM_HTTP_OPTIONS) {
            return BAD(p, "asterisk-form target outside OPTIONS");
        }
        p->req.path = "*";
        p->req.query = "";
        return 0;
    }
    if (t[0] != '/') {
        /* absolute-form: scheme "://" authority path-abempty [ "?" query ] */
        size_t k = 0;
        while (t[k] != '\0' &&
               ((t[k] >= 'a' && t[k] <= 'z') || (t[k] >= 'A' && t[k] <= 'Z') ||
                (k > 0 && ((t[k] >= '0' && t[k] <= '9') || t[k] == '+' || t[k] == '-' ||
                           t[k] == '.')))) {
            k++;
        }
        if (k == 0 || strncmp(t + k, "://", 3) != 0) {
            return BAD(p, "malformed request target");
        }
        path = t + k + 3;
        while (*path != '\0' && *path != '/' && *path != '?') {
            path++;
        }
    }
    const char *q = strchr(path, '?');
    size_t plen = q != NULL ? (size_t)(q - path) : strlen(path);
    p->req.query = q != NULL ? q + 1 : "";

    /* Upper bounds: segments <= plen / 2 + 1; decoded bytes <= raw bytes, plus
     * one NUL per segment and parameter; two copies of the path (joined and
     * split). */
    size_t maxseg = plen / 2 + 1;
    size_t maxqp = strlen(p->req.query) / 2 + 1;
    int rv = grow_array((void **)&p->segs, &p->segs_cap, maxseg, sizeof(*p->segs));
    if (rv == 0) {
        rv = grow_array((void **)&p->qp, &p->qp_cap, maxqp, sizeof(*p->qp));
    }
    if (rv == 0) {
        rv = cm_buf_reserve(&p->arena, 3 * tlen + 16);
    }
    if (rv != 0) {
        return fail(p, rv, 500, "out of memory");
    }
    char *a = p->arena.data;
    size_t alen = 0;

    /* The joined path first, then each segment NUL-terminated. */
    char *joined = a;
    size_t jlen = 0;
    size_t nseg = 0;
    char *segbuf = a + plen + 2; /* after "/" + decoded path + NUL */
    size_t slen = 0;
    size_t i = 0;
    while (i < plen) {
        while (i < plen && path[i] == '/') {
            i++;
        }
        size_t b = i;
        while (i < plen && path[i] != '/') {
            i++;
        }
        if (i == b) {
            break;
        }
        char *seg = segbuf + slen;
        ssize_t n = pct_decode(path + b, i - b, seg, false);
        if (n < 0) {
            return BAD(p, "bad percent-encoding in path");
        }
        if (memchr(seg, '/', (size_t)n) != NULL) {
            return BAD(p, "encoded slash in path segment");
        }
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) {
            return BAD(p, "dot segment in path");
        }
        seg[n] = '\0';
        p->segs[nseg++] = seg;
        slen += (size_t)n + 1;
        joined[jlen++] = '/';
        memcpy(joined + jlen, seg, (size_t)n);
        jlen += (size_t)n;
    }
    if (jlen == 0) {
        joined[jlen++] = '/';
    }
    joined[jlen] = '\0';
    alen = plen + 2 + slen;

    /* Query parameters after the segments. */
    size_t nqp = 0;
    const char *qs = p->req.query;
    size_t qlen = strlen(qs);
    i = 0;
    while (i < qlen) {
        size_t b = i;
        while (i < qlen && qs[i] != '&') {
            i++;
        }
        size_t e = i++;
        if (e == b) {
            continue;
        }
        const char *eq = memchr(qs + b, '=', e - b);
        size_t nlen = eq != NULL ? (size_t)(eq - (qs + b)) : e - b;
        char *name = a + alen;
        ssize_t n = pct_decode(qs + b, nlen, name, true);
        if (n < 0) {
            return BAD(p, "bad percent-encoding in query");
        }
        name[n] = '\0';
        alen += (size_t)n + 1;
        char *value = a + alen;
        n = 0;
        if (eq != NULL) {
            n = pct_decode(eq + 1, (size_t)(qs + e - (eq + 1)), value, true);
            if (n < 0) {
                return BAD(p, "bad percent-encoding in query");
            }
        }
        value[n] = '\0';
        alen += (size_t)n + 1;
        p->qp[nqp].name = name;
        p->qp[nqp].value = value;
        nqp++;
    }
    CM_ASSERT(alen < p->arena.cap);
    CM_ASSERT(nseg <= maxseg && nqp <= maxqp);
    p->arena.len = alen;
    p->req.path = joined;
    p->req.segments = p->segs;
    p->req.nsegments = nseg;
    p->req.query_params = p->qp;
    p->req.nquery = nqp;
    return 0;
}

/* ------------------------------------------------------------------ head done */

static int finish_request_head(struct cm_http_parser *p)
{
    struct cm_http_request *r = &p->req;
    char *h = p->head.data;
    r->method_str = h + p->sl[0];
    r->method = cm_http_method_parse(r->method_str, p->sl_len[0]);
    r->target = h + p->sl[1];
    r->headers = p->fields;
    r->nheaders = p->nfields;
    r->body = "";

    size_t nhost = 0;
    for (size_t i = 0; i < p->nfields; i++) {
        if (strcmp(p->fields[i].name, "host") == 0) {
            nhost++;
            r->host = p->fields[i].value;
        }
    }
    if (nhost > 1) {
        return BAD(p, "more than one Host");
    }
    if (nhost == 0 && r->version_minor >= 1) {
        return BAD(p, "missing Host");
    }
    for (const char *c = r->host; c != NULL && *c != '\0'; c++) {
        if (!is_host_char((unsigned char)*c)) {
            return BAD(p, "invalid Host");
        }
    }

    bool te = false, chunked = false;
    int rv = parse_transfer_encoding(p, &te, &chunked);
    if (rv == 0) {
        rv = parse_content_length(p, &r->content_length);
    }
    if (rv != 0) {
        return rv;
    }
    if (te && r->version_minor == 0) {
        return BAD(p, "Transfer-Encoding in an HTTP/1.0 request");
    }
    if (te && r->content_length >= 0) {
        return BAD(p, "both Transfer-Encoding and Content-Length");
    }
    r->chunked = chunked;
    r->keep_alive = connection_keep_alive(p, r->version_minor);

    const char *expect = cm_http_request_header(r, "expect");
    if (expect != NULL && r->version_minor >= 1) {
        if (!ieq(expect, strlen(expect), "100-continue")) {
            return fail(p, CM_EMALFORMED, 417, "unsupported expectation");
        }
        r->expect_continue = true;
    }
    return parse_target(p);
}

static int finish_response_head(struct cm_http_parser *p)
{
    struct cm_http_response *r = &p->resp;
    char *h = p->head.data;
    h[p->sl[2] + p->sl_len[2]] = '\0';
    r->reason = h + p->sl[2];
    r->headers = p->fields;
    r->nheaders = p->nfields;
    r->body = "";
    bool te = false, chunked = false;
    int rv = parse_transfer_encoding(p, &te, &chunked);
    if (rv == 0 && !te) {
        rv = parse_content_length(p, &r->content_length);
    }
    if (rv != 0) {
        return rv;
    }
    r->chunked = chunked;
    r->keep_alive = connection_keep_alive(p, r->version_minor);
    return 0;
}

static int finish_head(struct cm_http_parser *p)
{
    for (size_t i = 0; i < p->nfields; i++) {
        p->fields[i].name = p->head.data + p->foff[i].name;
        p->fields[i].value = p->head.data + p->foff[i].value;
    }
    if (p->kind == CM_HTTP_PARSE_REQUEST) {
        return finish_request_head(p);
    }
    return finish_response_head(p);
}

/* ------------------------------------------------------------------ head lines */

/* A complete line (ending in LF) sits at head[line_start..len). */
static int head_line(struct cm_http_parser *p)
{
    char *line = p->head.data + p->line_start;
    size_t len = p->head.len - p->line_start;
    if (len < 2 || line[len - 2] != '\r') {
        return BAD(p, "line not terminated by CR LF");
    }
    len -= 2;
    if (memchr(line, '\r', len) != NULL) {
        return BAD(p, "bare CR");
    }
    if (memchr(line, '\0', len) != NULL) {
        return BAD(p, "NUL in head");
    }
    line[len] = '\0';
    int rv;
    switch (p->phase) {
    case PH_START:
    case PH_START_LINE:
        if (len == 0) {
            /* RFC 9112 §2.2: ignore empty lines before the start line. */
            p->skipped += 2;
            p->head.len = p->line_start;
            p->phase = PH_START;
            if (p->skipped > SKIP_MAX) {
                return BAD(p, "too many empty lines");
            }
            return 0;
        }
        rv = p->kind == CM_HTTP_PARSE_REQUEST ? parse_request_line(p, line, len)
                                              : parse_status_line(p, line, len);
        if (rv != 0) {
            return rv;
        }
        p->phase = PH_FIELDS;
        p->fields_start = p->head.len;
        p->line_start = p->head.len;
        return 0;
    case PH_FIELDS:
        if (len == 0) {
            rv = finish_head(p);
            if (rv != 0) {
                return rv;
            }
            p->phase = PH_HEAD_DONE;
            return CM_HTTP_PARSE_HEAD;
        }
        rv = parse_field_line(p, line, len);
        p->line_start = p->head.len;
        return rv;
    default:
        CM_ASSERT(false);
        return BAD(p, "internal");
    }
}

/* Copy input up to and including the next LF (at most the room left under the
 * current limit) and process the line when it is complete. */
static int feed_head(struct cm_http_parser *p, struct cm_wire *in)
{
    bool start = p->phase != PH_FIELDS;
    size_t used = start ? p->head.len - p->line_start : p->head.len - p->fields_start;
    size_t limit = start ? CM_HTTP_MAX_REQUEST_LINE + 2 : CM_HTTP_MAX_HEAD + 2;
    size_t room = used < limit ? limit - used : 0;
    size_t avail = cm_wire_remaining(in);
    size_t scan = CM_MIN(avail, room);
    const uint8_t *lf = memchr(in->pos, '\n', scan);
    size_t take = lf != NULL ? (size_t)(lf - in->pos) + 1 : scan;
    if (take > 0) {
        const uint8_t *bytes = cm_wire_take(in, take);
        if (p->phase == PH_START) {
            p->phase = PH_START_LINE;
        }
        int rv = cm_buf_append(&p->head, bytes, take);
        if (rv != 0) {
            return fail(p, rv, 500, "out of memory");
        }
    }
    if (lf != NULL) {
        return head_line(p);
    }
    if (take == room && avail > take) {
        if (start) {
            return fail(p, CM_ETOOBIG, p->kind == CM_HTTP_PARSE_REQUEST ? 414 : 400,
                        "request line too long");
        }
        return fail(p, CM_ETOOBIG, 431, "header section too large");
    }
    return CM_HTTP_PARSE_AGAIN;
}

/* ------------------------------------------------------------------ body */

/* Decide the body's framing once the head was returned (RFC 9112 §6.3). */
static int start_body(struct cm_http_parser *p)
{
    if (p->kind == CM_HTTP_PARSE_RESPONSE) {
        struct cm_http_response *r = &p->resp;
        if (p->head_request || r->status == 204 || r->status == 304 || r->status < 200) {
            p->phase = PH_DONE;
        } else if (r->chunked) {
            p->phase = PH_CHUNK_SIZE;
        } else if (r->nheaders > 0 &&
                   cm_http_response_header(r, "transfer-encoding") != NULL) {
            p->phase = PH_EOF_BODY; /* a coding we do not decode: until close */
        } else if (r->content_length >= 0) {
            p->remaining = (uint64_t)r->content_length;
            p->phase = p->remaining > 0 ? PH_LENGTH : PH_DONE;
        } else {
            p->phase = PH_EOF_BODY;
        }
    } else if (p->req.chunked) {
        p->phase = PH_CHUNK_SIZE;
    } else if (p->req.content_length > 0) {
        p->remaining = (uint64_t)p->req.content_length;
        p->phase = PH_LENGTH;
    } else {
        p->phase = PH_DONE;
    }
    if (p->phase == PH_LENGTH && !p->stream_body && p->remaining > p->body_limit) {
        return fail(p, CM_ETOOBIG, 413, "body too large");
    }
    p->sub = CS_DIGITS;
    p->line_len = 0;
    return 0;
}

/* Take up to @max bytes of body from @in: buffered, or as the piece to return. */
static int take_body(struct cm_http_parser *p, struct cm_wire *in, size_t max,
                     size_t *ret_n)
{
    size_t n = CM_MIN(cm_wire_remaining(in), max);
    const uint8_t *bytes = cm_wire_take(in, n);
    *ret_n = n;
    if (n == 0) {
        return 0;
    }
    if (p->stream_body) {
        p->piece = (const char *)bytes;
        p->piece_len = n;
        return CM_HTTP_PARSE_BODY;
    }
    if (p->body.len + n > p->body_limit) {
        return fail(p, CM_ETOOBIG, 413, "body too large");
    }
    int rv = cm_buf_append(&p->body, bytes, n);
    if (rv != 0) {
        return fail(p, rv, 500, "out of memory");
    }
    return 0;
}

/* chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1), one byte at a time. */
static int chunk_size_byte(struct cm_http_parser *p, uint8_t c)
{
    if (++p->line_len > CM_HTTP_MAX_CHUNK_LINE) {
        return BAD(p, "chunk-size line too long");
    }
    switch (p->sub) {
    case CS_DIGITS: {
        int v = hexval(c);
        if (v >= 0) {
            if (++p->chunk_digits > CHUNK_DIGITS) {
                return fail(p, CM_ETOOBIG, 413, "chunk too large");
            }
            p->chunk_size = p->chunk_size * 16 + (uint64_t)v;
            return 0;
        }
        if (p->chunk_digits == 0) {
            return BAD(p, "malformed chunk size");
        }
        if (c == '\r') {
            p->sub = CS_LF;
            return 0;
        }
        if (c == ';' || c == ' ' || c == '\t') {
            p->sub = CS_EXT;
            return 0;
        }
        return BAD(p, "malformed chunk size");
    }
    case CS_EXT:
        if (c == '\r') {
            p->sub = CS_LF;
            return 0;
        }
        if (!is_vchar_ws(c)) {
            return BAD(p, "invalid character in chunk extension");
        }
        return 0;
    case CS_LF:
        if (c != '\n') {
            return BAD(p, "bare CR in chunk-size line");
        }
        p->line_len = 0;
        p->sub = CS_DIGITS;
        p->chunk_digits = 0;
        if (p->chunk_size == 0) {
            p->phase = PH_TRAILER;
            return 0;
        }
        if (!p->stream_body && p->chunk_size > p->body_limit - p->body.len) {
            return fail(p, CM_ETOOBIG, 413, "body too large");
        }
        p->remaining = p->chunk_size;
        p->chunk_size = 0;
        p->phase = PH_CHUNK_DATA;
        return 0;
    }
    return BAD(p, "internal");
}

/* CR LF after chunk data. */
static int chunk_end_byte(struct cm_http_parser *p, uint8_t c)
{
    if (p->sub == CS_DIGITS) {
        if (c != '\r') {
            return BAD(p, "chunk data not followed by CR LF");
        }
        p->sub = CS_LF;
        return 0;
    }
    if (c != '\n') {
        return BAD(p, "chunk data not followed by CR LF");
    }
    p->sub = CS_DIGITS;
    p->phase = PH_CHUNK_SIZE;
    return 0;
}

/* trailer-section CRLF (RFC 9112 §7.1.2): fields are skipped, not kept. */
static int trailer_byte(struct cm_http_parser *p, uint8_t c)
{
    if (++p->trailer_bytes > CM_HTTP_MAX_HEAD) {
        return fail(p, CM_ETOOBIG, 431, "trailer section too large");
    }
    if (p->sub == CS_LF) {
        if (c != '\n') {
            return BAD(p, "bare CR in trailer");
        }
        p->sub = CS_DIGITS;
        if (p->line_len == 0) {
            p->phase = PH_DONE;
        }
        p->line_len = 0;
        return 0;
    }
    if (c == '\r') {
        p->sub = CS_LF;
        return 0;
    }
    if (!is_vchar_ws(c)) {
        return BAD(p, "invalid character in trailer");
    }
    p->line_len++;
    return 0;
}

static void finish_message(struct cm_http_parser *p)
{
    const char *body = p->body.data != NULL ? p->body.data : "";
    if (p->kind == CM_HTTP_PARSE_REQUEST) {
        p->req.body = body;
        p->req.body_len = p->body.len;
    } else {
        p->resp.body = body;
        p->resp.body_len = p->body.len;
    }
}

/* ------------------------------------------------------------------ feed */

int cm_http_parser_feed(struct cm_http_parser *p, const void *data, size_t len,
                        size_t *ret_consumed)
{
    struct cm_wire in;
    cm_wire_init(&in, data, len);
    int rv = 0;
    p->piece = NULL;
    p->piece_len = 0;

    while (rv == 0) {
        size_t n;
        switch (p->phase) {
        case PH_START:
        case PH_START_LINE:
        case PH_FIELDS:
            if (cm_wire_remaining(&in) == 0) {
                goto out;
            }
            rv = feed_head(p, &in);
            if (rv == CM_HTTP_PARSE_HEAD && p->kind == CM_HTTP_PARSE_RESPONSE &&
                p->resp.status >= 100 && p->resp.status < 200 && p->resp.status != 101) {
                /* Interim response (RFC 9110 §15.2): skip it, keep the mode. */
                bool head_req = p->head_request;
                size_t limit = p->body_limit;
                cm_http_parser_reset(p);
                p->head_request = head_req;
                p->body_limit = limit;
                rv = 0;
            }
            break;
        case PH_HEAD_DONE:
            rv = start_body(p);
            break;
        case PH_LENGTH:
            if (cm_wire_remaining(&in) == 0) {
                goto out;
            }
            rv = take_body(p, &in, (size_t)CM_MIN(p->remaining, (uint64_t)SIZE_MAX), &n);
            if (rv >= 0) {
                p->remaining -= n;
                if (p->remaining == 0) {
                    p->phase = PH_DONE;
                }
            }
            break;
        case PH_CHUNK_SIZE:
        case PH_CHUNK_DATA_END:
        case PH_TRAILER:
            if (cm_wire_remaining(&in) == 0) {
                goto out;
            }
            if (p->phase == PH_CHUNK_SIZE) {
                rv = chunk_size_byte(p, cm_wire_u8(&in));
            } else if (p->phase == PH_CHUNK_DATA_END) {
                rv = chunk_end_byte(p, cm_wire_u8(&in));
            } else {
                rv = trailer_byte(p, cm_wire_u8(&in));
            }
            break;
        case PH_CHUNK_DATA:
            if (cm_wire_remaining(&in) == 0) {
                goto out;
            }
            rv = take_body(p, &in, (size_t)CM_MIN(p->remaining, (uint64_t)SIZE_MAX), &n);
            if (rv >= 0) {
                p->remaining -= n;
                if (p->remaining == 0) {
                    p->phase = PH_CHUNK_DATA_END;
                    p->sub = CS_DIGITS;
                }
            }
            break;
        case PH_EOF_BODY:
            if (cm_wire_remaining(&in) == 0) {
                goto out;
            }
            rv = take_body(p, &in, SIZE_MAX, &n);
            break;
        case PH_DONE:
            finish_message(p);
            rv = CM_HTTP_PARSE_DONE;
            break;
        case PH_ERROR:
            rv = p->status == 413 || p->status == 414 || p->status == 431
                     ? CM_ETOOBIG
                     : (p->status == 501 ? CM_EUNSUPPORTED : CM_EMALFORMED);
            if (p->status == 500) {
                rv = CM_ENOMEM;
            }
            break;
        }
    }
out:
    *ret_consumed = cm_wire_offset(&in);
    return rv;
}

int cm_http_parser_eof(struct cm_http_parser *p)
{
    switch (p->phase) {
    case PH_EOF_BODY:
        p->phase = PH_DONE;
        finish_message(p);
        return CM_HTTP_PARSE_DONE;
    case PH_DONE:
        finish_message(p);
        return CM_HTTP_PARSE_DONE;
    case PH_START:
        return p->head.len == 0 ? CM_HTTP_PARSE_AGAIN : CM_ETRUNC;
    case PH_ERROR:
        return CM_EMALFORMED;
    default:
        return CM_ETRUNC;
    }
}
