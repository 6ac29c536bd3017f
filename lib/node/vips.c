/* L4 virtual IPs on this node (DESIGN.md §9): the leader's named-VIP allocation,
 * the VIP table built from the replica, and the runner that programs it (rtnetlink
 * addresses on lo, the nft table in nat mode, the userspace proxy). See vips.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "node/vips.h"
#include "state/db.h"
#include "state/state.h"

#define VIP_IFNAME "lo"

/* ------------------------------------------------------------------ declarations */

/* One VIP an app asks for, with where its backends listen. */
struct vip_decl {
    struct lb_decl d;
    size_t port_index; /* index into the task's host ports */
    bool proxy_protocol;
};

struct app_decls {
    struct vip_decl *v;
    size_t n;
    bool has_health_checks;
    int err;
};

static void decl_add(struct app_decls *a, const struct lb_decl *d, size_t port_index,
                     bool pp)
{
    if (a->err != 0) {
        return;
    }
    struct vip_decl *v = cm_reallocarray(a->v, a->n + 1, sizeof(*v));
    if (v == NULL) {
        a->err = CM_ENOMEM;
        return;
    }
    a->v = v;
    a->v[a->n++] = (struct vip_decl){*d, port_index, pp};
}

static bool wants_proxy_protocol(const struct cm_app_labels *l)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].key, CM_VIP_PROXY_PROTOCOL_LABEL) == 0) {
            const char *v = l->v[i].value;
            return strcasecmp(v, "v2") == 0 || strcmp(v, "2") == 0 ||
                   strcasecmp(v, "true") == 0;
        }
    }
    return false;
}

/* The labels of one port; "udp,tcp" declares both protocols. Labels lb refuses
 * (IPv6 addresses) were accepted by the app validator and are skipped here. */
static void port_decls(struct app_decls *a, const struct cm_app_labels *l,
                       enum cm_app_proto proto, size_t port_index)
{
    bool pp = wants_proxy_protocol(l);
    for (size_t i = 0; i < l->n; i++) {
        for (int k = 0; k < 2; k++) {
            enum lb_proto lp = k == 0 ? LB_PROTO_TCP : LB_PROTO_UDP;
            if ((k == 0 && proto == CM_APP_PROTO_UDP) ||
                (k == 1 && proto == CM_APP_PROTO_TCP)) {
                continue;
            }
            struct lb_decl d;
            if (lb_port_label_parse(l->v[i].key, l->v[i].value, lp, &d, NULL) == 0) {
                decl_add(a, &d, port_index, pp);
            }
        }
    }
}

/* Every VIP @app declares. Host ports are allocated in the order of the
 * portDefinitions (host networking) or of the port mappings that have a host
 * port (bridge), as the DNS zone reads them. */
static int app_decls_of(const struct cm_app *app, struct app_decls *out)
{
    memset(out, 0, sizeof(*out));
    out->has_health_checks = app->n_health_checks > 0;
    bool host = app->n_networks == 0 || app->networks[0].mode == CM_APP_NET_HOST;
    size_t n = host ? app->n_port_defs : app->container.n_port_mappings;
    /* index of app port i among the host ports, SIZE_MAX: none */
    size_t *hp = cm_calloc(n + 1, sizeof(*hp));
    if (hp == NULL) {
        return CM_ENOMEM;
    }
    size_t next = 0;
    for (size_t i = 0; i < n; i++) {
        if (host) {
            hp[i] = next++;
            port_decls(out, &app->port_defs[i].labels, app->port_defs[i].proto, hp[i]);
        } else if (app->container.port_mappings[i].host_port >= 0) {
            const struct cm_app_port_mapping *m = &app->container.port_mappings[i];
            hp[i] = next++;
            port_decls(out, &m->labels, m->proto, hp[i]);
        } else {
            hp[i] = SIZE_MAX; /* container-only port: not reachable from the host */
        }
    }
    for (size_t i = 0; i < app->labels.n; i++) {
        struct lb_decl d;
        if (lb_app_label_parse(app->labels.v[i].key, app->labels.v[i].value, &d, NULL) ==
                0 &&
            d.port_index >= 0 && (size_t)d.port_index < n &&
            hp[d.port_index] != SIZE_MAX) {
            decl_add(out, &d, hp[d.port_index], false);
        }
    }
    cm_free(&hp);
    if (out->err != 0) {
        cm_free(&out->v);
    }
    return out->err;
}

/* ------------------------------------------------------------------ replica scan */

struct vip_name {
    char *name;
    struct in_addr addr;
};

struct app_copy {
    char *id;
    struct cm_app *spec;
};

struct scan {
    struct vip_name *names; /* table vips, in name order */
    size_t n_names;
    struct app_copy *apps;
    size_t n_apps;
    int err;
};

static void scan_done(struct scan *sc)
{
    for (size_t i = 0; i < sc->n_names; i++) {
        cm_free(&sc->names[i].name);
    }
    cm_free(&sc->names);
    for (size_t i = 0; i < sc->n_apps; i++) {
        cm_free(&sc->apps[i].id);
        cm_app_free(sc->apps[i].spec);
    }
    cm_free(&sc->apps);
}

static int scan_vip(void *data, const struct cm_vip_row *row)
{
    struct scan *sc = data;
    struct in_addr a;
    if (inet_pton(AF_INET, row->address, &a) != 1) {
        return 0; /* validation keeps these out */
    }
    struct vip_name *v = cm_reallocarray(sc->names, sc->n_names + 1, sizeof(*v));
    if (v == NULL) {
        return CM_ENOMEM;
    }
    sc->names = v;
    v[sc->n_names].name = cm_strdup(row->name);
    if (v[sc->n_names].name == NULL) {
        return CM_ENOMEM;
    }
    v[sc->n_names++].addr = a;
    return 0;
}

static int scan_app(void *data, const struct cm_app_row *row)
{
    struct scan *sc = data;
    /* Every VIP label key starts with "VIP" or "vip" (any case for the legacy
     * app label): an app whose spec has no such key is not parsed, which keeps
     * a rebuild after a task change cheap for apps without VIPs. */
    if (strcasestr(row->spec, "\"vip") == NULL) {
        return 0;
    }
    struct cm_app *spec = NULL;
    int rv = cm_app_from_canonical(row->spec, strlen(row->spec), &spec);
    if (rv == CM_ENOMEM) {
        return rv;
    }
    if (rv != 0) {
        return 0; /* an unreadable spec declares nothing */
    }
    struct app_copy *a = cm_reallocarray(sc->apps, sc->n_apps + 1, sizeof(*a));
    if (a == NULL) {
        cm_app_free(spec);
        return CM_ENOMEM;
    }
    sc->apps = a;
    a[sc->n_apps].spec = spec;
    a[sc->n_apps].id = cm_strdup(row->id);
    if (a[sc->n_apps].id == NULL) {
        cm_app_free(spec);
        return CM_ENOMEM;
    }
    sc->n_apps++;
    return 0;
}

