/* dnsd: dns/ as a small standalone server fed from a state.db, for the pytest
 * suites and tests/bench/dns. Not part of clusterctl itself.
 *
 *   dnsd [--listen HOST:PORT] [--threads N] [--domain D] [--state FILE]
 *        [--apply FILE.jsonl] [--gen APPS,TASKS,NODES] [--leader NODE]
 *        [--forward] [--upstream HOST[:PORT],...] [--resolv-conf FILE]
 *        [--udp-max N] [--tcp-idle-ms N] [--tcp-max-conns N]
 *        [--zone-file OUT] [--port-file OUT] [--fresh N] [--mesos-compat]
 *
 * The zone is built with dns_zone_from_state from --state (a temporary file
 * when not given) after applying the commands of --apply (one JSON command a
 * line) and of --gen (APPS apps /g<i%20>/app<i>, each with TASKS running tasks
 * and the named ports http and metrics, over NODES nodes n<k> at 10.0.<k/250>.<k%250+1>).
 * SIGHUP applies the lines appended to --apply since, rebuilds and publishes.
 * SIGTERM/SIGINT stop. --port-file receives the port once serving, --zone-file
 * the zone as a master file after each build.
 *
 * --fresh N measures, N times, the delay from applying a task.status "running"
 * (cm_state_apply) to the task's address being in the answer to a UDP query,
 * with a rebuild and dns_server_publish in between as the daemon does, and
 * prints "fresh_ms p50=.. p95=.. max=.." before serving on. */
#include <arpa/inet.h>
#include <ev.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "dns/dns.h"
#include "state/db.h"

struct dnsd {
    struct cm_state *st;
    char state_path[256];
    bool tmp_state;
    const char *apply_path;
    size_t applied_lines;
    struct dns_zone_config zcfg;
    struct dns_state_cache *cache;
    const char *leader;
    const char *zone_file;
    struct dns_server *srv;
};

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int apply_cmd(struct dnsd *d, const char *cmd, size_t len)
{
    struct cm_errbuf eb = {0};
    int rv = cm_state_validate(d->st, cmd, len, &eb);
    if (rv != 0) {
        fprintf(stderr, "dnsd: invalid command: %s: %.*s\n", eb.msg,
                (int)CM_MIN(len, 200), cmd);
        return rv;
    }
    rv = cm_state_apply(d->st, cm_state_applied_index(d->st) + 1, cmd, len, &eb);
    if (rv != 0) {
        fprintf(stderr, "dnsd: apply: %s\n", eb.msg);
    }
    return rv;
}

/* Apply the lines of --apply after the ones already applied. */
static int apply_file(struct dnsd *d)
{
    if (d->apply_path == NULL) {
        return 0;
    }
    FILE *f = fopen(d->apply_path, "r");
    if (f == NULL) {
        perror(d->apply_path);
        return CM_EIO;
    }
    char *line = NULL;
    size_t cap = 0, n = 0;
    ssize_t len;
    int rv = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (n++ < d->applied_lines) {
            continue;
        }
        d->applied_lines = n;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
            line[--len] = '\0';
        }
        if (len == 0 || line[0] == '#') {
            continue;
        }
        if ((rv = apply_cmd(d, line, (size_t)len)) != 0 && rv != CM_EVALIDATION) {
            break;
        }
        rv = 0;
    }
    free(line);
    fclose(f);
    return rv;
}

