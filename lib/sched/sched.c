/* lib/sched: the cluster model: nodes, roles, apps and tasks, with the usage
 * counters placement reads. Every mutation allocates first and commits after, so
 * a failed call leaves the model as it was. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"

static const char *task_key(const void *ctx, uint32_t idx)
{
    const struct sched *s = ctx;
    return s->tasks[idx].id;
}

/* Grow *@arr (of @size-byte elements) to hold @need, doubling. */
static int grow(void **arr, uint32_t *cap, uint32_t need, size_t size)
{
    if (need <= *cap) {
        return 0;
    }
    uint32_t ncap = *cap ? *cap : 8;
    while (ncap < need) {
        if (ncap > UINT32_MAX / 2) {
            return CM_ENOMEM;
        }
        ncap *= 2;
    }
    void *n = cm_reallocarray(*arr, ncap, size);
    if (n == NULL) {
        return CM_ENOMEM;
    }
    *arr = n;
    *cap = ncap;
    return 0;
}

struct sched *sched_new(const struct sched_options *opts)
{
    struct sched *s = cm_calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    if (opts != NULL) {
        s->opts = *opts;
    }
    cm_rng_seed(&s->rng, s->opts.seed);
    s->task_free = SCHED__NONE;
    uint32_t star;
    if (sched__role_get(s, "*", &star) != 0) {
        sched_free(s);
        return NULL;
    }
    return s;
}

static void keys_free(struct sched__app *a)
{
    for (uint32_t j = 0; j < a->n_keys; j++) {
        sched__imap_done(&a->keys[j].counts);
    }
    cm_free(&a->keys);
    a->n_keys = 0;
}

static void node_arrays_free(struct sched__node *n)
{
    cm_free(&n->rsv);
    cm_free(&n->attrs);
    cm_free(&n->ranges);
    cm_free(&n->port_bits);
    cm_free(&n->ext_ports);
}

void sched_free(struct sched *s)
{
    if (s == NULL) {
        return;
    }
    for (uint32_t i = 1; i < s->strs.n; i++) {
        cm_free(&s->strs.s[i]);
    }
    cm_free(&s->strs.s);
    sched__smap_done(&s->strs.map);
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        node_arrays_free(&s->nodes[i]);
    }
    cm_free(&s->nodes);
    cm_free(&s->live);
    cm_free(&s->hot);
    for (uint32_t i = 0; i < s->n_cols; i++) {
        cm_free(&s->cols[i].vals);
    }
    cm_free(&s->cols);
    sched__imap_done(&s->node_by_id);
    for (uint32_t i = 0; i < s->n_tasks_slots; i++) {
        cm_free(&s->tasks[i].id);
        cm_free(&s->tasks[i].ports);
    }
    cm_free(&s->tasks);
    sched__smap_done(&s->task_by_id);
    for (uint32_t i = 0; i < s->n_apps; i++) {
        keys_free(&s->apps[i]);
        sched__imap_done(&s->apps[i].nodes);
    }
    cm_free(&s->apps);
    sched__imap_done(&s->app_by_name);
    cm_free(&s->roles);
    sched__imap_done(&s->role_by_name);
    cm_free_raw(s);
}

/* ------------------------------------------------------------------ roles, apps */

int sched__role_get(struct sched *s, const char *name, uint32_t *ret)
{
    uint32_t id;
    int rv = sched__str_intern(&s->strs, name, &id);
    if (rv != 0) {
        return rv;
    }
    uint32_t *v = sched__imap_find(&s->role_by_name, id);
    if (v != NULL) {
        *ret = *v;
        return 0;
    }
    if (grow((void **)&s->roles, &s->cap_roles, s->n_roles + 1, sizeof(*s->roles)) != 0 ||
        sched__imap_reserve(&s->role_by_name, 1) != 0) {
        return CM_ENOMEM;
    }
    struct sched__role *r = &s->roles[s->n_roles];
    memset(r, 0, sizeof(*r));
    r->name_str = id;
    r->weight = 1.0;
    r->heap_pos = SCHED__NONE;
    *sched__imap_upsert(&s->role_by_name, id) = s->n_roles;
    *ret = s->n_roles++;
    return 0;
}

