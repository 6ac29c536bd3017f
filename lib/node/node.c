/* The agent daemon: identity, data dir, raft + state.db, self-registration. */
#include <ev.h>
#include <ftw.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent/agent.h"
#include "dns/dns.h"
#include "net/http.h"
#include "node/cluster_int.h"
#include "node/node_int.h"
#include "node/vips.h"
#include "raft/raft.h"
#include "state/db.h"
#include "state/state.h"

struct cm_node {
    struct ev_loop *loop;
    struct cm_node_config c;
    struct cm_clock *clock;
    int lock_fd;
    bool temp_dir; /* --dev without --data-dir: remove at exit */
    char name[256];
    uint64_t raft_id;
    uint64_t cluster_id;
    struct cm_state *state;
    struct raft_host *raft;
    raft_id registered_leader; /* node.up proposed under this leader (0: none) */
    bool registering;          /* that proposal is in flight */
    struct cm_controller *controller;
    struct cm_cluster *cluster;
    struct cm_tls *tls; /* raft and RPC between nodes (NULL with --dev) */
    struct cm_join_server *join_server;
    char tls_dir[1100];
    char rpc_advertised[96];
    ev_timer renew_w;   /* certificate rotation check */
    ev_signal sighup_w; /* SIGHUP: renew the node certificate now */
    struct cm_agent *agent;
    struct dns_server *dns;
    struct dns_state_cache *dns_cache;
    raft_id dns_leader; /* leader the published zone was built with */
    struct cm_http_server *http;
    struct cm_api *api;
    char http_address[96];
    struct cm_vips *vips; /* NULL: --vip-mode off or not allowed here */
    ev_prepare changes_w; /* after each loop iteration: react to applied changes */
    ev_signal sigterm_w;
    ev_signal sigint_w;
};

/* ------------------------------------------------------------------ resources */

void cm_resources_detect(struct cm_resources *r, const char *data_dir)
{
    if (r->cpus <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        r->cpus = n > 0 ? (double)n : 1.0;
    }
    if (r->mem_mib <= 0) {
        FILE *f = fopen("/proc/meminfo", "r");
        unsigned long long kib = 0;
        char line[256];
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            if (sscanf(line, "MemTotal: %llu kB", &kib) == 1) {
                break;
            }
        }
        if (f != NULL) {
            fclose(f);
        }
        double mib = (double)kib / 1024.0;
        double keep = CM_MAX(256.0, mib * 0.1);
        r->mem_mib = mib > keep ? mib - keep : mib;
    }
    if (r->disk_mib <= 0) {
        struct statvfs st;
        if (statvfs(data_dir, &st) == 0) {
            r->disk_mib = (double)st.f_bavail * (double)st.f_frsize / (1024.0 * 1024.0);
        }
    }
    if (r->n_ranges == 0) {
        r->ports[0].begin = 31000;
        r->ports[0].end = 32000;
        r->n_ranges = 1;
    }
}

/* ------------------------------------------------------------------ identity */

/* Write the identity atomically (a joined node also stores the cluster's id:
 * raft refuses peers of other ids). */
static int save_identity(struct cm_node *n, struct cm_errbuf *eb)
{
    char path[1100], text[80];
    snprintf(path, sizeof(path), "%s/node-id", n->c.data_dir);
    int len = snprintf(text, sizeof(text), "id=%llx\ncluster=%llx\n",
                       (unsigned long long)n->raft_id, (unsigned long long)n->cluster_id);
    return cm_pki_write_file(path, text, (size_t)len, 0644, eb);
}

/* Read "<key>=<hex>" lines of @path into the ids; create the file with new random
 * ids when it does not exist. */
static int load_identity(struct cm_node *n, struct cm_errbuf *eb)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/node-id", n->c.data_dir);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        unsigned long long id = 0, cluster = 0;
        int got = fscanf(f, "id=%llx\ncluster=%llx\n", &id, &cluster);
        fclose(f);
        if (got != 2 || id == 0) {
            return cm_err_setf(eb, CM_ECORRUPT, "node identity `%s` is unreadable", path);
        }
        n->raft_id = id;
        n->cluster_id = cluster;
        return 0;
    }
    if (errno != ENOENT) {
        return cm_err_sys(eb, cm_errno(), "open `%s`", path);
    }
    uint64_t ids[2];
    do {
        if (cm_random_bytes(ids, sizeof(ids)) != 0) {
            return cm_err_setf(eb, CM_EIO, "no randomness for the node identity");
        }
        ids[0] &= 0x7fffffffffffffffu; /* stays positive in SQLite and JSON */
    } while (ids[0] == 0);
    n->raft_id = ids[0];
    n->cluster_id = ids[1];
    return save_identity(n, eb);
}

