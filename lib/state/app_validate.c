/* Validation of a normalised app: Marathon's rules (AppValidation and friends,
 * compat.md §1), with its messages where compat.md §1.13 lists them, and the check
 * of the features clusterctl cannot honour yet.
 *
 * Messages that compat.md does not give are clusterctl's own and say what to fix;
 * docs/marathon-compat.md lists them. */
#include <arpa/inet.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app_int.h"

struct vctx {
    struct cm_app_report *rep;
    const char *pfx;
    enum cm_app_issue_kind kind;
    int n;
    bool oom;
};

static void v_issue(struct vctx *v, const char *path, const char *fmt, ...)
    CM_PRINTF(3, 4);

static void v_issue(struct vctx *v, const char *path, const char *fmt, ...)
{
    char full[1024], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(full, sizeof(full), "%s%s", v->pfx, path);
    if (app__issue(v->rep, v->kind, full, "%s", msg) != 0) {
        v->oom = true;
    }
    v->n++;
}

static const char *const min_msg = "error.min";
static const char *const max_msg = "error.max";

static void v_range_i(struct vctx *v, const char *path, int64_t val, int64_t lo,
                      int64_t hi)
{
    if (val < lo) {
        v_issue(v, path, "%s", min_msg);
    } else if (val > hi) {
        v_issue(v, path, "%s", max_msg);
    }
}

static bool port_name_ok(const char *s)
{
    /* ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ */
    size_t n = strlen(s);
    if (n == 0 || s[0] == '-' || s[n - 1] == '-') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '-')) {
            return false;
        }
    }
    return true;
}

#define PORT_NAME_MSG \
    "must fully match regular expression '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"

static bool secret_defined(const struct cm_app *app, const char *name)
{
    for (size_t i = 0; i < app->n_secrets; i++) {
        if (strcmp(app->secrets[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

static const char *label_get(const struct cm_app_labels *l, const char *key)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].key, key) == 0) {
            return l->v[i].value;
        }
    }
    return NULL;
}

static void v_vip_labels(struct vctx *v, const char *path, const struct cm_app_labels *l)
{
    for (size_t i = 0; i < l->n; i++) {
        char name[CM_APP_MAX_ID + 1];
        uint16_t port;
        if (cm_app_is_vip_label(l->v[i].key) &&
            cm_app_vip_parse(l->v[i].value, name, sizeof(name), &port, NULL) != 0) {
            char p[512];
            snprintf(p, sizeof(p), "%s/labels/%s", path, l->v[i].key);
            v_issue(
                v, p,
                "invalid VIP label value: expected <name>:<port> or <ip>:<port> with a "
                "port in 1..65535");
        }
    }
}

/* vip_PORT<digits>, any letter case: a legacy Minuteman label ("VIP_PORTAL" is not). */
static bool is_legacy_vip_key(const char *k)
{
    if (strncasecmp(k, "vip_port", 8) != 0 || k[8] == '\0') {
        return false;
    }
    for (const char *p = k + 8; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
    }
    return true;
}

/* A legacy Minuteman app label (lb_app_label_parse's rule): key vip_PORT<n> with
 * <n> the index of one of the app's ports, value tcp://<ipv4>:<port> or
 * udp://<ipv4>:<port>. @idx is the key after "vip_PORT". */
static void v_legacy_vip(struct vctx *v, const char *path, const struct cm_app *app,
                         const char *idx, const char *value)
{
    bool host = app->n_networks == 0 || app->networks[0].mode == CM_APP_NET_HOST;
    size_t nports = host ? app->n_port_defs : app->container.n_port_mappings;
    unsigned long n = strtoul(idx, NULL, 10); /* digits only: is_legacy_vip_key */
    if (n >= nports) {
        v_issue(v, path,
                "invalid legacy VIP label: the key must be vip_PORT<n> with <n> the "
                "index of one of the app's %zu port(s)",
                nports);
        return;
    }
    const char *rest = NULL;
    if (strncasecmp(value, "tcp://", 6) == 0 || strncasecmp(value, "udp://", 6) == 0) {
        rest = value + 6;
    }
    char addr[CM_APP_MAX_ID + 1];
    uint16_t port;
    bool is_ip = false;
    struct in_addr a4;
    if (rest == NULL || cm_app_vip_parse(rest, addr, sizeof(addr), &port, &is_ip) != 0 ||
        !is_ip || inet_pton(AF_INET, addr, &a4) != 1) {
        v_issue(v, path,
                "invalid legacy VIP label value: expected tcp://<ipv4>:<port> or "
                "udp://<ipv4>:<port> with a port in 1..65535");
    }
}

/* ---- constraints */

/* glibc's regcomp expands bounded repetitions into copies of the NFA, so nested
 * {m,n} can cost memory exponential in the nesting: bound the product of the
 * repetition counts. */
static bool regex_too_complex(const char *re)
{
    if (strlen(re) > CM_APP_MAX_REGEX) {
        return true;
    }
    unsigned long product = 1;
    for (const char *p = re; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
        } else if (*p == '[') {
            /* Bracket expression: braces inside are literals. */
            p++;
            if (*p == '^') {
                p++;
            }
            if (*p == ']') {
                p++;
            }
            while (*p && *p != ']') {
                p++;
            }
            if (!*p) {
                break;
            }
        } else if (*p == '{') {
            unsigned long bound = 0, cur = 0;
            for (p++; *p && *p != '}'; p++) {
                if (*p >= '0' && *p <= '9') {
                    cur = cur * 10 + (unsigned long)(*p - '0');
                    if (cur > 100000) {
                        return true;
                    }
                } else {
                    cur = 0;
                }
                bound = cur > bound ? cur : bound;
            }
            product *= bound + 1;
            if (product > 1000) {
                return true;
            }
            if (!*p) {
                break;
            }
        }
    }
    return false;
}

