/* JSON text for the app model: a strict scanner that enforces the input limits
 * before cJSON sees a byte, cJSON through cm_malloc, duplicate-key refusal, a
 * deterministic writer, and the error report with Marathon's body shapes.
 *
 * Why scan before cJSON: cJSON returns NULL both for bad syntax and for a failed
 * allocation, is lenient (any byte <= 0x20 is whitespace, no UTF-8 checks, numbers
 * silently cut at 63 characters, "\u0000" truncates strings) and has no limits of
 * its own except nesting 1000. Once the scanner accepted the text, a NULL from
 * cJSON can only mean out of memory. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_int.h"

/* ------------------------------------------------------------------ cJSON hooks */

static void *hook_malloc(size_t n)
{
    return cm_malloc(n);
}

static void hook_free(void *p)
{
    cm_free_raw(p);
}

static pthread_once_t json_once = PTHREAD_ONCE_INIT;

static void json_init_once(void)
{
    cJSON_Hooks hooks = {.malloc_fn = hook_malloc, .free_fn = hook_free};
    cJSON_InitHooks(&hooks);
}

void cm_state_json_init(void)
{
    pthread_once(&json_once, json_init_once);
}

/* ------------------------------------------------------------------ report */

int app__issue(struct cm_app_report *rep, enum cm_app_issue_kind kind, const char *path,
               const char *fmt, ...)
{
    if (rep == NULL) {
        return 0;
    }
    if (rep->n >= CM_APP_MAX_ISSUES) {
        rep->dropped++;
        return 0;
    }
    if (rep->n == rep->cap) {
        size_t cap = rep->cap ? rep->cap * 2 : 8;
        struct cm_app_issue *v = cm_reallocarray(rep->v, cap, sizeof(*v));
        if (v == NULL) {
            return CM_ENOMEM;
        }
        rep->v = v;
        rep->cap = cap;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char *p = cm_strdup(path[0] ? path : "/");
    char *m = cm_strdup(msg);
    if (p == NULL || m == NULL) {
        cm_free(&p);
        cm_free(&m);
        return CM_ENOMEM;
    }
    rep->v[rep->n++] = (struct cm_app_issue){.kind = kind, .path = p, .msg = m};
    return 0;
}

void cm_app_report_done(struct cm_app_report *rep)
{
    if (rep == NULL) {
        return;
    }
    for (size_t i = 0; i < rep->n; i++) {
        cm_free(&rep->v[i].path);
        cm_free(&rep->v[i].msg);
    }
    cm_free(&rep->v);
    rep->n = rep->cap = rep->dropped = 0;
}

size_t cm_app_report_count(const struct cm_app_report *rep, enum cm_app_issue_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; rep != NULL && i < rep->n; i++) {
        n += rep->v[i].kind == kind;
    }
    return n;
}

int cm_app_http_status(int code)
{
    switch (code) {
    case 0:
        return 200;
    case CM_EMALFORMED:
        return 400;
    case CM_ETOOBIG:
        return 413;
    case CM_EVALIDATION:
    case CM_EUNSUPPORTED:
        return 422;
    default:
        return 500;
    }
}

