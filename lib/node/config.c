/* The agent's command line (DESIGN.md §3): defaults, parsing, validation. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb/lb.h"
#include "node/node.h"

void cm_node_config_default(struct cm_node_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->data_dir, sizeof(c->data_dir), "/var/lib/clusterctl");
    snprintf(c->bind, sizeof(c->bind), "0.0.0.0");
    c->rpc_port = 7071;
    c->http_port = 7070;
    snprintf(c->dns_addr, sizeof(c->dns_addr), "0.0.0.0:53");
    snprintf(c->domain, sizeof(c->domain), "cluster");
    snprintf(c->vip_cidr, sizeof(c->vip_cidr), "198.18.0.0/15");
    snprintf(c->vip_mode, sizeof(c->vip_mode), "auto");
    c->voters = 3;
    c->log_level = CM_LOG_INFO;
}

void cm_node_usage(void *out)
{
    fprintf((FILE *)out,
            "usage: clusterctl agent [options]\n"
            "\n"
            "Run the node daemon: raft member, executor, DNS, load balancer and API.\n"
            "\n"
            "  --name NAME          node name (default: the host name)\n"
            "  --data-dir DIR       raft.db, state.db, tls/, tasks/ (default "
            "/var/lib/clusterctl)\n"
            "  --bind ADDR          listen address for RPC and API (default 0.0.0.0)\n"
            "  --advertise ADDR     address other nodes use (default: first "
            "non-loopback IPv4)\n"
            "  --rpc-port PORT      raft and node RPC (default 7071)\n"
            "  --http-port PORT     REST API and UI (default 7070)\n"
            "  --dns-addr H:P       DNS server, UDP and TCP (default 0.0.0.0:53)\n"
            "  --domain NAME        DNS zone (default cluster)\n"
            "  --dns-compat mesos   also answer Mesos-DNS names\n"
            "  --dns-upstream H:P,.. resolvers for other names (default: "
            "/etc/resolv.conf)\n"
            "  --vip-cidr CIDR      virtual IP range (default 198.18.0.0/15)\n"
            "  --vip-mode MODE      auto, nat, proxy or off (default auto: nat when "
            "nftables works)\n"
            "  --vip-proxy-threads N threads of the VIP proxy (default: CPUs, at most "
            "8)\n"
            "  --join H:P,...       existing members to join\n"
            "  --token T            join token printed by the first server\n"
            "  --voters N           desired voter count (default 3)\n"
            "  --attr K=V           node attribute for constraints (repeatable)\n"
            "  --resources SPEC     cpus=..,mem=..,disk=..,ports=[31000-32000] "
            "(default: detected)\n"
            "  --dev                single node: plaintext on 127.0.0.1, DNS on "
            "127.0.0.1:8600,\n"
            "                       data in a temporary dir unless --data-dir is "
            "given\n"
            "  --log-level LEVEL    debug, info, warn, error (default info)\n"
            "  --cgroup-parent P    cgroup directory of the tasks (default clusterctl;\n"
            "                       one each for nodes sharing a host in tests)\n"
            "  -h, --help           this text\n");
}

/* Copy @src into a fixed field, failing when it does not fit. */
static int set_str(char *dst, size_t cap, const char *src, const char *flag,
                   struct cm_errbuf *eb)
{
    size_t n = strlen(src);
    if (n == 0) {
        return cm_err_setf(eb, CM_EINVAL, "%s: empty value", flag);
    }
    if (n >= cap) {
        return cm_err_setf(eb, CM_EINVAL, "%s: value longer than %zu characters", flag,
                           cap - 1);
    }
    memcpy(dst, src, n + 1);
    return 0;
}

static int set_port(uint16_t *dst, const char *src, const char *flag,
                    struct cm_errbuf *eb)
{
    int64_t v;
    if (cm_parse_i64(src, 1, 65535, &v) != 0) {
        return cm_err_setf(eb, CM_EINVAL, "%s: '%s' is not a port (1-65535)", flag, src);
    }
    *dst = (uint16_t)v;
    return 0;
}

