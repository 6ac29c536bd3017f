/* loadgen: closed-loop write load for the raft benchmark. The same client drives
 * our raftkv nodes and etcd, so both are measured the same way.
 *
 *   loadgen --proto line|etcd --addr HOST:PORT --conns C --requests N
 *           [--value-size 256] [--warmup W]
 *
 * Each of C connections keeps exactly one request outstanding (concurrency C).
 * proto line: "PUT <key> <value>\n" -> "OK <index>\n" (tests/integration/raftkv.c)
 * proto etcd: HTTP/1.1 keep-alive POST /v3/kv/put with a JSON body (etcd's gRPC
 *             gateway), 200 with a JSON body expected.
 * Prints one line: writes_per_s=<x> p50_ms=<x> p99_ms=<x> max_ms=<x> errors=<n>
 */
#include <ev.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/base.h"
#include "net/net.h"

enum proto {
    PROTO_LINE = 0, /* raftkv's line protocol */
    PROTO_ETCD = 1, /* etcd v3 JSON gateway over HTTP/1.1 */
};

struct client;

struct gen {
    struct ev_loop *loop;
    enum proto proto;
    const char *addr;
    size_t value_size;
    uint64_t total;    /* requests to complete (after warm-up) */
    uint64_t warmup;   /* requests not measured */
    uint64_t issued;   /* requests sent */
    uint64_t finished; /* responses received */
    uint64_t errors;
    double *lat_ms; /* per measured request */
    uint64_t n_lat;
    uint64_t t_start_ns; /* when the first measured request was sent */
    uint64_t t_end_ns;
    struct cm_clock *clock;
    char *value;
    unsigned open_clients;
};

struct client {
    struct gen *g;
    int fd;
    ev_io r;
    ev_io w;
    struct cm_buf out;
    struct cm_buf in;
    uint64_t sent_ns;
    bool measured;
    bool busy;
    unsigned id;
    uint64_t seq;
};

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64(struct cm_buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(uint8_t)s[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)(uint8_t)s[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= (uint8_t)s[i + 2];
        }
        char q[4] = {b64chars[(v >> 18) & 63], b64chars[(v >> 12) & 63],
                     i + 1 < n ? b64chars[(v >> 6) & 63] : '=',
                     i + 2 < n ? b64chars[v & 63] : '='};
        cm_buf_append(out, q, 4);
    }
}

static void client_send(struct client *c);

static void client_fail(struct client *c, const char *why)
{
    fprintf(stderr, "loadgen: connection %u: %s\n", c->id, why);
    ev_io_stop(c->g->loop, &c->r);
    ev_io_stop(c->g->loop, &c->w);
    close(c->fd);
    c->g->errors++;
    if (--c->g->open_clients == 0) {
        ev_break(c->g->loop, EVBREAK_ALL);
    }
}

/* Length of one complete response at the start of c->in, 0 if incomplete, -1 if
 * it is an error response. */
static long response_len(struct client *c, bool *ok)
{
    if (c->g->proto == PROTO_LINE) {
        char *nl = memchr(c->in.data, '\n', c->in.len);
        if (nl == NULL) {
            return 0;
        }
        *ok = strncmp(c->in.data, "OK ", 3) == 0;
        return nl - c->in.data + 1;
    }
    char *end = strstr(c->in.data, "\r\n\r\n");
    if (end == NULL) {
        return 0;
    }
    size_t hlen = (size_t)(end - c->in.data) + 4;
    const char *cl = strcasestr(c->in.data, "\r\ncontent-length:");
    long body = 0;
    if (cl != NULL && cl < end) {
        body = strtol(cl + 17, NULL, 10);
    } else if (strcasestr(c->in.data, "transfer-encoding: chunked") != NULL) {
        /* The gateway answers with Content-Length; chunked is not expected. */
        *ok = false;
        return -1;
    }
    if (c->in.len < hlen + (size_t)body) {
        return 0;
    }
    *ok = strncmp(c->in.data, "HTTP/1.1 200", 12) == 0;
    return (long)hlen + body;
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct client *c = cm_container_of(w, struct client, r);
    struct gen *g = c->g;
    if (cm_buf_reserve(&c->in, 16384) != 0) {
        client_fail(c, "out of memory");
        return;
    }
    ssize_t n = recv(c->fd, c->in.data + c->in.len, 16384, 0);
    if (n == 0) {
        client_fail(c, "closed by server");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            client_fail(c, strerror(errno));
        }
        return;
    }
    c->in.len += (size_t)n;
    c->in.data[c->in.len] = '\0';
    bool ok = false;
    long len = response_len(c, &ok);
    if (len == 0) {
        return;
    }
    if (len < 0 || !ok) {
        fprintf(stderr, "loadgen: bad response: %.80s\n", c->in.data);
        g->errors++;
        len = len < 0 ? (long)c->in.len : len;
    }
    uint64_t now = g->clock->mono_ns(g->clock);
    if (c->measured && ok) {
        g->lat_ms[g->n_lat++] = (double)(now - c->sent_ns) / 1e6;
    }
    cm_buf_consume(&c->in, (size_t)len);
    c->busy = false;
    g->finished++;
    if (g->finished == g->warmup + g->total) {
        g->t_end_ns = now;
        ev_break(g->loop, EVBREAK_ALL);
        return;
    }
    client_send(c);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct client *c = cm_container_of(w, struct client, w);
    while (c->out.len > 0) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                client_fail(c, strerror(errno));
            }
            return;
        }
        cm_buf_consume(&c->out, (size_t)n);
    }
    ev_io_stop(c->g->loop, &c->w);
}