/* DESIGN.md §3: --advertise defaults to the first non-loopback IPv4 address
 * (the bind address when there is none, or when bound to one address). */
static void detect_advertise(struct cm_node *n)
{
    if (strcmp(n->c.bind, "0.0.0.0") != 0 && strcmp(n->c.bind, "::") != 0) {
        snprintf(n->c.advertise, sizeof(n->c.advertise), "%s", n->c.bind);
        return;
    }
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) == 0) {
        for (struct ifaddrs *i = ifs; i != NULL; i = i->ifa_next) {
            if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET) {
                continue;
            }
            const struct in_addr *a =
                &((const struct sockaddr_in *)i->ifa_addr)->sin_addr;
            if ((ntohl(a->s_addr) >> 24) == 127) {
                continue;
            }
            inet_ntop(AF_INET, a, n->c.advertise, sizeof(n->c.advertise));
            break;
        }
        freeifaddrs(ifs);
    }
    if (n->c.advertise[0] == '\0') {
        snprintf(n->c.advertise, sizeof(n->c.advertise), "127.0.0.1");
    }
    cm_info("node", "advertising %s (first non-loopback IPv4; --advertise to choose)",
            n->c.advertise);
}

/* Between nodes everything is mTLS (DESIGN.md §11): bootstrap the CA on the
 * first server, join with the token on a new node, or use the stored
 * certificate on a member; then the TLS context for raft and RPC. */
static int secure_start(struct cm_node *n, struct cm_errbuf *eb)
{
    snprintf(n->tls_dir, sizeof(n->tls_dir), "%s/tls", n->c.data_dir);
    char node_pem[1200];
    snprintf(node_pem, sizeof(node_pem), "%s/node.pem", n->tls_dir);
    struct stat st;
    int rv;
    if (stat(node_pem, &st) != 0) {
        if (n->c.n_join == 0) {
            rv = cm_join_bootstrap(n->tls_dir, n->cluster_id, n->name, n->rpc_advertised,
                                   eb);
        } else {
            struct cm_join_client jc = {
                .tls_dir = n->tls_dir,
                .token = n->c.token,
                .name = n->name,
                .raft_id = n->raft_id,
                .address = n->rpc_advertised,
                .n_join = n->c.n_join,
                .join = (const char(*)[128])n->c.join,
            };
            struct cm_join_result jr = {0};
            cm_info("join", "joining through %s", n->c.join[0]);
            rv = cm_join_run(&jc, &jr, eb);
            if (rv == 0) {
                n->cluster_id = jr.cluster_id;
                rv = save_identity(n, eb);
            }
            rv = rv ? rv : cm_join_peers_save(n->c.data_dir, &jr, eb);
            rv = rv ? rv : cm_join_finish(&jr, eb);
            cm_free(&jr.cert);
        }
        if (rv != 0) {
            return rv;
        }
    }
    struct cm_join_token tok;
    struct cm_errbuf teb;
    if (cm_join_token_load(n->tls_dir, &tok, &teb) == 0) {
        char text[CM_JOIN_TOKEN_MAX + 1];
        cm_join_token_format(&tok, text, sizeof(text));
        cm_info("cluster", "join token: %s", text);
    }
    char ca[1200], key[1200];
    snprintf(ca, sizeof(ca), "%s/ca.pem", n->tls_dir);
    snprintf(key, sizeof(key), "%s/node.key", n->tls_dir);
    /* Clients without a certificate are let through the handshake so that a
     * joining node can send its JOIN; node_authorize() refuses them raft. */
    struct cm_tls_options to = {
        .ca_file = ca,
        .cert_file = node_pem,
        .key_file = key,
        .require_peer_cert = false,
    };
    rv = cm_tls_new(&to, &n->tls, eb);
    return rv != 0 ? cm_err_wrapf(eb, "TLS between nodes") : 0;
}

/* Raft and RPC only from a peer whose certificate our CA signed. */
static int node_authorize(void *data, const struct cm_stream *s, raft_id id)
{
    (void)data;
    (void)id;
    return cm_stream_is_tls(s) && cm_tls_stream_peer(s, NULL, 0) ? 0 : CM_EACCES;
}

static void node_join(void *data, struct cm_stream *s, const void *body, size_t len)
{
    struct cm_node *n = data;
    if (n->join_server == NULL) {
        cm_stream_close(s);
        return;
    }
    cm_join_server_accept(n->join_server, s, body, len);
}

static void renew(struct cm_node *n, bool force)
{
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    if (cm_join_renew(n->tls_dir, n->name, n->rpc_advertised, n->tls, force,
                      cm_clock_real_ms(n->clock) / 1000, &eb) < 0) {
        cm_warn("cluster", "%s", eb.msg);
    }
}