int sched_role_set(struct sched *s, const struct sched_role *r)
{
    if (r->name == NULL || r->name[0] == '\0' || !(r->weight > 0) ||
        !isfinite(r->weight)) {
        return CM_EINVAL;
    }
    uint32_t idx;
    int rv = sched__role_get(s, r->name, &idx);
    if (rv != 0) {
        return rv;
    }
    struct sched__role *role = &s->roles[idx];
    role->weight = r->weight;
    role->has_quota = r->quota != NULL;
    for (int k = 0; k < NRES; k++) {
        role->quota[k] = r->quota ? r->quota->v[k] : SCHED_UNLIMITED;
    }
    return 0;
}

double sched__role_share_of(const struct sched *s, const struct sched__role *r)
{
    /* DRF §4: dominant share = max over resources of used / cluster capacity. */
    double dom = 0;
    for (int k = 0; k < NRES; k++) {
        if (s->cluster_total[k] > 0) {
            double sh = (double)r->used[k] / (double)s->cluster_total[k];
            dom = sh > dom ? sh : dom;
        }
    }
    return dom / r->weight;
}

double sched_role_share(const struct sched *s, const char *role,
                        struct sched_resources *ret_used)
{
    uint32_t id = sched__str_find(&s->strs, role);
    uint32_t *v = id ? sched__imap_find(&s->role_by_name, id) : NULL;
    if (ret_used != NULL) {
        memset(ret_used, 0, sizeof(*ret_used));
        if (v != NULL) {
            memcpy(ret_used->v, s->roles[*v].used, sizeof(ret_used->v));
        }
    }
    return v ? sched__role_share_of(s, &s->roles[*v]) : 0;
}

int sched__app_get(struct sched *s, const char *name, uint32_t *ret)
{
    uint32_t id;
    int rv = sched__str_intern(&s->strs, name, &id);
    if (rv != 0) {
        return rv;
    }
    uint32_t *v = sched__imap_find(&s->app_by_name, id);
    if (v != NULL) {
        *ret = *v;
        return 0;
    }
    if (grow((void **)&s->apps, &s->cap_apps, s->n_apps + 1, sizeof(*s->apps)) != 0 ||
        sched__imap_reserve(&s->app_by_name, 1) != 0) {
        return CM_ENOMEM;
    }
    struct sched__app *a = &s->apps[s->n_apps];
    memset(a, 0, sizeof(*a));
    a->name_str = id;
    *sched__imap_upsert(&s->app_by_name, id) = s->n_apps;
    *ret = s->n_apps++;
    return 0;
}

static void keyidx_recompute_min(struct sched__keyidx *k)
{
    k->min = 0;
    k->n_at_min = 0;
    if (k->counts.keys != NULL) {
        for (uint32_t i = 0; i <= k->counts.mask; i++) {
            if (k->counts.keys[i] == SCHED__NONE) {
                continue;
            }
            uint32_t c = k->counts.vals[i];
            if (k->n_at_min == 0 || c < k->min) {
                k->min = c;
                k->n_at_min = 1;
            } else if (c == k->min) {
                k->n_at_min++;
            }
        }
    }
    k->min_valid = true;
}

int sched__app_key(struct sched *s, uint32_t app, uint32_t key, uint32_t *ret_j)
{
    struct sched__app *a = &s->apps[app];
    for (uint32_t j = 0; j < a->n_keys; j++) {
        if (a->keys[j].key == key) {
            *ret_j = j;
            return 0;
        }
    }
    struct sched__keyidx k = {.key = key};
    if (sched__imap_reserve(&k.counts, a->nodes.len + 1) != 0) {
        return CM_ENOMEM;
    }
    struct sched__keyidx *nk = cm_reallocarray(a->keys, a->n_keys + 1, sizeof(*nk));
    if (nk == NULL) {
        sched__imap_done(&k.counts);
        return CM_ENOMEM;
    }
    a->keys = nk;
    for (uint32_t i = 0; a->nodes.keys != NULL && i <= a->nodes.mask; i++) {
        if (a->nodes.keys[i] == SCHED__NONE) {
            continue;
        }
        bool scalar;
        uint32_t val = sched__node_val(&s->nodes[a->nodes.keys[i]], key, &scalar);
        uint32_t *c = sched__imap_upsert(&k.counts, val);
        if (*c == 0) {
            k.n_groups++;
        }
        *c += a->nodes.vals[i];
    }
    keyidx_recompute_min(&k);
    a->keys[a->n_keys] = k;
    *ret_j = a->n_keys++;
    return 0;
}