static int parse_number(const char *s, size_t len, double *ret)
{
    char tmp[64];
    if (len == 0 || len >= sizeof(tmp)) {
        return CM_EINVAL;
    }
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    char *end;
    double v = strtod(tmp, &end);
    if (*end != '\0' || !isfinite(v) || v < 0) {
        return CM_EINVAL;
    }
    *ret = v;
    return 0;
}

/* "[31000-32000,33000-33100]" or "31000-32000". */
static int parse_ranges(const char *s, size_t len, struct cm_resources *r,
                        struct cm_errbuf *eb)
{
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s++;
        len -= 2;
    }
    unsigned n = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != ',') {
            j++;
        }
        if (n == CM_NODE_MAX_RANGES) {
            return cm_err_setf(eb, CM_EINVAL, "--resources: ports: more than %d ranges",
                               CM_NODE_MAX_RANGES);
        }
        char tmp[32];
        if (j - i >= sizeof(tmp) || j == i) {
            return cm_err_setf(eb, CM_EINVAL, "--resources: ports: bad range");
        }
        memcpy(tmp, s + i, j - i);
        tmp[j - i] = '\0';
        char *dash = strchr(tmp, '-');
        int64_t b, e;
        if (dash != NULL) {
            *dash = '\0';
        }
        if (cm_parse_i64(tmp, 1, 65535, &b) != 0 ||
            cm_parse_i64(dash != NULL ? dash + 1 : tmp, 1, 65535, &e) != 0 || e < b) {
            return cm_err_setf(eb, CM_EINVAL,
                               "--resources: ports: '%.*s' is not a range like "
                               "31000-32000",
                               (int)(j - i), s + i);
        }
        for (unsigned k = 0; k < n; k++) {
            if (b <= r->ports[k].end && e >= r->ports[k].begin) {
                return cm_err_setf(eb, CM_EINVAL, "--resources: ports: ranges overlap");
            }
        }
        r->ports[n].begin = (uint16_t)b;
        r->ports[n].end = (uint16_t)e;
        n++;
        i = j + 1;
    }
    if (n == 0) {
        return cm_err_setf(eb, CM_EINVAL, "--resources: ports: no range given");
    }
    r->n_ranges = n;
    return 0;
}

int cm_resources_parse(const char *s, struct cm_resources *r, struct cm_errbuf *eb)
{
    struct cm_resources out = *r;
    const char *p = s;
    while (*p != '\0') {
        const char *eq = strchr(p, '=');
        if (eq == NULL) {
            return cm_err_setf(eb, CM_EINVAL, "--resources: '%s' is not key=value", p);
        }
        /* A value runs to the next comma, except inside [...]. */
        const char *v = eq + 1;
        const char *end = v;
        int depth = 0;
        while (*end != '\0' && (depth > 0 || *end != ',')) {
            depth += *end == '[' ? 1 : (*end == ']' ? -1 : 0);
            end++;
        }
        size_t klen = (size_t)(eq - p);
        size_t vlen = (size_t)(end - v);
        double num = 0;
        if (klen == 4 && strncmp(p, "cpus", 4) == 0) {
            if (parse_number(v, vlen, &num) != 0 || num <= 0) {
                return cm_err_setf(eb, CM_EINVAL, "--resources: cpus must be > 0");
            }
            out.cpus = num;
        } else if (klen == 3 && strncmp(p, "mem", 3) == 0) {
            if (parse_number(v, vlen, &num) != 0 || num <= 0) {
                return cm_err_setf(eb, CM_EINVAL, "--resources: mem must be > 0 (MiB)");
            }
            out.mem_mib = num;
        } else if (klen == 4 && strncmp(p, "disk", 4) == 0) {
            if (parse_number(v, vlen, &num) != 0) {
                return cm_err_setf(eb, CM_EINVAL, "--resources: disk must be >= 0 (MiB)");
            }
            out.disk_mib = num;
        } else if (klen == 5 && strncmp(p, "ports", 5) == 0) {
            int rv = parse_ranges(v, vlen, &out, eb);
            if (rv != 0) {
                return rv;
            }
        } else {
            return cm_err_setf(eb, CM_EINVAL,
                               "--resources: unknown resource '%.*s' (cpus, mem, disk, "
                               "ports)",
                               (int)klen, p);
        }
        p = *end == ',' ? end + 1 : end;
    }
    *r = out;
    return 0;
}

