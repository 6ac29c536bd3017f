/* The leader's controller: turns the desired state (apps and their instance
 * counts) into task.assign / task.kill / task.expunge commands, placing new
 * tasks with the scheduler core (lib/sched) and pacing restarts with Marathon's
 * launch backoff (DESIGN.md §6).
 *
 * It runs only on the leader, some milliseconds after the replica changed
 * (debounced), and never plans again while its own proposals are in flight, so
 * a plan always sees the effect of the previous one. Rolling replacement of old
 * versions follows the app's upgradeStrategy (cm_upgrade_plan); the running
 * deployments (deploy.c) hold apps of later steps, limit canaries and are moved
 * on from here (docs/deployments.md).
 */
#include <cjson/cJSON.h>
#include <ev.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_int.h"
#include "sched/sched.h"
#include "state/db.h"
#include "state/state.h"

#define DEBOUNCE_S       0.002
#define KEEP_TERMINAL    5                /* per app, for `ps` and the API */
#define TERMINAL_TTL_MS  (60 * 60 * 1000) /* expunge terminal tasks after this */
#define BACKOFF_RESET_MS 10000            /* running this long resets the backoff */
#define MAX_APPS         100000

/* Launch backoff of one app (compat.md §1.11), leader memory only. */
struct backoff {
    char *app;
    uint32_t failures;
    int64_t last_failure_ms;
    int64_t seen_until_ms; /* terminal tasks updated up to here are counted */
};

/* Why an app's instances wait, from the last planning pass (leader memory). */
struct waiting {
    char *app;
    char *why;
};

struct cm_controller {
    struct ev_loop *loop;
    struct waiting *waiting;
    size_t n_waiting;
    struct cm_node_ctl_ops ops;
    ev_timer timer;
    bool leader;
    bool dirty;
    unsigned in_flight; /* our proposals not yet applied */
    struct backoff *backoffs;
    size_t n_backoffs;
    uint64_t seed;
    struct cm_liveness *liveness; /* the failure detector (liveness.c) */
};

/* ------------------------------------------------------------------ loading */

struct task_info {
    char *id;
    char *app;
    char *version;
    char *node;
    enum cm_task_state state;
    const char *health; /* "healthy", "unhealthy" or NULL (static strings) */
    bool ready;         /* its readiness check passed (or it has none) */
    int64_t staged_at;
    int64_t started_at;
    int64_t updated_at;
    uint16_t ports[16];
    size_t n_ports;
    bool draining;   /* its node is draining: to be replaced (drain.c) */
    bool node_alive; /* its node is up or draining */
};

struct app_info {
    char *id;
    char *version;
    struct cm_app *spec;
    struct task_info **tasks; /* borrowed from the task array */
    size_t n_tasks;
    size_t cap_tasks;
};

struct node_info {
    char *id;
    char *address;
    char *state;
    cJSON *attrs;
    cJSON *res;
    int64_t updated_at;
};

struct snapshot {
    struct app_info *apps;
    size_t n_apps;
    struct task_info *tasks;
    size_t n_tasks;
    size_t cap_tasks;
    struct node_info *nodes;
    size_t n_nodes;
    int err;
};

static void snapshot_done(struct snapshot *s)
{
    for (size_t i = 0; i < s->n_apps; i++) {
        cm_free(&s->apps[i].id);
        cm_free(&s->apps[i].version);
        cm_app_free(s->apps[i].spec);
        cm_free(&s->apps[i].tasks);
    }
    cm_free(&s->apps);
    for (size_t i = 0; i < s->n_tasks; i++) {
        cm_free(&s->tasks[i].id);
        cm_free(&s->tasks[i].app);
        cm_free(&s->tasks[i].version);
        cm_free(&s->tasks[i].node);
    }
    cm_free(&s->tasks);
    for (size_t i = 0; i < s->n_nodes; i++) {
        cm_free(&s->nodes[i].id);
        cm_free(&s->nodes[i].address);
        cm_free(&s->nodes[i].state);
        cJSON_Delete(s->nodes[i].attrs);
        cJSON_Delete(s->nodes[i].res);
    }
    cm_free(&s->nodes);
}

static int load_app(void *data, const struct cm_app_row *row)
{
    struct snapshot *s = data;
    struct app_info *a = cm_reallocarray(s->apps, s->n_apps + 1, sizeof(*a));
    if (a == NULL) {
        return CM_ENOMEM;
    }
    s->apps = a;
    a = &s->apps[s->n_apps];
    memset(a, 0, sizeof(*a));
    a->id = cm_strdup(row->id);
    a->version = cm_strdup(row->version);
    int rv = cm_app_from_canonical(row->spec, strlen(row->spec), &a->spec);
    if (a->id == NULL || a->version == NULL || rv == CM_ENOMEM) {
        cm_free(&a->id);
        cm_free(&a->version);
        cm_app_free(a->spec);
        return CM_ENOMEM;
    }
    s->n_apps++;
    if (rv != 0) {
        /* Stored specs were validated before they were proposed. */
        cm_warn("controller", "app %s: stored spec unreadable: %s", row->id,
                cm_strerror(rv));
        a->spec = NULL;
    }
    return 0;
}

