/* The zone built from the local state.db replica (DESIGN.md §8): the daemon calls
 * dns_zone_from_state after each applied batch that changed apps, tasks or nodes
 * and publishes the result to the server.
 *
 * Named VIPs come from the vips table (the leader's allocations) as well as from
 * dns_state_info.
 *
 * The work is one scan of each table. Only running tasks matter to DNS, so the
 * others are dropped in the scan; app specs (JSON) are parsed once per version
 * and kept in a dns_state_cache, so a task going healthy costs a scan and a
 * builder run, not a thousand JSON parses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns_int.h"
#include "state/db.h"
#include "state/state.h"

#define PORTS_PER_TASK_MAX 64 /* STYLE.md rule 13: host ports a task can carry */

/* ------------------------------------------------------------------ app cache */

struct port_desc {
    char *name; /* NULL: unnamed */
    unsigned protocols;
};

struct app_ent {
    char *id;
    char *version;
    uint64_t spec_hash;
    size_t spec_len;
    bool has_health_checks;
    struct port_desc *ports;
    size_t nports;
    bool moved; /* owned by the next build's cache now; id kept for bsearch */
};

struct dns_state_cache {
    struct app_ent *v; /* sorted by id */
    size_t n;
};

static void app_ent_done(struct app_ent *e)
{
    if (e->moved) {
        return;
    }
    for (size_t i = 0; i < e->nports; i++) {
        cm_free(&e->ports[i].name);
    }
    cm_free(&e->ports);
    cm_free(&e->id);
    cm_free(&e->version);
    e->nports = 0;
}

int dns_state_cache_new(struct dns_state_cache **ret_cache)
{
    struct dns_state_cache *c = cm_calloc(1, sizeof(*c));
    if (c == NULL) {
        return CM_ENOMEM;
    }
    *ret_cache = c;
    return 0;
}

static void cache_clear(struct dns_state_cache *c)
{
    for (size_t i = 0; i < c->n; i++) {
        app_ent_done(&c->v[i]);
    }
    cm_free(&c->v);
    c->n = 0;
}

