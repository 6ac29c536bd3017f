/* App paths (Marathon PathId, compat.md §1.1) and the names derived from them:
 * clusterctl DNS labels (DESIGN §8), Mesos-DNS labels (compat.md §3.1) and VIP
 * label values (compat.md §4.1, DESIGN §9). */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "app_int.h"

#define SEGMENT_PATTERN                                                            \
    "^(([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])\\.)*([a-z0-9]|[a-z0-9][a-z0-9\\-]*" \
    "[a-z0-9])|(\\.|\\.\\.)$"

/* Marathon's segment pattern (PathId.scala): dot-separated DNS-label-like pieces
 * of [a-z0-9-], no piece starting or ending with '-'. */
bool app__segment_ok(const char *seg, size_t len)
{
    size_t piece = 0;
    if (len == 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = seg[i];
        if (c == '.') {
            if (piece == 0 || seg[i - 1] == '-') {
                return false;
            }
            piece = 0;
            continue;
        }
        if (c == '-') {
            if (piece == 0) {
                return false;
            }
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            return false;
        }
        piece++;
    }
    return piece > 0 && seg[len - 1] != '-';
}

/* Longest dot-separated piece of a segment: each becomes one DNS label. */
static size_t longest_piece(const char *seg, size_t len)
{
    size_t best = 0, cur = 0;
    for (size_t i = 0; i < len; i++) {
        cur = seg[i] == '.' ? 0 : cur + 1;
        best = cur > best ? cur : best;
    }
    return best;
}

const char *app__path_norm(const char *id, const char *base, char *out, size_t cap,
                           int *ret_code)
{
    size_t limit = cap < CM_APP_MAX_ID + 1 ? cap : CM_APP_MAX_ID + 1;
    size_t len = 0;
    *ret_code = CM_EINVAL;
    if (limit < 2) {
        *ret_code = CM_ETOOBIG;
        return "output buffer too small";
    }
    out[0] = '\0';
    const char *parts[2] = {NULL, id};
    if (id[0] != '/') {
        parts[0] = base != NULL ? base : "/";
    }
    for (int k = 0; k < 2; k++) {
        const char *p = parts[k];
        if (p == NULL) {
            continue;
        }
        while (*p) {
            const char *seg = p;
            while (*p && *p != '/') {
                p++;
            }
            size_t n = (size_t)(p - seg);
            if (*p == '/') {
                p++;
            }
            if (n == 0 || (n == 1 && seg[0] == '.')) {
                continue;
            }
            if (n == 2 && seg[0] == '.' && seg[1] == '.') {
                if (len == 0) {
                    return "Path refers above the root group";
                }
                while (len > 0 && out[len] != '/') {
                    len--;
                }
                out[len] = '\0';
                continue;
            }
            if (!app__segment_ok(seg, n)) {
                return "must fully match regular expression '" SEGMENT_PATTERN "'";
            }
            if (longest_piece(seg, n) > 63) {
                return "each dot-separated part of a path segment must be at most 63 "
                       "characters (it becomes a DNS label)";
            }
            if (len + 1 + n + 1 > limit) {
                *ret_code = CM_ETOOBIG;
                return "must be at most 256 characters";
            }
            out[len++] = '/';
            memcpy(out + len, seg, n);
            len += n;
            out[len] = '\0';
        }
    }
    if (len == 0) {
        out[0] = '/';
        out[1] = '\0';
    }
    *ret_code = 0;
    return NULL;
}

int cm_app_path_normalize(const char *id, const char *base, char *out, size_t cap)
{
    int code;
    app__path_norm(id, base, out, cap, &code);
    return code;
}

