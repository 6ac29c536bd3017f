/* What the verbs that talk to the agent's API share: options (--addr, --json,
 * --help), requests with errors that say what to do, API error bodies, tables
 * and path escaping. */
#include <arpa/inet.h>
#include <ev.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "commands.h"
#include "base/base.h"
#include "net/http.h"
#include "state/state.h"

#define CLIENT_TIMEOUT_MS 30000

static bool is_opt(const char *arg, const char *name, const char **ret_value)
{
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0) {
        return false;
    }
    if (arg[n] == '\0') {
        *ret_value = NULL;
        return true;
    }
    if (arg[n] == '=') {
        *ret_value = arg + n + 1;
        return true;
    }
    return false;
}

static void print_usage(FILE *out, const struct cmd_client *c, const struct cmd_opt *opts,
                        size_t n_opts)
{
    fprintf(out, "usage: clusterctl %s\n\n%s\n\noptions:\n", c->usage, c->about);
    for (size_t i = 0; i < n_opts; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s%c%s%s%s", opts[i].short_name ? "-" : "",
                 opts[i].short_name ? opts[i].short_name : ' ',
                 opts[i].short_name ? ", " : "", opts[i].long_name,
                 opts[i].arg_name != NULL ? " " : "");
        fprintf(out, "  %-22s%s%s\n", name, opts[i].arg_name ? opts[i].arg_name : "",
                opts[i].help);
    }
    fprintf(out,
            "  --addr HOST:PORT      the agent's API (default: $CLUSTERCTL_ADDR, else "
            "127.0.0.1:7070)\n"
            "  --json                print the API's JSON instead of text\n"
            "  -h, --help            show this help\n\n"
            "exit status: 0 ok, 1 failed, 2 usage\n");
}

int cmd_client_parse(struct cmd_client *c, int argc, char **argv,
                     const struct cmd_opt *opts, size_t n_opts, size_t min_pos,
                     size_t max_pos)
{
    c->verb = argv[0];
    c->n_pos = 0;
    const char *env = getenv("CLUSTERCTL_ADDR");
    snprintf(c->addr, sizeof(c->addr), "%s",
             env != NULL && env[0] ? env : "127.0.0.1:7070");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_usage(stdout, c, opts, n_opts);
            return CMD_EXIT_OK;
        }
        if (strcmp(a, "--json") == 0) {
            c->json = true;
            continue;
        }
        if (is_opt(a, "--addr", &v)) {
            if (v == NULL && i + 1 < argc) {
                v = argv[++i];
            }
            if (v == NULL || v[0] == '\0') {
                fprintf(stderr, "clusterctl %s: --addr needs HOST:PORT\n", c->verb);
                return CMD_EXIT_USAGE;
            }
            snprintf(c->addr, sizeof(c->addr), "%s", v);
            continue;
        }
        bool matched = false;
        for (size_t k = 0; k < n_opts && !matched; k++) {
            const struct cmd_opt *o = &opts[k];
            bool short_hit =
                o->short_name && a[0] == '-' && a[1] == o->short_name && a[2] == '\0';
            if (!short_hit && !is_opt(a, o->long_name, &v)) {
                continue;
            }
            if (short_hit) {
                v = NULL;
            }
            matched = true;
            if (o->arg_name == NULL) {
                if (v != NULL) {
                    fprintf(stderr, "clusterctl %s: %s takes no value\n", c->verb,
                            o->long_name);
                    return CMD_EXIT_USAGE;
                }
                *o->flag = true;
            } else {
                if (v == NULL && i + 1 < argc) {
                    v = argv[++i];
                }
                if (v == NULL) {
                    fprintf(stderr, "clusterctl %s: %s needs %s\n", c->verb, o->long_name,
                            o->arg_name);
                    return CMD_EXIT_USAGE;
                }
                *o->value = v;
            }
        }
        if (matched) {
            continue;
        }
        if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr,
                    "clusterctl %s: unknown option '%s'\nRun 'clusterctl %s --help' for "
                    "usage.\n",
                    c->verb, a, c->verb);
            return CMD_EXIT_USAGE;
        }
        if (c->n_pos == max_pos || c->n_pos == CM_ARRAY_SIZE(c->pos)) {
            fprintf(stderr,
                    "clusterctl %s: unexpected argument '%s'\nusage: clusterctl %s\n",
                    c->verb, a, c->usage);
            return CMD_EXIT_USAGE;
        }
        c->pos[c->n_pos++] = argv[i];
    }
    if (c->n_pos < min_pos) {
        fprintf(stderr, "clusterctl %s: missing argument\nusage: clusterctl %s\n",
                c->verb, c->usage);
        return CMD_EXIT_USAGE;
    }
    return -1;
}