static int scan_load(struct cm_state *s, struct scan *sc)
{
    memset(sc, 0, sizeof(*sc));
    int rv = cm_state_vips(s, scan_vip, sc);
    if (rv == 0) {
        rv = cm_state_apps(s, NULL, scan_app, sc);
    }
    if (rv != 0) {
        scan_done(sc);
    }
    return rv;
}

static const struct vip_name *find_name(const struct scan *sc, const char *name)
{
    for (size_t i = 0; i < sc->n_names; i++) {
        if (strcmp(sc->names[i].name, name) == 0) {
            return &sc->names[i];
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ leader plan */

static bool in_list(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0) {
            return true;
        }
    }
    return false;
}

int cm_vips_plan(struct cm_state *s, const char *cidr_text, cJSON **ret_cmds,
                 struct cm_errbuf *eb)
{
    struct lb_cidr cidr;
    if (lb_cidr_parse(cidr_text, &cidr) != 0) {
        return cm_err_setf(eb, CM_EINVAL, "--vip-cidr: '%s' is not a CIDR", cidr_text);
    }
    struct scan sc;
    int rv = scan_load(s, &sc);
    if (rv != 0) {
        return cm_err_setf(eb, rv, "vips: reading the replica: %s", cm_strerror(rv));
    }
    char **declared = NULL; /* named VIPs the apps declare, first seen first */
    size_t n_declared = 0;
    struct lb_alloc_entry *taken = cm_calloc(sc.n_names + 1, sizeof(*taken));
    size_t n_taken = 0, cap_taken = sc.n_names + 1;
    cJSON *cmds = cJSON_CreateArray();
    cJSON *put = NULL, *del = NULL;
    if (taken == NULL || cmds == NULL) {
        rv = CM_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < sc.n_names; i++) {
        taken[n_taken++] = (struct lb_alloc_entry){sc.names[i].name, sc.names[i].addr};
    }
    /* Address VIPs take their address away from the allocator. */
    for (size_t i = 0; rv == 0 && i < sc.n_apps; i++) {
        struct app_decls d;
        rv = app_decls_of(sc.apps[i].spec, &d);
        for (size_t k = 0; rv == 0 && k < d.n; k++) {
            if (d.v[k].d.kind == LB_DECL_ADDR) {
                if (n_taken == cap_taken) {
                    struct lb_alloc_entry *t =
                        cm_reallocarray(taken, 2 * cap_taken, sizeof(*t));
                    if (t == NULL) {
                        rv = CM_ENOMEM;
                        break;
                    }
                    taken = t;
                    cap_taken *= 2;
                }
                taken[n_taken++] = (struct lb_alloc_entry){NULL, d.v[k].d.addr};
            } else if (!in_list(declared, n_declared, d.v[k].d.name)) {
                char **nd = cm_reallocarray(declared, n_declared + 1, sizeof(*nd));
                if (nd == NULL) {
                    rv = CM_ENOMEM;
                    break;
                }
                declared = nd;
                declared[n_declared] = cm_strdup(d.v[k].d.name);
                if (declared[n_declared] == NULL) {
                    rv = CM_ENOMEM;
                    break;
                }
                n_declared++;
            }
        }
        cm_free(&d.v);
    }
    if (rv != 0) {
        goto out;
    }
    /* Names no app declares any more free their address. */
    for (size_t i = 0; i < sc.n_names; i++) {
        if (in_list(declared, n_declared, sc.names[i].name)) {
            continue;
        }
        if (del == NULL) {
            del = cJSON_CreateObject();
            if (del == NULL ||
                cJSON_AddStringToObject(del, "type", "vip.delete") == NULL ||
                cJSON_AddArrayToObject(del, "names") == NULL) {
                rv = CM_ENOMEM;
                goto out;
            }
        }
        cJSON_AddItemToArray(cJSON_GetObjectItem(del, "names"),
                             cJSON_CreateString(sc.names[i].name));
    }
    /* New names get an address; each one is taken for the next. */
    for (size_t i = 0; i < n_declared; i++) {
        if (find_name(&sc, declared[i]) != NULL) {
            continue;
        }
        struct in_addr a;
        rv = lb_vip_alloc(&cidr, taken, n_taken, declared[i], &a);
        if (rv != 0) {
            cm_err_setf(eb, rv, "named VIP '/%s': no address in %s: %s", declared[i],
                        cidr_text, cm_strerror(rv));
            goto out;
        }
        if (n_taken == cap_taken) {
            struct lb_alloc_entry *t = cm_reallocarray(taken, 2 * cap_taken, sizeof(*t));
            if (t == NULL) {
                rv = CM_ENOMEM;
                goto out;
            }
            taken = t;
            cap_taken *= 2;
        }
        taken[n_taken++] = (struct lb_alloc_entry){declared[i], a};
        if (put == NULL) {
            put = cJSON_CreateObject();
            if (put == NULL || cJSON_AddStringToObject(put, "type", "vip.put") == NULL ||
                cJSON_AddArrayToObject(put, "vips") == NULL) {
                rv = CM_ENOMEM;
                goto out;
            }
        }
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a, text, sizeof(text));
        cJSON *e = cJSON_CreateObject();
        if (e == NULL || cJSON_AddStringToObject(e, "name", declared[i]) == NULL ||
            cJSON_AddStringToObject(e, "address", text) == NULL) {
            cJSON_Delete(e);
            rv = CM_ENOMEM;
            goto out;
        }
        cJSON_AddItemToArray(cJSON_GetObjectItem(put, "vips"), e);
    }
    if (del != NULL) {
        cJSON_AddItemToArray(cmds, del);
        del = NULL;
    }
    if (put != NULL) {
        cJSON_AddItemToArray(cmds, put);
        put = NULL;
    }
    *ret_cmds = cmds;
    cmds = NULL;
out:
    if (rv == CM_ENOMEM) {
        cm_err_setf(eb, rv, "vips: out of memory");
    }
    cJSON_Delete(put);
    cJSON_Delete(del);
    cJSON_Delete(cmds);
    for (size_t i = 0; i < n_declared; i++) {
        cm_free(&declared[i]);
    }
    cm_free(&declared);
    cm_free(&taken);
    scan_done(&sc);
    return rv;
}

cJSON *cm_vips_plan_cmds(struct cm_state *s, const char *cidr)
{
    cJSON *cmds = NULL;
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    if (cidr == NULL) {
        return NULL;
    }
    if (cm_vips_plan(s, cidr, &cmds, &eb) != 0) {
        cm_warn("vips", "%s", eb.msg);
        return NULL;
    }
    if (cJSON_GetArraySize(cmds) == 0) {
        cJSON_Delete(cmds);
        return NULL;
    }
    return cmds;
}

