/* lbd: a small LB daemon around lb/ for the system tests and the benchmark, until
 * the node daemon wires lb/ to the replicated state. It takes the VIP table from a
 * JSON file and reloads it on SIGHUP:
 *
 *   {"vips": [{"vip": "198.18.0.1:80", "proto": "tcp", "name": "web",
 *              "mode": "auto|nat|proxy", "proxy_protocol": false,
 *              "backends": [{"addr": "10.0.0.2:8080", "weight": 1,
 *                            "draining": false}]}]}
 *
 * Usage: lbd --config FILE [--mode auto|nat|proxy] [--threads N] [--iface lo]
 *            [--status FILE] [--no-splice] [--drain-timeout-ms N]
 *            [--idle-timeout-ms N] [--connect-timeout-ms N] [--no-addrs]
 *
 * Start-up repairs what a crashed run left (our nft table, our addresses on the
 * interface), then adds the VIP addresses, programs nat and starts the proxy
 * threads; it prints "lbd: ready mode=<nat|proxy>" on stdout. SIGTERM/SIGINT:
 * remove the table and the addresses, then exit 0. --status FILE is rewritten
 * every 100 ms with per-VIP metrics (listen_error: errno of a VIP the proxy cannot
 * listen on, 0 when it listens) and per-backend open connections (JSON). */
#include <cjson/cJSON.h>
#include <ev.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "lb/lb.h"

#define MAX_THREADS 16

static struct {
    const char *config, *iface, *status;
    const char *mode;
    int threads;
    bool no_splice, no_addrs;
    struct lb_proxy_opts popts;
} opt = {.iface = "lo", .mode = "auto", .threads = 1};

static struct lb_table *cur;
static struct lb_nat *nat;
static bool nat_on;
static struct lb_proxy_pool *pool;

static int parse_mode(const char *s, enum lb_mode *ret)
{
    if (s == NULL || strcmp(s, "auto") == 0) {
        *ret = LB_MODE_AUTO;
    } else if (strcmp(s, "nat") == 0) {
        *ret = LB_MODE_NAT;
    } else if (strcmp(s, "proxy") == 0) {
        *ret = LB_MODE_PROXY;
    } else {
        return CM_EINVAL;
    }
    return 0;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The config file into a new table (prev: the current one). */
static int load(const struct lb_table *prev, struct lb_table **ret, struct cm_errbuf *eb)
{
    FILE *f = fopen(opt.config, "rb");
    if (f == NULL) {
        return cm_err_sys(eb, cm_errno(), "open `%s`", opt.config);
    }
    struct cm_buf text = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        cm_buf_append(&text, chunk, n);
    }
    fclose(f);
    cJSON *root = cJSON_Parse(text.data != NULL ? text.data : "");
    cm_buf_done(&text);
    const cJSON *vips = cJSON_GetObjectItemCaseSensitive(root, "vips");
    if (root == NULL || !cJSON_IsArray(vips)) {
        cJSON_Delete(root);
        return cm_err_setf(eb, CM_EINVAL, "`%s`: no \"vips\" array", opt.config);
    }
    int nv = cJSON_GetArraySize(vips), rv = 0;
    struct lb_vip_spec *vs = cm_calloc((size_t)nv + 1, sizeof(*vs));
    struct lb_backend_spec **bss = cm_calloc((size_t)nv + 1, sizeof(*bss));
    for (int i = 0; i < nv && rv == 0; i++) {
        const cJSON *v = cJSON_GetArrayItem(vips, i);
        const char *proto = jstr(v, "proto");
        if (lb_endpoint_parse(jstr(v, "vip"), &vs[i].vip) != 0 ||
            parse_mode(jstr(v, "mode"), &vs[i].mode) != 0) {
            rv = cm_err_setf(eb, CM_EINVAL, "vips[%d]: bad vip or mode", i);
            break;
        }
        vs[i].proto =
            proto != NULL && strcmp(proto, "udp") == 0 ? LB_PROTO_UDP : LB_PROTO_TCP;
        vs[i].name = jstr(v, "name");
        vs[i].proxy_protocol =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "proxy_protocol"));
        const cJSON *bs = cJSON_GetObjectItemCaseSensitive(v, "backends");
        int nb = cJSON_IsArray(bs) ? cJSON_GetArraySize(bs) : 0;
        bss[i] = cm_calloc((size_t)nb + 1, sizeof(**bss));
        for (int j = 0; j < nb; j++) {
            const cJSON *b = cJSON_GetArrayItem(bs, j);
            const cJSON *w = cJSON_GetObjectItemCaseSensitive(b, "weight");
            if (lb_endpoint_parse(jstr(b, "addr"), &bss[i][j].ep) != 0) {
                rv = cm_err_setf(eb, CM_EINVAL, "vips[%d].backends[%d]: bad addr", i, j);
                break;
            }
            bss[i][j].weight = cJSON_IsNumber(w) ? (uint32_t)w->valuedouble : 1;
            bss[i][j].draining =
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "draining"));
        }
        vs[i].backends = bss[i];
        vs[i].nbackends = (size_t)nb;
    }
    if (rv == 0) {
        rv = lb_table_new(vs, (size_t)nv, prev, ret, eb);
    }
    for (int i = 0; i < nv; i++) {
        cm_free(&bss[i]);
    }
    cm_free(&bss);
    cm_free(&vs);
    cJSON_Delete(root);
    return rv;
}