static void keyidx_inc(struct sched__keyidx *k, uint32_t val)
{
    uint32_t *c = sched__imap_upsert(&k->counts, val);
    uint32_t old = (*c)++;
    if (old == 0) {
        k->n_groups++;
        if (k->min_valid) {
            if (k->n_groups == 1 || k->min > 1) {
                k->min = 1;
                k->n_at_min = 1;
            } else {
                k->n_at_min++;
            }
        }
    } else if (k->min_valid && old == k->min) {
        if (--k->n_at_min == 0) {
            k->min_valid = false;
        }
    }
}

static void keyidx_dec(struct sched__keyidx *k, uint32_t val)
{
    uint32_t *c = sched__imap_find(&k->counts, val);
    CM_BUG_ON(c == NULL || *c == 0);
    uint32_t now = --(*c);
    if (now == 0) {
        sched__imap_remove(&k->counts, val);
        k->n_groups--;
        if (k->min_valid && now + 1 == k->min && --k->n_at_min == 0) {
            k->min_valid = false;
        }
    } else if (k->min_valid) {
        if (now < k->min) {
            k->min = now;
            k->n_at_min = 1;
        } else if (now == k->min) {
            k->n_at_min++;
        }
    }
}

/* ------------------------------------------------------------------ ports */

int32_t sched__port_bit(const struct sched__node *n, uint16_t port)
{
    uint32_t base = 0;
    for (uint32_t i = 0; i < n->n_ranges; i++) {
        const struct sched_port_range *r = &n->ranges[i];
        if (port >= r->begin && port <= r->end) {
            return (int32_t)(base + (uint32_t)(port - r->begin));
        }
        base += (uint32_t)(r->end - r->begin) + 1;
    }
    return -1;
}

uint16_t sched__bit_port(const struct sched__node *n, uint32_t bit)
{
    for (uint32_t i = 0; i < n->n_ranges; i++) {
        uint32_t len = (uint32_t)(n->ranges[i].end - n->ranges[i].begin) + 1;
        if (bit < len) {
            return (uint16_t)(n->ranges[i].begin + bit);
        }
        bit -= len;
    }
    CM_BUG_ON(true);
    return 0;
}

bool sched__port_is_used(const struct sched__node *n, uint16_t port)
{
    int32_t b = sched__port_bit(n, port);
    return b >= 0 && (n->port_bits[b / 64] >> (b % 64) & 1);
}

/* Mark @port used (@on) or free. Ports outside the ranges are not tracked. */
static void port_mark(struct sched__node *n, uint16_t port, bool on)
{
    int32_t b = sched__port_bit(n, port);
    if (b < 0) {
        return;
    }
    uint64_t m = (uint64_t)1 << (b % 64);
    bool was = n->port_bits[b / 64] & m;
    if (on && !was) {
        n->port_bits[b / 64] |= m;
        n->ports_free--;
    } else if (!on && was) {
        n->port_bits[b / 64] &= ~m;
        n->ports_free++;
    }
}

bool sched_port_used(const struct sched *s, const char *node, uint16_t port)
{
    uint32_t id = sched__str_find(&s->strs, node);
    uint32_t *v = id ? sched__imap_find(&s->node_by_id, id) : NULL;
    return v != NULL && sched__port_is_used(&s->nodes[*v], port);
}

/* ------------------------------------------------------------------ tasks */

int sched__col_get(struct sched *s, uint32_t key, uint32_t *ret_col)
{
    for (uint32_t c = 0; c < s->n_cols; c++) {
        if (s->cols[c].key == key) {
            *ret_col = c;
            return 0;
        }
    }
    uint32_t *vals = cm_calloc(s->cap_live ? s->cap_live : 1, sizeof(*vals));
    struct sched__col *cols =
        vals ? cm_reallocarray(s->cols, s->n_cols + 1, sizeof(*cols)) : NULL;
    if (cols == NULL) {
        cm_free(&vals);
        return CM_ENOMEM;
    }
    s->cols = cols;
    for (uint32_t i = 0; i < s->n_live; i++) {
        vals[i] = sched__col_entry(&s->nodes[s->live[i]], key);
    }
    s->cols[s->n_cols] = (struct sched__col){.key = key, .vals = vals};
    *ret_col = s->n_cols++;
    return 0;
}