int cm_app_report_body(const struct cm_app_report *rep, int code, struct cm_buf *out)
{
    enum cm_app_issue_kind kind;
    const char *message;
    switch (code) {
    case CM_EMALFORMED:
        kind = CM_APP_ISSUE_SYNTAX;
        message = "Invalid JSON";
        break;
    case CM_EVALIDATION:
        kind = CM_APP_ISSUE_INVALID;
        message = "Object is not valid";
        break;
    case CM_EUNSUPPORTED:
        kind = CM_APP_ISSUE_UNSUPPORTED;
        message = "unsupported feature";
        for (size_t i = 0; rep != NULL && i < rep->n; i++) {
            if (rep->v[i].kind == kind) {
                message = rep->v[i].msg;
                break;
            }
        }
        break;
    case CM_ETOOBIG: {
        struct app_jw w;
        char msg[128];
        snprintf(msg, sizeof(msg), "Request body too large (limit %u bytes)",
                 (unsigned)CM_APP_MAX_BODY);
        app__jw_init(&w, out, false);
        app__jw_obj_open(&w);
        app__jw_key(&w, "message");
        app__jw_str(&w, msg);
        app__jw_obj_close(&w);
        return w.err;
    }
    default: {
        struct app_jw w;
        app__jw_init(&w, out, false);
        app__jw_obj_open(&w);
        app__jw_key(&w, "message");
        app__jw_str(&w, cm_strerror(code));
        app__jw_obj_close(&w);
        return w.err;
    }
    }

    struct app_jw w;
    app__jw_init(&w, out, false);
    app__jw_obj_open(&w);
    app__jw_key(&w, "message");
    app__jw_str(&w, message);
    app__jw_key(&w, "details");
    app__jw_arr_open(&w);
    size_t n = rep != NULL ? rep->n : 0;
    for (size_t i = 0; i < n; i++) {
        const struct cm_app_issue *is = &rep->v[i];
        if (is->kind != kind) {
            continue;
        }
        /* One entry per path, at the path's first appearance. */
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) {
            seen = rep->v[j].kind == kind && strcmp(rep->v[j].path, is->path) == 0;
        }
        if (seen) {
            continue;
        }
        app__jw_obj_open(&w);
        app__jw_key(&w, "path");
        app__jw_str(&w, is->path);
        app__jw_key(&w, "errors");
        app__jw_arr_open(&w);
        for (size_t j = i; j < n; j++) {
            if (rep->v[j].kind == kind && strcmp(rep->v[j].path, is->path) == 0) {
                app__jw_str(&w, rep->v[j].msg);
            }
        }
        app__jw_arr_close(&w);
        app__jw_obj_close(&w);
    }
    app__jw_arr_close(&w);
    app__jw_obj_close(&w);
    return w.err;
}

/* ------------------------------------------------------------------ scanner */

struct scan {
    const unsigned char *start;
    const unsigned char *p;
    const unsigned char *end;
    const char *why; /* set on the first error */
    size_t at;
};

static int scan_fail(struct scan *s, const char *why)
{
    if (s->why == NULL) {
        s->why = why;
        s->at = (size_t)(s->p - s->start);
    }
    return -1;
}

static void scan_ws(struct scan *s)
{
    while (s->p < s->end &&
           (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) {
        s->p++;
    }
}

static int hex4(const unsigned char *p, unsigned *ret)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            d = c - 'A' + 10;
        } else {
            return -1;
        }
        v = v << 4 | d;
    }
    *ret = v;
    return 0;
}

/* One UTF-8 sequence starting at s->p (first byte >= 0x80), RFC 3629 §4. */
static int scan_utf8(struct scan *s)
{
    const unsigned char *p = s->p;
    unsigned c = *p, n, cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 1;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3;
        cp = c & 0x07;
    } else {
        return scan_fail(s, "invalid UTF-8");
    }
    if ((size_t)(s->end - p) <= n) {
        return scan_fail(s, "invalid UTF-8");
    }
    for (unsigned i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return scan_fail(s, "invalid UTF-8");
        }
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        return scan_fail(s, "invalid UTF-8");
    }
    s->p += n + 1;
    return 0;
}

