/* lib/sched: placement. DRF across roles (Ghodsi et al., "Dominant Resource
 * Fairness", NSDI 2011, §4 progressive filling): a min-heap of the roles with
 * pending requests keyed by weighted dominant share, updated after each
 * placement (O(log roles)). For one task: visit the nodes in a random order (a
 * random start and a random stride coprime with the node count, so every node is
 * visited once), score the first k feasible ones and take the best; when none
 * is feasible the walk has seen every node, so "unplaceable" is exact, and a
 * second pass counts what rejected each node. */
#include <stdio.h>
#include <string.h>

#include "sched_int.h"

struct preq {
    const struct sched_request *req;
    uint32_t app, role;
    bool star_ok, rsv_ok;
    uint32_t n_fixed, n_dyn;
    uint16_t fixed[SCHED_MAX_PORTS];   /* exact ports, distinct */
    uint8_t fixed_at[SCHED_MAX_PORTS]; /* their index in req->ports */
    struct sched__pcons *cons;
    uint32_t n_cons;
    uint32_t next_instance;
    uint32_t q_next; /* next request of the same role, SCHED__NONE */
};

struct place_ctx {
    struct sched *s;
    struct preq *pr;
    size_t n;
    struct sched_result *out;
    size_t cap_asg, cap_unp;
    struct cm_buf strings;
    uint16_t *ports;
    size_t n_ports, cap_ports;
    uint32_t *heap;
    uint32_t n_heap;
};