void sched__hot_sync(struct sched *s, const struct sched__node *n)
{
    struct sched__hot *h = &s->hot[n->live_pos];
    for (int k = 0; k < NRES; k++) {
        h->avail[k] =
            n->star_cap[k] > n->star_used[k] ? n->star_cap[k] - n->star_used[k] : 0;
    }
    for (int k = 0; k < 2; k++) {
        h->used[k] = n->used[k];
        h->inv_total[k] = n->total[k] ? 1.0 / (double)n->total[k] : 0.0;
    }
    h->slot = (uint32_t)(n - s->nodes);
    h->ports_free = n->ports_free;
    h->up = n->state == SCHED_NODE_UP;
    h->n_rsv = n->n_rsv > 0;
}

struct sched__rsv *sched__node_rsv(struct sched__node *n, uint32_t role)
{
    for (uint32_t i = 0; i < n->n_rsv; i++) {
        if (n->rsv[i].role == role) {
            return &n->rsv[i];
        }
    }
    return NULL;
}

/* Count task @t's resources on its node: its role's reservation first (when
 * @rsv_ok), the rest unreserved. */
static void task_charge(struct sched__node *n, struct sched__task *t, bool rsv_ok)
{
    struct sched__rsv *r = rsv_ok ? sched__node_rsv(n, t->role) : NULL;
    for (int k = 0; k < NRES; k++) {
        uint64_t part = 0;
        if (r != NULL) {
            uint64_t avail = r->cap[k] > r->used[k] ? r->cap[k] - r->used[k] : 0;
            part = CM_MIN(avail, t->res[k]);
            r->used[k] += part;
        }
        t->rsv_part[k] = part;
        n->star_used[k] += t->res[k] - part;
        n->used[k] += t->res[k];
    }
}

static void task_uncharge(struct sched__node *n, struct sched__task *t)
{
    struct sched__rsv *r = sched__node_rsv(n, t->role);
    for (int k = 0; k < NRES; k++) {
        if (r != NULL) {
            r->used[k] -= t->rsv_part[k];
        } else {
            CM_BUG_ON(t->rsv_part[k] != 0);
        }
        n->star_used[k] -= t->res[k] - t->rsv_part[k];
        n->used[k] -= t->res[k];
    }
}

int sched__task_insert(struct sched *s, const char *id, uint32_t app, uint32_t role,
                       uint32_t node, const uint64_t res[NRES], bool rsv_ok,
                       const uint16_t *ports, uint32_t n_ports, uint32_t *ret_idx)
{
    struct sched__app *a = &s->apps[app];
    uint32_t h = sched__hash(id);
    CM_ASSERT(sched__smap_find(&s->task_by_id, id, h, task_key, s) == SCHED__NONE);
    if (s->task_free == SCHED__NONE &&
        grow((void **)&s->tasks, &s->cap_tasks, s->n_tasks_slots + 1,
             sizeof(*s->tasks)) != 0) {
        return CM_ENOMEM;
    }
    if (sched__smap_reserve(&s->task_by_id, 1) != 0 ||
        sched__imap_reserve(&a->nodes, 1) != 0) {
        return CM_ENOMEM;
    }
    for (uint32_t j = 0; j < a->n_keys; j++) {
        if (sched__imap_reserve(&a->keys[j].counts, 1) != 0) {
            return CM_ENOMEM;
        }
    }
    char *copy = cm_strdup(id);
    uint16_t *pcopy = n_ports ? cm_memdup(ports, n_ports * sizeof(*ports)) : NULL;
    if (copy == NULL || (n_ports && pcopy == NULL)) {
        cm_free(&copy);
        cm_free(&pcopy);
        return CM_ENOMEM;
    }

    /* Commit: nothing below allocates. */
    uint32_t idx;
    if (s->task_free != SCHED__NONE) {
        idx = s->task_free;
        s->task_free = s->tasks[idx].next;
    } else {
        idx = s->n_tasks_slots++;
    }
    struct sched__task *t = &s->tasks[idx];
    struct sched__node *n = &s->nodes[node];
    memset(t, 0, sizeof(*t));
    t->id = copy;
    t->hash = h;
    t->app = app;
    t->role = role;
    t->node = node;
    memcpy(t->res, res, sizeof(t->res));
    t->ports = pcopy;
    t->n_ports = n_ports;
    t->prev = SCHED__NONE;
    t->next = n->task_head;
    if (n->task_head != SCHED__NONE) {
        s->tasks[n->task_head].prev = idx;
    }
    n->task_head = idx;
    n->n_tasks++;
    task_charge(n, t, rsv_ok);
    for (int k = 0; k < NRES; k++) {
        s->roles[role].used[k] += res[k];
    }
    for (uint32_t i = 0; i < n_ports; i++) {
        port_mark(n, ports[i], true);
    }
    (*sched__imap_upsert(&a->nodes, node))++;
    a->n_tasks++;
    for (uint32_t j = 0; j < a->n_keys; j++) {
        bool scalar;
        keyidx_inc(&a->keys[j], sched__node_val(n, a->keys[j].key, &scalar));
    }
    sched__smap_insert(&s->task_by_id, h, idx);
    s->n_tasks++;
    sched__hot_sync(s, n);
    if (ret_idx != NULL) {
        *ret_idx = idx;
    }
    return 0;
}