static void renew_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    renew(cm_container_of(w, struct cm_node, renew_w), false);
}

static void sighup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    cm_info("cluster", "SIGHUP: renewing the node certificate");
    renew(cm_container_of(w, struct cm_node, sighup_w), true);
}

/* ------------------------------------------------------------------ state machine */

static int fsm_apply(void *data, raft_index index, uint8_t type, const void *buf,
                     size_t len)
{
    struct cm_node *n = data;
    struct cm_errbuf eb;
    int rv = type == RAFT_COMMAND ? cm_state_apply(n->state, index, buf, len, &eb)
                                  : cm_state_apply_noop(n->state, index, &eb);
    if (rv != 0) {
        cm_error("node", "%s", eb.msg);
    }
    return rv;
}

static int fsm_snapshot(void *data, const char *path, struct cm_errbuf *eb)
{
    return cm_state_snapshot(((struct cm_node *)data)->state, path, eb);
}

static int fsm_restore(void *data, const char *path, raft_index index,
                       struct cm_errbuf *eb)
{
    struct cm_node *n = data;
    int rv = cm_state_restore(n->state, path, eb);
    if (rv == 0 && cm_state_applied_index(n->state) != index) {
        cm_warn("node", "snapshot at %llu holds applied index %llu",
                (unsigned long long)index,
                (unsigned long long)cm_state_applied_index(n->state));
    }
    return rv;
}

static raft_index fsm_applied(void *data)
{
    return cm_state_applied_index(((struct cm_node *)data)->state);
}

/* ------------------------------------------------------------------ proposing */

/* Validate @cmd against the local replica and propose it; a follower forwards
 * it to the leader (cluster.c). */
static int node_propose(void *data, const char *cmd, size_t len, cm_api_done_fn done,
                        void *arg, struct cm_errbuf *eb)
{
    struct cm_node *n = data;
    return cm_cluster_propose(n->cluster, cmd, len, done, arg, eb);
}

static int64_t node_now_ms(void *data)
{
    return cm_clock_real_ms(((struct cm_node *)data)->clock);
}

static void report_done(void *arg, int status, uint64_t index, const char *msg)
{
    (void)arg;
    (void)index;
    (void)msg;
    /* The agent resends what the replica does not show after a while. */
    if (status != 0 && status != CM_ENOTLEADER) {
        cm_debug("node", "task report: %s", cm_strerror(status));
    }
}

static int agent_report(void *data, const char *cmd, size_t len)
{
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    int rv = node_propose(data, cmd, len, report_done, NULL, &eb);
    if (rv != 0 && rv != CM_ENOTLEADER) {
        cm_warn("node", "task report refused: %s", eb.msg);
    }
    return rv;
}

static void agent_sync(struct cm_node *n)
{
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    if (cm_agent_sync(n->agent, &eb) != 0) {
        cm_warn("agent", "%s", eb.msg);
    }
}

/* Build the DNS zone from the replica and publish it to the server threads
 * (DESIGN.md §8: answers change at commit time, nothing polls). */
static void dns_publish(struct cm_node *n)
{
    const struct raft *r = raft_host_core(n->raft);
    raft_id leader = raft_leader(r);
    struct dns_addr leader_addr;
    bool have_addr = false;
    const struct raft_server *sv =
        leader != 0 ? raft_config_get(raft_config_current(r), leader) : NULL;
    if (sv != NULL) {
        char host[RAFT_ADDRESS_MAX];
        uint16_t port;
        have_addr = cm_parse_hostport(sv->address, host, sizeof(host), &port) == 0 &&
                    dns_addr_parse(host, &leader_addr) == 0;
    }
    struct dns_zone_config zc = {
        .domain = n->c.domain,
        .serial = (uint32_t)cm_state_applied_index(n->state),
        .mesos_compat = strcmp(n->c.dns_compat, "mesos") == 0,
    };
    struct dns_state_info info = {
        .leader = leader == n->raft_id ? n->name : NULL,
        .leader_addr = have_addr ? &leader_addr : NULL,
        .cache = n->dns_cache,
    };
    struct dns_zone *z = NULL;
    int rv = dns_zone_from_state(n->state, &zc, &info, &z, NULL);
    if (rv != 0) {
        cm_warn("dns", "zone not rebuilt: %s", cm_strerror(rv));
        return;
    }
    dns_server_publish(n->dns, z);
    n->dns_leader = leader;
}