static inline uint64_t sat_sub(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

/* ------------------------------------------------------------------ filters */

enum fit {
    FIT_OK = 0,
    FIT_STATE,
    FIT_ROLE,
    FIT_RES,
    FIT_PORTS,
    FIT_CONS,
};

static inline bool res_ok(const struct preq *pr, const struct sched__node *n,
                          const struct sched__rsv *r, int k)
{
    uint64_t avail = pr->star_ok ? sat_sub(n->star_cap[k], n->star_used[k]) : 0;
    if (r != NULL) {
        avail += sat_sub(r->cap[k], r->used[k]);
    }
    return pr->req->res.v[k] <= avail;
}

static bool ports_ok(const struct preq *pr, const struct sched__node *n)
{
    if (pr->n_fixed + pr->n_dyn > n->ports_free) {
        return false;
    }
    for (uint32_t i = 0; i < pr->n_fixed; i++) {
        int32_t b = sched__port_bit(n, pr->fixed[i]);
        if (b < 0 || (n->port_bits[b / 64] >> (b % 64) & 1)) {
            return false;
        }
    }
    return true;
}

/* The full check, on the node itself. */
static inline uint32_t col_val(const struct sched *s, const struct sched__pcons *pc,
                               uint32_t pos)
{
    return pc->col == SCHED__NONE ? 0 : s->cols[pc->col].vals[pos];
}

static enum fit fits_slow(const struct sched *s, struct preq *pr, struct sched__node *n)
{
    if (n->state != SCHED_NODE_UP) {
        return FIT_STATE;
    }
    struct sched__rsv *r = pr->rsv_ok && n->n_rsv ? sched__node_rsv(n, pr->role) : NULL;
    if (!pr->star_ok && r == NULL) {
        return FIT_ROLE;
    }
    for (int k = 0; k < NRES; k++) {
        if (!res_ok(pr, n, r, k)) {
            return FIT_RES;
        }
    }
    if ((pr->n_fixed | pr->n_dyn) && !ports_ok(pr, n)) {
        return FIT_PORTS;
    }
    const struct sched__app *app = &s->apps[pr->app];
    for (uint32_t i = 0; i < pr->n_cons; i++) {
        if (!sched__cons_ok(s, app, &pr->cons[i],
                            col_val(s, &pr->cons[i], n->live_pos))) {
            return FIT_CONS;
        }
    }
    return FIT_OK;
}

/* The same verdict as fits_slow, reading the packed copy first: most nodes are
 * rejected (or accepted) without touching the node itself. */
static inline enum fit fits(const struct sched *s, struct preq *pr,
                            const struct sched__hot *h)
{
    if (!h->up) {
        return FIT_STATE;
    }
    if (h->n_rsv && pr->rsv_ok) {
        return fits_slow(s, pr, &s->nodes[h->slot]);
    }
    if (!pr->star_ok) {
        return FIT_ROLE;
    }
    const uint64_t *d = pr->req->res.v;
    if ((d[0] > h->avail[0]) | (d[1] > h->avail[1]) | (d[2] > h->avail[2]) |
        (d[3] > h->avail[3])) {
        return FIT_RES;
    }
    if (pr->n_fixed | pr->n_dyn) {
        if (pr->n_fixed + pr->n_dyn > h->ports_free) {
            return FIT_PORTS;
        }
        if (pr->n_fixed && !ports_ok(pr, &s->nodes[h->slot])) {
            return FIT_PORTS;
        }
    }
    if (pr->n_cons) {
        const struct sched__app *app = &s->apps[pr->app];
        uint32_t pos = (uint32_t)(h - s->hot);
        for (uint32_t i = 0; i < pr->n_cons; i++) {
            if (!sched__cons_ok(s, app, &pr->cons[i], col_val(s, &pr->cons[i], pos))) {
                return FIT_CONS;
            }
        }
    }
    return FIT_OK;
}

static void explain(const struct sched *s, struct preq *pr, struct sched_explain *e)
{
    const struct sched__app *app = &s->apps[pr->app];
    e->nodes = s->n_live;
    for (uint32_t i = 0; i < s->n_live; i++) {
        struct sched__node *n = &s->nodes[s->live[i]];
        if (n->state != SCHED_NODE_UP) {
            e->state++;
            continue;
        }
        struct sched__rsv *r = pr->rsv_ok ? sched__node_rsv(n, pr->role) : NULL;
        if (!pr->star_ok && r == NULL) {
            e->role++;
            continue;
        }
        for (int k = 0; k < NRES; k++) {
            e->res[k] += !res_ok(pr, n, r, k);
        }
        e->ports += !ports_ok(pr, n);
        for (uint32_t c = 0; c < pr->n_cons; c++) {
            e->constraint[c] +=
                !sched__cons_ok(s, app, &pr->cons[c], col_val(s, &pr->cons[c], i));
        }
    }
}

/* How full the node would be with @d on it: the sum of its cpus and mem
 * fractions. */
static inline double fullness(const struct sched__hot *h, const uint64_t *d)
{
    return (double)(h->used[0] + d[0]) * h->inv_total[0] +
           (double)(h->used[1] + d[1]) * h->inv_total[1];
}

static uint32_t gcd32(uint32_t a, uint32_t b)
{
    while (b != 0) {
        uint32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static uint32_t sample_size(const struct sched *s)
{
    if (s->opts.sample != 0) {
        return s->opts.sample > UINT32_MAX ? UINT32_MAX : (uint32_t)s->opts.sample;
    }
    uint32_t lg = 0;
    while (lg < 32 && ((uint64_t)1 << lg) < s->n_live) {
        lg++;
    }
    return 2 * lg + 4;
}

/* The best of up to k feasible nodes in a random visiting order, or NONE. */
static uint32_t pick_node(struct sched *s, struct preq *pr)
{
    uint32_t n = s->n_live;
    if (n == 0) {
        return SCHED__NONE;
    }
    uint32_t k = sample_size(s);
    uint32_t pos = (uint32_t)cm_rng_below(&s->rng, n);
    uint32_t stride = 1;
    if (n > 2) {
        stride = 1 + (uint32_t)cm_rng_below(&s->rng, n - 1);
        while (gcd32(stride, n) != 1) {
            stride = stride + 1 < n ? stride + 1 : 1;
        }
    }
    bool binpack = s->opts.policy == SCHED_POLICY_BINPACK;
    const uint64_t *d = pr->req->res.v;
    uint32_t best = SCHED__NONE, found = 0;
    double best_score = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct sched__hot *h = &s->hot[pos];
        pos += stride;
        if (pos >= n) {
            pos -= n;
        }
        /* The walk's order is known: fetch the next node while checking this one
         * (a random walk defeats the hardware prefetcher). */
        __builtin_prefetch(&s->hot[pos]);
        if (fits(s, pr, h) != FIT_OK) {
            continue;
        }
        double sc = fullness(h, d);
        if (best == SCHED__NONE || (binpack ? sc > best_score : sc < best_score)) {
            best = h->slot;
            best_score = sc;
        }
        if (++found >= k) {
            break;
        }
    }
    return best;
}

/* The first free port bit at or after @from (wrapping) not in @taken. */
static uint32_t next_free_bit(const struct sched__node *n, uint32_t from,
                              const uint16_t *taken, uint32_t n_taken)
{
    uint32_t words = (n->ports_total + 63) / 64;
    uint32_t w = from / 64;
    uint64_t mask = ~(uint64_t)0 << (from % 64);
    for (uint32_t step = 0; step <= words; step++) {
        uint64_t freeb = ~n->port_bits[w] & mask;
        while (freeb != 0) {
            uint32_t b = w * 64 + (uint32_t)__builtin_ctzll(freeb);
            freeb &= freeb - 1;
            uint16_t p = sched__bit_port(n, b);
            bool dup = false;
            for (uint32_t i = 0; i < n_taken && !dup; i++) {
                dup = taken[i] == p;
            }
            if (!dup) {
                return b;
            }
        }
        mask = ~(uint64_t)0;
        w = w + 1 < words ? w + 1 : 0;
    }
    CM_BUG_ON(true); /* ports_ok said there were enough */
    return 0;
}

/* Concrete host ports for @pr on @n into @out, in the request's order. */
static void choose_ports(struct sched *s, const struct preq *pr,
                         const struct sched__node *n, uint16_t *out)
{
    const struct sched_request *rq = pr->req;
    uint16_t taken[SCHED_MAX_PORTS];
    uint32_t n_taken = 0;
    bool is_fixed[SCHED_MAX_PORTS] = {false};
    for (uint32_t i = 0; i < pr->n_fixed; i++) {
        out[pr->fixed_at[i]] = pr->fixed[i];
        is_fixed[pr->fixed_at[i]] = true;
        taken[n_taken++] = pr->fixed[i];
    }
    for (size_t i = 0; i < rq->n_ports; i++) {
        if (is_fixed[i]) {
            continue;
        }
        uint32_t from = (uint32_t)cm_rng_below(&s->rng, n->ports_total);
        uint16_t p = sched__bit_port(n, next_free_bit(n, from, taken, n_taken));
        out[i] = p;
        taken[n_taken++] = p;
    }
}

/* ------------------------------------------------------------------ DRF heap */

static bool heap_less(const struct sched *s, uint32_t a, uint32_t b)
{
    const struct sched__role *x = &s->roles[a], *y = &s->roles[b];
    if (x->share != y->share) {
        return x->share < y->share;
    }
    return a < b;
}

static void heap_swap(struct place_ctx *c, uint32_t i, uint32_t j)
{
    uint32_t t = c->heap[i];
    c->heap[i] = c->heap[j];
    c->heap[j] = t;
    c->s->roles[c->heap[i]].heap_pos = i;
    c->s->roles[c->heap[j]].heap_pos = j;
}

static void heap_down(struct place_ctx *c, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < c->n_heap && heap_less(c->s, c->heap[l], c->heap[m])) {
            m = l;
        }
        if (r < c->n_heap && heap_less(c->s, c->heap[r], c->heap[m])) {
            m = r;
        }
        if (m == i) {
            return;
        }
        heap_swap(c, i, m);
        i = m;
    }
}