/* ------------------------------------------------------------------ table build */

/* A task of a declaring app, as the operator's view shows it (cm_vips_view_json). */
struct view_task {
    char *id;
    char *app;
    struct lb_endpoint ep; /* address INADDR_ANY: unknown */
    const char *why;       /* static; NULL: a backend */
};

struct vip_acc {
    struct lb_vip_spec spec;
    struct lb_backend_spec *backends;
    size_t cap;
    struct lb_endpoint *fallback; /* draining tasks: used when no other backend */
    size_t n_fallback;
    char *name;
    /* the view only (build.view) */
    char **apps; /* the declaring apps */
    size_t n_apps;
    struct view_task *tasks;
    size_t n_tasks;
};

/* Whether a task of an app without health checks listens yet (the runner's
 * probes, below): @ask true also asks for a probe when none is known. */
struct vip_gate {
    bool (*listening)(void *data, const char *task, struct lb_endpoint ep, bool ask);
    void *data;
    bool ask;
};

struct build {
    struct vip_acc *v;
    size_t n;
    struct vip_name *nodes; /* node id -> address (reusing the pair type) */
    size_t n_nodes;
    /* the tasks of the app being added */
    const struct vip_decl *decls;
    size_t n_decls;
    const struct in_addr *vip_addrs; /* per decl; INADDR_ANY: not allocated */
    bool has_health_checks;
    const char *app_id; /* borrowed */
    bool view;          /* also record apps and every live task (vip_acc's view) */
    const struct vip_gate *gate; /* NULL: a running task without checks is a backend */
    int err;
};

static struct vip_acc *acc_get(struct build *b, struct lb_endpoint ep,
                               enum lb_proto proto, const char *name, bool pp)
{
    for (size_t i = 0; i < b->n; i++) {
        if (lb_endpoint_eq(b->v[i].spec.vip, ep) && b->v[i].spec.proto == proto) {
            /* Apps sharing a VIP: one asking for PROXY v2 makes it proxied. */
            if (pp) {
                b->v[i].spec.mode = LB_MODE_PROXY;
                b->v[i].spec.proxy_protocol = true;
            }
            return &b->v[i];
        }
    }
    struct vip_acc *v = cm_reallocarray(b->v, b->n + 1, sizeof(*v));
    if (v == NULL) {
        return NULL;
    }
    b->v = v;
    v = &b->v[b->n];
    memset(v, 0, sizeof(*v));
    if (name != NULL && (v->name = cm_strdup(name)) == NULL) {
        return NULL;
    }
    v->spec.vip = ep;
    v->spec.proto = proto;
    v->spec.name = v->name;
    v->spec.mode = pp ? LB_MODE_PROXY : LB_MODE_AUTO;
    v->spec.proxy_protocol = pp;
    b->n++;
    return v;
}

static int acc_add_backend(struct vip_acc *v, struct lb_endpoint ep)
{
    for (size_t i = 0; i < v->spec.nbackends; i++) {
        if (lb_endpoint_eq(v->backends[i].ep, ep)) {
            return 0;
        }
    }
    if (v->spec.nbackends == LB_MAX_BACKENDS) {
        return 0; /* lb's hard limit: the rest are left out */
    }
    if (v->spec.nbackends == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 4;
        struct lb_backend_spec *n = cm_reallocarray(v->backends, cap, sizeof(*n));
        if (n == NULL) {
            return CM_ENOMEM;
        }
        v->backends = n;
        v->cap = cap;
    }
    v->backends[v->spec.nbackends++] = (struct lb_backend_spec){ep, 1, false};
    v->spec.backends = v->backends;
    return 0;
}

static int load_node(void *data, const struct cm_node_row *row)
{
    struct build *b = data;
    struct in_addr a;
    if (row->address == NULL || inet_pton(AF_INET, row->address, &a) != 1) {
        return 0;
    }
    struct vip_name *n = cm_reallocarray(b->nodes, b->n_nodes + 1, sizeof(*n));
    if (n == NULL) {
        return CM_ENOMEM;
    }
    b->nodes = n;
    if ((n[b->n_nodes].name = cm_strdup(row->id)) == NULL) {
        return CM_ENOMEM;
    }
    n[b->n_nodes++].addr = a;
    return 0;
}

static int acc_add_app(struct vip_acc *v, const char *app)
{
    for (size_t i = 0; i < v->n_apps; i++) {
        if (strcmp(v->apps[i], app) == 0) {
            return 0;
        }
    }
    char **n = cm_reallocarray(v->apps, v->n_apps + 1, sizeof(*n));
    if (n == NULL) {
        return CM_ENOMEM;
    }
    v->apps = n;
    if ((v->apps[v->n_apps] = cm_strdup(app)) == NULL) {
        return CM_ENOMEM;
    }
    v->n_apps++;
    return 0;
}

static int acc_add_task(struct vip_acc *v, const char *id, const char *app,
                        struct lb_endpoint ep, const char *why)
{
    struct view_task *n = cm_reallocarray(v->tasks, v->n_tasks + 1, sizeof(*n));
    if (n == NULL) {
        return CM_ENOMEM;
    }
    v->tasks = n;
    struct view_task *t = &v->tasks[v->n_tasks];
    *t = (struct view_task){cm_strdup(id), cm_strdup(app), ep, why};
    if (t->id == NULL || t->app == NULL) {
        cm_free(&t->id);
        cm_free(&t->app);
        return CM_ENOMEM;
    }
    v->n_tasks++;
    return 0;
}

/* Why a live task of a declaring app is not a backend; NULL when it is one
 * (running and healthy, or its app has no health checks). */
static const char *why_not(const struct build *b, const struct cm_task_row *row)
{
    if (row->state == CM_TASK_KILLING) {
        return "draining"; /* to be stopped: out of the VIP for its drain time */
    }
    if (row->state != CM_TASK_RUNNING) {
        return "not running";
    }
    if (row->health != NULL) {
        return strcmp(row->health, "healthy") == 0 ? NULL : "unhealthy";
    }
    return b->has_health_checks ? "not yet healthy" : NULL; /* no verdict yet */
}

/* A task of the app being added: a backend of each of its VIPs when it runs and is
 * healthy (or its app has no health checks). The view also records the others
 * that are not over yet, with why they are not backends. */