void dns_state_cache_free(struct dns_state_cache *c)
{
    if (c == NULL) {
        return;
    }
    cache_clear(c);
    cm_free_raw(c);
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static unsigned proto_bits(enum cm_app_proto p)
{
    switch (p) {
    case CM_APP_PROTO_UDP:
        return DNS_PROTO_UDP;
    case CM_APP_PROTO_UDP_TCP:
        return DNS_PROTO_TCP | DNS_PROTO_UDP;
    case CM_APP_PROTO_TCP:
    default:
        return DNS_PROTO_TCP;
    }
}

static int add_port(struct app_ent *e, const char *name, enum cm_app_proto proto)
{
    struct port_desc *p = &e->ports[e->nports];
    p->protocols = proto_bits(proto);
    p->name = NULL;
    if (name != NULL && (p->name = cm_strdup(name)) == NULL) {
        return CM_ENOMEM;
    }
    e->nports++;
    return 0;
}

/* The ports of an app in the order the leader allocates host ports: the
 * portDefinitions with host networking, else the port mappings that ask for a
 * host port (hostPort -1 means container only). */
static int app_ent_fill(struct app_ent *e, const struct cm_app *app)
{
    bool host = app->n_networks == 0 || app->networks[0].mode == CM_APP_NET_HOST;
    size_t n = host ? app->n_port_defs : app->container.n_port_mappings;
    e->has_health_checks = app->n_health_checks > 0;
    if (n == 0) {
        return 0;
    }
    e->ports = cm_calloc(n, sizeof(*e->ports));
    if (e->ports == NULL) {
        return CM_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        int rv = 0;
        if (host) {
            rv = add_port(e, app->port_defs[i].name, app->port_defs[i].proto);
        } else if (app->container.port_mappings[i].host_port >= 0) {
            const struct cm_app_port_mapping *m = &app->container.port_mappings[i];
            rv = add_port(e, m->name, m->proto);
        }
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ build state */

struct task_ent {
    size_t id, app, node; /* offsets into strs */
    struct dns_addr host;
    bool has_host;
    enum dns_health health_raw; /* HEALTHY/UNHEALTHY/UNKNOWN as reported */
    size_t ports, nports;       /* into ports */
};

struct node_ent {
    size_t id; /* offset into strs */
    struct dns_addr addr;
    bool has_addr;
};

struct build {
    struct cm_state *s;
    struct dns_state_cache *old;
    struct dns_state_cache next;
    size_t next_cap;
    struct cm_buf strs; /* NUL-terminated strings */
    struct task_ent *tasks;
    size_t ntasks, cap_tasks;
    uint16_t *ports;
    size_t nports, cap_ports;
    struct node_ent *nodes;
    size_t nnodes, cap_nodes;
    struct dns_state_report rep;
    int err;
};

static int str_add(struct build *b, const char *s, size_t *ret_off)
{
    size_t off = b->strs.len;
    int rv = cm_buf_append(&b->strs, s, strlen(s) + 1);
    if (rv == 0) {
        *ret_off = off;
    }
    return rv;
}

static const char *str_at(const struct build *b, size_t off)
{
    return b->strs.data + off;
}

static int grow(void **v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) {
        return 0;
    }
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need) {
        n *= 2;
    }
    void *p = cm_reallocarray(*v, n, size);
    if (p == NULL) {
        return CM_ENOMEM;
    }
    *v = p;
    *cap = n;
    return 0;
}

/* "10.0.0.1", or "10.0.0.1:7071" / "[fd00::1]:7071" (an address with a port). */
static bool parse_host(const char *s, struct dns_addr *ret)
{
    if (s == NULL) {
        return false;
    }
    if (dns_addr_parse(s, ret) == 0) {
        return true;
    }
    char host[64];
    uint16_t port;
    return cm_parse_hostport(s, host, sizeof(host), &port) == 0 &&
           dns_addr_parse(host, ret) == 0;
}

static int cmp_ent_id(const void *key, const void *elem)
{
    return strcmp(key, ((const struct app_ent *)elem)->id);
}

static int cmp_ent(const void *a, const void *b)
{
    return strcmp(((const struct app_ent *)a)->id, ((const struct app_ent *)b)->id);
}

static int app_cb(void *data, const struct cm_app_row *row)
{
    struct build *b = data;
    size_t speclen = strlen(row->spec);
    uint64_t h = fnv1a(row->spec, speclen);
    if (grow((void **)&b->next.v, &b->next_cap, b->next.n + 1, sizeof(*b->next.v)) != 0) {
        return CM_ENOMEM;
    }
    b->rep.apps++;
    struct app_ent *e = &b->next.v[b->next.n];
    struct app_ent *old = NULL;
    if (b->old->n > 0) {
        old = bsearch(row->id, b->old->v, b->old->n, sizeof(*old), cmp_ent_id);
    }
    if (old != NULL && old->spec_hash == h && old->spec_len == speclen &&
        strcmp(old->version, row->version) == 0) {
        *e = *old;
        old->moved = true;
        b->next.n++;
        return 0;
    }
    memset(e, 0, sizeof(*e));
    e->id = cm_strdup(row->id);
    e->version = cm_strdup(row->version);
    e->spec_hash = h;
    e->spec_len = speclen;
    b->next.n++; /* owned by next from here, freed with it on failure */
    if (e->id == NULL || e->version == NULL) {
        return CM_ENOMEM;
    }
    struct cm_app *app = NULL;
    int rv = cm_app_from_canonical(row->spec, speclen, &app);
    b->rep.parsed_specs++;
    if (rv == CM_ENOMEM) {
        return rv;
    }
    if (rv == 0) {
        rv = app_ent_fill(e, app);
        cm_app_free(app);
        return rv;
    }
    /* A spec that does not parse (it cannot happen: apply validated it): the
     * app keeps unnamed TCP ports and counts as having no health checks. */
    return 0;
}

/* "[31000, 31001]" into b->ports. The column is written by apply from a
 * validated array; a malformed one gives no ports rather than an error. */
static int parse_ports(struct build *b, const char *s, size_t *ret_off, size_t *ret_n)
{
    *ret_off = b->nports;
    *ret_n = 0;
    if (s == NULL) {
        return 0;
    }
    const char *p = s;
    while (*p == ' ') {
        p++;
    }
    if (*p++ != '[') {
        return 0;
    }
    uint16_t tmp[PORTS_PER_TASK_MAX];
    size_t n = 0;
    for (;;) {
        while (*p == ' ' || *p == ',') {
            p++;
        }
        if (*p == ']' || *p == '\0') {
            break;
        }
        long v = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 6) {
            v = v * 10 + (*p++ - '0');
            digits++;
        }
        if (digits == 0 || v > 65535) {
            return 0;
        }
        /* Port 0 means "none allocated": keep the position, drop it later. */
        if (n < PORTS_PER_TASK_MAX) {
            tmp[n++] = (uint16_t)v;
        }
    }
    if (grow((void **)&b->ports, &b->cap_ports, b->nports + n, sizeof(*b->ports)) != 0) {
        return CM_ENOMEM;
    }
    memcpy(b->ports + b->nports, tmp, n * sizeof(*tmp));
    b->nports += n;
    *ret_n = n;
    return 0;
}