static int start_dns(struct cm_node *n, struct cm_errbuf *eb)
{
    struct dns_upstream ups[DNS_UPSTREAM_MAX];
    size_t n_ups = 0;
    if (n->c.dns_upstream[0] != '\0') {
        char list[sizeof(n->c.dns_upstream)];
        snprintf(list, sizeof(list), "%s", n->c.dns_upstream);
        char *save = NULL;
        for (char *tok = strtok_r(list, ",", &save); tok != NULL;
             tok = strtok_r(NULL, ",", &save)) {
            if (n_ups == DNS_UPSTREAM_MAX || dns_upstream_parse(tok, &ups[n_ups]) != 0) {
                return cm_err_setf(eb, CM_EINVAL, "--dns-upstream: bad resolver '%s'",
                                   tok);
            }
            n_ups++;
        }
    }
    struct dns_server_config sc = {
        .addr = n->c.dns_addr,
        .threads = 1, /* its own thread and loop (DESIGN.md §3) */
        .forward = true,
        .upstreams = n_ups > 0 ? ups : NULL,
        .nupstreams = n_ups,
    };
    int rv = dns_state_cache_new(&n->dns_cache);
    if (rv != 0) {
        return cm_err_setf(eb, rv, "dns: %s", cm_strerror(rv));
    }
    rv = dns_server_new(&sc, &n->dns, eb);
    if (rv != 0) {
        return cm_err_wrapf(eb, "DNS on %s", n->c.dns_addr);
    }
    size_t used = 0;
    (void)dns_server_upstreams(n->dns, &used);
    if (used == 0) {
        cm_warn("dns", "no upstream resolver: names outside .%s get REFUSED",
                n->c.domain);
    }
    dns_publish(n);
    cm_info("node", "DNS for .%s on %s", n->c.domain, n->c.dns_addr);
    return 0;
}

/* Once per loop iteration, after the commands of the iteration were applied:
 * tell whoever depends on the replica (DESIGN.md §1: nothing polls). */
static void register_self(struct cm_node *n);

static void changes_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    struct cm_node *n = cm_container_of(w, struct cm_node, changes_w);
    cm_cluster_applied(n->cluster);
    /* Register (node.up) under each new leader, on every node. */
    raft_id leader = raft_leader(raft_host_core(n->raft));
    if (leader != 0 && leader != n->registered_leader && !n->registering) {
        register_self(n);
    }
    unsigned changes = cm_state_take_changes(n->state);
    cm_api_publish_events(n->api); /* /v2/events: what this batch recorded */
    bool leader_moved = raft_leader(raft_host_core(n->raft)) != n->dns_leader;
    if (changes != 0 || leader_moved) {
        dns_publish(n);
    }
    if (changes == 0) {
        return;
    }
    cm_vips_update(n->vips, n->state);
    cm_controller_kick(n->controller);
    if (changes & CM_STATE_CHANGED_TASKS) {
        agent_sync(n);
    }
}

/* ------------------------------------------------------------------ API ops */

static struct cm_state *api_state(void *data)
{
    return ((struct cm_node *)data)->state;
}

/* The leader's HTTP address: as its heartbeats report it, else its raft
 * address's host with our HTTP port (nodes usually share the port). */
static bool api_leader(void *data, char *buf, size_t cap)
{
    struct cm_node *n = data;
    const struct raft *r = raft_host_core(n->raft);
    raft_id id = raft_leader(r);
    if (id == 0) {
        return false;
    }
    if (id == n->raft_id) {
        snprintf(buf, cap, "%s", n->http_address);
        return true;
    }
    if (cm_cluster_http_of(n->cluster, id, buf, cap)) {
        return true;
    }
    const struct raft_server *sv = raft_config_get(raft_config_current(r), id);
    if (sv == NULL) {
        return false;
    }
    char host[RAFT_ADDRESS_MAX];
    uint16_t port;
    if (cm_parse_hostport(sv->address, host, sizeof(host), &port) != 0) {
        return false;
    }
    snprintf(buf, cap, strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u", host,
             n->c.http_port);
    return true;
}

static const char *api_node_name(void *data)
{
    return ((struct cm_node *)data)->name;
}

static const char *api_http_address(void *data)
{
    return ((struct cm_node *)data)->http_address;
}

static int api_task_log(void *data, const char *task_id, const char *stream,
                        int64_t offset, size_t max, struct cm_buf *out, int64_t *ret_next)
{
    struct cm_node *n = data;
    enum cm_agent_stream st;
    if (strcmp(stream, "stdout") == 0) {
        st = CM_AGENT_STDOUT;
    } else if (strcmp(stream, "stderr") == 0) {
        st = CM_AGENT_STDERR;
    } else {
        return CM_EINVAL;
    }
    size_t before = out->len;
    uint64_t pos = 0;
    int rv;
    if (offset >= 0) {
        rv = cm_agent_log_read(n->agent, task_id, st, (uint64_t)offset, max, out, &pos);
    } else {
        size_t tail = (size_t)(-offset) < max ? (size_t)(-offset) : max;
        rv = cm_agent_log_tail(n->agent, task_id, st, tail, out, &pos, NULL);
    }
    if (rv == CM_ENOENT) {
        return CM_ENOTFOUND;
    }
    if (rv == 0) {
        *ret_next = (int64_t)(pos + (out->len - before));
    }
    return rv;
}