void sched__task_delete(struct sched *s, uint32_t idx)
{
    struct sched__task *t = &s->tasks[idx];
    struct sched__node *n = &s->nodes[t->node];
    struct sched__app *a = &s->apps[t->app];
    CM_BUG_ON(t->id == NULL);
    sched__smap_remove(&s->task_by_id, t->hash, idx);
    for (uint32_t j = 0; j < a->n_keys; j++) {
        bool scalar;
        keyidx_dec(&a->keys[j], sched__node_val(n, a->keys[j].key, &scalar));
    }
    uint32_t *c = sched__imap_find(&a->nodes, t->node);
    CM_BUG_ON(c == NULL || *c == 0);
    if (--(*c) == 0) {
        sched__imap_remove(&a->nodes, t->node);
    }
    a->n_tasks--;
    for (uint32_t i = 0; i < t->n_ports; i++) {
        port_mark(n, t->ports[i], false);
    }
    /* A port may also be held by another task or externally (overcommitted
     * reports): re-mark those. */
    for (uint32_t i = 0; i < t->n_ports; i++) {
        for (uint32_t e = 0; e < n->n_ext_ports; e++) {
            if (n->ext_ports[e] == t->ports[i]) {
                port_mark(n, t->ports[i], true);
            }
        }
    }
    for (int k = 0; k < NRES; k++) {
        s->roles[t->role].used[k] -= t->res[k];
    }
    task_uncharge(n, t);
    if (t->prev != SCHED__NONE) {
        s->tasks[t->prev].next = t->next;
    } else {
        n->task_head = t->next;
    }
    if (t->next != SCHED__NONE) {
        s->tasks[t->next].prev = t->prev;
    }
    n->n_tasks--;
    cm_free(&t->id);
    cm_free(&t->ports);
    t->next = s->task_free;
    s->task_free = idx;
    s->n_tasks--;
    sched__hot_sync(s, n);
}

static uint32_t node_find(const struct sched *s, const char *id)
{
    uint32_t sid = sched__str_find(&s->strs, id);
    uint32_t *v = sid ? sched__imap_find(&s->node_by_id, sid) : NULL;
    return v ? *v : SCHED__NONE;
}

static uint32_t task_find(const struct sched *s, const char *id)
{
    return sched__smap_find(&s->task_by_id, id, sched__hash(id), task_key, s);
}

bool sched__task_exists(const struct sched *s, const char *id)
{
    return task_find(s, id) != SCHED__NONE;
}