int cm_node_attr_parse(const char *s, struct cm_node_attr *ret, struct cm_errbuf *eb)
{
    const char *eq = strchr(s, '=');
    if (eq == NULL || eq == s) {
        return cm_err_setf(eb, CM_EINVAL, "--attr: '%s' is not key=value", s);
    }
    size_t klen = (size_t)(eq - s);
    if (klen >= sizeof(ret->key) || strlen(eq + 1) >= sizeof(ret->value)) {
        return cm_err_setf(eb, CM_EINVAL, "--attr: '%s' is too long", s);
    }
    if (klen == 8 && strncmp(s, "hostname", 8) == 0) {
        return cm_err_setf(eb, CM_EINVAL,
                           "--attr: hostname is implicit and cannot be set");
    }
    for (size_t i = 0; i < klen; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.')) {
            return cm_err_setf(eb, CM_EINVAL,
                               "--attr: key '%.*s' may hold only letters, digits, '_', "
                               "'-' and '.'",
                               (int)klen, s);
        }
    }
    memcpy(ret->key, s, klen);
    ret->key[klen] = '\0';
    snprintf(ret->value, sizeof(ret->value), "%s", eq + 1);
    return 0;
}

static int add_joins(struct cm_node_config *c, const char *list, struct cm_errbuf *eb)
{
    const char *p = list;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (c->n_join == CM_NODE_MAX_JOIN) {
            return cm_err_setf(eb, CM_EINVAL, "--join: more than %d addresses",
                               CM_NODE_MAX_JOIN);
        }
        char host[128];
        char one[128];
        uint16_t port;
        if (n == 0 || n >= sizeof(one)) {
            return cm_err_setf(eb, CM_EINVAL, "--join: empty or too long address");
        }
        memcpy(one, p, n);
        one[n] = '\0';
        if (cm_parse_hostport(one, host, sizeof(host), &port) != 0) {
            return cm_err_setf(eb, CM_EINVAL, "--join: '%s' is not HOST:PORT", one);
        }
        memcpy(c->join[c->n_join++], one, n + 1);
        p = comma != NULL ? comma + 1 : p + n;
    }
    return 0;
}

enum {
    OPT_DATA_DIR = 256,
    OPT_BIND,
    OPT_ADVERTISE,
    OPT_RPC_PORT,
    OPT_HTTP_PORT,
    OPT_DNS_ADDR,
    OPT_DOMAIN,
    OPT_DNS_COMPAT,
    OPT_DNS_UPSTREAM,
    OPT_VIP_CIDR,
    OPT_VIP_MODE,
    OPT_VIP_PROXY_THREADS,
    OPT_JOIN,
    OPT_TOKEN,
    OPT_VOTERS,
    OPT_ATTR,
    OPT_RESOURCES,
    OPT_DEV,
    OPT_LOG_LEVEL,
    OPT_NAME,
    OPT_CGROUP_PARENT,
};

static bool valid_domain(const char *d)
{
    size_t label = 0;
    for (const char *p = d; *p != '\0'; p++) {
        char ch = *p;
        if (ch == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) {
            return false;
        }
        if (++label > 63) {
            return false;
        }
    }
    return label > 0;
}