static bool regex_compiles(const char *re)
{
    regex_t rx;
    char anchored[CM_APP_MAX_REGEX + 8];
    if (regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) != 0) {
        return false;
    }
    regfree(&rx);
    /* Placement matches the whole value (Java String.matches), so the scheduler
     * compiles ^(re)$; that must compile too. */
    snprintf(anchored, sizeof(anchored), "^(%s)$", re);
    if (regcomp(&rx, anchored, REG_EXTENDED | REG_NOSUB) != 0) {
        return false;
    }
    regfree(&rx);
    return true;
}

static void v_constraints(struct vctx *v, const struct cm_app *app)
{
    for (size_t i = 0; i < app->n_constraints; i++) {
        const struct cm_app_constraint *c = &app->constraints[i];
        char p[64];
        snprintf(p, sizeof(p), "/constraints(%zu)", i);
        int64_t n;
        if (c->field[0] == '\0') {
            v_issue(v, p, "Constraint field must not be empty");
        }
        switch (c->op) {
        case CM_APP_CONSTRAINT_UNIQUE:
            if (c->value != NULL) {
                v_issue(v, p, "Value specified but not used");
            }
            break;
        case CM_APP_CONSTRAINT_CLUSTER:
            break;
        case CM_APP_CONSTRAINT_GROUP_BY:
            if (c->value != NULL && cm_parse_i64(c->value, 0, INT32_MAX, &n) != 0) {
                v_issue(v, p, "Value was not a valid integer");
            }
            break;
        case CM_APP_CONSTRAINT_MAX_PER:
            if (c->value == NULL) {
                v_issue(v, p, "Missing value");
            } else if (cm_parse_i64(c->value, 0, INT32_MAX, &n) != 0) {
                v_issue(v, p, "Value was not a valid integer");
            }
            break;
        case CM_APP_CONSTRAINT_LIKE:
        case CM_APP_CONSTRAINT_UNLIKE:
            if (c->value == NULL) {
                v_issue(v, p, "A regular expression value must be provided");
            } else if (regex_too_complex(c->value)) {
                v_issue(v, p, "regular expression is too long or too complex");
            } else if (!regex_compiles(c->value)) {
                v_issue(v, p, "'%s' is not a valid regular expression", c->value);
            }
            break;
        case CM_APP_CONSTRAINT_IS:
            if (c->value == NULL) {
                v_issue(v, p, "Missing value");
            } else if (strspn(c->value,
                              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "0123456789_/.-") != strlen(c->value)) {
                v_issue(v, p, "IS value must match '^[a-zA-Z0-9_/.-]*$'");
            }
            break;
        }
    }
}

/* ---- ports and networks */

static bool proto_overlap(enum cm_app_proto a, enum cm_app_proto b)
{
    return ((unsigned)a & (unsigned)b) != 0;
}

static void v_networks(struct vctx *v, const struct cm_app *app)
{
    size_t hosts = 0, bridges = 0, containers = 0;
    for (size_t i = 0; i < app->n_networks; i++) {
        const struct cm_app_network *nw = &app->networks[i];
        char p[64];
        snprintf(p, sizeof(p), "/networks(%zu)/name", i);
        hosts += nw->mode == CM_APP_NET_HOST;
        bridges += nw->mode == CM_APP_NET_BRIDGE;
        containers += nw->mode == CM_APP_NET_CONTAINER;
        if (nw->mode == CM_APP_NET_CONTAINER &&
            (nw->name == NULL || nw->name[0] == '\0')) {
            v_issue(v, p,
                    "network name must be specified (clusterctl has no default container "
                    "network)");
        }
        if (nw->mode != CM_APP_NET_CONTAINER && nw->name != NULL) {
            v_issue(v, p, "a network name is only allowed with mode container");
        }
        for (size_t j = 0; j < i && nw->name != NULL; j++) {
            if (app->networks[j].name != NULL &&
                strcmp(app->networks[j].name, nw->name) == 0) {
                v_issue(v, "/networks", "Networks must have unique names");
                break;
            }
        }
    }
    if ((hosts > 0 || bridges > 0) && app->n_networks > 1) {
        v_issue(v, "/networks",
                "host or container/bridge networking must be the only network");
    }
    if (app->container.type == CM_APP_CONTAINER_DOCKER && containers > 1) {
        v_issue(v, "/networks",
                "may only specify a single container network when using the Docker "
                "container engine");
    }
}