/* cm_http_request_sync wants a numeric address: resolve a host name once. */
static int numeric_addr(const char *addr, char *out, size_t cap, struct cm_errbuf *eb)
{
    char host[256];
    uint16_t port;
    if (cm_parse_hostport(addr, host, sizeof(host), &port) != 0) {
        return cm_err_setf(eb, CM_EINVAL, "'%s' is not HOST:PORT", addr);
    }
    unsigned char buf[16];
    if (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1) {
        snprintf(out, cap, "%s", addr);
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rv = getaddrinfo(host, NULL, &hints, &res);
    if (rv != 0 || res == NULL) {
        return cm_err_setf(eb, CM_EINVAL, "cannot resolve '%s': %s", host,
                           rv != 0 ? gai_strerror(rv) : "no address");
    }
    char ip[INET6_ADDRSTRLEN] = "";
    if (res->ai_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr, ip,
                  sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, port);
    } else {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)res->ai_addr)->sin6_addr, ip,
                  sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, port);
    }
    freeaddrinfo(res);
    return 0;
}

void cmd_client_unreachable(const struct cmd_client *c, int code, const char *why)
{
    fprintf(stderr,
            "clusterctl %s: cannot reach the agent at %s: %s — is `clusterctl agent` "
            "running? set --addr or CLUSTERCTL_ADDR\n",
            c->verb, c->addr, why != NULL && why[0] ? why : cm_strerror(code));
}

int cmd_client_call(const struct cmd_client *c, const char *method, const char *path,
                    const char *body, char **ret_body)
{
    char addr[300];
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    int rv = numeric_addr(c->addr, addr, sizeof(addr), &eb);
    int status = 0;
    char *out = NULL;
    if (rv == 0) {
        rv = cm_http_request_sync(addr, method, path, body, &status, &out,
                                  CLIENT_TIMEOUT_MS, &eb);
    }
    if (rv != 0) {
        cmd_client_unreachable(c, rv, cm_strerror(rv));
        return -1;
    }
    *ret_body = out;
    return status;
}

void cmd_client_api_error(const struct cmd_client *c, int status, const char *body)
{
    cJSON *j = body != NULL ? cJSON_Parse(body) : NULL;
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "message");
    fprintf(stderr, "clusterctl %s: %s (HTTP %d)\n", c->verb,
            cJSON_IsString(msg)
                ? msg->valuestring
                : (body != NULL && body[0] ? body : cm_http_reason(status)),
            status);
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(j, "details"))
    {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(d, "path");
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(d, "errors"))
        {
            fprintf(stderr, "  %s: %s\n", cJSON_IsString(p) ? p->valuestring : "/",
                    cJSON_IsString(e) ? e->valuestring : "?");
        }
    }
    if (status == 503) {
        fprintf(stderr, "  the cluster has no leader right now; retry in a moment\n");
    }
    cJSON_Delete(j);
}

int cmd_client_get_json(const struct cmd_client *c, const char *method, const char *path,
                        const char *body, int ok_status, char **ret_text, cJSON **ret)
{
    char *out = NULL;
    int status = cmd_client_call(c, method, path, body, &out);
    if (status < 0) {
        return CMD_EXIT_FAIL;
    }
    if (status != ok_status && !(ok_status == 200 && status == 201)) {
        cmd_client_api_error(c, status, out);
        cm_free(&out);
        return CMD_EXIT_FAIL;
    }
    cJSON *j = cJSON_Parse(out != NULL ? out : "");
    if (j == NULL) {
        fprintf(stderr, "clusterctl %s: the agent answered something that is not JSON\n",
                c->verb);
        cm_free(&out);
        return CMD_EXIT_FAIL;
    }
    if (ret_text != NULL) {
        *ret_text = out;
    } else {
        cm_free(&out);
    }
    *ret = j;
    return CMD_EXIT_OK;
}

int cmd_client_app_path(const char *prefix, const char *id, const char *suffix, char *out,
                        size_t cap)
{
    char abs[CM_APP_MAX_ID + 1];
    if (cm_app_path_normalize(id, "/", abs, sizeof(abs)) != 0 || strcmp(abs, "/") == 0) {
        return CM_EINVAL;
    }
    int n = snprintf(out, cap, "%s%s%s", prefix, abs, suffix != NULL ? suffix : "");
    return n > 0 && (size_t)n < cap ? 0 : CM_ETOOBIG;
}

void cmd_client_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s != '\0' && o + 4 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
            ch == '~') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
}

/* ------------------------------------------------------------------ tables */