static bool api_queue_reason(void *data, const char *app, char *buf, size_t cap)
{
    return cm_controller_waiting(((struct cm_node *)data)->controller, app, buf, cap);
}

static int64_t api_node_heard_ms(void *data, const char *node)
{
    return cm_controller_last_heard(((struct cm_node *)data)->controller, node);
}

static void api_metrics(void *data, struct cm_buf *out)
{
    struct cm_node *n = data;
    const struct raft *r = raft_host_core(n->raft);
    cm_buf_printf(out,
                  "# TYPE clusterctl_raft_term gauge\nclusterctl_raft_term %llu\n"
                  "# TYPE clusterctl_raft_leader gauge\nclusterctl_raft_leader %d\n"
                  "# TYPE clusterctl_raft_commit_index gauge\n"
                  "clusterctl_raft_commit_index %llu\n"
                  "# TYPE clusterctl_state_applied_index gauge\n"
                  "clusterctl_state_applied_index %llu\n",
                  (unsigned long long)raft_current_term(r),
                  raft_role(r) == RAFT_LEADER ? 1 : 0,
                  (unsigned long long)raft_commit_index(r),
                  (unsigned long long)cm_state_applied_index(n->state));
    cm_cluster_metrics(n->cluster, out);
    cm_vips_metrics(n->vips, out);
}

static int api_vips(void *data, struct cm_buf *out)
{
    struct cm_node *n = data;
    return cm_vips_json(n->vips, n->state, n->name, out);
}

static int api_read_barrier(void *data, cm_api_done_fn done, void *arg)
{
    return cm_cluster_read_barrier(((struct cm_node *)data)->cluster, done, arg);
}

static int api_members(void *data, struct cm_buf *out)
{
    return cm_cluster_members_json(((struct cm_node *)data)->cluster, out);
}

static int start_api(struct cm_node *n, struct cm_errbuf *eb)
{
    struct cm_http_server_options so = {.server_name = "clusterctl"};
    int rv = cm_http_server_new(n->loop, &so, &n->http);
    if (rv != 0) {
        return cm_err_setf(eb, rv, "http server: %s", cm_strerror(rv));
    }
    char listen[96];
    snprintf(listen, sizeof(listen), strchr(n->c.bind, ':') != NULL ? "[%s]:%u" : "%s:%u",
             n->c.bind, n->c.http_port);
    rv = cm_http_server_listen(n->http, listen, eb);
    if (rv != 0) {
        return cm_err_wrapf(eb, "API on %s", listen);
    }
    snprintf(n->http_address, sizeof(n->http_address),
             strchr(n->c.advertise, ':') != NULL ? "[%s]:%u" : "%s:%u", n->c.advertise,
             cm_http_server_port(n->http));
    struct cm_api_ops ops = {
        .data = n,
        .loop = n->loop,
        .state = api_state,
        .propose = node_propose,
        .now_ms = node_now_ms,
        .leader = api_leader,
        .node_name = api_node_name,
        .http_address = api_http_address,
        .task_log = api_task_log,
        .queue_reason = api_queue_reason,
        .metrics = api_metrics,
        .read_barrier = api_read_barrier,
        .members = api_members,
        .vips = api_vips,
        .node_heard_ms = api_node_heard_ms,
        /* What this node honours beyond the base app (lib/node/vips.c reads them). */
        .features = CM_APP_FEAT_LEGACY_VIP,
    };
    rv = cm_api_start(n->http, &ops, &n->api);
    if (rv != 0) {
        return cm_err_setf(eb, rv, "API routes: %s", cm_strerror(rv));
    }
    cm_cluster_set_http(n->cluster, n->http_address);
    cm_info("node", "API on http://%s", n->http_address);
    return 0;
}

/* ------------------------------------------------------------------ registration */

static void registered(void *data, int status, uint64_t index, const char *msg)
{
    (void)msg;
    struct cm_node *n = data;
    n->registering = false;
    if (status != 0) {
        n->registered_leader = 0; /* try again */
        cm_warn("node", "registering node %s: %s", n->name, cm_strerror(status));
        return;
    }
    cm_info("node", "node %s registered at index %llu", n->name,
            (unsigned long long)index);
}

/* Propose node.up for this node under the current leader (through it when
 * this node follows). */