static void v_port_defs(struct vctx *v, const struct cm_app *app)
{
    for (size_t i = 0; i < app->n_port_defs; i++) {
        const struct cm_app_port_def *pd = &app->port_defs[i];
        char p[64], pp[80];
        snprintf(p, sizeof(p), "/portDefinitions(%zu)", i);
        snprintf(pp, sizeof(pp), "%s/port", p);
        v_range_i(v, pp, pd->port, 0, 65535);
        if (pd->name != NULL && !port_name_ok(pd->name)) {
            snprintf(pp, sizeof(pp), "%s/name", p);
            v_issue(v, pp, PORT_NAME_MSG);
        }
        v_vip_labels(v, p, &pd->labels);
    }
    bool dup_name = false, dup_port = false;
    for (size_t i = 0; i < app->n_port_defs; i++) {
        for (size_t j = 0; j < i; j++) {
            const struct cm_app_port_def *a = &app->port_defs[i], *b = &app->port_defs[j];
            dup_name |=
                a->name != NULL && b->name != NULL && strcmp(a->name, b->name) == 0;
            dup_port |= a->port != 0 && a->port == b->port;
        }
    }
    if (dup_name) {
        v_issue(v, "/portDefinitions", "Port names must be unique.");
    }
    if (dup_port) {
        v_issue(v, "/portDefinitions", "Ports must be unique.");
    }
    if (app->require_ports) {
        for (size_t i = 0; i < app->n_port_defs; i++) {
            if (app->port_defs[i].port == 0) {
                v_issue(
                    v, "/requirePorts",
                    "requirePorts needs fixed ports: every portDefinitions port must be "
                    "non-zero");
                break;
            }
        }
    }
}