const char *cm_app_id_check(const char *abs_id)
{
    if (abs_id[0] != '/') {
        return "Path needs to be absolute";
    }
    if (abs_id[1] == '\0') {
        return "must not be root";
    }
    const char *last = strrchr(abs_id, '/') + 1;
    static const char *const reserved_last[] = {"restart", "tasks", "versions"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(reserved_last); i++) {
        if (strcmp(last, reserved_last[i]) == 0) {
            return "must not end with any of the following reserved keywords: restart, "
                   "tasks, versions, ., ..";
        }
    }
    /* DESIGN §8: the first segment becomes the last label before the zone, where
     * clusterctl's DNS has names of its own. */
    const char *first = abs_id + 1;
    size_t n = strcspn(first, "/");
    static const char *const reserved_first[] = {"vip", "node", "leader"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(reserved_first); i++) {
        if (strlen(reserved_first[i]) == n && memcmp(first, reserved_first[i], n) == 0) {
            return "must not start with a segment reserved by clusterctl's DNS: vip, "
                   "node, "
                   "leader";
        }
    }
    return NULL;
}

int cm_app_path_parent(const char *abs_id, char *out, size_t cap)
{
    const char *slash = strrchr(abs_id, '/');
    size_t n = slash != NULL ? (size_t)(slash - abs_id) : 0;
    if (n == 0) {
        if (cap < 2) {
            return CM_ETOOBIG;
        }
        memcpy(out, "/", 2);
        return 0;
    }
    if (n + 1 > cap) {
        return CM_ETOOBIG;
    }
    memcpy(out, abs_id, n);
    out[n] = '\0';
    return 0;
}

bool cm_app_path_within(const char *id, const char *group)
{
    size_t n = strlen(group);
    if (n == 1 && group[0] == '/') {
        return id[0] == '/';
    }
    return strncmp(id, group, n) == 0 && (id[n] == '\0' || id[n] == '/');
}

int cm_app_dns_name(const char *abs_id, char *out, size_t cap)
{
    if (abs_id[0] != '/' || abs_id[1] == '\0') {
        return CM_EINVAL;
    }
    size_t len = strlen(abs_id);
    if (len > cap) { /* the result has len - 1 characters plus the NUL */
        return CM_ETOOBIG;
    }
    size_t o = 0;
    size_t end = len;
    while (end > 0) {
        size_t b = end;
        while (b > 0 && abs_id[b - 1] != '/') {
            b--;
        }
        if (end > b) {
            if (o > 0) {
                out[o++] = '.';
            }
            memcpy(out + o, abs_id + b, end - b);
            o += end - b;
        }
        end = b > 0 ? b - 1 : 0;
    }
    out[o] = '\0';
    return o > 0 ? 0 : CM_EINVAL;
}

int cm_app_mesos_dns_label(const char *name, bool rfc952, char *out, size_t cap)
{
    size_t max = rfc952 ? 24 : 63;
    char tmp[64];
    size_t n = 0;
    bool leading = true;
    for (const unsigned char *p = (const unsigned char *)name; *p && n < max; p++) {
        char c = (char)tolower(*p);
        if (c == '-' || c == '.' || c == '_') {
            c = '-';
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            continue; /* dropped */
        }
        /* Leading '-' (and digits for RFC 952) are trimmed before the cut. */
        if (leading && (c == '-' || (rfc952 && c >= '0' && c <= '9'))) {
            continue;
        }
        leading = false;
        tmp[n++] = c;
    }
    while (n > 0 && tmp[n - 1] == '-') {
        n--;
    }
    if (n + 1 > cap) {
        return CM_ETOOBIG;
    }
    memcpy(out, tmp, n);
    out[n] = '\0';
    return 0;
}