static int gen(struct dnsd *d, const char *spec)
{
    int apps, tasks, nodes;
    if (sscanf(spec, "%d,%d,%d", &apps, &tasks, &nodes) != 3 || apps < 0 || tasks < 0 ||
        nodes < 1 || nodes > 65000) {
        fprintf(stderr, "dnsd: --gen APPS,TASKS,NODES\n");
        return CM_EINVAL;
    }
    struct cm_buf b = {0};
    int rv = 0;
    for (int k = 0; k < nodes && rv == 0; k++) {
        cm_buf_clear(&b);
        cm_buf_printf(
            &b,
            "{\"type\":\"node.up\",\"at\":1,\"node\":{\"id\":\"n%d\",\"address\":"
            "\"10.0.%d.%d\",\"attrs\":{},\"resources\":{}}}",
            k, k / 250, k % 250 + 1);
        rv = apply_cmd(d, b.data, b.len);
    }
    for (int i = 0; i < apps && rv == 0; i++) {
        cm_buf_clear(&b);
        cm_buf_printf(
            &b,
            "{\"type\":\"app.put\",\"version\":\"2026-01-01T00:00:00.000Z\","
            "\"app\":{\"id\":\"/g%d/app%d\",\"cmd\":\"sleep 1000\",\"instances\":%d,"
            "\"portDefinitions\":[{\"port\":0,\"name\":\"http\",\"protocol\":\"tcp\"},"
            "{\"port\":0,\"name\":\"metrics\",\"protocol\":\"tcp\"}]}}",
            i % 20, i, tasks);
        if ((rv = apply_cmd(d, b.data, b.len)) != 0 || tasks == 0) {
            continue;
        }
        cm_buf_clear(&b);
        cm_buf_printf(&b, "{\"type\":\"task.assign\",\"at\":2,\"tasks\":[");
        for (int t = 0; t < tasks; t++) {
            int node = (i * tasks + t) % nodes;
            cm_buf_printf(
                &b,
                "%s{\"id\":\"g%d_app%d.t%d\",\"app\":\"/g%d/app%d\",\"version\":\"v\","
                "\"node\":\"n%d\",\"host\":\"10.0.%d.%d\",\"ports\":[%d,%d]}",
                t ? "," : "", i % 20, i, t, i % 20, i, node, node / 250, node % 250 + 1,
                31000 + 2 * t, 31001 + 2 * t);
        }
        cm_buf_printf(&b, "]}");
        if ((rv = apply_cmd(d, b.data, b.len)) != 0) {
            break;
        }
        for (int t = 0; t < tasks && rv == 0; t++) {
            cm_buf_clear(&b);
            cm_buf_printf(&b,
                          "{\"type\":\"task.status\",\"at\":3,\"id\":\"g%d_app%d.t%d\","
                          "\"state\":\"running\"}",
                          i % 20, i, t);
            rv = apply_cmd(d, b.data, b.len);
        }
    }
    cm_buf_done(&b);
    return rv;
}

static int rebuild(struct dnsd *d, bool quiet)
{
    struct dns_state_info info = {.leader = d->leader, .cache = d->cache};
    struct dns_zone *z;
    struct dns_state_report rep;
    double t0 = now_ms();
    int rv = dns_zone_from_state(d->st, &d->zcfg, &info, &z, &rep);
    if (rv != 0) {
        fprintf(stderr, "dnsd: zone: %s\n", cm_strerror(rv));
        return rv;
    }
    if (!quiet) {
        fprintf(stderr,
                "dnsd: zone built in %.1f ms: %zu names, %zu apps, %zu running tasks, "
                "%zu nodes, %zu skipped\n",
                now_ms() - t0, dns_zone_size(z), rep.apps, rep.tasks, rep.nodes,
                rep.skipped_tasks + rep.skipped_apps);
    }
    if (d->zone_file != NULL && !quiet) {
        struct cm_buf b = {0};
        FILE *f = fopen(d->zone_file, "w");
        if (f == NULL || dns_zone_to_text(z, &b) != 0 ||
            fwrite(b.data, 1, b.len, f) != b.len) {
            fprintf(stderr, "dnsd: cannot write %s\n", d->zone_file);
        }
        if (f != NULL) {
            fclose(f);
        }
        cm_buf_done(&b);
    }
    dns_server_publish(d->srv, z);
    return 0;
}

/* ------------------------------------------------------------------ freshness */