static void register_self(struct cm_node *n)
{
    cJSON *cmd = cJSON_CreateObject();
    cJSON *node = cJSON_AddObjectToObject(cmd, "node");
    cJSON *attrs = cJSON_AddObjectToObject(node, "attrs");
    cJSON *res = cJSON_AddObjectToObject(node, "resources");
    char *text = NULL;
    if (cmd == NULL || node == NULL || attrs == NULL || res == NULL) {
        goto out;
    }
    cJSON_AddStringToObject(cmd, "type", "node.up");
    cJSON_AddNumberToObject(cmd, "at", (double)cm_clock_real_ms(n->clock));
    cJSON_AddStringToObject(node, "id", n->name);
    cJSON_AddStringToObject(node, "address", n->c.advertise);
    for (unsigned i = 0; i < n->c.n_attrs; i++) {
        cJSON_AddStringToObject(attrs, n->c.attrs[i].key, n->c.attrs[i].value);
    }
    cJSON_AddNumberToObject(res, "cpus", n->c.resources.cpus);
    cJSON_AddNumberToObject(res, "mem", n->c.resources.mem_mib);
    cJSON_AddNumberToObject(res, "disk", n->c.resources.disk_mib);
    cJSON *ranges = cJSON_AddArrayToObject(res, "ports");
    for (unsigned i = 0; ranges != NULL && i < n->c.resources.n_ranges; i++) {
        cJSON *r = cJSON_CreateArray();
        cJSON_AddItemToArray(r, cJSON_CreateNumber(n->c.resources.ports[i].begin));
        cJSON_AddItemToArray(r, cJSON_CreateNumber(n->c.resources.ports[i].end));
        cJSON_AddItemToArray(ranges, r);
    }
    text = cJSON_PrintUnformatted(cmd);
    if (text == NULL) {
        goto out;
    }
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    n->registered_leader = raft_leader(raft_host_core(n->raft));
    int rv = cm_cluster_propose(n->cluster, text, strlen(text), registered, n, &eb);
    if (rv == 0) {
        n->registering = true;
    } else if (rv == CM_ENOTLEADER) {
        n->registered_leader = 0;
    } else {
        cm_error("node", "own registration is refused: %s", eb.msg);
    }
out:
    cJSON_free(text);
    cJSON_Delete(cmd);
}

static void on_raft_change(void *data, enum raft_role role, raft_term term,
                           raft_id leader)
{
    struct cm_node *n = data;
    static const char *const names[] = {"follower", "precandidate", "candidate",
                                        "leader"};
    cm_info("raft", "%s term=%llu leader=%llx", names[role], (unsigned long long)term,
            (unsigned long long)leader);
    cm_cluster_on_change(n->cluster, role == RAFT_LEADER);
    cm_controller_set_leader(n->controller, role == RAFT_LEADER);
}

static void node_rpc(void *data, raft_id from, const void *body, size_t len)
{
    cm_cluster_rpc(((struct cm_node *)data)->cluster, from, body, len);
}

static void on_raft_fatal(void *data, const struct cm_errbuf *eb)
{
    struct cm_node *n = data;
    cm_error("raft", "stopping: %s", eb->msg);
    ev_break(n->loop, EVBREAK_ALL);
}