static int sync_addrs(const struct lb_table *t, struct cm_errbuf *eb)
{
    if (opt.no_addrs) {
        return 0;
    }
    size_t n = t != NULL ? lb_table_count(t) : 0, k = 0;
    struct in_addr *a = cm_calloc(n + 1, sizeof(*a));
    for (size_t i = 0; i < n; i++) {
        struct in_addr x = lb_table_at(t, i)->vip.addr;
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++) {
            dup = a[j].s_addr == x.s_addr;
        }
        if (!dup) {
            a[k++] = x;
        }
    }
    int rv = lb_addr_sync(opt.iface, a, k, eb);
    cm_free(&a);
    return rv;
}

/* Install @t everywhere: addresses, nat, proxies. */
static int install(struct lb_table *t, struct cm_errbuf *eb)
{
    int rv = sync_addrs(t, eb);
    if (rv == 0 && nat_on) {
        rv = lb_nat_apply(nat, t, true, eb);
    }
    if (rv != 0) {
        return rv;
    }
    lb_proxy_pool_publish(pool, lb_table_ref(t));
    lb_table_unref(cur);
    cur = t;
    return 0;
}

static void write_status(void)
{
    if (opt.status == NULL || cur == NULL) {
        return;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON *vips = cJSON_AddArrayToObject(root, "vips");
    char s[LB_ENDPOINT_STRLEN];
    for (size_t i = 0; i < lb_table_count(cur); i++) {
        const struct lb_vip *v = lb_table_at(cur, i);
        struct lb_vip_metrics m;
        lb_vip_metrics_get(v, &m);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "vip", lb_endpoint_str(v->vip, s));
        cJSON_AddNumberToObject(o, "active", (double)m.active);
        cJSON_AddNumberToObject(o, "total", (double)m.total);
        cJSON_AddNumberToObject(o, "failed", (double)m.failed);
        cJSON_AddNumberToObject(o, "bytes_in", (double)m.bytes_in);
        cJSON_AddNumberToObject(o, "bytes_out", (double)m.bytes_out);
        cJSON_AddNumberToObject(o, "listen_error", m.listen_error);
        cJSON *bs = cJSON_AddObjectToObject(o, "backends");
        for (size_t j = 0; j < v->nbackends; j++) {
            uint64_t c = 0;
            (void)lb_table_backend_conns(cur, v->backends[j].ep, &c);
            cJSON_AddNumberToObject(bs, lb_endpoint_str(v->backends[j].ep, s), (double)c);
        }
        cJSON_AddItemToArray(vips, o);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", opt.status);
    FILE *f = fopen(tmp, "w");
    if (f != NULL && text != NULL) {
        fputs(text, f);
        fclose(f);
        rename(tmp, opt.status);
    } else if (f != NULL) {
        fclose(f);
    }
    free(text);
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    struct cm_errbuf eb = {0};
    struct lb_table *t;
    int rv = load(cur, &t, &eb);
    if (rv == 0) {
        rv = install(t, &eb);
        if (rv != 0) {
            lb_table_unref(t);
        }
    }
    if (rv != 0) {
        cm_error("lbd", "reload: %s", eb.msg);
    } else {
        cm_info("lbd", "reloaded %zu VIPs", lb_table_count(cur));
    }
}

static void on_term(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void on_status(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    write_status();
}

_Noreturn static void usage(void)
{
    fprintf(stderr,
            "usage: lbd --config FILE [--mode auto|nat|proxy] [--threads N] "
            "[--iface IF] [--status FILE] [--no-splice] [--no-addrs]\n"
            "           [--drain-timeout-ms N] [--idle-timeout-ms N] "
            "[--connect-timeout-ms N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"mode", required_argument, NULL, 'm'},
        {"threads", required_argument, NULL, 't'},
        {"iface", required_argument, NULL, 'i'},
        {"status", required_argument, NULL, 's'},
        {"no-splice", no_argument, NULL, 'S'},
        {"no-addrs", no_argument, NULL, 'A'},
        {"drain-timeout-ms", required_argument, NULL, 'd'},
        {"idle-timeout-ms", required_argument, NULL, 'I'},
        {"connect-timeout-ms", required_argument, NULL, 'C'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            opt.config = optarg;
            break;
        case 'm':
            opt.mode = optarg;
            break;
        case 't':
            opt.threads = atoi(optarg);
            break;
        case 'i':
            opt.iface = optarg;
            break;
        case 's':
            opt.status = optarg;
            break;
        case 'S':
            opt.popts.no_splice = true;
            break;
        case 'A':
            opt.no_addrs = true;
            break;
        case 'd':
            opt.popts.drain_timeout_ms = (uint32_t)atoi(optarg);
            break;
        case 'I':
            opt.popts.idle_timeout_ms = (uint32_t)atoi(optarg);
            break;
        case 'C':
            opt.popts.connect_timeout_ms = (uint32_t)atoi(optarg);
            break;
        default:
            usage();
        }
    }
    enum lb_mode mode = LB_MODE_AUTO;
    if (opt.config == NULL || opt.threads < 1 || opt.threads > MAX_THREADS ||
        parse_mode(opt.mode, &mode) != 0) {
        usage();
    }
    signal(SIGPIPE, SIG_IGN);

    struct cm_errbuf eb = {0};
    if (mode != LB_MODE_PROXY) {
        int rv = lb_nat_new(&nat, &eb);
        if (rv == 0) {
            nat_on = true;
        } else if (mode == LB_MODE_NAT) {
            cm_error("lbd", "mode nat: %s", eb.msg);
            return 1;
        } else {
            cm_warn("lbd", "mode nat unavailable, using proxy: %s", eb.msg);
        }
    }
    opt.popts.serve_auto = !nat_on;
    opt.popts.seed = (uint64_t)getpid() * 1000003u;
    if (lb_proxy_pool_new(&opt.popts, (unsigned)opt.threads, &pool, &eb) != 0) {
        cm_error("lbd", "proxy: %s", eb.msg);
        return 1;
    }

    struct lb_table *t;
    if (load(NULL, &t, &eb) != 0 || install(t, &eb) != 0) {
        cm_error("lbd", "start: %s", eb.msg);
        return 1;
    }
    struct ev_loop *loop = EV_DEFAULT;
    ev_signal hup, term, intr;
    ev_timer status;
    ev_signal_init(&hup, on_hup, SIGHUP);
    ev_signal_init(&term, on_term, SIGTERM);
    ev_signal_init(&intr, on_term, SIGINT);
    ev_signal_start(loop, &hup);
    ev_signal_start(loop, &term);
    ev_signal_start(loop, &intr);
    ev_timer_init(&status, on_status, 0., 0.1);
    ev_timer_start(loop, &status);
    write_status();
    printf("lbd: ready mode=%s vips=%zu threads=%d\n", nat_on ? "nat" : "proxy",
           lb_table_count(cur), opt.threads);
    fflush(stdout);

    ev_run(loop, 0);

    /* Clean shutdown: no table, no addresses, then the threads. */
    int rc = 0;
    if (nat_on && lb_nat_clear(nat, &eb) != 0) {
        cm_error("lbd", "nat clear: %s", eb.msg);
        rc = 1;
    }
    if (sync_addrs(NULL, &eb) != 0) {
        cm_error("lbd", "addresses: %s", eb.msg);
        rc = 1;
    }
    lb_proxy_pool_free(pool);
    lb_nat_free(nat);
    lb_table_unref(cur);
    printf("lbd: stopped\n");
    return rc;
}