static int scan_string(struct scan *s)
{
    s->p++; /* opening quote */
    size_t bytes = 0;
    for (;;) {
        if (s->p >= s->end) {
            return scan_fail(s, "unterminated string");
        }
        unsigned c = *s->p;
        if (++bytes > CM_APP_MAX_STRING) {
            return scan_fail(s, "string longer than the limit");
        }
        if (c == '"') {
            s->p++;
            return 0;
        }
        if (c < 0x20) {
            return scan_fail(s, "control character in string");
        }
        if (c >= 0x80) {
            if (scan_utf8(s) != 0) {
                return -1;
            }
            continue;
        }
        if (c != '\\') {
            s->p++;
            continue;
        }
        if (s->end - s->p < 2) {
            return scan_fail(s, "unterminated string");
        }
        c = s->p[1];
        if (strchr("\"\\/bfnrt", (int)c) != NULL && c != 0) {
            s->p += 2;
            continue;
        }
        if (c != 'u') {
            return scan_fail(s, "invalid escape in string");
        }
        unsigned u, lo;
        if (s->end - s->p < 6 || hex4(s->p + 2, &u) != 0) {
            return scan_fail(s, "invalid \\u escape");
        }
        if (u == 0) {
            /* A NUL would silently end the C string cJSON hands us. */
            return scan_fail(s, "\\u0000 in string is not supported");
        }
        if (u >= 0xdc00 && u <= 0xdfff) {
            return scan_fail(s, "lone low surrogate in \\u escape");
        }
        if (u >= 0xd800 && u <= 0xdbff) {
            if (s->end - s->p < 12 || s->p[6] != '\\' || s->p[7] != 'u' ||
                hex4(s->p + 8, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff) {
                return scan_fail(s, "unpaired surrogate in \\u escape");
            }
            s->p += 12;
            continue;
        }
        s->p += 6;
    }
}

static bool is_digit(const struct scan *s)
{
    return s->p < s->end && *s->p >= '0' && *s->p <= '9';
}

/* RFC 8259 §6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_number(struct scan *s)
{
    const unsigned char *b = s->p;
    if (*s->p == '-') {
        s->p++;
    }
    if (!is_digit(s)) {
        return scan_fail(s, "invalid number");
    }
    if (*s->p == '0') {
        s->p++;
    } else {
        while (is_digit(s)) {
            s->p++;
        }
    }
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!is_digit(s)) {
            return scan_fail(s, "invalid number");
        }
        while (is_digit(s)) {
            s->p++;
        }
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) {
            s->p++;
        }
        if (!is_digit(s)) {
            return scan_fail(s, "invalid number");
        }
        while (is_digit(s)) {
            s->p++;
        }
    }
    if (s->p - b > CM_APP_MAX_NUMBER) {
        s->p = b;
        return scan_fail(s, "number longer than 63 characters");
    }
    return 0;
}

static int scan_literal(struct scan *s, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0) {
        return scan_fail(s, "unexpected character");
    }
    s->p += n;
    return 0;
}

static int scan_value(struct scan *s, int depth);

static int scan_container(struct scan *s, int depth, bool object)
{
    if (depth >= CM_APP_MAX_DEPTH) {
        return scan_fail(s, "nesting deeper than the limit");
    }
    unsigned char close = object ? '}' : ']';
    s->p++;
    scan_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    for (size_t count = 0;; count++) {
        if (count >= CM_APP_MAX_ELEMENTS) {
            return scan_fail(s, object ? "more object members than the limit"
                                       : "more array elements than the limit");
        }
        if (object) {
            scan_ws(s);
            if (s->p >= s->end || *s->p != '"') {
                return scan_fail(s, "expected a string key");
            }
            if (scan_string(s) != 0) {
                return -1;
            }
            scan_ws(s);
            if (s->p >= s->end || *s->p != ':') {
                return scan_fail(s, "expected ':'");
            }
            s->p++;
        }
        if (scan_value(s, depth + 1) != 0) {
            return -1;
        }
        scan_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == close) {
            s->p++;
            return 0;
        }
        return scan_fail(s, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int scan_value(struct scan *s, int depth)
{
    scan_ws(s);
    if (s->p >= s->end) {
        return scan_fail(s, "unexpected end of input");
    }
    switch (*s->p) {
    case '{':
        return scan_container(s, depth, true);
    case '[':
        return scan_container(s, depth, false);
    case '"':
        return scan_string(s);
    case 't':
        return scan_literal(s, "true");
    case 'f':
        return scan_literal(s, "false");
    case 'n':
        return scan_literal(s, "null");
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) {
            return scan_number(s);
        }
        return scan_fail(s, "unexpected character");
    }
}

int app__json_scan(const char *json, size_t len, size_t *ret_start,
                   struct cm_app_report *rep)
{
    if (len > CM_APP_MAX_BODY) {
        int rv = app__issue(rep, CM_APP_ISSUE_SYNTAX, "/",
                            "request body of %zu bytes exceeds the limit of %u", len,
                            (unsigned)CM_APP_MAX_BODY);
        return rv ? rv : CM_ETOOBIG;
    }
    struct scan s = {
        .start = (const unsigned char *)json,
        .p = (const unsigned char *)json,
        .end = (const unsigned char *)json + len,
    };
    if (len >= 3 && memcmp(json, "\xef\xbb\xbf", 3) == 0) {
        s.p += 3; /* a UTF-8 BOM, which Jackson (Marathon) skips too */
    }
    size_t start = (size_t)(s.p - s.start);
    if (scan_value(&s, 0) == 0) {
        scan_ws(&s);
        if (s.p != s.end) {
            scan_fail(&s, "trailing characters after the JSON value");
        }
    }
    if (s.why != NULL) {
        int rv = app__issue(rep, CM_APP_ISSUE_SYNTAX, "/",
                            "Invalid JSON at offset %zu: %s", s.at, s.why);
        return rv ? rv : CM_EMALFORMED;
    }
    *ret_start = start;
    return 0;
}