static int load_task(void *data, const struct cm_task_row *row)
{
    struct snapshot *s = data;
    if (s->n_tasks == s->cap_tasks) {
        size_t cap = s->cap_tasks ? 2 * s->cap_tasks : 64;
        struct task_info *t = cm_reallocarray(s->tasks, cap, sizeof(*t));
        if (t == NULL) {
            return CM_ENOMEM;
        }
        s->tasks = t;
        s->cap_tasks = cap;
    }
    struct task_info *t = &s->tasks[s->n_tasks];
    memset(t, 0, sizeof(*t));
    t->id = cm_strdup(row->id);
    t->app = cm_strdup(row->app);
    t->version = cm_strdup(row->version);
    t->node = cm_strdup(row->node);
    if (t->id == NULL || t->app == NULL || t->version == NULL || t->node == NULL) {
        cm_free(&t->id);
        cm_free(&t->app);
        cm_free(&t->version);
        cm_free(&t->node);
        return CM_ENOMEM;
    }
    t->state = row->state;
    t->health = row->health == NULL                   ? NULL
                : strcmp(row->health, "healthy") == 0 ? "healthy"
                                                      : "unhealthy";
    t->ready = row->ready;
    t->staged_at = row->staged_at;
    t->started_at = row->started_at;
    t->updated_at = row->updated_at;
    cJSON *ports = cJSON_Parse(row->ports);
    const cJSON *p;
    cJSON_ArrayForEach(p, ports)
    {
        if (t->n_ports < CM_ARRAY_SIZE(t->ports) && cJSON_IsNumber(p)) {
            t->ports[t->n_ports++] = (uint16_t)p->valuedouble;
        }
    }
    cJSON_Delete(ports);
    s->n_tasks++;
    return 0;
}

static int load_node(void *data, const struct cm_node_row *row)
{
    struct snapshot *s = data;
    struct node_info *n = cm_reallocarray(s->nodes, s->n_nodes + 1, sizeof(*n));
    if (n == NULL) {
        return CM_ENOMEM;
    }
    s->nodes = n;
    n = &s->nodes[s->n_nodes];
    memset(n, 0, sizeof(*n));
    n->id = cm_strdup(row->id);
    n->address = cm_strdup(row->address);
    n->state = cm_strdup(row->state);
    n->attrs = cJSON_Parse(row->attrs);
    n->res = cJSON_Parse(row->resources);
    n->updated_at = row->updated_at;
    s->n_nodes++;
    if (n->id == NULL || n->address == NULL || n->state == NULL || n->attrs == NULL ||
        n->res == NULL) {
        return CM_ENOMEM;
    }
    return 0;
}

static struct app_info *find_app(struct snapshot *s, const char *id)
{
    for (size_t i = 0; i < s->n_apps; i++) {
        if (strcmp(s->apps[i].id, id) == 0) {
            return &s->apps[i];
        }
    }
    return NULL;
}

static int cmp_node_id(const void *x, const void *y)
{
    return strcmp(((const struct node_info *)x)->id, ((const struct node_info *)y)->id);
}

/* Flag each task with its node's state (draining, reachable). */
static int mark_node_states(struct snapshot *s)
{
    /* cm_state_nodes returns them in id order already; sort anyway for bsearch. */
    qsort(s->nodes, s->n_nodes, sizeof(*s->nodes), cmp_node_id);
    for (size_t i = 0; i < s->n_tasks; i++) {
        struct task_info *t = &s->tasks[i];
        struct node_info key = {.id = t->node};
        const struct node_info *n =
            bsearch(&key, s->nodes, s->n_nodes, sizeof(*s->nodes), cmp_node_id);
        t->draining = n != NULL && strcmp(n->state, "draining") == 0;
        t->node_alive = n != NULL && (t->draining || strcmp(n->state, "up") == 0);
    }
    return 0;
}

static int load_snapshot(struct cm_state *st, struct snapshot *s)
{
    memset(s, 0, sizeof(*s));
    int rv = cm_state_apps(st, NULL, load_app, s);
    if (rv == 0) {
        rv = cm_state_tasks(st, NULL, NULL, load_task, s);
    }
    if (rv == 0) {
        rv = cm_state_nodes(st, load_node, s);
    }
    for (size_t i = 0; rv == 0 && i < s->n_tasks; i++) {
        struct app_info *a = find_app(s, s->tasks[i].app);
        if (a == NULL) {
            continue;
        }
        if (a->n_tasks == a->cap_tasks) {
            size_t cap = a->cap_tasks ? 2 * a->cap_tasks : 8;
            struct task_info **t = cm_reallocarray(a->tasks, cap, sizeof(*t));
            if (t == NULL) {
                rv = CM_ENOMEM;
                break;
            }
            a->tasks = t;
            a->cap_tasks = cap;
        }
        a->tasks[a->n_tasks++] = &s->tasks[i];
    }
    if (rv == 0) {
        rv = mark_node_states(s);
    }
    return rv;
}

/* ------------------------------------------------------------------ the plan */

static bool live(enum cm_task_state st)
{
    return st == CM_TASK_STAGING || st == CM_TASK_STARTING || st == CM_TASK_RUNNING ||
           st == CM_TASK_UNREACHABLE;
}

static struct sched_resources app_res(const struct cm_app *a)
{
    return SCHED_RES((uint64_t)llround(a->cpus * 1000.0), (uint64_t)llround(a->mem),
                     (uint64_t)llround(a->disk), (uint64_t)(a->gpus > 0 ? a->gpus : 0));
}

static struct backoff *backoff_get(struct cm_controller *c, const char *app)
{
    for (size_t i = 0; i < c->n_backoffs; i++) {
        if (strcmp(c->backoffs[i].app, app) == 0) {
            return &c->backoffs[i];
        }
    }
    struct backoff *b = cm_reallocarray(c->backoffs, c->n_backoffs + 1, sizeof(*b));
    if (b == NULL) {
        return NULL;
    }
    c->backoffs = b;
    b = &c->backoffs[c->n_backoffs];
    memset(b, 0, sizeof(*b));
    b->app = cm_strdup(app);
    if (b->app == NULL) {
        return NULL;
    }
    c->n_backoffs++;
    return b;
}

/* Marathon's launch delay after @failures consecutive failures (compat.md §1.11):
 * backoffSeconds * backoffFactor^(failures-1), at most maxLaunchDelaySeconds. */