int sched_task_add(struct sched *s, const struct sched_task *t)
{
    if (t->id == NULL || t->id[0] == '\0' || t->app == NULL || t->app[0] == '\0' ||
        t->node == NULL || t->n_ports > SCHED_MAX_PORTS) {
        return CM_EINVAL;
    }
    if (task_find(s, t->id) != SCHED__NONE) {
        return CM_EEXIST;
    }
    uint32_t node = node_find(s, t->node);
    if (node == SCHED__NONE) {
        return CM_ENOTFOUND;
    }
    uint32_t app, role;
    int rv = sched__app_get(s, t->app, &app);
    if (rv == 0) {
        rv = sched__role_get(s, t->role ? t->role : "*", &role);
    }
    if (rv != 0) {
        return rv;
    }
    return sched__task_insert(s, t->id, app, role, node, t->res.v, true, t->ports,
                              (uint32_t)t->n_ports, NULL);
}

int sched_task_remove(struct sched *s, const char *id)
{
    uint32_t idx = task_find(s, id);
    if (idx == SCHED__NONE) {
        return CM_ENOTFOUND;
    }
    sched__task_delete(s, idx);
    return 0;
}

size_t sched_task_count(const struct sched *s, const char *app, const char *node)
{
    uint32_t nslot = SCHED__NONE;
    if (node != NULL && (nslot = node_find(s, node)) == SCHED__NONE) {
        return 0;
    }
    if (app == NULL) {
        return nslot == SCHED__NONE ? s->n_tasks : s->nodes[nslot].n_tasks;
    }
    uint32_t sid = sched__str_find(&s->strs, app);
    uint32_t *a = sid ? sched__imap_find(&s->app_by_name, sid) : NULL;
    if (a == NULL) {
        return 0;
    }
    if (nslot == SCHED__NONE) {
        return s->apps[*a].n_tasks;
    }
    uint32_t *c = sched__imap_find(&s->apps[*a].nodes, nslot);
    return c ? *c : 0;
}

/* ------------------------------------------------------------------ nodes */