static bool is_container_network(const struct cm_app *app, const char *name)
{
    for (size_t i = 0; i < app->n_networks; i++) {
        if (app->networks[i].mode == CM_APP_NET_CONTAINER &&
            app->networks[i].name != NULL && strcmp(app->networks[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

static void v_port_mappings(struct vctx *v, const struct cm_app *app)
{
    const struct cm_app_container *ct = &app->container;
    size_t containers = 0;
    for (size_t i = 0; i < app->n_networks; i++) {
        containers += app->networks[i].mode == CM_APP_NET_CONTAINER;
    }
    for (size_t i = 0; i < ct->n_port_mappings; i++) {
        const struct cm_app_port_mapping *pm = &ct->port_mappings[i];
        char p[64], pp[96];
        snprintf(p, sizeof(p), "/container/portMappings(%zu)", i);
        snprintf(pp, sizeof(pp), "%s/containerPort", p);
        v_range_i(v, pp, pm->container_port, 0, 65535);
        snprintf(pp, sizeof(pp), "%s/hostPort", p);
        v_range_i(v, pp, pm->host_port, -1, 65535);
        if (pm->host_port == -1 && containers == 0) {
            v_issue(v, pp, "error.path.missing");
        }
        snprintf(pp, sizeof(pp), "%s/servicePort", p);
        v_range_i(v, pp, pm->service_port, 0, 65535);
        if (pm->name != NULL && !port_name_ok(pm->name)) {
            snprintf(pp, sizeof(pp), "%s/name", p);
            v_issue(v, pp, PORT_NAME_MSG);
        }
        snprintf(pp, sizeof(pp), "%s/networkNames", p);
        for (size_t j = 0; j < pm->n_network_names; j++) {
            if (!is_container_network(app, pm->network_names[j])) {
                v_issue(v, pp, "networkNames must name container networks of the app");
                break;
            }
        }
        if (pm->host_port >= 0 && containers > 1 && pm->n_network_names != 1) {
            v_issue(
                v, pp,
                "must be a single item list when hostPort is specified and more than 1 "
                "container network is defined");
        }
        v_vip_labels(v, p, &pm->labels);
    }
    bool dup_name = false, dup_host = false, dup_service = false;
    for (size_t i = 0; i < ct->n_port_mappings; i++) {
        for (size_t j = 0; j < i; j++) {
            const struct cm_app_port_mapping *a = &ct->port_mappings[i];
            const struct cm_app_port_mapping *b = &ct->port_mappings[j];
            dup_name |=
                a->name != NULL && b->name != NULL && strcmp(a->name, b->name) == 0;
            dup_host |= a->host_port > 0 && a->host_port == b->host_port &&
                        proto_overlap(a->proto, b->proto);
            dup_service |= a->service_port > 0 && a->service_port == b->service_port &&
                           proto_overlap(a->proto, b->proto);
        }
    }
    if (dup_name) {
        v_issue(v, "/container/portMappings", "Port names must be unique.");
    }
    if (dup_host) {
        v_issue(v, "/container/portMappings", "Host ports must be unique.");
    }
    if (dup_service) {
        v_issue(v, "/container/portMappings", "Service ports must be unique.");
    }
}

static size_t port_count(const struct cm_app *app)
{
    return app->networks[0].mode != CM_APP_NET_HOST ? app->container.n_port_mappings
                                                    : app->n_port_defs;
}

static bool port_name_exists(const struct cm_app *app, const char *name)
{
    for (size_t i = 0; i < app->n_port_defs; i++) {
        if (app->port_defs[i].name != NULL && strcmp(app->port_defs[i].name, name) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < app->container.n_port_mappings; i++) {
        const struct cm_app_port_mapping *pm = &app->container.port_mappings[i];
        if (pm->name != NULL && strcmp(pm->name, name) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- container and volumes */

static void v_container(struct vctx *v, const struct cm_app *app)
{
    const struct cm_app_container *ct = &app->container;
    if (ct->type == CM_APP_CONTAINER_NONE) {
        return;
    }
    if (ct->type == CM_APP_CONTAINER_DOCKER && !ct->has_docker) {
        v_issue(v, "/container/docker", "must be defined for a DOCKER container");
    }
    if (ct->has_docker) {
        if (ct->image == NULL) {
            v_issue(v, "/container/docker/image", "error.path.missing");
        } else if (ct->image[0] == '\0') {
            v_issue(v, "/container/docker/image", "error.minLength");
        }
    }
    if (ct->type == CM_APP_CONTAINER_MESOS) {
        if (ct->n_params > 0) {
            v_issue(v, "/container/docker/parameters",
                    "parameters are only supported with the Docker containerizer");
        }
        if (ct->privileged) {
            v_issue(v, "/container/docker/privileged",
                    "privileged is only supported with the Docker containerizer");
        }
    }
    if (ct->pull_config_secret != NULL) {
        if (ct->type != CM_APP_CONTAINER_MESOS) {
            v_issue(v, "/container/docker/pullConfig",
                    "pullConfig is supported only with the Mesos containerizer");
        } else if (!secret_defined(app, ct->pull_config_secret)) {
            v_issue(v, "/container/docker/pullConfig/secret",
                    "references an undefined secret");
        }
    }
    if (ct->type == CM_APP_CONTAINER_DOCKER && app->gpus > 0) {
        v_issue(v, "/gpus", "GPU resources only work with the Mesos containerizer");
    }
    for (size_t i = 0; i < ct->n_volumes; i++) {
        const struct cm_app_volume *vol = &ct->volumes[i];
        char p[64], pp[96];
        snprintf(p, sizeof(p), "/container/volumes(%zu)", i);
        snprintf(pp, sizeof(pp), "%s/containerPath", p);
        if (vol->container_path == NULL || vol->container_path[0] == '\0') {
            v_issue(v, pp, "error.minLength");
        }
        for (size_t j = 0; j < i && vol->container_path != NULL; j++) {
            const char *o = ct->volumes[j].container_path;
            if (o != NULL && strcmp(o, vol->container_path) == 0) {
                v_issue(v, pp, "container paths must be unique");
                break;
            }
        }
        switch (vol->kind) {
        case CM_APP_VOLUME_HOST:
            snprintf(pp, sizeof(pp), "%s/hostPath", p);
            if (vol->host_path == NULL || vol->host_path[0] == '\0') {
                v_issue(v, pp, "error.minLength");
            }
            break;
        case CM_APP_VOLUME_PERSISTENT:
            if (vol->container_path != NULL && strchr(vol->container_path, '/') != NULL) {
                snprintf(pp, sizeof(pp), "%s/containerPath", p);
                v_issue(v, pp, "value must not contain \"/\"");
            }
            if (vol->read_only) {
                snprintf(pp, sizeof(pp), "%s/mode", p);
                v_issue(v, pp, "persistent volumes must be read-write (RW)");
            }
            snprintf(pp, sizeof(pp), "%s/persistent/size", p);
            v_range_i(v, pp, vol->size, 1, INT64_MAX);
            if (vol->max_size != 0 && vol->max_size < vol->size) {
                snprintf(pp, sizeof(pp), "%s/persistent/maxSize", p);
                v_issue(v, pp, "maxSize must be greater than or equal to size");
            }
            break;
        case CM_APP_VOLUME_EXTERNAL:
            snprintf(pp, sizeof(pp), "%s/external/size", p);
            v_range_i(v, pp, vol->size, 0, INT64_MAX);
            if (vol->ext_name != NULL && vol->ext_name[0] == '\0') {
                snprintf(pp, sizeof(pp), "%s/external/name", p);
                v_issue(v, pp, "error.minLength");
            }
            break;
        case CM_APP_VOLUME_SECRET:
            snprintf(pp, sizeof(pp), "%s/secret", p);
            if (vol->secret == NULL || !secret_defined(app, vol->secret)) {
                v_issue(v, pp, "references an undefined secret");
            }
            break;
        }
    }
}

/* ---- checks */

static bool hc_http(enum cm_app_hc_proto p)
{
    return p == CM_APP_HC_HTTP || p == CM_APP_HC_HTTPS || p == CM_APP_HC_MESOS_HTTP ||
           p == CM_APP_HC_MESOS_HTTPS;
}

static bool hc_mesos(enum cm_app_hc_proto p)
{
    return p == CM_APP_HC_MESOS_HTTP || p == CM_APP_HC_MESOS_HTTPS ||
           p == CM_APP_HC_MESOS_TCP || p == CM_APP_HC_COMMAND;
}

#define PORT_INDEX_MSG                                                                   \
    "Health check port indices must address an element of the ports array or container " \
    "port mappings."

static void v_health_checks(struct vctx *v, const struct cm_app *app)
{
    size_t nports = port_count(app);
    size_t mesos = 0, commands = 0;
    for (size_t i = 0; i < app->n_health_checks; i++) {
        const struct cm_app_health_check *hc = &app->health_checks[i];
        char p[64], pp[96];
        snprintf(p, sizeof(p), "/healthChecks(%zu)", i);
        mesos += hc_mesos(hc->proto);
        commands += hc->proto == CM_APP_HC_COMMAND;
        if (hc->proto == CM_APP_HC_COMMAND) {
            if (hc->command == NULL || hc->command[0] == '\0') {
                snprintf(pp, sizeof(pp), "%s/command", p);
                v_issue(v, pp, "command is required for COMMAND health checks");
            }
        } else {
            if (hc->command != NULL) {
                snprintf(pp, sizeof(pp), "%s/command", p);
                v_issue(v, pp, "command is only allowed for COMMAND health checks");
            }
            if (hc->port_name != NULL && (hc->port >= 0 || hc->port_index >= 0)) {
                v_issue(v, p,
                        "Health check must specify only one of port, portIndex and "
                        "portName");
            } else if (hc->port_name != NULL) {
                if (!port_name_exists(app, hc->port_name)) {
                    snprintf(pp, sizeof(pp), "%s/portName", p);
                    v_issue(v, pp,
                            "no port named '%s' in portDefinitions or portMappings",
                            hc->port_name);
                }
            } else if (hc->port >= 0 && hc->port_index >= 0) {
                v_issue(v, p,
                        "Health check must specify either port or portIndex, not both");
            } else if (hc->port_index >= 0 || hc->port < 0) {
                snprintf(pp, sizeof(pp), "%s/portIndex", p);
                if (hc->port_index < 0 || (size_t)hc->port_index >= nports) {
                    v_issue(v, pp, PORT_INDEX_MSG);
                }
            }
            if (hc->port >= 0) {
                snprintf(pp, sizeof(pp), "%s/port", p);
                v_range_i(v, pp, hc->port, 0, 65535);
            }
        }
        if (hc->port < -1) {
            snprintf(pp, sizeof(pp), "%s/port", p);
            v_issue(v, pp, "%s", min_msg);
        }
        snprintf(pp, sizeof(pp), "%s/gracePeriodSeconds", p);
        v_range_i(v, pp, hc->grace_period_s, 0, INT32_MAX);
        snprintf(pp, sizeof(pp), "%s/intervalSeconds", p);
        v_range_i(v, pp, hc->interval_s, 1, INT32_MAX);
        snprintf(pp, sizeof(pp), "%s/timeoutSeconds", p);
        v_range_i(v, pp, hc->timeout_s, 1, INT32_MAX);
        snprintf(pp, sizeof(pp), "%s/maxConsecutiveFailures", p);
        v_range_i(v, pp, hc->max_consecutive_failures, 0, INT32_MAX);
        snprintf(pp, sizeof(pp), "%s/delaySeconds", p);
        v_range_i(v, pp, hc->delay_s, 0, INT32_MAX);
        if (hc->path != NULL && hc_http(hc->proto) && hc->path[0] != '/') {
            snprintf(pp, sizeof(pp), "%s/path", p);
            v_issue(v, pp, "path must start with '/'");
        }
        if (hc->ipv6 && (app->container.type != CM_APP_CONTAINER_DOCKER ||
                         !hc_mesos(hc->proto) || hc->proto == CM_APP_HC_COMMAND)) {
            snprintf(pp, sizeof(pp), "%s/ipProtocol", p);
            v_issue(v, pp,
                    "IPv6 health checks are only supported with Docker containers and "
                    "MESOS_HTTP, MESOS_HTTPS or MESOS_TCP");
        }
    }
    /* Several COMMAND checks are tolerated for old apps (compat.md §1.7). */
    if (mesos > 1 && mesos != commands) {
        v_issue(v, "/healthChecks",
                "AppDefinition can contain at most one Mesos health check");
    }
}

static void v_readiness(struct vctx *v, const struct cm_app *app)
{
    if (app->n_readiness_checks > 1) {
        v_issue(v, "/readinessChecks", "only one readiness check is supported");
    }
    for (size_t i = 0; i < app->n_readiness_checks; i++) {
        const struct cm_app_readiness_check *rc = &app->readiness_checks[i];
        char p[64], pp[96];
        snprintf(p, sizeof(p), "/readinessChecks(%zu)", i);
        if (rc->name[0] == '\0') {
            snprintf(pp, sizeof(pp), "%s/name", p);
            v_issue(v, pp, "error.minLength");
        }
        if (!port_name_exists(app, rc->port_name)) {
            snprintf(pp, sizeof(pp), "%s/portName", p);
            v_issue(v, pp, "no port named '%s' in portDefinitions or portMappings",
                    rc->port_name);
        }
        snprintf(pp, sizeof(pp), "%s/intervalSeconds", p);
        v_range_i(v, pp, rc->interval_s, 1, INT32_MAX);
        snprintf(pp, sizeof(pp), "%s/timeoutSeconds", p);
        v_range_i(v, pp, rc->timeout_s, 1, INT32_MAX);
        if (rc->timeout_s >= rc->interval_s) {
            v_issue(v, pp, "must be less than intervalSeconds");
        }
        snprintf(pp, sizeof(pp), "%s/httpStatusCodesForReady", p);
        if (rc->n_ready_codes == 0) {
            v_issue(v, pp, "must not be empty");
        }
        for (size_t j = 0; j < rc->n_ready_codes; j++) {
            char pc[128];
            snprintf(pc, sizeof(pc), "%s(%zu)", pp, j);
            v_range_i(v, pc, rc->ready_codes[j], 100, 999);
        }
        if (rc->path[0] != '/') {
            snprintf(pp, sizeof(pp), "%s/path", p);
            v_issue(v, pp, "path must start with '/'");
        }
    }
}

static void v_check(struct vctx *v, const struct cm_app *app)
{
    const struct cm_app_check *ck = &app->check;
    if (ck->kind == CM_APP_CHECK_NONE) {
        return;
    }
    const char *k = ck->kind == CM_APP_CHECK_HTTP ? "/check/http" : "/check/tcp";
    char pp[64];
    if (ck->kind == CM_APP_CHECK_EXEC) {
        if (ck->command == NULL || ck->command[0] == '\0') {
            v_issue(v, "/check/exec/command/shell", "error.minLength");
        }
    } else if (ck->port >= 0 && ck->port_index >= 0) {
        v_issue(v, k, "Check must specify either port or portIndex, not both");
    } else if (ck->port >= 0) {
        snprintf(pp, sizeof(pp), "%s/port", k);
        v_range_i(v, pp, ck->port, 0, 65535);
    } else if (ck->port_index < 0 || (size_t)ck->port_index >= port_count(app)) {
        snprintf(pp, sizeof(pp), "%s/portIndex", k);
        v_issue(
            v, pp,
            "Check port indices must address an element of the ports array or container "
            "port mappings.");
    }
    v_range_i(v, "/check/intervalSeconds", ck->interval_s, 1, INT32_MAX);
    v_range_i(v, "/check/timeoutSeconds", ck->timeout_s, 1, INT32_MAX);
    v_range_i(v, "/check/delaySeconds", ck->delay_s, 0, INT32_MAX);
}

/* ---- the whole app */

static bool resident(const struct cm_app *app)
{
    for (size_t i = 0; i < app->container.n_volumes; i++) {
        if (app->container.volumes[i].kind == CM_APP_VOLUME_PERSISTENT) {
            return true;
        }
    }
    return false;
}

/* ^(//cmd)|(/?[^/]+(/[^/]+)*)|$ : "", "//cmd", or a path without empty segments. */
static bool executor_ok(const char *e)
{
    if (e[0] == '\0' || strcmp(e, "//cmd") == 0) {
        return true;
    }
    const char *p = e[0] == '/' ? e + 1 : e;
    if (*p == '\0') {
        return false;
    }
    for (; *p; p++) {
        if (*p == '/' && (p[1] == '/' || p[1] == '\0')) {
            return false;
        }
    }
    return true;
}

static void v_labels(struct vctx *v, const struct cm_app *app)
{
    const char *single = label_get(&app->labels, "MARATHON_SINGLE_INSTANCE_APP");
    if (single != NULL && strcmp(single, "true") == 0) {
        if (app->instances > 1) {
            v_issue(v, "/instances", "Single instance app may only have one instance");
        }
        if (app->min_health_capacity != 0 || app->max_over_capacity != 0) {
            v_issue(v, "/upgradeStrategy",
                    "Single instance app may only have an upgradeStrategy with "
                    "minimumHealthCapacity 0 and maximumOverCapacity 0");
        }
    }
    const char *mig = label_get(&app->labels, "DCOS_MIGRATION_API_VERSION");
    if (mig != NULL) {
        if (strcmp(mig, "v1") != 0) {
            v_issue(v, "/labels/DCOS_MIGRATION_API_VERSION",
                    "DCOS_MIGRATION_API_VERSION must be v1");
        }
        static const char *const need[] = {"DCOS_PACKAGE_FRAMEWORK_NAME",
                                           "DCOS_MIGRATION_API_PATH"};
        for (size_t i = 0; i < CM_ARRAY_SIZE(need); i++) {
            const char *val = label_get(&app->labels, need[i]);
            if (val == NULL || val[0] == '\0') {
                v_issue(
                    v, "/labels",
                    "%s must be set and non-empty when DCOS_MIGRATION_API_VERSION is set",
                    need[i]);
            }
        }
    }
}

int app__validate(const struct cm_app *app, const char *pfx, struct cm_app_report *rep)
{
    struct vctx v = {.rep = rep, .pfx = pfx, .kind = CM_APP_ISSUE_INVALID};
    for (size_t i = 0; i < app->labels.n; i++) {
        const char *k = app->labels.v[i].key;
        if (is_legacy_vip_key(k)) {
            char p[512];
            snprintf(p, sizeof(p), "/labels/%s", k);
            v_legacy_vip(&v, p, app, k + 8, app->labels.v[i].value);
        }
    }
    bool has_cmd = app->cmd != NULL, has_args = app->n_args > 0;
    bool has_container = app->container.type != CM_APP_CONTAINER_NONE;
    if ((has_cmd && has_args) || (!has_cmd && !has_args && !has_container)) {
        v_issue(&v, "/",
                "AppDefinition must either contain one of 'cmd' or 'args', and/or a "
                "'container'.");
    }
    /* compat.md §1.2: Marathon checks length > 1. */
    if (has_cmd && strlen(app->cmd) <= 1) {
        v_issue(&v, "/cmd", "must not be an empty string");
    }
    v_range_i(&v, "/instances", app->instances, 0, CM_APP_MAX_INSTANCES);
    if (app->cpus < 0.001) {
        v_issue(&v, "/cpus", "%s", min_msg);
    }
    if (app->mem < 0) {
        v_issue(&v, "/mem", "%s", min_msg);
    }
    if (app->disk < 0) {
        v_issue(&v, "/disk", "%s", min_msg);
    }
    v_range_i(&v, "/gpus", app->gpus, 0, INT32_MAX);
    if (app->limit_cpus.set && !app->limit_cpus.unlimited &&
        app->limit_cpus.value < app->cpus) {
        v_issue(&v, "/resourceLimits/cpus",
                "resource limit must be greater than or equal to requested resource (%g)",
                app->cpus);
    }
    if (app->limit_mem.set && !app->limit_mem.unlimited &&
        app->limit_mem.value < app->mem) {
        v_issue(&v, "/resourceLimits/mem",
                "resource limit must be greater than or equal to requested resource (%g)",
                app->mem);
    }
    if (!executor_ok(app->executor)) {
        v_issue(&v, "/executor",
                "must fully match regular expression '^(//cmd)|(/?[^/]+(/[^/]+)*)|$'");
    }
    for (size_t i = 0; i < app->n_env; i++) {
        if (app->env[i].secret != NULL && !secret_defined(app, app->env[i].secret)) {
            char p[512];
            snprintf(p, sizeof(p), "/env/%s", app->env[i].name);
            v_issue(&v, p, "references an undefined secret");
        }
    }
    for (size_t i = 0; i < app->n_secrets; i++) {
        if (app->secrets[i].source[0] == '\0') {
            char p[512];
            snprintf(p, sizeof(p), "/secrets/%s/source", app->secrets[i].name);
            v_issue(&v, p, "error.minLength");
        }
    }
    v_constraints(&v, app);
    for (size_t i = 0; i < app->n_accepted_roles; i++) {
        char p[64];
        snprintf(p, sizeof(p), "/acceptedResourceRoles(%zu)", i);
        if (app->accepted_roles[i][0] == '\0') {
            v_issue(&v, p, "error.minLength");
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(app->accepted_roles[i], app->accepted_roles[j]) == 0) {
                v_issue(&v, "/acceptedResourceRoles", "elements must be unique");
                break;
            }
        }
    }
    if (app->role[0] == '\0') {
        v_issue(&v, "/role", "error.minLength");
    }
    v_labels(&v, app);
    v_networks(&v, app);
    v_port_defs(&v, app);
    v_port_mappings(&v, app);
    v_container(&v, app);
    v_health_checks(&v, app);
    v_readiness(&v, app);
    v_check(&v, app);
    for (size_t i = 0; i < app->n_dependencies; i++) {
        if (app->id != NULL && strcmp(app->dependencies[i], app->id) == 0) {
            char p[64];
            snprintf(p, sizeof(p), "/dependencies(%zu)", i);
            v_issue(&v, p, "an app cannot depend on itself");
        }
    }
    if (app->min_health_capacity < 0) {
        v_issue(&v, "/upgradeStrategy/minimumHealthCapacity", "is less than 0");
    } else if (app->min_health_capacity > 1) {
        v_issue(&v, "/upgradeStrategy/minimumHealthCapacity", "is greater than 1");
    }
    if (app->max_over_capacity < 0) {
        v_issue(&v, "/upgradeStrategy/maximumOverCapacity", "is less than 0");
    } else if (app->max_over_capacity > 1) {
        v_issue(&v, "/upgradeStrategy/maximumOverCapacity", "is greater than 1");
    }
    if (app->canaries < 0) {
        v_issue(&v, "/upgradeStrategy/canaries", "%s", min_msg);
    } else if (app->canaries > app->instances && app->canaries > 0) {
        v_issue(&v, "/upgradeStrategy/canaries", "must not be more than instances");
    }
    if (app->canary_promote_after_s < 0) {
        v_issue(&v, "/upgradeStrategy/canaryPromoteAfterSeconds", "%s", min_msg);
    } else if (app->canary_promote_after_s > 0 && app->canaries == 0) {
        v_issue(&v, "/upgradeStrategy/canaryPromoteAfterSeconds",
                "needs upgradeStrategy.canaries > 0");
    }
    if (app->progress_deadline_s < 0) {
        v_issue(&v, "/upgradeStrategy/progressDeadlineSeconds", "%s", min_msg);
    }
    v_range_i(&v, "/backoffSeconds", app->backoff_s, 0, INT32_MAX);
    if (app->backoff_factor < 1.0) {
        v_issue(&v, "/backoffFactor", "%s", min_msg);
    }
    v_range_i(&v, "/maxLaunchDelaySeconds", app->max_launch_delay_s, 0, INT32_MAX);
    if (app->task_kill_grace_period_s != -1) {
        v_range_i(&v, "/taskKillGracePeriodSeconds", app->task_kill_grace_period_s, 0,
                  INT32_MAX);
    }
    if (!app->unreachable.disabled) {
        const struct cm_app_unreachable *u = &app->unreachable;
        v_range_i(&v, "/unreachableStrategy/inactiveAfterSeconds", u->inactive_after_s, 0,
                  INT64_MAX);
        v_range_i(&v, "/unreachableStrategy/expungeAfterSeconds", u->expunge_after_s, 0,
                  INT64_MAX);
        if (u->inactive_after_s > u->expunge_after_s) {
            v_issue(&v, "/unreachableStrategy",
                    "inactiveAfterSeconds must be less or equal to expungeAfterSeconds");
        }
    }
    for (size_t i = 0; i < app->n_fetch; i++) {
        char p[64];
        snprintf(p, sizeof(p), "/fetch(%zu)/uri", i);
        if (app->fetch[i].uri == NULL || app->fetch[i].uri[0] == '\0') {
            v_issue(&v, p, "error.minLength");
        } else if (strlen(app->fetch[i].uri) > 1024) {
            v_issue(&v, p, "error.maxLength");
        }
    }
    if (resident(app)) {
        if (!app->unreachable.disabled) {
            v_issue(&v, "/unreachableStrategy",
                    "unreachableStrategy must be disabled for resident tasks");
        }
        if (app->max_over_capacity != 0) {
            v_issue(&v, "/upgradeStrategy/maximumOverCapacity",
                    "must be 0 for apps with persistent volumes");
        }
    } else if (app->has_residency) {
        v_issue(&v, "/residency", "residency requires persistent volumes");
    }
    if (app->has_residency) {
        v_range_i(&v, "/residency/relaunchEscalationTimeoutSeconds",
                  app->relaunch_escalation_timeout_s, 0, INT64_MAX);
    }
    return v.oom ? CM_ENOMEM : v.n;
}

/* ---- features clusterctl cannot honour yet */

int app__check_features(const struct cm_app *app, unsigned features, const char *pfx,
                        struct cm_app_report *rep)
{
    struct vctx v = {.rep = rep, .pfx = pfx, .kind = CM_APP_ISSUE_UNSUPPORTED};
    const struct cm_app_container *ct = &app->container;
#define MISSING(f) (!(features & (unsigned)(f)))
    if (ct->image != NULL && MISSING(CM_APP_FEAT_IMAGES)) {
        v_issue(&v, "/container/docker/image",
                "unsupported feature: container.docker.image (container images are not "
                "supported yet)");
    }
    if (ct->n_params > 0 && MISSING(CM_APP_FEAT_DOCKER_OPTIONS)) {
        v_issue(&v, "/container/docker/parameters",
                "unsupported feature: container.docker.parameters (docker run options "
                "have no meaning without Docker)");
    }
    if (ct->privileged && MISSING(CM_APP_FEAT_DOCKER_OPTIONS)) {
        v_issue(&v, "/container/docker/privileged",
                "unsupported feature: container.docker.privileged (privileged containers "
                "are not supported)");
    }
    if (ct->pull_config_secret != NULL && MISSING(CM_APP_FEAT_SECRETS)) {
        v_issue(&v, "/container/docker/pullConfig",
                "unsupported feature: container.docker.pullConfig (registry credentials "
                "from secrets are not supported yet)");
    }
    for (size_t i = 0; i < ct->n_volumes; i++) {
        char p[64];
        snprintf(p, sizeof(p), "/container/volumes(%zu)", i);
        switch (ct->volumes[i].kind) {
        case CM_APP_VOLUME_HOST:
            if (MISSING(CM_APP_FEAT_HOST_VOLUMES)) {
                v_issue(
                    &v, p,
                    "unsupported feature: host volumes (bind mounts of host paths are "
                    "not supported yet)");
            }
            break;
        case CM_APP_VOLUME_PERSISTENT:
            if (MISSING(CM_APP_FEAT_PERSISTENT_VOLUMES)) {
                v_issue(
                    &v, p,
                    "unsupported feature: persistent volumes (local persistent volumes "
                    "and resident apps are not supported yet)");
            }
            break;
        case CM_APP_VOLUME_EXTERNAL:
            if (MISSING(CM_APP_FEAT_EXTERNAL_VOLUMES)) {
                v_issue(&v, p,
                        "unsupported feature: external volumes (volume drivers are not "
                        "supported)");
            }
            break;
        case CM_APP_VOLUME_SECRET:
            if (MISSING(CM_APP_FEAT_SECRETS)) {
                v_issue(&v, p,
                        "unsupported feature: secret volumes (secrets are not supported "
                        "yet)");
            }
            break;
        }
    }
    if (app->gpus > 0 && MISSING(CM_APP_FEAT_GPUS)) {
        v_issue(&v, "/gpus", "unsupported feature: gpus (no node offers GPUs)");
    }
    if (app->executor[0] != '\0' && strcmp(app->executor, "//cmd") != 0 &&
        MISSING(CM_APP_FEAT_EXECUTOR)) {
        v_issue(
            &v, "/executor",
            "unsupported feature: executor (custom Mesos executors are not supported; "
            "tasks run under clusterctl's executor)");
    }
    if (app->n_fetch > 0 && MISSING(CM_APP_FEAT_FETCH)) {
        v_issue(
            &v, "/fetch",
            "unsupported feature: fetch/uris (downloading artifacts into the sandbox is "
            "not supported yet)");
    }
    if (MISSING(CM_APP_FEAT_SECRETS)) {
        if (app->n_secrets > 0) {
            v_issue(
                &v, "/secrets",
                "unsupported feature: secrets (the secret store is not available yet)");
        }
        for (size_t i = 0; i < app->n_env; i++) {
            if (app->env[i].secret != NULL) {
                char p[512];
                snprintf(p, sizeof(p), "/env/%s", app->env[i].name);
                v_issue(&v, p,
                        "unsupported feature: secret environment variables (the secret "
                        "store is not available yet)");
            }
        }
    }
    for (size_t i = 0; i < app->n_networks; i++) {
        if (app->networks[i].mode == CM_APP_NET_CONTAINER &&
            MISSING(CM_APP_FEAT_CONTAINER_NETWORKS)) {
            char p[64];
            snprintf(p, sizeof(p), "/networks(%zu)", i);
            v_issue(&v, p,
                    "unsupported feature: container networks (IP-per-task networking, "
                    "networks mode container or ipAddress, is not supported yet)");
        }
    }
    if ((app->limit_cpus.set || app->limit_mem.set) &&
        MISSING(CM_APP_FEAT_RESOURCE_LIMITS)) {
        v_issue(
            &v, "/resourceLimits",
            "unsupported feature: resourceLimits (limits above the requested resources "
            "are not supported yet)");
    }
    if (app->tty == 1 && MISSING(CM_APP_FEAT_TTY)) {
        v_issue(&v, "/tty", "unsupported feature: tty (tasks get no terminal)");
    }
    for (size_t i = 0; i < app->labels.n; i++) {
        const char *k = app->labels.v[i].key;
        if (is_legacy_vip_key(k) && MISSING(CM_APP_FEAT_LEGACY_VIP)) {
            char p[512];
            snprintf(p, sizeof(p), "/labels/%s", k);
            v_issue(
                &v, p,
                "unsupported feature: legacy Minuteman task label %s (put a VIP_0 label "
                "on the port definition or port mapping instead)",
                k);
        }
    }
#undef MISSING
    return v.oom ? CM_ENOMEM : v.n;
}