static void heap_pop(struct place_ctx *c)
{
    c->s->roles[c->heap[0]].heap_pos = SCHED__NONE;
    c->n_heap--;
    if (c->n_heap > 0) {
        c->heap[0] = c->heap[c->n_heap];
        c->s->roles[c->heap[0]].heap_pos = 0;
        heap_down(c, 0);
    }
}

/* ------------------------------------------------------------------ results */

static int add_unplaced(struct place_ctx *c, uint32_t ri, const struct sched_explain *e)
{
    struct sched_result *out = c->out;
    struct preq *pr = &c->pr[ri];
    if (out->n_unplaced == c->cap_unp) {
        size_t ncap = c->cap_unp ? c->cap_unp * 2 : 8;
        void *n = cm_reallocarray(out->unplaced, ncap, sizeof(*out->unplaced));
        if (n == NULL) {
            return CM_ENOMEM;
        }
        out->unplaced = n;
        c->cap_unp = ncap;
    }
    struct sched_unplaced *u = &out->unplaced[out->n_unplaced++];
    u->req = ri;
    u->first = pr->next_instance;
    u->count = pr->req->count - pr->next_instance;
    u->explain = *e;
    pr->next_instance = pr->req->count;
    return 0;
}

/* "<app>#<n>" with the app's next unused n. */
static const char *gen_id(struct sched *s, struct preq *pr, char *buf, size_t cap)
{
    struct sched__app *a = &s->apps[pr->app];
    const char *name = s->strs.s[a->name_str];
    size_t len = strlen(name);
    if (len > cap - 16) {
        len = cap - 16;
    }
    memcpy(buf, name, len);
    buf[len] = '#';
    do {
        /* Formatted by hand: snprintf was a visible part of a placement. */
        char digits[12];
        size_t nd = 0;
        uint32_t v = a->gen_seq++;
        do {
            digits[nd++] = (char)('0' + v % 10);
            v /= 10;
        } while (v != 0);
        for (size_t i = 0; i < nd; i++) {
            buf[len + 1 + i] = digits[nd - 1 - i];
        }
        buf[len + 1 + nd] = '\0';
    } while (sched__task_exists(s, buf));
    return buf;
}