static int cmp_range(const void *a, const void *b)
{
    const struct sched_port_range *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

static void cluster_add(struct sched *s, const struct sched__node *n, int sign)
{
    if (n->state != SCHED_NODE_UP) {
        return;
    }
    for (int k = 0; k < NRES; k++) {
        if (sign > 0) {
            s->cluster_total[k] += n->total[k];
        } else {
            s->cluster_total[k] -= n->total[k];
        }
    }
}

/* Recount the node's pools and ports from its external use and its tasks. */
static void node_recount(struct sched *s, struct sched__node *n)
{
    for (int k = 0; k < NRES; k++) {
        n->star_used[k] = n->ext_used[k];
        n->used[k] = n->ext_used[k];
    }
    for (uint32_t i = 0; i < n->n_rsv; i++) {
        memset(n->rsv[i].used, 0, sizeof(n->rsv[i].used));
    }
    n->ports_free = n->ports_total;
    for (uint32_t i = 0; i < n->n_ext_ports; i++) {
        port_mark(n, n->ext_ports[i], true);
    }
    for (uint32_t t = n->task_head; t != SCHED__NONE; t = s->tasks[t].next) {
        task_charge(n, &s->tasks[t], true);
        for (uint32_t i = 0; i < s->tasks[t].n_ports; i++) {
            port_mark(n, s->tasks[t].ports[i], true);
        }
    }
}

static bool same_attrs(const struct sched__node *a, const struct sched__attr *attrs,
                       uint32_t n_attrs, uint32_t host)
{
    if (a->host_str != host || a->n_attrs != n_attrs) {
        return false;
    }
    for (uint32_t i = 0; i < n_attrs; i++) {
        bool scalar;
        if (sched__node_val(a, attrs[i].key, &scalar) != attrs[i].val) {
            return false;
        }
    }
    return true;
}

int sched_node_upsert(struct sched *s, const struct sched_node *in)
{
    if (in->id == NULL || in->id[0] == '\0' ||
        (in->hostname && in->hostname[0] == '\0') ||
        (unsigned)in->state > SCHED_NODE_DOWN) {
        return CM_EINVAL;
    }
    uint64_t reserved[NRES] = {0};
    for (size_t i = 0; i < in->n_reservations; i++) {
        const char *r = in->reservations[i].role;
        if (r == NULL || r[0] == '\0' || strcmp(r, "*") == 0) {
            return CM_EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(in->reservations[j].role, r) == 0) {
                return CM_EINVAL;
            }
        }
        for (int k = 0; k < NRES; k++) {
            reserved[k] += in->reservations[i].res.v[k];
            if (reserved[k] > in->total.v[k]) {
                return CM_EINVAL;
            }
        }
    }
    for (size_t i = 0; i < in->n_attrs; i++) {
        const char *k = in->attrs[i].key;
        if (k == NULL || k[0] == '\0' || in->attrs[i].value == NULL ||
            strcmp(k, "hostname") == 0 || strcmp(k, "@hostname") == 0) {
            return CM_EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(in->attrs[j].key, k) == 0) {
                return CM_EINVAL;
            }
        }
    }
    for (size_t i = 0; i < in->n_port_ranges; i++) {
        if (in->port_ranges[i].begin == 0 ||
            in->port_ranges[i].end < in->port_ranges[i].begin) {
            return CM_EINVAL;
        }
    }

    /* Allocate everything, then commit. */
    int rv = CM_ENOMEM;
    uint32_t id_str, host_str;
    struct sched__attr *attrs = NULL;
    struct sched__rsv *rsv = NULL;
    struct sched_port_range *ranges = NULL;
    uint64_t *bits = NULL;
    uint16_t *ext = NULL;
    if (sched__str_intern(&s->strs, in->id, &id_str) != 0 ||
        sched__str_intern(&s->strs, in->hostname ? in->hostname : in->id, &host_str) !=
            0) {
        goto err;
    }
    if (in->n_attrs && (attrs = cm_calloc(in->n_attrs, sizeof(*attrs))) == NULL) {
        goto err;
    }
    for (size_t i = 0; i < in->n_attrs; i++) {
        char scalar[64];
        attrs[i].scalar = sched__scalar_format(in->attrs[i].value, scalar);
        if (sched__str_intern(&s->strs, in->attrs[i].key, &attrs[i].key) != 0 ||
            sched__str_intern(&s->strs, attrs[i].scalar ? scalar : in->attrs[i].value,
                              &attrs[i].val) != 0) {
            goto err;
        }
    }
    if (in->n_reservations &&
        (rsv = cm_calloc(in->n_reservations, sizeof(*rsv))) == NULL) {
        goto err;
    }
    for (size_t i = 0; i < in->n_reservations; i++) {
        if (sched__role_get(s, in->reservations[i].role, &rsv[i].role) != 0) {
            goto err;
        }
        memcpy(rsv[i].cap, in->reservations[i].res.v, sizeof(rsv[i].cap));
    }
    uint32_t ports_total = 0;
    if (in->n_port_ranges) {
        ranges = cm_memdup(in->port_ranges, in->n_port_ranges * sizeof(*ranges));
        if (ranges == NULL) {
            goto err;
        }
        qsort(ranges, in->n_port_ranges, sizeof(*ranges), cmp_range);
        for (size_t i = 0; i < in->n_port_ranges; i++) {
            if (i > 0 && ranges[i].begin <= ranges[i - 1].end) {
                rv = CM_EINVAL;
                goto err;
            }
            ports_total += (uint32_t)(ranges[i].end - ranges[i].begin) + 1;
        }
        bits = cm_calloc((ports_total + 63) / 64, sizeof(*bits));
        if (bits == NULL) {
            goto err;
        }
        if (ports_total % 64 != 0) {
            /* Bits past the last port read as used, so scans need no bound. */
            bits[ports_total / 64] = ~(uint64_t)0 << (ports_total % 64);
        }
    }
    if (in->n_used_ports &&
        (ext = cm_memdup(in->used_ports, in->n_used_ports * sizeof(*ext))) == NULL) {
        goto err;
    }
    uint32_t slot = node_find(s, in->id);
    bool fresh = slot == SCHED__NONE;
    if (fresh) {
        if (grow((void **)&s->nodes, &s->cap_nodes, s->n_nodes + 1, sizeof(*s->nodes)) !=
                0 ||
            sched__imap_reserve(&s->node_by_id, 1) != 0) {
            goto err;
        }
        if (s->cap_live < s->cap_nodes) {
            uint32_t *live = cm_reallocarray(s->live, s->cap_nodes, sizeof(*live));
            if (live == NULL) {
                goto err;
            }
            s->live = live;
            struct sched__hot *hot = cm_reallocarray(s->hot, s->cap_nodes, sizeof(*hot));
            if (hot == NULL) {
                goto err;
            }
            s->hot = hot;
            for (uint32_t c = 0; c < s->n_cols; c++) {
                uint32_t *v = cm_reallocarray(s->cols[c].vals, s->cap_nodes, sizeof(*v));
                if (v == NULL) {
                    goto err;
                }
                s->cols[c].vals = v;
            }
            s->cap_live = s->cap_nodes;
        }
    }

    /* Commit. */
    struct sched__node *n;
    if (fresh) {
        slot = s->n_nodes++;
        n = &s->nodes[slot];
        memset(n, 0, sizeof(*n));
        n->id_str = id_str;
        n->task_head = SCHED__NONE;
        n->live = true;
        n->live_pos = s->n_live;
        s->live[s->n_live++] = slot;
        *sched__imap_upsert(&s->node_by_id, id_str) = slot;
    } else {
        n = &s->nodes[slot];
        cluster_add(s, n, -1);
        if (n->n_tasks > 0 && !same_attrs(n, attrs, (uint32_t)in->n_attrs, host_str)) {
            /* Counts by attribute value are stale: rebuilt on next use. */
            for (uint32_t i = 0; i < s->n_apps; i++) {
                keys_free(&s->apps[i]);
            }
        }
        node_arrays_free(n);
    }
    n->host_str = host_str;
    n->state = (uint8_t)in->state;
    memcpy(n->total, in->total.v, sizeof(n->total));
    memcpy(n->ext_used, in->used.v, sizeof(n->ext_used));
    for (int k = 0; k < NRES; k++) {
        n->star_cap[k] = n->total[k] - reserved[k];
    }
    n->attrs = attrs;
    n->n_attrs = (uint32_t)in->n_attrs;
    n->rsv = rsv;
    n->n_rsv = (uint32_t)in->n_reservations;
    n->ranges = ranges;
    n->n_ranges = (uint32_t)in->n_port_ranges;
    n->port_bits = bits;
    n->ports_total = ports_total;
    n->ext_ports = ext;
    n->n_ext_ports = (uint32_t)in->n_used_ports;
    node_recount(s, n);
    sched__hot_sync(s, n);
    for (uint32_t c = 0; c < s->n_cols; c++) {
        s->cols[c].vals[n->live_pos] = sched__col_entry(n, s->cols[c].key);
    }
    cluster_add(s, n, +1);
    return 0;