/* ------------------------------------------------------------------ duplicate keys */

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Check one object's keys; keys[] lives only for this call, not across the
 * recursion, so the stack holds one such array at a time. */
static int dup_check_members(const cJSON *obj, char *path, size_t plen, size_t pcap,
                             struct cm_app_report *rep, int *found)
{
    const char *keys[CM_APP_MAX_ELEMENTS];
    size_t n = 0;
    for (const cJSON *c = obj->child; c != NULL && n < CM_APP_MAX_ELEMENTS; c = c->next) {
        keys[n++] = c->string;
    }
    qsort(keys, n, sizeof(keys[0]), cmp_str_ptr);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0 &&
            (i < 2 || strcmp(keys[i - 2], keys[i]) != 0)) {
            snprintf(path + plen, pcap - plen, "/%s", keys[i]);
            int rv = app__issue(rep, CM_APP_ISSUE_SYNTAX, path, "duplicate key \"%s\"",
                                keys[i]);
            path[plen] = '\0';
            if (rv != 0) {
                return rv;
            }
            (*found)++;
        }
    }
    return 0;
}

static int dup_walk(const cJSON *node, char *path, size_t plen, size_t pcap,
                    struct cm_app_report *rep, int *found)
{
    if (cJSON_IsObject(node)) {
        int rv = dup_check_members(node, path, plen, pcap, rep, found);
        if (rv != 0) {
            return rv;
        }
    }
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node)) {
        return 0;
    }
    size_t i = 0;
    for (const cJSON *c = node->child; c != NULL; c = c->next, i++) {
        if (cJSON_IsObject(node)) {
            snprintf(path + plen, pcap - plen, "/%s", c->string);
        } else {
            snprintf(path + plen, pcap - plen, "(%zu)", i);
        }
        size_t nlen = strlen(path);
        int rv = dup_walk(c, path, nlen, pcap, rep, found);
        path[plen] = '\0';
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int app__json_parse(const char *json, size_t len, cJSON **ret_root,
                    struct cm_app_report *rep)
{
    cm_state_json_init();
    size_t start;
    int rv = app__json_scan(json, len, &start, rep);
    if (rv != 0) {
        return rv;
    }
    char *copy = cm_strndup(json + start, len - start);
    if (copy == NULL) {
        return CM_ENOMEM;
    }
    /* The scanner guarantees there is no NUL inside, so the copy is the whole text. */
    cJSON *root = cJSON_ParseWithOpts(copy, NULL, 1);
    cm_free(&copy);
    if (root == NULL) {
        return CM_ENOMEM; /* the text was valid: see the top of the file */
    }
    char path[1024] = "";
    int found = 0;
    rv = dup_walk(root, path, 0, sizeof(path), rep, &found);
    if (rv == 0 && found > 0) {
        rv = CM_EMALFORMED;
    }
    if (rv != 0) {
        cJSON_Delete(root);
        return rv;
    }
    *ret_root = root;
    return 0;
}

/* ------------------------------------------------------------------ writer */

static void jw_raw(struct app_jw *w, const char *s, size_t n)
{
    if (w->err == 0) {
        w->err = cm_buf_append(w->out, s, n);
    }
}

static void jw_indent(struct app_jw *w)
{
    jw_raw(w, "\n", 1);
    for (int i = 0; i < w->depth; i++) {
        jw_raw(w, "  ", 2);
    }
}

/* Separator before a value in an array, or before a key in an object. */
static void jw_sep(struct app_jw *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->depth == 0) {
        return;
    }
    if (!w->first[w->depth]) {
        jw_raw(w, ",", 1);
    }
    w->first[w->depth] = false;
    if (w->pretty) {
        jw_indent(w);
    }
}

