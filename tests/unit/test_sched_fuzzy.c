/* lib/sched: randomized property tests against a brute-force model, and OOM
 * walks.
 *
 * Each run builds a small random cluster (nodes with racks, some missing the
 * attribute, reservations, few ports, some not up), then places random requests
 * (roles, quotas, ports, constraints, acceptedResourceRoles) one call at a time,
 * with random task removals in between. A naive model of the cluster written
 * from compat.md §1.6 checks every placement when it happens (node up, resources
 * in the pools the task may use, ports free and in range, every constraint), and
 * checks every "unplaced" verdict by trying every node. The same run on a second
 * scheduler with the same seed must give the same assignments.
 *
 * Seeds are printed; SCHED_FUZZ_SEED=<n> replays one, SCHED_FUZZ_RUNS=<n> sets
 * how many. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sched/sched.h"
#include "test.h"

#define MAXN 6
#define MAXT 512
#define NR   SCHED_RES__COUNT

static const char *const roles[] = {"*", "r1", "r2"};
static const char *const racks[] = {"r-1", "r-2", "r-3", NULL};

struct m_node {
    char id[16];
    const char *rack; /* NULL = no rack_id attribute */
    bool up;
    uint64_t total[NR];
    bool has_rsv; /* reservation for "r1" */
    uint64_t rsv[NR];
    uint16_t port_lo, n_ports;
};

struct m_task {
    bool live;
    char id[32];
    int app, role, node;
    uint64_t res[NR], rsv_part[NR];
    uint16_t ports[4];
    int n_ports;
};

struct model {
    struct m_node nodes[MAXN];
    int n_nodes;
    struct m_task tasks[MAXT];
    int n_tasks;
    bool quota_set;
    uint64_t quota_cpus; /* role r2 */
};

static uint64_t rsv_used(const struct model *m, int node, int k)
{
    uint64_t u = 0;
    for (int i = 0; i < m->n_tasks; i++) {
        if (m->tasks[i].live && m->tasks[i].node == node) {
            u += m->tasks[i].rsv_part[k];
        }
    }
    return u;
}

static uint64_t star_used(const struct model *m, int node, int k)
{
    uint64_t u = 0;
    for (int i = 0; i < m->n_tasks; i++) {
        if (m->tasks[i].live && m->tasks[i].node == node) {
            u += m->tasks[i].res[k] - m->tasks[i].rsv_part[k];
        }
    }
    return u;
}

static bool port_used(const struct model *m, int node, uint16_t p)
{
    for (int i = 0; i < m->n_tasks; i++) {
        const struct m_task *t = &m->tasks[i];
        for (int j = 0; t->live && t->node == node && j < t->n_ports; j++) {
            if (t->ports[j] == p) {
                return true;
            }
        }
    }
    return false;
}

static const char *value(const struct model *m, int node, const char *field)
{
    return strcmp(field, "hostname") == 0 ? m->nodes[node].id : m->nodes[node].rack;
}

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static bool full_match(const char *re, const char *v)
{
    char buf[300];
    regex_t rx;
    snprintf(buf, sizeof(buf), "^(%s)$", re);
    if (regcomp(&rx, buf, REG_EXTENDED | REG_NOSUB) != 0) {
        abort();
    }
    bool ok = regexec(&rx, v, 0, NULL, 0) == 0;
    regfree(&rx);
    return ok;
}

/* Marathon's rule for one constraint on @node, over the app's tasks in @m. */
static bool cons_ok(const struct model *m, int app, const struct sched_constraint *c,
                    int node)
{
    const char *v = value(m, node, c->field);
    if (strcmp(c->op, "UNLIKE") == 0) {
        return v == NULL || !full_match(c->value, v);
    }
    if (v == NULL) {
        return false;
    }
    /* Groups of the app's tasks by value (NULL is a group of its own). */
    const char *gv[MAXT];
    int gc[MAXT], ng = 0, total = 0, mine = 0;
    for (int i = 0; i < m->n_tasks; i++) {
        const struct m_task *t = &m->tasks[i];
        if (!t->live || t->app != app) {
            continue;
        }
        total++;
        const char *tv = value(m, t->node, c->field);
        int g = 0;
        while (g < ng && !same(gv[g], tv)) {
            g++;
        }
        if (g == ng) {
            gv[ng] = tv;
            gc[ng++] = 0;
        }
        gc[g]++;
        if (same(tv, v)) {
            mine++;
        }
    }
    if (strcmp(c->op, "UNIQUE") == 0) {
        return mine == 0;
    }
    if (strcmp(c->op, "CLUSTER") == 0) {
        return (c->value == NULL || strcmp(c->value, v) == 0) && mine == total;
    }
    if (strcmp(c->op, "GROUP_BY") == 0) {
        if (mine == 0) {
            return true;
        }
        int min = gc[0];
        for (int g = 1; g < ng; g++) {
            min = gc[g] < min ? gc[g] : min;
        }
        int n = c->value ? atoi(c->value) : 0;
        return ng >= n && mine == min;
    }
    if (strcmp(c->op, "MAX_PER") == 0) {
        return mine < atoi(c->value);
    }
    if (strcmp(c->op, "LIKE") == 0) {
        return full_match(c->value, v);
    }
    if (strcmp(c->op, "IS") == 0) {
        return strcmp(c->value, v) == 0;
    }
    abort();
}