err:
    cm_free(&attrs);
    cm_free(&rsv);
    cm_free(&ranges);
    cm_free(&bits);
    cm_free(&ext);
    return rv;
}

int sched_node_remove(struct sched *s, const char *id)
{
    uint32_t slot = node_find(s, id);
    if (slot == SCHED__NONE) {
        return CM_ENOTFOUND;
    }
    struct sched__node *n = &s->nodes[slot];
    while (n->task_head != SCHED__NONE) {
        sched__task_delete(s, n->task_head);
    }
    cluster_add(s, n, -1);
    sched__imap_remove(&s->node_by_id, n->id_str);
    uint32_t last = s->live[--s->n_live];
    s->live[n->live_pos] = last;
    s->hot[n->live_pos] = s->hot[s->n_live];
    for (uint32_t c = 0; c < s->n_cols; c++) {
        s->cols[c].vals[n->live_pos] = s->cols[c].vals[s->n_live];
    }
    s->nodes[last].live_pos = n->live_pos;
    node_arrays_free(n);
    n->live = false;
    /* The slot stays: apps' per-node counts never refer to it again. */
    return 0;
}

int sched_node_usage(const struct sched *s, const char *id,
                     struct sched_resources *ret_used, enum sched_node_state *ret_state)
{
    uint32_t slot = node_find(s, id);
    if (slot == SCHED__NONE) {
        return CM_ENOTFOUND;
    }
    if (ret_used != NULL) {
        memcpy(ret_used->v, s->nodes[slot].used, sizeof(ret_used->v));
    }
    if (ret_state != NULL) {
        *ret_state = (enum sched_node_state)s->nodes[slot].state;
    }
    return 0;
}