int64_t cm_backoff_delay_ms(const struct cm_app *a, uint32_t failures)
{
    if (failures == 0) {
        return 0;
    }
    double d = (double)a->backoff_s * pow(a->backoff_factor, (double)(failures - 1));
    if (d > (double)a->max_launch_delay_s) {
        d = (double)a->max_launch_delay_s;
    }
    return (int64_t)(d * 1000.0);
}

/* Count new failures of @a's tasks and whether launching is allowed now; when
 * not, *ret_wait_ms says for how long. */
static bool backoff_allows(struct cm_controller *c, const struct app_info *a, int64_t now,
                           int64_t *ret_wait_ms)
{
    struct backoff *b = backoff_get(c, a->id);
    if (b == NULL) {
        return true;
    }
    int64_t newest = b->seen_until_ms;
    for (size_t i = 0; i < a->n_tasks; i++) {
        const struct task_info *t = a->tasks[i];
        if ((t->state == CM_TASK_FAILED || t->state == CM_TASK_FINISHED) &&
            t->updated_at > b->seen_until_ms) {
            b->failures++;
            b->last_failure_ms = CM_MAX(b->last_failure_ms, t->updated_at);
            newest = CM_MAX(newest, t->updated_at);
        }
        if (t->state == CM_TASK_RUNNING && t->started_at > 0 &&
            strcmp(t->version, a->version) == 0 &&
            now - t->started_at >= BACKOFF_RESET_MS &&
            t->started_at > b->last_failure_ms) {
            b->failures = 0;
        }
    }
    b->seen_until_ms = newest;
    int64_t until = b->last_failure_ms + cm_backoff_delay_ms(a->spec, b->failures);
    if (b->failures > 0 && now < until) {
        *ret_wait_ms = until - now;
        return false;
    }
    return true;
}

static int cmp_staged_desc(const void *x, const void *y)
{
    const struct task_info *a = *(const struct task_info *const *)x;
    const struct task_info *b = *(const struct task_info *const *)y;
    return a->staged_at < b->staged_at ? 1 : a->staged_at > b->staged_at ? -1 : 0;
}

static int cmp_updated_desc(const void *x, const void *y)
{
    const struct task_info *a = *(const struct task_info *const *)x;
    const struct task_info *b = *(const struct task_info *const *)y;
    return a->updated_at < b->updated_at ? 1 : a->updated_at > b->updated_at ? -1 : 0;
}

/* Youngest first, with unreachable tasks before (first) or after (last) the
 * others: the surplus is taken from the front or from the back. */
static int cmp_unreachable_first(const void *x, const void *y)
{
    const struct task_info *a = *(const struct task_info *const *)x;
    const struct task_info *b = *(const struct task_info *const *)y;
    bool ua = a->state == CM_TASK_UNREACHABLE, ub = b->state == CM_TASK_UNREACHABLE;
    return ua != ub ? (ua ? -1 : 1) : cmp_staged_desc(x, y);
}

static int cmp_unreachable_last(const void *x, const void *y)
{
    const struct task_info *a = *(const struct task_info *const *)x;
    const struct task_info *b = *(const struct task_info *const *)y;
    bool ua = a->state == CM_TASK_UNREACHABLE, ub = b->state == CM_TASK_UNREACHABLE;
    return ua != ub ? (ua ? 1 : -1) : cmp_staged_desc(x, y);
}

/* What to do for one app; pure given its tasks. */
struct app_decision {
    uint32_t launch;
    /* tasks to kill and to expunge, as indexes into app->tasks */
    size_t *kill;
    size_t n_kill;
    size_t *expunge;
    size_t n_expunge;
    int64_t next_at; /* when to decide again without news (INT64_MAX: never) */
};

static size_t index_of(const struct app_info *a, const struct task_info *t)
{
    for (size_t i = 0; i < a->n_tasks; i++) {
        if (a->tasks[i] == t) {
            return i;
        }
    }
    return SIZE_MAX;
}

/* Marathon's rules (compat.md §1.10, docs/deployments.md): surplus tasks of the
 * current version go by killSelection; tasks of older versions are replaced by
 * cm_upgrade_plan's arithmetic (minimumHealthCapacity, maximumOverCapacity). A
 * deployment may hold the app (a later step) or limit it to its canaries. */
