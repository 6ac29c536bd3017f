/* Fuzz the HTTP request parser: every input is parsed twice, all at once and
 * split at points chosen by the input itself, and both runs must agree on the
 * outcome of every message (the parser is incremental, so splitting must never
 * change a result). Pipelined messages are parsed in turn. The parser must never
 * read outside the input (ASan checks) and every accepted request must satisfy
 * its invariants (limits, NUL-free decoded path without dot segments). */
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "fuzz.h"
#include "net/http.h"

#define MAX_MSGS 16

struct outcome {
    int rv[MAX_MSGS];
    int status[MAX_MSGS];
    size_t body_len[MAX_MSGS];
    int n;
};

static void check_request(const struct cm_http_request *r)
{
    if (r->path == NULL || (r->path[0] != '/' && r->path[0] != '*')) {
        abort();
    }
    if (r->nheaders > CM_HTTP_MAX_FIELDS) {
        abort();
    }
    for (size_t i = 0; i < r->nsegments; i++) {
        const char *s = r->segments[i];
        if (s[0] == '\0' || strchr(s, '/') != NULL || strcmp(s, "..") == 0 ||
            strcmp(s, ".") == 0) {
            abort();
        }
    }
    if (strlen(r->body) > r->body_len) {
        abort();
    }
    if (r->version_minor == 1 && r->host == NULL) {
        abort();
    }
    if (r->chunked && r->content_length >= 0) {
        abort();
    }
}

/* Parse every message of @data with a body limit of 4 KiB; feed in pieces whose
 * sizes come from @split (NULL: all at once). */
static void run(const uint8_t *data, size_t size, const uint8_t *split, size_t nsplit,
                struct outcome *out)
{
    struct cm_http_parser *p;
    if (cm_http_parser_new(CM_HTTP_PARSE_REQUEST, &p) != 0) {
        abort();
    }
    size_t off = 0, si = 0;
    out->n = 0;
    while (out->n < MAX_MSGS) {
        int rv;
        for (;;) {
            size_t piece = size - off;
            if (split != NULL && nsplit > 0) {
                size_t k = (size_t)split[si++ % nsplit] % 64 + 1; /* CM_MIN: once */
                piece = CM_MIN(piece, k);
            }
            size_t used = 0;
            rv = cm_http_parser_feed(p, data + off, piece, &used);
            if (used > piece) {
                abort();
            }
            off += used;
            if (rv == CM_HTTP_PARSE_HEAD) {
                cm_http_parser_set_body_limit(p, 4096);
                continue;
            }
            if (rv != CM_HTTP_PARSE_AGAIN || off == size) {
                break;
            }
            if (used < piece) {
                abort(); /* AGAIN must consume everything it was given */
            }
        }
        out->rv[out->n] = rv;
        out->status[out->n] = cm_http_parser_status(p);
        out->body_len[out->n] = 0;
        if (rv == CM_HTTP_PARSE_DONE) {
            const struct cm_http_request *r = cm_http_parser_request(p);
            check_request(r);
            out->body_len[out->n] = r->body_len;
        }
        out->n++;
        if (rv != CM_HTTP_PARSE_DONE) {
            break;
        }
        cm_http_parser_reset(p);
        if (off == size) {
            break;
        }
    }
    cm_http_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exact-size copy so ASan catches reads one past the end. */
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);
    struct outcome whole, pieces;
    run(copy, size, NULL, 0, &whole);
    /* Split sizes from the input's own bytes, from the end backwards. */
    size_t nsplit = CM_MIN(size, (size_t)32);
    run(copy, size, copy + size - nsplit, nsplit, &pieces);
    if (whole.n != pieces.n) {
        abort();
    }
    for (int i = 0; i < whole.n; i++) {
        if (whole.rv[i] != pieces.rv[i] || whole.status[i] != pieces.status[i] ||
            whole.body_len[i] != pieces.body_len[i]) {
            abort();
        }
    }
    free(copy);
    return 0;
}