static int add_task(void *data, const struct cm_task_row *row)
{
    struct build *b = data;
    if (cm_task_state_terminal(row->state)) {
        return 0;
    }
    const char *why = why_not(b, row);
    if (why != NULL && !b->view && row->state != CM_TASK_KILLING) {
        return 0; /* draining tasks may still be a VIP's fallback */
    }
    struct in_addr host = {INADDR_ANY};
    bool have = row->host != NULL && inet_pton(AF_INET, row->host, &host) == 1;
    for (size_t i = 0; !have && i < b->n_nodes; i++) {
        if (strcmp(b->nodes[i].name, row->node) == 0) {
            host = b->nodes[i].addr;
            have = true;
        }
    }
    if (!have) {
        if (!b->view) {
            return 0;
        }
        why = why != NULL ? why : "no address";
    }
    cJSON *ports = cJSON_Parse(row->ports);
    if (ports == NULL && row->ports != NULL) {
        return CM_ENOMEM; /* the leader wrote it from validated input */
    }
    int rv = 0;
    for (size_t k = 0; rv == 0 && k < b->n_decls; k++) {
        if (b->vip_addrs[k].s_addr == INADDR_ANY) {
            continue;
        }
        const cJSON *p = cJSON_GetArrayItem(ports, (int)b->decls[k].port_index);
        if (!cJSON_IsNumber(p) || p->valuedouble < 1 || p->valuedouble > 65535) {
            continue;
        }
        struct lb_endpoint vip = {b->vip_addrs[k], b->decls[k].d.port};
        struct lb_endpoint be = {host, (uint16_t)p->valuedouble};
        struct vip_acc *v =
            acc_get(b, vip, b->decls[k].d.proto,
                    b->decls[k].d.kind == LB_DECL_NAMED ? b->decls[k].d.name : NULL,
                    b->decls[k].proxy_protocol);
        if (v == NULL) {
            rv = CM_ENOMEM;
            break;
        }
        /* Without health checks nothing says when the task listens: the runner
         * connects once to see (a backend refusing new connections would fail
         * clients in nat mode while it starts). */
        const char *why_k = why;
        if (why_k == NULL && !b->has_health_checks && b->gate != NULL &&
            !b->gate->listening(b->gate->data, row->id, be, b->gate->ask)) {
            why_k = "not yet listening";
        }
        if (why_k == NULL) {
            rv = acc_add_backend(v, be);
        } else if (row->state == CM_TASK_KILLING) {
            struct lb_endpoint *f =
                cm_reallocarray(v->fallback, v->n_fallback + 1, sizeof(*f));
            rv = f == NULL ? CM_ENOMEM : 0;
            if (f != NULL) {
                v->fallback = f;
                v->fallback[v->n_fallback++] = be;
            }
        }
        if (rv == 0 && b->view) {
            rv = acc_add_task(v, row->id, b->app_id, be, why_k);
        }
    }
    cJSON_Delete(ports);
    return rv;
}

static void build_done(struct build *b)
{
    for (size_t i = 0; i < b->n; i++) {
        struct vip_acc *v = &b->v[i];
        cm_free(&v->backends);
        cm_free(&v->fallback);
        cm_free(&v->name);
        for (size_t k = 0; k < v->n_apps; k++) {
            cm_free(&v->apps[k]);
        }
        cm_free(&v->apps);
        for (size_t k = 0; k < v->n_tasks; k++) {
            cm_free(&v->tasks[k].id);
            cm_free(&v->tasks[k].app);
        }
        cm_free(&v->tasks);
    }
    cm_free(&b->v);
    for (size_t i = 0; i < b->n_nodes; i++) {
        cm_free(&b->nodes[i].name);
    }
    cm_free(&b->nodes);
}

/* Every VIP the apps of the replica declare, with its backends (and, with
 * @view, its apps and live tasks) into @b; build_done releases it either way. */
static int build_run(struct cm_state *s, bool view, const struct vip_gate *gate,
                     struct build *b, struct cm_errbuf *eb)
{
    memset(b, 0, sizeof(*b));
    b->view = view;
    b->gate = gate;
    struct scan sc;
    int rv = scan_load(s, &sc);
    if (rv != 0) {
        return cm_err_setf(eb, rv, "vips: reading the replica: %s", cm_strerror(rv));
    }
    rv = cm_state_nodes(s, load_node, b);
    for (size_t i = 0; rv == 0 && i < sc.n_apps; i++) {
        struct app_decls d;
        rv = app_decls_of(sc.apps[i].spec, &d);
        if (rv != 0 || d.n == 0) {
            continue;
        }
        struct in_addr *addrs = cm_calloc(d.n, sizeof(*addrs));
        if (addrs == NULL) {
            cm_free(&d.v);
            rv = CM_ENOMEM;
            break;
        }
        for (size_t k = 0; rv == 0 && k < d.n; k++) {
            const struct vip_name *nm =
                d.v[k].d.kind == LB_DECL_NAMED ? find_name(&sc, d.v[k].d.name) : NULL;
            addrs[k] = d.v[k].d.kind == LB_DECL_ADDR ? d.v[k].d.addr
                       : nm != NULL                  ? nm->addr
                                                     : (struct in_addr){INADDR_ANY};
            if (addrs[k].s_addr == INADDR_ANY) {
                continue;
            }
            /* Listed even without a running task, so that clients are refused
             * rather than sent elsewhere. */
            struct vip_acc *v =
                acc_get(b, (struct lb_endpoint){addrs[k], d.v[k].d.port}, d.v[k].d.proto,
                        d.v[k].d.kind == LB_DECL_NAMED ? d.v[k].d.name : NULL,
                        d.v[k].proxy_protocol);
            rv = v == NULL ? CM_ENOMEM : view ? acc_add_app(v, sc.apps[i].id) : 0;
        }
        b->decls = d.v;
        b->n_decls = d.n;
        b->vip_addrs = addrs;
        b->has_health_checks = d.has_health_checks;
        b->app_id = sc.apps[i].id;
        if (rv == 0) {
            rv = cm_state_tasks(s, sc.apps[i].id, NULL, add_task, b);
        }
        b->decls = NULL;
        b->vip_addrs = NULL;
        b->app_id = NULL;
        cm_free(&addrs);
        cm_free(&d.v);
    }
    /* A VIP with no backend but tasks still draining (alive until their drain
     * time ends) sends new clients to those rather than refuse them: during a
     * rolling restart every old task can be draining before a new one listens. */
    for (size_t i = 0; rv == 0 && i < b->n; i++) {
        struct vip_acc *v = &b->v[i];
        if (v->spec.nbackends > 0 || v->n_fallback == 0) {
            continue;
        }
        for (size_t k = 0; rv == 0 && k < v->n_fallback; k++) {
            rv = acc_add_backend(v, v->fallback[k]);
        }
        for (size_t k = 0; k < v->n_tasks; k++) {
            if (v->tasks[k].why != NULL && strcmp(v->tasks[k].why, "draining") == 0) {
                v->tasks[k].why = NULL; /* the view: serving after all */
            }
        }
    }
    if (rv != 0) {
        cm_err_setf(eb, rv, "vips: building the table: %s", cm_strerror(rv));
    }
    scan_done(&sc);
    return rv;
}