static int decide(const struct app_info *a, int64_t now, enum cm_deploy_gate gate,
                  uint32_t canaries, struct app_decision *d)
{
    memset(d, 0, sizeof(*d));
    const struct cm_app *spec = a->spec;
    size_t n = a->n_tasks;
    struct task_info **cur = cm_calloc(n + 1, sizeof(*cur));
    struct task_info **old = cm_calloc(n + 1, sizeof(*old));
    struct task_info **dead = cm_calloc(n + 1, sizeof(*dead));
    d->kill = cm_calloc(n + 1, sizeof(size_t));
    d->expunge = cm_calloc(n + 1, sizeof(size_t));
    if (cur == NULL || old == NULL || dead == NULL || d->kill == NULL ||
        d->expunge == NULL) {
        cm_free(&cur);
        cm_free(&old);
        cm_free(&dead);
        cm_free(&d->kill);
        cm_free(&d->expunge);
        return CM_ENOMEM;
    }
    size_t n_cur = 0, n_old = 0, n_dead = 0, running_cur = 0;
    d->next_at = INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        struct task_info *t = a->tasks[i];
        if (t->state == CM_TASK_UNREACHABLE) {
            /* Inactive (unreachableStrategy): no longer live; killed in the
             * replica so that its node stops it should it come back. */
            int64_t inactive = cm_unreachable_inactive_at(spec, t->updated_at);
            if (now >= inactive) {
                d->kill[d->n_kill++] = i;
                continue;
            }
            d->next_at = CM_MIN(d->next_at, inactive);
        }
        if (live(t->state)) {
            /* A task on a draining node is replaced like one of an old version. */
            if (strcmp(t->version, a->version) == 0 && !t->draining) {
                cur[n_cur++] = t;
                struct cm_task_row row = {
                    .state = t->state, .health = t->health, .ready = t->ready};
                running_cur += cm_deploy_task_ready(&row, spec->n_health_checks > 0,
                                                    spec->n_readiness_checks > 0);
            } else {
                old[n_old++] = t;
            }
        } else if (cm_task_state_terminal(t->state)) {
            dead[n_dead++] = t;
        }
    }
    size_t instances = spec->instances > 0 ? (size_t)spec->instances : 0;

    /* Surplus of the current version. */
    if (n_cur > instances) {
        /* Youngest first, but unreachable ones go before any other (as in
         * Marathon): a node that comes back, or a drained node that fell
         * silent, must not cost the tasks that replaced its own. */
        qsort(cur, n_cur, sizeof(*cur),
              spec->kill_selection == CM_APP_KILL_OLDEST_FIRST ? cmp_unreachable_last
                                                               : cmp_unreachable_first);
        size_t surplus = n_cur - instances;
        size_t from =
            spec->kill_selection == CM_APP_KILL_OLDEST_FIRST ? n_cur - surplus : 0;
        for (size_t k = 0; k < surplus; k++) {
            d->kill[d->n_kill++] = index_of(a, cur[from + k]);
        }
        n_cur = instances;
    }

    size_t want = instances > n_cur ? instances - n_cur : 0;
    if (gate == CM_DEPLOY_HOLD) {
        want = 0; /* a later step of its deployment */
    } else if (gate == CM_DEPLOY_CANARY && n_old > 0) {
        want = canaries > n_cur ? CM_MIN(canaries - n_cur, want) : 0;
    } else if (n_old > 0 && instances == 0) {
        for (size_t k = 0; k < n_old; k++) {
            d->kill[d->n_kill++] = index_of(a, old[k]);
        }
    } else if (n_old > 0) {
        /* Old versions: Marathon's arithmetic, oldest first. */
        struct cm_upgrade u = {(uint32_t)instances, spec->min_health_capacity,
                               spec->max_over_capacity, spec->has_residency};
        struct cm_upgrade_state st = {(uint32_t)n_old, (uint32_t)n_cur,
                                      (uint32_t)running_cur};
        struct cm_upgrade_round r;
        cm_upgrade_plan(&u, &st, &r);
        qsort(old, n_old, sizeof(*old), cmp_staged_desc);
        for (size_t k = 0; k < r.kill_old; k++) {
            d->kill[d->n_kill++] = index_of(a, old[n_old - 1 - k]);
        }
        want = r.launch;
    }
    d->launch = (uint32_t)want;

    /* Terminal tasks: keep the newest few for a while, expunge the rest. */
    qsort(dead, n_dead, sizeof(*dead), cmp_updated_desc);
    for (size_t k = 0; k < n_dead; k++) {
        if (k >= KEEP_TERMINAL || now - dead[k]->updated_at > TERMINAL_TTL_MS) {
            d->expunge[d->n_expunge++] = index_of(a, dead[k]);
        }
    }
    cm_free(&cur);
    cm_free(&old);
    cm_free(&dead);
    return 0;
}

static void decision_done(struct app_decision *d)
{
    cm_free(&d->kill);
    cm_free(&d->expunge);
}

/* ------------------------------------------------------------------ scheduler input */

static uint64_t json_num(const cJSON *obj, const char *key, double scale)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0) {
        return 0;
    }
    return (uint64_t)llround(v->valuedouble * scale);
}

static enum sched_node_state node_state(const char *s)
{
    if (strcmp(s, "up") == 0) {
        return SCHED_NODE_UP;
    }
    if (strcmp(s, "draining") == 0) {
        return SCHED_NODE_DRAINING;
    }
    if (strcmp(s, "unreachable") == 0) {
        return SCHED_NODE_UNREACHABLE;
    }
    return SCHED_NODE_DOWN;
}

static int add_node(struct sched *sc, const struct node_info *n)
{
    struct sched_attr attrs[64];
    char numbufs[64][32];
    size_t n_attrs = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, n->attrs)
    {
        if (n_attrs == CM_ARRAY_SIZE(attrs) || a->string == NULL) {
            break;
        }
        attrs[n_attrs].key = a->string;
        if (cJSON_IsString(a)) {
            attrs[n_attrs].value = a->valuestring;
        } else if (cJSON_IsNumber(a)) {
            snprintf(numbufs[n_attrs], sizeof(numbufs[0]), "%g", a->valuedouble);
            attrs[n_attrs].value = numbufs[n_attrs];
        } else {
            continue;
        }
        n_attrs++;
    }
    struct sched_port_range ranges[16];
    size_t n_ranges = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(n->res, "ports"))
    {
        const cJSON *b = cJSON_GetArrayItem(r, 0);
        const cJSON *e = cJSON_GetArrayItem(r, 1);
        if (n_ranges < CM_ARRAY_SIZE(ranges) && cJSON_IsNumber(b) && cJSON_IsNumber(e) &&
            b->valuedouble >= 1 && e->valuedouble >= b->valuedouble &&
            e->valuedouble <= 65535) {
            ranges[n_ranges].begin = (uint16_t)b->valuedouble;
            ranges[n_ranges].end = (uint16_t)e->valuedouble;
            n_ranges++;
        }
    }
    struct sched_node sn = {
        .id = n->id,
        .hostname = n->id,
        .state = node_state(n->state),
        .total = SCHED_RES(json_num(n->res, "cpus", 1000.0), json_num(n->res, "mem", 1.0),
                           json_num(n->res, "disk", 1.0), json_num(n->res, "gpus", 1.0)),
        .attrs = attrs,
        .n_attrs = n_attrs,
        .port_ranges = ranges,
        .n_port_ranges = n_ranges,
    };
    return sched_node_upsert(sc, &sn);
}