static int task_cb(void *data, const struct cm_task_row *row)
{
    struct build *b = data;
    if (row->state != CM_TASK_RUNNING) {
        return 0; /* DESIGN.md §8: only running (and healthy) tasks are in DNS */
    }
    if (grow((void **)&b->tasks, &b->cap_tasks, b->ntasks + 1, sizeof(*b->tasks)) != 0) {
        return CM_ENOMEM;
    }
    struct task_ent *t = &b->tasks[b->ntasks];
    memset(t, 0, sizeof(*t));
    int rv;
    if ((rv = str_add(b, row->id, &t->id)) != 0 ||
        (rv = str_add(b, row->app, &t->app)) != 0 ||
        (rv = str_add(b, row->node, &t->node)) != 0 ||
        (rv = parse_ports(b, row->ports, &t->ports, &t->nports)) != 0) {
        return rv;
    }
    t->has_host = parse_host(row->host, &t->host);
    if (row->health == NULL) {
        t->health_raw = DNS_HEALTH_UNKNOWN;
    } else if (strcmp(row->health, "healthy") == 0) {
        t->health_raw = DNS_HEALTH_HEALTHY;
    } else {
        t->health_raw = DNS_HEALTH_UNHEALTHY;
    }
    b->ntasks++;
    b->rep.tasks++;
    return 0;
}

static int node_cb(void *data, const struct cm_node_row *row)
{
    struct build *b = data;
    if (row->state != NULL && strcmp(row->state, "down") == 0) {
        return 0;
    }
    if (grow((void **)&b->nodes, &b->cap_nodes, b->nnodes + 1, sizeof(*b->nodes)) != 0) {
        return CM_ENOMEM;
    }
    struct node_ent *n = &b->nodes[b->nnodes];
    memset(n, 0, sizeof(*n));
    int rv = str_add(b, row->id, &n->id);
    if (rv != 0) {
        return rv;
    }
    n->has_addr = parse_host(row->address, &n->addr);
    b->nnodes++;
    return 0;
}

/* qsort has no context argument: the string arena is passed through this. */
static _Thread_local const char *sort_strs;

static int cmp_task(const void *a, const void *b)
{
    const struct task_ent *x = a, *y = b;
    int c = strcmp(sort_strs + x->app, sort_strs + y->app);
    return c != 0 ? c : strcmp(sort_strs + x->id, sort_strs + y->id);
}

static int cmp_node_id(const void *a, const void *b)
{
    const struct node_ent *x = a, *y = b;
    return strcmp(sort_strs + x->id, sort_strs + y->id);
}