static int build_table(struct cm_state *s, const struct vip_gate *gate,
                       const struct lb_table *prev, struct lb_table **ret,
                       struct cm_errbuf *eb)
{
    struct build b;
    int rv = build_run(s, false, gate, &b, eb);
    if (rv == 0) {
        struct lb_vip_spec *specs = cm_calloc(b.n + 1, sizeof(*specs));
        if (specs == NULL) {
            rv = cm_err_setf(eb, CM_ENOMEM, "vips: out of memory");
        } else {
            for (size_t i = 0; i < b.n; i++) {
                specs[i] = b.v[i].spec;
            }
            rv = lb_table_new(specs, b.n, prev, ret, eb);
            cm_free(&specs);
        }
    }
    build_done(&b);
    return rv;
}

int cm_vips_build(struct cm_state *s, const struct lb_table *prev, struct lb_table **ret,
                  struct cm_errbuf *eb)
{
    return build_table(s, NULL, prev, ret, eb);
}

/* ------------------------------------------------------------------ ops view */

/* What serves @v on a node whose AUTO VIPs go to nat (@auto_is_nat) or the proxy:
 * "nat", "proxy", or "none" for a UDP VIP left to the proxy, which serves TCP only. */
static const char *view_mode(const struct lb_vip *v, bool auto_is_nat)
{
    bool nat = v->mode == LB_MODE_NAT || (v->mode == LB_MODE_AUTO && auto_is_nat);
    if (nat) {
        return "nat";
    }
    return v->proto == LB_PROTO_TCP ? "proxy" : "none";
}

/* "EADDRINUSE" for errno @e (either sign). */
static const char *errno_name(int e, char *buf, size_t cap)
{
    e = e < 0 ? -e : e;
    const char *n = strerrorname_np(e);
    if (n != NULL) {
        return n;
    }
    snprintf(buf, cap, "errno %d", e);
    return buf;
}

static const struct vip_acc *acc_find(const struct build *b, const struct lb_vip *v)
{
    for (size_t i = 0; i < b->n; i++) {
        if (lb_endpoint_eq(b->v[i].spec.vip, v->vip) && b->v[i].spec.proto == v->proto) {
            return &b->v[i];
        }
    }
    return NULL;
}

static bool add_str_or_null(cJSON *o, const char *key, const char *value)
{
    return (value != NULL ? cJSON_AddStringToObject(o, key, value)
                          : cJSON_AddNullToObject(o, key)) != NULL;
}

/* One backend of the table (@be; @t its task, may be NULL) or one task that is not
 * a backend (@be NULL). @counted: the proxy counts @be's connections. */