/* ------------------------------------------------------------------ life cycle */

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int cm_node_start(struct ev_loop *loop, const struct cm_node_config *c,
                  struct cm_node **ret, struct cm_errbuf *eb)
{
    int rv;
    struct cm_node *n = cm_calloc(1, sizeof(*n));
    if (n == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "node: out of memory");
    }
    n->loop = loop;
    n->c = *c;
    n->clock = cm_clock_system();
    n->lock_fd = -1;

    if (n->c.dev && !n->c.data_dir_given) {
        snprintf(n->c.data_dir, sizeof(n->c.data_dir), "/tmp/clusterctl-dev-XXXXXX");
        if (mkdtemp(n->c.data_dir) == NULL) {
            rv = cm_err_sys(eb, cm_errno(), "create a temporary data dir");
            goto err_after_alloc;
        }
        n->temp_dir = true;
    }
    rv = cm_node_lock_data_dir(n->c.data_dir, &n->lock_fd, eb);
    if (rv != 0) {
        goto err_after_dir;
    }
    if (n->c.name[0] != '\0') {
        snprintf(n->name, sizeof(n->name), "%s", n->c.name);
    } else if (gethostname(n->name, sizeof(n->name)) != 0 || n->name[0] == '\0') {
        snprintf(n->name, sizeof(n->name), "localhost");
    }
    if (n->c.advertise[0] == '\0') {
        detect_advertise(n);
    }
    cm_resources_detect(&n->c.resources, n->c.data_dir);
    rv = load_identity(n, eb);
    if (rv != 0) {
        goto err_after_lock;
    }

    char path[1100];
    snprintf(path, sizeof(path), "%s/state.db", n->c.data_dir);
    rv = cm_state_open(path, &n->state, eb);
    if (rv != 0) {
        goto err_after_lock;
    }

    char raft_dir[1100];
    snprintf(raft_dir, sizeof(raft_dir), "%s/raft", n->c.data_dir);
    if (mkdir(raft_dir, 0700) != 0 && errno != EEXIST) {
        rv = cm_err_sys(eb, cm_errno(), "create `%s`", raft_dir);
        goto err_after_state;
    }
    char rpc[96];
    snprintf(rpc, sizeof(rpc), "%s:%u", n->c.bind, n->c.rpc_port);
    char advertised[96];
    snprintf(advertised, sizeof(advertised),
             strchr(n->c.advertise, ':') != NULL ? "[%s]:%u" : "%s:%u", n->c.advertise,
             n->c.rpc_port);
    snprintf(n->rpc_advertised, sizeof(n->rpc_advertised), "%s", advertised);
    struct raft_server peers[CM_JOIN_MAX_MEMBERS];
    unsigned n_peers = 0;
    if (!n->c.dev) {
        rv = secure_start(n, eb);
        if (rv != 0) {
            goto err_after_state;
        }
        n_peers = cm_join_peers_load(n->c.data_dir, peers, CM_ARRAY_SIZE(peers));
    }
    struct raft_config boot = {0};
    if (n->c.n_join == 0) {
        rv = raft_config_add(&boot, n->raft_id, advertised, RAFT_VOTER);
        if (rv != 0) {
            cm_err_setf(eb, rv, "raft configuration: %s", cm_strerror(rv));
            goto err_after_state;
        }
    }
    struct raft_host_options ho = {0};
    ho.id = n->raft_id;
    ho.cluster_id = n->cluster_id;
    ho.data_dir = raft_dir;
    ho.bind_address = rpc;
    ho.bootstrap = n->c.n_join == 0 ? &boot : NULL;
    raft_options_default(&ho.raft);
    uint64_t seed;
    cm_random_bytes(&seed, sizeof(seed));
    ho.raft.seed = seed;
    ho.fsm = (struct raft_fsm){n, fsm_apply, fsm_snapshot, fsm_restore, fsm_applied};
    ho.on_change = on_raft_change;
    ho.rpc = node_rpc;
    ho.peers = peers;
    ho.n_peers = n_peers;
    if (n->tls != NULL) {
        ho.wrap = cm_tls_wrap;
        ho.wrap_data = n->tls;
        ho.authorize = node_authorize;
        ho.join = node_join;
    }
    ho.on_fatal = on_raft_fatal;
    ho.data = n;
    struct cm_node_ctl_ops co = {
        .data = n,
        .state = n->state,
        .propose = node_propose,
        .now_ms = node_now_ms,
        .self = n->name,
        .vip_cidr = n->c.vip_cidr,
    };
    rv = cm_controller_new(loop, &co, &n->controller);
    if (rv != 0) {
        raft_config_close(&boot);
        cm_err_setf(eb, rv, "controller: %s", cm_strerror(rv));
        goto err_after_state;
    }
    struct cm_cluster_options clo = {
        .loop = loop,
        .state = n->state,
        .clock = n->clock,
        .controller = n->controller,
        .name = n->name,
        .raft_id = n->raft_id,
        .voters = n->c.voters,
    };
    rv = cm_cluster_new(&clo, &n->cluster);
    if (rv == 0 && n->tls != NULL) {
        rv = cm_join_server_new(loop, n->cluster, n->tls_dir, n->cluster_id,
                                &n->join_server);
    }
    if (rv != 0) {
        raft_config_close(&boot);
        cm_err_setf(eb, rv, "cluster: %s", cm_strerror(rv));
        cm_cluster_free(n->cluster);
        cm_controller_free(n->controller);
        goto err_after_state;
    }
    char tasks_dir[1100];
    snprintf(tasks_dir, sizeof(tasks_dir), "%s/tasks", n->c.data_dir);
    struct cm_agent_opts ao = {
        .node = n->name,
        .tasks_dir = tasks_dir,
        /* Each task's init is a fork of the agent, not a re-exec of the binary:
         * a re-exec pays the dynamic loader inside the task's cgroup, where a
         * small CPU quota (cpus 0.01 = 1 ms per 100 ms) made it take 100+ ms. */
        .init_path = NULL,
        .host = n->c.advertise,
        .state = n->state,
        .report = agent_report,
        .report_data = n,
        .clock = n->clock,
        .cgroup_parent = n->c.cgroup_parent[0] != '\0' ? n->c.cgroup_parent : NULL,
    };
    rv = cm_agent_new(loop, &ao, &n->agent, eb);
    if (rv != 0) {
        raft_config_close(&boot);
        cm_err_wrapf(eb, "executor");
        goto err_after_controller;
    }
    rv = raft_host_start(loop, &ho, &n->raft, eb);
    raft_config_close(&boot);
    if (rv != 0) {
        goto err_after_agent;
    }
    cm_cluster_set_raft(n->cluster, n->raft);
    /* Re-adopt what runs here and report what died while we were down. */
    agent_sync(n);
    ev_prepare_init(&n->changes_w, changes_cb);
    ev_prepare_start(loop, &n->changes_w);
    rv = start_api(n, eb);
    if (rv == 0) {
        rv = start_dns(n, eb);
    }
    if (rv == 0) {
        rv = cm_vips_start(loop, n->c.vip_mode, n->c.vip_proxy_threads, &n->vips, eb);
        cm_vips_update(n->vips, n->state);
    }
    if (rv != 0) {
        goto err_after_raft;
    }
    if (n->tls != NULL) {
        renew(n, false);
        ev_timer_init(&n->renew_w, renew_cb, 3600., 3600.);
        ev_timer_start(loop, &n->renew_w);
    }
    cm_info("node", "node %s (raft id %llx) data dir %s, rpc %s", n->name,
            (unsigned long long)n->raft_id, n->c.data_dir, rpc);
    *ret = n;
    return 0;