static const struct node_ent *find_node(const struct build *b, const char *id)
{
    size_t lo = 0, hi = b->nnodes;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(id, str_at(b, b->nodes[mid].id));
        if (c == 0) {
            return &b->nodes[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

/* First task of @app in the sorted task array, or b->ntasks. */
static size_t tasks_lower_bound(const struct build *b, const char *app)
{
    size_t lo = 0, hi = b->ntasks;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(str_at(b, b->tasks[mid].app), app) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Scratch for one app's dns_task/dns_port arrays, reused across apps. */
struct app_scratch {
    struct dns_task *tasks;
    size_t cap_tasks;
    struct dns_port *ports;
    size_t cap_ports;
};

static int add_app(struct build *b, struct dns_zone_builder *zb, struct app_scratch *sc,
                   const struct app_ent *e)
{
    size_t first = tasks_lower_bound(b, e->id);
    size_t last = first;
    size_t nports = 0;
    while (last < b->ntasks && strcmp(str_at(b, b->tasks[last].app), e->id) == 0) {
        nports += b->tasks[last].nports;
        last++;
    }
    if (grow((void **)&sc->tasks, &sc->cap_tasks, last - first + 1, sizeof(*sc->tasks)) !=
            0 ||
        grow((void **)&sc->ports, &sc->cap_ports, nports + 1, sizeof(*sc->ports)) != 0) {
        return CM_ENOMEM;
    }
    size_t nt = 0, np = 0;
    for (size_t i = first; i < last; i++) {
        const struct task_ent *t = &b->tasks[i];
        struct dns_task *d = &sc->tasks[nt];
        memset(d, 0, sizeof(*d));
        d->id = str_at(b, t->id);
        d->node = str_at(b, t->node);
        if (t->has_host) {
            d->host = t->host;
        } else {
            const struct node_ent *n = find_node(b, d->node);
            if (n == NULL || !n->has_addr) {
                b->rep.skipped_tasks++;
                continue;
            }
            d->host = n->addr;
        }
        d->state = DNS_TASK_RUNNING;
        d->health = e->has_health_checks ? t->health_raw : DNS_HEALTH_NONE;
        d->ports = sc->ports + np;
        for (size_t k = 0; k < t->nports; k++) {
            uint16_t port = b->ports[t->ports + k];
            if (port == 0) {
                continue;
            }
            struct dns_port *p = &sc->ports[np++];
            p->port = port;
            p->name = k < e->nports ? e->ports[k].name : NULL;
            p->protocols = k < e->nports ? e->ports[k].protocols : DNS_PROTO_TCP;
            d->nports++;
        }
        nt++;
    }
    /* Tasks that were never matched to an app row (the app is gone) are left
     * out: they are being killed. */
    struct dns_app app = {.path = e->id, .tasks = sc->tasks, .ntasks = nt};
    int rv = dns_zone_add_app(zb, &app);
    if (rv == CM_EINVAL || rv == CM_ETOOBIG) {
        b->rep.skipped_apps++;
        rv = 0;
    }
    return rv;
}

static int vip_cb(void *data, const struct cm_vip_row *row)
{
    struct dns_zone_builder *zb = data;
    char path[DNS_NAME_MAX + 2];
    struct dns_addr addr;
    if ((size_t)snprintf(path, sizeof(path), "/%s", row->name) >= sizeof(path) ||
        dns_addr_parse(row->address, &addr) != 0) {
        return 0; /* not a name DNS can carry; the VIP still works by address */
    }
    int rv = dns_zone_add_vip(zb, path, &addr);
    return rv == CM_ENOMEM ? rv : 0;
}

static int build_zone(struct build *b, const struct dns_zone_config *cfg,
                      const struct dns_state_info *info, struct dns_zone **ret_zone)
{
    int rv;
    if ((rv = cm_state_nodes(b->s, node_cb, b)) != 0 ||
        (rv = cm_state_apps(b->s, NULL, app_cb, b)) != 0 ||
        (rv = cm_state_tasks(b->s, NULL, NULL, task_cb, b)) != 0) {
        return rv;
    }
    sort_strs = b->strs.data;
    if (b->ntasks > 1) {
        qsort(b->tasks, b->ntasks, sizeof(*b->tasks), cmp_task);
    }
    if (b->nnodes > 1) {
        qsort(b->nodes, b->nnodes, sizeof(*b->nodes), cmp_node_id);
    }
    sort_strs = NULL;

    struct dns_zone_config c = *cfg;
    if (c.serial == 0) {
        c.serial = (uint32_t)cm_state_applied_index(b->s);
    }
    char domain[DNS_NAME_MAX + 1];
    const char *d = cfg->domain != NULL ? cfg->domain : "cluster";
    size_t dl = strlen(d);
    if (dl > 0 && d[dl - 1] == '.') {
        dl--;
    }
    if (dl == 0 || dl >= sizeof(domain)) {
        return CM_EINVAL;
    }
    memcpy(domain, d, dl);
    domain[dl] = '\0';

    struct dns_zone_builder *zb;
    if ((rv = dns_zone_builder_new(&c, &zb)) != 0) {
        return rv;
    }
    for (size_t i = 0; i < b->nnodes; i++) {
        const struct node_ent *n = &b->nodes[i];
        if (!n->has_addr) {
            continue;
        }
        char label[DNS_LABEL_MAX + 1];
        char nsname[DNS_NAME_MAX + 1];
        if ((rv = dns_zone_add_node(zb, str_at(b, n->id), &n->addr)) == 0 &&
            cm_app_mesos_dns_label(str_at(b, n->id), false, label, sizeof(label)) == 0 &&
            label[0] != '\0' &&
            (size_t)snprintf(nsname, sizeof(nsname), "%s.node.%s", label, domain) <
                sizeof(nsname)) {
            rv = dns_zone_add_ns(zb, nsname, &n->addr);
        }
        if (rv == CM_ENOMEM) {
            goto err_after_builder;
        }
        b->rep.nodes++;
    }
    struct dns_addr leader;
    bool have_leader = false;
    if (info->leader_addr != NULL) {
        leader = *info->leader_addr;
        have_leader = true;
    } else if (info->leader != NULL) {
        const struct node_ent *n = find_node(b, info->leader);
        if (n != NULL && n->has_addr) {
            leader = n->addr;
            have_leader = true;
        }
    }
    if (have_leader && (rv = dns_zone_add_leader(zb, &leader)) == CM_ENOMEM) {
        goto err_after_builder;
    }
    for (size_t i = 0; i < info->nvips; i++) {
        if ((rv = dns_zone_add_vip(zb, info->vips[i].path, &info->vips[i].addr)) ==
            CM_ENOMEM) {
            goto err_after_builder;
        }
    }
    /* Named VIPs the leader allocated (table vips): "web" answers as
     * web.vip.<domain>, "shop/web" as web.shop.vip.<domain>. */
    if ((rv = cm_state_vips(b->s, vip_cb, zb)) == CM_ENOMEM) {
        goto err_after_builder;
    }
    struct app_scratch sc = {0};
    for (size_t i = 0; i < b->next.n; i++) {
        if ((rv = add_app(b, zb, &sc, &b->next.v[i])) != 0) {
            break;
        }
    }
    cm_free(&sc.tasks);
    cm_free(&sc.ports);
    if (rv != 0) {
        goto err_after_builder;
    }
    return dns_zone_build(zb, ret_zone);

err_after_builder:
    dns_zone_builder_free(zb);
    return rv;
}

int dns_zone_from_state(struct cm_state *s, const struct dns_zone_config *cfg,
                        const struct dns_state_info *info, struct dns_zone **ret_zone,
                        struct dns_state_report *ret_report)
{
    static const struct dns_state_info no_info;
    struct dns_state_cache tmp = {0};
    if (s == NULL || cfg == NULL || ret_zone == NULL) {
        return CM_EINVAL;
    }
    if (info == NULL) {
        info = &no_info;
    }
    struct build b = {.s = s, .old = info->cache != NULL ? info->cache : &tmp};
    struct dns_zone *z = NULL;
    int rv = build_zone(&b, cfg, info, &z);
    if (rv == 0) {
        /* The cache now holds this build's apps; entries of deleted apps (and
         * moved-out husks) are freed. */
        cache_clear(b.old);
        if (b.next.n > 1) {
            qsort(b.next.v, b.next.n, sizeof(*b.next.v), cmp_ent);
        }
        *b.old = b.next;
        memset(&b.next, 0, sizeof(b.next));
        *ret_zone = z;
        if (ret_report != NULL) {
            *ret_report = b.rep;
        }
    } else {
        /* Entries moved into the failed build are freed with it below: the old
         * cache cannot keep pointing at them. */
        cache_clear(b.old);
    }
    cache_clear(&b.next);
    cache_clear(&tmp);
    cm_buf_done(&b.strs);
    cm_free(&b.tasks);
    cm_free(&b.ports);
    cm_free(&b.nodes);
    return rv;
}