/* Place one instance of request @ri. 1 placed, 0 not (recorded), or CM_ENOMEM. */
static int place_one(struct place_ctx *c, uint32_t ri)
{
    struct sched *s = c->s;
    struct preq *pr = &c->pr[ri];
    const struct sched_request *rq = pr->req;
    struct sched__role *role = &s->roles[pr->role];

    if (role->has_quota) {
        for (int k = 0; k < NRES; k++) {
            if (role->quota[k] != SCHED_UNLIMITED &&
                role->used[k] + rq->res.v[k] > role->quota[k]) {
                struct sched_explain e = {.nodes = s->n_live, .quota = true};
                return add_unplaced(c, ri, &e);
            }
        }
    }
    uint32_t slot = pick_node(s, pr);
    if (slot == SCHED__NONE) {
        struct sched_explain e = {0};
        explain(s, pr, &e);
        return add_unplaced(c, ri, &e);
    }

    struct sched_result *out = c->out;
    if (out->n_assignments == c->cap_asg) {
        size_t ncap = c->cap_asg ? c->cap_asg * 2 : 64;
        void *n = cm_reallocarray(out->assignments, ncap, sizeof(*out->assignments));
        if (n == NULL) {
            return CM_ENOMEM;
        }
        out->assignments = n;
        c->cap_asg = ncap;
    }
    if (c->n_ports + rq->n_ports > c->cap_ports) {
        size_t ncap = c->cap_ports ? c->cap_ports * 2 : 64;
        while (ncap < c->n_ports + rq->n_ports) {
            ncap *= 2;
        }
        void *n = cm_reallocarray(c->ports, ncap, sizeof(*c->ports));
        if (n == NULL) {
            return CM_ENOMEM;
        }
        c->ports = n;
        c->cap_ports = ncap;
    }
    char idbuf[512];
    const char *id = rq->task_ids ? rq->task_ids[pr->next_instance]
                                  : gen_id(s, pr, idbuf, sizeof(idbuf));
    size_t id_off = c->strings.len;
    if (cm_buf_append(&c->strings, id, strlen(id) + 1) != 0) {
        return CM_ENOMEM;
    }
    /* NULL + 0 is undefined in C: no ports array yet means no ports. */
    uint16_t *ports = c->ports != NULL ? c->ports + c->n_ports : NULL;
    choose_ports(s, pr, &s->nodes[slot], ports);
    int rv = sched__task_insert(s, id, pr->app, pr->role, slot, rq->res.v, pr->rsv_ok,
                                ports, (uint32_t)rq->n_ports, NULL);
    if (rv != 0) {
        c->strings.len = id_off;
        return rv;
    }
    struct sched_assignment *a = &out->assignments[out->n_assignments++];
    a->req = ri;
    a->instance = pr->next_instance++;
    /* Offsets for now: the buffers may still move; fixed up at the end. */
    a->task_id = (const char *)(uintptr_t)id_off;
    a->node_id = s->strs.s[s->nodes[slot].id_str];
    a->hostname = s->strs.s[s->nodes[slot].host_str];
    a->ports = (const uint16_t *)(uintptr_t)c->n_ports;
    a->n_ports = rq->n_ports;
    c->n_ports += rq->n_ports;
    role->share = sched__role_share_of(s, role);
    return 1;
}