static cJSON *backend_json(const struct lb_backend *be, const struct view_task *t,
                           bool counted)
{
    struct lb_endpoint ep = be != NULL ? be->ep : t->ep;
    char host[INET_ADDRSTRLEN];
    const char *h = ep.addr.s_addr != INADDR_ANY
                        ? inet_ntop(AF_INET, &ep.addr, host, sizeof(host))
                        : NULL;
    const char *why;
    if (be != NULL) {
        why = be->eligible ? NULL : be->draining ? "draining" : "unhealthy";
    } else {
        /* A backend in the replica that the programmed table does not have yet. */
        why = t->why != NULL ? t->why : "not programmed yet";
    }
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && add_str_or_null(o, "taskId", t != NULL ? t->id : NULL) &&
              add_str_or_null(o, "appId", t != NULL ? t->app : NULL) &&
              add_str_or_null(o, "host", h) &&
              cJSON_AddNumberToObject(o, "port", ep.port) != NULL &&
              cJSON_AddBoolToObject(o, "eligible", why == NULL) != NULL &&
              add_str_or_null(o, "reason", why);
    if (ok) {
        ok = be != NULL && counted
                 ? cJSON_AddNumberToObject(o, "activeConnections",
                                           lb_backend_active(be)) != NULL
                 : cJSON_AddNullToObject(o, "activeConnections") != NULL;
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static bool add_backends(cJSON *arr, const struct lb_vip *v, const struct vip_acc *acc,
                         bool counted)
{
    for (size_t i = 0; i < v->nbackends; i++) {
        const struct view_task *t = NULL;
        for (size_t k = 0; acc != NULL && t == NULL && k < acc->n_tasks; k++) {
            if (acc->tasks[k].why == NULL &&
                lb_endpoint_eq(acc->tasks[k].ep, v->backends[i].ep)) {
                t = &acc->tasks[k];
            }
        }
        if (!cJSON_AddItemToArray(arr, backend_json(&v->backends[i], t, counted))) {
            return false;
        }
    }
    /* Then the tasks that are not backends, and say why. */
    for (size_t k = 0; acc != NULL && k < acc->n_tasks; k++) {
        const struct view_task *t = &acc->tasks[k];
        bool in_table = false;
        for (size_t i = 0; t->why == NULL && !in_table && i < v->nbackends; i++) {
            in_table = lb_endpoint_eq(t->ep, v->backends[i].ep);
        }
        if (!in_table && !cJSON_AddItemToArray(arr, backend_json(NULL, t, counted))) {
            return false;
        }
    }
    return true;
}

static cJSON *vip_json(const struct lb_vip *v, const struct vip_acc *acc,
                       bool auto_is_nat)
{
    const char *mode = view_mode(v, auto_is_nat);
    bool proxied = strcmp(mode, "proxy") == 0;
    struct lb_vip_metrics m;
    lb_vip_metrics_get(v, &m);
    char addr[INET_ADDRSTRLEN], err[32];
    inet_ntop(AF_INET, &v->vip.addr, addr, sizeof(addr));
    cJSON *o = cJSON_CreateObject();
    cJSON *apps = NULL, *backends = NULL, *metrics = NULL;
    bool ok =
        o != NULL && add_str_or_null(o, "name", v->name[0] != '\0' ? v->name : NULL) &&
        cJSON_AddStringToObject(o, "address", addr) != NULL &&
        cJSON_AddNumberToObject(o, "port", v->vip.port) != NULL &&
        cJSON_AddStringToObject(o, "protocol",
                                v->proto == LB_PROTO_TCP ? "tcp" : "udp") != NULL &&
        cJSON_AddStringToObject(o, "mode", mode) != NULL &&
        cJSON_AddBoolToObject(o, "proxyProtocol", v->proxy_protocol) != NULL &&
        (apps = cJSON_AddArrayToObject(o, "apps")) != NULL &&
        cJSON_AddNumberToObject(o, "eligibleBackends", (double)v->neligible) != NULL &&
        (backends = cJSON_AddArrayToObject(o, "backends")) != NULL;
    for (size_t i = 0; ok && acc != NULL && i < acc->n_apps; i++) {
        ok = cJSON_AddItemToArray(apps, cJSON_CreateString(acc->apps[i]));
    }
    ok = ok && add_backends(backends, v, acc, proxied);
    if (ok && proxied) {
        ok = (metrics = cJSON_AddObjectToObject(o, "metrics")) != NULL &&
             cJSON_AddNumberToObject(metrics, "active", (double)m.active) != NULL &&
             cJSON_AddNumberToObject(metrics, "total", (double)m.total) != NULL &&
             cJSON_AddNumberToObject(metrics, "failed", (double)m.failed) != NULL &&
             cJSON_AddNumberToObject(metrics, "bytesIn", (double)m.bytes_in) != NULL &&
             cJSON_AddNumberToObject(metrics, "bytesOut", (double)m.bytes_out) != NULL;
    } else if (ok) {
        ok = cJSON_AddNullToObject(o, "metrics") != NULL; /* conntrack's, not ours */
    }
    ok = ok &&
         add_str_or_null(
             o, "listenError",
             m.listen_error != 0 ? errno_name(m.listen_error, err, sizeof(err)) : NULL);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int view_json(struct cm_state *s, const struct lb_table *t, bool auto_is_nat,
                     const struct vip_gate *gate, struct cm_buf *out,
                     struct cm_errbuf *eb)
{
    struct build b;
    memset(&b, 0, sizeof(b));
    /* NULL: nothing programmed */
    int rv = t != NULL ? build_run(s, true, gate, &b, eb) : 0;
    rv = rv ? rv : cm_buf_puts(out, "[");
    for (size_t i = 0; rv == 0 && t != NULL && i < lb_table_count(t); i++) {
        const struct lb_vip *v = lb_table_at(t, i);
        cJSON *o = vip_json(v, acc_find(&b, v), auto_is_nat);
        char *text = o != NULL ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        rv =
            text != NULL ? cm_buf_printf(out, "%s%s", i > 0 ? "," : "", text) : CM_ENOMEM;
        cJSON_free(text);
    }
    rv = rv ? rv : cm_buf_puts(out, "]");
    if (rv == CM_ENOMEM && eb != NULL && eb->code == 0) {
        cm_err_setf(eb, rv, "vips: out of memory");
    }
    build_done(&b);
    return rv;
}

int cm_vips_view_json(struct cm_state *s, const struct lb_table *t, bool auto_is_nat,
                      struct cm_buf *out, struct cm_errbuf *eb)
{
    return view_json(s, t, auto_is_nat, NULL, out, eb);
}

/* A Prometheus label value (exposition format: \\, \" and \n escaped). */
static int label_value(struct cm_buf *out, const char *s)
{
    int rv = 0;
    for (; rv == 0 && *s != '\0'; s++) {
        switch (*s) {
        case '\\':
            rv = cm_buf_puts(out, "\\\\");
            break;
        case '"':
            rv = cm_buf_puts(out, "\\\"");
            break;
        case '\n':
            rv = cm_buf_puts(out, "\\n");
            break;
        default:
            rv = cm_buf_append(out, s, 1);
            break;
        }
    }
    return rv;
}

/* The metric families of cm_vips_view_metrics, each sample line grouped under
 * its family as the exposition format asks. */
enum view_metric {
    VM_BACKENDS = 0, /* both modes */
    VM_ACTIVE,       /* proxy mode only, down to VM_BYTES_OUT */
    VM_TOTAL,
    VM_FAILED,
    VM_BYTES_IN,
    VM_BYTES_OUT,
    VM_LISTEN_ERROR, /* proxy mode, when set */
};

int cm_vips_view_metrics(const struct lb_table *t, bool auto_is_nat, struct cm_buf *out)
{
    static const struct {
        const char *name;
        const char *type;
        const char *help;
    } fam[] = {
        [VM_BACKENDS] = {"clusterctl_vip_backends", "gauge",
                         "Eligible backends of a VIP on this node (nat and proxy mode)."},
        [VM_ACTIVE] = {"clusterctl_vip_connections_active", "gauge",
                       "Client connections open through a VIP (proxy mode)."},
        [VM_TOTAL] = {"clusterctl_vip_connections_total", "counter",
                      "Client connections accepted on a VIP (proxy mode)."},
        [VM_FAILED] = {"clusterctl_vip_connections_failed_total", "counter",
                       "Accepted connections that no backend could take (proxy mode)."},
        [VM_BYTES_IN] = {"clusterctl_vip_bytes_in_total", "counter",
                         "Bytes from clients written to backends (proxy mode)."},
        [VM_BYTES_OUT] = {"clusterctl_vip_bytes_out_total", "counter",
                          "Bytes from backends written to clients (proxy mode)."},
        [VM_LISTEN_ERROR] = {"clusterctl_vip_listen_error", "gauge",
                             "1 while this node cannot listen on VIP:port (proxy mode), "
                             "by errno."},
    };
    size_t n = t != NULL ? lb_table_count(t) : 0;
    int rv = 0;
    for (size_t f = 0; rv == 0 && f < CM_ARRAY_SIZE(fam); f++) {
        rv = cm_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help,
                           fam[f].name, fam[f].type);
        for (size_t i = 0; rv == 0 && i < n; i++) {
            const struct lb_vip *v = lb_table_at(t, i);
            const char *mode = view_mode(v, auto_is_nat);
            bool proxied = strcmp(mode, "proxy") == 0;
            struct lb_vip_metrics m;
            lb_vip_metrics_get(v, &m);
            if ((f != VM_BACKENDS && !proxied) ||
                (f == VM_LISTEN_ERROR && m.listen_error == 0)) {
                continue;
            }
            uint64_t value = 0;
            switch ((enum view_metric)f) {
            case VM_BACKENDS:
                value = v->neligible;
                break;
            case VM_ACTIVE:
                value = m.active;
                break;
            case VM_TOTAL:
                value = m.total;
                break;
            case VM_FAILED:
                value = m.failed;
                break;
            case VM_BYTES_IN:
                value = m.bytes_in;
                break;
            case VM_BYTES_OUT:
                value = m.bytes_out;
                break;
            case VM_LISTEN_ERROR:
                value = 1;
                break;
            }
            char ep[LB_ENDPOINT_STRLEN], addr[INET_ADDRSTRLEN], err[32];
            inet_ntop(AF_INET, &v->vip.addr, addr, sizeof(addr));
            rv = cm_buf_printf(out, "%s{vip=\"", fam[f].name);
            rv = rv ? rv
                    : label_value(out, v->name[0] != '\0' ? v->name
                                                          : lb_endpoint_str(v->vip, ep));
            rv = rv ? rv
                    : cm_buf_printf(out,
                                    "\",address=\"%s\",port=\"%u\",proto=\"%s\","
                                    "mode=\"%s\"",
                                    addr, (unsigned)v->vip.port,
                                    v->proto == LB_PROTO_TCP ? "tcp" : "udp", mode);
            if (rv == 0 && f == VM_LISTEN_ERROR) {
                rv = cm_buf_printf(out, ",errno=\"%s\"",
                                   errno_name(m.listen_error, err, sizeof(err)));
            }
            rv = rv ? rv : cm_buf_printf(out, "} %llu\n", (unsigned long long)value);
        }
    }
    return rv;
}

/* ------------------------------------------------------------------ the runner */

struct probe;

struct cm_vips {
    struct ev_loop *loop;
    struct lb_nat *nat;          /* NULL: proxy mode */
    struct lb_proxy_pool *proxy; /* threads of their own (DESIGN.md §3) */
    struct lb_table *table;      /* programmed now */
    struct cm_state *state;      /* the replica of the last update (the node's) */
    struct probe *probes;
    uint64_t gen;         /* of the current build */
    ev_timer rebuild;     /* a probe saw a task listen: rebuild soon */
    struct vip_gate gate; /* probes asked for (updates) */
    struct vip_gate look; /* probes only looked at (the view) */
    bool building;        /* in cm_vips_update's build: answers need no rebuild */
};

/* ------------------------------------------------------------------ listen probes
 *
 * A task of an app without health checks is a backend once this node has seen it
 * accept a TCP connection on the port (one connect, closed at once, retried every
 * PROBE_RETRY s while it refuses). Until then it is "not yet listening": a task
 * that has just started would otherwise get new connections it refuses (nat mode
 * cannot retry them elsewhere). Seen once is enough: whether it keeps serving is
 * what health checks are for. Probes live while the builds still ask for them. */

#define PROBE_TIMEOUT 1.0 /* s: a connect that has not finished by then failed */
#define PROBE_RETRY   0.1 /* s: between attempts */

struct probe {
    struct cm_vips *v;
    char *task;
    struct lb_endpoint ep;
    int fd; /* -1: not connecting */
    ev_io io;
    ev_timer timer; /* connect timeout, or the wait before the next attempt */
    bool ok;        /* it accepted a connection */
    uint64_t gen;   /* the last build that asked */
    struct probe *next;
};

static void probe_start(struct probe *p);

static void probe_stop_io(struct probe *p)
{
    ev_io_stop(p->v->loop, &p->io);
    ev_timer_stop(p->v->loop, &p->timer);
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
}

static void probe_result(struct probe *p, bool ok)
{
    probe_stop_io(p);
    if (ok) {
        p->ok = true;
        if (!p->v->building && !ev_is_active(&p->v->rebuild)) {
            ev_timer_set(&p->v->rebuild, 0.0, 0.0);
            ev_timer_start(p->v->loop, &p->v->rebuild);
        }
        return;
    }
    ev_timer_set(&p->timer, PROBE_RETRY, 0.0);
    ev_timer_start(p->v->loop, &p->timer);
}

static void probe_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct probe *p = w->data;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    probe_result(p, err == 0);
}

static void probe_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct probe *p = w->data;
    if (p->fd >= 0) {
        probe_result(p, false); /* the connect timed out */
    } else {
        probe_start(p);
    }
}