int cm_app_mesos_dns_names(const char *abs_id, const char *framework, const char *domain,
                           char *labelled, size_t labelled_cap, char *legacy,
                           size_t legacy_cap)
{
    char task[CM_APP_MAX_ID + 1];
    char label[64];
    char fw[256];
    int rv = cm_app_dns_name(abs_id, task, sizeof(task));
    if (rv != 0) {
        return rv;
    }
    rv = cm_app_mesos_dns_label(task, false, label, sizeof(label));
    if (rv != 0) {
        return rv;
    }
    /* compat.md §3.1 step 3: the framework name is labelled part by part. */
    size_t fo = 0;
    for (const char *p = framework; *p;) {
        size_t n = strcspn(p, ".");
        char part[64], lab[64];
        size_t cut = n < sizeof(part) - 1 ? n : sizeof(part) - 1;
        memcpy(part, p, cut);
        part[cut] = '\0';
        if (cm_app_mesos_dns_label(part, false, lab, sizeof(lab)) == 0 && lab[0]) {
            int w = snprintf(fw + fo, sizeof(fw) - fo, "%s%s", fo ? "." : "", lab);
            if (w < 0 || (size_t)w >= sizeof(fw) - fo) {
                return CM_ETOOBIG;
            }
            fo += (size_t)w;
        }
        p += n;
        if (*p == '.') {
            p++;
        }
    }
    if (fo == 0 || label[0] == '\0') {
        return CM_EINVAL;
    }
    int w = snprintf(labelled, labelled_cap, "%s.%s.%s", label, fw, domain);
    if (w < 0 || (size_t)w >= labelled_cap) {
        return CM_ETOOBIG;
    }
    w = snprintf(legacy, legacy_cap, "%s.%s.%s", task, fw, domain);
    if (w < 0 || (size_t)w >= legacy_cap) {
        return CM_ETOOBIG;
    }
    return 0;
}

bool cm_app_is_vip_label(const char *key)
{
    return strncmp(key, "VIP", 3) == 0 || strncmp(key, "vip", 3) == 0;
}

int cm_app_vip_parse(const char *value, char *name, size_t cap, uint16_t *ret_port,
                     bool *ret_is_ip)
{
    const char *colon = strrchr(value, ':');
    if (colon == NULL || colon == value) {
        return CM_EINVAL;
    }
    const char *ps = colon + 1;
    if (*ps == '\0' || strlen(ps) > 5 || strspn(ps, "0123456789") != strlen(ps)) {
        return CM_EINVAL;
    }
    long port = 0;
    for (const char *p = ps; *p; p++) {
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535) {
        return CM_EINVAL;
    }
    size_t n = (size_t)(colon - value);
    const char *host = value;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0 || n + 1 > cap) {
        return n == 0 ? CM_EINVAL : CM_ETOOBIG;
    }
    memcpy(name, host, n);
    name[n] = '\0';
    unsigned char addr[16];
    bool is_ip =
        inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
    if (!is_ip) {
        /* A named VIP: "/name", "name", "/group/name", "api.hello" (compat.md §4.2). */
        const char *nm = name[0] == '/' ? name + 1 : name;
        if (*nm == '\0' || strpbrk(nm, " \t\r\n") != NULL) {
            return CM_EINVAL;
        }
    }
    *ret_port = (uint16_t)port;
    if (ret_is_ip != NULL) {
        *ret_is_ip = is_ip;
    }
    return 0;
}

const char *cm_app_proto_name(enum cm_app_proto proto)
{
    switch (proto) {
    case CM_APP_PROTO_UDP:
        return "udp";
    case CM_APP_PROTO_UDP_TCP:
        return "udp,tcp";
    case CM_APP_PROTO_TCP:
    default:
        return "tcp";
    }
}

const char *cm_app_hc_proto_name(enum cm_app_hc_proto proto)
{
    static const char *const names[] = {
        "HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"};
    return (unsigned)proto < CM_ARRAY_SIZE(names) ? names[proto] : "HTTP";
}

const char *cm_app_constraint_op_name(enum cm_app_constraint_op op)
{
    static const char *const names[] = {"UNIQUE", "CLUSTER", "GROUP_BY", "LIKE",
                                        "UNLIKE", "MAX_PER", "IS"};
    return (unsigned)op < CM_ARRAY_SIZE(names) ? names[op] : "UNIQUE";
}

const char *cm_app_net_mode_name(enum cm_app_net_mode mode)
{
    switch (mode) {
    case CM_APP_NET_BRIDGE:
        return "container/bridge";
    case CM_APP_NET_CONTAINER:
        return "container";
    case CM_APP_NET_HOST:
    default:
        return "host";
    }
}