/* ------------------------------------------------------------------ prepare */

static bool accepts(const struct sched_request *rq, const char *name)
{
    for (size_t i = 0; i < rq->n_accepted_roles; i++) {
        if (rq->accepted_roles[i] != NULL && strcmp(rq->accepted_roles[i], name) == 0) {
            return true;
        }
    }
    return false;
}

static const char *id_of(const void *ctx, uint32_t idx)
{
    const char *const *ids = ctx;
    return ids[idx];
}

/* Every given task id is non-empty, unknown to @s and unique in the call. */
static int check_ids(struct sched *s, const struct sched_request *reqs, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].task_ids != NULL) {
            total += reqs[i].count;
        }
    }
    if (total == 0) {
        return 0;
    }
    if (total > UINT32_MAX / 4) {
        return CM_EINVAL;
    }
    const char **ids = cm_calloc(total, sizeof(*ids));
    struct sched__smap m = {0};
    int rv = CM_ENOMEM;
    if (ids == NULL || sched__smap_reserve(&m, (uint32_t)total) != 0) {
        goto out;
    }
    rv = CM_EINVAL;
    uint32_t k = 0;
    for (size_t i = 0; i < n; i++) {
        for (uint32_t j = 0; reqs[i].task_ids && j < reqs[i].count; j++) {
            const char *id = reqs[i].task_ids[j];
            if (id == NULL || id[0] == '\0' || strlen(id) >= 512 ||
                sched__task_exists(s, id)) {
                goto out;
            }
            uint32_t h = sched__hash(id);
            if (sched__smap_find(&m, id, h, id_of, ids) != SCHED__NONE) {
                goto out;
            }
            ids[k] = id;
            sched__smap_insert(&m, h, k++);
        }
    }
    rv = 0;
out:
    sched__smap_done(&m);
    cm_free(&ids);
    return rv;
}

static int prepare(struct sched *s, const struct sched_request *rq, struct preq *pr)
{
    if (rq->app == NULL || rq->app[0] == '\0' || rq->n_ports > SCHED_MAX_PORTS ||
        rq->n_constraints > SCHED_MAX_CONSTRAINTS || (rq->n_ports && rq->ports == NULL) ||
        (rq->role != NULL && rq->role[0] == '\0')) {
        return CM_EINVAL;
    }
    const char *role = rq->role ? rq->role : "*";
    int rv = sched__app_get(s, rq->app, &pr->app);
    if (rv == 0) {
        rv = sched__role_get(s, role, &pr->role);
    }
    if (rv != 0) {
        return rv;
    }
    if (rq->n_accepted_roles == 0) {
        pr->star_ok = true;
        pr->rsv_ok = strcmp(role, "*") != 0;
    } else {
        pr->star_ok = accepts(rq, "*");
        pr->rsv_ok = strcmp(role, "*") != 0 && accepts(rq, role);
    }
    for (size_t i = 0; i < rq->n_ports; i++) {
        uint16_t p = rq->ports[i];
        if (p == 0 || !rq->require_ports) {
            pr->n_dyn++;
            continue;
        }
        for (uint32_t j = 0; j < pr->n_fixed; j++) {
            if (pr->fixed[j] == p) {
                return CM_EINVAL;
            }
        }
        pr->fixed_at[pr->n_fixed] = (uint8_t)i;
        pr->fixed[pr->n_fixed++] = p;
    }
    if (rq->n_constraints > 0) {
        pr->cons = cm_calloc(rq->n_constraints, sizeof(*pr->cons));
        if (pr->cons == NULL) {
            return CM_ENOMEM;
        }
    }
    for (size_t i = 0; i < rq->n_constraints; i++) {
        const struct sched_constraint *c = &rq->constraints[i];
        if (c->field == NULL || c->field[0] == '\0') {
            return CM_EINVAL;
        }
        rv = sched__cons_prepare(s, pr->app, c, &pr->cons[i]);
        if (rv != 0) {
            return rv;
        }
        pr->n_cons++;
    }
    return 0;
}