int cm_node_config_parse(struct cm_node_config *c, int argc, char **argv,
                         struct cm_errbuf *eb)
{
    static const struct option opts[] = {
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"bind", required_argument, NULL, OPT_BIND},
        {"advertise", required_argument, NULL, OPT_ADVERTISE},
        {"rpc-port", required_argument, NULL, OPT_RPC_PORT},
        {"http-port", required_argument, NULL, OPT_HTTP_PORT},
        {"dns-addr", required_argument, NULL, OPT_DNS_ADDR},
        {"domain", required_argument, NULL, OPT_DOMAIN},
        {"dns-compat", required_argument, NULL, OPT_DNS_COMPAT},
        {"dns-upstream", required_argument, NULL, OPT_DNS_UPSTREAM},
        {"vip-cidr", required_argument, NULL, OPT_VIP_CIDR},
        {"vip-mode", required_argument, NULL, OPT_VIP_MODE},
        {"vip-proxy-threads", required_argument, NULL, OPT_VIP_PROXY_THREADS},
        {"join", required_argument, NULL, OPT_JOIN},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"voters", required_argument, NULL, OPT_VOTERS},
        {"attr", required_argument, NULL, OPT_ATTR},
        {"resources", required_argument, NULL, OPT_RESOURCES},
        {"dev", no_argument, NULL, OPT_DEV},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"name", required_argument, NULL, OPT_NAME},
        {"cgroup-parent", required_argument, NULL, OPT_CGROUP_PARENT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool bind_given = false, dns_given = false;
    int rv = 0;
    int ch;
    optind = 0; /* full re-initialisation, so parsing twice works */
    opterr = 0;
    while (rv == 0 && (ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        int64_t v;
        switch (ch) {
        case OPT_DATA_DIR:
            rv = set_str(c->data_dir, sizeof(c->data_dir), optarg, "--data-dir", eb);
            c->data_dir_given = true;
            break;
        case OPT_BIND:
            rv = set_str(c->bind, sizeof(c->bind), optarg, "--bind", eb);
            bind_given = true;
            break;
        case OPT_ADVERTISE:
            rv = set_str(c->advertise, sizeof(c->advertise), optarg, "--advertise", eb);
            break;
        case OPT_RPC_PORT:
            rv = set_port(&c->rpc_port, optarg, "--rpc-port", eb);
            break;
        case OPT_HTTP_PORT:
            rv = set_port(&c->http_port, optarg, "--http-port", eb);
            break;
        case OPT_DNS_ADDR: {
            char host[64];
            uint16_t port;
            if (cm_parse_hostport(optarg, host, sizeof(host), &port) != 0) {
                rv = cm_err_setf(eb, CM_EINVAL, "--dns-addr: '%s' is not HOST:PORT",
                                 optarg);
                break;
            }
            rv = set_str(c->dns_addr, sizeof(c->dns_addr), optarg, "--dns-addr", eb);
            dns_given = true;
            break;
        }
        case OPT_DOMAIN:
            rv = set_str(c->domain, sizeof(c->domain), optarg, "--domain", eb);
            if (rv == 0 && !valid_domain(c->domain)) {
                rv = cm_err_setf(eb, CM_EINVAL,
                                 "--domain: '%s' is not a lower-case DNS name", optarg);
            }
            break;
        case OPT_DNS_COMPAT:
            if (strcmp(optarg, "mesos") != 0) {
                rv = cm_err_setf(eb, CM_EINVAL, "--dns-compat: only 'mesos' is known");
                break;
            }
            rv =
                set_str(c->dns_compat, sizeof(c->dns_compat), optarg, "--dns-compat", eb);
            break;
        case OPT_DNS_UPSTREAM:
            rv = set_str(c->dns_upstream, sizeof(c->dns_upstream), optarg,
                         "--dns-upstream", eb);
            break;
        case OPT_VIP_CIDR:
            rv = set_str(c->vip_cidr, sizeof(c->vip_cidr), optarg, "--vip-cidr", eb);
            break;
        case OPT_VIP_MODE:
            if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "nat") != 0 &&
                strcmp(optarg, "proxy") != 0 && strcmp(optarg, "off") != 0) {
                rv = cm_err_setf(eb, CM_EINVAL,
                                 "--vip-mode: '%s' is not auto, nat, proxy or off",
                                 optarg);
                break;
            }
            rv = set_str(c->vip_mode, sizeof(c->vip_mode), optarg, "--vip-mode", eb);
            break;
        case OPT_VIP_PROXY_THREADS:
            if (cm_parse_i64(optarg, 1, LB_PROXY_THREADS_MAX, &v) != 0) {
                rv = cm_err_setf(eb, CM_EINVAL, "--vip-proxy-threads: 1..%d",
                                 LB_PROXY_THREADS_MAX);
                break;
            }
            c->vip_proxy_threads = (unsigned)v;
            break;
        case OPT_JOIN:
            rv = add_joins(c, optarg, eb);
            break;
        case OPT_TOKEN:
            rv = set_str(c->token, sizeof(c->token), optarg, "--token", eb);
            break;
        case OPT_VOTERS:
            if (cm_parse_i64(optarg, 1, 9, &v) != 0 || v % 2 == 0) {
                rv = cm_err_setf(eb, CM_EINVAL, "--voters: must be 1, 3, 5, 7 or 9");
                break;
            }
            c->voters = (unsigned)v;
            break;
        case OPT_ATTR:
            if (c->n_attrs == CM_NODE_MAX_ATTRS) {
                rv = cm_err_setf(eb, CM_EINVAL, "--attr: more than %d attributes",
                                 CM_NODE_MAX_ATTRS);
                break;
            }
            rv = cm_node_attr_parse(optarg, &c->attrs[c->n_attrs], eb);
            if (rv == 0) {
                for (unsigned i = 0; i < c->n_attrs; i++) {
                    if (strcmp(c->attrs[i].key, c->attrs[c->n_attrs].key) == 0) {
                        rv = cm_err_setf(eb, CM_EINVAL, "--attr: '%s' given twice",
                                         c->attrs[i].key);
                    }
                }
                c->n_attrs += rv == 0;
            }
            break;
        case OPT_RESOURCES:
            rv = cm_resources_parse(optarg, &c->resources, eb);
            break;
        case OPT_DEV:
            c->dev = true;
            break;
        case OPT_NAME:
            if (!valid_domain(optarg) || strchr(optarg, '.') != NULL) {
                rv = cm_err_setf(eb, CM_EINVAL,
                                 "--name: '%s' is not one lower-case DNS label", optarg);
                break;
            }
            rv = set_str(c->name, sizeof(c->name), optarg, "--name", eb);
            break;
        case OPT_CGROUP_PARENT:
            if (optarg[0] == '/' || strstr(optarg, "..") != NULL) {
                rv = cm_err_setf(eb, CM_EINVAL,
                                 "--cgroup-parent: '%s' must be a relative path without "
                                 "'..'",
                                 optarg);
                break;
            }
            rv = set_str(c->cgroup_parent, sizeof(c->cgroup_parent), optarg,
                         "--cgroup-parent", eb);
            break;
        case OPT_LOG_LEVEL:
            if (cm_log_parse_level(optarg, &c->log_level) != 0) {
                rv = cm_err_setf(eb, CM_EINVAL,
                                 "--log-level: '%s' is not debug, info, warn or error",
                                 optarg);
            }
            break;
        case 'h':
            cm_node_usage(stdout);
            return 1;
        case ':':
            rv = cm_err_setf(eb, CM_EINVAL, "%s: needs a value", argv[optind - 1]);
            break;
        default:
            rv = cm_err_setf(eb, CM_EINVAL, "unknown option '%s'", argv[optind - 1]);
            break;
        }
    }
    if (rv != 0) {
        return rv;
    }
    if (optind < argc) {
        return cm_err_setf(eb, CM_EINVAL, "unexpected argument '%s'", argv[optind]);
    }
    if (c->dev) {
        /* --dev: a throwaway single node on loopback (DESIGN.md §3). */
        if (!bind_given) {
            snprintf(c->bind, sizeof(c->bind), "127.0.0.1");
        }
        if (!dns_given) {
            snprintf(c->dns_addr, sizeof(c->dns_addr), "127.0.0.1:8600");
        }
        if (c->advertise[0] == '\0') {
            snprintf(c->advertise, sizeof(c->advertise), "127.0.0.1");
        }
        if (c->n_join > 0) {
            return cm_err_setf(eb, CM_EINVAL,
                               "--join: a --dev node cannot join a cluster");
        }
        c->voters = 1;
    }
    if (c->n_join > 0 && c->token[0] == '\0') {
        return cm_err_setf(eb, CM_EINVAL,
                           "--join needs --token (printed by the first server)");
    }
    if (c->rpc_port == c->http_port) {
        return cm_err_setf(eb, CM_EINVAL, "--rpc-port and --http-port must differ");
    }
    return 0;
}
