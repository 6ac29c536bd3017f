/* lib/net/http_parse.c: table tests for requests (valid and every rejection with
 * its status), incremental parsing (byte by byte equals all at once), chunked
 * bodies, pipelining, limits, responses, streaming and an OOM walk. */
#include "base/base.h"
#include "net/http.h"
#include "test.h"

/* Parse one request from @in (length @len) with @limit; returns the feed result
 * of the last call and leaves the parser in *ret_p. @step 0: all at once. */
static int parse_req(const char *in, size_t len, size_t step, size_t limit,
                     struct cm_http_parser **ret_p, size_t *ret_used)
{
    struct cm_http_parser *p;
    ASSERT_OK(cm_http_parser_new(CM_HTTP_PARSE_REQUEST, &p));
    size_t off = 0;
    int rv;
    for (;;) {
        size_t n = step == 0 ? len - off : CM_MIN(step, len - off);
        size_t used = 0;
        rv = cm_http_parser_feed(p, in + off, n, &used);
        ASSERT_TRUE(used <= n);
        off += used;
        if (rv == CM_HTTP_PARSE_HEAD) {
            if (limit != 0) {
                cm_http_parser_set_body_limit(p, limit);
            }
            continue;
        }
        if (rv != CM_HTTP_PARSE_AGAIN || off == len) {
            break;
        }
    }
    *ret_p = p;
    if (ret_used != NULL) {
        *ret_used = off;
    }
    return rv;
}

struct valid_case {
    const char *in;
    const char *method;
    const char *path;
    const char *query;
    const char *body;
    bool keep_alive;
};

