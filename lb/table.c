/* The VIP table: an immutable snapshot with refcounted shared load state, the
 * power-of-two-choices backend choice, and the slot that publishes tables to
 * other threads. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "lb/lb_int.h"

int lb__key_cmp(struct lb_endpoint a, enum lb_proto pa, struct lb_endpoint b,
                enum lb_proto pb)
{
    uint32_t x = ntohl(a.addr.s_addr), y = ntohl(b.addr.s_addr);
    if (x != y) {
        return x < y ? -1 : 1;
    }
    if (a.port != b.port) {
        return a.port < b.port ? -1 : 1;
    }
    if (pa != pb) {
        return pa < pb ? -1 : 1;
    }
    return 0;
}

static int vip_cmp(const void *a, const void *b)
{
    const struct lb_vip *x = a, *y = b;
    return lb__key_cmp(x->vip, x->proto, y->vip, y->proto);
}

static void backend_state_unref(struct lb_backend_state *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1) {
        cm_free_raw(s);
    }
}

static void vip_state_unref(struct lb_vip_state *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1) {
        cm_free_raw(s);
    }
}

static void table_free(struct lb_table *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < t->nvips; i++) {
        struct lb_vip *v = &t->vips[i];
        for (size_t j = 0; j < v->nbackends; j++) {
            backend_state_unref(v->backends[j].state);
        }
        vip_state_unref(v->state);
        cm_free_raw(v->backends);
        cm_free_raw((void *)v->eligible);
        cm_free_raw((void *)v->name);
    }
    cm_free(&t->vips);
    cm_free(&t);
}

/* Fill @v from @s (sorted later); shared state from @pv when the VIP existed. */
static int vip_build(struct lb_vip *v, const struct lb_vip_spec *s,
                     const struct lb_vip *pv, struct cm_errbuf *eb)
{
    char vs[LB_ENDPOINT_STRLEN], bs[LB_ENDPOINT_STRLEN];

    v->vip = s->vip;
    v->proto = s->proto;
    v->mode = s->mode;
    v->proxy_protocol = s->proxy_protocol;
    v->name = cm_strdup(s->name != NULL ? s->name : "");
    v->backends = cm_calloc(s->nbackends ? s->nbackends : 1, sizeof(*v->backends));
    uint32_t *elig = cm_calloc(s->nbackends ? s->nbackends : 1, sizeof(uint32_t));
    v->eligible = elig;
    if (v->name == NULL || v->backends == NULL || elig == NULL) {
        return CM_ENOMEM;
    }
    if (pv != NULL) {
        v->state = pv->state;
        atomic_fetch_add(&v->state->refs, 1);
    } else {
        v->state = cm_calloc(1, sizeof(*v->state));
        if (v->state == NULL) {
            return CM_ENOMEM;
        }
        atomic_init(&v->state->refs, 1);
    }
    for (size_t j = 0; j < s->nbackends; j++) {
        const struct lb_backend_spec *bsp = &s->backends[j];
        struct lb_backend *b = &v->backends[j];
        if (bsp->ep.port == 0 || bsp->weight > LB_WEIGHT_MAX) {
            return cm_err_setf(eb, CM_EINVAL, "VIP %s: backend %s: %s",
                               lb_endpoint_str(s->vip, vs), lb_endpoint_str(bsp->ep, bs),
                               bsp->ep.port == 0 ? "port 0" : "weight above 1000");
        }
        for (size_t k = 0; k < j; k++) {
            if (lb_endpoint_eq(v->backends[k].ep, bsp->ep)) {
                return cm_err_setf(eb, CM_EINVAL, "VIP %s: backend %s listed twice",
                                   lb_endpoint_str(s->vip, vs),
                                   lb_endpoint_str(bsp->ep, bs));
            }
        }
        b->ep = bsp->ep;
        b->weight = bsp->weight;
        b->draining = bsp->draining;
        b->eligible = bsp->weight > 0 && !bsp->draining;
        for (size_t k = 0; pv != NULL && k < pv->nbackends; k++) {
            if (lb_endpoint_eq(pv->backends[k].ep, bsp->ep)) {
                b->state = pv->backends[k].state;
                atomic_fetch_add(&b->state->refs, 1);
                break;
            }
        }
        if (b->state == NULL) {
            b->state = cm_calloc(1, sizeof(*b->state));
            if (b->state == NULL) {
                return CM_ENOMEM;
            }
            atomic_init(&b->state->refs, 1);
        }
        if (!b->draining) {
            /* Back in service (or never drained): no deadline. */
            atomic_store(&b->state->drain_deadline_ns, 0);
        }
        v->nbackends = j + 1;
        if (b->eligible) {
            elig[v->neligible++] = (uint32_t)j;
            v->total_weight += b->weight;
        }
    }
    return 0;
}