void app__jw_init(struct app_jw *w, struct cm_buf *out, bool pretty)
{
    memset(w, 0, sizeof(*w));
    w->out = out;
    w->pretty = pretty;
}

static void jw_open(struct app_jw *w, char c)
{
    jw_sep(w);
    jw_raw(w, &c, 1);
    if (w->depth >= CM_APP_MAX_DEPTH + 1) {
        w->err = w->err ? w->err : CM_EINTERNAL;
        return;
    }
    w->depth++;
    w->first[w->depth] = true;
}

static void jw_close(struct app_jw *w, char c)
{
    bool empty = w->first[w->depth];
    if (w->depth > 0) {
        w->depth--;
    }
    if (w->pretty && !empty) {
        jw_indent(w);
    }
    jw_raw(w, &c, 1);
}

void app__jw_obj_open(struct app_jw *w)
{
    jw_open(w, '{');
}

void app__jw_obj_close(struct app_jw *w)
{
    jw_close(w, '}');
}

void app__jw_arr_open(struct app_jw *w)
{
    jw_open(w, '[');
}

void app__jw_arr_close(struct app_jw *w)
{
    jw_close(w, ']');
}

static void jw_string(struct app_jw *w, const char *s)
{
    jw_raw(w, "\"", 1);
    const char *run = s;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *esc = NULL;
        char ubuf[8];
        switch (*p) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (*p < 0x20) {
                snprintf(ubuf, sizeof(ubuf), "\\u%04x", (unsigned)*p);
                esc = ubuf;
            }
        }
        if (esc != NULL) {
            jw_raw(w, run, (size_t)((const char *)p - run));
            jw_raw(w, esc, strlen(esc));
            run = (const char *)p + 1;
        }
    }
    jw_raw(w, run, strlen(run));
    jw_raw(w, "\"", 1);
}

void app__jw_key(struct app_jw *w, const char *key)
{
    jw_sep(w);
    jw_string(w, key);
    jw_raw(w, w->pretty ? ": " : ":", w->pretty ? 2 : 1);
    w->after_key = true;
}

void app__jw_str(struct app_jw *w, const char *s)
{
    jw_sep(w);
    jw_string(w, s != NULL ? s : "");
}

void app__jw_num(struct app_jw *w, double d)
{
    char buf[40];
    jw_sep(w);
    if (!isfinite(d)) {
        jw_raw(w, "null", 4);
        return;
    }
    if (d == 0) {
        d = 0; /* no "-0" */
    }
    if (d == floor(d) && fabs(d) < 1e15) {
        snprintf(buf, sizeof(buf), "%.0f", d);
    } else {
        /* The shortest of %.15g and %.17g that reads back to the same double. */
        snprintf(buf, sizeof(buf), "%.15g", d);
        if (strtod(buf, NULL) != d) {
            snprintf(buf, sizeof(buf), "%.17g", d);
        }
    }
    jw_raw(w, buf, strlen(buf));
}

void app__jw_int(struct app_jw *w, int64_t v)
{
    char buf[32];
    jw_sep(w);
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    jw_raw(w, buf, strlen(buf));
}

void app__jw_bool(struct app_jw *w, bool b)
{
    jw_sep(w);
    jw_raw(w, b ? "true" : "false", b ? 4 : 5);
}

void app__jw_null(struct app_jw *w)
{
    jw_sep(w);
    jw_raw(w, "null", 4);
}