static const struct valid_case valid[] = {
    {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", "", "", true},
    {"GET /v2/apps HTTP/1.1\r\nHost: a:7070\r\nAccept: */*\r\n\r\n", "GET", "/v2/apps",
     "", "", true},
    {"GET /v2/apps?embed=apps.tasks&x=1 HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/v2/apps",
     "embed=apps.tasks&x=1", "", true},
    {"POST /v2/apps HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
     "Content-Length: 13\r\n\r\n{\"id\":\"/web\"}",
     "POST", "/v2/apps", "", "{\"id\":\"/web\"}", true},
    {"PUT /v2/apps//shop/web HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}", "PUT",
     "/v2/apps/shop/web", "", "{}", true},
    {"DELETE /v2/apps/web?force=true HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
     "DELETE", "/v2/apps/web", "force=true", "", false},
    {"GET / HTTP/1.0\r\n\r\n", "GET", "/", "", "", false},
    {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET", "/", "", "", true},
    {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n", "GET", "/", "",
     "", false},
    {"\r\n\r\nGET /ping HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/ping", "", "", true},
    {"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     "5\r\nhello\r\n6;name=val\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
     "POST", "/x", "", "hello world", true},
    {"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n", "POST",
     "/x", "", "", true},
    {"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
     "POST", "/x", "", "abc", true},
    {"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", "POST", "/x", "",
     "abc", true},
    {"GET http://example.com:80/a/b?c=d HTTP/1.1\r\nHost: example.com\r\n\r\n", "GET",
     "/a/b", "c=d", "", true},
    {"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS", "*", "", "", true},
    {"GET /a%20b/%C3%A9 HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/a b/\xc3\xa9", "", "",
     true},
    {"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Sp:   v  \r\n\r\n", "GET", "/", "", "",
     true},
    {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", "GET", "/", "", "", true},
    {"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", "BREW", "/pot", "", "", true},
    {"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", "GET", "/", "", "",
     true},
    {"GET / HTTP/1.1\r\nHost: \r\n\r\n", "GET", "/", "", "", true},
};

struct reject_case {
    const char *why;
    const char *in;
    int status;
};

static const struct reject_case reject[] = {
    {"bare LF in field", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400},
    {"bare LF end", "GET / HTTP/1.1\r\nHost: a\n\n", 400},
    {"bare CR", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400},
    {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  b\r\n\r\n", 400},
    {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
    {"no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", 400},
    {"empty name", "GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", 400},
    {"missing host", "GET / HTTP/1.1\r\n\r\n", 400},
    {"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
    {"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
    {"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"lower version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
    {"no version", "GET /\r\nHost: a\r\n\r\n", 400},
    {"version 2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
    {"bad method char", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"CL not digits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\nab", 400},
    {"CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
    {"CL conflict",
     "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
     400},
    {"CL list conflict", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\nab",
     400},
    {"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400},
    {"CL huge",
     "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 413},
    {"TE and CL",
     "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: "
     "chunked\r\n\r\n0\r\n\r\n",
     400},
    {"TE not chunked last",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
    {"TE chunked twice",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
     "chunked\r\n\r\n",
     400},
    {"TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     501},
    {"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
     400},
    {"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
    {"bad chunk size",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
    {"chunk no CRLF after data",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
     "chunked\r\n\r\n1\r\naX\r\n0\r\n\r\n",
     400},
    {"chunk size bare LF",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\nax\r\n", 400},
    {"chunk ext bare LF",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a\nx\r\n", 400},
    {"chunk too large",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
     "chunked\r\n\r\n11111111111111111\r\n",
     413},
    {"expectation", "GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417},
    {"dotdot", "GET /a/../b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"encoded dotdot", "GET /a/%2e%2E/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"dot", "GET /a/./b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"encoded NUL", "GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"encoded slash", "GET /a%2fb HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"bad escape", "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"short escape", "GET /a% HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"query NUL", "GET /a?x=%00 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"asterisk not OPTIONS", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"authority form", "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"control in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n", 400},
    {"NUL in head", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0z\r\n\r\n", 400},
    {"non-ascii target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
};

static void check_valid(const struct valid_case *c, size_t step)
{
    struct cm_http_parser *p;
    size_t used;
    size_t len = strlen(c->in);
    int rv = parse_req(c->in, len, step, 0, &p, &used);
    if (rv != CM_HTTP_PARSE_DONE) {
        printf("# %s -> %d (%d %s)\n", c->in, rv, cm_http_parser_status(p),
               cm_http_parser_error(p));
    }
    ASSERT_INT_EQ(rv, CM_HTTP_PARSE_DONE);
    ASSERT_UINT_EQ(used, len);
    const struct cm_http_request *r = cm_http_parser_request(p);
    ASSERT_STR_EQ(r->method_str, c->method);
    ASSERT_STR_EQ(r->path, c->path);
    ASSERT_STR_EQ(r->query, c->query);
    ASSERT_STR_EQ(r->body, c->body);
    ASSERT_UINT_EQ(r->body_len, strlen(c->body));
    ASSERT_INT_EQ(r->keep_alive, c->keep_alive);
    cm_http_parser_free(p);
}

TEST(parse_valid_table)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(valid); i++) {
        check_valid(&valid[i], 0);
    }
}

static void check_reject(const struct reject_case *c, size_t len, size_t step)
{
    struct cm_http_parser *p;
    int rv = parse_req(c->in, len, step, 0, &p, NULL);
    if (rv >= 0 || cm_http_parser_status(p) != c->status) {
        printf("# case '%s' step %zu: rv %d status %d\n", c->why, step, rv,
               cm_http_parser_status(p));
    }
    ASSERT_TRUE(rv < 0);
    ASSERT_INT_EQ(cm_http_parser_status(p), c->status);
    ASSERT_TRUE(cm_http_parser_error(p)[0] != '\0');
    /* Sticky until reset. */
    size_t used;
    ASSERT_INT_EQ(cm_http_parser_feed(p, "x", 1, &used), rv);
    cm_http_parser_reset(p);
    ASSERT_INT_EQ(cm_http_parser_status(p), 0);
    cm_http_parser_free(p);
}

TEST(parse_reject_table)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(reject); i++) {
        const char *in = reject[i].in;
        /* One case embeds a NUL: measure up to the final CR LF CR LF. */
        size_t len = strlen(in);
        if (strcmp(reject[i].why, "NUL in head") == 0) {
            len = sizeof("GET / HTTP/1.1\r\nHost: a\r\nX: a\0z\r\n\r\n") - 1;
        }
        check_reject(&reject[i], len, 0);
    }
}

/* Byte-by-byte (and 2, 3, 7 bytes at a time) gives the same result as all at
 * once, for every valid and every rejected case. */
TEST(parse_incremental_equals_whole)
{
    static const size_t steps[] = {1, 2, 3, 7};
    for (size_t s = 0; s < CM_ARRAY_SIZE(steps); s++) {
        for (size_t i = 0; i < CM_ARRAY_SIZE(valid); i++) {
            check_valid(&valid[i], steps[s]);
        }
        for (size_t i = 0; i < CM_ARRAY_SIZE(reject); i++) {
            size_t len = strlen(reject[i].in);
            if (strcmp(reject[i].why, "NUL in head") == 0) {
                len = sizeof("GET / HTTP/1.1\r\nHost: a\r\nX: a\0z\r\n\r\n") - 1;
            }
            check_reject(&reject[i], len, steps[s]);
        }
    }
}

TEST(parse_headers_lookup)
{
    static const char in[] =
        "GET / HTTP/1.1\r\nHOST: a\r\nX-Thing:  v1 \r\nx-thing: v2\r\n"
        "Content-Type: application/json\r\n\r\n";
    struct cm_http_parser *p;
    ASSERT_INT_EQ(parse_req(in, sizeof(in) - 1, 0, 0, &p, NULL), CM_HTTP_PARSE_DONE);
    const struct cm_http_request *r = cm_http_parser_request(p);
    ASSERT_UINT_EQ(r->nheaders, 4);
    ASSERT_STR_EQ(r->headers[0].name, "host");
    ASSERT_STR_EQ(r->host, "a");
    ASSERT_STR_EQ(cm_http_request_header(r, "x-THING"), "v1");
    ASSERT_STR_EQ(cm_http_request_header(r, "content-type"), "application/json");
    ASSERT_NULL(cm_http_request_header(r, "accept"));
    ASSERT_INT_EQ(r->method, CM_HTTP_GET);
    ASSERT_INT_EQ(r->version_minor, 1);
    ASSERT_INT_EQ(r->content_length, -1);
    cm_http_parser_free(p);
}

TEST(parse_segments_and_query)
{
    static const char in[] =
        "GET /v2/apps/shop%2Dx//web/versions/2024-01-01T00%3A00%3A00.000Z/?a=1&b=x+y"
        "&c=%26%3D&flag&&d= HTTP/1.1\r\nHost: a\r\n\r\n";
    struct cm_http_parser *p;
    ASSERT_INT_EQ(parse_req(in, sizeof(in) - 1, 0, 0, &p, NULL), CM_HTTP_PARSE_DONE);
    const struct cm_http_request *r = cm_http_parser_request(p);
    ASSERT_UINT_EQ(r->nsegments, 6);
    ASSERT_STR_EQ(r->segments[0], "v2");
    ASSERT_STR_EQ(r->segments[2], "shop-x");
    ASSERT_STR_EQ(r->segments[3], "web");
    ASSERT_STR_EQ(r->segments[5], "2024-01-01T00:00:00.000Z");
    ASSERT_STR_EQ(r->path, "/v2/apps/shop-x/web/versions/2024-01-01T00:00:00.000Z");
    ASSERT_UINT_EQ(r->nquery, 5);
    ASSERT_STR_EQ(cm_http_request_query(r, "a"), "1");
    ASSERT_STR_EQ(cm_http_request_query(r, "b"), "x y");
    ASSERT_STR_EQ(cm_http_request_query(r, "c"), "&=");
    ASSERT_STR_EQ(cm_http_request_query(r, "flag"), "");
    ASSERT_STR_EQ(cm_http_request_query(r, "d"), "");
    ASSERT_NULL(cm_http_request_query(r, "e"));
    cm_http_parser_free(p);
}

TEST(parse_chunked_pieces)
{
    /* Chunk sizes in upper and lower case hex, extensions with quoted strings,
     * trailers; split at every position. */
    static const char in[] =
        "POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "A\r\n0123456789\r\n"
        "1b; ext=\"quoted ; value\"\r\nabcdefghijklmnopqrstuvwxyz!\r\n"
        "000\r\nTrailer-A: x\r\nTrailer-B: y\r\n\r\n";
    size_t len = sizeof(in) - 1;
    for (size_t cut = 1; cut < len; cut++) {
        struct cm_http_parser *p;
        ASSERT_OK(cm_http_parser_new(CM_HTTP_PARSE_REQUEST, &p));
        size_t used, off = 0;
        int rv = cm_http_parser_feed(p, in, cut, &used);
        off += used;
        while (rv == CM_HTTP_PARSE_HEAD) {
            rv = cm_http_parser_feed(p, in + off, cut - off, &used);
            off += used;
        }
        ASSERT_INT_EQ(rv, CM_HTTP_PARSE_AGAIN);
        ASSERT_UINT_EQ(off, cut);
        do {
            rv = cm_http_parser_feed(p, in + off, len - off, &used);
            off += used;
        } while (rv == CM_HTTP_PARSE_HEAD);
        ASSERT_INT_EQ(rv, CM_HTTP_PARSE_DONE);
        ASSERT_UINT_EQ(off, len);
        const struct cm_http_request *r = cm_http_parser_request(p);
        ASSERT_TRUE(r->chunked);
        ASSERT_STR_EQ(r->body, "0123456789abcdefghijklmnopqrstuvwxyz!");
        cm_http_parser_free(p);
    }
}

TEST(parse_pipelined)
{
    static const char in[] =
        "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
        "DELETE /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "1\r\nz\r\n0\r\n\r\n";
    static const char *const paths[] = {"/a", "/b", "/c"};
    static const char *const bodies[] = {"abc", "", "z"};
    struct cm_http_parser *p;
    ASSERT_OK(cm_http_parser_new(CM_HTTP_PARSE_REQUEST, &p));
    size_t off = 0, len = sizeof(in) - 1;
    for (int i = 0; i < 3; i++) {
        int rv;
        do {
            size_t used;
            rv = cm_http_parser_feed(p, in + off, len - off, &used);
            off += used;
        } while (rv == CM_HTTP_PARSE_HEAD);
        ASSERT_INT_EQ(rv, CM_HTTP_PARSE_DONE);
        ASSERT_STR_EQ(cm_http_parser_request(p)->path, paths[i]);
        ASSERT_STR_EQ(cm_http_parser_request(p)->body, bodies[i]);
        cm_http_parser_reset(p);
    }
    ASSERT_UINT_EQ(off, len);
    cm_http_parser_free(p);
}

/* Limits: each fails as soon as it is crossed, without buffering the rest. */
TEST(parse_limits)
{
    struct cm_buf b = {0};
    struct cm_http_parser *p;
    size_t used;

    /* 414: a request line longer than 8 KiB, even with no LF in sight. */
    ASSERT_OK(cm_buf_puts(&b, "GET /"));
    while (b.len < 64 * 1024) {
        ASSERT_OK(cm_buf_puts(&b, "aaaaaaaaaaaaaaaa"));
    }
    ASSERT_TRUE(parse_req(b.data, b.len, 0, 0, &p, &used) < 0);
    ASSERT_INT_EQ(cm_http_parser_status(p), 414);
    ASSERT_TRUE(used <= CM_HTTP_MAX_REQUEST_LINE + 2);
    cm_http_parser_free(p);
    /* ... and at exactly the limit it is fine. */
    cm_buf_clear(&b);
    ASSERT_OK(cm_buf_puts(&b, "GET /"));
    while (b.len < CM_HTTP_MAX_REQUEST_LINE - strlen(" HTTP/1.1")) {
        ASSERT_OK(cm_buf_puts(&b, "a"));
    }
    ASSERT_OK(cm_buf_puts(&b, " HTTP/1.1\r\nHost: a\r\n\r\n"));
    ASSERT_INT_EQ(parse_req(b.data, b.len, 0, 0, &p, &used), CM_HTTP_PARSE_DONE);
    cm_http_parser_free(p);

    /* 431: 101 fields. */
    cm_buf_clear(&b);
    ASSERT_OK(cm_buf_puts(&b, "GET / HTTP/1.1\r\nHost: a\r\n"));
    for (int i = 0; i < 100; i++) {
        ASSERT_OK(cm_buf_printf(&b, "X-%d: v\r\n", i));
    }
    ASSERT_OK(cm_buf_puts(&b, "\r\n"));
    ASSERT_TRUE(parse_req(b.data, b.len, 0, 0, &p, NULL) < 0);
    ASSERT_INT_EQ(cm_http_parser_status(p), 431);
    cm_http_parser_free(p);

    /* 431: one field of 70 KiB, cut off after 64 KiB. */
    cm_buf_clear(&b);
    ASSERT_OK(cm_buf_puts(&b, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "));
    while (b.len < 70 * 1024) {
        ASSERT_OK(cm_buf_puts(&b, "bbbbbbbbbbbbbbbb"));
    }
    ASSERT_TRUE(parse_req(b.data, b.len, 0, 0, &p, &used) < 0);
    ASSERT_INT_EQ(cm_http_parser_status(p), 431);
    ASSERT_TRUE(used <= CM_HTTP_MAX_HEAD + 64);
    cm_http_parser_free(p);

    /* 413: Content-Length over the limit, before any body byte. */
    static const char cl[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
    ASSERT_TRUE(parse_req(cl, sizeof(cl) - 1, 0, 10, &p, NULL) < 0);
    ASSERT_INT_EQ(cm_http_parser_status(p), 413);
    cm_http_parser_free(p);
    static const char cl10[] =
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789";
    ASSERT_INT_EQ(parse_req(cl10, sizeof(cl10) - 1, 0, 10, &p, NULL), CM_HTTP_PARSE_DONE);
    cm_http_parser_free(p);

    /* 413: chunks adding up over the limit. */
    static const char ch[] =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "6\r\n012345\r\n5\r\n67890\r\n0\r\n\r\n";
    ASSERT_TRUE(parse_req(ch, sizeof(ch) - 1, 0, 10, &p, NULL) < 0);
    ASSERT_INT_EQ(cm_http_parser_status(p), 413);
    cm_http_parser_free(p);
    ASSERT_INT_EQ(parse_req(ch, sizeof(ch) - 1, 0, 11, &p, NULL), CM_HTTP_PARSE_DONE);
    cm_http_parser_free(p);

    /* A chunk-size line with endless extensions. */
    cm_buf_clear(&b);
    ASSERT_OK(cm_buf_puts(
        &b, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;"));
    while (b.len < 8 * 1024) {
        ASSERT_OK(cm_buf_puts(&b, "x=y;"));
    }
    ASSERT_TRUE(parse_req(b.data, b.len, 0, 0, &p, NULL) < 0);
    ASSERT_INT_EQ(cm_http_parser_status(p), 400);
    cm_http_parser_free(p);
    cm_buf_done(&b);
}

TEST(parse_expect_continue)
{
    static const char in[] =
        "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
        "Content-Length: 2\r\n\r\n";
    struct cm_http_parser *p;
    ASSERT_OK(cm_http_parser_new(CM_HTTP_PARSE_REQUEST, &p));
    size_t used;
    ASSERT_INT_EQ(cm_http_parser_feed(p, in, sizeof(in) - 1, &used), CM_HTTP_PARSE_HEAD);
    ASSERT_TRUE(cm_http_parser_request(p)->expect_continue);
    ASSERT_INT_EQ(cm_http_parser_request(p)->content_length, 2);
    ASSERT_INT_EQ(cm_http_parser_feed(p, "", 0, &used), CM_HTTP_PARSE_AGAIN);
    ASSERT_INT_EQ(cm_http_parser_feed(p, "{}", 2, &used), CM_HTTP_PARSE_DONE);
    ASSERT_STR_EQ(cm_http_parser_request(p)->body, "{}");
    cm_http_parser_free(p);

    /* HTTP/1.0 requests' expectations are ignored (RFC 9110 §10.1.1). */
    static const char in10[] = "GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n";
    ASSERT_INT_EQ(parse_req(in10, sizeof(in10) - 1, 0, 0, &p, NULL), CM_HTTP_PARSE_DONE);
    ASSERT_FALSE(cm_http_parser_request(p)->expect_continue);
    cm_http_parser_free(p);
}

/* ------------------------------------------------------------------ responses */

static int parse_resp(const char *in, size_t len, bool head, bool eof,
                      struct cm_http_parser **ret_p)
{
    struct cm_http_parser *p;
    ASSERT_OK(cm_http_parser_new(CM_HTTP_PARSE_RESPONSE, &p));
    cm_http_parser_set_head_request(p, head);
    size_t off = 0, used;
    int rv;
    do {
        rv = cm_http_parser_feed(p, in + off, len - off, &used);
        off += used;
    } while (rv == CM_HTTP_PARSE_HEAD);
    if (rv == CM_HTTP_PARSE_AGAIN && eof) {
        rv = cm_http_parser_eof(p);
    }
    *ret_p = p;
    return rv;
}

TEST(parse_responses)
{
    struct cm_http_parser *p;
    const struct cm_http_response *r;
    static const char cl[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    ASSERT_INT_EQ(parse_resp(cl, sizeof(cl) - 1, false, false, &p), CM_HTTP_PARSE_DONE);
    r = cm_http_parser_response(p);
    ASSERT_INT_EQ(r->status, 200);
    ASSERT_STR_EQ(r->reason, "OK");
    ASSERT_STR_EQ(r->body, "hello");
    ASSERT_TRUE(r->keep_alive);
    cm_http_parser_free(p);

    static const char ch[] =
        "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3\r\nabc\r\n0\r\n\r\n";
    ASSERT_INT_EQ(parse_resp(ch, sizeof(ch) - 1, false, false, &p), CM_HTTP_PARSE_DONE);
    ASSERT_STR_EQ(cm_http_parser_response(p)->body, "abc");
    cm_http_parser_free(p);

    /* Close-delimited: only the end of the stream completes it. */
    static const char eof[] = "HTTP/1.0 200 OK\r\n\r\nuntil close";
    ASSERT_INT_EQ(parse_resp(eof, sizeof(eof) - 1, false, false, &p),
                  CM_HTTP_PARSE_AGAIN);
    ASSERT_INT_EQ(cm_http_parser_eof(p), CM_HTTP_PARSE_DONE);
    ASSERT_STR_EQ(cm_http_parser_response(p)->body, "until close");
    ASSERT_FALSE(cm_http_parser_response(p)->keep_alive);
    cm_http_parser_free(p);

    /* Truncated Content-Length body. */
    static const char trunc[] = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc";
    ASSERT_INT_EQ(parse_resp(trunc, sizeof(trunc) - 1, false, true, &p), CM_ETRUNC);
    cm_http_parser_free(p);

    /* HEAD and 204/304 have no body whatever the fields say. */
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n";
    ASSERT_INT_EQ(parse_resp(head, sizeof(head) - 1, true, false, &p),
                  CM_HTTP_PARSE_DONE);
    cm_http_parser_free(p);
    static const char nc[] = "HTTP/1.1 204 No Content\r\n\r\n";
    ASSERT_INT_EQ(parse_resp(nc, sizeof(nc) - 1, false, false, &p), CM_HTTP_PARSE_DONE);
    cm_http_parser_free(p);

    /* An interim 100 Continue is skipped. */
    static const char cont[] =
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}";
    ASSERT_INT_EQ(parse_resp(cont, sizeof(cont) - 1, false, false, &p),
                  CM_HTTP_PARSE_DONE);
    r = cm_http_parser_response(p);
    ASSERT_INT_EQ(r->status, 404);
    ASSERT_STR_EQ(r->reason, "Not Found");
    ASSERT_FALSE(r->keep_alive);
    ASSERT_STR_EQ(r->body, "{}");
    ASSERT_STR_EQ(cm_http_response_header(r, "Content-Length"), "2");
    cm_http_parser_free(p);

    /* No reason phrase. */
    static const char noreason[] = "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n";
    ASSERT_INT_EQ(parse_resp(noreason, sizeof(noreason) - 1, false, false, &p),
                  CM_HTTP_PARSE_DONE);
    ASSERT_STR_EQ(cm_http_parser_response(p)->reason, "");
    cm_http_parser_free(p);

    static const char bad[] = "HTTP/1.1 2x0 OK\r\n\r\n";
    ASSERT_TRUE(parse_resp(bad, sizeof(bad) - 1, false, false, &p) < 0);
    cm_http_parser_free(p);
}

TEST(parse_stream_body)
{
    static const char in[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
        "7\r\ndata: 1\r\n7\r\ndata: 2\r\n0\r\n\r\n";
    struct cm_http_parser *p;
    ASSERT_OK(cm_http_parser_new(CM_HTTP_PARSE_RESPONSE, &p));
    cm_http_parser_set_stream_body(p, true);
    struct cm_buf got = {0};
    size_t off = 0, len = sizeof(in) - 1;
    int pieces = 0, rv;
    /* Three bytes at a time: pieces arrive as the bytes do. */
    do {
        size_t used;
        rv = cm_http_parser_feed(p, in + off, CM_MIN((size_t)3, len - off), &used);
        off += used;
        if (rv == CM_HTTP_PARSE_BODY) {
            const char *d;
            size_t n;
            cm_http_parser_piece(p, &d, &n);
            ASSERT_OK(cm_buf_append(&got, d, n));
            pieces++;
        }
    } while (rv != CM_HTTP_PARSE_DONE && rv >= 0);
    ASSERT_INT_EQ(rv, CM_HTTP_PARSE_DONE);
    ASSERT_STR_EQ(got.data, "data: 1data: 2");
    ASSERT_TRUE(pieces >= 2);
    ASSERT_UINT_EQ(cm_http_parser_response(p)->body_len, 0);
    cm_buf_done(&got);
    cm_http_parser_free(p);
}

/* ------------------------------------------------------------------ OOM */

static int oom_parse(void *arg)
{
    (void)arg;
    static const char in[] =
        "POST /v2/apps/shop/web/restart?force=true&x=%20y HTTP/1.1\r\nHost: a\r\n"
        "Content-Type: application/json\r\nX-A: 1\r\nX-B: 2\r\n"
        "Transfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"
        "PUT /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}";
    struct cm_http_parser *p;
    int rv = cm_http_parser_new(CM_HTTP_PARSE_REQUEST, &p);
    if (rv != 0) {
        return rv;
    }
    size_t off = 0, len = sizeof(in) - 1;
    for (int i = 0; i < 2; i++) {
        do {
            size_t used;
            rv = cm_http_parser_feed(p, in + off, CM_MIN((size_t)5, len - off), &used);
            off += used;
        } while (rv == CM_HTTP_PARSE_HEAD || (rv == CM_HTTP_PARSE_AGAIN && off < len));
        if (rv != CM_HTTP_PARSE_DONE) {
            cm_http_parser_free(p);
            return rv < 0 ? rv : CM_EINTERNAL;
        }
        cm_http_parser_reset(p);
    }
    cm_http_parser_free(p);
    return 0;
}

TEST(parse_oom_walk)
{
    int points = test_alloc_walk(oom_parse, NULL);
    ASSERT_TRUE(points >= 5);
}