int lb_table_new(const struct lb_vip_spec *vips, size_t nvips,
                 const struct lb_table *prev, struct lb_table **ret, struct cm_errbuf *eb)
{
    char vs[LB_ENDPOINT_STRLEN];
    int rv;

    if (nvips > LB_MAX_VIPS) {
        return cm_err_setf(eb, CM_ETOOBIG, "%zu VIPs: the limit is %d", nvips,
                           LB_MAX_VIPS);
    }
    for (size_t i = 0; i < nvips; i++) {
        const struct lb_vip_spec *s = &vips[i];
        const char *why = NULL;
        if (s->vip.port == 0) {
            why = "port 0";
        } else if (s->proto != LB_PROTO_TCP && s->proto != LB_PROTO_UDP) {
            why = "unknown protocol";
        } else if (s->mode > LB_MODE_PROXY) {
            why = "unknown mode";
        } else if (s->proxy_protocol &&
                   (s->mode == LB_MODE_NAT || s->proto != LB_PROTO_TCP)) {
            why = "PROXY protocol needs mode proxy and TCP";
        }
        if (why != NULL) {
            return cm_err_setf(eb, CM_EINVAL, "VIP %s: %s", lb_endpoint_str(s->vip, vs),
                               why);
        }
        if (s->nbackends > LB_MAX_BACKENDS) {
            return cm_err_setf(eb, CM_ETOOBIG, "VIP %s: %zu backends: the limit is %d",
                               lb_endpoint_str(s->vip, vs), s->nbackends,
                               LB_MAX_BACKENDS);
        }
        if (s->nbackends > 0 && s->backends == NULL) {
            return cm_err_setf(eb, CM_EINVAL, "VIP %s: no backend array",
                               lb_endpoint_str(s->vip, vs));
        }
    }

    struct lb_table *t = cm_calloc(1, sizeof(*t));
    if (t == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "VIP table");
    }
    atomic_init(&t->refs, 1);
    t->vips = cm_calloc(nvips ? nvips : 1, sizeof(*t->vips));
    if (t->vips == NULL) {
        rv = cm_err_setf(eb, CM_ENOMEM, "VIP table");
        goto err_after_table;
    }
    for (size_t i = 0; i < nvips; i++) {
        const struct lb_vip *pv =
            prev != NULL ? lb_table_find(prev, vips[i].vip, vips[i].proto) : NULL;
        t->nvips = i + 1;
        rv = vip_build(&t->vips[i], &vips[i], pv, eb);
        if (rv != 0) {
            if (rv == CM_ENOMEM) {
                cm_err_setf(eb, rv, "VIP table");
            }
            goto err_after_table;
        }
    }
    qsort(t->vips, t->nvips, sizeof(*t->vips), vip_cmp);
    for (size_t i = 1; i < t->nvips; i++) {
        if (vip_cmp(&t->vips[i - 1], &t->vips[i]) == 0) {
            rv = cm_err_setf(eb, CM_EINVAL, "VIP %s/%s listed twice",
                             lb_endpoint_str(t->vips[i].vip, vs),
                             t->vips[i].proto == LB_PROTO_TCP ? "tcp" : "udp");
            goto err_after_table;
        }
    }
    *ret = t;
    return 0;

err_after_table:
    table_free(t);
    return rv;
}