static size_t mkquery(uint8_t *buf, size_t cap, uint16_t id, const char *name)
{
    struct dns_writer w;
    struct dns_header h = {.id = id, .flags = DNS_FLAG_RD};
    dns_writer_init(&w, buf, cap, &h);
    struct dns_question q = {.qtype = DNS_TYPE_A, .qclass = DNS_CLASS_IN};
    if (dns_name_from_str(name, &q.name) != 0 || dns_writer_question(&w, &q) != 0) {
        return 0;
    }
    return dns_writer_finish(&w);
}

/* True when the answer to @q holds @addr. */
static bool answer_has(int fd, const uint8_t *q, size_t qlen, const uint8_t addr[4])
{
    uint8_t r[4096];
    if (send(fd, q, qlen, 0) < 0) {
        return false;
    }
    ssize_t n = recv(fd, r, sizeof(r), 0);
    struct dns_reader rd;
    struct dns_rr rr;
    enum dns_section sec;
    if (n <= 0 || dns_reader_init(&rd, r, (size_t)n) != 0) {
        return false;
    }
    while (dns_reader_rr(&rd, &rr, &sec) == 0) {
        if (sec == DNS_SECTION_ANSWER && rr.type == DNS_TYPE_A &&
            memcmp(rr.data.a, addr, 4) == 0) {
            return true;
        }
    }
    return false;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int fresh(struct dnsd *d, int n, uint16_t port)
{
    char cmd[512];
    int rv;
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"node.up\",\"at\":1,\"node\":{\"id\":\"fresh-node\",\"address\":"
             "\"10.250.0.1\",\"attrs\":{},\"resources\":{}}}");
    if ((rv = apply_cmd(d, cmd, strlen(cmd))) != 0) {
        return rv;
    }
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"app.put\",\"version\":\"2026-01-01T00:00:00.000Z\",\"app\":{"
             "\"id\":\"/freshness\",\"cmd\":\"sleep 1000\",\"instances\":1}}");
    if ((rv = apply_cmd(d, cmd, strlen(cmd))) != 0) {
        return rv;
    }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        return cm_errno();
    }
    uint8_t q[512];
    char name[300];
    snprintf(name, sizeof(name), "freshness.%s",
             d->zcfg.domain ? d->zcfg.domain : "cluster");
    size_t qlen = mkquery(q, sizeof(q), 1, name);
    double *ms = calloc((size_t)n, sizeof(*ms));
    for (int i = 0; i < n; i++) {
        uint8_t addr[4] = {10, 251, (uint8_t)(i / 250), (uint8_t)(i % 250 + 1)};
        /* The assignment is committed first (staging: not in DNS yet)... */
        snprintf(
            cmd, sizeof(cmd),
            "{\"type\":\"task.assign\",\"at\":10,\"tasks\":[{\"id\":\"freshness.%d\","
            "\"app\":\"/freshness\",\"version\":\"v\",\"node\":\"fresh-node\","
            "\"host\":\"%u.%u.%u.%u\",\"ports\":[30000]}]}",
            i, addr[0], addr[1], addr[2], addr[3]);
        if ((rv = apply_cmd(d, cmd, strlen(cmd))) != 0 || (rv = rebuild(d, true)) != 0) {
            break;
        }
        /* ...then the clock runs from the status commit to the answer. */
        snprintf(cmd, sizeof(cmd),
                 "{\"type\":\"task.status\",\"at\":11,\"id\":\"freshness.%d\",\"state\":"
                 "\"running\"}",
                 i);
        double t0 = now_ms();
        if ((rv = apply_cmd(d, cmd, strlen(cmd))) != 0) {
            break;
        }
        unsigned changes = cm_state_take_changes(d->st);
        if ((changes & CM_STATE_CHANGED_TASKS) && (rv = rebuild(d, true)) != 0) {
            break;
        }
        int tries = 0;
        while (!answer_has(fd, q, qlen, addr) && ++tries < 1000) {
        }
        ms[i] = now_ms() - t0;
        /* The old task goes away (not measured). */
        snprintf(cmd, sizeof(cmd),
                 "{\"type\":\"task.status\",\"at\":12,\"id\":\"freshness.%d\",\"state\":"
                 "\"finished\",\"exit\":0}",
                 i);
        if ((rv = apply_cmd(d, cmd, strlen(cmd))) != 0) {
            break;
        }
    }
    close(fd);
    if (rv == 0 && n > 0) {
        qsort(ms, (size_t)n, sizeof(*ms), cmp_double);
        printf("fresh_ms p50=%.2f p95=%.2f max=%.2f n=%d\n", ms[n / 2],
               ms[(size_t)((double)n * 0.95) < (size_t)n ? (size_t)((double)n * 0.95)
                                                         : (size_t)n - 1],
               ms[n - 1], n);
        fflush(stdout);
        rv = rebuild(d, false); /* --zone-file: what is served from now on */
    }
    free(ms);
    return rv;
}