static bool accepts(const struct sched_request *r, const char *name)
{
    if (r->n_accepted_roles == 0) {
        return strcmp(name, "*") == 0 || strcmp(name, r->role ? r->role : "*") == 0;
    }
    for (size_t i = 0; i < r->n_accepted_roles; i++) {
        if (strcmp(r->accepted_roles[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether one instance of @r (role index @role, app @app) fits on @node now;
 * with @ports non-NULL, whether these exact ports are fine. */
static bool fits(const struct model *m, const struct sched_request *r, int app, int role,
                 int node, const uint16_t *ports)
{
    const struct m_node *n = &m->nodes[node];
    if (!n->up) {
        return false;
    }
    bool star_ok = accepts(r, "*");
    bool rsv_ok = role != 0 && n->has_rsv && strcmp(roles[role], "r1") == 0 &&
                  accepts(r, roles[role]);
    if (!star_ok && !rsv_ok) {
        return false;
    }
    for (int k = 0; k < NR; k++) {
        uint64_t avail = 0;
        uint64_t star_cap = n->total[k] - (n->has_rsv ? n->rsv[k] : 0);
        uint64_t su = star_used(m, node, k);
        if (star_ok && star_cap > su) {
            avail += star_cap - su;
        }
        uint64_t ru = rsv_used(m, node, k);
        if (rsv_ok && n->rsv[k] > ru) {
            avail += n->rsv[k] - ru;
        }
        if (r->res.v[k] > avail) {
            return false;
        }
    }
    /* Ports: with concrete ones, check them; else count what is needed. */
    if (ports != NULL) {
        for (size_t i = 0; i < r->n_ports; i++) {
            uint16_t p = ports[i];
            if (p < n->port_lo || p >= n->port_lo + n->n_ports || port_used(m, node, p)) {
                return false;
            }
            for (size_t j = 0; j < i; j++) {
                if (ports[j] == p) {
                    return false;
                }
            }
            if (r->require_ports && r->ports[i] != 0 && r->ports[i] != p) {
                return false;
            }
        }
    } else {
        int free_ports = 0;
        for (uint16_t p = n->port_lo; p < n->port_lo + n->n_ports; p++) {
            free_ports += !port_used(m, node, p);
        }
        if ((int)r->n_ports > free_ports) {
            return false;
        }
        for (size_t i = 0; r->require_ports && i < r->n_ports; i++) {
            uint16_t p = r->ports[i];
            if (p != 0 && (p < n->port_lo || p >= n->port_lo + n->n_ports ||
                           port_used(m, node, p))) {
                return false;
            }
        }
    }
    for (size_t i = 0; i < r->n_constraints; i++) {
        if (!cons_ok(m, app, &r->constraints[i], node)) {
            return false;
        }
    }
    return true;
}

static void model_add(struct model *m, const char *id, int app, int role, int node,
                      const uint64_t *res, bool rsv_ok, const uint16_t *ports,
                      int n_ports)
{
    CM_BUG_ON(m->n_tasks >= MAXT);
    struct m_task *t = &m->tasks[m->n_tasks++];
    memset(t, 0, sizeof(*t));
    t->live = true;
    snprintf(t->id, sizeof(t->id), "%s", id);
    t->app = app;
    t->role = role;
    t->node = node;
    const struct m_node *n = &m->nodes[node];
    bool use_rsv = rsv_ok && n->has_rsv && strcmp(roles[role], "r1") == 0;
    for (int k = 0; k < NR; k++) {
        t->res[k] = res[k];
        if (use_rsv) {
            uint64_t ru = rsv_used(m, node, k);
            uint64_t avail = n->rsv[k] > ru ? n->rsv[k] - ru : 0;
            t->rsv_part[k] = avail < res[k] ? avail : res[k];
        }
    }
    if (n_ports > 0) {
        memcpy(t->ports, ports, (size_t)n_ports * sizeof(*ports));
    }
    t->n_ports = n_ports;
}

static int node_index(const struct model *m, const char *id)
{
    for (int i = 0; i < m->n_nodes; i++) {
        if (strcmp(m->nodes[i].id, id) == 0) {
            return i;
        }
    }
    abort();
}

static uint64_t role_cpus(const struct model *m, int role)
{
    uint64_t u = 0;
    for (int i = 0; i < m->n_tasks; i++) {
        if (m->tasks[i].live && m->tasks[i].role == role) {
            u += m->tasks[i].res[SCHED_RES_CPUS];
        }
    }
    return u;
}

/* Constraint pool for requests. */
static const struct sched_constraint cpool[] = {
    {"hostname", "UNIQUE", NULL},   {"rack_id", "UNIQUE", NULL},
    {"rack_id", "CLUSTER", NULL},   {"rack_id", "CLUSTER", "r-2"},
    {"hostname", "CLUSTER", NULL},  {"rack_id", "GROUP_BY", NULL},
    {"rack_id", "GROUP_BY", "3"},   {"hostname", "GROUP_BY", NULL},
    {"rack_id", "LIKE", "r-[12]"},  {"rack_id", "UNLIKE", "r-1"},
    {"hostname", "LIKE", "n[0-2]"}, {"rack_id", "MAX_PER", "2"},
    {"hostname", "MAX_PER", "1"},   {"rack_id", "IS", "r-3"},
    {"hostname", "UNLIKE", "n0"},
};

/* A transcript of assignments, to compare two runs. */
struct transcript {
    char text[1 << 16];
    size_t len;
};

static void tr_add(struct transcript *t, const struct sched_assignment *a)
{
    int n = snprintf(t->text + t->len, sizeof(t->text) - t->len, "%zu/%u %s %s", a->req,
                     a->instance, a->task_id, a->node_id);
    t->len += (size_t)n;
    for (size_t i = 0; i < a->n_ports; i++) {
        t->len += (size_t)snprintf(t->text + t->len, sizeof(t->text) - t->len, " %u",
                                   a->ports[i]);
    }
    t->len += (size_t)snprintf(t->text + t->len, sizeof(t->text) - t->len, "\n");
    if (t->len > sizeof(t->text) - 256) {
        t->len = 0; /* keep the tail only; both runs do the same */
    }
}

static unsigned long n_placed, n_unplaced, n_quota;

static void run_one(uint64_t seed, struct transcript *tr, bool check)
{
    struct cm_rng rng;
    cm_rng_seed(&rng, seed);
    struct model *m = calloc(1, sizeof(*m));
    struct sched_options o = {.policy = (enum sched_policy)cm_rng_below(&rng, 2),
                              .seed = seed,
                              .sample = cm_rng_below(&rng, 3)}; /* 0 = auto, 1, 2 */
    struct sched *s = sched_new(&o);
    ASSERT_NOT_NULL(s);
    m->n_nodes = 2 + (int)cm_rng_below(&rng, MAXN - 1);
    for (int i = 0; i < m->n_nodes; i++) {
        struct m_node *n = &m->nodes[i];
        snprintf(n->id, sizeof(n->id), "n%d", i);
        n->rack = racks[cm_rng_below(&rng, 4)];
        n->up = cm_rng_below(&rng, 6) != 0;
        n->total[0] = 1000 * (1 + cm_rng_below(&rng, 6));
        n->total[1] = 512 * (1 + cm_rng_below(&rng, 8));
        n->total[2] = 1000;
        n->total[3] = cm_rng_below(&rng, 3);
        n->has_rsv = cm_rng_below(&rng, 3) == 0;
        if (n->has_rsv) {
            n->rsv[0] = n->total[0] / 2;
            n->rsv[1] = n->total[1] / 2;
        }
        n->port_lo = 31000;
        n->n_ports = (uint16_t)cm_rng_below(&rng, 5);
        struct sched_attr attr = {"rack_id", n->rack};
        struct sched_reservation rsv = {"r1", SCHED_RES(n->rsv[0], n->rsv[1], 0, 0)};
        struct sched_port_range pr = {31000, (uint16_t)(31000 + n->n_ports - 1)};
        struct sched_node nd = {
            .id = n->id,
            .state = n->up ? SCHED_NODE_UP : SCHED_NODE_DOWN,
            .total = SCHED_RES(n->total[0], n->total[1], n->total[2], n->total[3]),
            .attrs = &attr,
            .n_attrs = n->rack != NULL,
            .reservations = &rsv,
            .n_reservations = n->has_rsv,
            .port_ranges = &pr,
            .n_port_ranges = n->n_ports > 0,
        };
        ASSERT_OK(sched_node_upsert(s, &nd));
    }
    if (cm_rng_below(&rng, 2)) {
        struct sched_resources q =
            SCHED_RES(1000 * (1 + cm_rng_below(&rng, 6)), SCHED_UNLIMITED,
                      SCHED_UNLIMITED, SCHED_UNLIMITED);
        m->quota_set = true;
        m->quota_cpus = q.v[0];
        struct sched_role r = {.name = "r2", .weight = 1, .quota = &q};
        ASSERT_OK(sched_role_set(s, &r));
    }

    int rounds = 3 + (int)cm_rng_below(&rng, 8);
    for (int round = 0; round < rounds; round++) {
        /* Sometimes forget a task first. */
        if (m->n_tasks > 0 && cm_rng_below(&rng, 3) == 0) {
            int i = (int)cm_rng_below(&rng, (uint64_t)m->n_tasks);
            if (m->tasks[i].live) {
                ASSERT_OK(sched_task_remove(s, m->tasks[i].id));
                m->tasks[i].live = false;
            }
        }
        int app = (int)cm_rng_below(&rng, 4);
        int role = (int)cm_rng_below(&rng, 3);
        char app_name[16];
        snprintf(app_name, sizeof(app_name), "/a%d", app);
        struct sched_request r = {
            .app = app_name,
            .role = roles[role],
            .count = 1 + (uint32_t)cm_rng_below(&rng, 6),
            .res = SCHED_RES(250 * (1 + cm_rng_below(&rng, 6)),
                             128 * (1 + cm_rng_below(&rng, 8)),
                             cm_rng_below(&rng, 2) * 100, cm_rng_below(&rng, 4) == 0),
        };
        uint16_t ports[2];
        r.n_ports = cm_rng_below(&rng, 3);
        r.require_ports = cm_rng_below(&rng, 2);
        for (size_t i = 0; i < r.n_ports; i++) {
            ports[i] = cm_rng_below(&rng, 2)
                           ? 0
                           : (uint16_t)(31000 + 2 * i + cm_rng_below(&rng, 2));
        }
        r.ports = ports;
        struct sched_constraint cons[2];
        r.n_constraints = cm_rng_below(&rng, 3);
        for (size_t i = 0; i < r.n_constraints; i++) {
            cons[i] = cpool[cm_rng_below(&rng, CM_ARRAY_SIZE(cpool))];
        }
        r.constraints = cons;
        const char *acc[2];
        switch (cm_rng_below(&rng, 4)) {
        case 0:
            acc[0] = "*";
            r.n_accepted_roles = 1;
            break;
        case 1:
            acc[0] = roles[role];
            r.n_accepted_roles = 1;
            break;
        default:
            r.n_accepted_roles = 0;
        }
        r.accepted_roles = acc;

        struct sched_result res;
        ASSERT_OK(sched_place(s, &r, 1, &res));
        for (size_t i = 0; i < res.n_assignments; i++) {
            const struct sched_assignment *a = &res.assignments[i];
            tr_add(tr, a);
            int node = node_index(m, a->node_id);
            if (check) {
                if (!fits(m, &r, app, role, node, a->ports)) {
                    test__fail(__FILE__, __LINE__,
                               "seed %" PRIu64 ": placement %s on %s breaks a rule", seed,
                               a->task_id, a->node_id);
                }
                if (role == 2 && m->quota_set) {
                    ASSERT_TRUE(role_cpus(m, 2) + r.res.v[0] <= m->quota_cpus);
                }
            }
            bool rsv_ok = accepts(&r, roles[role]) && role != 0;
            n_placed += check;
            model_add(m, a->task_id, app, role, node, r.res.v, rsv_ok, a->ports,
                      (int)a->n_ports);
        }
        for (size_t u = 0; check && u < res.n_unplaced; u++) {
            const struct sched_unplaced *up = &res.unplaced[u];
            n_unplaced++;
            n_quota += up->explain.quota;
            ASSERT_UINT_EQ(up->first + up->count, r.count);
            ASSERT_UINT_EQ(up->first, res.n_assignments);
            if (up->explain.quota) {
                ASSERT_TRUE(m->quota_set && role == 2);
                ASSERT_TRUE(role_cpus(m, 2) + r.res.v[0] > m->quota_cpus);
                continue;
            }
            /* Exact verdict: no node takes one more instance. */
            for (int nd = 0; nd < m->n_nodes; nd++) {
                if (fits(m, &r, app, role, nd, NULL)) {
                    test__fail(__FILE__, __LINE__,
                               "seed %" PRIu64 ": %s unplaced but fits on %s", seed,
                               r.app, m->nodes[nd].id);
                }
            }
            char why[512];
            sched_explain_text(&up->explain, &r, why, sizeof(why));
            ASSERT_UINT_EQ(up->explain.nodes, m->n_nodes);
            ASSERT_TRUE(why[0] != '\0');
        }
        sched_result_done(&res);

        /* Never over capacity in any pool. */
        for (int nd = 0; check && nd < m->n_nodes; nd++) {
            const struct m_node *n = &m->nodes[nd];
            struct sched_resources used;
            ASSERT_OK(sched_node_usage(s, n->id, &used, NULL));
            for (int k = 0; k < NR; k++) {
                uint64_t su = star_used(m, nd, k), ru = rsv_used(m, nd, k);
                ASSERT_UINT_EQ(used.v[k], su + ru);
                ASSERT_TRUE(su <= n->total[k] - (n->has_rsv ? n->rsv[k] : 0));
                ASSERT_TRUE(ru <= (n->has_rsv ? n->rsv[k] : 0));
            }
        }
    }
    ASSERT_UINT_EQ(sched_task_count(s, NULL, NULL), 0 + (size_t)({
                                                        int live = 0;
                                                        for (int i = 0; i < m->n_tasks;
                                                             i++) {
                                                            live += m->tasks[i].live;
                                                        }
                                                        live;
                                                    }));
    sched_free(s);
    free(m);
}

TEST(fuzzy_against_model)
{
    const char *env = getenv("SCHED_FUZZ_SEED");
    const char *runs_env = getenv("SCHED_FUZZ_RUNS");
    int runs = runs_env ? atoi(runs_env) : 2000;
    uint64_t base = env ? strtoull(env, NULL, 10) : 20260101;
    static struct transcript a, b;
    for (int i = 0; i < (env ? 1 : runs); i++) {
        uint64_t seed = base + (uint64_t)i;
        if (i == 0 || env) {
            printf("# seeds %" PRIu64 "..%" PRIu64 " (SCHED_FUZZ_SEED=<n> replays one)\n",
                   seed, seed + (uint64_t)(env ? 0 : runs - 1));
        }
        a.len = b.len = 0;
        run_one(seed, &a, true);
        run_one(seed, &b, false);
        if (a.len != b.len || memcmp(a.text, b.text, a.len) != 0) {
            test__fail(__FILE__, __LINE__, "seed %" PRIu64 ": two runs differ", seed);
        }
    }
    printf("# %lu placements and %lu unplaced verdicts (%lu by quota) checked\n",
           n_placed, n_unplaced, n_quota);
}

/* ------------------------------------------------------------------ OOM */

struct oom_ctx {
    struct sched *s;
};

static const struct sched_constraint oom_cons[] = {
    {"hostname", "UNIQUE", NULL},
    {"rack_id", "GROUP_BY", NULL},
    {"rack_id", "LIKE", "r-[0-9]"},
};

static int oom_place(void *arg)
{
    struct oom_ctx *c = arg;
    static const uint16_t ports[] = {0, 31002};
    const char *ids[] = {"given-0", "given-1", "given-2"};
    struct sched_request r[3] = {
        {.app = "/a",
         .role = "r1",
         .count = 3,
         .res = SCHED_RES(500, 128, 0, 0),
         .constraints = oom_cons,
         .n_constraints = 3,
         .ports = ports,
         .n_ports = 1},
        {.app = "/b",
         .role = "r2",
         .count = 3,
         .res = SCHED_RES(500, 128, 0, 0),
         .ports = ports,
         .n_ports = 2,
         .require_ports = true,
         .task_ids = ids},
        {.app = "/new-app",
         .count = 40,
         .res = SCHED_RES(100, 16, 0, 0),
         .constraints = oom_cons + 1,
         .n_constraints = 1},
    };
    struct sched_result res;
    int rv = sched_place(c->s, r, 3, &res);
    if (rv != 0) {
        /* Nothing changed. */
        ASSERT_ERR(rv, CM_ENOMEM);
        ASSERT_UINT_EQ(res.n_assignments, 0);
        ASSERT_UINT_EQ(sched_task_count(c->s, NULL, NULL), 1);
        struct sched_resources u;
        for (int i = 0; i < 4; i++) {
            char id[16];
            snprintf(id, sizeof(id), "n%d", i);
            ASSERT_OK(sched_node_usage(c->s, id, &u, NULL));
            ASSERT_UINT_EQ(u.v[SCHED_RES_CPUS], i == 0 ? 100 : 0);
            ASSERT_FALSE(sched_port_used(c->s, id, 31002));
        }
        return rv;
    }
    ASSERT_TRUE(res.n_assignments >= 6);
    for (size_t i = 0; i < res.n_assignments; i++) {
        ASSERT_OK(sched_task_remove(c->s, res.assignments[i].task_id));
    }
    sched_result_done(&res);
    return 0;
}

static struct sched *oom_cluster(int *ret)
{
    struct sched_options o = {.seed = 7};
    struct sched *s = sched_new(&o);
    *ret = CM_ENOMEM;
    if (s == NULL) {
        return NULL;
    }
    struct sched_resources q = SCHED_RES(100000, SCHED_UNLIMITED, SCHED_UNLIMITED, 0);
    struct sched_role role = {.name = "r2", .weight = 2, .quota = &q};
    int rv = sched_role_set(s, &role);
    for (int i = 0; rv == 0 && i < 4; i++) {
        char id[16], rack[16];
        snprintf(id, sizeof(id), "n%d", i);
        snprintf(rack, sizeof(rack), "r-%d", i % 2);
        struct sched_attr attr = {"rack_id", rack};
        struct sched_reservation rsv = {"r1", SCHED_RES(1000, 512, 0, 0)};
        struct sched_port_range pr = {31000, 31009};
        uint16_t ext = 31009;
        struct sched_node nd = {.id = id,
                                .total = SCHED_RES(8000, 8192, 1000, 0),
                                .attrs = &attr,
                                .n_attrs = 1,
                                .reservations = &rsv,
                                .n_reservations = i % 2,
                                .port_ranges = &pr,
                                .n_port_ranges = 1,
                                .used_ports = &ext,
                                .n_used_ports = 1};
        rv = sched_node_upsert(s, &nd);
    }
    if (rv == 0) {
        struct sched_task t = {.id = "old",
                               .app = "/a",
                               .role = "r1",
                               .node = "n0",
                               .res = SCHED_RES(100, 0, 0, 0),
                               .ports = (const uint16_t[]){31005},
                               .n_ports = 1};
        rv = sched_task_add(s, &t);
    }
    if (rv != 0) {
        sched_free(s);
        *ret = rv;
        return NULL;
    }
    *ret = 0;
    return s;
}

TEST(oom_walk_place)
{
    int rv;
    struct oom_ctx c = {.s = oom_cluster(&rv)};
    ASSERT_OK(rv);
    int points = test_alloc_walk(oom_place, &c);
    ASSERT_TRUE(points > 5);
    printf("# %d allocation failure points in sched_place\n", points);
    sched_free(c.s);
}

static int oom_build(void *arg)
{
    (void)arg;
    int rv;
    struct oom_ctx c = {.s = oom_cluster(&rv)};
    if (c.s == NULL) {
        return rv;
    }
    rv = oom_place(&c);
    /* Re-describing a node with tasks (attributes change: counts rebuilt). */
    if (rv == 0) {
        struct sched_attr attr = {"rack_id", "r-9"};
        struct sched_node nd = {.id = "n0",
                                .total = SCHED_RES(8000, 8192, 1000, 0),
                                .attrs = &attr,
                                .n_attrs = 1};
        rv = sched_node_upsert(c.s, &nd);
    }
    if (rv == 0) {
        rv = oom_place(&c);
    }
    sched_free(c.s);
    return rv;
}

TEST(oom_walk_build)
{
    int points = test_alloc_walk(oom_build, NULL);
    ASSERT_TRUE(points > 10);
}