struct lb_table *lb_table_ref(struct lb_table *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void lb_table_unref(struct lb_table *t)
{
    if (t != NULL && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) {
        table_free(t);
    }
}

size_t lb_table_count(const struct lb_table *t)
{
    return t->nvips;
}

const struct lb_vip *lb_table_at(const struct lb_table *t, size_t i)
{
    return i < t->nvips ? &t->vips[i] : NULL;
}

const struct lb_vip *lb_table_find(const struct lb_table *t, struct lb_endpoint vip,
                                   enum lb_proto proto)
{
    size_t lo = 0, hi = t->nvips;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = lb__key_cmp(vip, proto, t->vips[mid].vip, t->vips[mid].proto);
        if (c == 0) {
            return &t->vips[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

int lb_table_backend_conns(const struct lb_table *t, struct lb_endpoint be,
                           uint64_t *ret_conns)
{
    uint64_t sum = 0;
    bool found = false;
    for (size_t i = 0; i < t->nvips; i++) {
        const struct lb_vip *v = &t->vips[i];
        for (size_t j = 0; j < v->nbackends; j++) {
            if (lb_endpoint_eq(v->backends[j].ep, be)) {
                sum += atomic_load(&v->backends[j].state->active);
                found = true;
            }
        }
    }
    if (!found) {
        return CM_ENOTFOUND;
    }
    *ret_conns = sum;
    return 0;
}

/* ------------------------------------------------------------------ choice */

uint32_t lb_backend_active(const struct lb_backend *b)
{
    return atomic_load_explicit(&b->state->active, memory_order_relaxed);
}

void lb_backend_conn_begin(const struct lb_backend *b)
{
    atomic_fetch_add_explicit(&b->state->active, 1, memory_order_relaxed);
}

void lb_backend_conn_end(const struct lb_backend *b)
{
    atomic_fetch_sub_explicit(&b->state->active, 1, memory_order_relaxed);
}

static bool excluded(uint32_t idx, const uint32_t *exclude, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (exclude[i] == idx) {
            return true;
        }
    }
    return false;
}

/* A uniformly drawn eligible backend not in @exclude and not @not, or -1. Rejection
 * sampling first (cheap when few are excluded), then a scan for the rare case where
 * most are. */
static int64_t draw(const struct lb_vip *v, struct cm_rng *rng, const uint32_t *exclude,
                    size_t nex, int64_t not )
{
    for (int tries = 0; tries < 8; tries++) {
        uint32_t idx = v->eligible[cm_rng_below(rng, v->neligible)];
        if ((int64_t)idx != not &&!excluded(idx, exclude, nex)) {
            return idx;
        }
    }
    size_t left = 0;
    for (size_t i = 0; i < v->neligible; i++) {
        uint32_t idx = v->eligible[i];
        left += (int64_t)idx != not &&!excluded(idx, exclude, nex);
    }
    if (left == 0) {
        return -1;
    }
    uint64_t k = cm_rng_below(rng, left);
    for (size_t i = 0; i < v->neligible; i++) {
        uint32_t idx = v->eligible[i];
        if ((int64_t)idx != not &&!excluded(idx, exclude, nex) && k-- == 0) {
            return idx;
        }
    }
    return -1;
}

int lb_choose(const struct lb_vip *vip, struct cm_rng *rng, const uint32_t *exclude,
              size_t nexclude)
{
    if (vip->neligible == 0) {
        return CM_ENOTFOUND;
    }
    int64_t a = draw(vip, rng, exclude, nexclude, -1);
    if (a < 0) {
        return CM_ENOTFOUND;
    }
    int64_t b = draw(vip, rng, exclude, nexclude, a);
    if (b < 0) {
        return (int)a;
    }
    /* Load per unit of weight: active_a / w_a vs active_b / w_b, cross-multiplied. */
    const struct lb_backend *ba = &vip->backends[a], *bb = &vip->backends[b];
    uint64_t la = (uint64_t)lb_backend_active(ba) * bb->weight;
    uint64_t lb = (uint64_t)lb_backend_active(bb) * ba->weight;
    return (int)(lb < la ? b : a);
}

void lb_vip_metrics_get(const struct lb_vip *v, struct lb_vip_metrics *ret)
{
    ret->active = atomic_load(&v->state->active);
    ret->total = atomic_load(&v->state->total);
    ret->failed = atomic_load(&v->state->failed);
    ret->bytes_in = atomic_load(&v->state->bytes_in);
    ret->bytes_out = atomic_load(&v->state->bytes_out);
    ret->listen_error = atomic_load(&v->state->listen_error);
}

/* ------------------------------------------------------------------ slot */

struct lb_slot {
    pthread_mutex_t mu;
    struct lb_table *cur;
    atomic_uint_least64_t gen;
};

int lb_slot_new(struct lb_slot **ret)
{
    struct lb_slot *s = cm_calloc(1, sizeof(*s));
    if (s == NULL) {
        return CM_ENOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    *ret = s;
    return 0;
}

void lb_slot_free(struct lb_slot *s)
{
    if (s == NULL) {
        return;
    }
    lb_table_unref(s->cur);
    pthread_mutex_destroy(&s->mu);
    cm_free(&s);
}

void lb_slot_publish(struct lb_slot *s, struct lb_table *t)
{
    pthread_mutex_lock(&s->mu);
    struct lb_table *old = s->cur;
    s->cur = t;
    atomic_fetch_add(&s->gen, 1);
    pthread_mutex_unlock(&s->mu);
    lb_table_unref(old); /* outside the lock: freeing may take a while */
}

struct lb_table *lb_slot_get(struct lb_slot *s)
{
    pthread_mutex_lock(&s->mu);
    struct lb_table *t = s->cur != NULL ? lb_table_ref(s->cur) : NULL;
    pthread_mutex_unlock(&s->mu);
    return t;
}

uint64_t lb_slot_generation(const struct lb_slot *s)
{
    return atomic_load(&((struct lb_slot *)s)->gen);
}