static void propose_json(struct cm_controller *c, cJSON *cmd);

static void waiting_clear(struct cm_controller *c)
{
    for (size_t i = 0; i < c->n_waiting; i++) {
        cm_free(&c->waiting[i].app);
        cm_free(&c->waiting[i].why);
    }
    c->n_waiting = 0;
}

/* Remember why @app waits; on OOM the reason is just not shown. */
static void waiting_add(struct cm_controller *c, const char *app, const char *why)
{
    struct waiting *w = cm_reallocarray(c->waiting, c->n_waiting + 1, sizeof(*w));
    if (w == NULL) {
        return;
    }
    c->waiting = w;
    w = &c->waiting[c->n_waiting];
    w->app = cm_strdup(app);
    w->why = cm_strdup(why);
    if (w->app == NULL || w->why == NULL) {
        cm_free(&w->app);
        cm_free(&w->why);
        return;
    }
    c->n_waiting++;
}

bool cm_controller_waiting(const struct cm_controller *c, const char *app, char *buf,
                           size_t cap)
{
    for (size_t i = 0; c != NULL && c->leader && i < c->n_waiting; i++) {
        if (strcmp(c->waiting[i].app, app) == 0) {
            snprintf(buf, cap, "%s", c->waiting[i].why);
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------ one pass */

static const char *node_address(const struct snapshot *s, const char *id)
{
    for (size_t i = 0; i < s->n_nodes; i++) {
        if (strcmp(s->nodes[i].id, id) == 0) {
            return s->nodes[i].address;
        }
    }
    return id;
}

/* "/shop/web" -> "shop_web.<uuid>" (Marathon's task id form, DESIGN.md §5). */
static char *new_task_id(const char *app)
{
    char uuid[37];
    if (cm_uuid4(uuid) != 0) {
        return NULL;
    }
    const char *path = app[0] == '/' ? app + 1 : app;
    char *id = cm_asprintf("%s.%s", path, uuid);
    /* Every '/' of the path (which may hold dots itself: "/v1.23/stress-test"). */
    for (size_t i = 0; id != NULL && i < strlen(path); i++) {
        if (id[i] == '/') {
            id[i] = '_';
        }
    }
    return id;
}

struct pass {
    struct snapshot snap;
    struct sched *sched;
    cJSON *kill;
    cJSON *expunge;
    struct sched_request *reqs;
    struct app_info **req_app;
    size_t n_reqs;
    struct sched_constraint *cons; /* all requests' constraints */
    uint16_t *ports;               /* all requests' ports */
    char **ids;                    /* all new task ids */
    size_t n_ids;
    int64_t wait_ms;
    struct cm_deploys *deploys; /* running deployments (deploy.c) */
    cJSON *node_cmds;           /* node.state commands of the failure detector */
    int64_t next_at;            /* failure detection and replacement: look again then */
};

static void pass_done(struct pass *p)
{
    sched_free(p->sched);
    cJSON_Delete(p->kill);
    cJSON_Delete(p->expunge);
    cJSON_Delete(p->node_cmds);
    for (size_t i = 0; i < p->n_ids; i++) {
        cm_free(&p->ids[i]);
    }
    cm_free(&p->ids);
    cm_free(&p->reqs);
    cm_free(&p->req_app);
    cm_free(&p->cons);
    cm_free(&p->ports);
    cm_deploys_free(p->deploys);
    snapshot_done(&p->snap);
}

static int add_request(struct pass *p, struct app_info *a, uint32_t count,
                       size_t *cons_used, size_t *ports_used)
{
    const struct cm_app *spec = a->spec;
    struct sched_request *rq = &p->reqs[p->n_reqs];
    memset(rq, 0, sizeof(*rq));
    rq->app = a->id;
    rq->role = spec->role;
    rq->res = app_res(spec);
    rq->count = count;
    rq->require_ports = spec->require_ports;
    rq->ports = p->ports + *ports_used;
    for (size_t i = 0; i < spec->n_port_defs; i++) {
        p->ports[(*ports_used)++] =
            (uint16_t)(spec->port_defs[i].port > 0 ? spec->port_defs[i].port : 0);
    }
    rq->n_ports = spec->n_port_defs;
    rq->constraints = p->cons + *cons_used;
    for (size_t i = 0; i < spec->n_constraints; i++) {
        struct sched_constraint *sc = &p->cons[(*cons_used)++];
        sc->field = spec->constraints[i].field;
        sc->op = cm_app_constraint_op_name(spec->constraints[i].op);
        sc->value = spec->constraints[i].value;
    }
    rq->n_constraints = spec->n_constraints;
    rq->accepted_roles = (const char *const *)spec->accepted_roles;
    rq->n_accepted_roles = spec->n_accepted_roles;
    rq->task_ids = (const char *const *)(p->ids + p->n_ids);
    for (uint32_t k = 0; k < count; k++) {
        p->ids[p->n_ids] = new_task_id(a->id);
        if (p->ids[p->n_ids] == NULL) {
            return CM_ENOMEM;
        }
        p->n_ids++;
    }
    p->req_app[p->n_reqs] = a;
    p->n_reqs++;
    return 0;
}

/* The failure detector over the replica's nodes (liveness.c). */
static int detect(struct cm_controller *c, struct pass *p, int64_t now)
{
    p->node_cmds = cJSON_CreateArray();
    if (p->node_cmds == NULL) {
        return CM_ENOMEM;
    }
    for (size_t i = 0; i < p->snap.n_nodes; i++) {
        const struct node_info *n = &p->snap.nodes[i];
        struct cm_liveness_node ln = {n->id, n->state, n->updated_at};
        enum cm_liveness_action act;
        int rv = cm_liveness_check(c->liveness, &ln, c->ops.self, now, &act, &p->next_at);
        if (rv != 0) {
            return rv;
        }
        if (act == CM_LIVENESS_NONE) {
            continue;
        }
        cJSON *cmd = cJSON_CreateObject();
        if (cmd == NULL || !cJSON_AddItemToArray(p->node_cmds, cmd) ||
            cJSON_AddStringToObject(cmd, "type", "node.state") == NULL ||
            cJSON_AddNumberToObject(cmd, "at", (double)now) == NULL ||
            cJSON_AddStringToObject(cmd, "id", n->id) == NULL ||
            cJSON_AddStringToObject(cmd, "state", cm_liveness_state_name(act)) == NULL) {
            return CM_ENOMEM;
        }
        cm_info(
            "controller", "node %s: %s", n->id,
            act == CM_LIVENESS_UNREACHABLE ? "silent, now unreachable" : "heard again");
    }
    return 0;
}

static int build_pass(struct cm_controller *c, struct pass *p, int64_t now)
{
    struct sched_options so = {.policy = SCHED_POLICY_BINPACK, .seed = c->seed++};
    p->sched = sched_new(&so);
    p->kill = cJSON_CreateArray();
    p->expunge = cJSON_CreateArray();
    if (p->sched == NULL || p->kill == NULL || p->expunge == NULL) {
        return CM_ENOMEM;
    }
    int rv = load_snapshot(c->ops.state, &p->snap);
    rv = rv ? rv : cm_deploys_load(c->ops.state, &p->deploys);
    if (rv != 0) {
        return rv;
    }
    struct snapshot *s = &p->snap;
    p->next_at = INT64_MAX;
    rv = detect(c, p, now);
    if (rv != 0 || cJSON_GetArraySize(p->node_cmds) > 0) {
        return rv; /* with node changes, plan the rest once they are applied */
    }
    for (size_t i = 0; i < s->n_nodes; i++) {
        rv = add_node(p->sched, &s->nodes[i]);
        if (rv != 0 && rv != CM_EINVAL) {
            return rv;
        }
    }
    /* Tasks that hold resources: live ones and those being killed. The ones of
     * a deleted app count with no resources (their spec is gone). */
    for (size_t i = 0; i < s->n_tasks; i++) {
        const struct task_info *t = &s->tasks[i];
        if (cm_task_state_terminal(t->state)) {
            if (find_app(s, t->app) == NULL &&
                !cJSON_AddItemToArray(p->expunge, cJSON_CreateString(t->id))) {
                return CM_ENOMEM;
            }
            continue;
        }
        const struct app_info *a = find_app(s, t->app);
        if (t->state == CM_TASK_KILLING && !t->node_alive) {
            /* Killed while its node is unreachable (normally: replaced after
             * inactiveAfterSeconds): forgotten after expungeAfterSeconds. */
            int64_t at =
                cm_unreachable_expunge_at(a != NULL ? a->spec : NULL, t->updated_at);
            if (now >= at) {
                if (!cJSON_AddItemToArray(p->expunge, cJSON_CreateString(t->id))) {
                    return CM_ENOMEM;
                }
                continue;
            }
            p->next_at = CM_MIN(p->next_at, at);
        }
        struct sched_task st = {
            .id = t->id,
            .app = t->app,
            .role = a != NULL && a->spec != NULL ? a->spec->role : NULL,
            .node = t->node,
            .res =
                a != NULL && a->spec != NULL ? app_res(a->spec) : SCHED_RES(0, 0, 0, 0),
            .ports = t->ports,
            .n_ports = t->n_ports,
        };
        rv = sched_task_add(p->sched, &st);
        if (rv != 0 && rv != CM_EINVAL && rv != CM_ENOTFOUND) {
            return rv;
        }
        if (a == NULL && t->state != CM_TASK_KILLING &&
            !cJSON_AddItemToArray(p->kill, cJSON_CreateString(t->id))) {
            return CM_ENOMEM;
        }
    }
    /* Room for the requests. */
    size_t total_cons = 0, total_ports = 0, total_ids = 0;
    for (size_t i = 0; i < s->n_apps; i++) {
        if (s->apps[i].spec != NULL) {
            total_cons += s->apps[i].spec->n_constraints;
            total_ports += s->apps[i].spec->n_port_defs;
            total_ids += (size_t)CM_MAX(s->apps[i].spec->instances, 0);
        }
    }
    p->reqs = cm_calloc(s->n_apps + 1, sizeof(*p->reqs));
    p->req_app = cm_calloc(s->n_apps + 1, sizeof(*p->req_app));
    p->cons = cm_calloc(total_cons + 1, sizeof(*p->cons));
    p->ports = cm_calloc(total_ports + 1, sizeof(*p->ports));
    p->ids = cm_calloc(total_ids + 1, sizeof(*p->ids));
    if (p->reqs == NULL || p->req_app == NULL || p->cons == NULL || p->ports == NULL ||
        p->ids == NULL) {
        return CM_ENOMEM;
    }
    size_t cons_used = 0, ports_used = 0;
    for (size_t i = 0; i < s->n_apps; i++) {
        struct app_info *a = &s->apps[i];
        if (a->spec == NULL) {
            continue;
        }
        struct app_decision d;
        uint32_t canaries = 0;
        enum cm_deploy_gate gate = cm_deploys_gate(p->deploys, a->id, a->spec, &canaries);
        rv = decide(a, now, gate, canaries, &d);
        if (rv != 0) {
            return rv;
        }
        for (size_t k = 0; rv == 0 && k < d.n_kill; k++) {
            if (!cJSON_AddItemToArray(p->kill,
                                      cJSON_CreateString(a->tasks[d.kill[k]]->id))) {
                rv = CM_ENOMEM;
            }
        }
        for (size_t k = 0; rv == 0 && k < d.n_expunge; k++) {
            if (!cJSON_AddItemToArray(p->expunge,
                                      cJSON_CreateString(a->tasks[d.expunge[k]]->id))) {
                rv = CM_ENOMEM;
            }
        }
        uint32_t launch = d.launch;
        p->next_at = CM_MIN(p->next_at, d.next_at);
        decision_done(&d);
        if (rv != 0) {
            return rv;
        }
        int64_t wait = 0;
        if (launch > 0 && !backoff_allows(c, a, now, &wait)) {
            cm_debug("controller", "%s: launch delayed %lld ms (backoff)", a->id,
                     (long long)wait);
            p->wait_ms = p->wait_ms == 0 ? wait : CM_MIN(p->wait_ms, wait);
            continue;
        }
        if (launch > 0) {
            rv = add_request(p, a, launch, &cons_used, &ports_used);
            if (rv != 0) {
                return rv;
            }
        }
    }
    return 0;
}

static cJSON *assign_command(struct pass *p, const struct sched_result *res, int64_t now)
{
    cJSON *cmd = cJSON_CreateObject();
    cJSON *tasks = cJSON_AddArrayToObject(cmd, "tasks");
    if (cmd == NULL || tasks == NULL) {
        cJSON_Delete(cmd);
        return NULL;
    }
    cJSON_AddStringToObject(cmd, "type", "task.assign");
    cJSON_AddNumberToObject(cmd, "at", (double)now);
    for (size_t i = 0; i < res->n_assignments; i++) {
        const struct sched_assignment *as = &res->assignments[i];
        const struct app_info *a = p->req_app[as->req];
        cJSON *t = cJSON_CreateObject();
        cJSON *ports = cJSON_CreateArray();
        if (t == NULL || ports == NULL || !cJSON_AddItemToArray(tasks, t)) {
            cJSON_Delete(t);
            cJSON_Delete(ports);
            cJSON_Delete(cmd);
            return NULL;
        }
        cJSON_AddStringToObject(t, "id", as->task_id);
        cJSON_AddStringToObject(t, "app", a->id);
        cJSON_AddStringToObject(t, "version", a->version);
        cJSON_AddStringToObject(t, "node", as->node_id);
        cJSON_AddStringToObject(t, "host", node_address(&p->snap, as->node_id));
        for (size_t k = 0; k < as->n_ports; k++) {
            cJSON_AddItemToArray(ports, cJSON_CreateNumber(as->ports[k]));
        }
        cJSON_AddItemToObject(t, "ports", ports);
    }
    return cmd;
}

static cJSON *ids_command(const char *type, cJSON **ids, int64_t now)
{
    cJSON *cmd = cJSON_CreateObject();
    if (cmd == NULL) {
        return NULL;
    }
    cJSON_AddStringToObject(cmd, "type", type);
    if (strcmp(type, "task.kill") == 0) {
        cJSON_AddNumberToObject(cmd, "at", (double)now);
    }
    cJSON_AddItemToObject(cmd, "ids", *ids);
    *ids = NULL;
    return cmd;
}

/* Move the running deployments on (deploy.c): their commands, and when to look
 * again for their timers. */
static void advance_deployments(struct cm_controller *c, struct pass *p, int64_t now)
{
    cJSON *cmds = cJSON_CreateArray();
    int64_t recheck = 0;
    int rv = cmds != NULL
                 ? cm_deploys_advance(p->deploys, c->ops.state, now, cmds, &recheck)
                 : CM_ENOMEM;
    if (rv != 0) {
        cm_warn("controller", "deployments: %s", cm_strerror(rv));
    }
    const cJSON *cmd;
    cJSON_ArrayForEach(cmd, cmds)
    {
        propose_json(c, (cJSON *)cmd);
    }
    cJSON_Delete(cmds);
    if (recheck > 0) {
        p->wait_ms = p->wait_ms == 0 ? recheck : CM_MIN(p->wait_ms, recheck);
    }
}

static void run_pass(struct cm_controller *c)
{
    int64_t now = c->ops.now_ms(c->ops.data);
    struct pass p;
    memset(&p, 0, sizeof(p));
    int rv = build_pass(c, &p, now);
    if (rv == 0 && cJSON_GetArraySize(p.node_cmds) > 0) {
        /* Nodes changed state: plan the rest once that is applied. */
        const cJSON *ncmd;
        cJSON_ArrayForEach(ncmd, p.node_cmds)
        {
            propose_json(c, (cJSON *)ncmd);
        }
        pass_done(&p);
        c->dirty = true;
        if (c->in_flight == 0) { /* not proposed: try again later */
            ev_timer_stop(c->loop, &c->timer);
            ev_timer_set(&c->timer, 1.0, 0.0);
            ev_timer_start(c->loop, &c->timer);
        }
        return;
    }
    struct sched_result res;
    memset(&res, 0, sizeof(res));
    if (rv == 0 && p.n_reqs > 0) {
        rv = sched_place(p.sched, p.reqs, p.n_reqs, &res);
    }
    if (rv != 0) {
        cm_warn("controller", "planning failed: %s", cm_strerror(rv));
        pass_done(&p);
        c->dirty = true;
        ev_timer_stop(c->loop, &c->timer);
        ev_timer_set(&c->timer, 1.0, 0.0); /* retry later */
        ev_timer_start(c->loop, &c->timer);
        return;
    }
    waiting_clear(c);
    for (size_t i = 0; i < res.n_unplaced; i++) {
        char why[512];
        sched_explain_text(&res.unplaced[i].explain, &p.reqs[res.unplaced[i].req], why,
                           sizeof(why));
        const char *app = p.reqs[res.unplaced[i].req].app;
        cm_debug("controller", "%s: %u task(s) not placed: %s", app,
                 res.unplaced[i].count, why);
        waiting_add(c, app, why);
    }
    if (cJSON_GetArraySize(p.kill) > 0) {
        cJSON *cmd = ids_command("task.kill", &p.kill, now);
        if (cmd != NULL) {
            propose_json(c, cmd);
            cJSON_Delete(cmd);
        }
    }
    if (cJSON_GetArraySize(p.expunge) > 0) {
        cJSON *cmd = ids_command("task.expunge", &p.expunge, now);
        if (cmd != NULL) {
            propose_json(c, cmd);
            cJSON_Delete(cmd);
        }
    }
    if (res.n_assignments > 0) {
        cJSON *cmd = assign_command(&p, &res, now);
        if (cmd != NULL) {
            propose_json(c, cmd);
            cJSON_Delete(cmd);
        }
    }
    advance_deployments(c, &p, now);
    if (p.next_at != INT64_MAX) {
        int64_t w = CM_MAX(p.next_at - now, 1);
        p.wait_ms = p.wait_ms == 0 ? w : CM_MIN(p.wait_ms, w);
    }
    if (p.wait_ms > 0 && c->in_flight == 0) {
        ev_timer_stop(c->loop, &c->timer);
        ev_timer_set(&c->timer, (double)p.wait_ms / 1000.0 + DEBOUNCE_S, 0.0);
        ev_timer_start(c->loop, &c->timer);
        c->dirty = true;
    }
    sched_result_done(&res);
    pass_done(&p);
}

/* ------------------------------------------------------------------ driving */

static void proposed(void *arg, int status, uint64_t index, const char *msg)
{
    struct cm_controller *c = arg;
    (void)index;
    c->in_flight--;
    if (status != 0 && status != CM_ENOTLEADER) {
        cm_warn("controller", "proposal failed: %s%s%s", cm_strerror(status),
                msg != NULL ? ": " : "", msg != NULL ? msg : "");
    }
    if (c->in_flight == 0 && c->dirty) {
        cm_controller_kick(c);
    }
}

static void propose_json(struct cm_controller *c, cJSON *cmd)
{
    char *text = cJSON_PrintUnformatted(cmd);
    if (text == NULL) {
        cm_warn("controller", "out of memory building a command");
        return;
    }
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    int rv = c->ops.propose(c->ops.data, text, strlen(text), proposed, c, &eb);
    if (rv == 0) {
        c->in_flight++;
    } else if (rv != CM_ENOTLEADER) {
        cm_warn("controller", "cannot propose: %s", eb.msg[0] ? eb.msg : cm_strerror(rv));
    }
    cJSON_free(text);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct cm_controller *c = cm_container_of(w, struct cm_controller, timer);
    if (!c->leader) {
        return;
    }
    if (c->in_flight > 0) {
        c->dirty = true; /* again once our proposals are applied */
        return;
    }
    c->dirty = false;
    run_pass(c);
}

void cm_controller_kick(struct cm_controller *c)
{
    if (c == NULL || !c->leader) {
        return;
    }
    c->dirty = true;
    if (c->in_flight > 0) {
        return;
    }
    if (!ev_is_active(&c->timer) || ev_timer_remaining(c->loop, &c->timer) > DEBOUNCE_S) {
        ev_timer_stop(c->loop, &c->timer);
        ev_timer_set(&c->timer, DEBOUNCE_S, 0.0);
        ev_timer_start(c->loop, &c->timer);
    }
}

void cm_controller_heartbeat(struct cm_controller *c, const char *node, int64_t now_ms)
{
    if (c == NULL || !c->leader) {
        return;
    }
    if (cm_liveness_heard(c->liveness, node, now_ms)) {
        cm_controller_kick(c); /* an unreachable node is back */
    }
}

int64_t cm_controller_last_heard(const struct cm_controller *c, const char *node)
{
    if (c == NULL || !c->leader) {
        return -1;
    }
    if (c->ops.self != NULL && strcmp(node, c->ops.self) == 0) {
        return c->ops.now_ms(c->ops.data);
    }
    return cm_liveness_last(c->liveness, node);
}

void cm_controller_set_leader(struct cm_controller *c, bool leader)
{
    if (c->leader == leader) {
        return;
    }
    c->leader = leader;
    if (leader) {
        cm_liveness_reset(c->liveness, c->ops.now_ms(c->ops.data));
    }
    if (!leader) {
        ev_timer_stop(c->loop, &c->timer);
        /* Backoff is leader memory; a new leader starts afresh. */
        for (size_t i = 0; i < c->n_backoffs; i++) {
            cm_free(&c->backoffs[i].app);
        }
        c->n_backoffs = 0;
        return;
    }
    cm_controller_kick(c);
}

int cm_controller_new(struct ev_loop *loop, const struct cm_node_ctl_ops *ops,
                      struct cm_controller **ret)
{
    struct cm_controller *c = cm_calloc(1, sizeof(*c));
    if (c == NULL) {
        return CM_ENOMEM;
    }
    c->loop = loop;
    c->ops = *ops;
    c->liveness = cm_liveness_new();
    if (c->liveness == NULL) {
        cm_free(&c);
        return CM_ENOMEM;
    }
    cm_random_bytes(&c->seed, sizeof(c->seed));
    ev_timer_init(&c->timer, timer_cb, 0.0, 0.0);
    *ret = c;
    return 0;
}

void cm_controller_free(struct cm_controller *c)
{
    if (c == NULL) {
        return;
    }
    ev_timer_stop(c->loop, &c->timer);
    for (size_t i = 0; i < c->n_backoffs; i++) {
        cm_free(&c->backoffs[i].app);
    }
    cm_free(&c->backoffs);
    waiting_clear(c);
    cm_free(&c->waiting);
    cm_liveness_free(c->liveness);
    cm_free(&c);
}