/* ------------------------------------------------------------------ sched_place */

void sched_result_done(struct sched_result *res)
{
    cm_free(&res->assignments);
    cm_free(&res->unplaced);
    cm_free(&res->strings);
    cm_free(&res->ports);
    res->n_assignments = 0;
    res->n_unplaced = 0;
}

static int run(struct place_ctx *c)
{
    struct sched *s = c->s;
    /* Queue each role's requests in array order; heap the roles with any. */
    for (size_t i = 0; i < c->n; i++) {
        struct sched__role *r = &s->roles[c->pr[i].role];
        c->pr[i].q_next = SCHED__NONE;
        if (c->pr[i].req->count == 0) {
            continue;
        }
        if (r->heap_pos == SCHED__NONE) {
            r->q_head = r->q_tail = (uint32_t)i;
            r->share = sched__role_share_of(s, r);
            r->heap_pos = c->n_heap;
            c->heap[c->n_heap++] = c->pr[i].role;
        } else {
            c->pr[r->q_tail].q_next = (uint32_t)i;
            r->q_tail = (uint32_t)i;
        }
    }
    for (uint32_t i = c->n_heap; i-- > 0;) {
        heap_down(c, i);
    }
    while (c->n_heap > 0) {
        struct sched__role *r = &s->roles[c->heap[0]];
        uint32_t ri = r->q_head;
        int rv = place_one(c, ri);
        if (rv < 0) {
            return rv;
        }
        if (c->pr[ri].next_instance == c->pr[ri].req->count) {
            r->q_head = c->pr[ri].q_next;
            if (r->q_head == SCHED__NONE) {
                heap_pop(c);
                continue;
            }
        }
        if (rv == 1) {
            heap_down(c, 0); /* its share grew */
        }
    }
    return 0;
}

int sched_place(struct sched *s, const struct sched_request *reqs, size_t n,
                struct sched_result *out)
{
    memset(out, 0, sizeof(*out));
    if (n > UINT32_MAX / 2) {
        return CM_EINVAL;
    }
    struct place_ctx c = {.s = s, .n = n, .out = out};
    int rv = check_ids(s, reqs, n);
    if (rv != 0) {
        return rv;
    }
    c.pr = cm_calloc(n ? n : 1, sizeof(*c.pr));
    c.heap = cm_calloc(n ? n : 1, sizeof(*c.heap));
    if (c.pr == NULL || c.heap == NULL) {
        rv = CM_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        c.pr[i].req = &reqs[i];
        rv = prepare(s, &reqs[i], &c.pr[i]);
        if (rv != 0) {
            goto done;
        }
    }
    rv = run(&c);
    if (rv != 0) {
        /* Undo this call's placements; removal never allocates. */
        for (size_t i = out->n_assignments; i-- > 0;) {
            const char *id = c.strings.data + (uintptr_t)out->assignments[i].task_id;
            CM_BUG_ON(sched_task_remove(s, id) != 0);
        }
        for (uint32_t i = 0; i < c.n_heap; i++) {
            s->roles[c.heap[i]].heap_pos = SCHED__NONE;
        }
        goto done;
    }
    out->strings = cm_buf_steal(&c.strings);
    out->ports = c.ports;
    c.ports = NULL;
    for (size_t i = 0; i < out->n_assignments; i++) {
        struct sched_assignment *a = &out->assignments[i];
        a->task_id = out->strings + (uintptr_t)a->task_id;
        a->ports = a->n_ports ? out->ports + (uintptr_t)a->ports : NULL;
    }
done:
    for (size_t i = 0; c.pr != NULL && i < n; i++) {
        for (uint32_t j = 0; j < c.pr[i].n_cons; j++) {
            sched__cons_done(&c.pr[i].cons[j]);
        }
        cm_free(&c.pr[i].cons);
    }
    cm_free(&c.pr);
    cm_free(&c.heap);
    cm_buf_done(&c.strings);
    cm_free(&c.ports);
    if (rv != 0) {
        sched_result_done(out);
    }
    return rv;
}