static void client_send(struct client *c)
{
    struct gen *g = c->g;
    if (g->issued >= g->warmup + g->total) {
        return;
    }
    uint64_t i = g->issued++;
    char key[64];
    snprintf(key, sizeof(key), "key-%u-%llu", c->id, (unsigned long long)c->seq++);
    if (g->proto == PROTO_LINE) {
        cm_buf_printf(&c->out, "PUT %s %s\n", key, g->value);
    } else {
        struct cm_buf body = {0};
        cm_buf_puts(&body, "{\"key\":\"");
        b64(&body, key, strlen(key));
        cm_buf_puts(&body, "\",\"value\":\"");
        b64(&body, g->value, g->value_size);
        cm_buf_puts(&body, "\"}");
        cm_buf_printf(&c->out,
                      "POST /v3/kv/put HTTP/1.1\r\nHost: %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      g->addr, body.len);
        cm_buf_append(&c->out, body.data, body.len);
        cm_buf_done(&body);
    }
    c->sent_ns = g->clock->mono_ns(g->clock);
    c->measured = i >= g->warmup;
    if (i == g->warmup) {
        g->t_start_ns = c->sent_ns;
    }
    c->busy = true;
    ev_io_start(g->loop, &c->w);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"proto", required_argument, NULL, 'p'},
        {"addr", required_argument, NULL, 'a'},
        {"conns", required_argument, NULL, 'c'},
        {"requests", required_argument, NULL, 'n'},
        {"value-size", required_argument, NULL, 'v'},
        {"warmup", required_argument, NULL, 'w'},
        {NULL, 0, NULL, 0},
    };
    struct gen g = {0};
    int64_t conns = 1, requests = 1000, vsize = 256, warmup = -1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            g.proto = strcmp(optarg, "etcd") == 0 ? PROTO_ETCD : PROTO_LINE;
            break;
        case 'a':
            g.addr = optarg;
            break;
        case 'c':
            cm_parse_i64(optarg, 1, 4096, &conns);
            break;
        case 'n':
            cm_parse_i64(optarg, 1, INT64_MAX, &requests);
            break;
        case 'v':
            cm_parse_i64(optarg, 1, 1 << 20, &vsize);
            break;
        case 'w':
            cm_parse_i64(optarg, 0, INT64_MAX, &warmup);
            break;
        default:
            return 2;
        }
    }
    if (g.addr == NULL) {
        fprintf(stderr,
                "usage: loadgen --proto line|etcd --addr H:P --conns C "
                "--requests N [--value-size B] [--warmup W]\n");
        return 2;
    }
    g.loop = ev_default_loop(0);
    g.clock = cm_clock_system();
    g.total = (uint64_t)requests;
    g.warmup = warmup >= 0 ? (uint64_t)warmup : (uint64_t)requests / 10;
    g.value_size = (size_t)vsize;
    g.value = cm_malloc(g.value_size + 1);
    g.lat_ms = cm_calloc(g.total, sizeof(double));
    if (g.value == NULL || g.lat_ms == NULL) {
        return 1;
    }
    memset(g.value, 'v', g.value_size);
    g.value[g.value_size] = '\0';

    struct client *cs = cm_calloc((size_t)conns, sizeof(*cs));
    for (int64_t i = 0; i < conns; i++) {
        struct client *c = &cs[i];
        c->g = &g;
        c->id = (unsigned)i;
        int rv = cm_tcp_connect(g.addr, &c->fd);
        if (rv != 0) {
            fprintf(stderr, "loadgen: connect %s: %s\n", g.addr, cm_strerror(rv));
            return 1;
        }
        cm_tcp_nodelay(c->fd);
        ev_io_init(&c->r, read_cb, c->fd, EV_READ);
        ev_io_init(&c->w, write_cb, c->fd, EV_WRITE);
        ev_io_start(g.loop, &c->r);
        g.open_clients++;
    }
    for (int64_t i = 0; i < conns; i++) {
        client_send(&cs[i]);
    }
    ev_run(g.loop, 0);
    if (g.finished < g.warmup + g.total || g.n_lat == 0) {
        fprintf(stderr, "loadgen: only %llu of %llu requests finished\n",
                (unsigned long long)g.finished, (unsigned long long)(g.warmup + g.total));
        return 1;
    }
    qsort(g.lat_ms, g.n_lat, sizeof(double), cmp_double);
    double secs = (double)(g.t_end_ns - g.t_start_ns) / 1e9;
    printf("writes_per_s=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f errors=%llu\n",
           (double)g.total / secs, g.lat_ms[g.n_lat / 2],
           g.lat_ms[(size_t)((double)g.n_lat * 0.99)], g.lat_ms[g.n_lat - 1],
           (unsigned long long)g.errors);
    return g.errors > 0 ? 1 : 0;
}