err_after_raft:
    ev_prepare_stop(loop, &n->changes_w);
    cm_vips_free(n->vips);
    dns_server_free(n->dns);
    dns_state_cache_free(n->dns_cache);
    cm_api_free(n->api);
    cm_http_server_free(n->http);
    raft_host_close(n->raft);
    cm_cluster_set_raft(n->cluster, NULL);
err_after_agent:
    cm_agent_free(n->agent);
err_after_controller:
    cm_cluster_free(n->cluster);
    cm_join_server_free(n->join_server);
    cm_controller_free(n->controller);
err_after_state:
    cm_tls_free(n->tls);
    cm_state_close(n->state);
err_after_lock:
    close(n->lock_fd);
err_after_dir:
    if (n->temp_dir) {
        nftw(n->c.data_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
err_after_alloc:
    cm_free(&n);
    return rv;
}

void cm_node_free(struct cm_node *n)
{
    if (n == NULL) {
        return;
    }
    ev_prepare_stop(n->loop, &n->changes_w);
    cm_vips_free(n->vips); /* removes the nft table and the VIP addresses */
    dns_server_free(n->dns);
    dns_state_cache_free(n->dns_cache);
    cm_api_free(n->api);
    cm_http_server_free(n->http);
    raft_host_close(n->raft);
    cm_cluster_set_raft(n->cluster, NULL);
    cm_cluster_free(n->cluster);
    cm_join_server_free(n->join_server);
    if (n->tls != NULL) {
        ev_timer_stop(n->loop, &n->renew_w);
    }
    cm_tls_free(n->tls);
    cm_agent_free(n->agent);
    cm_controller_free(n->controller);
    cm_state_close(n->state);
    if (n->temp_dir) {
        nftw(n->c.data_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    if (n->lock_fd >= 0) {
        close(n->lock_fd);
    }
    cm_free(&n);
}

const char *cm_node_name(const struct cm_node *n)
{
    return n->name;
}

uint64_t cm_node_raft_id(const struct cm_node *n)
{
    return n->raft_id;
}

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    cm_info("node", "signal %d: stopping", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

int cm_node_run(const struct cm_node_config *c)
{
    signal(SIGPIPE, SIG_IGN);
    cm_log_set_level(c->log_level);
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    if (loop == NULL) {
        cm_error("node", "cannot create the event loop");
        return 1;
    }
    struct cm_node *n = NULL;
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    int rv = cm_node_start(loop, c, &n, &eb);
    if (rv != 0) {
        cm_error("node", "%s", eb.msg);
        return 1;
    }
    ev_signal_init(&n->sigterm_w, stop_cb, SIGTERM);
    ev_signal_start(loop, &n->sigterm_w);
    ev_signal_init(&n->sigint_w, stop_cb, SIGINT);
    ev_signal_start(loop, &n->sigint_w);
    ev_signal_init(&n->sighup_w, sighup_cb, SIGHUP);
    if (n->tls != NULL) {
        ev_signal_start(loop, &n->sighup_w);
    }
    ev_run(loop, 0);
    ev_signal_stop(loop, &n->sigterm_w);
    ev_signal_stop(loop, &n->sigint_w);
    ev_signal_stop(loop, &n->sighup_w);
    cm_node_free(n);
    cm_info("node", "stopped");
    return 0;
}