/* ------------------------------------------------------------------ main */

static struct dnsd *g_d;

static void sig_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    if (w->signum == SIGHUP) {
        if (apply_file(g_d) == 0) {
            (void)cm_state_take_changes(g_d->st);
            rebuild(g_d, false);
        }
        return;
    }
    ev_break(loop, EVBREAK_ALL);
}

static int parse_upstreams(const char *s, struct dns_upstream *u, size_t *n)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", s);
    *n = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (*n == DNS_UPSTREAM_MAX || dns_upstream_parse(tok, &u[*n]) != 0) {
            fprintf(stderr, "dnsd: bad upstream `%s`\n", tok);
            return CM_EINVAL;
        }
        (*n)++;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"threads", required_argument, NULL, 't'},
        {"domain", required_argument, NULL, 'd'},
        {"state", required_argument, NULL, 's'},
        {"apply", required_argument, NULL, 'a'},
        {"gen", required_argument, NULL, 'g'},
        {"leader", required_argument, NULL, 'L'},
        {"forward", no_argument, NULL, 'f'},
        {"upstream", required_argument, NULL, 'u'},
        {"resolv-conf", required_argument, NULL, 'r'},
        {"udp-max", required_argument, NULL, 'm'},
        {"tcp-idle-ms", required_argument, NULL, 'i'},
        {"tcp-max-conns", required_argument, NULL, 'c'},
        {"zone-file", required_argument, NULL, 'z'},
        {"port-file", required_argument, NULL, 'p'},
        {"fresh", required_argument, NULL, 'F'},
        {"mesos-compat", no_argument, NULL, 'M'},
        {NULL, 0, NULL, 0},
    };
    struct dnsd d = {0};
    struct dns_server_config cfg = {.addr = "127.0.0.1:0", .threads = 1};
    struct dns_upstream ups[DNS_UPSTREAM_MAX];
    const char *gen_spec = NULL, *port_file = NULL;
    int fresh_n = 0, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            cfg.addr = optarg;
            break;
        case 't':
            cfg.threads = (unsigned)atoi(optarg);
            break;
        case 'd':
            d.zcfg.domain = optarg;
            break;
        case 's':
            snprintf(d.state_path, sizeof(d.state_path), "%s", optarg);
            break;
        case 'a':
            d.apply_path = optarg;
            break;
        case 'g':
            gen_spec = optarg;
            break;
        case 'L':
            d.leader = optarg;
            break;
        case 'f':
            cfg.forward = true;
            break;
        case 'u':
            if (parse_upstreams(optarg, ups, &cfg.nupstreams) != 0) {
                return 2;
            }
            cfg.upstreams = ups;
            break;
        case 'r':
            cfg.resolv_conf = optarg;
            break;
        case 'm':
            cfg.udp_max = (uint16_t)atoi(optarg);
            break;
        case 'i':
            cfg.tcp_idle_ms = (unsigned)atoi(optarg);
            break;
        case 'c':
            cfg.tcp_max_conns = (unsigned)atoi(optarg);
            break;
        case 'z':
            d.zone_file = optarg;
            break;
        case 'p':
            port_file = optarg;
            break;
        case 'F':
            fresh_n = atoi(optarg);
            break;
        case 'M':
            d.zcfg.mesos_compat = true;
            break;
        default:
            fprintf(stderr,
                    "usage: see the comment at the top of tests/integration/dnsd.c\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (d.state_path[0] == '\0') {
        char dir[] = "/tmp/dnsd-XXXXXX";
        if (mkdtemp(dir) == NULL) {
            perror("mkdtemp");
            return 1;
        }
        snprintf(d.state_path, sizeof(d.state_path), "%s/state.db", dir);
        d.tmp_state = true;
    }
    struct cm_errbuf eb = {0};
    if (cm_state_open(d.state_path, &d.st, &eb) != 0) {
        fprintf(stderr, "dnsd: %s\n", eb.msg);
        return 1;
    }
    if (dns_state_cache_new(&d.cache) != 0) {
        return 1;
    }
    double t0 = now_ms();
    if ((gen_spec != NULL && gen(&d, gen_spec) != 0) || apply_file(&d) != 0) {
        return 1;
    }
    if (gen_spec != NULL) {
        fprintf(stderr, "dnsd: generated state in %.0f ms (applied index %llu)\n",
                now_ms() - t0, (unsigned long long)cm_state_applied_index(d.st));
    }
    (void)cm_state_take_changes(d.st);
    struct ev_loop *loop = EV_DEFAULT;
    cfg.loop = loop;
    if (dns_server_new(&cfg, &d.srv, &eb) != 0) {
        fprintf(stderr, "dnsd: %s\n", eb.msg);
        return 1;
    }
    size_t nups;
    const struct dns_upstream *u = dns_server_upstreams(d.srv, &nups);
    for (size_t i = 0; i < nups; i++) {
        char a[64];
        inet_ntop(u[i].addr.family == DNS_AF_INET4 ? AF_INET : AF_INET6, u[i].addr.bytes,
                  a, sizeof(a));
        fprintf(stderr, "dnsd: upstream %s port %u\n", a, u[i].port);
    }
    if (rebuild(&d, false) != 0) {
        return 1;
    }
    g_d = &d;
    if (fresh_n > 0 && cfg.threads > 0 &&
        fresh(&d, fresh_n, dns_server_port(d.srv)) != 0) {
        return 1;
    }
    ev_signal hup, term, intr;
    ev_signal_init(&hup, sig_cb, SIGHUP);
    ev_signal_init(&term, sig_cb, SIGTERM);
    ev_signal_init(&intr, sig_cb, SIGINT);
    ev_signal_start(loop, &hup);
    ev_signal_start(loop, &term);
    ev_signal_start(loop, &intr);
    fprintf(stderr, "dnsd: serving on port %u with %u thread(s)\n",
            dns_server_port(d.srv), cfg.threads);
    if (port_file != NULL) {
        char tmp[300];
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (f == NULL) {
            perror(tmp);
            return 1;
        }
        fprintf(f, "%u\n", dns_server_port(d.srv));
        fclose(f);
        rename(tmp, port_file);
    }
    ev_run(loop, 0);
    struct dns_server_stats st;
    dns_server_stats(d.srv, &st);
    fprintf(stderr,
            "dnsd: stop: udp=%llu tcp=%llu answered=%llu dropped=%llu truncated=%llu "
            "forwarded=%llu forward_ok=%llu forward_failed=%llu\n",
            (unsigned long long)st.udp_queries, (unsigned long long)st.tcp_queries,
            (unsigned long long)st.answered, (unsigned long long)st.dropped,
            (unsigned long long)st.truncated, (unsigned long long)st.forwarded,
            (unsigned long long)st.forward_ok, (unsigned long long)st.forward_failed);
    ev_signal_stop(loop, &hup);
    ev_signal_stop(loop, &term);
    ev_signal_stop(loop, &intr);
    dns_server_free(d.srv);
    dns_state_cache_free(d.cache);
    cm_state_close(d.st);
    if (d.tmp_state) {
        char cmd[600];
        char *slash = strrchr(d.state_path, '/');
        *slash = '\0';
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d.state_path);
        if (system(cmd) != 0) {
            fprintf(stderr, "dnsd: could not remove %s\n", d.state_path);
        }
    }
    return 0;
}