int cmd_table_add(struct cmd_table *t, const char *const *cells)
{
    char **row = cm_calloc(t->ncols, sizeof(*row));
    char ***rows = cm_reallocarray(t->rows, t->nrows + 1, sizeof(*rows));
    if (row == NULL || rows == NULL) {
        cm_free(&row);
        if (rows != NULL) {
            t->rows = rows;
        }
        return CM_ENOMEM;
    }
    t->rows = rows;
    for (size_t i = 0; i < t->ncols; i++) {
        row[i] = cm_strdup(cells[i] != NULL ? cells[i] : "-");
    }
    t->rows[t->nrows++] = row;
    return 0;
}

void cmd_table_print(struct cmd_table *t, FILE *out)
{
    size_t w[16] = {0};
    for (size_t i = 0; i < t->ncols && i < 16; i++) {
        w[i] = strlen(t->head[i]);
        for (size_t r = 0; r < t->nrows; r++) {
            size_t n = t->rows[r][i] != NULL ? strlen(t->rows[r][i]) : 0;
            w[i] = CM_MAX(w[i], n);
        }
    }
    for (size_t r = 0; r <= t->nrows; r++) {
        for (size_t i = 0; i < t->ncols && i < 16; i++) {
            const char *cell = r == 0 ? t->head[i] : t->rows[r - 1][i];
            if (i + 1 == t->ncols) {
                fprintf(out, "%s\n", cell != NULL ? cell : "");
            } else {
                fprintf(out, "%-*s  ", (int)w[i], cell != NULL ? cell : "");
            }
        }
    }
}

void cmd_table_done(struct cmd_table *t)
{
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            cm_free(&t->rows[r][i]);
        }
        cm_free(&t->rows[r]);
    }
    cm_free(&t->rows);
    t->nrows = 0;
}

const char *cmd_json_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

double cmd_json_num(const cJSON *obj, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

const char *cmd_task_state(const char *marathon)
{
    static char buf[32];
    if (marathon == NULL) {
        return "?";
    }
    const char *s = strncmp(marathon, "TASK_", 5) == 0 ? marathon + 5 : marathon;
    size_t i = 0;
    for (; s[i] != '\0' && i + 1 < sizeof(buf); i++) {
        buf[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
    }
    buf[i] = '\0';
    return buf;
}

/* ------------------------------------------------------------------ streaming */

struct stream_call {
    bool (*on_data)(void *user, const char *data, size_t len);
    void *user;
    int status;
    int err;
    bool stopped; /* on_data asked to stop: the call is cancelled, no done callback */
    bool done;
    struct cm_buf errbody;
};

static int stream_chunk(struct cm_http_call *call, const struct cm_http_response *head,
                        const char *data, size_t len, void *user)
{
    (void)call;
    struct stream_call *sc = user;
    sc->status = head->status;
    if (head->status != 200) {
        (void)cm_buf_append(&sc->errbody, data, len); /* best effort: for the message */
        return 0;
    }
    if (!sc->on_data(sc->user, data, len)) {
        sc->stopped = true;
        sc->done = true;
        return 1;
    }
    return 0;
}

static void stream_done(struct cm_http_call *call, int err,
                        const struct cm_http_response *resp, void *user)
{
    (void)call;
    struct stream_call *sc = user;
    sc->err = err;
    if (resp != NULL) {
        sc->status = resp->status;
    }
    sc->done = true;
}

int cmd_client_stream(const struct cmd_client *c, const char *path,
                      const struct cm_http_header *headers, size_t nheaders,
                      bool (*on_data)(void *user, const char *data, size_t len),
                      void *user)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (loop == NULL) {
        fprintf(stderr, "clusterctl %s: cannot create an event loop\n", c->verb);
        return CMD_EXIT_FAIL;
    }
    struct stream_call sc = {.on_data = on_data, .user = user};
    struct cm_http_call_options o = {
        .method = "GET",
        .path = path,
        .headers = headers,
        .nheaders = nheaders,
        .on_chunk = stream_chunk,
        .on_done = stream_done,
        .user = &sc,
    };
    struct cm_http_call *call = NULL;
    int rv = cm_http_call_start(loop, c->addr, &o, &call);
    if (rv != 0) {
        ev_loop_destroy(loop);
        cmd_client_unreachable(c, rv, cm_strerror(rv));
        return CMD_EXIT_FAIL;
    }
    while (!sc.done) {
        ev_run(loop, EVRUN_ONCE);
    }
    ev_loop_destroy(loop);
    if (sc.stopped) {
        rv = CMD_EXIT_OK;
    } else if (sc.err != 0) {
        cmd_client_unreachable(c, sc.err, cm_strerror(sc.err));
        rv = CMD_EXIT_FAIL;
    } else if (sc.status != 200) {
        cmd_client_api_error(c, sc.status, sc.errbody.data);
        rv = CMD_EXIT_FAIL;
    } else {
        rv = CMD_STREAM_ENDED;
    }
    cm_buf_done(&sc.errbody);
    return rv;
}