static void probe_start(struct probe *p)
{
    p->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) {
        probe_result(p, false); /* out of fds for now: try again later */
        return;
    }
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(p->ep.port), .sin_addr = p->ep.addr};
    if (connect(p->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        probe_result(p, true);
    } else if (errno == EINPROGRESS) {
        ev_io_set(&p->io, p->fd, EV_WRITE);
        ev_io_start(p->v->loop, &p->io);
        ev_timer_set(&p->timer, PROBE_TIMEOUT, 0.0);
        ev_timer_start(p->v->loop, &p->timer);
    } else {
        probe_result(p, false);
    }
}

static void probe_free(struct probe *p)
{
    probe_stop_io(p);
    cm_free(&p->task);
    cm_free(&p);
}

static bool gate_listening(void *data, const char *task, struct lb_endpoint ep, bool ask)
{
    struct cm_vips *v = data;
    for (struct probe *p = v->probes; p != NULL; p = p->next) {
        if (lb_endpoint_eq(p->ep, ep) && strcmp(p->task, task) == 0) {
            p->gen = ask ? v->gen : p->gen;
            return p->ok;
        }
    }
    if (!ask) {
        return false;
    }
    struct probe *p = cm_calloc(1, sizeof(*p));
    if (p == NULL || (p->task = cm_strdup(task)) == NULL) {
        cm_free(&p);
        return false; /* out of memory: asked again at the next build */
    }
    p->v = v;
    p->ep = ep;
    p->fd = -1;
    p->gen = v->gen;
    ev_io_init(&p->io, probe_io_cb, -1, EV_WRITE);
    p->io.data = p;
    ev_timer_init(&p->timer, probe_timer_cb, 0.0, 0.0);
    p->timer.data = p;
    p->next = v->probes;
    v->probes = p;
    probe_start(p); /* may already say yes (loopback) */
    return p->ok;
}

/* Drop the probes the last build did not ask about (task gone, checks added). */
static void probes_prune(struct cm_vips *v)
{
    struct probe **pp = &v->probes;
    while (*pp != NULL) {
        struct probe *p = *pp;
        if (p->gen != v->gen) {
            *pp = p->next;
            probe_free(p);
        } else {
            pp = &p->next;
        }
    }
}

static void rebuild_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct cm_vips *v = w->data;
    if (v->state != NULL) {
        cm_vips_update(v, v->state);
    }
}

static void remove_leftovers(void)
{
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    if (lb_addr_sync(VIP_IFNAME, NULL, 0, &eb) != 0) {
        cm_warn("vips", "removing VIP addresses: %s", eb.msg);
    }
}