/* ------------------------------------------------------------------ explain text */

struct text {
    char *buf;
    size_t cap, len;
    int items;
};

static void put(struct text *t, const char *fmt, ...) CM_PRINTF(2, 3);
static void put(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *dst = t->len < t->cap ? t->buf + t->len : NULL;
    int n = vsnprintf(dst, dst ? t->cap - t->len : 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        t->len += (size_t)n;
    }
}

/* One "<count> <verb phrase>" item; @one is the phrase for a count of 1. */
static void item(struct text *t, const struct sched_explain *e, uint32_t count,
                 const char *one, const char *many)
{
    if (count == 0) {
        return;
    }
    const char *what = count == 1 ? one : many;
    if (t->items++ == 0) {
        put(t, "%u of %u node%s %s", count, e->nodes, e->nodes == 1 ? "" : "s", what);
    } else {
        put(t, "; %u %s", count, what);
    }
}

size_t sched_explain_text(const struct sched_explain *e, const struct sched_request *req,
                          char *buf, size_t cap)
{
    struct text t = {buf, cap, 0, 0};
    if (cap > 0) {
        buf[0] = '\0';
    }
    const char *role = req && req->role ? req->role : "*";
    if (e->quota) {
        put(&t, "role quota reached for role '%s'", role);
        return t.len;
    }
    if (e->nodes == 0) {
        put(&t, "no nodes");
        return t.len;
    }
    static const char *const res_one[SCHED_RES__COUNT] = {"lacks cpus", "lacks memory",
                                                          "lacks disk", "lacks gpus"};
    static const char *const res_many[SCHED_RES__COUNT] = {"lack cpus", "lack memory",
                                                           "lack disk", "lack gpus"};
    char one[SCHED_MAX_REGEX + 128], many[SCHED_MAX_REGEX + 128];
    item(&t, e, e->state, "is not up", "are not up");
    snprintf(one, sizeof(one), "has no resources for role '%s'", role);
    snprintf(many, sizeof(many), "have no resources for role '%s'", role);
    item(&t, e, e->role, one, many);
    for (int k = 0; k < SCHED_RES__COUNT; k++) {
        item(&t, e, e->res[k], res_one[k], res_many[k]);
    }
    item(&t, e, e->ports, "lacks ports", "lack ports");
    for (size_t i = 0; req != NULL && i < req->n_constraints && i < SCHED_MAX_CONSTRAINTS;
         i++) {
        const struct sched_constraint *c = &req->constraints[i];
        char spec[SCHED_MAX_REGEX + 100];
        if (c->value != NULL) {
            snprintf(spec, sizeof(spec), "%.48s:%.12s:%s", c->field, c->op, c->value);
        } else {
            snprintf(spec, sizeof(spec), "%.48s:%.12s", c->field, c->op);
        }
        snprintf(one, sizeof(one), "fails %s", spec);
        snprintf(many, sizeof(many), "fail %s", spec);
        item(&t, e, e->constraint[i], one, many);
    }
    if (t.items == 0) {
        put(&t, "no node fits");
    }
    return t.len;
}