int cm_vips_start(struct ev_loop *loop, const char *mode, unsigned proxy_threads,
                  struct cm_vips **ret, struct cm_errbuf *eb)
{
    *ret = NULL;
    if (strcmp(mode, "off") == 0) {
        cm_info("vips", "VIPs off on this node (--vip-mode off)");
        return 0;
    }
    bool auto_mode = strcmp(mode, "auto") == 0;
    /* Our addresses left on lo by a crash go first: this also tells whether we
     * may program the network at all. */
    int rv = lb_addr_sync(VIP_IFNAME, NULL, 0, eb);
    if (rv != 0) {
        if (auto_mode) {
            cm_warn("vips", "VIPs disabled on this node: %s", eb->msg);
            cm_errbuf_clear(eb);
            return 0;
        }
        return cm_err_wrapf(eb, "--vip-mode %s", mode);
    }
    struct cm_vips *v = cm_calloc(1, sizeof(*v));
    if (v == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "vips: out of memory");
    }
    v->loop = loop;
    v->gate = (struct vip_gate){gate_listening, v, true};
    v->look = (struct vip_gate){gate_listening, v, false};
    ev_timer_init(&v->rebuild, rebuild_cb, 0.0, 0.0);
    v->rebuild.data = v;
    /* lb_nat_new removes a table a crashed run left, whatever the mode. */
    struct cm_errbuf neb;
    cm_errbuf_clear(&neb);
    rv = lb_nat_new(&v->nat, &neb);
    if (rv != 0) {
        v->nat = NULL;
        if (strcmp(mode, "nat") == 0) {
            cm_err_setf(eb, rv, "--vip-mode nat: %s", neb.msg);
            goto err_after_alloc;
        }
        if (auto_mode) {
            cm_warn("vips", "nftables unusable (%s): VIPs in proxy mode", neb.msg);
        }
    } else if (strcmp(mode, "proxy") == 0) {
        lb_nat_free(v->nat);
        v->nat = NULL;
    }
    uint64_t seed;
    cm_random_bytes(&seed, sizeof(seed));
    struct lb_proxy_opts po = {
        .serve_auto = v->nat == NULL, /* else only the VIPs asking for PROXY v2 */
        /* A task that just started is a backend before it listens (no health
         * checks yet), and it refuses at once with no load, which is what the
         * power-of-two choice prefers: try every backend of a rolling restart's
         * doubled set before failing the client (lb caps this at 8). */
        .retries = 8,
        .seed = seed,
    };
    rv = lb_proxy_pool_new(&po, proxy_threads, &v->proxy, eb);
    if (rv != 0) {
        cm_err_wrapf(eb, "VIP proxy");
        goto err_after_nat;
    }
    cm_info("vips", "VIPs in %s mode (proxy: %u threads)", cm_vips_mode(v),
            lb_proxy_pool_threads(v->proxy));
    *ret = v;
    return 0;

err_after_nat:
    if (v->nat != NULL) {
        lb_nat_free(v->nat);
    }
err_after_alloc:
    cm_free(&v);
    return rv;
}

const char *cm_vips_mode(const struct cm_vips *v)
{
    return v->nat != NULL ? "nat" : "proxy";
}

static int cmp_addr(const void *x, const void *y)
{
    uint32_t a = ntohl(((const struct in_addr *)x)->s_addr);
    uint32_t b = ntohl(((const struct in_addr *)y)->s_addr);
    return a < b ? -1 : a > b;
}

int cm_vips_json(const struct cm_vips *v, struct cm_state *s, const char *node,
                 struct cm_buf *out)
{
    cJSON *name = cJSON_CreateString(node != NULL ? node : "");
    char *text = name != NULL ? cJSON_PrintUnformatted(name) : NULL;
    cJSON_Delete(name);
    if (text == NULL) {
        return CM_ENOMEM;
    }
    int rv = cm_buf_printf(out, "{\"node\":%s,\"mode\":\"%s\",\"vips\":", text,
                           v != NULL ? cm_vips_mode(v) : "off");
    cJSON_free(text);
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    rv = rv ? rv
            : view_json(s, v != NULL ? v->table : NULL, v != NULL && v->nat != NULL,
                        v != NULL ? &v->look : NULL, out, &eb);
    if (rv != 0 && rv != CM_ENOMEM) {
        cm_warn("vips", "GET /v1/vips: %s", eb.msg);
    }
    return rv ? rv : cm_buf_puts(out, "}");
}

int cm_vips_metrics(const struct cm_vips *v, struct cm_buf *out)
{
    if (v == NULL) {
        return 0;
    }
    return cm_vips_view_metrics(v->table, v->nat != NULL, out);
}

void cm_vips_update(struct cm_vips *v, struct cm_state *s)
{
    if (v == NULL) {
        return;
    }
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    struct lb_table *t = NULL;
    v->state = s;
    v->gen++;
    ev_timer_stop(v->loop, &v->rebuild); /* this is the rebuild */
    v->building = true;
    int rv = build_table(s, &v->gate, v->table, &t, &eb);
    v->building = false;
    if (rv != 0) {
        cm_warn("vips", "table not rebuilt: %s", eb.msg);
        return; /* the probes stay: the next build asks again */
    }
    probes_prune(v);
    size_t n = lb_table_count(t);
    struct in_addr *addrs = cm_calloc(n + 1, sizeof(*addrs));
    if (addrs == NULL) {
        cm_warn("vips", "table not programmed: out of memory");
        lb_table_unref(t);
        return;
    }
    size_t na = 0;
    for (size_t i = 0; i < n; i++) {
        addrs[na++] = lb_table_at(t, i)->vip.addr;
    }
    qsort(addrs, na, sizeof(*addrs), cmp_addr);
    size_t u = 0;
    for (size_t i = 0; i < na; i++) {
        if (u == 0 || addrs[u - 1].s_addr != addrs[i].s_addr) {
            addrs[u++] = addrs[i];
        }
    }
    /* Addresses first, so that the rules and listeners have them when they start
     * to matter; the ones no VIP uses go in the same sync. */
    if (lb_addr_sync(VIP_IFNAME, addrs, u, &eb) != 0) {
        cm_warn("vips", "VIP addresses: %s", eb.msg);
        cm_errbuf_clear(&eb);
    }
    cm_free(&addrs);
    if (v->nat != NULL && lb_nat_apply(v->nat, t, true, &eb) != 0) {
        cm_warn("vips", "nat rules not replaced: %s", eb.msg);
        cm_errbuf_clear(&eb);
    }
    /* The proxy threads install it at their next wake-up. */
    lb_proxy_pool_publish(v->proxy, lb_table_ref(t));
    lb_table_unref(v->table);
    v->table = t;
}

void cm_vips_free(struct cm_vips *v)
{
    if (v == NULL) {
        return;
    }
    ev_timer_stop(v->loop, &v->rebuild);
    while (v->probes != NULL) {
        struct probe *p = v->probes;
        v->probes = p->next;
        probe_free(p);
    }
    lb_proxy_pool_free(v->proxy);
    if (v->nat != NULL) {
        struct cm_errbuf eb;
        cm_errbuf_clear(&eb);
        if (lb_nat_clear(v->nat, &eb) != 0) {
            cm_warn("vips", "removing the nft table: %s", eb.msg);
        }
        lb_nat_free(v->nat);
    }
    remove_leftovers();
    lb_table_unref(v->table);
    cm_free(&v);
}
